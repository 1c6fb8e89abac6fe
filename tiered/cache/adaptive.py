"""AdaptiveTTLCache: a bounded in-process cache whose entries live longer when hot.

A ``MutableMapping`` with cachetools-like accounting (``maxsize`` and ``currsize`` count entries,
``max_bytes`` and ``currbytes`` count ``getsizeof`` of the values) and an injectable ``timer``;
not a ``cachetools.Cache`` (it does not plug into ``cachetools.cached``). It adds:

* **Eviction** by adaptive W-TinyLFU (:mod:`tiered.cache.policy`), chosen by
  ``benchmarks/bench_cache.py`` against LRU, FIFO, LFU, S3-FIFO, ARC and theine; ``policy="lru"``
  is available for comparison. Hits reach the policy in batches of 16, and before any miss,
  insert or removal, so its decisions are those of one request at a time
  (:meth:`~tiered.cache.policy.WTinyLFU.record_hits`); the get that completes a batch pays for it.
  A miss reaches it together with the insert that follows it when nothing came between (one call,
  :meth:`~tiered.cache.policy.WTinyLFU.insert_missed`), else before whatever came next.
* **Two bounds**: ``maxsize`` entries and ``max_bytes`` (sum of ``getsizeof(value)``); an entry
  bigger than ``max_bytes`` is not cached at all.
* **Adaptive TTL** (:class:`TTLRule`, the documented rule): each entry counts its hits in a
  sliding window (two buckets, so counts decay); on a hit, at most once per window, a hot entry
  (``>= hot_hits`` in the window) has its TTL multiplied by ``1 + rate`` and a cold one
  (``<= cold_hits``) by ``1 - rate``, within ``[min, max]``; the entry then expires ``ttl`` after it
  was filled. Every expiry is jittered by ``±jitter`` so entries filled together do not expire
  together.
* **Statistics**: hits, misses, expirations, evictions by cause, rejected admissions, entries,
  bytes, and the distribution of current TTLs.

Not thread-safe: it is owned by one event loop (as the Store is).
"""

from __future__ import annotations

import random
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from tiered.cache.policy import Token, WTinyLFU
from tiered.errors import ConfigError

