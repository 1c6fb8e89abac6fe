"""The embedded backend: one persistent ``sqlite3`` connection per pooled connection.

libsql-client's own file client opens a new ``sqlite3`` connection for every statement, which is
what the pool exists to avoid, so this keeps one connection open (WAL, foreign keys, busy
timeout). Where each statement runs is chosen per operation:

* a read runs inline on the event loop: it takes tens of microseconds, about what a hop to a
  thread and back costs, and a cache hit never comes here at all;
* a write transaction runs in the connection's own worker thread: a batch takes milliseconds,
  which inline would stop every other task of the process (other agents' reads included) for
  as long. ``sqlite3`` releases the GIL while SQLite works, and in WAL mode the other
  connections' readers read beside the writer.

``read_only`` opens the file with SQLite's ``mode=ro``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tiered.db.base import Connection, Result, Statement, Step, Value, translate
from tiered.errors import ConfigError

__all__ = ["EmbeddedConnection"]


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
            if not read_only:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as e:
            raise translate(e) from e
        self._seen: set[str] = set()
        self._writer: ThreadPoolExecutor | None = None  # made at the first transaction

    def __repr__(self) -> str:
        return f"<EmbeddedConnection {self.path!r}{' closed' if self._closed else ''}>"

    def _count(self, stmt: Statement, n: int) -> None:
        first = stmt.sql not in self._seen
        if first:
            self._seen.add(stmt.sql)
        self.stats.count(stmt, n, first)

    async def execute(self, stmt: Statement, args: Sequence[Value] = ()) -> Result:
        self._check_open()
        self._count(stmt, 1)
        try:
            cur = self._db.execute(stmt.sql, args)
            rows = cur.fetchall()
            return Result(rows, cur.rowcount if cur.rowcount > 0 else 0)
        except sqlite3.Error as e:
            raise translate(e) from e

    async def transaction(self, steps: Sequence[Step], *, chunk_bytes: int) -> None:
        """One local transaction, in the connection's worker thread (see the module docstring).
        A caller cancelled meanwhile gets its ``CancelledError`` only once the transaction has
        ended (committed or rolled back as a whole), so the connection is never handed on
        with a transaction open in another thread."""
        self._check_open()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="tiered-sqlite-writer")
        done = asyncio.get_running_loop().run_in_executor(self._writer, self._transaction, steps)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            while not done.done():
                try:
                    await asyncio.shield(done)
                except asyncio.CancelledError:
                    continue
                except BaseException:
                    break
            raise

    def _transaction(self, steps: Sequence[Step]) -> None:
        # Consecutive steps of one shape go through executemany, which binds a prepared
        # statement row after row (the fast path bench_store compares against).
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                i, n = 0, len(steps)
                while i < n:
                    stmt = steps[i][0]
                    j = i + 1
                    while j < n and steps[j][0] is stmt:
                        j += 1
                    if j - i == 1:
                        db.execute(stmt.sql, steps[i][1])
                    else:
                        db.executemany(stmt.sql, [s[1] for s in steps[i:j]])
                    self._count(stmt, j - i)
                    i = j
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise translate(e) from e

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
            if self._writer is not None:
                self._writer.shutdown(wait=True)  # no transaction is left running
            self._db.close()
