"""Cache benchmark; prints one JSON document (progress goes to stderr).

1. Latency: cached ``Store.get_episode`` p50/p99 against, in the same run and interleaved, an
   ``await`` of a bare ``cachetools.TTLCache`` lookup wrapped in a coroutine (target p50 ratio
   <= 3), and the AdaptiveTTLCache's own single-threaded get rate (target >= 500k gets/s).
2. Miss ratios on the real traces in ``../shared/traces/cache/`` and on seeded synthetic traces at
   cache sizes of 0.1 %, 1 % and 10 % of distinct keys (at least 10 entries), for ours (the real
   AdaptiveTTLCache object, expiry off) and, in the same run, LRU, FIFO and LFU from cachetools,
   S3-FIFO, ARC and W-TinyLFU from libCacheSim, and theine's adaptive W-TinyLFU core; ours also
   under three seeded renumberings of each trace's keys. Reported: our mean miss ratio against
   the better of S3-FIFO's and theine's means (target within 2 %), and per cell: the mean over
   cells of (ours / min(S3-FIFO, theine) - 1) (target <= 1 %) and against the best of S3-FIFO,
   theine and ARC (<= 2 %); the worst cell against LRU under any numbering (<= 5 % worse); the
   widest spread of ours across numberings (<= 1 %). Then requests/s of ours and of theine on a
   miss-heavy run (P3 at 0.1 %).
3. Single-flight: loader calls for one expired key under 64 concurrent callers (must be 1), and
   database reads saved on a Zipf read workload.
4. Memory: the byte bound holds over a 1M-operation run (accounted bytes, and tracemalloc).

Needs the ``bench`` extra (``pip install -e '.[bench]'``). ``--quick`` truncates long traces.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cachetools
import numpy as np
from _common import log, p50_p99, quantile

from tiered import Store
from tiered.cache.adaptive import AdaptiveTTLCache, TTLRule
from tiered.cache.config import CacheConfig
from tiered.sim import generate_episodes
from tiered.workload.keys import (
    load_cache_trace,
    loop_mix_trace,
    shifting_trace,
    zipf_scan_trace,
    zipf_trace,
)

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces" / "cache"
SIZES = (0.001, 0.01, 0.1)


# -- 1. latency ----------------------------------------------------------------------------------


def gets_per_s(
    caches: dict[str, Any], keys: list[str], seq: list[str], rounds: int = 5
) -> dict[str, float]:
    """Steady-state single-threaded ``cache.get`` rate of each cache over ``seq``: ``keys`` are
    all put in, one pass over ``seq`` warms it (the policy's sampled copies fill), then the
    caches take turns for ``rounds`` timed passes and each reports its median pass, so a burst
    of load on this shared machine falls on both alike."""
    for cache in caches.values():
        for k in keys:
            cache[k] = 1
        for k in seq:
            cache.get(k)
    times: dict[str, list[float]] = {name: [] for name in caches}
    for _ in range(rounds):
        for name, cache in caches.items():
            get = cache.get
            t0 = time.perf_counter()
            for k in seq:
                get(k)
            times[name].append(time.perf_counter() - t0)
    return {name: len(seq) / statistics.median(t) for name, t in times.items()}


async def latency(n: int = 50_000) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench-cache-")
    store = await Store.open(f"file:{tmp}/lat.db")
    eps = generate_episodes(1000, seed=1)
    await store.store_episodes(eps)
    ids = [e.id for e in eps]
    for k in ids:  # a bulk write invalidates rather than writing through: warm the cache first
        await store.get_episode(k)
    ttl = cachetools.TTLCache(10_000, ttl=300)
    for e in eps:
        ttl[e.id] = e

    async def bare(k: str) -> Any:
        return ttl.get(k)

    pc = time.perf_counter_ns
    ours, base = [], []
    for i in range(n):
        k = ids[i % len(ids)]
        t = pc()
        await store.get_episode(k)
        ours.append(pc() - t)
        t = pc()
        await bare(k)
        base.append(pc() - t)
    await store.close()
    keys = [f"k{i}" for i in range(10_000)]
    seq = [keys[i] for i in np.random.default_rng(0).integers(0, 10_000, 500_000)]
    # the same gets on a bare TTLCache, same process: what this machine does right now (its
    # speed varies by 1.5x between runs on a shared host)
    cache: AdaptiveTTLCache[str, int] = AdaptiveTTLCache(10_000)
    rates = gets_per_s({"ours": cache, "bare": cachetools.TTLCache(10_000, ttl=300)}, keys, seq)
    rate, bare_rate = rates["ours"], rates["bare"]
    # one get at a time: hits reach the policy in batches of 16, so one get in 16 pays for the
    # batch (the tail of this distribution)
    get, one = cache.get, []
    for k in seq[:100_000]:
        t = pc()
        get(k)
        one.append(pc() - t)
    return {
        "store_get_episode_cached_us": p50_p99(ours, 1e-3),
        "bare_ttlcache_coroutine_us": p50_p99(base, 1e-3),
        "ratio_p50": quantile(ours, 0.5) / quantile(base, 0.5),
        "ratio_p99": quantile(ours, 0.99) / quantile(base, 0.99),
        "target_ratio": 3.0,
        "adaptive_cache_gets_per_s": rate,
        "bare_ttlcache_gets_per_s": bare_rate,
        "gets_per_s_vs_bare_ttlcache": rate / bare_rate,
        "adaptive_cache_get_us": {
            "p50": quantile(one, 0.5) * 1e-3,
            "p99": quantile(one, 0.99) * 1e-3,
            "p99.9": quantile(one, 0.999) * 1e-3,
        },
        "target_gets_per_s": 500_000,
    }


# -- 2. miss ratios ------------------------------------------------------------------------------


def run_ours(keys: list[int], cap: int) -> float:
    c: AdaptiveTTLCache[int, int] = AdaptiveTTLCache(cap, ttl=TTLRule(base=None))
    get, miss = c.get, 0
    for k in keys:
        if get(k) is None:
            miss += 1
            c[k] = 1
    return miss / len(keys)


def run_cachetools(cls: type, keys: list[int], cap: int) -> float:
    c = cls(cap)
    miss = 0
    for k in keys:
        if c.get(k) is None:
            miss += 1
            c[k] = 1
    return miss / len(keys)


def run_lcs(name: str, keys: list[int], cap: int) -> float:
    import libcachesim as lcs

    c = getattr(lcs, name)(cache_size=cap)
    req, get, miss = lcs.Request(), c.get, 0
    for k in keys:
        req.obj_id = k
        if not get(req):
            miss += 1
    return miss / len(keys)


def run_theine(keys: list[int], cap: int) -> float:
    from theine_core import TlfuCore, spread

    core, resident, miss = TlfuCore(cap), set(), 0
    for k in keys:
        kh = spread(k)
        if kh in resident:
            core.access([kh])
        else:
            miss += 1
            for e in core.set([(kh, 0)]):
                resident.discard(e)
            resident.add(kh)
    return miss / len(keys)


POLICIES: dict[str, Callable[[list[int], int], float]] = {
    "ours": run_ours,
    "LRU": lambda k, c: run_cachetools(cachetools.LRUCache, k, c),
    "FIFO": lambda k, c: run_cachetools(cachetools.FIFOCache, k, c),
    "LFU(cachetools)": lambda k, c: run_cachetools(cachetools.LFUCache, k, c),
    "S3-FIFO": lambda k, c: run_lcs("S3FIFO", k, c),
    "ARC": lambda k, c: run_lcs("ARC", k, c),
    "W-TinyLFU(libCacheSim)": lambda k, c: run_lcs("WTinyLFU", k, c),
    "theine": run_theine,
}


def traces(quick: bool) -> dict[str, np.ndarray]:
    limit = 1_000_000 if quick else None
    out: dict[str, np.ndarray] = {}
    for folder in ("lirs", "cache2k", "cloud_physics", "arc"):
        for p in sorted((TRACES / folder).glob("*.trace.*")) + sorted(
            (TRACES / folder).glob("*.lis.*")
        ):
            out[f"{folder}/{p.name.split('.')[0]}"] = load_cache_trace(p, limit=limit)
    n, k = (200_000, 20_000) if quick else (1_000_000, 100_000)
    out["synthetic/zipf-0.8"] = zipf_trace(n, k, 0.8, seed=1)
    out["synthetic/zipf-1.0"] = zipf_trace(n, k, 1.0, seed=2)
    out["synthetic/zipf-0.9+scans"] = zipf_scan_trace(
        n, k, 0.9, scan_every=n // 20, scan_len=k // 5, seed=3
    )
    out["synthetic/shifting-zipf"] = shifting_trace(n, k, 1.0, phases=5, seed=4)
    out["synthetic/recency-loop-recency"] = loop_mix_trace(n, k, loop_keys=k // 10, seed=5)
    return out


RENUMBERINGS = (1, 2, 3)


def renumbered(arr: np.ndarray, seed: int) -> list[int]:
    """``arr`` with its keys renamed by a seeded random bijection (same trace, other values)."""
    uniq = np.unique(arr)
    names = np.random.default_rng(seed).permutation(len(uniq)) + 1_000_000
    return names[np.searchsorted(uniq, arr)].tolist()  # type: ignore[no-any-return]


def miss_ratios(quick: bool) -> dict[str, Any]:
    rows = []
    for name, arr in traces(quick).items():
        keys = arr.tolist()
        distinct = len(set(keys))
        variants = {seed: renumbered(arr, seed) for seed in RENUMBERINGS}
        for frac in SIZES:
            cap = max(10, int(distinct * frac))
            t0 = time.perf_counter()
            row = {
                "trace": name,
                "requests": len(keys),
                "distinct": distinct,
                "size_fraction": frac,
                "capacity": cap,
            }
            for pname, fn in POLICIES.items():
                row[pname] = fn(keys, cap)
            # ours again on the renumbered keys: its decisions must not follow key values
            row["ours_renumbered"] = [run_ours(v, cap) for v in variants.values()]
            rows.append(row)
            log(
                f"  {name:34} {frac:>6.1%} cap={cap:<7} ours={row['ours']:.4f} "
                f"LRU={row['LRU']:.4f} S3-FIFO={row['S3-FIFO']:.4f} theine={row['theine']:.4f} "
                f"({time.perf_counter() - t0:.1f}s)"
            )
    means = {p: statistics.mean(r[p] for r in rows) for p in POLICIES}
    best_anchor = min(means["S3-FIFO"], means["theine"])

    def vs_lru(r: dict[str, Any]) -> float:  # the worst of ours over every numbering
        return max(r["ours"], *r["ours_renumbered"]) / r["LRU"] - 1 if r["LRU"] > 0 else 0.0

    def spread(r: dict[str, Any]) -> float:
        runs = [r["ours"], *r["ours_renumbered"]]
        return (max(runs) - min(runs)) / max(min(runs), 1e-9)

    worst = max(rows, key=vs_lru)
    widest = max(rows, key=spread)
    cell_two = [r["ours"] / min(r["S3-FIFO"], r["theine"]) - 1 for r in rows]
    cell_three = [r["ours"] / min(r["S3-FIFO"], r["theine"], r["ARC"]) - 1 for r in rows]
    return {
        "rows": rows,
        "mean_miss_ratio": means,
        "ours_vs_best_of_s3fifo_theine": means["ours"] / best_anchor - 1,
        "target_vs_best": 0.02,
        # the per-cell metrics: a loss in one cell is not hidden by a win in another's mean
        "per_cell_vs_min_s3fifo_theine": statistics.mean(cell_two),
        "per_cell_vs_min_s3fifo_theine_arc": statistics.mean(cell_three),
        "targets_per_cell": {"vs_min_s3fifo_theine": 0.01, "vs_min_with_arc": 0.02},
        "worst_cell_vs_lru": {
            "trace": worst["trace"],
            "size_fraction": worst["size_fraction"],
            "ours": max(worst["ours"], *worst["ours_renumbered"]),
            "LRU": worst["LRU"],
            "relative": vs_lru(worst),
            "over": "the original numbering and three seeded renumberings",
        },
        "target_vs_lru": 0.05,
        "widest_spread_over_renumberings": {
            "trace": widest["trace"],
            "size_fraction": widest["size_fraction"],
            "runs": [widest["ours"], *widest["ours_renumbered"]],
            "relative": spread(widest),
        },
        "cells_with_spread_over_1pct": sum(spread(r) > 0.01 for r in rows),
        "target_spread": 0.01,
    }


def miss_heavy_rate(quick: bool) -> dict[str, Any]:
    """Requests per second of our policy and of theine's core on a miss-heavy run (the ARC
    paper's P3 at 0.1 % of its distinct keys), same run."""
    arr = load_cache_trace(TRACES / "arc" / "P3.lis.zst", limit=1_000_000 if quick else None)
    keys = arr.tolist()
    cap = max(10, int(len(np.unique(arr)) * 0.001))
    out: dict[str, Any] = {"trace": "arc/P3", "capacity": cap, "requests": len(keys)}
    for name, fn in (("ours", run_ours), ("theine", run_theine)):
        t0 = time.perf_counter()
        out[f"{name}_miss_ratio"] = fn(keys, cap)
        out[f"{name}_requests_per_s"] = len(keys) / (time.perf_counter() - t0)
    return out


# -- 3. single-flight and reads saved --------------------------------------------------------------


class Timer:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def single_flight() -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench-cache-")
    timer = Timer()
    store = await Store.open(f"file:{tmp}/sf.db", timer=timer, cache=CacheConfig(staleness=None))
    ep = generate_episodes(1, seed=2)[0]
    await store.store_episode(ep)
    await store.get_episode(ep.id)
    timer.t += 10_000.0  # the entry expired
    before = store.get_stats()["statements"]["by_name"].get("get_episode", 0)
    await asyncio.gather(*(store.get_episode(ep.id) for _ in range(64)))
    loads = store.get_stats()["statements"]["by_name"].get("get_episode", 0) - before
    await store.close()

    eps = generate_episodes(2000, seed=3)
    picks = zipf_trace(50_000, len(eps), 1.0, seed=6).tolist()
    counts = {}
    for enabled in (True, False):
        url = f"file:{tmp}/reads-{enabled}.db"
        async with await Store.open(url) as writer:
            await writer.store_episodes(eps)
        # a fresh store: its cache starts cold, as in a new process
        s = await Store.open(url, cache=CacheConfig(enabled=enabled))
        t0 = time.perf_counter()
        for i in picks:
            await s.get_episode(eps[i].id)
        counts[enabled] = (
            s.get_stats()["statements"]["by_name"].get("get_episode", 0),
            time.perf_counter() - t0,
        )
        await s.close()
    return {
        "loader_calls_for_64_concurrent_callers": loads,
        "target_loader_calls": 1,
        "zipf_reads": len(picks),
        "db_reads_cached": counts[True][0],
        "db_reads_uncached": counts[False][0],
        "db_reads_saved": 1 - counts[True][0] / counts[False][0],
        "workload_seconds_cached": counts[True][1],
        "workload_seconds_uncached": counts[False][1],
    }


# -- 4. memory -------------------------------------------------------------------------------------


def memory(ops: int = 1_000_000, bound: int = 8 << 20) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    keys = zipf_trace(ops, 200_000, 0.9, seed=8).tolist()
    sizes = rng.integers(64, 8192, ops).tolist()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    c: AdaptiveTTLCache[int, bytes] = AdaptiveTTLCache(1_000_000, max_bytes=bound, getsizeof=len)
    peak_accounted = 0
    for k, n in zip(keys, sizes, strict=True):
        if c.get(k) is None:
            c[k] = bytes(n)
        if c.currbytes > peak_accounted:
            peak_accounted = c.currbytes
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "operations": ops,
        "max_bytes": bound,
        "peak_accounted_bytes": peak_accounted,
        "within_bound": peak_accounted <= bound,
        "entries_at_end": len(c),
        "traced_memory_at_end_bytes": current - base,
        "traced_memory_peak_bytes": peak - base,
        "note": "traced memory includes dict, policy and entry overhead beyond the values",
    }


