"""Load: 500 concurrent tasks of mixed operations for 30 s against a local sqld.

Zero errors of any kind may reach the tasks; every acknowledged write must be stored; the pool
never exceeds ``max_size``; the cache stays within its bounds; and the process's resident memory
must level off (the last third of the run may not grow past the first third by more than
:data:`RSS_SLACK_MB`). Throughput and latency quantiles go into the fault table.

``TIERED_LOAD_SECONDS`` shortens or lengthens the run (default 30).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from tiered import CacheConfig, PoolConfig, RecordCacheConfig, Store
from tiered.db.driver import Statement, connect
from tiered.devserver import SqldProcess
from tiered.sim import generate_episodes, generate_patterns

from .conftest import record

SECONDS = float(os.environ.get("TIERED_LOAD_SECONDS", "30"))
TASKS = 500
MAX_SIZE = 10
KEYS = 3000
CACHED = 1000  # episode cache entries: well below the key space, so eviction runs all along
RSS_SLACK_MB = 48
PAGE = os.sysconf("SC_PAGE_SIZE")
LOAD_IDS = Statement("load_ids", "SELECT id FROM episodes WHERE id LIKE 'load-%'")


def rss_mb() -> float:
    with Path("/proc/self/statm").open() as f:
        return int(f.read().split()[1]) * PAGE / 2**20


async def test_500_tasks_of_mixed_operations(fresh_sqld: SqldProcess) -> None:
    store = await Store.open(
        fresh_sqld.ws_url,
        pool=PoolConfig(min_size=2, max_size=MAX_SIZE),
        cache=CacheConfig(episodes=RecordCacheConfig(maxsize=CACHED, max_bytes=8 << 20)),
    )
    eps = generate_episodes(KEYS, seed=5)
    await store.store_episodes(eps)
    await store.store_patterns(generate_patterns(200, seed=5))
    ids = [e.id for e in eps]
    weights = [1 / (r + 1) ** 0.9 for r in range(KEYS)]  # Zipf-like popularity
    agents = ("planner", "coder", "reviewer")
    domains = sorted({e.context.domain for e in eps})

    stop = asyncio.Event()
    latency = array("d")  # seconds, every call
    kinds: Counter[str] = Counter()
    errors: list[str] = []
    written: list[str] = []
    samples: list[tuple[float, float, int, int]] = []  # (t, rss MB, pool size, waiting)

    async def task(k: int) -> None:
        rng = random.Random(k)
        n = 0
        while not stop.is_set():
            u = rng.random()
            t0 = time.perf_counter()
            try:
                if u < 0.55:
                    kind = "get_episode"
                    await store.get_episode(rng.choices(ids, weights)[0])
                elif u < 0.65:
                    kind = "get_episodes"
                    await store.get_episodes(rng.choices(ids, weights, k=5))
                elif u < 0.75:
                    kind = "store_episode"
                    (ep,) = generate_episodes(1, seed=k * 100_000 + n, id_prefix=f"load-{k}")
                    await store.store_episode(ep)
                    written.append(ep.id)
                elif u < 0.82:
                    kind = "query_episodes_since"
                    await store.query_episodes_since(eps[rng.randrange(KEYS)].start_time, 20)
                elif u < 0.89:
                    kind = "query_episodes_by_metadata"
                    await store.query_episodes_by_metadata("agent", rng.choice(agents), 20)
                elif u < 0.96:
                    kind = "search_patterns"
                    await store.search_patterns(domain=rng.choice(domains), limit=20)
                else:
                    kind = "update_episode"  # a hot record rewritten: invalidation under load
                    await store.store_episode(eps[rng.randrange(50)])
            except Exception as e:  # any error at all fails the test
                errors.append(f"{type(e).__name__}: {e}")
                continue
            latency.append(time.perf_counter() - t0)
            kinds[kind] += 1
            n += 1

    async def sampler() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            s = store.pool.get_stats()
            samples.append(
                (time.monotonic() - t0, rss_mb(), store.pool.size, s["requests_waiting"])
            )
            await asyncio.sleep(0.25)

    try:
        t0 = time.monotonic()
        running = [asyncio.create_task(task(k)) for k in range(TASKS)]
        watch = asyncio.create_task(sampler())
        await asyncio.sleep(SECONDS)  # the load's duration is wall time by definition
        stop.set()
        async with asyncio.timeout(60):  # in-flight calls finish; nothing hangs
            await asyncio.gather(*running, watch)
        elapsed = time.monotonic() - t0
        conn = await connect(fresh_sqld.http_url)
        try:
            present = {str(r[0]) for r in (await conn.execute(LOAD_IDS)).rows}
        finally:
            await conn.close()
        cache = store.get_stats()["cache"]["episodes"]
        busy = store.get_stats()["statements"]["busy_retries"]
        groups = store.get_stats()["statements"]["group_commit"]
    finally:
        await store.close()

    assert errors == [], errors[:5]
    lost = sum(1 for i in written if i not in present)
    assert lost == 0
    assert max(size for _, _, size, _ in samples) <= MAX_SIZE
    assert cache["entries"] <= CACHED and cache["bytes"] <= 8 << 20 and cache["evictions"]
    third = max(1, len(samples) // 3)
    rss_early = max(r for _, r, _, _ in samples[:third])
    rss_late = max(r for _, r, _, _ in samples[-third:])
    assert rss_late <= rss_early + RSS_SLACK_MB, (rss_early, rss_late)

    lat = np.frombuffer(latency, dtype=np.float64) * 1000
    p50, p99 = np.percentile(lat, [50, 99])
    record(
        fault=f"load: {TASKS} tasks x {SECONDS:.0f}s mixed ops (ws, pool {MAX_SIZE})",
        operations=f"{len(lat)} calls ({len(lat) / elapsed:.0f}/s), {len(written)} writes",
        errors_to_caller=len(errors),
        acked_lost=lost,
        recovery_s="-",
        load=(
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; pool <= {max(s[2] for s in samples)}; "
            f"RSS {rss_early:.0f}->{rss_late:.0f} MB; cache hit {cache['hit_ratio']:.2f}; "
            f"{busy} locked-database retries; write transactions in groups of "
            f"{groups['mean_group']:.0f} on average"
        ),
    )
