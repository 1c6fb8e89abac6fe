"""Eviction policy: adaptive W-TinyLFU, as pure in-memory state (no clock, no I/O).

The design follows Caffeine (Einziger, Friedman & Manes, "TinyLFU", ACM TOS 2017, and its
adaptive "hill climbing" window):

* a **window** LRU takes every new key, so bursts of recency are admitted;
* the **main** space is a segmented LRU (probation + protected, 80 % protected);
* a key leaving the window enters main only if a **count-min frequency sketch** estimates it was
  used more often than main's eviction victim; one-hit wonders and scans are rejected, which is
  what makes the policy scan-resistant;
* the sketch's 4-bit counters are halved every ``10 x capacity`` increments, so popularity
  decays (the Rust system's hit counts never did);
* the window's share of capacity is tuned online, so recency-heavy workloads get a large window
  (LRU-like) and frequency-heavy ones a small one. The default (``adaptive="ghost"``) steers it as
  ARC steers its lists: a miss on a key that admission turned away recently (within twice the
  window's size of rejections) grows the window by one, a miss on a key main evicted shrinks it by
  the ghost lists' ratio. Bounding the rejected-key ghost by the window matters: a hit deep in it
  only says a much larger window would have caught the key, and growing on it made the window
  LRU-sized on two-pool workloads (LIRS ``2_pools``: 0.74 miss ratio vs 0.55). A shadow LRU (keys
  only) guards the result: when plain LRU would have missed less over the last ``4 x capacity``
  requests, the window grows by half the capacity and that size becomes a floor that ghost-driven
  shrinking cannot cross, halved only after a period in which we beat LRU by 3 %.
  ``adaptive="climb"`` is Caffeine's hill climber instead;
* admission requires the candidate's estimated frequency to exceed the victim's by more than one
  (``bias``): the count includes the candidate's own current access, and without the margin the
  periodic halving lets each new key of a loop larger than the cache beat the resident victim, so
  main churns like LRU (measured on the LIRS loop-like traces).

Hashing is deterministic (no per-process salt), so a policy fed the same keys makes the same
decisions in every process: the simulator and the live cache agree.

:class:`WTinyLFU` tracks keys only; :class:`~tiered.cache.adaptive.AdaptiveTTLCache` stores the
values and asks it which key to drop. ``access`` on its own makes it a trace simulator.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["FrequencySketch", "WTinyLFU", "stable_hash"]

_M64 = (1 << 64) - 1
_C1 = 0x9E3779B97F4A7C15
_C2 = 0xC2B2AE3D27D4EB4F
_HALF = bytes(i >> 1 for i in range(256))


def stable_hash(key: Hashable) -> int:
    """A mixed 64-bit hash that is the same in every process (``hash(str)`` is salted)."""
    if type(key) is int:
        h = key & _M64
    elif type(key) is str:
        h = zlib.crc32(key.encode("utf-8", "surrogatepass")) | (len(key) << 32)
    elif type(key) is bytes:
        h = zlib.crc32(key) | (len(key) << 32)
    else:
        h = zlib.crc32(repr(key).encode("utf-8", "surrogatepass"))
    h = ((h ^ (h >> 31)) * _C1) & _M64
    return (h ^ (h >> 29)) * _C2 & _M64


class FrequencySketch:
    """Count-min sketch of 4-bit counters (depth 4) with periodic halving ("aging")."""

    __slots__ = ("_mask", "_step", "_table", "_width", "additions", "sample_size")

    def __init__(self, capacity: int) -> None:
        width = 1 << max(4, (max(1, capacity) - 1).bit_length())
        self._width = width
        self._mask = width - 1
        # four rows indexed by four 16-bit slices of the mixed hash (overlapping, re-mixed
        # slices for tables wider than 2**16)
        self._step = 16 if width <= 1 << 16 else 12
        self._table = bytearray(4 * width)
        self.sample_size = 10 * max(1, capacity)
        self.additions = 0

    def _indexes(self, h: int) -> tuple[int, int, int, int]:
        m, w, s = self._mask, self._width, self._step
        if s == 12:
            h ^= (h * _C2 & _M64) >> 13
        return (h & m, w + ((h >> s) & m), 2 * w + ((h >> 2 * s) & m), 3 * w + ((h >> 3 * s) & m))

    def increment(self, h: int) -> None:
        t = self._table
        i0, i1, i2, i3 = self._indexes(h)
        # conservative update: raise only the counters at the current minimum
        lo = min(t[i0], t[i1], t[i2], t[i3])
        if lo >= 15:
            return
        if t[i0] == lo:
            t[i0] = lo + 1
        if t[i1] == lo:
            t[i1] = lo + 1
        if t[i2] == lo:
            t[i2] = lo + 1
        if t[i3] == lo:
            t[i3] = lo + 1
        self.additions += 1
        if self.additions >= self.sample_size:
            self._table = bytearray(t.translate(_HALF))
            self.additions //= 2

    def frequency(self, h: int) -> int:
        t = self._table
        i0, i1, i2, i3 = self._indexes(h)
        return min(t[i0], t[i1], t[i2], t[i3])


_WINDOW, _PROBATION, _PROTECTED = 0, 1, 2
_NONE: list[Hashable] = []  # shared empty result; never mutated


class WTinyLFU:
    """Adaptive W-TinyLFU over keys. Capacity is in entries (or any unit, via ``weight``).

    The owner calls :meth:`record` on every lookup, :meth:`add` for a new key (which returns the
    keys to drop, possibly the new key itself when admission rejects it), :meth:`remove` when a
    key goes away for another reason. :meth:`access` does all of that for simulation.
    """

    def __init__(
        self,
        capacity: int,
        *,
        window: float = 0.01,
        protected: float = 0.8,
        adaptive: bool | str = "ghost",
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.sketch = FrequencySketch(capacity)
        if adaptive is True:
            adaptive = "ghost"
        if adaptive not in (False, "ghost", "climb"):
            raise ValueError(f"adaptive must be 'ghost', 'climb' or False, got {adaptive!r}")
        self.adaptive = adaptive
        # ghosts (keys only) of what left the window unadmitted and what main evicted
        self._ghost_window: OrderedDict[Hashable, None] = OrderedDict()
        self._ghost_main: OrderedDict[Hashable, None] = OrderedDict()
        # the LRU guard: a shadow LRU of keys and the two miss counts over a period
        self._shadow: OrderedDict[Hashable, None] | None = (
            OrderedDict() if adaptive == "ghost" else None
        )
        # large caches sample 1 key in 8 (by hash) into a shadow of 1/8 the size: the usual
        # sampled-simulation trick, so the guard costs little on the hot path
        self._guard_mask = 7 if capacity >= 2048 else 0
        self._shadow_cap = capacity // (self._guard_mask + 1)
        self._guard_period = max(500, 4 * self._shadow_cap)
        self._guard_n = self._guard_ours = self._guard_lru = 0
        self._floor = 1
        self._protected_share = protected
        self.window_max = max(1, round(capacity * window)) if capacity > 1 else 0
        self._resize_main()
        self._window: OrderedDict[Hashable, int] = OrderedDict()
        self._probation: OrderedDict[Hashable, int] = OrderedDict()
        self._protected: OrderedDict[Hashable, int] = OrderedDict()
        self._where: dict[Hashable, int] = {}
        self.admissions_rejected = 0
        self.bias = 1
        self._last_dropped: list[Hashable] = _NONE
        # hill climbing state
        self._sample = max(100, 10 * capacity)
        self._hits = self._misses = 0
        self._prev_rate = 0.0
        self._step: float = -max(1, round(capacity * 0.0625))
        self._initial_step = max(1, round(capacity * 0.0625))

    def _resize_main(self) -> None:
        main = self.capacity - self.window_max
        self.protected_max = int(main * self._protected_share)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._where

    # -- the owner's interface -----------------------------------------------------------------

    def record(self, key: Hashable, hit: bool, h: int | None = None) -> list[Hashable]:
        """Count a lookup of ``key``; on a hit, refresh its position.

        Returns keys the owner must drop (nearly always none: only when hill climbing just
        shrank the main space).
        """
        if h is None:
            h = stable_hash(key)
        self.sketch.increment(h)
        if hit:
            self._hits += 1
            seg = self._where.get(key)
            if seg == _WINDOW:
                self._window.move_to_end(key)
            elif seg == _PROTECTED:
                self._protected.move_to_end(key)
            elif seg == _PROBATION:
                del self._probation[key]
                self._protected[key] = 1
                self._where[key] = _PROTECTED
                if len(self._protected) > self.protected_max:
                    demoted, _ = self._protected.popitem(last=False)
                    self._probation[demoted] = 1
                    self._where[demoted] = _PROBATION
        else:
            self._misses += 1
        sh = self._shadow
        if sh is not None and not (h >> 40) & self._guard_mask:
            if key in sh:
                sh.move_to_end(key)
            else:
                self._guard_lru += 1
                sh[key] = None
                if len(sh) > self._shadow_cap:
                    sh.popitem(last=False)
            if not hit:
                self._guard_ours += 1
            self._guard_n += 1
            if self._guard_n >= self._guard_period:
                if self._guard_lru < 0.99 * self._guard_ours:
                    self.window_max = min(
                        self.capacity - 1, self.window_max + max(1, self.capacity // 2)
                    )
                    self._floor = self.window_max
                    self._resize_main()
                elif self._guard_ours < 0.97 * self._guard_lru:
                    self._floor = max(1, self._floor // 2)
                self._guard_n = self._guard_ours = self._guard_lru = 0
        if self.adaptive == "climb" and self._hits + self._misses >= self._sample:
            self._last_dropped = self._climb()
            return self._last_dropped
        return _NONE

    def last_dropped(self) -> list[Hashable]:
        """What the last :meth:`record` returned (for owners that only test its truth)."""
        return self._last_dropped

    def add(self, key: Hashable) -> list[Hashable]:
        """Insert a new key into the window; returns the keys that must be dropped."""
        if self.adaptive == "ghost":
            self._adapt(key)
        self._window[key] = 1
        self._where[key] = _WINDOW
        return self._evict()

    def _adapt(self, key: Hashable) -> None:
        # ARC's rule on W-TinyLFU's two spaces: a miss on a key that admission turned away says
        # the window is too small (recency matters); a miss on a key main evicted says main is.
        gw, gm = self._ghost_window, self._ghost_main
        if key in gw:
            del gw[key]
            self.window_max = min(self.capacity - 1, self.window_max + 1)
        elif key in gm:
            del gm[key]
            step = max(1, len(gw) // max(1, len(gm)))
            self.window_max = max(self._floor, self.window_max - step)
        else:
            return
        self._resize_main()

    def remove(self, key: Hashable) -> None:
        seg = self._where.pop(key, None)
        if seg == _WINDOW:
            del self._window[key]
        elif seg == _PROBATION:
            del self._probation[key]
        elif seg == _PROTECTED:
            del self._protected[key]

    def victim(self) -> Hashable | None:
        """The key to drop first when the owner must shed weight (bytes) beyond the policy."""
        for seg in (self._probation, self._window, self._protected):
            if seg:
                return next(iter(seg))
        return None

    def access(self, key: Hashable) -> bool:
        """Simulate one request: ``True`` on a hit. Evictions happen as in the real cache."""
        hit = key in self._where
        self.record(key, hit)
        if not hit:
            self.add(key)
        return hit

    # -- internals -----------------------------------------------------------------------------

    def _evict(self) -> list[Hashable]:
        dropped: list[Hashable] = []
        while len(self._window) > self.window_max:
            cand, _ = self._window.popitem(last=False)
            del self._where[cand]
            main = len(self._probation) + len(self._protected)
            if main < self.capacity - self.window_max:
                self._probation[cand] = 1
                self._where[cand] = _PROBATION
                continue
            if not self._probation:
                # main is all protected: demote its LRU to compete
                if not self._protected:
                    dropped.append(cand)
                    continue
                d, _ = self._protected.popitem(last=False)
                self._probation[d] = 1
                self._where[d] = _PROBATION
            victim = next(iter(self._probation))
            if self.sketch.frequency(stable_hash(cand)) - self.bias > self.sketch.frequency(
                stable_hash(victim)
            ):
                del self._probation[victim]
                del self._where[victim]
                self._probation[cand] = 1
                self._where[cand] = _PROBATION
                dropped.append(victim)
                self._ghost(self._ghost_main, victim, self.capacity - len(self._ghost_window))
            else:
                self.admissions_rejected += 1
                dropped.append(cand)
                self._ghost(self._ghost_window, cand, 2 * self.window_max)
        # main may be over after the window shrank (hill climbing)
        while len(self._probation) + len(self._protected) > self.capacity - self.window_max:
            seg = self._probation if self._probation else self._protected
            k, _ = seg.popitem(last=False)
            del self._where[k]
            dropped.append(k)
            self._ghost(self._ghost_main, k, self.capacity - len(self._ghost_window))
        return dropped

    def _ghost(self, ghosts: OrderedDict[Hashable, None], key: Hashable, bound: int) -> None:
        # ARC's bounds: |ghost_window| <= c - |window|, |ghost_main| <= c - |ghost_window|
        if self.adaptive == "ghost":
            ghosts[key] = None
            while len(ghosts) > max(1, bound):
                ghosts.popitem(last=False)

    def _climb(self) -> list[Hashable]:
        rate = self._hits / (self._hits + self._misses)
        delta = rate - self._prev_rate
        if delta < 0:
            self._step = -self._step  # the last move hurt: go the other way
        # big shifts in the workload restart the search with a full step; else the step decays
        if abs(delta) > 0.05:
            self._step = self._initial_step if self._step > 0 else -self._initial_step
        else:
            s = self._step * 0.98
            self._step = (1 if s > 0 else -1) * max(1.0, abs(s))
        self._prev_rate = rate
        self._hits = self._misses = 0
        target = int(min(self.capacity * 0.8, max(1, self.window_max + self._step)))
        if target == self.window_max:
            return _NONE
        self.window_max = target
        self._resize_main()
        # a smaller window spills into main now; a larger one takes from main by eviction
        return self._evict()
