"""Log-linear latency histogram (HDR-style): bounded relative error, mergeable, cheap to record.

A positive value ``v`` falls in the bucket given by its binary exponent and the top
``SUB_BITS`` bits of its mantissa, so every power of two is split into ``2**SUB_BITS`` equal
sub-buckets. A quantile is reported as the midpoint of its bucket: the relative error is at most
``1 / 2**(SUB_BITS + 1)`` — with the default 7 bits, 0.39 %, inside the 1 % the metrics layer
promises. Values are seconds (any unit works: the error is relative). Zero and negative values
(a clock that did not move) are counted in a zero bucket.

Recording is one ``math.frexp``, a multiply and a dict update (~0.2 µs). Two histograms merge by
adding their counts, so per-connection or per-process histograms add up exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

__all__ = ["Histogram"]

SUB_BITS = 7
_SUB = 1 << SUB_BITS
_ZERO = -(1 << 30)  # the bucket of values <= 0


class Histogram:
    """Counts of values in log-linear buckets, with count, sum, min and max kept exactly."""

    __slots__ = ("_buckets", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def record(self, value: float) -> None:
        if value > 0:
            m, e = math.frexp(value)  # value = m * 2**e, 0.5 <= m < 1
            b = e * _SUB + int((m - 0.5) * 2 * _SUB)
        else:
            b = _ZERO
        buckets = self._buckets
        buckets[b] = buckets.get(b, 0) + 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def record_many(self, values: Iterable[float]) -> None:
        for v in values:
            self.record(v)

    @staticmethod
    def _mid(b: int) -> float:
        if b == _ZERO:
            return 0.0
        e, s = divmod(b, _SUB)
        lo = math.ldexp(0.5 + s / (2 * _SUB), e)
        hi = math.ldexp(0.5 + (s + 1) / (2 * _SUB), e)
        return (lo + hi) / 2

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of recorded values fall (NaN when empty)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if not self.count:
            return math.nan
        if q == 0.0:
            return self.min
        if q == 1.0:
            return self.max
        rank = q * self.count
        seen = 0
        for b in sorted(self._buckets):
            seen += self._buckets[b]
            if seen >= rank:
                # clamp to the exact extremes, so a quantile never lies outside the data
                return min(max(self._mid(b), self.min), self.max)
        return self.max

    def quantiles(self, qs: Iterable[float]) -> dict[float, float]:
        return {q: self.quantile(q) for q in qs}

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts into this histogram."""
        for b, n in other._buckets.items():
            self._buckets[b] = self._buckets.get(b, 0) + n
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def copy(self) -> Histogram:
        h = Histogram()
        h.merge(self)
        return h

    def buckets(self) -> Iterator[tuple[float, int]]:
        """``(bucket midpoint, count)`` in increasing order."""
        for b in sorted(self._buckets):
            yield self._mid(b), self._buckets[b]

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        if not self.count:
            return "<Histogram empty>"
        return (
            f"<Histogram n={self.count} p50={self.quantile(0.5):.3g} "
            f"p99={self.quantile(0.99):.3g} max={self.max:.3g}>"
        )
