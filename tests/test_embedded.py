"""The embedded backend's checkpoints: off the event loop, on a worker thread, after every
``CHECKPOINT_ROWS`` rows written to a file, and waited for when the file's connections close."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from tiered.db import embedded
from tiered.db.driver import Statement
from tiered.db.embedded import CHECKPOINT_ROWS, EmbeddedConnection

CREATE = Statement("create", "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)", reuse=False)
PUT = Statement("put", "INSERT INTO t(k, v) VALUES (?, ?)")


async def _filled(path: Path, rows: int) -> EmbeddedConnection:
    conn = EmbeddedConnection(str(path))
    await conn.execute(CREATE)
    await conn.transaction([(PUT, (k, "x" * 100)) for k in range(rows)], chunk_bytes=1 << 20)
    return conn


def _rows_in_main_file(path: Path, tmp: Path) -> int:
    """Rows of ``t`` in the database file alone (its write-ahead log left behind)."""
    copy = tmp / "main-only.db"
    shutil.copyfile(path, copy)
    db = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 't'").fetchone() is None:
            return 0  # not even the table has reached the file
        return int(db.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        db.close()


async def test_the_log_is_checkpointed_on_a_thread_not_at_commit(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = await _filled(path, CHECKPOINT_ROWS - 1)
    # SQLite's own checkpoint at commit is off: everything so far is in the log only
    assert conn._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert _rows_in_main_file(path, tmp_path) == 0
    file = conn._file()
    assert file.checkpoint is None and file.checkpoints == 0
    await conn.execute(PUT, (CHECKPOINT_ROWS, "y"))  # the row that reaches the count
    running = file.checkpoint
    assert running is not None and file.checkpoints == 1 and file.written == 0
    await running
    assert _rows_in_main_file(path, tmp_path) == CHECKPOINT_ROWS
    await conn.close()


async def test_a_failed_checkpoint_loses_nothing_and_the_next_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = embedded._checkpoint

    def fails(path: str, timeout: float) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(embedded, "_checkpoint", fails)
    path = tmp_path / "db.sqlite"
    with caplog.at_level(logging.WARNING, logger="tiered.db.embedded"):
        conn = await _filled(path, CHECKPOINT_ROWS)
        failed = conn._file().checkpoint
        assert failed is not None
        await asyncio.wait([failed])
    assert "checkpoint of" in caplog.text and "disk I/O error" in caplog.text
    assert conn._file().checkpoint is None
    monkeypatch.setattr(embedded, "_checkpoint", real)
    await conn.transaction(
        [(PUT, (k, "z")) for k in range(CHECKPOINT_ROWS, 2 * CHECKPOINT_ROWS)], chunk_bytes=1 << 20
    )
    running = conn._file().checkpoint
    assert running is not None
    await running
    assert _rows_in_main_file(path, tmp_path) == 2 * CHECKPOINT_ROWS
    await conn.close()


async def test_close_waits_for_the_running_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = embedded._checkpoint

    def held(path: str, timeout: float) -> None:
        release.wait(30)
        real(path, timeout)

    monkeypatch.setattr(embedded, "_checkpoint", held)
    path = tmp_path / "db.sqlite"
    conn = await _filled(path, CHECKPOINT_ROWS)
    closing = asyncio.ensure_future(conn.close())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done()  # the thread still works on the file
    release.set()
    await closing
    assert conn.closed and _rows_in_main_file(path, tmp_path) == CHECKPOINT_ROWS


async def test_read_only_and_memory_connections_never_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    writer = await _filled(path, 10)
    reader = EmbeddedConnection(str(path), read_only=True)
    memory = EmbeddedConnection(":memory:")
    assert reader._changes is None and memory._changes is None
    await memory.execute(CREATE)
    await memory.transaction([(PUT, (k, "x")) for k in range(CHECKPOINT_ROWS)], chunk_bytes=1 << 20)
    assert memory._file().checkpoints == 0
    for c in (reader, memory, writer):
        await c.close()


async def test_a_large_result_is_decoded_in_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding is Python on the loop: a query of many episodes gives other tasks turns between
    chunks of it (with the slice at 0, after every chunk), and returns the same records."""
    from tiered import CacheConfig, Store
    from tiered.sim import generate_episodes
    from tiered.store import records

    url = f"file:{tmp_path / 's.db'}"
    eps = generate_episodes(64, seed=4)
    async with await Store.open(url, cache=CacheConfig(enabled=False)) as store:
        await store.store_episodes(eps)
        whole = await store.query_episodes_since(0, limit=64)
        monkeypatch.setattr(records, "SLICE_S", 0.0)
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        turned = await store.query_episodes_since(0, limit=64)
        stop = True
        await t
    assert turned == whole and len(whole) == 64
    assert ticks - before >= 64 // records._DECODE_ROWS - 1


class _SlowCommit:
    """A ``sqlite3`` connection whose COMMIT takes ``seconds`` longer (in the thread that runs
    it), saying when it starts."""

    def __init__(self, db: sqlite3.Connection, seconds: float) -> None:
        self._db = db
        self.seconds = seconds
        self.committing = threading.Event()
        self.threads: list[int] = []  # where each COMMIT ran

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self.threads.append(threading.get_ident())
            self.committing.set()
            threading.Event().wait(self.seconds)  # a slow disk, in the committing thread
        return self._db.execute(sql, *args)


async def test_the_commit_runs_off_the_loop_and_a_cancelled_commit_is_all_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large transaction that other tasks read beside commits on a worker thread: the readers
    go on reading while SQLite commits; a writer cancelled meanwhile waits for the commit (the
    connection is never used by two threads), then raises: every row is written and the
    connection is usable. The same transaction with nobody reading, and a transaction of fewer
    than THREAD_COMMIT_ROWS rows, commit on the loop (the hop would cost more than it frees).
    (A commit run on the loop lets no read run until it ends.)"""
    monkeypatch.setattr(embedded, "SLICE_S", 0.0)  # the transaction yields after every row
    path = tmp_path / "c.db"
    conn = EmbeddedConnection(str(path))
    await conn.execute(CREATE)
    slow = _SlowCommit(conn._db, 0.2)
    conn._db = slow  # type: ignore[assignment]
    other = EmbeddedConnection(str(path))
    count = Statement("n", "SELECT count(*) FROM t")
    reads = 0
    reading = True

    async def reader() -> None:
        nonlocal reads
        while reading:
            await other.execute(count)
            reads += 1
            await asyncio.sleep(0)

    readers = asyncio.create_task(reader())
    write = asyncio.create_task(
        conn.transaction([(PUT, (k, "x")) for k in range(50)], chunk_bytes=1 << 20)
    )
    assert await asyncio.to_thread(slow.committing.wait, 5.0)
    during = reads
    for _ in range(40):
        await asyncio.sleep(0)  # the reader's turns while the commit runs
    assert reads >= during + 20 and not write.done()
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    slow.seconds = 0.0
    assert not slow.in_transaction
    assert (await conn.execute(count)).rows == [(50,)]
    small = [(PUT, (k, "z")) for k in range(50, 49 + embedded.THREAD_COMMIT_ROWS)]
    await conn.transaction(small, chunk_bytes=1 << 20)  # read beside, but small
    reading = False
    await readers
    await conn.transaction([(PUT, (k, "y")) for k in range(100, 150)], chunk_bytes=1 << 20)
    # the large transaction read beside committed on a worker thread; the small one, and the
    # large one nobody read beside, on the loop
    loop_thread = threading.get_ident()
    assert slow.threads[0] != loop_thread and slow.threads[1:] == [loop_thread, loop_thread]
    await other.close()
    await conn.close()
