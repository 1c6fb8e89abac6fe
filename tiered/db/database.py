"""The one way to the database: the primary's pool, read replicas, writes behind one gate.

A :class:`Database` is what a :class:`~tiered.store.Store` talks to. It owns:

* the primary's connection pool, and the :class:`~tiered.db.router.Router` over read replicas
  when there are any (reads go to a replica that has this process's writes, else the primary);
* the read-your-writes position: after every acknowledged write it reads the primary's
  change-log position on the connection that wrote, and every later read needs a node at least
  that new (while a write's position is unknown, reads go to the primary);
* the write gate and group commit (:mod:`tiered.db.groupcommit`): at most
  ``max_concurrent_writes`` transactions at once, writers waiting here hold no connection;
* retries: a locked database (:class:`~tiered.errors.DatabaseBusy`) is retried with jittered
  backoff for up to ``timeout``; a read whose connection drops is retried once elsewhere;
* the read-only guard: a database opened read-only (``read_only``) or with a token whose claim
  says it may not write refuses every write before any I/O.

Phase times (``acquire``, ``round_trip``) go to the running operation's phase context
(:mod:`tiered.metrics.phases`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tiered.db import statements as q
from tiered.db.driver import (
    Connection,
    Result,
    Row,
    Statement,
    StatementStats,
    Step,
    as_int,
    backend_of,
    connect,
    redact_url,
    token_access,
    url_token,
)
from tiered.db.groupcommit import GroupCommit
from tiered.db.replica import LocalReplica
from tiered.db.router import Router, RouterConfig
from tiered.db.schema import migrate
from tiered.errors import (
    AuthError,
    ConfigError,
    DatabaseBusy,
    DatabaseUnavailable,
    ReadOnlyError,
    StoreClosed,
    TieredError,
)
from tiered.metrics.phases import add_phase, phase_scope
from tiered.pool import Pool, PoolConfig

__all__ = ["Database"]

log = logging.getLogger("tiered.db")
perf_counter = time.perf_counter
T = TypeVar("T")


class Database:
    """Pools, routing, the write gate and retries of one database (see the module docstring).

    Create it with :meth:`open`. ``read`` and ``write`` are the whole interface the Store uses.
    """

    def __init__(
        self,
        url: str,
        pool: Pool[Connection],
        statements: StatementStats,
        *,
        router: Router | None = None,
        local: LocalReplica | None = None,
        timeout: float = 30.0,
        chunk_bytes: int = 1 << 20,
        max_concurrent_writes: int = 1,
        group_commit: bool = True,
        read_only: str | None = None,
    ) -> None:
        self.url = url
        self.backend = backend_of(url)
        self.pool = pool
        self.router = router
        self.local = local  # the embedded replica (a node of ``router``), if any
        self.statements = statements
        self.timeout = timeout
        self.chunk_bytes = chunk_bytes
        #: why writes are refused (None: they are not): "token" or "config"
        self.read_only = read_only
        self._written_at = 0
        self._position_unknown = False
        self.reads_retried = 0
        self.busy_retries = 0
        self._gate = asyncio.Semaphore(max_concurrent_writes)
        self._group = GroupCommit(
            self._commit_group,
            self._gate,
            chunk_bytes,
            max_group=None if group_commit else 1,
        )
        self._rng = random.Random(0x5EED)
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        auth_token: str | None = None,
        pool: PoolConfig | None = None,
        replicas: Sequence[str] = (),
        routing: RouterConfig | None = None,
        local_replica: str | Path | None = None,
        sync_interval: float = 1.0,
        timeout: float = 30.0,  # noqa: ASYNC109 - every call's deadline, kept by the pools
        chunk_bytes: int = 1 << 20,
        max_concurrent_writes: int = 1,
        group_commit: bool = True,
        read_only: bool = False,
        migrate_schema: bool = True,
        now_us: Callable[[], int] = lambda: time.time_ns() // 1000,
        timer: Callable[[], float] = time.monotonic,
    ) -> Database:
        """Connect, migrate the schema (unless ``read_only`` or not ``migrate_schema``), start
        the router over ``replicas`` and the embedded replica in the file ``local_replica``
        (synced every ``sync_interval`` seconds; :mod:`tiered.db.replica`). Raises
        :class:`ConfigError` for a bad URL, :class:`DatabaseUnavailable` when the server cannot
        be reached, :class:`AuthError` when it rejects the token."""
        if not isinstance(url, str) or not url:
            raise ConfigError(
                "url must be a database URL such as 'file:tiered.db' or 'ws://host:port'"
            )
        backend = backend_of(url)
        if isinstance(replicas, str) or not all(isinstance(r, str) for r in replicas):
            raise ConfigError("replicas must be a sequence of database URLs")
        if replicas and backend == "file":
            raise ConfigError("an embedded file: database has no replicas")
        for r in replicas:
            if backend_of(r) == "file":
                raise ConfigError(f"replica {redact_url(r)!r} must be a ws:// or http:// URL")
        local: LocalReplica | None = None
        if local_replica is not None:
            if backend == "file":
                raise ConfigError("local_replica follows a server: give a ws:// or http:// URL")
            local = LocalReplica(
                local_replica, url, auth_token=url_token(url, auth_token),
                interval=sync_interval, timeout=timeout, pool=pool, timer=timer,
            )  # fmt: skip
            # a replica may trail by up to a sync interval (and one sync) and still serve reads
            routing = routing or RouterConfig(max_lag=max(1.0, 2 * sync_interval))
        routing = routing or RouterConfig()  # validated before any I/O
        pc = pool or PoolConfig()
        statements = StatementStats()
        read_only_url = url
        if read_only and backend == "file":
            read_only_url = _read_only_file_url(url)

        def make_pool(node_url: str, role: str) -> Pool[Connection]:
            async def factory() -> Connection:
                conn = await connect(node_url, auth_token=auth_token, timeout=timeout)
                conn.counters = statements  # one view of statement reuse across the pools
                return conn

            file = backend_of(node_url) == "file"
            return Pool(
                factory,
                config=pc.for_node(embedded=file),
                name=f"{role}{backend_of(node_url)}:{redact_url(node_url)}",
                clock=timer,
            )

        the_pool = make_pool(read_only_url, "")
        await the_pool.open()
        router: Router | None = None
        try:
            if migrate_schema and not read_only:
                async with the_pool.connection() as conn:
                    await migrate(conn, now_us=now_us())
            if replicas or local is not None:
                nodes = [
                    (f"replica{i}", make_pool(r, f"replica{i}:")) for i, r in enumerate(replicas)
                ]
                # a replica that is down now must not stop the store: its pool reconnects
                for _, p in nodes:
                    await p.open(wait=False)
                if local is not None:
                    await local.open()  # the first sync: the file holds the database
                    nodes.append(("local", local.pool))
                router = Router(the_pool, nodes, config=routing, timer=timer, local=("local",))
                if local is not None:
                    local.on_synced = functools.partial(router.refresh, "local")
        except BaseException:
            if local is not None:
                await local.close()
            await the_pool.close()
            raise
        token_ro = token_access(url_token(url, auth_token)) == "ro"
        return cls(
            url,
            the_pool,
            statements,
            router=router,
            local=local,
            timeout=timeout,
            chunk_bytes=chunk_bytes,
            max_concurrent_writes=max_concurrent_writes,
            group_commit=group_commit,
            read_only="config" if read_only else "token" if token_ro else None,
        )

    async def start(self, position: int) -> None:
        """Start routing from the primary's ``position`` (the change feed's start)."""
        if self.router is not None:
            self.router.note_primary(position)
            try:
                await self.router.poll()
            except BaseException:
                await self.router.close()
                raise
            self.router.start()

    async def close(self) -> None:
        """Fail queued writes, stop routing, close every pool. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._group.close()
            if self.local is not None:  # first: its syncs refresh the router
                await self.local.close()
            if self.router is not None:
                await self.router.close()
            await self.pool.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed; open a new one with Store.open()")

    def check_writable(self) -> None:
        """Refuse a write before any I/O when this database may not be written."""
        self.check_open()
        if self.read_only == "config":
            raise ReadOnlyError(
                "this store was opened read-only (read_only=True): writes are refused"
            )
        if self.read_only == "token":
            raise AuthError(
                "this store's auth token is read-only (its claim a=ro): writes need a "
                "read-write token",
                code="FORBIDDEN",
            )

    def get_stats(self) -> dict[str, Any]:
        s = self.statements
        return {
            "executions": s.executions,
            "prepared": s.prepared,
            "reused": s.reused,
            "by_name": dict(s.by_name),
            "reads_retried": self.reads_retried,
            "busy_retries": self.busy_retries,
            "group_commit": self._group.counters.as_dict(),
            **({"local_replica": self.local.get_stats()} if self.local is not None else {}),
        }

    # -- reads ---------------------------------------------------------------------------------

    async def read(
        self, stmt: Statement, args: Sequence[Any] = (), *, primary: bool = False, need: int = 0
    ) -> list[Row]:
        """Rows of a read: from a replica that has this database's writes and position
        ``need`` (the cache's change feed), else (or with ``primary``) from the primary."""
        router = self.router
        if router is not None and not primary and not self._position_unknown:
            rows = await router.read(stmt, args, max(self._written_at, need))
            if rows is not None:
                return rows
        result = await self._on_connection(lambda c: c.execute(stmt, args), idempotent=True)
        return result.rows

    async def read_local(self, stmt: Statement, args: Sequence[Any]) -> list[Row] | None:
        """Rows of a read from the embedded replica, whatever its position (``None`` without
        one, or if it cannot be read)."""
        if self.local is None or self.router is None:
            return None
        node = next(n for n in self.router.replicas if n.local)
        try:
            async with node.pool.connection() as conn:
                return (await conn.execute(stmt, args)).rows
        except TieredError:
            return None

    async def read_many(self, steps: Sequence[Step]) -> list[list[Row]]:
        """Several reads in one request on one connection of the primary (one round trip over
        a network), each in autocommit, in order; their rows."""
        results = await self._on_connection(lambda c: c.execute_many(steps), idempotent=True)
        return [r.rows for r in results]

    def note_primary(self, position: int) -> None:
        """The primary reached ``position`` (seen by the change feed)."""
        if self.router is not None:
            self.router.note_primary(position)

    # -- writes --------------------------------------------------------------------------------

    async def execute(self, stmt: Statement, args: Sequence[Any] = ()) -> Result:
        """One write statement on the primary, behind the write gate (not grouped)."""
        self.check_writable()

        async def run(conn: Connection) -> Result:
            res = await conn.execute(stmt, args)
            await self._note_write(conn)
            return res

        return await self._on_connection(run, write=True)

    async def write(
        self,
        steps: list[Step],
        order: tuple[Statement, ...] = (),
        keys: frozenset[str] = frozenset(),
    ) -> None:
        """One all-or-nothing write transaction, committed with whatever other writes of this
        database are waiting (group commit). Its phases: the wait for its group, then the
        group's. ``order``/``keys``: its steps use only the statements of ``order``, in that
        order, on the records ``keys``: it may be merged statement by statement with other
        writes of the same ``order`` and disjoint ``keys`` (see :mod:`tiered.db.groupcommit`)."""
        if steps:
            self.check_writable()
            done = await self._group.submit(steps, order, keys)
            add_phase("acquire", done.waited)
            for name, seconds in done.result.items():
                add_phase(name, seconds)

    async def _commit_group(self, steps: list[Step]) -> dict[str, float]:
        """Commit a group's transactions as one (in the group's own task); its phase times."""
        chunk = self.chunk_bytes

        async def run(conn: Connection) -> None:
            await conn.transaction(steps, chunk_bytes=chunk)
            await self._note_write(conn)

        with phase_scope() as phases:  # the group's task has a context of its own
            await self._on_connection(run, gated=True)
        return phases

    async def _note_write(self, conn: Connection) -> None:
        """With replicas: remember the primary's position after a committed write (on the
        connection that wrote it), so later reads need a node at least that new."""
        router = self.router
        if router is None:
            return
        try:
            position = as_int((await conn.execute(q.LAST_CHANGE)).rows[0][0])
        except TieredError:
            # the write committed; its position is unknown, so the primary serves reads until
            # a later write's position is known
            self._position_unknown = True
            log.warning("position after a write is unknown; reading from the primary")
            return
        router.note_primary(position)
        # max: concurrent writes may learn their positions out of order
        self._written_at = max(self._written_at, position)
        self._position_unknown = False
        if self.local is not None:
            self.local.request_sync()  # this store's writes are read locally again soon

    # -- the connection ------------------------------------------------------------------------

    async def _on_connection(
        self,
        call: Callable[[Connection], Awaitable[T]],
        *,
        idempotent: bool = False,
        write: bool = False,
        gated: bool = False,
    ) -> T:
        """Run ``call`` on a pooled connection of the primary, timing the acquire and
        round-trip phases.

        A ``write`` first passes the write gate (``gated``: the caller holds it already).

        An ``idempotent`` call (a read) whose connection drops under it is run once more on
        another connection (the pool has discarded the dropped one): a link cut between calls
        or a server's idle cut then costs the caller nothing. A timeout is not retried (the
        caller's deadline is spent), nor is a write whose connection dropped (it may have
        committed). A locked database (:class:`DatabaseBusy`: nothing was applied) is retried,
        reads and writes alike, with jittered exponential backoff for up to ``timeout``.
        """
        self.check_open()
        t0 = perf_counter()
        retried = False
        delay = 0.005
        while True:
            t1 = None
            try:
                gate = self._gate if write and not gated else contextlib.nullcontext()
                async with gate, self.pool.connection() as conn:
                    t1 = perf_counter()
                    res = await call(conn)
                break
            except DatabaseBusy:
                if perf_counter() + delay - t0 > self.timeout:
                    raise
                self.busy_retries += 1
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, 0.25)
            except DatabaseUnavailable as e:
                if not idempotent or retried or t1 is None or e.code == "TIMEOUT":
                    raise
                retried = True
                self.reads_retried += 1
                log.info("read retried on another connection after %s", e.code)
        assert t1 is not None
        t2 = perf_counter()
        add_phase("acquire", t1 - t0)
        add_phase("round_trip", t2 - t1)
        return res


def _read_only_file_url(url: str) -> str:
    """The ``file:`` URL of ``url`` opened read-only (SQLite's ``mode=ro``)."""
    return url if "mode=ro" in url else f"{url}{'&' if '?' in url else '?'}mode=ro"
