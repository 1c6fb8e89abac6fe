"""The Store: the domain API of an agent-memory database on libSQL.

``await Store.open(url)`` connects (``file:`` embedded by default, ``ws://`` or ``http://`` to sqld
or Turso), migrates the schema, and returns a store whose methods read and write episodes,
patterns, heuristics and embeddings. Every method validates its arguments before any I/O: bad
input raises :class:`~tiered.errors.ValidationError` and writes nothing. Batch methods
(``store_episodes``, ``store_patterns``, ``store_embeddings``) run as one transaction, chunked for
size, all-or-nothing. :func:`open_sync` gives the same API to scripts without an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import numpy as np

from tiered.cache import predicates
from tiered.cache.layer import CacheConfig, CacheLayer
from tiered.compression import Codec
from tiered.db import statements as q
from tiered.db.driver import (
    Connection,
    Result,
    Statement,
    StatementStats,
    Step,
    Value,
    backend_of,
    connect,
    redact_url,
    token_access,
    url_token,
)
from tiered.db.groupcommit import GroupCommit
from tiered.db.router import Router, RouterConfig
from tiered.db.schema import migrate, vector_table_ddl
from tiered.errors import (
    AuthError,
    ConfigError,
    CorruptPayload,
    DatabaseBusy,
    DatabaseUnavailable,
    PayloadTooLarge,
    StoreClosed,
    TieredError,
    UnknownDictionary,
    ValidationError,
)
from tiered.metrics import Metrics
from tiered.model import (
    MAX_MICROS,
    Embedding,
    Episode,
    Heuristic,
    Pattern,
    PatternKind,
    check_id,
    check_metadata_key,
    check_text,
    to_micros,
)
from tiered.pool import Pool, Reactive, SizingPolicy

__all__ = [
    "Clock",
    "PoolConfig",
    "Store",
    "StoreConfig",
    "SyncStore",
    "open_store",
    "open_sync",
    "wall_clock_us",
]

Clock = Callable[[], int]
T = TypeVar("T")


class _Record(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Record)

log = logging.getLogger("tiered.store")
perf_counter = time.perf_counter

#: the phase times of the Store operation running in this task (see tiered.metrics.registry)
_PHASES: ContextVar[dict[str, float] | None] = ContextVar("tiered_phases", default=None)


def _add_phase(name: str, seconds: float) -> None:
    """Add time to a phase of the measured operation running in this task (if any)."""
    acc = _PHASES.get()
    if acc is not None:
        acc[name] = acc.get(name, 0.0) + seconds


def _cache_mark() -> tuple[dict[str, float], float, float] | None:
    """Start timing the cache phase: the phases so far and the time, or None when unmeasured."""
    acc = _PHASES.get()
    return None if acc is None else (acc, sum(acc.values()), perf_counter())


def _cache_done(mark: tuple[dict[str, float], float, float]) -> None:
    """End the cache phase: its time minus the phases nested in it (the loads it ran)."""
    acc, before, t0 = mark
    nested = sum(acc.values()) - before
    acc["cache"] = acc.get("cache", 0.0) + (perf_counter() - t0 - nested)


#: records a dictionary needs: 20 to train on (zstd's minimum) plus 5 held out to judge it
MIN_DICT_RECORDS = 25

#: record types whose payloads get trained dictionaries, and how to sample their stored payloads
_DICT_SAMPLES: dict[str, Statement] = {
    "episodes": q.SAMPLE_EPISODE_PAYLOADS,
    "patterns": q.SAMPLE_PATTERN_PAYLOADS,
    "heuristics": q.SAMPLE_HEURISTIC_PAYLOADS,
}

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def wall_clock_us() -> int:
    """Microseconds since the epoch (the default clock of a Store)."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Settings of a Store (keyword-only; every default is a sensible production value).

    timeout: seconds one database call may take before :class:`DatabaseUnavailable`.
    chunk_bytes: a batch is sent in chunks of about this many bytes of arguments (one transaction).
    max_payload_bytes: largest encoded record; larger ones raise :class:`PayloadTooLarge`.
    compression_level / compression_min_size / compress: the payload codec's settings.
    dictionary_after: after this many records of one type are written through this Store and no
        dictionary exists for the type, train one from a sample of them (0: only on demand, with
        :meth:`Store.train_dictionary`).
    dictionary_size / dictionary_sample: a dictionary's size in bytes, and how many payloads
        train it.
    max_concurrent_writes: write transactions this Store runs at once. SQLite admits one writer
        at a time, so more only queue inside the server while each holds a pooled connection
        (starving reads); and sqld 0.24's write-lock queue loses a waiter's turn when a
        checkpoint runs beside it, which stalls every writer for its 5 s transaction timeout
        (measured: 5-30 s stalls with 10 concurrent writers). Writers beyond the limit wait
        in the Store, holding no connection, and are committed together as one transaction
        (group commit, :mod:`tiered.db.groupcommit`); the wait counts as the ``acquire`` phase.
    group_commit: ``False`` commits every write transaction alone (the baseline
        ``benchmarks/bench_writes.py`` compares against).
    """

    timeout: float = 30.0
    chunk_bytes: int = 1 << 20
    max_payload_bytes: int = 4 << 20
    compress: bool = True
    compression_level: int = 3
    compression_min_size: int = 256
    dictionary_after: int = 1000
    dictionary_size: int = 16384
    dictionary_sample: int = 1000
    max_concurrent_writes: int = 1
    group_commit: bool = True

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError(f"StoreConfig.timeout must be > 0 seconds, got {self.timeout}")
        if self.dictionary_after < 0 or self.dictionary_sample < MIN_DICT_RECORDS:
            raise ConfigError(
                "StoreConfig.dictionary_after must be >= 0, "
                f"dictionary_sample >= {MIN_DICT_RECORDS}"
            )
        if not 1024 <= self.dictionary_size <= 1 << 20:
            raise ConfigError(
                f"StoreConfig.dictionary_size must be within [1 KiB, 1 MiB], "
                f"got {self.dictionary_size}"
            )
        if self.max_concurrent_writes < 1:
            raise ConfigError(
                f"StoreConfig.max_concurrent_writes must be >= 1, got {self.max_concurrent_writes}"
            )
        if self.chunk_bytes < 1024:
            raise ConfigError(f"StoreConfig.chunk_bytes must be >= 1024, got {self.chunk_bytes}")
        if not 1024 <= self.max_payload_bytes <= 64 << 20:
            raise ConfigError(
                f"StoreConfig.max_payload_bytes must be within [1 KiB, 64 MiB], "
                f"got {self.max_payload_bytes}"
            )


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Connection pool settings of a Store (see :class:`tiered.pool.Pool` for each one).

    ``sizing`` is a :mod:`tiered.pool.sizing` policy; ``None`` means :class:`~tiered.pool.Reactive`
    between ``min_size`` and ``max_size``. ``keepalive`` is ignored for ``file:`` databases (an
    embedded connection cannot be cut). ``reuse=False`` opens a new connection for every call and
    closes it after (no pooling: the baseline ``tiered bench --layers`` compares against).
    """

    min_size: int = 1
    max_size: int = 10
    timeout: float = 30.0
    max_waiting: int = 0
    keepalive: float | None = 5.0
    check_after: float = 1.0
    max_idle: float = 600.0
    max_lifetime: float = 3600.0
    reconnect_timeout: float = 300.0
    maintenance_interval: float = 0.5
    sizing: SizingPolicy | None = None
    reuse: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            raise ConfigError(
                "PoolConfig needs 0 <= min_size <= max_size and max_size >= 1, "
                f"got {self.min_size}..{self.max_size}"
            )
        if not self.timeout > 0:
            raise ConfigError(f"PoolConfig.timeout must be > 0, got {self.timeout}")


