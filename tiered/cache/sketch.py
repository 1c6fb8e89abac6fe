"""The frequency sketch TinyLFU admits by, and the process-independent hash it is indexed by.

A count-min sketch of 4-bit counters: 4 rows, 16 counters per entry of capacity and at least
1,024 per row, halved every ``10 x capacity`` increments so popularity decays (see
:mod:`tiered.cache.policy` for what its width costs in miss ratio).
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable

__all__ = ["FrequencySketch", "Token", "admits", "stable_hash"]

#: the hash's 64-bit mask and its two mixing constants (used again by the policy's sample)
M64 = (1 << 64) - 1
C1 = 0x9E3779B97F4A7C15
C2 = 0xC2B2AE3D27D4EB4F
_HALF = bytes(i >> 1 for i in range(256))

#: a key as the policy takes it: ``(key, i0, i1, i2, i3, sampled)``, the sketch's four counter
#: indexes and whether the key is in the copies' sample
#: (:meth:`~tiered.cache.policy.WTinyLFU.token`). Made once per key, so a hit does no 64-bit
#: arithmetic (the indexes and the sample test, made from the hash on every hit, would).
Token = tuple[Hashable, int, int, int, int, bool]


def stable_hash(key: Hashable) -> int:
    """A mixed 64-bit hash that is the same in every process (``hash(str)`` is salted)."""
    if type(key) is int:
        h = key & M64
    elif type(key) is str:
        h = zlib.crc32(key.encode("utf-8", "surrogatepass")) | (len(key) << 32)
    elif type(key) is bytes:
        h = zlib.crc32(key) | (len(key) << 32)
    else:
        h = zlib.crc32(repr(key).encode("utf-8", "surrogatepass"))
    h = ((h ^ (h >> 31)) * C1) & M64
    return (h ^ (h >> 29)) * C2 & M64


class FrequencySketch:
    """Count-min sketch of 4-bit counters (depth 4) with periodic halving ("aging")."""

    __slots__ = ("_mask", "_step", "_width", "additions", "sample_size", "table")

    def __init__(self, capacity: int) -> None:
        # 16 counters per entry of capacity (4 rows of 4 x capacity), at least 4 x 1,024
        width = 1 << max(10, (4 * max(1, capacity) - 1).bit_length())
        self._width = width
        self._mask = width - 1
        # four rows indexed by four 16-bit slices of the mixed hash (overlapping, re-mixed
        # slices for tables wider than 2**16)
        self._step = 16 if width <= 1 << 16 else 12
        # the counters, a byte each, row after row (the policy's inlined hit path reads them)
        self.table = bytearray(4 * width)
        self.sample_size = 10 * max(1, capacity)
        self.additions = 0

    def indexes(self, h: int) -> tuple[int, int, int, int]:
        """The four counters' positions in :attr:`table` for a key's hash."""
        m, w, s = self._mask, self._width, self._step
        if s == 12:
            h ^= (h * C2 & M64) >> 13
        return (h & m, w + ((h >> s) & m), 2 * w + ((h >> 2 * s) & m), 3 * w + ((h >> 3 * s) & m))

    def increment(self, h: int) -> None:
        self.add_at(*self.indexes(h))

    def add_at(self, i0: int, i1: int, i2: int, i3: int) -> None:
        """Count one more of the key whose counters are at ``i0..i3`` (:meth:`indexes`)."""
        t = self.table
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
            self.age()

    def age(self) -> None:
        """Halve every counter, in place (popularity decays)."""
        self.table[:] = self.table.translate(_HALF)
        self.additions //= 2

    def frequency(self, h: int) -> int:
        t = self.table
        i0, i1, i2, i3 = self.indexes(h)
        return min(t[i0], t[i1], t[i2], t[i3])


def admits(t: bytearray, cand: Token, victim: Token, bias: int) -> bool:
    """TinyLFU's admission: the candidate's count in the sketch's ``table`` beats the victim's by
    more than ``bias`` (each as its :data:`Token`)."""
    # the two minimums by comparisons: min() costs a call each, and a miss of a small cache
    # (every request simulated) runs this once per copy
    _, a0, a1, a2, a3, _ = cand
    c, x = t[a0], t[a1]
    if x < c:
        c = x
    x = t[a2]
    if x < c:
        c = x
    x = t[a3]
    if x < c:
        c = x
    _, b0, b1, b2, b3, _ = victim
    v, x = t[b0], t[b1]
    if x < v:
        v = x
    x = t[b2]
    if x < v:
        v = x
    x = t[b3]
    if x < v:
        v = x
    return c - bias > v
