"""The embedded backend: one persistent ``sqlite3`` connection per pooled connection.

libsql-client's own file client opens a new ``sqlite3`` connection for every statement, which is
what the pool exists to avoid, so this keeps one connection open (WAL, foreign keys, busy
timeout). Statements run on the event loop, which costs least: SQLite's part of a read is
shorter than a hop to a thread and back (``benchmarks/bench_concurrency.py``, ``thread_hop``),
and a write transaction in a thread is slower still (its thread waits for the GIL after every
row SQLite steps, behind the loop's own work).
So that a batch of milliseconds does not stop every other task of the process meanwhile, a
write transaction yields to the loop every :data:`SLICE_S` seconds of work (the Store encodes a
batch in the same slices), and the COMMIT of one that wrote :data:`THREAD_COMMIT_ROWS` rows or
more while other tasks read the file -- SQLite writing the transaction's pages to the log, with
the GIL released -- runs on a worker thread, the loop serving them meanwhile. The transactions
of one database file in one event loop take turns (a lock), so no transaction of this process
ever waits for another in SQLite's busy handler, which would sleep on the loop. In WAL mode the
other connections read beside the open transaction. (``bench_concurrency``'s
``reads_vs_writer`` measures what a read beside a writer waits.)

The one long wait left in a commit is SQLite's automatic checkpoint: the commit that takes the
write-ahead log past 1,000 pages copies it into the database file and syncs both, a few
milliseconds with the loop stopped for every task. So connections that
write turn it off (``wal_autocheckpoint = 0``) and, after every :data:`CHECKPOINT_ROWS` rows
written to a file, a passive checkpoint runs on a worker thread (``sqlite3`` releases the GIL
while it copies and syncs); it never blocks a reader or a writer, and the connections of the file
wait for it when they close.

``read_only`` opens the file with SQLite's ``mode=ro``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import urllib.parse
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tiered.db.base import Connection, Result, Statement, Step, Value, translate
from tiered.errors import ConfigError

__all__ = ["CHECKPOINT_ROWS", "SLICE_S", "THREAD_COMMIT_ROWS", "EmbeddedConnection"]

log = logging.getLogger(__name__)

#: seconds of a write transaction's work between two yields to the event loop
SLICE_S = 0.00025
#: rows a transaction writes from which its COMMIT runs on a worker thread, if statements of
#: other tasks ran on the file while it was open (readers it should not stop): a smaller one's
#: commit takes about a slice on the loop, less than the hop to a thread and back adds to the
#: writer; and with nobody reading, the hop only slows writes (the thread waits for the GIL
#: behind the loop's work to return). ``tests/test_embedded.py`` checks which runs where.
THREAD_COMMIT_ROWS = 12
#: rows written to a file (SQLite's ``total_changes``) between two checkpoints on a thread:
#: about the 1,000 pages of SQLite's own cadence for rows of this schema's size
CHECKPOINT_ROWS = 1000
#: the most rows bound per executemany call between two looks at the clock; a statement's
#: calls bind as many as its last call says fit in a slice (the first call: _ROWS_FIRST)
_ROWS = 64
_ROWS_FIRST = 8


@dataclass
class _File:
    """What the connections of one database file in one event loop share."""

    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # write transactions take turns
    written: int = 0  # rows written since the last checkpoint started
    checkpoint: asyncio.Future[None] | None = None  # the checkpoint running on a thread
    checkpoints: int = 0
    statements: int = 0  # run by execute (reads, mostly): who a transaction's yields served


# per event loop and database file
_FILES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _File]] = (
    weakref.WeakKeyDictionary()
)


def _checkpoint(path: str, timeout: float) -> None:
    """A passive checkpoint of ``path`` on a connection of its own (a worker thread's)."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        db.close()


class EmbeddedConnection(Connection):
    """A persistent ``sqlite3`` connection in WAL mode with foreign keys on."""

    backend = "file"

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        read_only: bool = False,
        snapshot: bool = False,
    ) -> None:
        """``read_only``: SQLite's ``mode=ro``. ``snapshot`` (with ``read_only``): a database
        with no write-ahead log beside it is at rest, and is read as immutable, so that not
        even the ``-wal``/``-shm`` files a WAL-mode reader would create appear beside it -- for
        a one-off read such as ``tiered analyze``, never for a long-lived reader beside a
        writer (an immutable reader does not see later writes)."""
        super().__init__()
        self.path = path
        self.read_only = read_only
        if read_only and not Path(path).is_file():
            raise ConfigError(f"database file {path!r} does not exist (opened read-only)")
        try:
            if read_only:
                # SQLite's own read-only mode: no write can reach the file, and nothing about
                # the file (journal mode included) is changed by opening it
                at_rest = snapshot and not Path(f"{path}-wal").exists()
                target = f"file:{urllib.parse.quote(str(Path(path).resolve()))}?mode=ro" + (
                    "&immutable=1" if at_rest else ""
                )
            else:
                target = path
            self._db = sqlite3.connect(
                target,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout,
                cached_statements=256,
                uri=read_only,
            )
            self._db.execute("PRAGMA foreign_keys = ON")
            wal = False
            if not read_only:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()
                wal = mode is not None and str(mode[0]).lower() == "wal"
                self._db.execute("PRAGMA synchronous = NORMAL")
                if wal:
                    self._db.execute("PRAGMA wal_autocheckpoint = 0")  # see the module docstring
        except sqlite3.Error as e:
            raise translate(e) from e
        self._seen: set[str] = set()
        self._key = str(Path(path).resolve()) if path != ":memory:" else f":memory:{id(self)}"
        self._busy_timeout = busy_timeout
        self._rows_per_call: dict[str, int] = {}
        self._known: tuple[asyncio.AbstractEventLoop, _File] | None = None  # (its _file())
        # rows this connection had written when it last looked (None: it never checkpoints)
        self._changes: int | None = self._db.total_changes if wal else None

    def __repr__(self) -> str:
        return f"<EmbeddedConnection {self.path!r}{' closed' if self._closed else ''}>"

    def _count(self, stmt: Statement, n: int) -> None:
        first = stmt.sql not in self._seen
        if first:
            self._seen.add(stmt.sql)
        self.counters.count(stmt, n, first)

    async def execute(self, stmt: Statement, args: Sequence[Value] = ()) -> Result:
        self._check_open()
        self._count(stmt, 1)
        self._file().statements += 1
        try:
            cur = self._db.execute(stmt.sql, args)
            rows = cur.fetchall()
            result = Result(rows, cur.rowcount if cur.rowcount > 0 else 0)
        except sqlite3.Error as e:
            raise translate(e) from e
        if result.rows_affected:
            self._wrote()
        return result

    def _file(self) -> _File:
        loop = asyncio.get_running_loop()
        known = self._known
        if known is not None and known[0] is loop:
            return known[1]
        files = _FILES.setdefault(loop, {})
        f = files.get(self._key)
        if f is None:
            f = files[self._key] = _File()
        self._known = (loop, f)
        return f

    def _wrote(self) -> None:
        """Count the rows written since the last look; start a checkpoint on a thread when the
        file's count reaches :data:`CHECKPOINT_ROWS` and none is running."""
        if self._changes is None:
            return
        now = self._db.total_changes
        f = self._file()
        f.written += now - self._changes
        self._changes = now
        if f.written < CHECKPOINT_ROWS or f.checkpoint is not None:
            return
        f.written = 0
        f.checkpoints += 1
        loop = asyncio.get_running_loop()
        f.checkpoint = done = loop.run_in_executor(None, _checkpoint, self.path, self._busy_timeout)

        def finished(fut: asyncio.Future[None]) -> None:
            if f.checkpoint is done:
                f.checkpoint = None
            if not fut.cancelled() and fut.exception() is not None:
                # the next one catches up; the log grows meanwhile, nothing is lost
                log.warning("checkpoint of %s failed: %s", self.path, fut.exception())

        done.add_done_callback(finished)

    async def transaction(self, steps: Sequence[Step], *, chunk_bytes: int) -> None:
        """One local transaction, yielding to the loop between slices of its work (see the
        module docstring). Cancelled at a yield, it rolls back: all of it or none of it."""
        self._check_open()
        db = self._db
        f = self._file()
        async with f.turn:
            try:
                db.execute("BEGIN IMMEDIATE")
                rows, served = db.total_changes, f.statements
                try:
                    await self._run(steps)
                    if db.total_changes - rows >= THREAD_COMMIT_ROWS and f.statements != served:
                        await self._commit()  # others read here meanwhile: they go on reading
                    else:
                        db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise translate(e) from e
        self._wrote()

    async def _commit(self) -> None:
        """COMMIT on a worker thread: ``sqlite3`` releases the GIL while SQLite writes the
        transaction's pages to the log, so the loop serves other tasks meanwhile. Cancelled
        meanwhile, it still waits for the commit (the connection is never used by two threads
        at once), then raises: the transaction is then all written."""
        fut = asyncio.get_running_loop().run_in_executor(None, self._db.execute, "COMMIT")
        cancelled = False
        while not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                if not fut.done():
                    cancelled = True
        fut.result()
        if cancelled:
            raise asyncio.CancelledError

    async def _run(self, steps: Sequence[Step]) -> None:
        # Consecutive steps of one shape go through executemany, which binds a prepared
        # statement row after row (the fast path bench_store compares against), as many rows
        # at a time as the statement's last call says fit in a slice (1 to _ROWS), so the
        # clock is read between them.
        db = self._db
        per_call = self._rows_per_call
        due = time.perf_counter() + SLICE_S
        i, n = 0, len(steps)
        while i < n:
            stmt = steps[i][0]
            j = i + 1
            while j < n and steps[j][0] is stmt:
                j += 1
            if j - i == 1:
                db.execute(stmt.sql, steps[i][1])
            else:
                k = i
                while k < j:
                    m = min(j - k, per_call.get(stmt.sql, _ROWS_FIRST))
                    t0 = time.perf_counter()
                    db.executemany(stmt.sql, [s[1] for s in steps[k : k + m]])
                    now = time.perf_counter()
                    k += m
                    per_call[stmt.sql] = max(1, min(_ROWS, int(SLICE_S * m / max(now - t0, 1e-7))))
                    if now >= due and k < j:
                        await asyncio.sleep(0)
                        due = time.perf_counter() + SLICE_S
            self._count(stmt, j - i)
            i = j
            if time.perf_counter() >= due:
                await asyncio.sleep(0)
                due = time.perf_counter() + SLICE_S

    async def execute_many(self, steps: Sequence[Step]) -> list[Result]:
        return [await self.execute(stmt, args) for stmt, args in steps]

    async def ping(self) -> None:
        self._check_open()
        try:
            self._db.execute("SELECT 1").fetchall()
        except sqlite3.Error as e:
            raise translate(e) from e

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            running = self._file().checkpoint if self._changes is not None else None
            if running is not None:
                # no thread of this process works on the file once its connections are closed
                await asyncio.wait([running])
            self._db.close()
