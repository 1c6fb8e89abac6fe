"""The store run of ``tiered report``: a seeded corpus written and read back through every Store
path (batches, point reads, every query shape, nearest neighbours, a Zipf-skewed read workload
through the cache), printed with timings. It writes into the database it is given, so the report
runs it only on a scratch database it creates itself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tiered.progress import Progress
from tiered.store import Store, StoreConfig
from tiered.workload.keys import zipf_trace
from tiered.workload.records import (
    generate_embeddings,
    generate_episodes,
    generate_heuristics,
    generate_patterns,
)

__all__ = ["run_store_report"]


async def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """Result of ``await fn()`` and its median wall time over ``repeat`` runs."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - t)
    return result, sorted(times)[len(times) // 2]


async def run_store_report(
    url: str, *, episodes: int = 5000, batch: int = 500, seed: int = 0, out: TextIO = sys.stdout
) -> dict[str, Any]:
    """Write and read a seeded corpus through every Store path; returns what was measured.

    It **writes** ``episodes`` episodes, 200 patterns, 100 heuristics and 1,000 embeddings into
    ``url`` (ids ``ep-<seed>-...`` replace rows with those ids): give it a scratch database."""

    eps = generate_episodes(episodes, seed=seed)
    pats, heus = generate_patterns(200, seed=seed), generate_heuristics(100, seed=seed)
    embs = generate_embeddings(1000, dim=64, seed=seed)
    results: dict[str, Any] = {"url": url, "episodes": episodes, "batch": batch, "seed": seed}
    async with await Store.open(url, config=StoreConfig()) as store:
        bar = Progress(len(eps), "store_episodes")
        t0 = time.perf_counter()
        for i in range(0, len(eps), batch):
            await store.store_episodes(eps[i : i + batch])
            bar.advance(len(eps[i : i + batch]))
        write_s = time.perf_counter() - t0
        results["store_episodes_per_s"] = len(eps) / write_s
        (_, results["store_patterns_s"]) = await _timed(lambda: store.store_patterns(pats))
        (_, results["store_heuristics_s"]) = await _timed(lambda: store.store_heuristics(heus))
        (_, results["store_embeddings_s"]) = await _timed(lambda: store.store_embeddings(embs))

        ids = [e.id for e in eps[:: max(1, len(eps) // 500)]]
        t0 = time.perf_counter()
        for eid in ids:
            assert await store.get_episode(eid) is not None
        results["get_episode_ms"] = (time.perf_counter() - t0) / len(ids) * 1e3
        checks: dict[str, tuple[int, float, float]] = {}
        mid = eps[len(eps) // 2].start_time
        for name, fn in {
            "query_episodes_since": lambda: store.query_episodes_since(mid, limit=100),
            "query_episodes_by_metadata": lambda: store.query_episodes_by_metadata(
                "agent", "coder"
            ),
            "query_episodes(domain, language)": lambda: store.query_episodes(
                domain="web-api", language="python"
            ),
            "search_patterns": lambda: store.search_patterns(min_success_rate=0.5),
            "list_heuristics": lambda: store.list_heuristics(min_confidence=0.8),
            "get_episodes(500)": lambda: store.get_episodes(ids),
            "nearest(k=10)": lambda: store.nearest(embs[3].vector, 10),
        }.items():
            got, first = await _timed(fn)  # a miss: the database answers
            _, cached = await _timed(fn, repeat=3)  # the query cache answers
            checks[name] = (len(got), first * 1e3, cached * 1e3)
        results["queries"] = {
            k: {"rows": n, "first_ms": f, "cached_ms": c} for k, (n, f, c) in checks.items()
        }

        # a skewed read workload through the cache layer
        picks = zipf_trace(20_000, len(eps), 1.0, seed=seed).tolist()
        before = store.get_stats()["statements"]["by_name"].get("get_episode", 0)
        t0 = time.perf_counter()
        for i in picks:
            await store.get_episode(eps[i].id)
        secs = time.perf_counter() - t0
        db_reads = store.get_stats()["statements"]["by_name"].get("get_episode", 0) - before
        results["zipf_reads"] = {
            "reads": len(picks),
            "db_reads": db_reads,
            "reads_per_s": len(picks) / secs,
        }
        results["stats"] = store.get_stats()

    codec = results["stats"]["codec"]
    st = results["stats"]["statements"]
    print(f"\ntiered store run on {url}", file=out)
    print(
        f"  wrote {episodes} episodes in batches of {batch}: "
        f"{results['store_episodes_per_s']:,.0f} episodes/s",
        file=out,
    )
    print(
        f"  payload bytes {codec['bytes_raw']:,} raw -> {codec['bytes_stored']:,} stored "
        f"(ratio {codec['ratio']:.2f}, {codec['frames_compressed']} compressed frames, "
        f"{codec['frames_raw']} raw)",
        file=out,
    )
    print(
        f"  get_episode: {results['get_episode_ms']:.3f} ms average over {len(ids)} reads", file=out
    )
    print(f"  {'query':<34}{'rows':>6}{'first ms':>10}{'cached ms':>11}", file=out)
    for name, (n, first, cached) in checks.items():
        print(f"  {name:<34}{n:>6}{first:>10.2f}{cached:>11.3f}", file=out)
    print(
        f"  statements: {st['executions']:,} executed, {st['prepared']} prepared, "
        f"{st['reused']:,} reused",
        file=out,
    )
    z, ce = results["zipf_reads"], results["stats"]["cache"]["episodes"]
    print(
        f"  cache: {z['reads']:,} Zipf(1.0) get_episode calls -> {z['db_reads']:,} database "
        f"reads ({1 - z['db_reads'] / z['reads']:.1%} saved), {z['reads_per_s']:,.0f} reads/s; "
        f"episode cache {ce['entries']:,} entries, {ce['bytes'] / 1e6:.1f} MB, "
        f"hit ratio {ce['hit_ratio']:.3f}",
        file=out,
    )
    return results
