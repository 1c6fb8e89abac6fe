"""The embedded-replica read tier: a local SQLite file that follows the primary.

libSQL's *embedded replicas* keep a copy of a sqld/Turso database in a local file and pull the
primary's new WAL frames on ``sync()``. :class:`LocalReplica` holds one such replica (the optional
extra ``tiered[replica]``, the ``libsql-experimental`` wheel, whose sync protocol the bundled sqld
0.24 speaks) and makes it a node of the :class:`~tiered.db.router.Router`:

* **reads** are served from the local file by read-only ``sqlite3`` connections (the embedded
  backend: microseconds, no round trip), checked like every replica read: the node's position
  (``max(seq)`` of the change log) is read in the same step, and a read that needs a newer
  position -- this Store's own last write, or what the cache's change feed has seen -- is served
  by the primary (read-your-writes, the router's rule);
* **sync** runs every ``interval`` seconds (a round trip to the primary and its new frames), and
  at once after each of this Store's writes, so its own writes are local again one round trip
  after they commit. Another process's write is visible locally within ``interval`` plus one
  sync. libSQL holds the GIL through a sync, so it runs in a child process
  (:mod:`tiered.db.replica_sync`), restarted if it dies, stopped when the Store closes;
* **writes** never touch it: they go to the primary through the Store's own pool;
* **fallback**: a local file that cannot be read (missing, corrupt, locked by a failed sync)
  marks the node down and the read is served by the primary; a sync that fails (the primary
  down) is counted and retried each interval while reads go on from the local file -- the
  router keeps serving a lagging replica only while the primary has nothing newer that it has
  seen, and never past ``max_lag`` otherwise.

``get_stats()``: syncs, failures, the last one's duration and age, and the replica's position; its
lag behind the primary is in the router's stats (node ``local``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tiered.db.base import Connection, redact_url
from tiered.db.embedded import EmbeddedConnection
from tiered.errors import ConfigError, DatabaseUnavailable
from tiered.pool import Pool, PoolConfig

__all__ = ["LocalReplica", "sync_url_of"]

log = logging.getLogger("tiered.replica")


def sync_url_of(url: str) -> str:
    """The HTTP(S) base URL libSQL syncs from, for a ``ws://``/``wss://``/``http(s)://``/
    ``libsql://`` primary URL (its ``authToken`` query, if any, dropped: the token is passed
    apart)."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "http": "http", "wss": "https", "https": "https", "libsql": "https"}
    if parts.scheme not in scheme:
        raise ConfigError(
            f"local_replica needs a ws://, wss://, http(s):// or libsql:// primary, got "
            f"{redact_url(url)!r}"
        )
    return urllib.parse.urlunsplit((scheme[parts.scheme], parts.netloc, parts.path, "", ""))


def _check_extra() -> None:
    if importlib.util.find_spec("libsql_experimental") is None:
        raise ConfigError(
            "local_replica needs the optional extra: pip install 'tiered[replica]' "
            "(libsql-experimental)"
        )


