"""Concurrent writes: group commit against every writer on its own; prints one JSON document.

``--writers`` tasks each store episodes one at a time (``store_episode``, one transaction each)
for ``--seconds``, in the same process, alternating blocks of the two configurations:

- ``grouped``: the default, ``StoreConfig(max_concurrent_writes=1)``: writers queue in the
  Store and each group of waiting writers commits as one transaction;
- ``concurrent``: ``StoreConfig(group_commit=False, max_concurrent_writes=8)`` (the pool
  size): up to 8 transactions in flight at once, each committing alone (what the Store did
  before group commit).

Backends: the embedded file, a local sqld over ws (loopback), and the same sqld through a delay
proxy at ``--rtt`` milliseconds (a remote region). Reported: acknowledged writes per second,
write latency p50/p99, the longest time with no write acknowledged (a stall), errors (calls past
the 10 s timeout), and the ratio grouped / concurrent of the throughput (target >= 1: grouping
must not cost throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import log, p50_p99

from tiered import CacheConfig, PoolConfig, Store, StoreConfig
from tiered.devserver import SqldProcess, find_sqld, free_port
from tiered.errors import TieredError
from tiered.netproxy import TcpProxy
from tiered.sim import generate_episodes

POOL = 8


async def run(url: str, writers: int, seconds: float, grouped: bool, tag: str) -> dict[str, Any]:
    config = StoreConfig(
        max_concurrent_writes=1 if grouped else POOL,
        group_commit=grouped,
        dictionary_after=0,
        timeout=10.0,
    )
    store = await Store.open(
        url,
        config=config,
        pool=PoolConfig(min_size=POOL, max_size=POOL),
        cache=CacheConfig(enabled=False),
    )
    lat: list[float] = []
    acked: list[float] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def writer(k: int) -> None:
        n = 0
        while not stop.is_set():
            (ep,) = generate_episodes(1, seed=k * 1_000_003 + n, id_prefix=f"{tag}-{k}-{n}")
            t = time.perf_counter()
            try:
                await store.store_episode(ep)
            except TieredError as e:  # counted: the ungrouped mode can time out on sqld
                errors.append(type(e).__name__)
                continue
            now = time.perf_counter()
            lat.append(now - t)
            acked.append(now)
            n += 1

    try:
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(writer(k)) for k in range(writers)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        groups = store.stats()["statements"]["group_commit"]
    finally:
        await store.close()
    marks = [t0, *sorted(acked)]
    return {
        "writes_per_s": len(lat) / elapsed,
        "latency_ms": p50_p99(lat, 1e3),
        "longest_stall_s": max(b - a for a, b in itertools.pairwise(marks)),
        "mean_group": groups["mean_group"],
        "errors": len(errors),
    }


async def compare(url: str, args: argparse.Namespace, name: str) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {"grouped": [], "concurrent": []}
    for r in range(args.rounds):
        for mode in rows:
            log(f"{name}: round {r + 1}/{args.rounds}, {mode} ...")
            tag = f"{name}{r}{mode}"
            rows[mode].append(await run(url, args.writers, args.seconds, mode == "grouped", tag))
    out: dict[str, Any] = {}
    for mode, rs in rows.items():
        out[mode] = {
            "writes_per_s": sorted(x["writes_per_s"] for x in rs)[len(rs) // 2],
            "latency_ms_p50": sorted(x["latency_ms"]["p50"] for x in rs)[len(rs) // 2],
            "latency_ms_p99": max(x["latency_ms"]["p99"] for x in rs),
            "longest_stall_s": max(x["longest_stall_s"] for x in rs),
            "mean_group": sorted(x["mean_group"] for x in rs)[len(rs) // 2],
            "errors": sum(x["errors"] for x in rs),
        }
    out["throughput_ratio"] = out["grouped"]["writes_per_s"] / out["concurrent"]["writes_per_s"]
    return out


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-writes-"))
    out: dict[str, Any] = {"writers": args.writers, "seconds": args.seconds, "pool": POOL}
    out["file"] = await compare(f"file:{tmp / 'w.db'}", args, "file")
    proc = SqldProcess(find_sqld(), tmp / "sqld", free_port(), log_path=tmp / "sqld.log")
    proc.start()
    try:
        out["ws_loopback"] = await compare(proc.ws_url, args, "ws")
        async with TcpProxy("127.0.0.1", proc.http_port, delay=args.rtt / 2000) as proxy:
            out[f"ws_rtt_{args.rtt:g}ms"] = await compare(proxy.url("ws"), args, "rtt")
    finally:
        proc.stop()
    ratios = {k: v["throughput_ratio"] for k, v in out.items() if isinstance(v, dict)}
    out["targets"] = {"throughput_ratio_min": 1.0}
    out["passed"] = {k: r >= 1.0 for k, r in ratios.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--writers", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rtt", type=float, default=20.0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(amain(args)), indent=2))


if __name__ == "__main__":
    main()
