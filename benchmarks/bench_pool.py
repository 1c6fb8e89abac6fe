"""Pool benchmark; prints one JSON document (progress goes to stderr).

1. Acquire + release overhead of the pool itself: p50/p99 in µs on an embedded pool (no I/O in
   the measured span beyond the pool's bookkeeping).
2. Per-operation latency over ws to a local sqld: a ``get_episode`` point read through the pool
   against, in the same run and in alternating blocks, the same read on a new libsql-client
   per operation (connect, execute, close: the per-operation connection the seed's Rust code
   opened). Target: pooled / new-client p50 <= 0.2. Also run through a delay proxy at
   ``--rtt`` milliseconds, where connection set-up costs round trips rather than CPU.
3. Throughput with 64 concurrent tasks: the pool (``--pool-size`` connections) against one
   shared connection (one socket and one stream, so its requests queue on the server), on point
   reads only and on a mix where 2 % of operations are a heavier range query (the latency of the
   point reads in the mix shows head-of-line blocking on the shared stream).
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

import libsql_client
from _common import log, p50_p99, quantile

from tiered import Store
from tiered.cache import CacheConfig
from tiered.db import statements as q
from tiered.db.driver import Connection, Statement, connect
from tiered.devserver import SqldProcess, find_sqld, free_port
from tiered.netproxy import TcpProxy
from tiered.pool import Fixed, Pool, PoolConfig
from tiered.sim import generate_episodes


async def acquire_overhead(tmp: Path, n: int = 20_000) -> dict[str, float]:
    pool: Pool[Connection] = Pool(
        lambda: connect(f"file:{tmp}/overhead.db"),
        PoolConfig(min_size=1, max_size=1, sizing=Fixed(1)),
    )
    await pool.open(background=False)
    pc = time.perf_counter_ns
    ts = []
    for _ in range(n):
        t = pc()
        async with pool.connection():
            pass
        ts.append(pc() - t)
    await pool.close()
    return {"p50_us": quantile(ts, 0.5) / 1e3, "p99_us": quantile(ts, 0.99) / 1e3, "samples": n}


async def per_op(url: str, ep_id: str, rounds: int, block: int) -> dict[str, Any]:
    pool: Pool[Connection] = Pool(
        lambda: connect(url), PoolConfig(min_size=1, max_size=1, sizing=Fixed(1))
    )
    await pool.open(background=False)
    stmt = q.GET_EPISODE
    pooled: list[float] = []
    fresh: list[float] = []
    pc = time.perf_counter
    try:
        for _ in range(3):  # warm both paths
            async with pool.connection() as c:
                await c.execute(stmt, (ep_id,))
        for _ in range(rounds):
            for _ in range(block):
                t = pc()
                async with pool.connection() as c:
                    rows = (await c.execute(stmt, (ep_id,))).rows
                pooled.append(pc() - t)
                assert rows
            for _ in range(max(1, block // 4)):
                t = pc()
                async with libsql_client.create_client(url) as client:
                    rs = await client.execute(stmt.sql, [ep_id])
                fresh.append(pc() - t)
                assert rs.rows
            await asyncio.sleep(0.01)  # let closed clients' sockets finish closing
    finally:
        await pool.close()
    p50p, p50f = statistics.median(pooled), statistics.median(fresh)
    return {
        "pooled_us": {"p50": p50p * 1e6, "p99": quantile(pooled, 0.99) * 1e6, "n": len(pooled)},
        "new_client_us": {"p50": p50f * 1e6, "p99": quantile(fresh, 0.99) * 1e6, "n": len(fresh)},
        "ratio_p50": p50p / p50f,
    }


HEAVY = Statement(
    "heavy_scan",
    "SELECT count(*), sum(length(e.payload)) FROM episodes e, episodes f WHERE f.rowid % 50 = 0",
)


async def throughput(
    url: str, ids: list[str], pool_size: int, seconds: float, heavy_every: int
) -> dict[str, Any]:
    stmt = q.GET_EPISODE

    async def run(use: Any) -> tuple[float, list[float]]:
        done = 0
        stop = time.perf_counter() + seconds
        lat: list[float] = []

        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.perf_counter() < stop:
                heavy = heavy_every and (i // 64) % heavy_every == w % heavy_every
                t = time.perf_counter()
                await use(HEAVY if heavy else stmt, () if heavy else (ids[i % len(ids)],))
                if not heavy:
                    lat.append(time.perf_counter() - t)
                i += 64
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(64)))
        return done / (time.perf_counter() - t0), lat

    pool: Pool[Connection] = Pool(
        lambda: connect(url),
        PoolConfig(min_size=pool_size, max_size=pool_size, sizing=Fixed(pool_size)),
    )
    await pool.open(background=False)
    shared = await connect(url)

    async def pooled(st: Statement, a: tuple[str, ...]) -> None:
        async with pool.connection() as c:
            await c.execute(st, a)

    async def single(st: Statement, a: tuple[str, ...]) -> None:
        await shared.execute(st, a)

    try:
        runs = [await run(pooled), await run(single), await run(pooled), await run(single)]
    finally:
        await pool.close()
        await shared.close()
    pool_ops, single_ops = (runs[0][0] + runs[2][0]) / 2, (runs[1][0] + runs[3][0]) / 2
    pool_lat, single_lat = runs[0][1] + runs[2][1], runs[1][1] + runs[3][1]
    return {
        "tasks": 64,
        "pool_size": pool_size,
        "heavy_query_share": 1 / heavy_every if heavy_every else 0.0,
        "pool_ops_per_s": pool_ops,
        "single_connection_ops_per_s": single_ops,
        "speedup": pool_ops / single_ops,
        "point_read_ms": {
            "pool": p50_p99(pool_lat, 1e3),
            "single": p50_p99(single_lat, 1e3),
        },
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    out: dict[str, Any] = {}
    log("acquire/release overhead ...")
    out["acquire_release"] = await acquire_overhead(tmp)
    proc = SqldProcess(find_sqld(), tmp / "sqld", free_port(), log_path=tmp / "sqld.log")
    proc.start()
    try:
        store = await Store.open(proc.ws_url, cache=CacheConfig(enabled=False))
        eps = generate_episodes(500, seed=7)
        await store.store_episodes(eps)
        await store.close()
        ids = [e.id for e in eps]
        log("per-operation latency, loopback ...")
        out["per_op_loopback"] = await per_op(proc.ws_url, ids[0], args.rounds, 200)
        for rtt in args.rtt:
            log(f"per-operation latency through a {rtt} ms RTT proxy ...")
            async with TcpProxy("127.0.0.1", proc.http_port, delay=rtt / 2000) as proxy:
                r = await per_op(proxy.url("ws"), ids[0], max(2, args.rounds // 4), 20)
            out[f"per_op_rtt_{rtt}ms"] = r
        log("throughput, 64 tasks, point reads ...")
        out["throughput_point_reads"] = await throughput(
            proc.ws_url, ids, args.pool_size, args.seconds, 0
        )
        log("throughput, 64 tasks, point reads with 2 % heavy queries ...")
        out["throughput_mixed"] = await throughput(
            proc.ws_url, ids, args.pool_size, args.seconds, 50
        )
    finally:
        proc.stop()
    out["targets"] = {"per_op_ratio_p50": 0.2}
    out["passed"] = {"per_op_ratio": out["per_op_loopback"]["ratio_p50"] <= 0.2}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--rtt", type=float, nargs="*", default=[2.0, 20.0])
    ap.add_argument("--pool-size", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(amain(args)), indent=2))


if __name__ == "__main__":
    main()
