"""Connection pool and its sizing policies."""

from tiered.pool.config import PoolConfig
from tiered.pool.core import Pool, Poolable
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
from tiered.pool.state import PoolState
from tiered.pool.stats import PoolSample

__all__ = [
    "Decision",
    "Fixed",
    "Hybrid",
    "Pool",
    "PoolConfig",
    "PoolLoad",
    "PoolSample",
    "PoolState",
    "Poolable",
    "Predictive",
    "Reactive",
    "Schedule",
    "SizingPolicy",
]
