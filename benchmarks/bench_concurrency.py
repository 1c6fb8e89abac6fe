"""Many agents in one process: every layer configuration at every concurrency; prints one JSON
document (``data/results/bench_concurrency.json`` keeps the last run).

For each backend (the embedded file; ws to a local sqld; ws through a 20 ms RTT proxy), mix
(today's ``tiered bench`` mix; reads only; 95 % reads with single-episode writes) and
concurrency (closed-loop workers: 1, 4, 16, 64), ``tiered.bench.run_bench`` runs the same
request plan once per configuration (off, pool, cache+pool, pool+compression, all), in one
process, one after the other. Per cell: throughput, p50/p99 per operation, the cache hit ratio,
the process's CPU share, and for each read that reached the database with the cache on, its p50
and p99 against the same requests with the cache off (the twin configuration; paired by place in
the plan, see :func:`tiered.bench.cache_miss_costs`). Checked per cell (``checks``):

* the cache never costs: cache+pool >= 0.97x pool in throughput; a miss's p50 <= 1.2x the same
  reads with the cache off, and its p99 <= 1.5x where an operation has at least
  :data:`P99_MIN` misses (the p99 of fewer is their slowest one: one garbage collection);
  all >= 0.97x pool+compression;
* the cache pays: reads only, at 4 and 16 agents, cache+pool >= 1.5x pool on the file and on ws
  loopback; with writes in the mix, the bound a perfect cache could reach (reads free, writes
  as they cost: total time / the writes' time, from the pool run) is printed beside the gain.

Beside the cells:

* ``reads_vs_writer``: on the file, 4 agents reading single episodes with and without one agent
  storing 10-episode batches all the time; a read's time counts from when its agent wanted it
  (the wait for the event loop included). Checked: p99 with the writer <= 2x without.
* ``thread_hop``: one episode read inline on the loop against the same read handed to a worker
  thread and back (why the embedded backend reads inline).
* ``miss_floor``: on the file, today's mix, one agent, a get_episode miss against the same read
  with no cache, for the cache as it is and for plain dicts in place of its maps (no policy,
  expiry or sizes): what the policy adds, and the floor any in-process cache pays.
* ``compression``: per backend, the CPU a read pays for compression (get_episode p50,
  pool+compression minus pool) beside the share of bytes it saves.
* ``agents_per_process``: per backend and mix, the most agents at which the default
  configuration ("all") keeps every operation's p99 <= :data:`P99_TARGET_MS`, its throughput
  there, and what limits it (the event loop when the process's CPU share is near one core;
  connections when acquiring dominates; else the database or the link).

Requests per cell are bounded by time (about ``--seconds`` per configuration) so the 20 ms link
and one agent finish too. ``--quick``: concurrency 1 and 16, the file and ws loopback only.

Usage: ``python benchmarks/bench_concurrency.py [--quick] [--seconds S]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tiered import CacheConfig, Store
from tiered.bench import BenchResult, cache_miss_costs, run_bench
from tiered.cache import layer as cache_layer
from tiered.db import statements as q
from tiered.sim import generate_episodes
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
#: misses of an operation below which its p99 is not checked
P99_MIN = 100
#: the p99 an agent's every operation should stay under (agents_per_process)
P99_TARGET_MS = 50.0


def _ops(backend: str, concurrency: int, seconds: float) -> int:
    """Requests for about ``seconds`` per configuration (a rough rate per backend)."""
    per_worker = {"file": 800.0, "ws": 300.0, "ws_20ms": 30.0}[backend]
    return int(max(200, min(4000, per_worker * min(concurrency, 8) * seconds)))


def _cell(result: BenchResult) -> dict[str, Any]:
    s = result.summary
    out: dict[str, Any] = {"configs": {}}
    for cfg in result.info["configs"]:
        rows = {r["op"]: r for r in s.filter(s["config"] == cfg).iter_rows(named=True)}
        stats = result.info["stats"][cfg]
        out["configs"][cfg] = {
            "ops_per_s": rows["all"]["ops_per_s"],
            "p99_ms": rows["all"]["p99_ms"],
            "hit_ratio": stats["cache_hit_ratio"],
            "cpu_share": result.info["cpu_share"][cfg],
            "bytes_raw": stats["bytes_raw"],
            "bytes_stored": stats["bytes_stored"],
            "phases_ms": {
                p: rows["all"][f"{p}_ms"]
                for p in ("cache", "acquire", "encode", "round_trip", "decode", "other")
            },
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
        "miss_p99_within_1.5x": all(
            m["miss_p99_ratio"] <= 1.5 for m in misses.values() if m["misses"] >= P99_MIN
        ),
        "all_vs_pool_compression": out["all_vs_pool_compression"] >= 0.97,
    }
    out["checks"] = checks
    return out


async def reads_vs_writer(reads: int = 8000, rounds: int = 3) -> dict[str, Any]:
    """4 agents reading single episodes (the default Store, file backend), with and without one
    agent storing 10-episode batches back to back; rounds alternate the two."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-rw-"))
    url = f"file:{tmp / 'rw.db'}"
    eps = generate_episodes(3000, seed=1, id_prefix="e")
    new = generate_episodes(1000, seed=2, id_prefix="n")
    async with await Store.open(url) as s:
        for i in range(0, len(eps), 500):
            await s.store_episodes(eps[i : i + 500])
    ids = [e.id for e in eps]

    async def run(writer: bool) -> list[float]:
        lat: list[float] = []
        # the cache off: every read goes to SQLite, so it meets the writer there
        async with await Store.open(url, cache=CacheConfig(enabled=False)) as s:
            rng = random.Random(1)
            done = False

            async def reader() -> None:
                t0 = time.perf_counter()
                for _ in range(reads // 4):
                    await asyncio.sleep(0)  # the other agents' turn: the wait counts
                    await s.get_episode(rng.choice(ids))
                    t1 = time.perf_counter()
                    lat.append(t1 - t0)
                    t0 = t1

            async def write() -> None:
                i = 0
                while not done:
                    await s.store_episodes(new[i : i + 10])
                    i = (i + 10) % (len(new) - 10)

            wt = asyncio.create_task(write()) if writer else None
            await asyncio.gather(*(reader() for _ in range(4)))
            done = True
            if wt is not None:
                await wt
        return lat

    def p(xs: list[float], q_: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(len(xs) * q_))] * 1000

    alone: list[float] = []
    beside: list[float] = []
    for _ in range(rounds):
        alone += await run(False)
        beside += await run(True)
    out = {
        "without_writer": {"p50_ms": p(alone, 0.5), "p99_ms": p(alone, 0.99)},
        "with_writer": {"p50_ms": p(beside, 0.5), "p99_ms": p(beside, 0.99)},
    }
    out["p99_ratio"] = out["with_writer"]["p99_ms"] / out["without_writer"]["p99_ms"]
    out["checks"] = {"reads_never_wait_for_writes_2x": out["p99_ratio"] <= 2.0}
    return out


