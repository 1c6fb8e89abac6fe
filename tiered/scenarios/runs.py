"""Scenarios: what ``simulations/*.py`` run and the notebooks plot (results in ``data/results/``).

* :func:`~tiered.scenarios.policies.pool_policies` — reactive vs predictive vs hybrid pool
  sizing (plus static-peak and an oracle) on a real traffic series, and the sweep of each
  family's settings that gives its cost/lateness frontier (:mod:`tiered.scenarios.policies`).
* :func:`validate_fluid` — the fluid mode against the request-level engine on a day of traffic.
* :func:`cache_sizes` — hit ratio, database reads and latency by cache size and eviction policy,
  replaying the bench workload through the real cache layer.
* :func:`layer_breakdown` — the real stack over a remote-like link with each layer switched on in
  turn: the bottleneck breakdown per operation, and compression's effect on bytes and latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tiered.bench import BenchResult, run_bench, write_results
from tiered.cache.config import CacheConfig, RecordCacheConfig
from tiered.forecast.capacity import servers_needed
from tiered.forecast.series import REAL_TRACES
from tiered.pool.sizing import Fixed, Reactive, SizingPolicy
from tiered.scenarios.fidelity import calibrate
from tiered.scenarios.policies import (
    POLICIES,
    REACTIVE_GRID,
    WeekForecast,
    plan_levels,
    plan_week,
    pool_policies,
    scaled_rate,
    sweep_settings,
)
from tiered.sim.poolmodel import HoldTimes, PoolScenario, simulate_pool
from tiered.sim.replay import replay
from tiered.sim.service import ServiceModel
from tiered.workload.plans import Layers, Link, Workload

__all__ = [
    "POLICIES",
    "SLO_LATE_SHARE",
    "cache_sizes",
    "layer_breakdown",
    "pool_policies",
    "scaled_rate",
    "validate_fluid",
]

RESULTS = Path(__file__).resolve().parents[2] / "data" / "results"
Clock = Callable[[], float]
#: the pool's service-level objective: at most 0.1 % of requests wait > 10 ms for a connection
SLO_LATE_SHARE = 0.001


def validate_fluid(
    trace: str,
    hold: HoldTimes,
    connect_s: float,
    *,
    peak_rate: float = 100.0,
    day: int = 8 * 7 + 1,
    seed: int = 0,
) -> pl.DataFrame:
    """Fluid vs request-level on one day of ``trace`` for the reactive policy and a fixed
    pool sized for the day's peak: late share, wait p99 and connection-hours side by side."""
    rate = scaled_rate(trace, peak_rate)[day * 24 : day * 24 + 24]
    sc = PoolScenario(rate, hold, connect_s, seed=seed)
    peak = servers_needed(float(rate.max()), hold.mean, service_cv=hold.cv)
    policies: dict[str, Callable[[Clock], SizingPolicy]] = {
        "reactive": lambda c: Reactive(clock=c),
        "static_peak": lambda c: Fixed(peak),
    }
    rows = []
    for name, make in policies.items():
        for mode in ("requests", "fluid"):
            s = simulate_pool(sc, make, mode=mode).summary
            rows.append({"trace": trace, "policy": name, "mode": mode, **s})
    return pl.DataFrame(rows)


def _cache_size_point(w: Workload, model: ServiceModel, policy: str, n: int) -> dict[str, Any]:
    """One replay of :func:`cache_sizes` (a worker's task)."""
    cfg = CacheConfig(policy=policy, episodes=RecordCacheConfig(maxsize=n))
    r = replay(w, model, cache=cfg)
    lat = r.requests["latency_s"].to_numpy()
    return {
        "policy": policy, "size": n, "hit_ratio": r.hit_ratio,
        "db_requests": int((r.requests["path"] == "db").sum()),
        "p50_ms": float(np.quantile(lat, 0.5) * 1000),
        "p95_ms": float(np.quantile(lat, 0.95) * 1000),
    }  # fmt: skip


def _db_reads_without_cache(w: Workload, model: ServiceModel) -> int:
    off = replay(w, model, layers=Layers(cache=False))
    return int((off.requests["path"] == "db").sum())


