"""Eviction policy: self-tuning W-TinyLFU, as pure in-memory state (no clock, no I/O).

The design follows Caffeine (Einziger, Friedman & Manes, "TinyLFU", ACM TOS 2017):

* a **window** LRU takes every new key, so bursts of recency are admitted;
* the **main** space is a segmented LRU (probation + protected, 80 % protected);
* a key leaving the window enters main only if a **count-min frequency sketch** estimates it was
  used more often than main's eviction victim (by more than ``bias``); one-hit wonders and scans
  are rejected, which is what makes the policy scan-resistant;
* the sketch has 16 4-bit counters per entry of capacity (4 rows, as Caffeine's) and at least
  1,024 per row, halved every ``10 x capacity`` increments, so popularity decays; a narrower
  sketch's collisions cost miss ratio and made small caches depend on how keys are numbered.

**Self-tuning by miniature simulation** (``adaptive="sim"``, the default). The two settings that
matter differ by workload: the window's share of capacity (small for frequency-skewed traffic,
nearly all of it for recency-heavy traffic) and the admission margin ``bias`` (1 keeps a loop
larger than the cache from churning main; 0 admits sooner and wins when popularity moves).
Instead of hand-set rules, the policy runs key-only copies of itself beside the real one, each
with a fixed setting from :data:`CANDIDATES`, on a sample of the keys (Waldspurger et al., "Cache
Modeling and Optimization using Miniature Simulations", USENIX ATC 2017):

* **The sample.** A key is in it when its hash, mixed with the instance's ``seed``, falls in the
  first ``1/2**k`` of the hash space, and each copy holds ``capacity / 2**k`` keys; ``2**k`` is
  the largest power of two up to 16 that leaves ``sample_min`` keys or more per copy, or larger
  while a copy would hold more than ``sample_max``, and never one key in two or four: small caches
  (under ``8 x sample_min`` entries) simulate every key. Sparser samples made the choice follow
  the sample rather than the trace; one key in two or four saves little on a small cache and
  costs it exactness. The copies share the real sketch (its counts are the same for a sampled
  key).
* **The score.** Every ``period x copy size`` sampled requests (at least 200), each copy's misses
  are added to an exponentially decayed score (``decay``: a short memory switches back and forth
  after bursts of recency). Periods in which the copies are still filling are not scored: every
  copy misses alike then, and a choice made on them is noise.
* **The switch.** The real cache takes the setting of the lowest score when it beats the current
  one clearly: by more than a margin (a switch costs misses while the contents adjust) and by
  more than two standard deviations of the difference. On a sample, the copies' difference
  carries the sample's own bias, which lasts from period to period, so the deviation is bounded
  by counting (a difference of two Poisson counts of the scores' size) and the margin is
  ``margin``. With every key simulated, each copy misses exactly what its setting would have, and
  the noise left is the workload's: the deviation is the decayed sum of the pair's squared
  differences period by period (uncentred, so a gain has to hold for several periods), and the
  margin is ``exact_margin``. The cache starts with its own setting (a candidate like the
  others).
* **Keys move, none drop.** A larger window takes main's least recent keys as its oldest
  (Caffeine's ``increaseWindow``), and protected's excess over its smaller bound goes back to
  probation (``demoteFromMainProtected``); a smaller window hands its oldest to main, which has
  the room. Dropping main's overflow at once would empty most of the cache on a large switch.
* **Bounded cost.** At most ``len(CANDIDATES) x sample_max`` keys in all, visited on one request
  in ``2**k``; a small cache, where every request is simulated, pays for the copies on every
  request (``benchmarks/bench_cache.py`` measures what, beside theine).

**Hits in batches.** :meth:`WTinyLFU.record_hits` takes a list of hits and runs one loop over
them with the sketch's increment and the copies' hit paths inlined, so an owner can buffer hits
(a list append each) and hand them over every few hits and before anything else reaches the
policy; the decisions are those of one request at a time (Caffeine's read buffer, without its
losses). :class:`~tiered.cache.adaptive.AdaptiveTTLCache` does so every 16 hits. Each key is
handed over as its :data:`Token` (the key, its four sketch indexes and its sample flag), which
the owner makes once when the key comes in and keeps beside the value, so a hit does no hashing
and no 64-bit arithmetic, for some memory per key. No count on a hit's path grows past 256
(CPython allocates every larger int anew and frees the old one): the owner counts hits when it
hands them over, the loop counts the sketch's additions down in small chunks and the climber's
hits only when climbing.

Nothing here depends on the values of the keys beyond the hash the sketch and the sample need,
and the sample follows the ``seed``. Renumbering a trace's keys is the same as another seed: it
moves a fixed setting's miss ratio only by the sketch's collisions, and the tuned one also by
when the sampled copies see a clear win (``benchmarks/bench_cache.py`` measures the spread over
renumberings). ``adaptive="climb"`` is Caffeine's hill climber on the window share (kept for
comparison), ``False`` a fixed window.

Hashing is deterministic (no per-process salt), so a policy fed the same keys with the same seed
makes the same decisions in every process: the simulator and the live cache agree.

:class:`WTinyLFU` tracks keys only; :class:`~tiered.cache.adaptive.AdaptiveTTLCache` stores the
values and asks it which key to drop. ``access`` on its own makes it a trace simulator.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

from tiered.cache.sketch import C1 as _C1
from tiered.cache.sketch import M64 as _M64
from tiered.cache.sketch import FrequencySketch, Token, stable_hash
from tiered.cache.sketch import admits as _admits

__all__ = ["CANDIDATES", "FrequencySketch", "Token", "WTinyLFU", "stable_hash"]


_WINDOW, _PROBATION, _PROTECTED = 0, 1, 2
_NONE: list[Hashable] = []  # shared empty result; never mutated


#: the settings the miniature simulation chooses from: (window share, admission bias). Bias 1
#: with every window share; bias 0 where admission decides most (small and medium windows).
CANDIDATES: tuple[tuple[float, int], ...] = (
    (0.01, 1),
    (0.1, 1),
    (0.3, 1),
    (0.6, 1),
    (0.95, 1),
    (0.01, 0),
    (0.1, 0),
    (0.3, 0),
)


class _Copy:
    """A key-only W-TinyLFU of one fixed setting, fed the sampled keys; counts its misses."""

    __slots__ = (
        "_probation",
        "_protected",
        "_where",
        "_window",
        "bias",
        "main_max",
        "misses",
        "protected_max",
        "sketch",
        "window_max",
    )

    def __init__(
        self, capacity: int, share: float, protected: float, bias: int, sketch: FrequencySketch
    ) -> None:
        self.window_max = min(capacity - 1, max(1, round(capacity * share))) if capacity > 1 else 0
        self.main_max = capacity - self.window_max
        self.protected_max = int(self.main_max * protected)
        self.bias = bias
        self.sketch = sketch
        self.misses = 0
        # values are the keys' tokens, so admission reads the sketch without hashing again
        self._window: OrderedDict[Hashable, Token] = OrderedDict()
        self._probation: OrderedDict[Hashable, Token] = OrderedDict()
        self._protected: OrderedDict[Hashable, Token] = OrderedDict()
        self._where: dict[Hashable, int] = {}

    def full(self) -> bool:
        return len(self._where) >= self.window_max + self.main_max

    def access(self, key: Hashable, tok: Token) -> None:
        seg = self._where.get(key)
        if seg == _WINDOW:
            self._window.move_to_end(key)
            return
        if seg == _PROTECTED:
            self._protected.move_to_end(key)
            return
        if seg == _PROBATION:
            del self._probation[key]
            self._protected[key] = tok
            self._where[key] = _PROTECTED
            if len(self._protected) > self.protected_max:
                d, dh = self._protected.popitem(last=False)
                self._probation[d] = dh
                self._where[d] = _PROBATION
            return
        self.misses += 1
        window = self._window
        window[key] = tok
        self._where[key] = _WINDOW
        if len(window) <= self.window_max:
            return
        cand, ch = window.popitem(last=False)
        del self._where[cand]
        if len(self._probation) + len(self._protected) < self.main_max:
            self._probation[cand] = ch
            self._where[cand] = _PROBATION
            return
        if not self._probation:
            if not self._protected:
                return
            d, dh = self._protected.popitem(last=False)
            self._probation[d] = dh
            self._where[d] = _PROBATION
        victim, vh = next(iter(self._probation.items()))
        if _admits(self.sketch.table, ch, vh, self.bias):
            del self._probation[victim]
            del self._where[victim]
            self._probation[cand] = ch
            self._where[cand] = _PROBATION


class WTinyLFU:
    """Self-tuning W-TinyLFU over keys. Capacity is in entries (or any unit, via ``weight``).

    The owner calls :meth:`record` on every lookup, :meth:`add` for a new key (which returns the
    keys to drop, possibly the new key itself when admission rejects it), :meth:`remove` when a
    key goes away for another reason. :meth:`access` does all of that for simulation. An owner
    that keeps each key's :meth:`token` (made once, when the key comes in) hands it to
    :meth:`add` and :meth:`record_hits`, and a hit then does no hashing.
    """

    def __init__(
        self,
        capacity: int,
        *,
        window: float = 0.01,
        protected: float = 0.8,
        bias: int = 1,
        adaptive: bool | str = "sim",
        seed: int = 0,
        candidates: tuple[tuple[float, int], ...] = CANDIDATES,
        sample_min: int = 512,
        sample_max: int = 4096,
        period: float = 1.0,
        decay: float = 0.995,
        margin: float = 0.02,
        exact_margin: float = 0.01,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if adaptive is True:
            adaptive = "sim"
        if adaptive not in (False, "sim", "climb"):
            raise ValueError(f"adaptive must be 'sim', 'climb' or False, got {adaptive!r}")
        if not candidates or any(not 0 < s < 1 or b < 0 for s, b in candidates):
            raise ValueError(f"candidates must be (share in (0, 1), bias >= 0), got {candidates}")
        if (
            not 1 <= sample_min <= sample_max
            or period <= 0
            or not 0 <= decay < 1
            or not 0 <= margin < 1
            or not 0 <= exact_margin < 1
        ):
            raise ValueError(
                "need 1 <= sample_min <= sample_max, period > 0, 0 <= decay < 1 and "
                "0 <= margin, exact_margin < 1, got "
                f"{sample_min}, {sample_max}, {period}, {decay}, {margin}, {exact_margin}"
            )
        self.capacity = capacity
        self.sketch = FrequencySketch(capacity)
        self.adaptive = adaptive
        self.seed = seed
        self._salt = stable_hash(seed & _M64)  # every bit of the sample test follows the seed
        self.bias = bias
        self._protected_share = protected
        self.window_max = max(1, round(capacity * window)) if capacity > 1 else 0
        self._resize_main()
        # values are the keys' tokens (admission reads the sketch through them)
        self._window: OrderedDict[Hashable, Token] = OrderedDict()
        self._probation: OrderedDict[Hashable, Token] = OrderedDict()
        self._protected: OrderedDict[Hashable, Token] = OrderedDict()
        self._where: dict[Hashable, int] = {}
        self.admissions_rejected = 0
        # miniature simulation: copies over a seeded hash sample of the keys
        self._copies: list[_Copy] | None = None
        self._copy_ops: list[
            tuple[
                Callable[[Hashable], int | None],
                Callable[[Hashable], None],
                Callable[[Hashable], None],
                Callable[[Hashable, Token], None],
            ]
        ] = []
        self.candidates = candidates
        self.choice: tuple[float, int] | None = None
        self.sample_rate = 0.0  # the share of keys the copies see
        self.switches = 0  # settings taken after the starting one
        self.simulated = 0  # requests the copies have seen
        self.periods_scored = 0  # periods whose misses entered the scores (full copies only)
        self._sample_shift = 64  # unused without copies (a token's flag is then False)
        if adaptive == "sim" and capacity > 1:
            bits = 0
            # the sample: one key in 2**bits, with at least sample_min keys per copy; at least
            # one key in 16 (that is what the copies cost a 10,000-entry cache) unless a copy
            # would then hold more than sample_max keys
            while capacity >> (bits + 1) >= sample_min and (
                bits < 4 or capacity >> bits > sample_max
            ):
                bits += 1
            if bits < 3:
                # one key in two or in four spares little work and makes the choice follow the
                # sample: over four key numberings, web12 at 1,375 entries (one in two) spread
                # by 1.3 % and web07 at 2,048 (one in four) by 1.3 %; 0.4 % and 0.2 % with
                # every key simulated
                bits = 0
            self._sample_shift = 64 - bits  # x >> 64 is 0: every key when bits == 0
            size = capacity >> bits
            self._copies = [_Copy(size, s, protected, b, self.sketch) for s, b in candidates]
            # each copy's hit path as bound methods (a copy never replaces its dicts)
            self._copy_ops = [
                (c._where.get, c._window.move_to_end, c._protected.move_to_end, c.access)
                for c in self._copies
            ]
            self._period = max(200, round(period * size))
            self._seen = 0
            self._warm = False
            self._decay = decay
            # with every key simulated, each copy misses exactly what its setting would have
            # missed: the noise left is the workload's own, period to period, measured on the
            # pair (see _clear); a sample adds its own lasting bias, bounded by counting
            self._margin = exact_margin if bits == 0 else margin
            n = len(candidates)
            self._pair2 = [[0.0] * n for _ in range(n)] if bits == 0 else None
            self._scores = [0.0] * n
            # the starting setting, when it is a candidate, has to be beaten like any other
            start = (window, bias)
            self._current = candidates.index(start) if start in candidates else -1
            if self._current >= 0:
                self.choice = start
            self.sample_rate = 1.0 / (1 << bits)
        # hill climbing state (adaptive="climb")
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

    def token(self, key: Hashable, h: int | None = None) -> Token:
        """``key`` as this policy takes it (``h``: its :func:`stable_hash`, if known): with the
        sketch's counter indexes and whether the copies sample it. It depends on this instance
        (its capacity and seed), so an owner keeps one per key for the policy that made it: it
        costs ~180 bytes a key and saves a hit ~370 ns."""
        if h is None:
            h = stable_hash(key)
        i0, i1, i2, i3 = self.sketch.indexes(h)
        sampled = self._copies is not None and not (
            ((h ^ self._salt) * _C1 & _M64) >> self._sample_shift
        )
        return (key, i0, i1, i2, i3, sampled)

    def record(
        self, key: Hashable, hit: bool, h: int | None = None, token: Token | None = None
    ) -> list[Hashable]:
        """Count a lookup of ``key`` (``h``: its :func:`stable_hash`, or ``token``: its
        :meth:`token`, if known); on a hit, refresh its position.

        Returns keys the owner must drop: none as long as the owner adds and removes keys through
        this policy (tuning moves keys between the window and main and drops none); kept so an
        owner never has to assume that.
        """
        return self._run([self.token(key, h) if token is None else token], hit)

    def insert_missed(self, key: Hashable) -> tuple[Token, list[Hashable]]:
        """``record(key, False)`` and then ``add(key)``, in one call: a miss whose fill follows
        it with no other request between (what :meth:`access` does for a miss). Returns the
        key's token and the keys the owner must drop, the new key itself when admission
        rejects it. The same decisions as the two calls, without the batch loop's setup."""
        tok = self.token(key)
        _, i0, i1, i2, i3, sampled = tok
        self.sketch.add_at(i0, i1, i2, i3)
        dropped: list[Hashable] = _NONE
        copies = self._copies
        if sampled and copies is not None:
            for get, window_hit, protected_hit, access in self._copy_ops:
                # a copy's hit in its window or protected segment, inlined (as in _run)
                seg = get(key)
                if seg == _WINDOW:
                    window_hit(key)
                elif seg == _PROTECTED:
                    protected_hit(key)
                else:
                    access(key, tok)
            self._seen += 1
            self.simulated += 1
            if self._seen >= self._period:
                dropped = self._choose(copies)
        elif self.adaptive == "climb":
            self._misses += 1
            if self._hits + self._misses >= self._sample:
                dropped = self._climb()
        self._window[key] = tok
        self._where[key] = _WINDOW
        if len(self._window) > self.window_max:
            dropped = dropped + self._evict()
        return tok, dropped

    def record_hits(self, reads: list[Token]) -> list[Hashable]:
        """Count a batch of hits, oldest first: the same as ``record(key, True)`` for the key of
        each token (from :meth:`token`) in turn, in one call.

        This is the drain of a read buffer (Caffeine's design, kept exact): the owner appends
        each hit to a list and hands the list over when it is full and before anything else
        reaches the policy (a miss, an insert, a removal), so every decision is the one the hits
        one by one would make, and a hit costs the owner a list append instead of a call.
        Returns the keys the owner must drop (as :meth:`record`).
        """
        return self._run(reads, True)

    def _run(self, reads: list[Token], hit: bool) -> list[Hashable]:
        # one loop for every request, the sketch's increment and the copies' hit paths inlined
        # (this is a cache hit's cost): tokens instead of hashes (no 64-bit arithmetic), the
        # copies' hit paths as bound methods, no min() call, the sketch's addition count in a
        # local. Counters that grow past 256 allocate an int at every step (CPython caches the small
        # ones only): the additions are counted down in chunks of small ints, and hits and
        # misses only when the hill climber reads them
        sk = self.sketch
        t = sk.table
        adds, limit = sk.additions, sk.sample_size
        chunk = left = min(max(limit - adds, 1), 250)  # additions before adds is brought up
        where, window, protected = self._where, self._window, self._protected
        probation, protected_max = self._probation, self.protected_max
        copies, ops = self._copies, self._copy_ops
        climb = self.adaptive == "climb"
        dropped: list[Hashable] = _NONE
        for tok in reads:
            # FrequencySketch.increment: conservative update of the counters at the minimum
            key, i0, i1, i2, i3, sampled = tok
            c0, c1, c2, c3 = t[i0], t[i1], t[i2], t[i3]
            lo = c0 if c0 < c1 else c1  # min() costs a call: ~100 ns more a hit
            if c2 < lo:
                lo = c2
            if c3 < lo:
                lo = c3
            if lo < 15:
                if c0 == lo:
                    t[i0] = lo + 1
                if c1 == lo:
                    t[i1] = lo + 1
                if c2 == lo:
                    t[i2] = lo + 1
                if c3 == lo:
                    t[i3] = lo + 1
                left -= 1
                if not left:
                    adds += chunk
                    if adds >= limit:
                        sk.additions = adds
                        sk.age()
                        adds = sk.additions
                    chunk = left = min(limit - adds, 250)
            if hit:
                seg = where.get(key)
                if seg == _PROTECTED:
                    protected.move_to_end(key)
                elif seg == _WINDOW:
                    window.move_to_end(key)
                elif seg == _PROBATION:
                    del probation[key]
                    protected[key] = tok
                    where[key] = _PROTECTED
                    if len(protected) > protected_max:
                        demoted, dtok = protected.popitem(last=False)
                        probation[demoted] = dtok
                        where[demoted] = _PROBATION
            if sampled and copies is not None:
                for get, window_hit, protected_hit, access in ops:
                    # a copy's hit in its window or protected segment, inlined
                    seg = get(key)
                    if seg == _WINDOW:
                        window_hit(key)
                    elif seg == _PROTECTED:
                        protected_hit(key)
                    else:
                        access(key, tok)
                self._seen += 1
                self.simulated += 1
                if self._seen >= self._period:
                    dropped = dropped + self._choose(copies)
                    protected_max = self.protected_max
            elif climb:
                if hit:
                    self._hits += 1
                else:
                    self._misses += 1
                if self._hits + self._misses >= self._sample:
                    dropped = dropped + self._climb()
                    protected_max = self.protected_max
        sk.additions = adds + chunk - left
        return dropped

    def get_stats(self) -> dict[str, object]:
        """What the self-tuning has chosen: window share, admission bias, switches, sampling."""
        return {
            "adaptive": self.adaptive,
            "window_share": self.window_max / self.capacity,
            "bias": self.bias,
            "switches": self.switches,
            "sample_rate": self.sample_rate,
            "simulated_requests": self.simulated,
            "periods_scored": self.periods_scored,
        }

    def segments(self) -> dict[str, int]:
        """Keys in each segment, and the segments' bounds (window, protected, and main)."""
        return {
            "window": len(self._window),
            "probation": len(self._probation),
            "protected": len(self._protected),
            "window_max": self.window_max,
            "protected_max": self.protected_max,
            "main_max": self.capacity - self.window_max,
        }

    def add(self, key: Hashable, token: Token | None = None) -> list[Hashable]:
        """Insert a new key into the window (``token``: its :meth:`token`, if kept); returns the
        keys that must be dropped."""
        self._window[key] = self.token(key) if token is None else token
        self._where[key] = _WINDOW
        return self._evict()

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
        tok = self.token(key)
        self._run([tok], hit)
        if not hit:
            self.add(key, tok)
        return hit

    # -- internals -----------------------------------------------------------------------------

    def _evict(self) -> list[Hashable]:
        dropped: list[Hashable] = []
        t = self.sketch.table
        while len(self._window) > self.window_max:
            cand, ct = self._window.popitem(last=False)
            del self._where[cand]
            main = len(self._probation) + len(self._protected)
            if main < self.capacity - self.window_max:
                self._probation[cand] = ct
                self._where[cand] = _PROBATION
                continue
            if not self._probation:
                # main is all protected: demote its LRU to compete
                if not self._protected:
                    dropped.append(cand)
                    continue
                d, dt = self._protected.popitem(last=False)
                self._probation[d] = dt
                self._where[d] = _PROBATION
            victim, vt = next(iter(self._probation.items()))
            if _admits(t, ct, vt, self.bias):
                del self._probation[victim]
                del self._where[victim]
                self._probation[cand] = ct
                self._where[cand] = _PROBATION
                dropped.append(victim)
            else:
                self.admissions_rejected += 1
                dropped.append(cand)
        # main never exceeds its bound here: a key enters it only below the bound, and a window
        # that grows shrinks main first (_set_window)
        return dropped

    def _choose(self, copies: list[_Copy]) -> list[Hashable]:
        self._seen = 0
        if not self._warm:
            # misses while the copies fill are the same for every setting's copy but for
            # noise and the fill order: score only periods that start with full copies
            self._warm = copies[0].full()
            for c in copies:
                c.misses = 0
            return _NONE
        self.periods_scored += 1
        scores, d = self._scores, self._decay
        misses = [c.misses for c in copies]
        for i, c in enumerate(copies):
            scores[i] = d * scores[i] + misses[i]
            c.misses = 0
        pair2 = self._pair2
        if pair2 is not None:
            # each pair's squared difference of this period's misses, decayed as the squares
            # of the scores' weights: the variance of the difference of two scores
            d2 = d * d
            for row, mi in zip(pair2, misses, strict=True):
                for j, mj in enumerate(misses):
                    row[j] = d2 * row[j] + (mi - mj) * (mi - mj)
        best = min(range(len(scores)), key=scores.__getitem__)
        cur = self._current
        if cur >= 0 and not self._clear(scores, cur, best):
            return _NONE
        self._current = best
        self.switches += 1
        share, self.bias = self.choice = self.candidates[best]
        return self._set_window(round(self.capacity * share))

    def _clear(self, scores: list[float], cur: int, best: int) -> bool:
        """Whether ``best`` beats ``cur`` clearly: by more than the margin (a switch costs
        misses while the contents adjust) and by more than two standard deviations of the
        difference of their scores. With every key simulated, that deviation is measured: the
        decayed sum of the pair's squared differences period by period (uncentred, so a steady
        gain counts as noise too, and a gain must hold for five periods or more to count). On
        a sample, whose bias lasts from period to period, it is that of a difference of two
        Poisson counts of the scores' size, an upper bound for the copies' paired difference."""
        gain = scores[cur] - scores[best]
        if gain <= self._margin * scores[cur]:
            return False
        pair2 = self._pair2
        var = pair2[cur][best] if pair2 is not None else scores[cur] + scores[best]
        return gain * gain > 4 * var

    def _set_window(self, size: int) -> list[Hashable]:
        size = min(self.capacity - 1, max(1, size))
        if size == self.window_max:
            return _NONE
        grow = size > self.window_max
        self.window_max = size
        self._resize_main()
        if grow:
            # Caffeine's increaseWindow: main's least recent entries become the window's oldest;
            # nothing is dropped (dropping them would empty most of the cache at once, and the
            # switch would cost more misses than any fixed window)
            window, where, main_max = self._window, self._where, self.capacity - size
            moved: list[tuple[Hashable, Token]] = []
            while len(self._probation) + len(self._protected) > main_max:
                seg = self._probation if self._probation else self._protected
                moved.append(seg.popitem(last=False))
            for k, kt in reversed(moved):
                window[k] = kt
                window.move_to_end(k, last=False)
                where[k] = _WINDOW
        # a smaller window spills into main, which has the room for it
        dropped = self._evict()
        # Caffeine's demoteFromMainProtected: a smaller main has a smaller protected segment, and
        # its excess goes back to probation. (Left over its bound, protected kept main's keys
        # for good: a promotion demotes one key, so the excess stayed, probation held a key or
        # two and every admission fought one victim, and the cache missed more than one that
        # had the new setting from the start.)
        protected, probation, where = self._protected, self._probation, self._where
        while len(protected) > self.protected_max:
            k, kt = protected.popitem(last=False)
            probation[k] = kt
            where[k] = _PROBATION
        return dropped

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
        return self._set_window(int(min(self.capacity * 0.8, self.window_max + self._step)))
