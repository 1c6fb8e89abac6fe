"""The query-result cache: results keyed by (query, parameters), each with its predicate and
member ids, found by a write through indexes; and whether a query is worth caching at all."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiered.cache.adaptive import AdaptiveTTLCache
from tiered.cache.predicates import BUCKETS

__all__ = ["MIN_USE", "QueryCache", "QueryEntry", "result_size"]


@dataclass(slots=True)
class QueryEntry:
    table: str
    result: tuple[Any, ...]
    members: frozenset[str]
    predicate: Callable[[Any], bool]


#: a query result's bytes are estimated from at most this many of its records
_SIZE_SAMPLE = 8
#: a query whose cached results are hit fewer times than this per result cached is not worth
#: caching (writes drop them first): only one result in ``_PROBE`` is cached, to keep measuring
MIN_USE = 0.1
_PROBE = 8
_USE_DECAY = 0.99  # per result cached: the usefulness remembers about the last hundred
_USE_WARM = 16.0  # results cached before usefulness decides anything


class QueryCache:
    """Query results keyed by (query, parameters), each with its predicate and member ids.

    A write finds the results it could change through three indexes instead of testing every
    result of its table: member id -> results, predicate bucket -> results (see
    :mod:`tiered.cache.predicates`), and per table the results whose predicate has no bucket.
    The indexes may name results the cache has since evicted or expired (they are dropped when
    met, and all of them are rebuilt from the live entries once they have doubled since the
    last rebuild), never miss a live one."""

    def __init__(
        self,
        cache: AdaptiveTTLCache[Hashable, QueryEntry],
        buckets: Mapping[str, Callable[[Any], Iterable[Hashable]]] = BUCKETS,
    ) -> None:
        self.cache = cache
        self.invalidations = 0
        self.by_query: dict[str, list[int]] = {}  # query name -> [hits, misses, bypassed]
        # query name -> [results cached, hits on them] (decayed), and fills since a probe
        self._use: dict[str, list[float]] = {}
        self._buckets = buckets
        # keys per table (every result: for invalidate_table), per (table, member id), per
        # (table, bucket), and per table without a bucket
        self._by_table: dict[str, set[Hashable]] = {}
        self._by_member: dict[tuple[str, str], set[Hashable]] = {}
        self._by_bucket: dict[tuple[str, Hashable], set[Hashable]] = {}
        self._unbucketed: dict[str, set[Hashable]] = {}
        self._bucketed: set[str] = set()  # tables with results under a bucket
        self._names = 0  # names held by the indexes
        self._rebuild_at = 4096  # names at which the indexes are rebuilt from the live entries

    def get(self, key: tuple[Any, ...]) -> tuple[Any, ...] | None:
        e = self.cache.get(key)
        hm = self.by_query.setdefault(key[0], [0, 0, 0])
        if e is None:
            hm[1] += 1
            return None
        hm[0] += 1
        use = self._use.get(key[0])
        if use is not None:
            use[1] += 1.0
        return e.result  # type: ignore[no-any-return]

    def admit(self, name: str) -> bool:
        """Whether a result of query ``name`` is worth caching: yes while its cached results
        are hit at least :data:`MIN_USE` times each (in a write-heavy workload they are
        dropped before any read comes); else one in ``_PROBE``, which keeps measuring."""
        use = self._use.get(name)
        if use is None:
            use = self._use[name] = [0.0, 0.0, 0.0]
        if use[0] >= _USE_WARM and use[1] < MIN_USE * use[0]:
            use[2] += 1.0
            if use[2] < _PROBE:
                self.by_query.setdefault(name, [0, 0, 0])[2] += 1
                return False
            use[2] = 0.0
        use[0] = use[0] * _USE_DECAY + 1.0
        use[1] *= _USE_DECAY
        return True

    def put(self, key: tuple[Any, ...], entry: QueryEntry) -> None:
        if self.cache.set(key, entry):
            self._index(key, entry)
            if self._names > self._rebuild_at:
                self._rebuild()

    def _index(self, key: Hashable, entry: QueryEntry) -> None:
        table = entry.table
        self._by_table.setdefault(table, set()).add(key)
        for m in entry.members:
            self._by_member.setdefault((table, m), set()).add(key)
        bucket = getattr(entry.predicate, "bucket", None)
        if bucket is None or table not in self._buckets:
            self._unbucketed.setdefault(table, set()).add(key)
        else:
            self._by_bucket.setdefault((table, bucket), set()).add(key)
            self._bucketed.add(table)
        self._names += 2 + len(entry.members)

    def _rebuild(self) -> None:
        self._by_table, self._by_member, self._by_bucket, self._unbucketed = {}, {}, {}, {}
        self._bucketed = set()
        self._names = 0
        for k in self.cache:
            e = self.cache.get_stale(k)
            if e is not None:
                self._index(k, e)
        self._rebuild_at = 2 * self._names + 4096  # amortized: O(1) per result put

    def _live(self, key: Hashable) -> QueryEntry | None:
        # entries kept for serve-stale must be invalidated too
        return self.cache.get_stale(key)  # type: ignore[no-any-return]

    def _drop(self, table: str, key: Hashable) -> None:
        del self.cache[key]
        self._by_table[table].discard(key)
        self.invalidations += 1

    def invalidate(self, table: str, written: Sequence[Any], deleted: Sequence[str]) -> None:
        """Drop the results of ``table`` that the written records or deleted ids could change."""
        dropped: set[Hashable] = set()
        for i in {r.id for r in written} | set(deleted):
            keys = self._by_member.pop((table, i), None)
            if keys:
                self._names -= len(keys)
                for k in keys:
                    e = self._live(k) if k not in dropped else None
                    if e is not None and i in e.members:  # (the key may hold a newer result)
                        self._drop(table, k)
                        dropped.add(k)
        if not written:
            return
        route = self._buckets.get(table) if table in self._bucketed else None
        groups: dict[int, set[Hashable]] = {}  # the index sets to look through, by identity
        unbucketed = self._unbucketed.get(table)
        if unbucketed:
            groups[id(unbucketed)] = unbucketed
        if route is not None:
            by_bucket = self._by_bucket
            for r in written:
                for b in route(r):
                    keys = by_bucket.get((table, b))
                    if keys:
                        groups[id(keys)] = keys
        for keys in groups.values():
            for k in list(keys):
                if k in dropped:
                    continue
                e = self._live(k)
                if e is None:
                    # evicted or expired: a key's query has one bucket, so this is its last name
                    # outside the member index
                    keys.discard(k)
                    self._by_table.get(table, set()).discard(k)
                elif any(e.predicate(r) for r in written):
                    keys.discard(k)
                    self._drop(table, k)
                    dropped.add(k)

    def invalidate_table(self, table: str) -> None:
        for k in list(self._by_table.get(table, ())):
            if self._live(k) is None:
                self._by_table[table].discard(k)
            else:
                self._drop(table, k)


def result_size(entry: QueryEntry, record_size: Callable[[Any], int]) -> int:
    """Bytes of a query result: a fixed overhead and its records' (estimated from a few)."""
    rs = entry.result
    n = len(rs)
    if n <= _SIZE_SAMPLE:
        return 256 + sum(map(record_size, rs))
    step = n / _SIZE_SAMPLE
    sample = sum(record_size(rs[int(i * step)]) for i in range(_SIZE_SAMPLE))
    return 256 + sample * n // _SIZE_SAMPLE