def _limit(limit: object, name: str = "limit") -> int:
    """Validate a result count: an integer within ``[1, MAX_LIMIT]``.

    A larger one is an error rather than a silently shorter result: a caller that asked for
    5,000 rows and got 1,000 could not tell that rows were missing.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValidationError(name, f"must be an integer, got {type(limit).__name__}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            name, f"must be within [1, {MAX_LIMIT}] (the most one query returns), got {limit}"
        )
    return limit


_key = check_id  # the model's rule for ids, for every key a query takes


def _opt_key(name: str, value: object) -> str | None:
    return None if value is None else _key(name, value)


def _records(name: str, records: object, cls: type[T]) -> list[T]:
    if isinstance(records, str | bytes) or not isinstance(records, Iterable):
        raise ValidationError(name, f"must be a sequence of {cls.__name__}")
    out = list(records)
    for i, r in enumerate(out):
        if not isinstance(r, cls):
            raise ValidationError(
                f"{name}[{i}]", f"must be a {cls.__name__}, got {type(r).__name__}"
            )
    return out


def _last_per_id(records: list[T]) -> list[T]:
    """Keep the last record of each id (a batch writes each id once: last one wins)."""
    seen: dict[str, T] = {}
    for r in records:
        seen.pop(r.id, None)  # type: ignore[attr-defined]
        seen[r.id] = r  # type: ignore[attr-defined]
    return list(seen.values())


class Store:
    """Async domain store over one libSQL database. Create it with :meth:`open`."""

    def __init__(
        self,
        pool: Pool[Connection],
        statements: StatementStats,
        url: str,
        config: StoreConfig,
        clock: Clock,
        cache: CacheLayer,
        router: Router | None = None,
        *,
        token_read_only: bool = False,
    ) -> None:
        self._pool = pool
        # the auth token's own claim says it may not write: writes fail before any I/O
        self._token_read_only = token_read_only
        self._router = router
        # read-your-writes: the primary's position after this store's acknowledged writes (see
        # tiered.db.router); reads need a node at least this new. While a write's position is
        # unknown (its read failed), reads go to the primary.
        self._written_at = 0
        self._position_unknown = False
        self._statements = statements
        self._reads_retried = 0
        self._busy_retries = 0
        self._write_gate = asyncio.Semaphore(config.max_concurrent_writes)
        self._group = GroupCommit(
            self._commit_group,
            self._write_gate,
            config.chunk_bytes,
            max_group=None if config.group_commit else 1,
        )
        self._cache = cache
        self._url = url
        self.config = config
        self.clock = clock
        self.backend = backend_of(url)
        self.codec = Codec(
            level=config.compression_level,
            min_size=config.compression_min_size,
            compress=config.compress,
            max_output_size=config.max_payload_bytes * 4,
        )
        self._closed = False
        # compression dictionaries: a reservoir sample of raw payloads per record type (for the
        # automatic training), how many were written, and the highest table id loaded
        self._samples: dict[str, list[bytes]] = {k: [] for k in _DICT_SAMPLES}
        self._written: dict[str, int] = dict.fromkeys(_DICT_SAMPLES, 0)
        self._rng = random.Random(0x5EED)
        self._training: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._dict_upto = 0
        self._op_seq = 0
        self._phase_dicts: list[dict[str, float]] = []
        self.metrics = Metrics(
            sources={
                "cache": self._cache.snapshot,
                "pool": self._pool.get_stats,
                "codec": lambda: self.codec.stats.as_dict(),
                "statements": self._statement_stats,
                **({"router": router.stats} if router is not None else {}),
            }
        )
        # model name -> (model id, dim); models are immutable once registered, so this never
        # goes stale.
        self._models: dict[str, tuple[int, int]] = {}

    @classmethod
    async def open(
        cls,
        url: str = "file:tiered.db",
        *,
        auth_token: str | None = None,
        config: StoreConfig | None = None,
        cache: CacheConfig | None = None,
        pool: PoolConfig | None = None,
        replicas: Sequence[str] = (),
        routing: RouterConfig | None = None,
        clock: Clock = wall_clock_us,
        timer: Callable[[], float] = time.monotonic,
    ) -> Store:
        """Connect to ``url``, migrate the schema, and return the store.

        ``replicas`` are URLs of read replicas of ``url`` (sqld started with
        ``--primary-grpc-url``; same ``auth_token``): reads are spread over them with
        read-your-writes, writes go to ``url`` (see :mod:`tiered.db.router`; ``routing`` tunes
        it). A replica that is down at open is retried in the background.

        ``cache`` configures the cache layer (default: on, 1 s staleness across processes;
        ``CacheConfig(enabled=False)`` turns it off); ``pool`` the connection pool (default:
        1 to 10 connections, sized reactively, keep-alive every 5 s). ``clock`` gives wall-clock
        microseconds for record timestamps; ``timer`` gives monotonic seconds for cache lifetimes,
        staleness and the pool.

        Raises :class:`ConfigError` for a bad URL, :class:`DatabaseUnavailable` when the server
        cannot be reached, :class:`AuthError` when it rejects ``auth_token``.
        """
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
        config = config or StoreConfig()
        routing = routing or RouterConfig()  # validated before any I/O
        pc = pool or PoolConfig()
        statements = StatementStats()

        def make_pool(node_url: str, role: str) -> Pool[Connection]:
            async def factory() -> Connection:
                conn = await connect(node_url, auth_token=auth_token, timeout=config.timeout)
                conn.stats = statements  # one view of statement reuse across the pools
                return conn

            node_backend = backend_of(node_url)
            return Pool(
                factory,
                name=f"{role}{node_backend}:{redact_url(node_url)}",
                min_size=pc.min_size if pc.reuse else 0,
                max_size=pc.max_size,
                timeout=pc.timeout,
                max_waiting=pc.max_waiting,
                keepalive=None if node_backend == "file" or not pc.reuse else pc.keepalive,
                check_after=pc.check_after,
                max_idle=pc.max_idle,
                max_lifetime=pc.max_lifetime,
                reconnect_timeout=pc.reconnect_timeout,
                connect_timeout=config.timeout,
                maintenance_interval=pc.maintenance_interval,
                sizing=pc.sizing if pc.sizing is not None else Reactive(clock=timer),
                clock=timer,
                reuse=pc.reuse,
            )

        the_pool = make_pool(url, "")
        await the_pool.open()
        layer = CacheLayer(cache or CacheConfig(), timer=timer)
        router: Router | None = None
        try:
            async with the_pool.connection() as conn:
                await migrate(conn, now_us=clock())
                # start the change feed at the present: the cache is empty, nothing to invalidate
                layer.last_change = int((await conn.execute(q.LAST_CHANGE)).rows[0][0] or 0)  # type: ignore[arg-type]
            if replicas:
                nodes = [
                    (f"replica{i}", make_pool(r, f"replica{i}:")) for i, r in enumerate(replicas)
                ]
                # a replica that is down now must not stop the store: its pool reconnects
                for _, p in nodes:
                    await p.open(wait=False)
                router = Router(the_pool, nodes, config=routing, timer=timer, phase=_add_phase)
                router.note_primary(layer.last_change)
                await router.poll()
                router.start()
        except BaseException:
            if router is not None:
                await router.close()
            await the_pool.close()
            raise
        store = cls(
            the_pool,
            statements,
            url,
            config,
            clock,
            layer,
            router,
            token_read_only=token_access(url_token(url, auth_token)) == "ro",
        )
        try:
            await store._load_dictionaries(activate=True)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close the pool's connections; later calls raise :class:`StoreClosed`. Idempotent."""
        if not self._closed:
            await self.settle()  # a dictionary being trained is stored before the pool closes
            self._closed = True
            await self._group.close()
            if self._router is not None:
                await self._router.close()
            await self._pool.close()

    @property
    def pool(self) -> Pool[Connection]:
        """The connection pool (its stats, its utilization series, :meth:`Pool.drain`)."""
        return self._pool

    @property
    def router(self) -> Router | None:
        """The read router when the store has replicas (its per-replica stats), else ``None``."""
        return self._router

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Store {self.backend} {redact_url(self._url)} {state}>"

    def stats(self) -> dict[str, Any]:
        """Statement reuse, codec and cache statistics (the metrics layer builds on these)."""
        c = self.codec.stats
        return {
            "backend": self.backend,
            "cache": self._cache.snapshot(),
            "pool": self._pool.get_stats(),
            "statements": self._statement_stats(),
            **({"router": self._router.stats()} if self._router is not None else {}),
            "codec": {
                **c.as_dict(),
                "dictionaries": self.codec.dictionaries(),
                "active_dictionaries": {k: self.codec.active_dictionary(k) for k in _DICT_SAMPLES},
            },
        }

    def _statement_stats(self) -> dict[str, Any]:
        s = self._statements
        return {
            "executions": s.executions,
            "prepared": s.prepared,
            "reused": s.reused,
            "by_name": dict(s.by_name),
            "reads_retried": self._reads_retried,
            "busy_retries": self._busy_retries,
            "group_commit": self._group.stats.as_dict(),
        }

    # -- plumbing ------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed; open a new one with Store.open()")

    def _check_writable(self) -> None:
        """Refuse a write the server would refuse, before any I/O (and before the cache
        brackets it): the token is read-only."""
        self._check()
        if self._token_read_only:
            raise AuthError(
                "this store's auth token is read-only (its claim a=ro): writes need a "
                "read-write token",
                code="FORBIDDEN",
            )

    async def _on_connection(
        self,
        call: Callable[[Connection], Awaitable[T]],
        *,
        idempotent: bool = False,
        write: bool = False,
    ) -> T:
        """Run ``call`` on a pooled connection, timing the acquire and round-trip phases.

        A ``write`` first passes the Store's write gate (``StoreConfig.max_concurrent_writes``).

        An ``idempotent`` call (a read) whose connection drops under it is run once more on
        another connection (the pool has discarded the dropped one): a link cut between calls
        or a server's idle cut then costs the caller nothing. A timeout is not retried (the
        caller's deadline is spent), nor is a write whose connection dropped (it may have
        committed). A locked database (:class:`DatabaseBusy`: nothing was applied) is retried,
        reads and writes alike, with jittered exponential backoff for up to
        ``StoreConfig.timeout``.
        """
        self._check()
        t0 = perf_counter()
        retried = False
        delay = 0.005
        while True:
            t1 = None
            try:
                gate = self._write_gate if write else contextlib.nullcontext()
                async with gate, self._pool.connection() as conn:
                    t1 = perf_counter()
                    res = await call(conn)
                break
            except DatabaseBusy:
                if perf_counter() + delay - t0 > self.config.timeout:
                    raise
                self._busy_retries += 1
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, 0.25)
            except DatabaseUnavailable as e:
                if not idempotent or retried or t1 is None or e.code == "TIMEOUT":
                    raise
                retried = True
                self._reads_retried += 1
                log.info("read retried on another connection after %s", e.code)
        assert t1 is not None
        t2 = perf_counter()
        _add_phase("acquire", t1 - t0)
        _add_phase("round_trip", t2 - t1)
        return res

    async def _execute(self, stmt: Statement, args: Sequence[Value]) -> Result:
        """One write statement on the primary (and, with replicas, its position after it)."""

        self._check_writable()

        async def run(conn: Connection) -> Result:
            res = await conn.execute(stmt, args)
            await self._note_write(conn)
            return res

        return await self._on_connection(run, write=True)

    async def _rows(
        self, stmt: Statement, args: Sequence[Value], *, primary: bool = False
    ) -> list[tuple[Value, ...]]:
        """Rows of a read: from a replica that has this store's writes and everything the
        cache's change feed has seen, else (or with ``primary``) from the primary."""
        router = self._router
        if router is not None and not primary and not self._position_unknown:
            rows = await router.read(stmt, args, max(self._written_at, self._cache.last_change))
            if rows is not None:
                return rows
        return (
            await self._on_connection(lambda conn: conn.execute(stmt, args), idempotent=True)
        ).rows

    async def _write(self, steps: list[tuple[Statement, Sequence[Value]]]) -> None:
        """One all-or-nothing write transaction, committed with whatever other writes of this
        Store are waiting (group commit). Its phases: the wait for its group, then the group's."""
        if steps:
            self._check_writable()
            done = await self._group.submit(steps)
            _add_phase("acquire", done.waited)
            for name, seconds in done.result.items():
                _add_phase(name, seconds)

    async def _commit_group(self, steps: list[Step]) -> dict[str, float]:
        """Commit a group's transactions as one (in the group's own task); its phase times."""
        phases: dict[str, float] = {}
        _PHASES.set(phases)  # the group's task has a context of its own
        chunk = self.config.chunk_bytes

        async def run(conn: Connection) -> None:
            await conn.transaction(steps, chunk_bytes=chunk)
            await self._note_write(conn)

        await self._on_connection(run)  # the group holds the write gate already
        return phases

    async def _note_write(self, conn: Connection) -> None:
        """With replicas: remember the primary's position after a committed write (on the
        connection that wrote it), so later reads need a node at least that new."""
        router = self._router
        if router is None:
            return
        try:
            position = int((await conn.execute(q.LAST_CHANGE)).rows[0][0] or 0)  # type: ignore[arg-type]
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

    async def _cached_write(
        self, table: str, records: Sequence[Any], write: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``write`` bracketed by the cache's versioning (see :mod:`tiered.cache.layer`)."""
        self._check_writable()
        ticket = self._cache.begin_write(table, [r.id for r in records])
        try:
            await write()
        except BaseException:
            self._cache.end_write(ticket, None, ok=False)
            raise
        self._cache.end_write(ticket, records)
        if table in self._samples:
            self._maybe_train(table)

    async def _sync(self) -> None:
        self._check()
        await self._cache.sync(self._changes)

    async def _changes(self, since: int) -> list[tuple[Value, ...]]:
        # the feed reads the primary: it is the floor replicas are measured against
        rows = await self._rows(q.CHANGES_SINCE, (since, 1000), primary=True)
        if self._router is not None and rows:
            self._router.note_primary(int(rows[-1][0]))  # type: ignore[arg-type]
        return rows

    async def _read(
        self, table: str, key: str, load: Callable[[], Awaitable[T | None]]
    ) -> T | None:
        mark = _cache_mark()
        try:
            await self._sync()
            return await self._cache.read(table, key, load)
        finally:
            if mark is not None:
                _cache_done(mark)

    async def _query(
        self,
        table: str,
        key: tuple[Any, ...],
        predicate: Callable[[Any], bool],
        load: Callable[[], Awaitable[list[Any]]],
        member_id: Callable[[Any], str] = lambda r: r.id,
    ) -> list[Any]:
        mark = _cache_mark()
        try:
            await self._sync()
            return await self._cache.query(table, key, predicate, load, member_id)
        finally:
            if mark is not None:
                _cache_done(mark)

    async def _one(
        self, stmt: Statement, key: str, build: Callable[[Sequence[Value]], T]
    ) -> T | None:
        rows = await self._rows(stmt, (key,))
        return (await self._build(rows[:1], build))[0] if rows else None

    # -- compression dictionaries --------------------------------------------------------------

    async def _load_dictionaries(self, *, activate: bool = False) -> int:
        """Load dictionaries added to the table since the last load; returns how many.

        With ``activate`` (at open) the newest of each record type is used for new frames;
        otherwise (a frame named one we lacked) they only become decodable.
        """
        rows = await self._rows(q.LOAD_DICTIONARIES, (self._dict_upto,))
        for dict_id, kind, data in rows:
            did = int(dict_id)  # type: ignore[arg-type]
            self._dict_upto = max(self._dict_upto, did)
            if not self.codec.has_dictionary(did):
                use = activate or self.codec.active_dictionary(str(kind)) is None
                self.codec.add_dictionary(did, str(kind), bytes(data), activate=use)  # type: ignore[arg-type]
        return len(rows)

    async def _build(self, rows: Sequence[Sequence[Value]], build: Callable[[Any], T]) -> list[T]:
        """Decode rows; a frame naming a dictionary another process trained loads the table
        once and retries."""
        t0 = perf_counter()
        try:
            out = [build(r) for r in rows]
        except UnknownDictionary:
            await self._load_dictionaries()
            t0 = perf_counter()
            out = [build(r) for r in rows]
        _add_phase("decode", perf_counter() - t0)
        return out

    def _sample(self, kind: str, raws: list[bytes]) -> None:
        """Reservoir-sample raw payloads of ``kind`` while it has no dictionary."""
        if not self.config.dictionary_after or self.codec.active_dictionary(kind) is not None:
            return
        sample, cap = self._samples[kind], self.config.dictionary_sample
        for raw in raws:
            self._written[kind] += 1
            if len(sample) < cap:
                sample.append(raw)
            else:
                j = self._rng.randrange(self._written[kind])
                if j < cap:
                    sample[j] = raw

    def _maybe_train(self, kind: str) -> None:
        """Start training ``kind``'s dictionary in the background once enough was written.

        The write that crossed the threshold does not wait for it (training takes ~0.1 s and runs
        in a thread); :meth:`settle` waits for it.
        """
        after = self.config.dictionary_after
        if (
            not after
            or self._written[kind] < after
            or kind in self._training
            or self.codec.active_dictionary(kind) is not None
        ):
            return
        samples, self._samples[kind] = self._samples[kind], []
        self._training.add(kind)

        async def train() -> None:
            try:
                await self._train(kind, samples)
            except (ValueError, TieredError) as e:
                # never fails a write; tries again after as many more records
                log.warning("automatic dictionary training for %s failed: %s", kind, e)
                self._written[kind] = 0

        task = asyncio.get_running_loop().create_task(train(), name=f"tiered-train-{kind}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for background work: dictionary training and early cache refreshes."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._cache.settle()

    async def train_dictionary(self, kind: str, *, sample: int | None = None) -> int | None:
        """Train a zstd dictionary for a record type on its most recently stored payloads.

        ``kind`` is ``"episodes"``, ``"patterns"`` or ``"heuristics"``; ``sample`` how many
        recent payloads train it (default ``StoreConfig.dictionary_sample``). The dictionary is
        stored (the ``dictionaries`` table gives its id) and new frames of that type use it; frames
        written before keep naming the dictionary they were compressed with, so they still
        decode. Returns the new id, or ``None`` when the dictionary would not shrink held-out
        records by at least 5 % (then nothing is stored). Raises :class:`ValidationError` for an
        unknown kind, fewer than :data:`MIN_DICT_RECORDS` stored records, or records too uniform
        for zstd to train on.
        """
        if not isinstance(kind, str) or kind not in _DICT_SAMPLES:
            raise ValidationError("kind", f"must be one of {', '.join(_DICT_SAMPLES)}")
        n = self.config.dictionary_sample if sample is None else sample
        if isinstance(n, bool) or not isinstance(n, int) or n < MIN_DICT_RECORDS:
            raise ValidationError("sample", f"must be an integer >= {MIN_DICT_RECORDS}")
        rows = await self._rows(_DICT_SAMPLES[kind], (n,))
        raws = [self.codec.decode(r[0], kind=kind) for r in rows]  # type: ignore[arg-type]
        if len(raws) < MIN_DICT_RECORDS:
            raise ValidationError(
                "kind",
                f"needs at least {MIN_DICT_RECORDS} stored {kind} to train, found {len(raws)}",
            )
        try:
            return await self._train(kind, raws)
        except TieredError:
            raise
        except ValueError as e:  # zstd found too little to learn from
            raise ValidationError("kind", f"cannot train a dictionary for {kind}: {e}") from e

    async def _train(self, kind: str, raws: list[bytes]) -> int | None:
        self._training.add(kind)  # (already there when started by _maybe_train)
        try:
            cut = max(1, len(raws) // 5)
            held, train = raws[:cut], raws[cut:]
            data = await asyncio.to_thread(
                self.codec.train, train, size=self.config.dictionary_size
            )
            plain, primed = self.codec.measure(held), self.codec.measure(held, data)
            if primed > 0.95 * plain:
                log.info("dictionary for %s not kept: %d vs %d bytes held out", kind, primed, plain)
                return None
            rows = (
                await self._execute(
                    q.INSERT_DICTIONARY,
                    (kind, data, len(train), sum(map(len, train)), self.clock()),
                )
            ).rows
            dict_id = int(rows[0][0])  # type: ignore[arg-type]
            self.codec.add_dictionary(dict_id, kind, data, activate=True)
            log.info(
                "dictionary %d for %s: held-out records %d -> %d bytes",
                dict_id,
                kind,
                plain,
                primed,
            )
            return dict_id
        finally:
            self._training.discard(kind)

    def _frames(self, name: str, docs: Sequence[Any]) -> list[bytes]:
        """Encoded frames of ``docs``; an oversized one raises PayloadTooLarge naming its index."""
        t0 = perf_counter()
        try:
            return self._encode_frames(name, docs)
        finally:
            _add_phase("encode", perf_counter() - t0)

    def _encode_frames(self, name: str, docs: Sequence[Any]) -> list[bytes]:
        limit = self.config.max_payload_bytes
        raws = [self.codec.serialize(d) for d in docs]
        for i, raw in enumerate(raws):
            if len(raw) > self.codec.max_output_size:
                raise PayloadTooLarge(
                    f"{name}[{i}]", f"record serializes to {len(raw)} bytes, above {limit * 4}"
                )
        frames = self.codec.encode_many(raws, kind=name)
        for i, frame in enumerate(frames):
            if len(frame) > limit:
                raise PayloadTooLarge(
                    f"{name}[{i}]",
                    f"encoded record is {len(frame)} bytes, above max_payload_bytes {limit}",
                )
        if name in self._samples:
            self._sample(name, raws)
        return frames

    # -- episodes ------------------------------------------------------------------------------

    def _episode_steps(self, episodes: list[Episode]) -> list[tuple[Statement, Sequence[Value]]]:
        # Encode everything first (this is where bad payloads fail, before any I/O), then order
        # the steps by statement so each shape is bound row after row.
        now = self.clock()
        upserts: list[tuple[Statement, Sequence[Value]]] = []
        clears: list[tuple[Statement, Sequence[Value]]] = []
        metas: list[tuple[Statement, Sequence[Value]]] = []
        for ep, payload in zip(episodes, self._frames("episodes", episodes), strict=True):
            ctx = ep.context
            upserts.append(
                (
                    q.UPSERT_EPISODE,
                    (
                        ep.id,
                        ep.task_type,
                        ctx.domain,
                        ctx.language,
                        ep.start_time,
                        ep.end_time,
                        ep.outcome_kind,
                        ep.reward,
                        now,
                        now,
                        payload,
                    ),
                )
            )
            clears.append((q.CLEAR_EPISODE_METADATA, (ep.id,)))
            metas.extend(
                (q.INSERT_EPISODE_METADATA, (ep.id, k, v, ep.start_time))
                for k, v in ep.metadata.items()
            )
        return upserts + clears + metas

    def _decoded(self, row_id: Value, frame: Value, build: Callable[[Any], R], kind: str) -> R:
        """Decode a payload frame and rebuild its record; anything malformed is CorruptPayload,
        and so is a record whose id is not its row's (a frame damaged or written elsewhere)."""
        doc = self.codec.decode_doc(frame, kind=kind)  # type: ignore[arg-type]
        try:
            record = build(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CorruptPayload(f"stored record does not decode: {type(e).__name__}: {e}") from e
        if record.id != row_id:
            raise CorruptPayload(f"a stored {kind[:-1]} frame holds another id than its row's")
        return record

    def _episode(self, row: Sequence[Value]) -> Episode:
        row_id, outcome, payload = row
        return self._decoded(row_id, payload, lambda d: Episode.from_doc(d, outcome), "episodes")  # type: ignore[arg-type]

    async def store_episode(self, episode: Episode) -> None:
        """Insert or replace one episode (its ``created_at`` is kept on update)."""
        await self.store_episodes([episode])

    async def store_episodes(self, episodes: Iterable[Episode]) -> int:
        """Insert or replace many episodes in one transaction; returns how many were written.

        If two items share an id the last one wins. All or nothing: on any error no episode of the
        batch is written.
        """
        eps = _last_per_id(_records("episodes", episodes, Episode))
        steps = self._episode_steps(eps)  # encodes (and may reject) before any I/O
        await self._cached_write("episodes", eps, lambda: self._write(steps))
        return len(eps)

    async def get_episode(self, episode_id: str) -> Episode | None:
        """The episode with ``episode_id``, or ``None``."""
        eid = _key("episode_id", episode_id)
        return await self._read(
            "episodes", eid, lambda: self._one(q.GET_EPISODE, eid, self._episode)
        )

    async def get_episodes(self, episode_ids: Iterable[str]) -> list[Episode | None]:
        """The episodes for ``episode_ids``, in the same order, ``None`` where missing."""
        if isinstance(episode_ids, str) or not isinstance(episode_ids, Iterable):
            raise ValidationError("episode_ids", "must be a sequence of ids")
        ids = [_key(f"episode_ids[{i}]", x) for i, x in enumerate(episode_ids)]
        await self._sync()
        found, unique = self._cache.lookup_many("episodes", dict.fromkeys(ids))
        token = self._cache.versions["episodes"].token()
        loaded: dict[str, Episode | None] = dict.fromkeys(unique)
        try:
            for start in range(0, len(unique), q.MAX_IN):
                chunk = unique[start : start + q.MAX_IN]
                n = 1 << (len(chunk) - 1).bit_length()  # pad to a power of two: few shapes
                padded = chunk + [chunk[-1]] * (n - len(chunk))
                rows = await self._rows(q.episodes_by_ids(n), padded)
                for ep in await self._build(rows, self._episode):
                    loaded[ep.id] = ep
        except DatabaseUnavailable:
            stale = self._cache.stale_many("episodes", unique)  # serve-stale, if configured
            if stale is None:
                raise
            found.update(stale)
            return [found.get(i) for i in ids]
        if loaded:
            self._cache.fill_many("episodes", loaded, token)
            found.update(loaded)
        return [found.get(i) for i in ids]

    async def delete_episode(self, episode_id: str) -> bool:
        """Delete an episode (and its metadata); ``True`` if it existed."""
        return await self._delete("episodes", q.DELETE_EPISODE, _key("episode_id", episode_id))

    async def _delete(self, table: str, stmt: Statement, key: str) -> bool:
        self._check_writable()
        ticket = self._cache.begin_write(table, [key])
        try:
            existed = (await self._execute(stmt, (key,))).rows_affected > 0
        except BaseException:
            self._cache.end_write(ticket, None, ok=False)
            raise
        self._cache.end_write(ticket, None, deleted=[key] if existed else [])
        return existed

    async def query_episodes_since(
        self, t: int | datetime, limit: int = DEFAULT_LIMIT
    ) -> list[Episode]:
        """Episodes that started at or after ``t`` (µs or aware datetime), oldest first.

        ``limit`` defaults to 100; at most :data:`MAX_LIMIT` (1000), a larger one raises
        :class:`ValidationError`. To read on, pass the last episode's ``start_time`` again and
        skip the ids already seen (episodes that share a start time are ordered by id).
        """
        if isinstance(t, datetime):
            t = to_micros(t)
        if isinstance(t, bool) or not isinstance(t, int):
            raise ValidationError("t", "must be integer microseconds since the epoch or a datetime")
        if not 0 <= t <= MAX_MICROS:
            raise ValidationError(
                "t", f"must be within [0, {MAX_MICROS}] microseconds since the epoch, got {t}"
            )
        n, t0 = _limit(limit), t
        return await self._query(
            "episodes",
            ("query_episodes_since", t0, n),
            predicates.episodes_since(t0),
            lambda: self._episodes(q.EPISODES_SINCE, (t0, n)),
        )

    async def _episodes(self, stmt: Statement, args: Sequence[Value]) -> list[Episode]:
        return await self._build(await self._rows(stmt, args), self._episode)

    async def query_episodes_by_metadata(
        self, key: str, value: str, limit: int = DEFAULT_LIMIT
    ) -> list[Episode]:
        """Episodes whose metadata maps ``key`` to exactly ``value``, newest first.

        ``value`` is matched literally (``%`` and ``_`` are not wildcards).
        """
        check_metadata_key("key", key)
        check_text("value", value, empty=True)
        n = _limit(limit)
        return await self._query(
            "episodes",
            ("query_episodes_by_metadata", key, value, n),
            predicates.episodes_by_metadata(key, value),
            lambda: self._episodes(q.EPISODES_BY_METADATA, (key, value, n)),
        )

    async def query_episodes(
        self,
        *,
        task_type: str | None = None,
        domain: str | None = None,
        language: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[Episode]:
        """Episodes matching every given filter, newest first."""
        filters = [
            _opt_key("task_type", task_type),
            _opt_key("domain", domain),
            _opt_key("language", language),
        ]
        stmt = q.episodes_filtered(*(f is not None for f in filters))
        args: list[Value] = [f for f in filters if f is not None]
        n = _limit(limit)
        args.append(n)
        return await self._query(
            "episodes",
            ("query_episodes", task_type, domain, language, n),
            predicates.episodes_matching(task_type, domain, language),
            lambda: self._episodes(stmt, args),
        )

    # -- patterns ------------------------------------------------------------------------------

    def _pattern(self, row: Sequence[Value]) -> Pattern:
        row_id, kind, payload = row
        return self._decoded(row_id, payload, lambda d: Pattern.from_doc(d, kind), "patterns")  # type: ignore[arg-type]

    async def store_pattern(self, pattern: Pattern) -> None:
        """Insert or replace one pattern."""
        await self.store_patterns([pattern])

    async def store_patterns(self, patterns: Iterable[Pattern]) -> int:
        """Insert or replace many patterns in one transaction (all or nothing)."""
        ps = _last_per_id(_records("patterns", patterns, Pattern))
        now = self.clock()
        frames = self._frames("patterns", ps)
        steps: list[tuple[Statement, Sequence[Value]]] = [
            (
                q.UPSERT_PATTERN,
                (
                    p.id,
                    p.kind.value,
                    p.domain,
                    p.success_rate,
                    p.effectiveness,
                    p.occurrence_count,
                    now,
                    now,
                    f,
                ),
            )
            for p, f in zip(ps, frames, strict=True)
        ]
        await self._cached_write("patterns", ps, lambda: self._write(steps))
        return len(ps)

    async def get_pattern(self, pattern_id: str) -> Pattern | None:
        pid = _key("pattern_id", pattern_id)
        return await self._read(
            "patterns", pid, lambda: self._one(q.GET_PATTERN, pid, self._pattern)
        )

    async def delete_pattern(self, pattern_id: str) -> bool:
        return await self._delete("patterns", q.DELETE_PATTERN, _key("pattern_id", pattern_id))

    async def search_patterns(
        self,
        *,
        kind: PatternKind | str | None = None,
        domain: str | None = None,
        min_success_rate: float = 0.0,
        limit: int = DEFAULT_LIMIT,
    ) -> list[Pattern]:
        """Patterns matching the filters, highest success rate first."""
        if kind is not None:
            try:
                kind = PatternKind(kind)
            except ValueError:
                allowed = ", ".join(k.value for k in PatternKind)
                raise ValidationError("kind", f"must be one of {allowed}, got {kind!r}") from None
        _opt_key("domain", domain)
        if (
            isinstance(min_success_rate, bool)
            or not isinstance(min_success_rate, int | float)
            or not (0.0 <= min_success_rate <= 1.0)
        ):
            raise ValidationError("min_success_rate", "must be a number within [0, 1]")
        stmt = q.patterns_filtered(kind is not None, domain is not None)
        args: list[Value] = [a for a in (kind and kind.value, domain) if a is not None]
        n, floor = _limit(limit), float(min_success_rate)
        args += [floor, n]
        matches = predicates.patterns_matching(kind, domain, floor)

        async def load() -> list[Pattern]:
            return await self._build(await self._rows(stmt, args), self._pattern)

        return await self._query(
            "patterns", ("search_patterns", kind, domain, floor, n), matches, load
        )

    # -- heuristics ----------------------------------------------------------------------------

    def _heuristic(self, row: Sequence[Value]) -> Heuristic:
        return self._decoded(row[0], row[1], Heuristic.from_doc, "heuristics")

    async def store_heuristic(self, heuristic: Heuristic) -> None:
        """Insert or replace one heuristic."""
        await self.store_heuristics([heuristic])

    async def store_heuristics(self, heuristics: Iterable[Heuristic]) -> int:
        """Insert or replace many heuristics in one transaction (all or nothing)."""
        hs = _last_per_id(_records("heuristics", heuristics, Heuristic))
        now = self.clock()
        steps: list[tuple[Statement, Sequence[Value]]] = [
            (q.UPSERT_HEURISTIC, (h.id, h.confidence, now, now, f))
            for h, f in zip(hs, self._frames("heuristics", hs), strict=True)
        ]
        await self._cached_write("heuristics", hs, lambda: self._write(steps))
        return len(hs)

    async def get_heuristic(self, heuristic_id: str) -> Heuristic | None:
        hid = _key("heuristic_id", heuristic_id)
        return await self._read(
            "heuristics", hid, lambda: self._one(q.GET_HEURISTIC, hid, self._heuristic)
        )

    async def delete_heuristic(self, heuristic_id: str) -> bool:
        return await self._delete(
            "heuristics", q.DELETE_HEURISTIC, _key("heuristic_id", heuristic_id)
        )

    async def list_heuristics(
        self, *, min_confidence: float = 0.0, limit: int = DEFAULT_LIMIT
    ) -> list[Heuristic]:
        """Heuristics with confidence >= ``min_confidence``, most confident first."""
        if (
            isinstance(min_confidence, bool)
            or not isinstance(min_confidence, int | float)
            or not (0.0 <= min_confidence <= 1.0)
        ):
            raise ValidationError("min_confidence", "must be a number within [0, 1]")
        floor, n = float(min_confidence), _limit(limit)

        async def load() -> list[Heuristic]:
            rows = await self._rows(q.HEURISTICS_BY_CONFIDENCE, (floor, n))
            return await self._build(rows, self._heuristic)

        return await self._query(
            "heuristics", ("list_heuristics", floor, n), lambda h: h.confidence >= floor, load
        )

    # -- embeddings ----------------------------------------------------------------------------

    async def _model(self, model: str, dim: int | None) -> tuple[int, int] | None:
        """``(model id, dim)`` of a model, registering it with ``dim`` if given and new."""
        known = self._models.get(model)
        if known is None:
            # the model registry is read from the primary: it is small, read once per model,
            # and a replica may not have a model registered a moment ago
            rows = await self._rows(q.GET_MODEL, (model,), primary=True)
            if not rows and dim is not None:
                mark = (q.LOG_MARK, ("embedding_models", model, self.clock()))
                await self._write([(q.REGISTER_MODEL, (model, dim)), mark])
                rows = await self._rows(q.GET_MODEL, (model,), primary=True)
            if not rows:
                return None
            known = (int(rows[0][0]), int(rows[0][1]))  # type: ignore[arg-type]
            if self.backend != "file" and not self._token_read_only:
                # libSQL's ANN index needs a fixed-dimension column: one table per model.
                ddl = vector_table_ddl(*known)
                await self._write(
                    [(Statement("vector_table_ddl", sql, reuse=False), ()) for sql in ddl]
                    + [(q.LOG_MARK, ("embedding_models", model, self.clock()))]
                )
            self._models[model] = known
        return known

    def _embedding(self, row: Sequence[Value]) -> Embedding:
        eid, owner_id, owner_kind, model, blob = row
        vec = array("f")
        vec.frombytes(blob)  # type: ignore[arg-type]
        return Embedding(eid, owner_id, owner_kind, model, vec)  # type: ignore[arg-type]

    async def store_embedding(self, embedding: Embedding) -> None:
        """Insert or replace one embedding."""
        await self.store_embeddings([embedding])

    async def store_embeddings(self, embeddings: Iterable[Embedding]) -> int:
        """Insert or replace many embeddings in one transaction (all or nothing).

        A model's dimension is fixed by its first embedding; a vector of another dimension raises
        :class:`ValidationError` naming the model, before anything is written.
        """
        es = _last_per_id(_records("embeddings", embeddings, Embedding))
        self._check_writable()  # before the model registry is read
        dims: dict[str, int] = {}
        for i, e in enumerate(es):
            if dims.setdefault(e.model, e.dim) != e.dim:
                raise ValidationError(
                    f"embeddings[{i}].vector",
                    f"model {e.model!r} has dimension {dims[e.model]} in this batch, got {e.dim}",
                )
        for model, dim in dims.items():  # check every model before registering any
            known = self._models.get(model) or await self._model(model, None)
            if known is not None and known[1] != dim:
                raise ValidationError(
                    "vector", f"model {model!r} has dimension {known[1]}, got {dim}"
                )
        ids = {m: (await self._model(m, d))[0] for m, d in dims.items()}  # type: ignore[index]
        now = self.clock()
        steps: list[tuple[Statement, Sequence[Value]]] = [
            (
                q.UPSERT_EMBEDDING,
                (e.id, e.owner_id, e.owner_kind, ids[e.model], e.vector.tobytes(), now, now),
            )
            for e in es
        ]
        await self._cached_write("embeddings", es, lambda: self._write(steps))
        return len(es)

    async def get_embedding(self, embedding_id: str) -> Embedding | None:
        eid = _key("embedding_id", embedding_id)
        return await self._read(
            "embeddings", eid, lambda: self._one(q.GET_EMBEDDING, eid, self._embedding)
        )

    async def delete_embedding(self, embedding_id: str) -> bool:
        return await self._delete(
            "embeddings", q.DELETE_EMBEDDING, _key("embedding_id", embedding_id)
        )

    async def nearest(
        self,
        vector: Sequence[float] | array,
        k: int = 10,
        *,
        owner_kind: str | None = None,
        model: str | None = None,
        exact: bool = False,
    ) -> list[tuple[Embedding, float]]:
        """The ``k`` embeddings closest to ``vector`` by cosine distance, closest first.

        Searches ``model`` (or every model of the vector's dimension; a model of another
        dimension raises :class:`ValidationError`). On sqld the candidates come from libSQL's
        vector index (over-fetched, then reranked), or from an exact scan in the server with
        ``exact=True`` or when the index is small; the embedded backend always searches exactly.
        Distances are recomputed in float64 and ties broken by id, so backends agree.
        """
        probe = Embedding("probe", "probe", "probe", "probe", vector).vector  # validates
        k = _limit(k, "k")
        _opt_key("owner_kind", owner_kind)
        if not isinstance(exact, bool):
            raise ValidationError("exact", f"must be a bool, got {type(exact).__name__}")
        dim = len(probe)
        if model is not None:
            known = await self._model(_key("model", model), None)
            if known is None:
                return []
            if known[1] != dim:
                raise ValidationError(
                    "vector", f"model {model!r} has dimension {known[1]}, got {dim}"
                )

        async def load() -> list[tuple[Embedding, float]]:
            if model is not None:
                model_ids = [self._models[model][0]]
            else:
                rows = await self._rows(q.MODELS_BY_DIM, (dim,), primary=True)
                model_ids = [int(r[0]) for r in rows]  # type: ignore[arg-type]
                for _, name in rows:
                    await self._model(name, None)  # type: ignore[arg-type]
            candidates: list[Embedding] = []
            for mid in model_ids:
                candidates += await self._candidates(mid, probe, k, owner_kind, exact)
            return _rank(candidates, probe, k)

        def matches(e: Embedding) -> bool:
            return (
                e.dim == dim
                and (model is None or e.model == model)
                and (owner_kind is None or e.owner_kind == owner_kind)
            )

        return await self._query(
            "embeddings",
            ("nearest", probe.tobytes(), k, owner_kind, model, exact),
            matches,
            load,
            member_id=lambda r: r[0].id,
        )

    async def _candidates(
        self, model_id: int, probe: array, k: int, owner_kind: str | None, exact: bool
    ) -> list[Embedding]:
        if self.backend == "file":
            stmt = q.EMBEDDINGS_OF_MODEL if owner_kind is None else q.EMBEDDINGS_OF_MODEL_KIND
            args: list[Value] = [model_id] if owner_kind is None else [model_id, owner_kind]
            return [self._embedding(r) for r in await self._rows(stmt, args)]
        blob = probe.tobytes()
        if not exact:
            # Over-fetch from the ANN index and rerank exactly. An index that yields fewer
            # candidates than asked is small (an exact scan is cheap) or degraded (libSQL's
            # DiskANN loses nodes when tiny graphs are rewritten): fall back to exact then.
            fetch = min(MAX_LIMIT, max(64, (4 if owner_kind is None else 8) * k))
            rows = await self._rows(q.vector_nearest(model_id), (blob, fetch))
            if len(rows) >= fetch:
                found = [self._embedding(r) for r in rows]
                if owner_kind is not None:
                    found = [e for e in found if e.owner_kind == owner_kind]
                if len(found) >= k:
                    return found
        args = [blob, model_id, min(MAX_LIMIT, 2 * k)]
        if owner_kind is not None:
            args.append(owner_kind)
        rows = await self._rows(q.nearest_exact(owner_kind is not None), args)
        return [self._embedding(r) for r in rows]


def _rank(cands: list[Embedding], probe: array, k: int) -> list[tuple[Embedding, float]]:
    if not cands:
        return []
    p = np.frombuffer(probe, dtype=np.float32).astype(np.float64)
    m = np.stack([np.frombuffer(e.vector, dtype=np.float32) for e in cands]).astype(np.float64)
    norms = np.linalg.norm(m, axis=1) * np.linalg.norm(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(norms > 0, (m @ p) / np.where(norms > 0, norms, 1.0), 0.0)
    dist = [1.0 - float(s) for s in sim]
    order = sorted(range(len(cands)), key=lambda i: (dist[i], cands[i].id))
    return [(cands[i], dist[i] if math.isfinite(dist[i]) else 1.0) for i in order[:k]]


#: Store operations measured by ``store.metrics`` (latency, phases, errors).
OPERATIONS = (
    "store_episode",
    "store_episodes",
    "get_episode",
    "get_episodes",
    "delete_episode",
    "query_episodes_since",
    "query_episodes_by_metadata",
    "query_episodes",
    "store_pattern",
    "store_patterns",
    "get_pattern",
    "delete_pattern",
    "search_patterns",
    "store_heuristic",
    "store_heuristics",
    "get_heuristic",
    "delete_heuristic",
    "list_heuristics",
    "store_embedding",
    "store_embeddings",
    "get_embedding",
    "delete_embedding",
    "nearest",
    "train_dictionary",
)


def _measured(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a Store method: time it, collect its phases, count its errors.

    An operation called from inside another (``store_episode`` -> ``store_episodes``) is part of
    the outer one and is not recorded twice.
    """

    @functools.wraps(fn)
    async def op(self: Store, *args: Any, **kwargs: Any) -> Any:
        if _PHASES.get() is not None:
            return await fn(self, *args, **kwargs)
        metrics = self.metrics
        self._op_seq += 1
        if self._op_seq % metrics.phase_every:
            # not sampled for phases: time and errors only
            t0 = perf_counter()
            try:
                result = await fn(self, *args, **kwargs)
            except BaseException as e:
                metrics.observe(name, perf_counter() - t0, None, type(e).__name__)
                raise
            metrics.observe(name, perf_counter() - t0)
            return result
        # phase dicts are reused (a fresh dict per operation made the garbage collector run
        # often enough to show in the p99 of cached reads)
        free = self._phase_dicts
        acc: dict[str, float] = free.pop() if free else {}
        token = _PHASES.set(acc)
        t0 = perf_counter()
        try:
            result = await fn(self, *args, **kwargs)
        except BaseException as e:
            metrics.observe(name, perf_counter() - t0, acc, type(e).__name__)
            acc.clear()
            free.append(acc)
            raise
        finally:
            _PHASES.reset(token)
        metrics.observe(name, perf_counter() - t0, acc)
        acc.clear()
        free.append(acc)
        return result

    return op


for _name in OPERATIONS:
    setattr(Store, _name, _measured(_name, getattr(Store, _name)))


# ---------------------------------------------------------------------------------------------
# sync entry point
# ---------------------------------------------------------------------------------------------


class SyncStore:
    """Blocking facade over :class:`Store` for scripts and notebooks.

    The store lives on a private event loop in a daemon thread, so this works both where no loop
    runs and inside Jupyter's running loop. Every coroutine method of :class:`Store` is exposed
    with the same name and arguments (forwarded, not re-implemented); attributes such as
    ``config`` and ``stats()`` pass through.
    """

    def __init__(self, url: str = "file:tiered.db", **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tiered-sync", daemon=True
        )
        self._thread.start()
        try:
            self._store: Store = self._run(Store.open(url, **kwargs))
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop closed under us (close() from another thread)
            coro.close()
            raise StoreClosed("the store is closed; open a new one with open_sync()") from None
        return fut.result()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if asyncio.iscoroutinefunction(attr):

            def call(*args: Any, **kwargs: Any) -> Any:
                return self._run(attr(*args, **kwargs))

            call.__name__ = name
            call.__doc__ = attr.__doc__
            return call
        return attr

    def close(self) -> None:
        """Close the store and stop its loop thread. Idempotent."""
        if not self._loop.is_closed():
            try:
                self._run(self._store.close())
            finally:
                self._stop()

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncStore of {self._store!r}>"


async def open_store(url: str = "file:tiered.db", **kwargs: Any) -> Store:
    """Shorthand for :meth:`Store.open`."""
    return await Store.open(url, **kwargs)


def open_sync(url: str = "file:tiered.db", **kwargs: Any) -> SyncStore:
    """Open a :class:`SyncStore` (blocking API) on ``url``; arguments as for :meth:`Store.open`."""
    return SyncStore(url, **kwargs)
