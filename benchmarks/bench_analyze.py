"""Analysis benchmark; prints one JSON document.

* A database of the original system's layout with ``--episodes`` episodes (200,000 by default,
  written by plain sqlite3: ``tiered.workload.original``) is analysed on the embedded backend by
  ``tiered analyze`` in a child process: wall time and the child's peak RSS (targets: under 2
  minutes, under 1.5 GB). Probes are off there (they are paced by design).
* The same database served by a local sqld: ``--probes`` hot reads at ``--rate`` per second over
  ws; the rate actually sent against the configured limit (target: at most the limit).

Usage: ``python benchmarks/bench_analyze.py [--episodes N] [--probes N] [--rate R]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tiered.analysis import analyze
from tiered.devserver import SqldProcess, find_sqld, free_port
from tiered.workload.original import write_original_database


def main(episodes: int, probes: int, rate: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    db = tmp / "memory.db"
    t0 = time.perf_counter()
    write_original_database(db, episodes=episodes, weeks=12, seed=7)
    written = time.perf_counter() - t0
    size = db.stat().st_size
    out: dict[str, Any] = {
        "episodes": episodes,
        "database_bytes": size,
        "write_s": written,
    }
    t0 = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "tiered", "analyze", f"file:{db}", "--probes", "0",
         "--json", "--out", str(tmp / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    out["analyze_s"] = time.perf_counter() - t0
    out["analyze_rc"] = run.returncode
    # ru_maxrss of finished children: kilobytes on Linux
    out["analyze_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if run.returncode == 0:
        doc = json.loads(run.stdout)
        out["recommendations"] = [r["part"] for r in doc["recommendations"]]
        out["compression_saving"] = (doc.get("compression") or {}).get("saving")
    else:
        out["stderr"] = run.stderr[-500:]
    out["target_s"], out["target_rss_mb"] = 120, 1536
    # the live server: probes paced at `rate`
    data = tmp / "sqld" / "dbs" / "default"
    data.mkdir(parents=True)
    src = sqlite3.connect(db)
    src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    src.close()
    shutil.copy(db, data / "data")
    proc = SqldProcess(find_sqld(), tmp / "sqld", free_port(), log_path=tmp / "sqld.log")
    proc.start()
    try:
        a = asyncio.run(
            analyze(proc.ws_url, probes=probes, rate=rate, holdout_days=1, say=lambda _m: None)
        )
        assert a.latency is not None
        out["probes"] = a.latency.requests.height
        out["probe_rate_limit"] = rate
        out["probe_rate_achieved"] = a.latency.achieved_rate
        out["probe_summary"] = a.latency.summary().to_dicts()
    finally:
        proc.stop()
    out["passed"] = (
        out["analyze_rc"] == 0
        and out["analyze_s"] < out["target_s"]
        and out["analyze_peak_rss_mb"] < out["target_rss_mb"]
        and out["probe_rate_achieved"] <= rate * 1.02
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=200_000)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20.0)
    a = ap.parse_args()
    print(json.dumps(main(a.episodes, a.probes, a.rate), indent=2, default=str))
