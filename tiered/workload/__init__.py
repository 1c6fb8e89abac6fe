"""Workloads, the floor under both the bench and the simulator: seeded record generators
(:mod:`.records`), access traces (:mod:`.traces`) and request plans (:mod:`.plans`)."""

from tiered.workload.plans import Corpus, Layers, Link, Workload, make_corpus, plan_requests
from tiered.workload.records import (
    generate_embeddings,
    generate_episodes,
    generate_heuristics,
    generate_patterns,
    iter_episodes,
)

__all__ = [
    "Corpus",
    "Layers",
    "Link",
    "Workload",
    "generate_embeddings",
    "generate_episodes",
    "generate_heuristics",
    "generate_patterns",
    "iter_episodes",
    "make_corpus",
    "plan_requests",
]