async def thread_hop(n: int = 3000) -> dict[str, Any]:
    """One episode row read inline on the event loop vs on a worker thread and back."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-hop-"))
    url = f"file:{tmp / 'hop.db'}"
    eps = generate_episodes(500, seed=3, id_prefix="h")
    async with await Store.open(url) as s:
        await s.store_episodes(eps)
    db = sqlite3.connect(tmp / "hop.db", check_same_thread=False)
    ids = [e.id for e in eps]
    loop = asyncio.get_running_loop()

    def read(k: str) -> Any:
        return db.execute(q.GET_EPISODE.sql, (k,)).fetchall()

    inline: list[float] = []
    hopped: list[float] = []
    for i in range(n):
        k = ids[i % len(ids)]
        t0 = time.perf_counter()
        read(k)
        t1 = time.perf_counter()
        await loop.run_in_executor(None, read, k)
        t2 = time.perf_counter()
        inline.append(t1 - t0)
        hopped.append(t2 - t1)
    db.close()
    inline.sort()
    hopped.sort()
    a, b = inline[n // 2] * 1e6, hopped[n // 2] * 1e6
    return {"inline_p50_us": a, "thread_p50_us": b, "hop_cost_us": b - a}


class _PlainMap(dict[Any, Any]):
    """A plain dict in place of one of the cache's maps (``miss_floor``): no eviction, expiry,
    size bounds or counts -- the least an in-process cache of Python objects does on a miss."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def peek(self, key: Any, default: Any = None) -> Any:
        return self.get(key, default)

    get_stale = peek

    def set(self, key: Any, value: Any, *, ttl: float | None = None) -> bool:
        self[key] = value
        return True

    def expires_at(self, key: Any) -> float | None:
        return math.inf if key in self else None

    def get_stats(self) -> dict[str, Any]:
        return {"entries": len(self)}


@contextlib.contextmanager
def _plain_maps(on: bool) -> Iterator[None]:
    """While open (``on``), the cache layers opened build plain dicts for their maps."""
    real = cache_layer.AdaptiveTTLCache
    if on:
        cache_layer.AdaptiveTTLCache = _PlainMap  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        cache_layer.AdaptiveTTLCache = real  # type: ignore[misc]


