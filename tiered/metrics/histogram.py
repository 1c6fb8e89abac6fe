"""Log-linear latency histogram (HDR-style): bounded relative error, mergeable, cheap to record.

A positive value ``v`` falls in the bucket given by its binary exponent and the top
``SUB_BITS`` bits of its mantissa, so every power of two is split into ``2**SUB_BITS`` equal
sub-buckets. A quantile is reported as the midpoint of its bucket: the relative error is at most
``1 / 2**(SUB_BITS + 1)`` — with the default 7 bits, 0.39 %, inside the 1 % the metrics layer
promises. Values are seconds (any unit works: the error is relative). Zero and negative values
(a clock that did not move) are counted in a zero bucket.

Recording appends to a buffer (~40 ns); the buffer is folded into the buckets with numpy every
``4096`` values and before any read, at ~20 ns a value — which keeps instrumentation off the
operation's latency path. Two histograms merge by adding their counts, so per-connection or
per-process histograms add up exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

__all__ = ["Histogram"]

SUB_BITS = 7
_SUB = 1 << SUB_BITS
_ZERO = -(1 << 30)  # the bucket of values <= 0
_FLUSH_AT = 4096


class Histogram:
    """Counts of values in log-linear buckets, with count, sum, min and max kept exactly."""

    __slots__ = ("_buckets", "_count", "_max", "_min", "_pending", "_sum")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self._pending: list[float] = []
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    def record(self, value: float) -> None:
        pending = self._pending
        pending.append(value)
        if len(pending) >= _FLUSH_AT:
            self._flush()

    def record_many(self, values: Iterable[float]) -> None:
        self._pending.extend(values)
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        arr = np.asarray(pending, dtype=np.float64)
        pos = arr > 0
        m, e = np.frexp(arr[pos])  # value = m * 2**e, 0.5 <= m < 1
        idx = e.astype(np.int64) * _SUB + ((m - 0.5) * (2 * _SUB)).astype(np.int64)
        keys, counts = np.unique(idx, return_counts=True)
        buckets = self._buckets
        for k, n in zip(keys.tolist(), counts.tolist(), strict=True):
            buckets[k] = buckets.get(k, 0) + n
        zeros = len(arr) - int(pos.sum())
        if zeros:
            buckets[_ZERO] = buckets.get(_ZERO, 0) + zeros
        self._count += len(arr)
        self._sum += float(arr.sum())
        self._min = min(self._min, float(arr.min()))
        self._max = max(self._max, float(arr.max()))

    @property
    def count(self) -> int:
        return self._count + len(self._pending)

    @property
    def sum(self) -> float:
        self._flush()
        return self._sum

    @property
    def min(self) -> float:
        self._flush()
        return self._min

    @property
    def max(self) -> float:
        self._flush()
        return self._max

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
        self._flush()
        if not self._count:
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
        self._flush()
        other._flush()
        for b, n in other._buckets.items():
            self._buckets[b] = self._buckets.get(b, 0) + n
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def copy(self) -> Histogram:
        h = Histogram()
        h.merge(self)
        return h

    def buckets(self) -> Iterator[tuple[float, int]]:
        """``(bucket midpoint, count)`` in increasing order."""
        self._flush()
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