def cache_sizes(
    model: ServiceModel,
    *,
    sizes: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000),
    policies: tuple[str, ...] = ("wtinylfu", "lru"),
    workload: Workload | None = None,
    executor: Executor | None = None,
) -> pl.DataFrame:
    """Replay the bench workload with the episode cache bounded to each size, per eviction
    policy: hit ratio, database reads, latency p50/p95 (from the measured service model).
    ``executor``: run the replays side by side (each is independent)."""
    w = workload or Workload(ops=6000, rate=100.0, records=2000)
    points = [(policy, n) for policy in policies for n in sizes]
    if executor is None:
        rows = [_cache_size_point(w, model, p, n) for p, n in points]
        base = _db_reads_without_cache(w, model)
    else:
        futures = [executor.submit(_cache_size_point, w, model, p, n) for p, n in points]
        off = executor.submit(_db_reads_without_cache, w, model)
        rows = [f.result() for f in futures]
        base = off.result()
    return pl.DataFrame(rows).with_columns(
        db_reads_saved=1 - pl.col("db_requests") / base, staleness_bound_s=pl.lit(1.0)
    )


def layer_breakdown(
    link: Link, workload: Workload | None = None, *, progress: bool = True
) -> BenchResult:
    """The real stack (a local sqld behind ``link``) with no layer, each layer alone, and all."""
    w = workload or Workload(ops=600, concurrency=4)
    return asyncio.run(run_bench(None, Layers.parse("compare"), w, link=link, progress=progress))


# -- runners: each writes its results to ``out`` (data/results by default) ---------------------

SERVICE = "service_remote20.parquet"
REMOTE = Link(20.0, 100.0)


