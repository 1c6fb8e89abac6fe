"""Connection pool and its sizing policies."""

from tiered.pool.config import PoolConfig
from tiered.pool.core import Pool, Poolable, PoolSample
from tiered.pool.sizing import (
    Decision,
    Fixed,
    Hybrid,
    PoolLoad,
    Predictive,
    Reactive,
    Schedule,
    SizingPolicy,
)

__all__ = [
    "Decision",
    "Fixed",
    "Hybrid",
    "Pool",
    "PoolConfig",
    "PoolLoad",
    "PoolSample",
    "Poolable",
    "Predictive",
    "Reactive",
    "Schedule",
    "SizingPolicy",
]
