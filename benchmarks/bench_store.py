"""Storage-core benchmark; prints one JSON document.

* Bulk insert: ``Store.store_episodes`` (validation of the batch, msgspec encoding, zstd framing,
  statement grouping, one transaction) against, in the same process and alternating rounds, raw
  ``sqlite3.executemany`` of exactly the rows the Store writes (the same encoded payloads, the same
  metadata rows) into an identical fresh schema in one transaction. The ratio of rates is the
  Store's efficiency; the target is >= 0.6 on the embedded backend.
* The same bulk insert over ws:// and http:// to a local sqld.
* Point-read latency (``get_episode``) p50/p99 per backend.

Usage: ``python benchmarks/bench_store.py [--episodes N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import quantile

from tiered import Store
from tiered.db import statements as q
from tiered.devserver import SqldCluster
from tiered.sim import generate_episodes


async def fresh_schema(path: Path) -> None:
    s = await Store.open(f"file:{path}")
    await s.close()


async def store_rate(path: Path, eps: list, batch: int) -> float:  # type: ignore[type-arg]
    await fresh_schema(path)
    async with await Store.open(f"file:{path}") as s:
        t = time.perf_counter()
        for i in range(0, len(eps), batch):
            await s.store_episodes(eps[i : i + batch])
        return len(eps) / (time.perf_counter() - t)


def raw_rows(eps: list, batch: int) -> list[tuple[list, list, list]]:  # type: ignore[type-arg]
    """Exactly the rows the Store writes, encoded once outside the timed region."""
    from tiered.compression import Codec

    codec, now = Codec(), 1
    out = []
    for i in range(0, len(eps), batch):
        chunk = eps[i : i + batch]
        ups = [
            (
                e.id,
                e.task_type,
                e.context.domain,
                e.context.language,
                e.start_time,
                e.end_time,
                e.outcome_kind,
                e.reward,
                now,
                now,
                codec.encode_doc(e),
            )
            for e in chunk
        ]
        clears = [(e.id,) for e in chunk]
        metas = [(e.id, k, v, e.start_time) for e in chunk for k, v in e.metadata.items()]
        out.append((ups, clears, metas))
    return out


async def raw_rate(path: Path, rows: list[tuple[list, list, list]], n: int) -> float:  # type: ignore[type-arg]
    await fresh_schema(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    t = time.perf_counter()
    for ups, clears, metas in rows:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(q.UPSERT_EPISODE.sql, ups)
        db.executemany(q.CLEAR_EPISODE_METADATA.sql, clears)
        db.executemany(q.INSERT_EPISODE_METADATA.sql, metas)
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - t)
    db.close()
    return rate


async def remote_rate(url: str, eps: list, batch: int) -> float:  # type: ignore[type-arg]
    async with await Store.open(url) as s:
        t = time.perf_counter()
        for i in range(0, len(eps), batch):
            await s.store_episodes(eps[i : i + batch])
        return len(eps) / (time.perf_counter() - t)


async def read_latency(url: str, ids: list[str], n: int) -> dict[str, float]:
    async with await Store.open(url) as s:
        for i in ids[:50]:
            await s.get_episode(i)  # warm statements and connections
        lat = []
        for k in range(n):
            t = time.perf_counter()
            await s.get_episode(ids[k % len(ids)])
            lat.append((time.perf_counter() - t) * 1e6)
    return {"p50_us": quantile(lat, 0.50), "p99_us": quantile(lat, 0.99), "n": n}


async def main(episodes: int, rounds: int, batch: int, reads: int) -> dict[str, object]:
    eps = generate_episodes(episodes, seed=42)
    rows = raw_rows(eps, batch)
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    store_rates, raw_rates = [], []
    for r in range(rounds):  # alternate so drift on a shared machine hits both sides alike
        raw_rates.append(await raw_rate(tmp / f"raw{r}.db", rows, len(eps)))
        store_rates.append(await store_rate(tmp / f"store{r}.db", eps, batch))
    ratios = [s / r for s, r in zip(store_rates, raw_rates, strict=True)]
    out: dict[str, object] = {
        "episodes": episodes,
        "batch": batch,
        "rounds": rounds,
        "embedded": {
            "store_episodes_per_s": statistics.median(store_rates),
            "raw_executemany_per_s": statistics.median(raw_rates),
            "ratio": statistics.median(ratios),
            "ratio_per_round": ratios,
            "target_ratio": 0.6,
        },
    }
    ids = [e.id for e in eps]
    latency = {"file": await read_latency(f"file:{tmp / 'store0.db'}", ids, reads)}
    with SqldCluster() as cluster:
        for name, url in (("ws", cluster.primary.ws_url), ("http", cluster.primary.http_url)):
            sub = eps if name == "ws" else eps[: max(batch, episodes // 4)]
            prefix = [e for e in sub]
            rate = await remote_rate(url, prefix, batch)
            out[name] = {"store_episodes_per_s": rate, "episodes": len(prefix)}
            latency[name] = await read_latency(url, [e.id for e in prefix], reads)
    out["get_episode_latency"] = latency
    out["passed"] = out["embedded"]["ratio"] >= 0.6  # type: ignore[index]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--reads", type=int, default=2000)
    a = ap.parse_args()
    result = asyncio.run(main(a.episodes, a.rounds, a.batch, a.reads))
    json.dump(result, sys.stdout, indent=2)
    print()