__all__ = ["AdaptiveTTLCache", "CacheStats", "TTLRule"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING: Any = object()
_NO_MISS: Any = object()
#: hits buffered before the policy counts them (and before anything else reaches it). The get
#: that fills the buffer pays for the batch: a larger batch raises that get's latency for a few
#: more gets/s, a smaller one costs throughput
_READ_BATCH = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class TTLRule:
    """How entry lifetimes adapt (seconds). ``base=None`` disables expiry altogether."""

    base: float | None = 300.0
    min: float = 60.0
    max: float = 3600.0
    hot_hits: int = 10
    cold_hits: int = 2
    rate: float = 0.25
    window: float = 60.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.base is not None and not 0 < self.min <= self.base <= self.max:
            raise ConfigError(
                f"TTLRule needs 0 < min <= base <= max, got {self.min}, {self.base}, {self.max}"
            )
        if not 0 <= self.cold_hits < self.hot_hits:
            raise ConfigError(
                f"TTLRule needs 0 <= cold_hits < hot_hits, got {self.cold_hits}, {self.hot_hits}"
            )
        if not 0 < self.rate < 1 or self.window <= 0 or not 0 <= self.jitter < 1:
            raise ConfigError("TTLRule needs 0 < rate < 1, window > 0 and 0 <= jitter < 1")


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    inserts: int = 0
    expirations: int = 0
    evictions: dict[str, int] = field(
        default_factory=lambda: {"capacity": 0, "bytes": 0, "explicit": 0}
    )
    admissions_rejected: int = 0
    too_large: int = 0
    ttl_grown: int = 0
    ttl_shrunk: int = 0

    @property
    def hit_ratio(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


class _Entry:
    __slots__ = (
        "expires",
        "filled",
        "hits",
        "prev_hits",
        "size",
        "stale",
        "token",
        "ttl",
        "value",
        "win_start",
    )

    def __init__(
        self,
        value: Any,
        size: int,
        now: float,
        ttl: float | None,
        token: Token | None,
    ) -> None:
        self.token = token  # the key as the policy takes it, made once (None with policy="lru")
        self.value = value
        self.size = size
        self.filled = now
        self.ttl = ttl
        self.expires = float("inf")
        self.win_start = now
        self.hits = 0
        self.prev_hits = 0
        self.stale = False  # expired, kept for serve-stale-on-error


class AdaptiveTTLCache(MutableMapping[K, V], Generic[K, V]):
    """Bounded cache with adaptive per-entry TTL and scan-resistant eviction.

    Keyword-only settings: ``max_bytes`` (None = unbounded), ``getsizeof`` (default
    ``sys.getsizeof``), ``ttl`` (:class:`TTLRule`), ``timer`` (seconds, monotonic; inject a fake
    clock in tests and simulations), ``policy`` (``"wtinylfu"`` or ``"lru"``), ``seed`` (the
    TTL jitter and the policy's key sample; ``None`` draws one per instance).
    """

    def __init__(
        self,
        maxsize: int = 10_000,
        *,
        max_bytes: int | None = None,
        getsizeof: Callable[[Any], int] | None = None,
        ttl: TTLRule | None = None,
        timer: Callable[[], float] = time.monotonic,
        policy: str = "wtinylfu",
        seed: int | None = 0,
        stale_for: float = 0.0,
    ) -> None:
        if maxsize < 1:
            raise ConfigError(f"AdaptiveTTLCache maxsize must be >= 1, got {maxsize}")
        if max_bytes is not None and max_bytes < 1:
            raise ConfigError(f"AdaptiveTTLCache max_bytes must be >= 1 or None, got {max_bytes}")
        if policy not in ("wtinylfu", "lru"):
            raise ConfigError(
                f"AdaptiveTTLCache policy must be 'wtinylfu' or 'lru', got {policy!r}"
            )
        if not stale_for >= 0:
            raise ConfigError(f"AdaptiveTTLCache stale_for must be >= 0, got {stale_for}")
        self.maxsize = maxsize
        #: seconds an expired entry is kept for :meth:`get_stale` (it still counts as a miss)
        self.stale_for = stale_for
        self.max_bytes = max_bytes
        self.getsizeof = getsizeof or (lambda v: sys.getsizeof(v))
        self.rule = ttl or TTLRule()
        self._window = self.rule.window if self.rule.base is not None else float("inf")
        # an entry's hits in its window stop counting here: past hot_hits the count decides
        # nothing, and a count that stays a small int is not allocated anew at every hit
        # (CPython caches -5..256; a new int and the old one's release cost a cached get CPU
        # cache misses)
        self._hit_cap = max(256, self.rule.hot_hits)
        self.timer = timer
        self.policy_name = policy
        # the policy samples keys by their hash mixed with a seed: a fixed one reproduces runs
        pseed = seed if seed is not None else random.getrandbits(64)
        self._policy = WTinyLFU(maxsize, seed=pseed) if policy == "wtinylfu" else None
        # hits not yet given to the policy, oldest first (None with policy="lru")
        self._reads: list[Token] | None = [] if self._policy is not None else None
        # the key of the last miss, not yet given to the policy: the set that usually follows
        # gives it the miss and the insert in one call; anything else reaching the policy
        # first gives it the miss on its own (so it still comes before what followed it)
        self._missed: Any = _NO_MISS
        self._lru: OrderedDict[K, None] = OrderedDict()
        self._data: dict[K, _Entry] = {}
        self._bytes = 0
        self._rng = random.Random(seed)
        self._stats = CacheStats()

    @property
    def counters(self) -> CacheStats:
        """Hits, misses, inserts, expirations, evictions by cause, TTL changes (live counts)."""
        self._drain()  # hits waiting for the policy are counted when it takes them
        return self._stats

    def __repr__(self) -> str:
        s = self.counters
        return (
            f"<AdaptiveTTLCache {self.policy_name} entries={len(self._data)}/{self.maxsize} "
            f"bytes={self._bytes}/{self.max_bytes} hit_ratio={s.hit_ratio:.3f}>"
        )

    # -- accounting ------------------------------------------------------------------------------

    @property
    def currsize(self) -> int:
        """Entries held (the unit of ``maxsize``)."""
        return len(self._data)

    @property
    def currbytes(self) -> int:
        """Bytes held: the sum of ``getsizeof`` of the values (the unit of ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._data))

    def __contains__(self, key: object) -> bool:
        e = self._data.get(key)  # type: ignore[arg-type]
        return e is not None and self.timer() < e.expires

    # -- reads -----------------------------------------------------------------------------------

    def get(self, key: K, default: Any = None) -> Any:
        """The value for ``key``, or ``default`` (a miss) when absent or expired."""
        e = self._data.get(key)
        if e is not None:
            now = self.timer()
            if now < e.expires:
                if now - e.win_start < self._window:
                    if e.hits < self._hit_cap:
                        e.hits += 1  # the common case: same TTL window, just count
                elif e.ttl is not None:
                    self._adapt(e, now, self.rule)
                reads = self._reads
                if reads is not None:
                    # the policy takes hits in batches (see WTinyLFU.record_hits)
                    reads.append(e.token)  # type: ignore[arg-type]  # not None with a policy
                    if len(reads) >= _READ_BATCH:
                        self._drain()
                else:
                    self._stats.hits += 1
                    self._lru.move_to_end(key)
                return e.value
            if not e.stale:
                self._stats.expirations += 1
            if now < e.expires + self.stale_for:
                e.stale = True  # a miss, but kept for get_stale until its stale window ends
            else:
                self._remove(key, e)
        self._stats.misses += 1
        if self._policy is not None:
            self._drain()  # what came before this miss counts first
            self._missed = key  # given to the policy with the set that follows, or before
        return default

    def __getitem__(self, key: K) -> V:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v  # type: ignore[no-any-return]

    def peek(self, key: K, default: Any = None) -> Any:
        """The value without counting a hit or a miss (and without adapting its TTL)."""
        e = self._data.get(key)
        if e is None or self.timer() >= e.expires:
            return default
        return e.value

    def get_stale(self, key: K, default: Any = None) -> Any:
        """The value if fresh or expired less than ``stale_for`` seconds ago, else ``default``
        (no hit or miss counted). For serving a read when the source is unavailable, and for
        finding every entry an invalidation must drop."""
        e = self._data.get(key)
        if e is None or self.timer() >= e.expires + self.stale_for:
            return default
        return e.value

    def ttl_of(self, key: K) -> float | None:
        """Current TTL (seconds) of a live entry, ``None`` if absent or without expiry."""
        e = self._data.get(key)
        return None if e is None else e.ttl

    def expires_at(self, key: K) -> float | None:
        e = self._data.get(key)
        return None if e is None else e.expires

    # -- writes ----------------------------------------------------------------------------------

    def __setitem__(self, key: K, value: V) -> None:
        self.set(key, value)

    def set(self, key: K, value: V, *, ttl: float | None = None) -> bool:
        """Cache ``value``; returns ``False`` if it was not kept (too large, or not admitted).

        ``ttl`` overrides the adaptive TTL for this fill (e.g. a short TTL for "not found").
        An existing entry keeps its adapted TTL and hit history across refills.
        """
        size = self.getsizeof(value)
        if self.max_bytes is not None and size > self.max_bytes:
            self._stats.too_large += 1
            self.pop(key, None)
            return False
        now = self.timer()
        rule = self.rule
        old = self._data.get(key)
        if old is not None:
            self._drain()
            self._bytes += size - old.size
            old.value, old.size, old.filled = value, size, now
            old.stale = False
            if ttl is not None:
                old.ttl = ttl
            elif old.ttl is None and rule.base is not None:
                old.ttl = rule.base
            self._expire_at(old, now)
            self._shed_bytes()
            return key in self._data
        policy = self._policy
        token = None
        dropped: list[Hashable] | None = None
        rejected = 0
        if policy is not None:
            rejected = policy.admissions_rejected
            if self._missed is key and not self._reads:
                # the miss just before, with nothing between: both in one call
                self._missed = _NO_MISS
                token, dropped = policy.insert_missed(key)
            else:
                self._drain()
                token = policy.token(key)
        e = _Entry(value, size, now, ttl if ttl is not None else rule.base, token)
        self._expire_at(e, now)
        self._data[key] = e
        self._bytes += size
        self._stats.inserts += 1
        if policy is not None:
            if dropped is None:
                dropped = policy.add(key, token)
            if dropped:
                self._drop(dropped, "capacity")
            self._stats.admissions_rejected += policy.admissions_rejected - rejected
        else:
            self._lru[key] = None
            if len(self._lru) > self.maxsize:
                old_key, _ = self._lru.popitem(last=False)
                self._remove(old_key, self._data[old_key], policy=False)
                self._stats.evictions["capacity"] += 1
        self._shed_bytes()
        return key in self._data

    def __delitem__(self, key: K) -> None:
        e = self._data.get(key)
        if e is None:
            raise KeyError(key)
        self._remove(key, e)
        self._stats.evictions["explicit"] += 1

    def expire(self) -> int:
        """Drop every entry past its stale window (with ``stale_for`` 0: every expired entry)
        now; returns how many (reads also drop them lazily)."""
        now = self.timer()
        dead = [k for k, e in self._data.items() if now >= e.expires + self.stale_for]
        for k in dead:
            e = self._data[k]
            self._stats.expirations += not e.stale
            self._remove(k, e)
        for e in self._data.values():
            if now >= e.expires and not e.stale:
                e.stale = True
                self._stats.expirations += 1
        return len(dead)

    def clear(self) -> None:
        for k in list(self._data):
            self._remove(k, self._data[k])

    def ttl_distribution(self) -> dict[str, float]:
        """Quantiles (min, p50, p90, max) and mean of the current entries' TTLs, in seconds."""
        ttls = sorted(e.ttl for e in self._data.values() if e.ttl is not None)
        if not ttls:
            return {}

        def q(p: float) -> float:
            return ttls[min(len(ttls) - 1, int(p * len(ttls)))]

        return {
            "min": ttls[0],
            "p50": q(0.5),
            "p90": q(0.9),
            "max": ttls[-1],
            "mean": sum(ttls) / len(ttls),
            "n": float(len(ttls)),
        }

    def get_stats(self) -> dict[str, Any]:
        """The counters, occupancy, TTL distribution and the policy's tuning, as a dict."""
        s = self.counters  # drains the buffered hits first: the policy's tuning below counts them
        return {
            "hits": s.hits,
            "misses": s.misses,
            "hit_ratio": s.hit_ratio,
            "inserts": s.inserts,
            "expirations": s.expirations,
            "evictions": dict(s.evictions),
            "admissions_rejected": s.admissions_rejected,
            "too_large": s.too_large,
            "ttl_grown": s.ttl_grown,
            "ttl_shrunk": s.ttl_shrunk,
            "entries": len(self._data),
            "bytes": self._bytes,
            "ttl": self.ttl_distribution(),
            "policy": self._policy.get_stats() if self._policy is not None else {"adaptive": "lru"},
        }

    # -- internals -------------------------------------------------------------------------------

    def _expire_at(self, e: _Entry, now: float) -> None:
        if e.ttl is None:
            e.expires = float("inf")
            return
        j = self.rule.jitter
        e.expires = e.filled + e.ttl * (1.0 + j * (2.0 * self._rng.random() - 1.0) if j else 1.0)

    def _adapt(self, e: _Entry, now: float, rule: TTLRule) -> None:
        elapsed = now - e.win_start
        if elapsed >= rule.window:
            # roll the window: the finished one becomes "previous" (or zero after a long gap)
            e.prev_hits = e.hits if elapsed < 2 * rule.window else 0
            e.hits = 0
            e.win_start = now - (elapsed % rule.window)
            elapsed = now - e.win_start
            adapt = True
        else:
            adapt = False
        e.hits += 1
        if not adapt or e.ttl is None:
            return
        # once per window: the sliding-window hit count of the window that just ended
        rate = e.prev_hits
        if rate >= rule.hot_hits and e.ttl < rule.max:
            e.ttl = min(rule.max, e.ttl * (1.0 + rule.rate))
            self._stats.ttl_grown += 1
        elif rate <= rule.cold_hits and e.ttl > rule.min:
            e.ttl = max(rule.min, e.ttl * (1.0 - rule.rate))
            self._stats.ttl_shrunk += 1
        else:
            return
        self._expire_at(e, now)

    def _drain(self) -> None:
        """Give the policy what it has not seen yet, in order: the last miss (when no set
        followed it at once), then the buffered hits (before anything else reaches it)."""
        policy = self._policy
        if policy is None:
            return
        if self._missed is not _NO_MISS:
            key, self._missed = self._missed, _NO_MISS
            dropped = policy.record(key, False)
            if dropped:
                self._drop(dropped, "capacity")
        reads = self._reads
        if reads:
            self._reads = []
            self._stats.hits += len(reads)  # a hit is counted here, not in get (an int less)
            dropped = policy.record_hits(reads)
            if dropped:
                self._drop(dropped, "capacity")

    def _remove(self, key: K, e: _Entry, *, policy: bool = True) -> None:
        if policy and (self._reads or self._missed is not _NO_MISS):
            self._drain()  # the requests before this removal count first
            if self._data.get(key) is not e:
                return  # the drain handed it back to be dropped: it is gone already
        del self._data[key]
        self._bytes -= e.size
        if policy:
            if self._policy is not None:
                self._policy.remove(key)
            else:
                self._lru.pop(key, None)

    def _drop(self, keys: list[Hashable], cause: str) -> None:
        # the policy hands back keys this cache gave it: they are K
        for k in cast("list[K]", keys):
            e = self._data.get(k)
            if e is not None:
                self._remove(k, e, policy=False)
                self._stats.evictions[cause] += 1

    def _shed_bytes(self) -> None:
        if self.max_bytes is None:
            return
        while self._bytes > self.max_bytes and self._data:
            victim = cast(
                "K | None",
                self._policy.victim() if self._policy is not None else next(iter(self._lru)),
            )
            if victim is None:
                break
            self._remove(victim, self._data[victim])
            self._stats.evictions["bytes"] += 1
