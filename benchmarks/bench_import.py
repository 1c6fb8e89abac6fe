"""Import benchmark; prints one JSON document.

A database of the original system's layout with ``--episodes`` episodes (100,000 by default,
written by plain sqlite3) is imported with ``tiered.importer.import_database`` into a fresh
embedded file, and into a local sqld over ws. Each rate (episodes per second of the episodes
phase) is set against, in the same run and on the same backend, ``store_episodes`` of the
import's own episodes (mapped beforehand) into an empty destination: the same rows, random UUID
keys and a destination growing to the source's size (target: the import at >= 0.5x of it).
Beside it, ``Store.store_episodes`` of 5,000 freshly generated episodes in batches of 500 (what
``bench_store.py`` measures), which pays for neither. The embedded import is run again with
its verification (the command's default): its extra time, and that it finds no difference.
Then the before/after comparison (``tiered.compare``) on the embedded pair: bytes on disk and
of payloads, and the original's hot queries on both layouts (the metadata lookup must go from a
scan to an index).

Usage: ``python benchmarks/bench_import.py [--episodes N]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from tiered import Episode, Store
from tiered.compare import compare_layouts
from tiered.devserver import SqldProcess, find_sqld, free_port
from tiered.importer import import_database, map_episode
from tiered.sim import generate_episodes
from tiered.workload.original import write_original_database


async def store_rate(url: str, n: int = 5000) -> float:
    eps = generate_episodes(n, seed=3, id_prefix="rate")
    async with await Store.open(url) as s:
        t0 = time.perf_counter()
        for i in range(0, n, 500):
            await s.store_episodes(eps[i : i + 500])
        return n / (time.perf_counter() - t0)


def source_episodes(src: Path) -> list[Episode]:
    """The source's episodes as the import maps them (tags included), in source order."""
    with contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        tags: dict[str, list[str]] = {}
        for eid, tag in db.execute("SELECT episode_id, tag FROM episode_tags"):
            tags.setdefault(eid, []).append(tag)
        rows = db.execute("SELECT * FROM episodes ORDER BY rowid")
        return [map_episode(dict(r), tags.get(r["episode_id"], ())) for r in rows]


async def same_rows_rate(url: str, eps: list[Episode]) -> float:
    """``store_episodes`` of the import's own episodes (mapped beforehand), in batches of 500,
    into an empty destination: what writing these rows costs without importing them."""
    async with await Store.open(url) as s:
        t0 = time.perf_counter()
        for i in range(0, len(eps), 500):
            await s.store_episodes(eps[i : i + 500])
        return len(eps) / (time.perf_counter() - t0)


async def import_rate(
    source: str, dest: str, episodes: int, verify: bool = False
) -> dict[str, Any]:
    t0 = time.perf_counter()
    report = await import_database(source, dest, verify=verify, progress=False)
    secs = time.perf_counter() - t0
    return {
        "verified": report.verified,
        "differences": len(report.differences),
        "ok": report.ok,
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
    write_original_database(src, episodes=episodes, weeks=12, seed=5, embeddings=episodes // 100)
    out: dict[str, Any] = {"episodes": episodes, "write_source_s": time.perf_counter() - t0}
    base = await store_rate(f"file:{tmp / 'rate.db'}")
    imp = await import_rate(f"file:{src}", f"file:{tmp / 'tiered.db'}", episodes)
    eps = source_episodes(src)
    same = await same_rows_rate(f"file:{tmp / 'same.db'}", eps)
    out["embedded"] = {**imp, "store_episodes_per_s": base,
                       "ratio": imp["episodes_per_s"] / base, "target_ratio": 0.5,
                       "same_rows_store_episodes_per_s": same,
                       "ratio_same_rows": imp["episodes_per_s"] / same}  # fmt: skip
    # the command's default: the import, then every record compared with its source row
    checked = await import_rate(f"file:{src}", f"file:{tmp / 'verified.db'}", episodes, True)
    out["embedded_verified"] = {
        k: checked[k] for k in ("seconds", "verified", "differences", "ok", "issues")
    } | {"verify_seconds": checked["seconds"] - imp["seconds"]}
    table = await compare_layouts(f"file:{src}", f"file:{tmp / 'tiered.db'}", repeat=5)
    out["before_after"] = table.to_dicts()
    for name in ("rate", "same", "import"):
        sqld = SqldProcess(find_sqld(), tmp / name, free_port(), log_path=tmp / f"{name}.log")
        sqld.start()
        try:
            if name == "rate":
                ws_base = await store_rate(sqld.ws_url)
            elif name == "same":
                ws_same = await same_rows_rate(sqld.ws_url, eps)
            else:
                ws = await import_rate(f"file:{src}", sqld.ws_url, episodes)
        finally:
            sqld.stop()
    out["ws"] = {**ws, "store_episodes_per_s": ws_base,
                 "ratio": ws["episodes_per_s"] / ws_base, "target_ratio": 0.5,
                 "same_rows_store_episodes_per_s": ws_same,
                 "ratio_same_rows": ws["episodes_per_s"] / ws_same}  # fmt: skip
    meta = next(r for r in out["before_after"] if r["measure"].startswith("query_episodes_by"))
    out["metadata_lookup"] = {"original_plan": meta["original_plan"], "note": meta["note"]}
    # the target: the import at >= 0.5x store_episodes of the same rows (mapped beforehand)
    out["passed"] = (
        out["embedded"]["ratio_same_rows"] >= 0.5
        and out["ws"]["ratio_same_rows"] >= 0.5
        and out["embedded_verified"]["ok"]
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=100_000)
    print(json.dumps(asyncio.run(main(ap.parse_args().episodes)), indent=2, default=str))