async def miss_floor(reps: int = 3) -> dict[str, Any]:
    """File, today's mix, one agent: a get_episode miss's p50 against the same read with no
    cache (``cache_miss_costs``), with the cache as it is and with plain dicts in place of its
    maps, by turns: what the eviction policy, expiry and sizes add, and what any in-process
    cache of Python objects costs a miss whatever its policy (the Store's read-through --
    versions, single flight, coherence -- and the values it keeps)."""
    weights, batch = MIXES["today"]
    ratios: dict[str, list[float]] = {"cache": [], "plain_dict": []}
    for r in range(reps):
        w = Workload(ops=_ops("file", 1, 1.5), concurrency=1, mix=weights, batch=batch, seed=r)
        for name, runs in ratios.items():
            with _plain_maps(name == "plain_dict"):
                res = await run_bench(None, Layers.parse("pool,cache+pool"), w, progress=False)
            runs += [m.p50_ratio for m in cache_miss_costs(res) if m.op == "get_episode"]
    return {k: {"miss_p50_ratios": v, "median": statistics.median(v)} for k, v in ratios.items()}


def agents_per_process(cells: dict[str, Any]) -> dict[str, Any]:
    """Per backend and mix: the most agents at which "all" keeps every op's p99 under target."""
    out: dict[str, Any] = {}
    for key, cell in cells.items():
        backend, mix, c = key.split("/")
        all_ = cell["configs"]["all"]
        worst = max(v["p99_ms"] for v in all_["ops"].values())
        slot = out.setdefault(backend, {}).setdefault(mix, {"agents": 0})
        if worst <= P99_TARGET_MS and int(c[1:]) > slot["agents"]:
            ph = all_["phases_ms"]
            if all_["cpu_share"] >= 0.85:
                limit = "the event loop (one core: Python and, on the file, SQLite)"
            elif ph["acquire"] >= max(ph["round_trip"], 0.25 * sum(ph.values())):
                limit = "connections (waiting to acquire one, or the write gate)"
            else:
                limit = "the database or the link (round trips)"
            slot.update(
                agents=int(c[1:]),
                ops_per_s=all_["ops_per_s"],
                worst_p99_ms=worst,
                cpu_share=all_["cpu_share"],
                limited_by=limit,
            )
    return out


def compression(cells: dict[str, Any]) -> dict[str, Any]:
    """Per backend: a read's CPU for compression beside the bytes it saves (today's mix, at
    each concurrency run)."""
    out: dict[str, Any] = {}
    for key, cell in cells.items():
        backend, mix, _ = key.split("/")
        if mix != "today":
            continue
        on, off = cell["configs"]["pool+compression"], cell["configs"]["pool"]
        out.setdefault(backend, []).append(
            {
                "cell": key,
                "get_episode_p50_extra_us": 1000
                * (on["ops"]["get_episode"]["p50_ms"] - off["ops"]["get_episode"]["p50_ms"]),
                "bytes_saved_share": 1 - on["bytes_stored"] / on["bytes_raw"],
            }
        )
    return out


async def main(quick: bool, seconds: float) -> dict[str, Any]:
    concurrencies = (1, 16) if quick else (1, 4, 16, 64)
    backends = ("file", "ws") if quick else tuple(BACKENDS)
    out: dict[str, Any] = {
        "quick": quick,
        "seconds_per_config": seconds,
        "configs": CONFIGS.split(","),
        "p99_target_ms": P99_TARGET_MS,
    }
    t0 = time.perf_counter()
    out["reads_vs_writer"] = await reads_vs_writer()
    print(f"reads vs writer: {json.dumps(out['reads_vs_writer'])}", file=sys.stderr)
    out["thread_hop"] = await thread_hop()
    print(f"thread hop: {json.dumps(out['thread_hop'])}", file=sys.stderr)
    out["miss_floor"] = await miss_floor()
    print(f"miss floor: {json.dumps(out['miss_floor'])}", file=sys.stderr)
    cells: dict[str, Any] = {}
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
                cells[f"{backend}/{mix}/c{c}"] = cell
                print(
                    f"{backend:8} {mix:16} c{c:<3} cache+pool/pool "
                    f"{cell['cache_pool_vs_pool']:.2f}x  all/pool+compression "
                    f"{cell['all_vs_pool_compression']:.2f}x  "
                    f"failed: {[k for k, v in cell['checks'].items() if not v]}",
                    flush=True,
                    file=sys.stderr,
                )
    out["cells"] = cells
    out["agents_per_process"] = agents_per_process(cells)
    out["compression"] = compression(cells)
    out["seconds"] = time.perf_counter() - t0
    failed = {k: [n for n, v in c["checks"].items() if not v] for k, c in cells.items()}
    failed["reads_vs_writer"] = [n for n, v in out["reads_vs_writer"]["checks"].items() if not v]
    out["failed"] = {k: v for k, v in failed.items() if v}
    out["passed"] = not out["failed"]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args.quick, args.seconds)), indent=2, default=str))
