"""The embedded-replica read tier over a slow link; prints one JSON document.

A local sqld behind a delay proxy at ``--rtt`` ms (and ``--mbps`` each way) holds ``--records``
episodes. Two Stores, both with the cache off (what is measured is the tier, not the cache):
``replica`` opens it with ``local_replica=`` (synced every ``--sync-interval`` s), ``primary``
without. Same run:

- point reads (``get_episode`` of random ids, the two stores alternating): p50/p99 of each and
  the ratio (target: the replica >= 20x faster at p50);
- read-after-own-write: the replica store writes a new version of a record and reads it back at
  once, ``--cycles`` times; violations (an older answer) must be 0;
- another process's write: the primary store writes a new record, the replica store reads it
  every 5 ms until it appears; the time that takes, against the bound ``sync interval + one
  sync`` (sync: a round trip plus the new frames at the link's bandwidth).

Usage: ``python benchmarks/bench_replica.py [--rtt 20] [--sync-interval 0.5]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import log, p50_p99

from tiered import CacheConfig, Store
from tiered.devserver import SqldProcess, find_sqld, free_port
from tiered.netproxy import TcpProxy
from tiered.sim import generate_episodes

OFF = CacheConfig(enabled=False)


async def point_reads(replica: Store, primary: Store, ids: list[str], n: int) -> dict[str, Any]:
    rng = random.Random(7)
    times: dict[str, list[float]] = {"replica": [], "primary": []}
    for _ in range(n):
        key = rng.choice(ids)
        for name, store in (("replica", replica), ("primary", primary)):
            t0 = time.perf_counter()
            assert await store.get_episode(key) is not None
            times[name].append(time.perf_counter() - t0)
    out = {k: p50_p99(v, 1e3) for k, v in times.items()}
    out["p50_speedup"] = out["primary"]["p50"] / out["replica"]["p50"]
    return out


async def own_writes(replica: Store, template: Any, cycles: int) -> dict[str, Any]:
    assert replica.router is not None
    before = replica.router.get_stats()
    violations = 0
    for i in range(cycles):
        ep = dataclasses.replace(template, description=f"version {i}")
        await replica.store_episode(ep)
        violations += await replica.get_episode(ep.id) != ep
    after = replica.router.get_stats()
    local = after["replicas"]["local"]["reads"] - before["replicas"]["local"]["reads"]
    by_primary = after["primary_reads"] - before["primary_reads"]
    return {"cycles": cycles, "violations": violations, "reads_served_locally": local,
            "reads_served_by_primary": by_primary}  # fmt: skip


async def visibility(replica: Store, primary: Store, trials: int) -> list[float]:
    waits = []
    for i, ep in enumerate(generate_episodes(trials, seed=9, id_prefix="vis")):
        await asyncio.sleep(0.05 + 0.37 * (i % 3))  # (not in step with the sync interval)
        await primary.store_episode(ep)
        t0 = time.perf_counter()
        while await replica.get_episode(ep.id) is None:  # noqa: ASYNC110 - the measured poll
            await asyncio.sleep(0.005)
        waits.append(time.perf_counter() - t0)
    return waits


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    proc = SqldProcess(find_sqld(), tmp / "sqld", free_port(), log_path=tmp / "sqld.log")
    proc.start()
    out: dict[str, Any] = {"rtt_ms": args.rtt, "mbps": args.mbps, "records": args.records,
                           "sync_interval_s": args.sync_interval}  # fmt: skip
    try:
        async with TcpProxy(
            "127.0.0.1", proc.http_port, delay=args.rtt / 2000, bandwidth=args.mbps * 125_000
        ) as proxy:
            url = proxy.url("ws")
            primary = await Store.open(url, cache=OFF)
            eps = generate_episodes(args.records, seed=3)
            for i in range(0, len(eps), 500):
                await primary.store_episodes(eps[i : i + 500])
            replica = await Store.open(
                url, cache=OFF, local_replica=tmp / "local.db", sync_interval=args.sync_interval
            )
            try:
                log("point reads ...")
                out["point_reads_ms"] = await point_reads(
                    replica, primary, [e.id for e in eps], args.reads
                )
                log("read-after-own-write ...")
                out["own_writes"] = await own_writes(replica, eps[0], args.cycles)
                log("other writers' visibility ...")
                waits = await visibility(replica, primary, args.trials)
                stats = replica.get_stats()["statements"]["local_replica"]
                sync_ms = stats["last_sync_ms"]
                bound = args.sync_interval + sync_ms / 1000 + args.rtt / 1000
                out["visibility_s"] = {
                    **p50_p99(waits), "max": max(waits), "bound": bound,
                    "last_sync_ms": sync_ms, "syncs": stats["syncs"],
                }  # fmt: skip
                assert replica.router is not None
                out["replica_stats"] = replica.router.get_stats()["replicas"]["local"]
            finally:
                await replica.close()
                await primary.close()
    finally:
        proc.stop()
    out["passed"] = {
        "p50_speedup_20x": out["point_reads_ms"]["p50_speedup"] >= 20,
        "no_violations": out["own_writes"]["violations"] == 0,
        "visible_within_bound": out["visibility_s"]["max"] <= out["visibility_s"]["bound"],
    }
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rtt", type=float, default=20.0)
    ap.add_argument("--mbps", type=float, default=100.0)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--sync-interval", type=float, default=0.5)
    print(json.dumps(asyncio.run(main(ap.parse_args())), indent=2))
