"""Simulation on a virtual clock: the event engine, the pool model (driving the live pool's
:class:`~tiered.pool.PoolState` and sizing policies), the replay of request plans through the
real cache layer, and the service model it draws from. The record generators live in
:mod:`tiered.workload` and are re-exported here."""

from tiered.workload.records import (
    generate_embeddings,
    generate_episodes,
    generate_heuristics,
    generate_patterns,
    iter_episodes,
)

__all__ = [
    "generate_embeddings",
    "generate_episodes",
    "generate_heuristics",
    "generate_patterns",
    "iter_episodes",
]
