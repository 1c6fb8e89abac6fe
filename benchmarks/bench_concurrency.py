"""Many agents in one process: every layer configuration at every concurrency; prints one JSON
document (``data/results/bench_concurrency.json`` keeps the last run).

For each backend (the embedded file; ws to a local sqld; ws through a 20 ms RTT proxy), mix
(today's ``tiered bench`` mix; reads only; 95 % reads with single-episode writes) and
concurrency (closed-loop workers: 1, 4, 16, 64), ``tiered.bench.run_bench`` runs the same
request plan once per configuration (off, pool, cache+pool, pool+compression, all), in one
process, one after the other. Per cell: throughput, p50/p99 per operation, the cache hit ratio,
and for each read that reached the database with the cache on, its p50 and p99 against the same
requests with the cache off (the twin configuration; paired by place in the plan, see
:func:`tiered.bench.cache_miss_costs`). Checked per cell (``checks``):

* the cache never costs: cache+pool >= 0.97x pool in throughput; a miss's p50 <= 1.2x (p99 <=
  1.5x) the same read with the cache off; all >= 0.97x pool+compression;
* the cache pays: reads only, at 4 and 16 agents, cache+pool >= 1.5x pool on the file and on ws
  loopback (with writes in the mix, the bound a perfect cache could reach -- the writes' share of
  the time -- is printed beside the measured gain).

Requests per cell are bounded by time (about ``--seconds`` per configuration) so the 20 ms link
and one agent finish too. ``--quick``: concurrency 1 and 16, the file and ws loopback only.

Usage: ``python benchmarks/bench_concurrency.py [--quick] [--seconds S]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from tiered.bench import BenchResult, cache_miss_costs, run_bench
from tiered.workload.plans import DEFAULT_MIX, Layers, Link, Workload

CONFIGS = "off,pool,cache+pool,pool+compression,all"
READS = {k: v for k, v in DEFAULT_MIX.items() if not k.startswith("store")}
MIXES: dict[str, tuple[dict[str, float], int]] = {
    "today": (dict(DEFAULT_MIX), 10),
    "reads_only": ({k: v / sum(READS.values()) for k, v in READS.items()}, 1),
    "read_heavy_95_5": (
        {**{k: 0.95 * v / sum(READS.values()) for k, v in READS.items()}, "store_episodes": 0.05},
        1,
    ),
}
BACKENDS: dict[str, dict[str, Any]] = {
    "file": {},
    "ws": {"sqld": True},
    "ws_20ms": {"link": Link(rtt_ms=20.0)},
}


def _ops(backend: str, concurrency: int, seconds: float) -> int:
    """Requests for about ``seconds`` per configuration (a rough rate per backend)."""
    per_worker = {"file": 800.0, "ws": 300.0, "ws_20ms": 30.0}[backend]
    return int(max(200, min(4000, per_worker * min(concurrency, 8) * seconds)))


def _cell(result: BenchResult) -> dict[str, Any]:
    s = result.summary
    out: dict[str, Any] = {"configs": {}}
    for cfg in result.info["configs"]:
        rows = {r["op"]: r for r in s.filter(s["config"] == cfg).iter_rows(named=True)}
        out["configs"][cfg] = {
            "ops_per_s": rows["all"]["ops_per_s"],
            "hit_ratio": result.info["stats"][cfg]["cache_hit_ratio"],
            "ops": {
                op: {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "count": r["count"]}
                for op, r in rows.items()
                if op != "all"
            },
        }
    misses = {
        m.op: {
            "miss_p50_ratio": m.p50_ratio,
            "miss_p99_ratio": m.p99_ratio,
            "miss_mean_ratio": m.mean_ratio,
            "misses": m.misses,
        }
        for m in cache_miss_costs(result)
        if m.config == "cache+pool"
    }
    out["miss_vs_no_cache"] = misses
    c = out["configs"]
    out["cache_pool_vs_pool"] = c["cache+pool"]["ops_per_s"] / c["pool"]["ops_per_s"]
    out["all_vs_pool_compression"] = c["all"]["ops_per_s"] / c["pool+compression"]["ops_per_s"]
    # the bound of a perfect cache: reads cost nothing, writes what they cost without it
    pool_ops = c["pool"]["ops"]
    total = sum(v["count"] * v["p50_ms"] for v in pool_ops.values())
    writes = sum(v["count"] * v["p50_ms"] for k, v in pool_ops.items() if k.startswith("store"))
    out["perfect_cache_bound"] = total / writes if writes else None
    checks = {
        "cache_never_costs_throughput": out["cache_pool_vs_pool"] >= 0.97,
        "miss_p50_within_1.2x": all(m["miss_p50_ratio"] <= 1.2 for m in misses.values()),
        "miss_p99_within_1.5x": all(m["miss_p99_ratio"] <= 1.5 for m in misses.values()),
        "all_vs_pool_compression": out["all_vs_pool_compression"] >= 0.97,
    }
    out["checks"] = checks
    return out


async def main(quick: bool, seconds: float) -> dict[str, Any]:
    concurrencies = (1, 16) if quick else (1, 4, 16, 64)
    backends = ("file", "ws") if quick else tuple(BACKENDS)
    out: dict[str, Any] = {
        "quick": quick,
        "seconds_per_config": seconds,
        "cells": {},
        "configs": CONFIGS.split(","),
    }
    t0 = time.perf_counter()
    for backend in backends:
        for mix, (weights, batch) in MIXES.items():
            for c in concurrencies:
                w = Workload(ops=_ops(backend, c, seconds), concurrency=c, mix=weights, batch=batch)
                result = await run_bench(
                    None, Layers.parse(CONFIGS), w, progress=False, **BACKENDS[backend]
                )
                cell = _cell(result)
                cell["ops"] = w.ops
                if mix == "reads_only" and c in (4, 16) and backend in ("file", "ws"):
                    cell["checks"]["cache_pays_1.5x"] = cell["cache_pool_vs_pool"] >= 1.5
                out["cells"][f"{backend}/{mix}/c{c}"] = cell
                print(
                    f"{backend:8} {mix:16} c{c:<3} cache+pool/pool "
                    f"{cell['cache_pool_vs_pool']:.2f}x  all/pool+compression "
                    f"{cell['all_vs_pool_compression']:.2f}x  "
                    f"failed: {[k for k, v in cell['checks'].items() if not v]}",
                    flush=True,
                    file=sys.stderr,
                )
    out["seconds"] = time.perf_counter() - t0
    failed = {k: [n for n, v in c["checks"].items() if not v] for k, c in out["cells"].items()}
    out["failed"] = {k: v for k, v in failed.items() if v}
    out["passed"] = not out["failed"]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args.quick, args.seconds)), indent=2, default=str))
