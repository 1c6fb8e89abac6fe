"""Simulation: workloads (seeded record generators; traces and the engine come later)."""

from tiered.sim.workload import (
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