def _processes(stack: contextlib.ExitStack, workers: int | None) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` processes (default one per core, at most 2) closed with
    ``stack``; ``None`` for one worker (run in this process)."""
    n = workers if workers is not None else min(2, os.cpu_count() or 1)
    if n <= 1:
        return None
    ctx = multiprocessing.get_context("spawn")  # no fork of a process running polars
    return stack.enter_context(ProcessPoolExecutor(max_workers=n, mp_context=ctx))


def run_calibration(out: Path = RESULTS, *, progress: bool = True) -> pl.DataFrame:
    """Calibrate on a local sqld behind a 20 ms / 100 Mbit/s link; save the service model."""
    cal = calibrate(Workload(ops=1200, rate=60.0), link=REMOTE, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    cal.model.save(out / SERVICE)
    cal.table.write_parquet(out / "calibration.parquet")
    return cal.table


def load_service(out: Path = RESULTS) -> ServiceModel:
    return ServiceModel.load(out / SERVICE)


def run_pool_policies(
    out: Path = RESULTS, *, workers: int | None = None, progress: bool = True
) -> pl.DataFrame:
    """Every named policy and the settings sweep on each real trace (``workers`` processes,
    default one per core, at most 2); the nycflights13 series and forecast; the fluid check.
    Writes pool_policies.parquet (named policies) and pool_frontier.parquet (every point)."""
    model = load_service(out)
    hold, connect = model.hold_times(), float(np.median(model.connect_times()))
    stored = RESULTS / "forecast_calibrated.parquet"
    calibrated = pl.read_parquet(stored) if stored.exists() else None
    levels = plan_levels(sweep_settings())
    summaries, points = [], []
    with contextlib.ExitStack() as stack:
        pool = _processes(stack, workers)
        weeks: dict[str, Future[WeekForecast]] = {}
        fluid: Future[pl.DataFrame] | None = None
        if pool is not None:
            # every trace's forecast and the fluid check first: the workers make them while
            # the first trace's runs wait for its forecast
            for trace in REAL_TRACES:
                weeks[trace] = pool.submit(plan_week, trace, levels=levels, calibrated=calibrated)
            fluid = pool.submit(validate_fluid, "nycflights13", hold, connect)
        for trace in REAL_TRACES:
            week = weeks[trace].result() if trace in weeks else None
            r = pool_policies(trace, hold, connect, calibrated=calibrated, week=week,
                              executor=pool, progress=progress)  # fmt: skip
            summaries.append(r.summary)
            points.append(r.points)
            if trace == "nycflights13":  # CC0: its scaled series may be stored
                r.series.write_parquet(out / "pool_series.parquet")
                r.forecast.write_parquet(out / "pool_forecast.parquet")
        check = fluid.result() if fluid else validate_fluid("nycflights13", hold, connect)
    check.write_parquet(out / "fluid_validation.parquet")
    summary = pl.concat(summaries, how="diagonal")
    summary.write_parquet(out / "pool_policies.parquet")
    pl.concat(points, how="diagonal").write_parquet(out / "pool_frontier.parquet")
    return summary


def run_cache_sizes(out: Path = RESULTS, *, workers: int | None = None) -> pl.DataFrame:
    """:func:`cache_sizes` on ``workers`` processes (default one per core, at most 2)."""
    with contextlib.ExitStack() as stack:
        frame = cache_sizes(load_service(out), executor=_processes(stack, workers))
    frame.write_parquet(out / "cache_sizes.parquet")
    return frame


def run_breakdown(out: Path = RESULTS, *, progress: bool = True) -> BenchResult:
    """Each layer in turn over the remote-like link (also compression on/off over it), and on
    the embedded default with four agents (``breakdown_file``)."""
    result = layer_breakdown(REMOTE, progress=progress)
    write_results(result, out / "breakdown_remote20.parquet")
    local = layer_breakdown(Link(), Workload(ops=1000, concurrency=4), progress=progress)
    write_results(local, out / "breakdown_file.parquet")
    return result


def run_pool_learning(
    out: Path = RESULTS, *, workers: int | None = None, progress: bool = True
) -> dict[str, object]:
    """A fleet of four learning pools on each real trace and on the series built to break it
    (:mod:`tiered.scenarios.learning`), from cold, five weeks, the last three judged. Writes
    pool_learning.json (the figures and checks) and pool_learning_hours.parquet (the first
    member's hours, for notebook 03)."""
    from tiered.pool.learning import ABOVE_PLAN
    from tiered.scenarios import learning as fleet

    model = load_service(out)
    hold, connect = model.hold_times(), float(np.median(model.connect_times()))
    hours = fleet.WEEKS * 168
    rates = {t: scaled_rate(t, 100.0)[:hours] for t in REAL_TRACES}
    adversarial = {k: fleet.adversarial_series(rates["nycflights13"], k)
                   for k in fleet.ADVERSARIAL}  # fmt: skip
    with contextlib.ExitStack() as stack:
        pool = _processes(stack, workers)
        body, rows = fleet.pool_learning(
            rates, adversarial, hold=hold, connect_s=connect, reactive_grid=REACTIVE_GRID,
            slo_late_share=SLO_LATE_SHARE, executor=pool, progress=progress,
        )  # fmt: skip
    series = body["series"]
    adv = body["adversarial"]
    checks = {
        f"{name}: meets the SLO and saves >= 70% of the oracle's saving": bool(
            s["meets_slo"] and s["oracle_share"] is not None and s["oracle_share"] >= 0.7
        )
        for name, s in series.items()
    } | {
        f"{name}: within 2% of reactive in connection-hours and late share": bool(
            a["conn_hours_vs_reactive"] <= 1.02
            and (a["late_vs_reactive"] is None or a["late_vs_reactive"] <= 1.02)
        )
        for name, a in adv.items()
    }
    result: dict[str, object] = {
        "benchmark": "pool_learning",
        "description": (
            "Four instances with their own learning pools share a series evenly, started cold; "
            "five simulated weeks, the last three judged (fluid simulator, 0.5 s ticks)."
        ),
        "hold_ms": hold.mean * 1000, "connect_ms": connect * 1000, "instances": 4,
        "slo_late_share": SLO_LATE_SHARE, "above_plan": list(ABOVE_PLAN),
        "plan_quantile": 0.5, "weeks": fleet.WEEKS, "judged_from_week": 3,
        **body, "checks": checks,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "pool_learning.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    pl.DataFrame(rows).write_parquet(out / "pool_learning_hours.parquet")
    return result
