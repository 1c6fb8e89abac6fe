"""What a pool reports: its counters, and its utilization series as samples and as a frame."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

__all__ = ["COUNTERS", "PoolSample", "series_frame"]

#: counters of :meth:`tiered.pool.Pool.get_stats` (psycopg_pool's names where they exist)
COUNTERS = (
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_timeouts",
    "requests_refused",
    "requests_unavailable",
    "usage_ms",
    "connections_num",
    "connections_ms",
    "connections_errors",
    "connections_lost",
    "connections_recycled",
    "connections_closed",
    "pings",
    "pings_failed",
    "resizes",
)


@dataclass(frozen=True, slots=True)
class PoolSample:
    """One point of the pool's utilization series (taken at every maintenance tick)."""

    t: float
    size: int
    in_use: int
    idle: int
    waiting: int
    utilization: float
    target: int


def series_frame(samples: Iterable[PoolSample]) -> pl.DataFrame:
    """Samples as a polars frame: ``t, size, in_use, idle, waiting, utilization, target``."""
    import polars as pl  # the pool itself does not need polars

    cols = ("t", "size", "in_use", "idle", "waiting", "utilization", "target")
    types = (pl.Float64, pl.Int64, pl.Int64, pl.Int64, pl.Int64, pl.Float64, pl.Int64)
    rows = [tuple(getattr(p, c) for c in cols) for p in samples]
    return pl.DataFrame(rows, schema=dict(zip(cols, types, strict=True)), orient="row")
