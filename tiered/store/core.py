"""The Store: the domain API of an agent-memory database on libSQL.

``await Store.open(url)`` connects (``file:`` embedded by default, ``ws://`` or ``http://`` to sqld
or Turso), migrates the schema, and returns a store whose methods read and write episodes,
patterns, heuristics and embeddings. Every method validates its arguments before any I/O: bad
input raises :class:`~tiered.errors.ValidationError` and writes nothing. Batch methods
(``store_episodes``, ``store_patterns``, ``store_embeddings``) run as one transaction, chunked for
size, all-or-nothing.

The Store composes the layers: the cache (:mod:`tiered.cache`), the codec and its dictionaries
(:mod:`tiered.store.dictionaries`), record kinds (:mod:`tiered.store.records`), embeddings
(:mod:`tiered.store.vectors`) and the database (:class:`tiered.db.Database`: pools, replicas,
the write gate). Every public method is measured (:mod:`tiered.metrics.phases`).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from tiered.cache import predicates
from tiered.cache.config import CacheConfig
from tiered.cache.layer import CacheLayer
from tiered.compression import Codec
from tiered.db import statements as q
from tiered.db.database import Database
from tiered.db.driver import Row, Statement, Value, as_int, redact_url
from tiered.db.groupcommit import WriteOrder
from tiered.db.router import Router, RouterConfig
from tiered.errors import DatabaseUnavailable, ValidationError
from tiered.metrics import Metrics
from tiered.metrics.access import AccessLog, flagged
from tiered.metrics.phases import add_phase, cache_done, cache_mark, measure_all
from tiered.model import (
    Embedding,
    Episode,
    Heuristic,
    Pattern,
    PatternKind,
    check_id,
    check_metadata_key,
    check_micros,
    check_text,
)
from tiered.pool import Pool, PoolConfig
from tiered.store import traffic
from tiered.store.config import (
    DEFAULT_LIMIT,
    Clock,
    StoreConfig,
    check_limit,
    check_records,
    last_per_id,
    wall_clock_us,
)
from tiered.store.dictionaries import Dictionaries
from tiered.store.reads import Reads
from tiered.store.records import (
    EMBEDDINGS,
    EPISODES,
    HEURISTICS,
    PATTERNS,
    PAYLOAD_KINDS,
    RecordKind,
    approx_size,
    decode_rows,
    encode_sliced,
)
from tiered.store.vectors import Vectors, check_search

__all__ = ["OPERATIONS", "Store"]

T = TypeVar("T")
R = TypeVar("R", Episode, Pattern, Heuristic, Embedding)
perf_counter = time.perf_counter
_key = check_id  # the model's rule for ids, for every key a query takes


def _opt_key(name: str, value: object) -> str | None:
    return None if value is None else _key(name, value)


def _unit(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValidationError(name, "must be a number within [0, 1]")
    return float(value)


class Store:
    """Async domain store over one libSQL database. Create it with :meth:`open`."""

    def __init__(self, db: Database, config: StoreConfig, clock: Clock, cache: CacheLayer) -> None:
        self._db = db
        self._cache = cache
        self.config = config
        self.clock = clock
        self.backend = db.backend
        self.codec = Codec(
            level=config.compression_level,
            min_size=config.compression_min_size,
            compress=config.compress,
            max_output_size=config.max_payload_bytes * 4,
        )
        self._dicts = Dictionaries(db, self.codec, config, clock=clock)
        self._reads = Reads(db, cache)
        self._rows = self._reads.rows
        self._sync = self._reads.sync
        self._vectors = Vectors(db, read=self._rows)
        self._order = WriteOrder()
        self._access = AccessLog.of(config.access_log, config.access_sample, sizeof=approx_size)
        #: the learning pool's persistence and planner (``PoolConfig(sizing=Learning())``)
        self.traffic: traffic.TrafficLearner | None = None
        self._op_seq = 0  # (tiered.metrics.phases.measured)
        self._phase_dicts: list[dict[str, float]] = []
        router = db.router
        self.metrics = Metrics(
            sources={
                "cache": self._cache.get_stats,
                "pool": db.pool.get_stats,
                "codec": self.codec.get_stats,
                "statements": db.get_stats,
                **({"router": router.get_stats} if router is not None else {}),
            }
        )

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
        local_replica: str | Path | None = None,
        sync_interval: float = 1.0,
        clock: Clock = wall_clock_us,
        timer: Callable[[], float] = time.monotonic,
    ) -> Store:
        """Connect to ``url``, migrate the schema, and return the store.

        ``replicas`` are URLs of read replicas of ``url`` (sqld started with
        ``--primary-grpc-url``; same ``auth_token``): reads are spread over them with
        read-your-writes, writes go to ``url`` (see :mod:`tiered.db.router`; ``routing`` tunes
        it). A replica that is down at open is retried in the background. ``local_replica``: a
        file that holds an embedded replica of ``url`` (``pip install 'tiered[replica]'``),
        synced every ``sync_interval`` seconds and at once after this store's writes: reads are
        served from it at local-disk speed with the same rules (:mod:`tiered.db.replica`).

        ``cache`` configures the cache layer (default: on, 1 s staleness across processes;
        ``CacheConfig(enabled=False)`` turns it off); ``pool`` the connection pool (default:
        1 to 10 connections, sized reactively, keep-alive every 5 s). ``clock`` gives wall-clock
        microseconds for record timestamps; ``timer`` gives monotonic seconds for cache lifetimes,
        staleness and the pool. ``StoreConfig(read_only=True)`` opens without writing anything.

        Raises :class:`ConfigError` for a bad URL, :class:`DatabaseUnavailable` when the server
        cannot be reached, :class:`AuthError` when it rejects ``auth_token``.
        """
        config = config or StoreConfig()
        # validated before any I/O
        layer = CacheLayer(cache or CacheConfig(), timer=timer, getsizeof=approx_size)
        db = await Database.open(
            url,
            auth_token=auth_token,
            pool=pool,
            replicas=replicas,
            routing=routing,
            local_replica=local_replica,
            sync_interval=sync_interval,
            **config.database_options(),
            now_us=clock,
            timer=timer,
        )
        try:
            # start the change feed at the present: the cache is empty, nothing to invalidate
            layer.last_change = as_int((await db.read(q.LAST_CHANGE, primary=True))[0][0])
            await db.start(layer.last_change)
            store = cls(db, config, clock, layer)
            await store._dicts.load(activate=True)
            store.traffic = await traffic.attach(db)  # a Learning pool's history and plans
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        """Close the pool's connections; later calls raise :class:`StoreClosed`. Idempotent."""
        if not self._db.closed:
            await self.settle()  # a dictionary being trained is stored before the pool closes
            if self.traffic is not None:
                await self.traffic.close()  # the rest of the hour, before the pool closes
            await self._db.close()
            if self._access is not None:
                await asyncio.to_thread(self._access.flush)

    @property
    def pool(self) -> Pool[Any]:
        """The connection pool (its stats, its utilization series, :meth:`Pool.drain`)."""
        return self._db.pool

    @property
    def router(self) -> Router | None:
        """The read router when the store has replicas (its per-replica stats), else ``None``."""
        return self._db.router

    @property
    def closed(self) -> bool:
        return self._db.closed

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Store {self.backend} {redact_url(self._db.url)} {state}>"

    def get_stats(self) -> dict[str, Any]:
        """Statement reuse, codec and cache statistics (the metrics layer builds on these)."""
        db = self._db
        return {
            "backend": self.backend,
            "cache": self._cache.get_stats(),
            "pool": db.pool.get_stats(),
            "statements": db.get_stats(),
            **({"router": db.router.get_stats()} if db.router is not None else {}),
            "codec": {**self.codec.get_stats(), **self._dicts.get_stats()},
            **({"learning": self.traffic.get_stats()} if self.traffic is not None else {}),
        }

    async def settle(self) -> None:
        """Wait for background work: dictionary training and early cache refreshes."""
        await self._dicts.settle()
        await self._cache.settle()

    async def train_dictionary(self, kind: str, *, sample: int | None = None) -> int | None:
        """Train a zstd dictionary for ``kind`` (``"episodes"``, ``"patterns"`` or
        ``"heuristics"``) on its ``sample`` most recent payloads; its id, or ``None`` when it
        would not shrink held-out records by 5 % (see :meth:`Dictionaries.train`)."""
        self._db.check_open()
        return await self._dicts.train(kind, sample=sample)

    # -- reading and writing through the cache ---------------------------------------------------

    async def _build(self, rows: Sequence[Row], kind: RecordKind[R]) -> list[R]:
        """Decode rows (see :func:`~tiered.store.records.decode_rows`)."""
        out, spent = await decode_rows(rows, kind, self.codec, self._dicts.load)
        add_phase("decode", spent)
        return out

    async def _load(self, kind: RecordKind[R], stmt: Statement, args: Sequence[Value]) -> list[R]:
        return await self._build(await self._rows(stmt, args), kind)

    async def _get(self, kind: RecordKind[R], record_id: object) -> R | None:
        key = _key(kind.key, record_id)
        loaded: R | bool | None = False  # what a miss loaded (False: the cache answered)

        async def load() -> R | None:
            nonlocal loaded
            rows = await self._rows(kind.get, (key,))
            loaded = (await self._build(rows[:1], kind))[0] if rows else None
            return loaded

        mark = cache_mark()
        t0 = perf_counter() if self._access is not None else 0.0
        try:
            found = await self._reads.coherent(
                lambda before_hit: self._cache.read(kind.table, key, load, before_hit)
            )
        finally:
            if mark is not None:
                cache_done(mark)
        if self._access is not None:
            self._access.got(self.clock(), kind.table, key, loaded, perf_counter() - t0)
        return found

    async def _query(
        self,
        table: str,
        key: tuple[Hashable, ...],
        predicate: Callable[[Any], bool],
        load: Callable[[], Awaitable[list[T]]],
        member_id: Callable[[Any], str] = lambda r: r.id,
    ) -> list[T]:
        missed: list[bool] = []  # (the access log's: whether the query was loaded)
        if self._access is not None:
            load = flagged(load, missed)
        mark = cache_mark()
        t0 = perf_counter() if self._access is not None else 0.0
        try:
            result = await self._reads.coherent(
                lambda before_hit: self._cache.query(
                    table, key, predicate, load, member_id, before_hit
                )
            )
        finally:
            if mark is not None:
                cache_done(mark)
        if self._access is not None:
            self._access.queried(self.clock(), table, key, not missed, perf_counter() - t0)
        return result

    async def _frames(self, table: str, records: Sequence[Any]) -> list[bytes]:
        limit = self.config.max_payload_bytes
        frames, raws, spent = await encode_sliced(self.codec, table, records, limit)
        add_phase("encode", spent)
        self._dicts.sample(table, raws)
        return frames

    async def _store(self, kind: RecordKind[R], records: object) -> int:
        """Insert or replace a batch of ``kind`` in one transaction (last of an id wins)."""
        rs = last_per_id(check_records(kind.table, records, kind.cls))
        self._db.check_writable()
        now = self.clock()
        # writes join the queue in call order though preparing may yield (see WriteOrder)
        prev, mine = self._order.take()
        try:
            if kind.steps is not None:
                steps = kind.steps(rs, await self._frames(kind.table, rs), now)  # may reject
            else:
                steps = await self._vectors.steps(rs, now)  # type: ignore[arg-type]
            await self._order.turn(prev)
        finally:
            self._order.joined(prev, mine)  # then no await until it joins (in _db.write)
        ticket = self._cache.begin_write(kind.table, [r.id for r in rs])
        t0 = perf_counter()
        try:
            await self._db.write(steps, kind.order, frozenset(r.id for r in rs))
        except BaseException:
            self._cache.end_write(ticket, None, ok=False)
            raise
        self._cache.end_write(ticket, rs)
        if self._access is not None:
            self._access.put(self.clock(), kind.table, rs, perf_counter() - t0)
        self._dicts.maybe_train(kind.table)
        return len(rs)

    async def _delete(self, kind: RecordKind[Any], record_id: object) -> bool:
        key = _key(kind.key, record_id)
        self._db.check_writable()
        await self._order.behind()  # after every write called before it (see _store)
        ticket = self._cache.begin_write(kind.table, [key])
        try:
            existed = (await self._db.execute(kind.delete, (key,))).rows_affected > 0
        except BaseException:
            self._cache.end_write(ticket, None, ok=False)
            raise
        self._cache.end_write(ticket, None, deleted=[key] if existed else [])
        if self._access is not None:
            self._access.deleted(self.clock(), kind.table, key)
        return existed

    # -- episodes ------------------------------------------------------------------------------

    async def store_episode(self, episode: Episode) -> None:
        """Insert or replace one episode (its ``created_at`` is kept on update)."""
        await self.store_episodes([episode])

    async def store_episodes(self, episodes: Iterable[Episode]) -> int:
        """Insert or replace many episodes in one transaction; returns how many were written.

        If two items share an id the last one wins. All or nothing: on any error no episode of the
        batch is written.
        """
        return await self._store(EPISODES, episodes)

    async def get_episode(self, episode_id: str) -> Episode | None:
        """The episode with ``episode_id``, or ``None``."""
        return await self._get(EPISODES, episode_id)

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
            for stmt, padded in q.episodes_by_ids_chunks(unique):
                for ep in await self._load(EPISODES, stmt, padded):
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
        if self._access is not None:
            self._access.got_many(self.clock(), "episodes", ids, loaded)
        return [found.get(i) for i in ids]

    async def delete_episode(self, episode_id: str) -> bool:
        """Delete an episode (and its metadata); ``True`` if it existed."""
        return await self._delete(EPISODES, episode_id)

    async def query_episodes_since(
        self, t: int | datetime, limit: int = DEFAULT_LIMIT
    ) -> list[Episode]:
        """Episodes that started at or after ``t`` (µs or aware datetime), oldest first.

        ``limit`` defaults to 100; at most :data:`MAX_LIMIT` (1000), a larger one raises
        :class:`ValidationError`. To read on, pass the last episode's ``start_time`` again and
        skip the ids already seen (episodes that share a start time are ordered by id).
        """
        t0 = check_micros("t", t)
        n = check_limit(limit)
        return await self._query(
            "episodes",
            ("query_episodes_since", t0, n),
            predicates.episodes_since(t0),
            lambda: self._load(EPISODES, q.EPISODES_SINCE, (t0, n)),
        )

    async def query_episodes_by_metadata(
        self, key: str, value: str, limit: int = DEFAULT_LIMIT
    ) -> list[Episode]:
        """Episodes whose metadata maps ``key`` to exactly ``value``, newest first.

        ``value`` is matched literally (``%`` and ``_`` are not wildcards).
        """
        check_metadata_key("key", key)
        check_text("value", value, empty=True)
        n = check_limit(limit)
        return await self._query(
            "episodes",
            ("query_episodes_by_metadata", key, value, n),
            predicates.episodes_by_metadata(key, value),
            lambda: self._load(EPISODES, q.EPISODES_BY_METADATA, (key, value, n)),
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
        n = check_limit(limit)
        args.append(n)
        return await self._query(
            "episodes",
            ("query_episodes", task_type, domain, language, n),
            predicates.episodes_matching(task_type, domain, language),
            lambda: self._load(EPISODES, stmt, args),
        )

    # -- patterns ------------------------------------------------------------------------------

    async def store_pattern(self, pattern: Pattern) -> None:
        """Insert or replace one pattern."""
        await self.store_patterns([pattern])

    async def store_patterns(self, patterns: Iterable[Pattern]) -> int:
        """Insert or replace many patterns in one transaction (all or nothing)."""
        return await self._store(PATTERNS, patterns)

    async def get_pattern(self, pattern_id: str) -> Pattern | None:
        return await self._get(PATTERNS, pattern_id)

    async def delete_pattern(self, pattern_id: str) -> bool:
        return await self._delete(PATTERNS, pattern_id)

    async def search_patterns(
        self,
        *,
        kind: PatternKind | str | None = None,
        domain: str | None = None,
        min_success_rate: float = 0.0,
        limit: int = DEFAULT_LIMIT,
    ) -> list[Pattern]:
        """Patterns matching the filters, highest success rate first."""
        pk = None if kind is None else PatternKind.check("kind", kind)
        _opt_key("domain", domain)
        floor = _unit("min_success_rate", min_success_rate)
        stmt = q.patterns_filtered(pk is not None, domain is not None)
        args: list[Value] = [a for a in (pk and pk.value, domain) if a is not None]
        n = check_limit(limit)
        args += [floor, n]
        return await self._query(
            "patterns",
            ("search_patterns", pk, domain, floor, n),
            predicates.patterns_matching(pk, domain, floor),
            lambda: self._load(PATTERNS, stmt, args),
        )

    # -- heuristics ----------------------------------------------------------------------------

    async def store_heuristic(self, heuristic: Heuristic) -> None:
        """Insert or replace one heuristic."""
        await self.store_heuristics([heuristic])

    async def store_heuristics(self, heuristics: Iterable[Heuristic]) -> int:
        """Insert or replace many heuristics in one transaction (all or nothing)."""
        return await self._store(HEURISTICS, heuristics)

    async def get_heuristic(self, heuristic_id: str) -> Heuristic | None:
        return await self._get(HEURISTICS, heuristic_id)

    async def delete_heuristic(self, heuristic_id: str) -> bool:
        return await self._delete(HEURISTICS, heuristic_id)

    async def list_heuristics(
        self, *, min_confidence: float = 0.0, limit: int = DEFAULT_LIMIT
    ) -> list[Heuristic]:
        """Heuristics with confidence >= ``min_confidence``, most confident first."""
        floor, n = _unit("min_confidence", min_confidence), check_limit(limit)
        return await self._query(
            "heuristics",
            ("list_heuristics", floor, n),
            predicates.heuristics_above(floor),
            lambda: self._load(HEURISTICS, q.HEURISTICS_BY_CONFIDENCE, (floor, n)),
        )

    # -- embeddings ----------------------------------------------------------------------------

    async def store_embedding(self, embedding: Embedding) -> None:
        """Insert or replace one embedding."""
        await self.store_embeddings([embedding])

    async def store_embeddings(self, embeddings: Iterable[Embedding]) -> int:
        """Insert or replace many embeddings in one transaction (all or nothing).

        A model's dimension is fixed by its first embedding; a vector of another dimension raises
        :class:`ValidationError` naming the model, before anything is written.
        """
        return await self._store(EMBEDDINGS, embeddings)

    async def get_embedding(self, embedding_id: str) -> Embedding | None:
        return await self._get(EMBEDDINGS, embedding_id)

    async def delete_embedding(self, embedding_id: str) -> bool:
        return await self._delete(EMBEDDINGS, embedding_id)

    async def nearest(
        self,
        vector: Sequence[float] | array[float],
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
        probe, k = check_search(vector, k, owner_kind, exact)
        dim = len(probe)
        vectors, now = self._vectors, self.clock()
        model_id: int | None = None
        if model is not None:
            model_id = await vectors.check_model(_key("model", model), dim, now)
            if model_id is None:
                return []

        def load() -> Awaitable[list[tuple[Embedding, float]]]:
            return vectors.search(probe, k, model_id, owner_kind, exact, now)

        return await self._query(
            "embeddings",
            ("nearest", probe.tobytes(), k, owner_kind, model, exact),
            predicates.embeddings_near(dim, model, owner_kind),
            load,
            member_id=lambda r: r[0].id,
        )


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
measure_all(Store, OPERATIONS)
assert set(PAYLOAD_KINDS) <= {"episodes", "patterns", "heuristics"}