async def amain(quick: bool) -> dict[str, Any]:
    log("latency ...")
    lat = await latency()
    log("single-flight and reads saved ...")
    sf = await single_flight()
    log("memory (1M operations) ...")
    mem = memory()
    log("miss ratios ...")
    mr = miss_ratios(quick)
    log("miss-heavy rate ...")
    rate = miss_heavy_rate(quick)
    passed = {
        "latency_ratio": lat["ratio_p50"] <= 3.0,
        "gets_per_s": lat["adaptive_cache_gets_per_s"] >= 500_000,
        "mean_vs_best": mr["ours_vs_best_of_s3fifo_theine"] <= 0.02,
        "per_cell_vs_min_s3fifo_theine": mr["per_cell_vs_min_s3fifo_theine"] <= 0.01,
        "per_cell_vs_min_with_arc": mr["per_cell_vs_min_s3fifo_theine_arc"] <= 0.02,
        "spread_over_renumberings": mr["widest_spread_over_renumberings"]["relative"] <= 0.01,
        "never_worse_than_lru_by_5pct": mr["worst_cell_vs_lru"]["relative"] <= 0.05,
        "single_flight": sf["loader_calls_for_64_concurrent_callers"] == 1,
        "memory_bound": mem["within_bound"],
    }
    return {
        "quick": quick,
        "latency": lat,
        "single_flight": sf,
        "memory": mem,
        "miss_ratios": mr,
        "miss_heavy_rate": rate,
        "passed": passed,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="truncate traces to 1M requests")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args()
    result = asyncio.run(amain(a.quick))
    text = json.dumps(result, indent=2)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
