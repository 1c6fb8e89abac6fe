"""The Store's cache layer: read-through record caches, a query-result cache, single-flight
loads, versioned fills, and coherence with other processes through the change log.

Correctness rules (each has a test):

* **Versioned fills.** Every write bumps a version for each key it touches when it ends
  (committed or failed), before it installs or drops anything. A read-miss remembers the version
  when it starts and installs what it read only if no bump happened since, so a read that raced a
  write can never leave the old value in the cache: if it installs before the write ends, the
  write's end replaces or drops it; if after, the bump refuses it. Versions are kept for a
  bounded number of keys; for forgotten keys the oldest forgotten version stands in, which can
  only refuse a fill, never accept a stale one.
* **Write-through only when alone.** After commit a write installs its record only if no other
  write to that key overlapped it; otherwise it invalidates, because commit order is then unknown.
* **Query results know their predicate** and member ids: a local write drops exactly the results
  it could change (a member was written, or the new record matches the predicate).
* **Coherence.** Before serving from cache, if more than ``staleness`` seconds passed since the
  last poll, the change log is read (``seq > last seen``) and every changed key is invalidated, so
  a cached read is never older than ``staleness`` relative to any committed write. ``0`` polls on
  every read; ``None`` never polls (single process). Each local write expects one change-log row
  per key (counted before it is sent, uncounted if it fails or deleted nothing); the poll skips
  that many rows of the key, so a store's own writes do not evict what it just wrote, while any
  other writer's row still invalidates (in either commit order the cached value stays correct).
* **Single-flight.** Concurrent misses on one key (or one query) share one database read; a caller
  that arrives after a write does not join a load that started before it.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tiered.cache.adaptive import AdaptiveTTLCache
from tiered.cache.config import CacheConfig, RecordCacheConfig
from tiered.cache.flight import SingleFlight, Versions
from tiered.cache.queries import QueryCache, QueryEntry, result_size
from tiered.errors import DatabaseUnavailable

__all__ = ["CacheLayer", "hit_ratio"]

T = TypeVar("T")
_MISS: Any = object()
NOT_FOUND: Any = type("NotFound", (), {"__repr__": lambda self: "<not found>"})()
TABLES = ("episodes", "patterns", "heuristics", "embeddings")


@dataclass(slots=True)
class WriteTicket:
    table: str
    keys: list[str]
    id: int
    alone: list[bool]


class CacheLayer:
    """Everything the Store needs from caching, with the clock (seconds) injected."""

    def __init__(
        self,
        config: CacheConfig,
        *,
        timer: Callable[[], float] = time.monotonic,
        getsizeof: Callable[[Any], int] | None = None,
    ) -> None:
        """``getsizeof`` estimates a cached record's bytes (for ``max_bytes`` bounds), given by
        the user of the cache as in cachetools (default: a flat 400 bytes per record); a query
        result counts its records plus a fixed overhead."""
        self.config = config
        self.timer = timer
        self._record_size = getsizeof or _flat_size
        self.records: dict[str, AdaptiveTTLCache[str, Any] | None] = {
            t: self._make(getattr(config, t)) for t in TABLES
        }
        queries = self._make(config.queries)
        self.queries = QueryCache(queries) if queries is not None else None
        self.versions = {t: Versions() for t in TABLES}
        self.table_seq = dict.fromkeys(TABLES, 0)
        # per table: the last pre-write version, writes in flight, own change-log rows expected
        self._pre_seq: dict[str, dict[str, int]] = {t: {} for t in TABLES}
        self._inflight: dict[str, dict[str, int]] = {t: {} for t in TABLES}
        self._own: dict[str, dict[str, int]] = {t: {} for t in TABLES}
        self._polling = config.enabled and config.staleness is not None
        self._writes = 0
        self.flights: SingleFlight[Any] = SingleFlight()
        self.last_change = 0
        self.last_poll = -math.inf
        self._poll: asyncio.Task[None] | None = None
        self.polls = 0
        self.polls_folded = 0  # polls sent in the same request as a miss's read
        self.remote_invalidations = 0
        self.db_reads = 0
        self.early_refreshes = 0
        self.stale_served = 0  # reads answered from an expired entry during an outage
        self.failed_polls = 0  # change-log polls that failed and, with stale_if_error, were skipped
        self._refreshing: set[asyncio.Future[Any]] = set()
        self._load_time: dict[str, float] = dict.fromkeys(TABLES, 0.0)
        self._rng = random.Random(config.seed)

    def _make(self, rc: RecordCacheConfig) -> AdaptiveTTLCache[Any, Any] | None:
        if not (self.config.enabled and rc.enabled):
            return None
        return AdaptiveTTLCache(
            rc.maxsize,
            max_bytes=rc.max_bytes,
            ttl=rc.ttl,
            timer=self.timer,
            policy=self.config.policy,
            getsizeof=self._sizeof,
            seed=self.config.seed,
            stale_for=self.config.stale_if_error,
        )

    def _sizeof(self, value: Any) -> int:
        """Bytes of a cached value: a record (the user's estimate), a not-found marker, or a
        query result (its records plus a fixed overhead)."""
        if value is NOT_FOUND:
            return 64
        if isinstance(value, QueryEntry):
            return result_size(value, self._record_size)
        return self._record_size(value)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # -- coherence -------------------------------------------------------------------------------

    def poll_due(self) -> bool:
        """Whether the staleness bound asks for a change-log poll before the next read."""
        s = self.config.staleness
        if s is None or not self.enabled:
            return False
        return not (self.timer() - self.last_poll < s and s > 0)

    async def sync(self, fetch: Callable[[int], Awaitable[list[tuple[Any, ...]]]]) -> None:
        """Poll the change log if the staleness bound says so (one poll for concurrent readers)."""
        if not self.poll_due():
            return
        now = self.timer()
        if self._poll is None or self._poll.done():
            self._poll = asyncio.ensure_future(self._do_poll(fetch, now))
        try:
            await asyncio.shield(self._poll)
        except DatabaseUnavailable:
            if not self.config.stale_if_error:
                raise
            self.failed_polls += 1  # serve-stale: the read goes on with what the cache has

    async def _do_poll(
        self, fetch: Callable[[int], Awaitable[list[tuple[Any, ...]]]], started: float
    ) -> None:
        self.polls += 1
        while not self.apply_changes(await fetch(self.last_change), started):
            pass

    def apply_changes(
        self, rows: Sequence[tuple[Any, ...]], started: float, *, folded: bool = False
    ) -> bool:
        """Apply a page of the change log read after ``started`` (``seq, table, key, op`` rows in
        order, at most 1,000); ``True`` if it was the last page, and the poll is then done. A row
        seen before (by a concurrent poll) is skipped. ``folded``: a poll that rode with a read
        (counted as a poll)."""
        if folded:
            self.polls += 1
            self.polls_folded += 1
        for seq, table, key, _op in rows:
            if int(seq) <= self.last_change:
                continue
            self.last_change = int(seq)
            own = self._own.get(str(table))
            if own and own.get(str(key)):
                self._unown(own, str(key))  # this store's own write: applied locally
                continue
            self._invalidate_remote(str(table), str(key))
        if len(rows) >= 1000:
            return False
        # the bound is measured from when the poll started: changes committed before are seen
        self.last_poll = max(self.last_poll, started)
        return True

    @staticmethod
    def _unown(own: dict[str, int], key: str) -> None:
        n = own[key] - 1
        if n:
            own[key] = n
        else:
            del own[key]

    def _invalidate_remote(self, table: str, key: str) -> None:
        if table not in self.versions:
            return
        self.versions[table].bump(key)
        self.table_seq[table] += 1
        cache = self.records[table]
        if cache is not None and cache.get_stale(key, _MISS) is not _MISS:
            del cache[key]
            self.remote_invalidations += 1
        if self.queries is not None:
            # the new record is unknown here: any result of this table may have changed
            self.queries.invalidate_table(table)

    # -- reads -----------------------------------------------------------------------------------

    async def read(
        self,
        table: str,
        key: str,
        load: Callable[[], Awaitable[T | None]],
        before_hit: Callable[[], Awaitable[None]] | None = None,
    ) -> T | None:
        """Read-through for one record (``None`` = not found, cached for ``negative_ttl``).

        ``before_hit``: awaited before a cached entry is served (the change-log poll that the
        caller folded into ``load`` for a miss)."""
        cache = self.records[table]
        if cache is None:
            self.db_reads += 1
            return await load()
        if before_hit is not None and cache.peek(key, _MISS) is not _MISS:
            await before_hit()
        v = cache.get(key, _MISS)
        if v is not _MISS:
            beta = self.config.xfetch_beta
            if beta is not None and v is not NOT_FOUND:
                self._maybe_refresh(table, key, cache, beta, load)
            return None if v is NOT_FOUND else v
        versions = self.versions[table]
        fkey = (table, key)
        flights = self.flights
        try:
            if fkey in flights and flights.joinable(fkey, lambda t: versions.valid(key, t)):
                return await self._fill(table, key, cache, load)  # join the load in flight
            # alone: the load runs here, with no task, closure or future of its own
            token = versions.token()
            flight = flights.lead(fkey, token)
            timed = self.config.xfetch_beta is not None
            t0 = self.timer() if timed else 0.0
            self.db_reads += 1
            try:
                value = await load()
            except BaseException as e:
                flights.land(fkey, flight, None, e)
                raise
            if timed:
                self._load_time[table] = 0.8 * self._load_time[table] + 0.2 * (self.timer() - t0)
            flights.land(fkey, flight, value, None)
            self._install(table, key, cache, versions, token, value)
            return value
        except DatabaseUnavailable:
            v = self._stale(cache, key)
            if v is _MISS:
                raise
            return None if v is NOT_FOUND else v

    def _stale(self, cache: AdaptiveTTLCache[Any, Any], key: Hashable) -> Any:
        """Serve-stale: the entry for ``key`` within ``stale_if_error`` of its expiry, or _MISS."""
        if not self.config.stale_if_error:
            return _MISS
        v = cache.get_stale(key, _MISS)
        if v is not _MISS:
            self.stale_served += 1
        return v

    def stale_many(self, table: str, keys: Sequence[str]) -> dict[str, Any] | None:
        """Serve-stale for a batch read: every one of ``keys`` (``None`` for a cached "not
        found"), or ``None`` when any of them has no entry to serve."""
        cache = self.records[table]
        if cache is None or not self.config.stale_if_error:
            return None
        found = {k: cache.get_stale(k, _MISS) for k in keys}
        if any(v is _MISS for v in found.values()):
            return None
        self.stale_served += len(found)
        return {k: None if v is NOT_FOUND else v for k, v in found.items()}

    async def _fill(
        self,
        table: str,
        key: str,
        cache: AdaptiveTTLCache[str, Any],
        load: Callable[[], Awaitable[T | None]],
    ) -> T | None:
        versions = self.versions[table]
        token = versions.token()

        async def loader() -> T | None:
            t0 = self.timer()
            self.db_reads += 1
            value = await load()
            self._load_time[table] = 0.8 * self._load_time[table] + 0.2 * (self.timer() - t0)
            self._install(table, key, cache, versions, token, value)
            return value

        return await self.flights.run(  # type: ignore[no-any-return]
            (table, key), token, lambda t: versions.valid(key, t), loader
        )

    def _install(
        self,
        table: str,
        key: str,
        cache: AdaptiveTTLCache[str, Any],
        versions: Versions,
        token: int,
        value: Any,
    ) -> None:
        """Cache what a load read (``None``: not found), unless a write overtook it."""
        if versions.valid(key, token):
            if value is None:
                cache.set(key, NOT_FOUND, ttl=getattr(self.config, table).negative_ttl)
            else:
                cache.set(key, value)

    def lookup_many(self, table: str, keys: dict[str, None]) -> tuple[dict[str, Any], list[str]]:
        """Cached values of ``keys`` (``None`` for a cached "not found") and the keys to load."""
        cache = self.records[table]
        if cache is None:
            return {}, list(keys)
        found: dict[str, Any] = {}
        missing: list[str] = []
        for k in keys:
            v = cache.get(k, _MISS)
            if v is _MISS:
                missing.append(k)
            else:
                found[k] = None if v is NOT_FOUND else v
        return found, missing

    def fill_many(self, table: str, loaded: dict[str, Any], token: int) -> None:
        """Install batch-loaded values (``None`` = not found) that no write has overtaken."""
        cache = self.records[table]
        self.db_reads += 1
        if cache is None:
            return
        versions = self.versions[table]
        neg = getattr(self.config, table).negative_ttl
        for k, v in loaded.items():
            if versions.valid(k, token):
                if v is None:
                    cache.set(k, NOT_FOUND, ttl=neg)
                else:
                    cache.set(k, v)

    def _maybe_refresh(
        self,
        table: str,
        key: str,
        cache: AdaptiveTTLCache[str, Any],
        beta: float,
        load: Callable[[], Awaitable[Any]],
    ) -> None:
        # XFetch: refresh early with probability growing as expiry nears, scaled by load time
        expires = cache.expires_at(key)
        if expires is None or math.isinf(expires):
            return
        delta = max(self._load_time[table], 1e-4)
        gap = -delta * beta * math.log(max(self._rng.random(), 1e-12))
        if self.timer() + gap >= expires and (table, key) not in self.flights:
            self.early_refreshes += 1
            task = asyncio.ensure_future(self._fill(table, key, cache, load))
            # keep a reference (the loop holds tasks weakly) until it is done
            self._refreshing.add(task)
            task.add_done_callback(self._refresh_done)

    def _refresh_done(self, task: asyncio.Future[Any]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled():
            task.exception()  # a failed refresh only means the entry expires as usual

    async def settle(self) -> None:
        """Wait for the early refreshes in flight (tests, and a store that is closing)."""
        while self._refreshing:
            await asyncio.gather(*self._refreshing, return_exceptions=True)

    async def query(
        self,
        table: str,
        key: tuple[Any, ...],
        predicate: Callable[[Any], bool],
        load: Callable[[], Awaitable[list[Any]]],
        member_id: Callable[[Any], str] = lambda r: r.id,
        before_hit: Callable[[], Awaitable[None]] | None = None,
    ) -> list[Any]:
        """Read-through for a query result (``before_hit``: as for :meth:`read`)."""
        qc = self.queries
        if qc is None:
            self.db_reads += 1
            return await load()
        if before_hit is not None and qc.cache.peek(key) is not None:
            await before_hit()
        hit = qc.get(key)
        if hit is not None:
            return list(hit)
        start = self.table_seq[table]

        async def loader() -> list[Any]:
            self.db_reads += 1
            rows = await load()
            if self.table_seq[table] == start and qc.admit(key[0]):
                qc.put(
                    key,
                    QueryEntry(
                        table, tuple(rows), frozenset(member_id(r) for r in rows), predicate
                    ),
                )
            return rows

        try:
            rows = await self.flights.run(
                ("query", key), start, lambda t: self.table_seq[table] == t, loader
            )
        except DatabaseUnavailable:
            e = self._stale(qc.cache, key)
            if e is _MISS:
                raise
            rows = e.result
        return list(rows)

    # -- writes ----------------------------------------------------------------------------------

    def begin_write(self, table: str, keys: Sequence[str]) -> WriteTicket:
        pre_seq, inflight, own = self._pre_seq[table], self._inflight[table], self._own[table]
        self._writes += 1
        ticket_id = self._writes
        alone: list[bool] = []
        for k in keys:
            pre_seq[k] = ticket_id  # the latest write to start on k
            n = inflight.get(k, 0)
            alone.append(n == 0)
            inflight[k] = n + 1
            if self._polling:  # only a poll consumes these counts
                own[k] = own.get(k, 0) + 1
        self.table_seq[table] += 1
        return WriteTicket(table, list(keys), ticket_id, alone)

    def end_write(
        self,
        ticket: WriteTicket,
        records: Sequence[Any] | None,
        *,
        deleted: Sequence[str] = (),
        ok: bool = True,
    ) -> None:
        """After commit (``ok``) or failure: bump the versions, then write through or drop.

        Writes of up to ``write_through`` records install them (they are likely read next);
        larger batches only invalidate: a bulk load is no evidence of future reads, and filling
        the cache with it would be the very scan the eviction policy resists.
        """
        table = ticket.table
        versions = self.versions[table]
        cache = self.records[table]
        pre_seq, inflight, own = self._pre_seq[table], self._inflight[table], self._own[table]
        fill = ok and records is not None and len(records) <= self.config.write_through
        by_id = {r.id: r for r in records} if (ok and records) else {}
        neg = getattr(self.config, table).negative_ttl
        my_id = ticket.id
        for k, alone in zip(ticket.keys, ticket.alone, strict=True):
            versions.bump(k)
            if self._polling and (not ok or (k not in by_id and k not in deleted)):
                # failed (it may or may not have committed: treat any row as foreign) or
                # deleted nothing (no row will come)
                self._unown(own, k)
            n = inflight[k] - 1
            overlapped = not alone or n > 0 or pre_seq.get(k) != my_id
            if n:
                inflight[k] = n
            else:
                del inflight[k]
                pre_seq.pop(k, None)
            if cache is None:
                continue
            if fill and k in by_id and not overlapped:
                cache.set(k, by_id[k])
            elif ok and k in deleted and not overlapped:
                cache.set(k, NOT_FOUND, ttl=neg)
            elif cache.get_stale(k, _MISS) is not _MISS:
                del cache[k]
        self.table_seq[table] += 1
        if self.queries is not None:
            if ok:
                self.queries.invalidate(table, list(records or ()), deleted)
            else:
                self.queries.invalidate_table(table)

    # -- statistics ------------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            t: (c.get_stats() if c is not None else None) for t, c in self.records.items()
        }
        if self.queries is not None:
            out["queries"] = {
                **self.queries.cache.get_stats(),
                "invalidations": self.queries.invalidations,
                "by_query": {
                    k: {"hits": v[0], "misses": v[1], "not_cached": v[2]}
                    for k, v in self.queries.by_query.items()
                },
            }
        out["single_flight"] = {"loads": self.flights.loads, "joined": self.flights.joined}
        out["coherence"] = {
            "polls": self.polls,
            "polls_folded": self.polls_folded,
            "last_change": self.last_change,
            "remote_invalidations": self.remote_invalidations,
            "failed_polls": self.failed_polls,
        }
        out["db_reads"] = self.db_reads
        out["early_refreshes"] = self.early_refreshes
        out["stale_served"] = self.stale_served
        return out


def hit_ratio(snapshot: dict[str, Any]) -> float:
    """Hits / lookups over every cache of a :meth:`CacheLayer.get_stats` (records and queries)."""
    hits = sum(v.get("hits", 0) for v in snapshot.values() if isinstance(v, dict))
    misses = sum(v.get("misses", 0) for v in snapshot.values() if isinstance(v, dict))
    return hits / (hits + misses) if hits + misses else 0.0


def _flat_size(value: Any) -> int:
    return 400
