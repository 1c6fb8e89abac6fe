"""Access-log benchmark; prints one JSON document.

The cost of recording the access trace on the read path: a cached ``get_episode`` on a Store with
``StoreConfig(access_log=...)`` against the same call on a Store without, interleaved call by
call in one process (these machines are shared and noisy), on warm caches. The buffered rows are
written by a worker thread every 20,000 accesses, so the samples include those flushes. Target:
at most 1 µs added at p50. Also reports the size of the trace on disk per access.

Usage: ``python benchmarks/bench_access_log.py [--n N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import quantile

from tiered import Store, StoreConfig
from tiered.sim import generate_episodes


async def main(n: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-access-"))
    url = f"file:{tmp}/a.db"
    eps = generate_episodes(200, seed=1)
    async with await Store.open(url) as s:
        await s.store_episodes(eps)
    plain = await Store.open(url)
    logged = await Store.open(url, config=StoreConfig(access_log=str(tmp / "log")))
    ids = [e.id for e in eps]
    for k in ids:  # warm both caches
        await plain.get_episode(k)
        await logged.get_episode(k)
    pc = time.perf_counter_ns
    a, b = [], []
    for i in range(n):
        k = ids[i % len(ids)]
        t = pc()
        await logged.get_episode(k)
        a.append(pc() - t)
        t = pc()
        await plain.get_episode(k)
        b.append(pc() - t)
    await plain.close()
    await logged.close()
    files = list((tmp / "log").glob("access-*.parquet"))
    disk = sum(f.stat().st_size for f in files)
    added = (quantile(a, 0.5) - quantile(b, 0.5)) / 1e3
    return {
        "calls": n,
        "logged_p50_us": quantile(a, 0.5) / 1e3,
        "plain_p50_us": quantile(b, 0.5) / 1e3,
        "added_p50_us": added,
        "added_mean_us": (statistics.fmean(a) - statistics.fmean(b)) / 1e3,
        "logged_p99_us": quantile(a, 0.99) / 1e3,
        "plain_p99_us": quantile(b, 0.99) / 1e3,
        "target_added_p50_us": 1.0,
        "passed": added <= 1.0,
        "trace_files": len(files),
        "trace_bytes_per_access": disk / max(1, n + len(ids)),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    print(json.dumps(asyncio.run(main(ap.parse_args().n)), indent=2))
