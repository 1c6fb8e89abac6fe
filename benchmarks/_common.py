"""Helpers shared by the benchmark scripts (run as ``python benchmarks/bench_x.py``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def log(msg: str) -> None:
    """Progress on stderr (stdout carries only the JSON result)."""
    print(msg, file=sys.stderr, flush=True)


def quantile(xs: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (``0 <= q <= 1``) of ``xs``."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def p50_p99(xs: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """``{"p50": ..., "p99": ...}`` of ``xs``, each multiplied by ``scale``."""
    return {"p50": quantile(xs, 0.5) * scale, "p99": quantile(xs, 0.99) * scale}