class LocalReplica:
    """One embedded replica of the primary in the file ``path`` (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        primary_url: str,
        *,
        auth_token: str | None = None,
        interval: float = 1.0,
        timeout: float = 30.0,
        pool: PoolConfig | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ConfigError(f"sync_interval must be > 0 seconds, got {interval}")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"local_replica {str(self.path)!r}: its folder does not exist")
        self.sync_url = sync_url_of(primary_url)
        self.interval = interval
        self._token = auth_token
        self._timer = timer
        self.timeout = timeout
        self._proc: asyncio.subprocess.Process | None = None  # the syncing process
        self._killed: asyncio.subprocess.Process | None = None  # killed mid-sync, to reap
        self._lock = asyncio.Lock()  # one sync at a time
        #: awaited after each successful sync (the router reads the new position)
        self.on_synced: Callable[[], Awaitable[None]] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.syncs = 0
        self.failures = 0
        self.last_error = ""  # type of the last failure (never its message: it may hold a URL)
        self.last_sync_s = 0.0  # how long the last successful sync took
        self.synced_at = -float("inf")  # timer seconds of the last successful sync
        cfg = (pool or PoolConfig()).for_node(embedded=True)
        self.pool: Pool[Connection] = Pool(
            self._reader, config=cfg, name=f"local:{self.path.name}", clock=timer
        )

    def __repr__(self) -> str:
        return f"<LocalReplica {str(self.path)!r} of {self.sync_url!r} syncs={self.syncs}>"

    async def _reader(self) -> Connection:
        try:
            return EmbeddedConnection(str(self.path), read_only=True)
        except ConfigError as e:  # the file is gone: the node is down, reads go to the primary
            raise DatabaseUnavailable(str(e), code="REPLICA_MISSING") from None

    async def open(self) -> None:
        """Start the syncing process and pull the primary's database (the first sync), then
        keep syncing in the background. Raises :class:`DatabaseUnavailable` if that first sync
        fails (the Store's own primary connection works, so the replica's link does not)."""
        _check_extra()
        if not await self.sync():
            await self.close()
            raise DatabaseUnavailable(
                f"local replica {str(self.path)!r}: the first sync from {self.sync_url} failed "
                f"({self.last_error})",
                code="REPLICA_SYNC",
            )
        await self.pool.open(wait=False)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="tiered-replica")

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = dict(os.environ)
        env.pop("TIERED_REPLICA_TOKEN", None)
        if self._token:
            env["TIERED_REPLICA_TOKEN"] = self._token
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tiered.db.replica_sync", str(self.path), self.sync_url,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            first = await self._answer(proc)
        except BaseException:
            await _stop(proc)
            raise
        if first != "ready":
            await _stop(proc)
            raise DatabaseUnavailable(f"the replica would not open ({first})", code="REPLICA")
        return proc

    async def _answer(self, proc: asyncio.subprocess.Process) -> str:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
        except TimeoutError:
            raise DatabaseUnavailable("the replica's sync timed out", code="TIMEOUT") from None
        if not line:
            raise DatabaseUnavailable("the replica's sync process ended", code="REPLICA_EXIT")
        return line.decode().strip()

    async def sync(self) -> bool:
        """Pull the primary's new frames now (in the syncing process); whether it worked."""
        async with self._lock:
            if self._closed:
                return False
            t0 = time.perf_counter()
            await self._reap()
            try:
                if self._proc is None or self._proc.returncode is not None:
                    self._proc = await self._spawn()
                assert self._proc.stdin is not None
                self._proc.stdin.write(b"sync\n")
                await self._proc.stdin.drain()
                try:
                    answer = await self._answer(self._proc)
                except asyncio.CancelledError:
                    # its answer would come to the next sync: that process is done with (if
                    # this left the file unreadable, its reads fall back to the primary). The
                    # next sync or close() reaps it: a killed child nobody waits for outlives
                    # the event loop (an unraisable error when its transport is collected)
                    with contextlib.suppress(ProcessLookupError):
                        self._proc.kill()
                    self._killed, self._proc = self._proc, None
                    raise
                if not answer.startswith("ok"):
                    raise DatabaseUnavailable(answer.partition(" ")[2] or answer, code="SYNC")
            except (DatabaseUnavailable, OSError) as e:
                self.failures += 1
                # libSQL's error type, or what went wrong with the process (never a URL/token)
                self.last_error = str(e) if isinstance(e, DatabaseUnavailable) else type(e).__name__
                if self._proc is not None and getattr(e, "code", "") != "SYNC":
                    await _stop(self._proc)  # not an answer: the next sync starts a new one
                    self._proc = None
                log.warning("local replica sync failed (%s); reads stay local", self.last_error)
                return False
            self.syncs += 1
            self.last_sync_s = time.perf_counter() - t0
            self.synced_at = self._timer()
        if self.on_synced is not None:
            await self.on_synced()
        return True

    def request_sync(self) -> None:
        """Sync soon (after a write of this Store: its own writes become local again)."""
        self._wake.set()

    async def _loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if not self._closed:
                await self.sync()

    async def close(self) -> None:
        """Stop syncing, the syncing process and the readers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            await self._reap()
            if self._proc is not None:
                await _stop(self._proc)
                self._proc = None
        await self.pool.close()

    async def _reap(self) -> None:
        if self._killed is not None:
            await self._killed.wait()
            self._killed = None

    def get_stats(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sync_interval_s": self.interval,
            "syncs": self.syncs,
            "sync_failures": self.failures,
            "last_error": self.last_error,
            "last_sync_ms": self.last_sync_s * 1000,
            "since_last_sync_s": self._timer() - self.synced_at,
        }


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """End the syncing process: close its stdin (it exits), kill it if it does not."""
    if proc.returncode is None:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()
