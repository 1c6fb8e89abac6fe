"""Import benchmark; prints one JSON document.

A database of the original system's layout with ``--episodes`` episodes (100,000 by default,
written by plain sqlite3) is imported with ``tiered.importer.import_database`` into a fresh
embedded file, and into a local sqld over ws. Each rate (episodes per second of the episodes
phase) is set against, in the same run and on the same backend, ``Store.store_episodes`` of
freshly generated episodes in batches of 500 (what ``bench_store.py`` measures; target: the
import at >= 0.5x of it). Then the before/after comparison (``tiered.compare``) on the embedded
pair: bytes on disk and of payloads, and the original's hot queries on both layouts (the
metadata lookup must go from a scan to an index).

Usage: ``python benchmarks/bench_import.py [--episodes N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tiered import Store
from tiered.compare import compare_layouts
from tiered.devserver import SqldProcess, find_sqld, free_port
from tiered.importer import import_database
from tiered.sim import generate_episodes
from tiered.workload.legacy import write_legacy_database


async def store_rate(url: str, n: int = 5000) -> float:
    eps = generate_episodes(n, seed=3, id_prefix="rate")
    async with await Store.open(url) as s:
        t0 = time.perf_counter()
        for i in range(0, n, 500):
            await s.store_episodes(eps[i : i + 500])
        return n / (time.perf_counter() - t0)


async def import_rate(source: str, dest: str, episodes: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    report = await import_database(source, dest, verify=False, progress=False)
    secs = time.perf_counter() - t0
    return {
        "seconds": secs,
        "seconds_per_table": report.seconds,
        "records": sum(report.imported.values()),
        # the episodes phase alone: embeddings on sqld pay for its vector index, per vector
        "episodes_per_s": report.imported.get("episodes", 0) / report.seconds["episodes"],
        "issues": len(report.issues),
    }


async def main(episodes: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    src = tmp / "original.db"
    t0 = time.perf_counter()
    write_legacy_database(src, episodes=episodes, weeks=12, seed=5, embeddings=episodes // 100)
    out: dict[str, Any] = {"episodes": episodes, "write_source_s": time.perf_counter() - t0}
    base = await store_rate(f"file:{tmp / 'rate.db'}")
    imp = await import_rate(f"file:{src}", f"file:{tmp / 'tiered.db'}", episodes)
    out["embedded"] = {**imp, "store_episodes_per_s": base,
                       "ratio": imp["episodes_per_s"] / base, "target_ratio": 0.5}  # fmt: skip
    table = await compare_layouts(f"file:{src}", f"file:{tmp / 'tiered.db'}", repeat=5)
    out["before_after"] = table.to_dicts()
    for name in ("rate", "import"):
        sqld = SqldProcess(find_sqld(), tmp / name, free_port(), log_path=tmp / f"{name}.log")
        sqld.start()
        try:
            if name == "rate":
                ws_base = await store_rate(sqld.ws_url)
            else:
                ws = await import_rate(f"file:{src}", sqld.ws_url, episodes)
        finally:
            sqld.stop()
    out["ws"] = {**ws, "store_episodes_per_s": ws_base,
                 "ratio": ws["episodes_per_s"] / ws_base, "target_ratio": 0.5}  # fmt: skip
    meta = next(r for r in out["before_after"] if r["measure"].startswith("query_episodes_by"))
    out["metadata_lookup"] = {"original_plan": meta["original_plan"], "note": meta["note"]}
    out["passed"] = out["embedded"]["ratio"] >= 0.5 and out["ws"]["ratio"] >= 0.5
    shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=100_000)
    print(json.dumps(asyncio.run(main(ap.parse_args().episodes)), indent=2, default=str))
