"""Metrics benchmark; prints one JSON document.

The cost of instrumentation per operation: a cached ``get_episode`` through the measured Store
method against the same call to the unwrapped method (``__wrapped__``), interleaved in one run,
and the cost of one ``Metrics.observe`` with a typical phase breakdown. Target: <= 1 µs added
(p50, and the mean of the fastest 99 %: one operation in four also collects its phases).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

from tiered import Store
from tiered.metrics import Metrics
from tiered.sim import generate_episodes


async def main(n: int = 200_000) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench-metrics-")
    store = await Store.open(f"file:{tmp}/m.db")
    eps = generate_episodes(100, seed=1)
    await store.store_episodes(eps)
    ids = [e.id for e in eps]
    measured = store.get_episode
    bare = Store.get_episode.__wrapped__  # type: ignore[attr-defined]
    pc = time.perf_counter_ns
    a, b = [], []
    for i in range(n):
        k = ids[i % 100]
        t = pc()
        await measured(k)
        a.append(pc() - t)
        t = pc()
        await bare(store, k)
        b.append(pc() - t)
    await store.close()
    m = Metrics()
    phases = {"cache": 1e-6}
    t = pc()
    for _ in range(n):
        m.observe("get_episode", 2e-6, phases)
    observe_ns = (pc() - t) / n
    added = statistics.median(a) - statistics.median(b)
    trim = sorted(a)[: int(n * 0.99)], sorted(b)[: int(n * 0.99)]  # means without the worst 1 %
    added_mean = statistics.mean(trim[0]) - statistics.mean(trim[1])
    return {
        "cached_get_episode_ns": {
            "measured_p50": statistics.median(a),
            "bare_p50": statistics.median(b),
        },
        "instrumentation_added_ns_p50": added,
        "instrumentation_added_ns_mean": added_mean,
        "phase_every": 4,
        "observe_ns": observe_ns,
        "target_added_ns": 1000,
        "passed": added <= 1000 and added_mean <= 1000,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
