"""Pool sizing policies on real traffic: named policies and their cost/lateness frontiers.

:func:`pool_policies` simulates a week of a real hourly series (scaled to a realistic peak,
Poisson arrivals within each hour, measured hold and connect times) after ``train_weeks`` of
training data, with the library's own sizing policies on the simulator's clock:

* the five named policies of :data:`POLICIES` -- **reactive** (the library's defaults),
  **predictive** (the capacity plan alone), **hybrid** (the plan as a floor, reactive above it),
  **static_peak** (a fixed pool sized for the week's actual peak) and **oracle** (the plan made
  from the actual rates, an unreachable reference);
* a sweep of settings per family -- reactive over its utilization thresholds and its grow and
  shrink cooldowns; hybrid over the forecast quantile its plan is made for, the wait quantile
  the plan sizes for and its reactive part's cooldowns; predictive over the two quantiles --
  whose points give each family's frontier of late requests against connection-hours
  (:mod:`tiered.sim.frontier`).

The plan comes from the traffic model chosen on calibrated scores by nested selection (the
project's one selection path, :func:`model_for`, on ``bench_forecast``'s stored scores; the
four-week median profile without them), fitted on the training weeks; every
planned quantile is calibrated with the model's own errors on those weeks (conformal, per day
ahead; :mod:`tiered.forecast.conformal`). Every run of one trace sees the same arrivals (the
fluid mode draws the traffic before the pool), so the points differ by policy only.

The sweep's runs are independent: pass an :class:`concurrent.futures.Executor` (e.g. a process
pool, as :func:`tiered.scenarios.run_pool_policies` does) to run them side by side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, as_completed

import numpy as np
import polars as pl

from tiered.errors import ConfigError
from tiered.forecast.backtest import select_nested
from tiered.forecast.calendar import selection_models
from tiered.forecast.capacity import CapacityPlan, plan_pool, servers_needed
from tiered.forecast.conformal import Calibrated, forecasts, offsets
from tiered.forecast.models import Forecast, SeasonalProfile
from tiered.forecast.series import load_trace
from tiered.pool.sizing import Fixed, Predictive, Reactive, SizingPolicy
from tiered.progress import Progress
from tiered.sim.frontier import frontier
from tiered.sim.poolmodel import HoldTimes, PoolScenario, simulate_pool

__all__ = [
    "PLAN_GRID",
    "POLICIES",
    "PREDICTIVE_GRID",
    "REACTIVE_GRID",
    "PolicyComparison",
    "Setting",
    "WeekForecast",
    "plan_levels",
    "plan_week",
    "pool_policies",
    "scaled_rate",
    "sweep_settings",
]

POLICIES = ("reactive", "predictive", "hybrid", "static_peak", "oracle")
#: reactive settings swept: (low, high) utilization thresholds, grow cooldown and shrink
#: cooldown (s): the shrink cooldown over a wide range, slower growth at two of them, and
#: higher thresholds at one
REACTIVE_GRID: tuple[tuple[float, float, float, float], ...] = (
    *((0.3, 0.75, 0.5, cd) for cd in (2.0, 5.0, 10.0, 30.0, 120.0)),
    (0.3, 0.75, 5.0, 5.0),
    (0.3, 0.75, 5.0, 30.0),
    (0.65, 0.95, 0.5, 5.0),
)
#: hybrid settings swept: (forecast quantile planned for, wait quantile the plan sizes for,
#: grow and shrink cooldowns of the reactive part): the plan takes the steady load, so the
#: reactive part may grow slower (5-30 s: the plan has the peaks ready) at every shrink
#: cooldown the reactive sweep tries (2-120 s); the plan's quantile 0.9 at three of them.
#: With slow growth only at short shrink cooldowns (an earlier sweep) hybrid matched or beat
#: few of the reactive points: at long ones its reactive part held the pool above the plan
PLAN_GRID: tuple[tuple[float, float, float, float], ...] = (
    *((0.5, 0.999, up, cd) for up, cd in (
        (5.0, 2.0), (30.0, 2.0), (5.0, 5.0), (30.0, 10.0), (30.0, 20.0), (5.0, 30.0),
        (30.0, 30.0), (30.0, 60.0), (30.0, 120.0))),
    *((0.9, 0.999, up, cd) for up, cd in ((5.0, 5.0), (30.0, 10.0), (0.5, 30.0))),
    (0.5, 0.99, 30.0, 2.0),
)  # fmt: skip
#: predictive alone: (forecast quantile, wait quantile)
PREDICTIVE_GRID: tuple[tuple[float, float], ...] = (
    (0.5, 0.999), (0.9, 0.999), (0.97, 0.999), (0.5, 0.99),
)  # fmt: skip
Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting of one policy family: a point of the sweep.

    ``low``/``high``/``up_cooldown``/``down_cooldown``: the reactive part (reactive; hybrid's
    reactive part takes the two cooldowns and the default thresholds). ``quantile``: the
    forecast quantile the plan is made for; ``slo_quantile``: the wait quantile the plan sizes
    for (predictive, hybrid, oracle). ``size``: static_peak's size. ``name``: the named policy
    of :data:`POLICIES` this setting is, if any.
    """

    family: str
    low: float = 0.3
    high: float = 0.75
    down_cooldown: float = 30.0
    up_cooldown: float = 0.5
    quantile: float | None = None
    slo_quantile: float | None = None
    size: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.family not in POLICIES:
            raise ConfigError(f"unknown policy family {self.family!r}; one of {POLICIES}")
        if self.family in ("predictive", "hybrid") and (
            self.quantile is None or self.slo_quantile is None
        ):
            raise ConfigError(f"a {self.family} setting needs quantile and slo_quantile")
        if self.family == "oracle" and self.slo_quantile is None:
            raise ConfigError("an oracle setting needs slo_quantile")
        if self.family == "static_peak" and (self.size is None or self.size < 1):
            raise ConfigError("a static_peak setting needs size >= 1")

    @property
    def label(self) -> str:
        cool = f"up {self.up_cooldown:g}s down {self.down_cooldown:g}s"
        if self.family == "reactive":
            return f"low {self.low:g} high {self.high:g} {cool}"
        if self.family == "hybrid":
            return f"q{self.quantile:g} p{self.slo_quantile:g} {cool}"
        if self.family == "predictive":
            return f"q{self.quantile:g} p{self.slo_quantile:g}"
        if self.family == "static_peak":
            return f"{self.size} connections"
        return f"p{self.slo_quantile:g}"


def sweep_settings(
    quantile: float = 0.9,
    slo_quantile: float = 0.999,
    *,
    reactive: Iterable[tuple[float, float, float, float]] = REACTIVE_GRID,
    hybrid: Iterable[tuple[float, float, float, float]] = PLAN_GRID,
    predictive: Iterable[tuple[float, float]] = PREDICTIVE_GRID,
) -> list[Setting]:
    """The named policies' settings, then the sweep's other settings (each setting once)."""
    named = [
        Setting("reactive", name="reactive"),
        Setting("predictive", quantile=quantile, slo_quantile=slo_quantile, name="predictive"),
        Setting("hybrid", quantile=quantile, slo_quantile=slo_quantile, name="hybrid"),
    ]
    grid = [
        Setting("reactive", low=lo, high=hi, up_cooldown=up, down_cooldown=cd)
        for lo, hi, up, cd in reactive
    ]
    grid += [
        Setting("hybrid", quantile=q, slo_quantile=p, up_cooldown=up, down_cooldown=cd)
        for q, p, up, cd in hybrid
    ]
    grid += [Setting("predictive", quantile=q, slo_quantile=p) for q, p in predictive]
    seen = {dataclasses.replace(s, name=None) for s in named}
    out = list(named)
    for s in grid:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def scaled_rate(trace: str, peak_rate: float) -> np.ndarray:
    """The hourly series of ``trace`` as requests/s, scaled so its busiest hour is
    ``peak_rate``."""
    y = load_trace(trace)["requests"].to_numpy()
    if y.max() <= 0:
        raise ConfigError(f"trace {trace!r} has no traffic")
    out: np.ndarray = y / y.max() * peak_rate
    return out


def model_for(trace: str, horizon: int, calibrated: pl.DataFrame | None) -> str:
    """The model for ``trace`` by the project's one selection path: the nested choice
    (:func:`~tiered.forecast.backtest.select_nested`) on calibrated scores
    (:func:`~tiered.forecast.conformal.calibrated_scores`) -- here the ones ``bench_forecast``
    stores (``forecast_calibrated.parquet``: :func:`~tiered.forecast.calendar.selection_models`
    at origins over the whole series) -- the weekly seasonal naive unless something beat it; the
    four-week profile when no scores are stored. A learning pool's planner chooses the same way
    on its own history."""
    if calibrated is not None:
        b = calibrated.filter(pl.col("series") == trace)
        if b.filter(pl.col("horizon") == horizon).height:
            return str(select_nested(b, horizon)["model"])
    return SeasonalProfile(168, weeks=4).name  # (the model that exists: profile_median4)


@dataclasses.dataclass
class PolicyComparison:
    summary: pl.DataFrame  # one row per named policy
    series: pl.DataFrame  # pool size, target and demand per minute, per named policy
    plan: CapacityPlan  # the named predictive/hybrid policies' plan
    forecast: pl.DataFrame  # hour, actual, forecast mean and quantiles (requests/s)
    points: pl.DataFrame  # one row per setting swept (named ones included), with on_frontier


def _policy(s: Setting, plan: CapacityPlan | None) -> Callable[[Clock], SizingPolicy]:
    def reactive(c: Clock) -> Reactive:
        return Reactive(low=s.low, high=s.high, down_cooldown=s.down_cooldown,
                        up_cooldown=s.up_cooldown, clock=c)  # fmt: skip

    if s.family == "reactive":
        return reactive
    if s.family == "static_peak":
        return lambda c: Fixed(s.size)
    if plan is None:
        raise ConfigError(f"{s.family} needs a plan")
    if s.family == "hybrid":
        return lambda c: plan.policy(c, reactive=reactive(c))
    return lambda c: Predictive(plan.schedule, lead_time=plan.lead_time_s, clock=c)


def _run_point(
    sc: PoolScenario, s: Setting, plan: CapacityPlan | None, mode: str, series: bool
) -> tuple[dict[str, float], pl.DataFrame | None]:
    """One run (a worker's task: module-level, its arguments picklable)."""
    run = simulate_pool(sc, _policy(s, plan), mode=mode, series=series)  # type: ignore[arg-type]
    minutes = None
    if series:
        minutes = (
            run.series.group_by((pl.col("t") // 60).alias("minute"))
            .agg(pl.col("size").mean(), pl.col("target").max(), pl.col("rate").mean())
            .with_columns(offered=pl.col("rate") * sc.hold.mean)
        )
    return {"mode": run.mode, **run.summary}, minutes  # type: ignore[dict-item]


@dataclasses.dataclass(frozen=True)
class WeekForecast:
    """The simulated week of a trace and the calibrated forecast its plans are made from
    (:func:`plan_week`; picklable, so a worker process can make it)."""

    trace: str
    actual: np.ndarray  # requests/s per hour of the simulated week
    forecast: Forecast  # requests per hour, calibrated quantiles
    model: str


def plan_week(
    trace: str,
    *,
    levels: Sequence[float] = (0.1, 0.5, 0.9),
    peak_rate: float = 100.0,
    train_weeks: int = 8,
    hours: int = 168,
    calibrated: pl.DataFrame | None = None,
) -> WeekForecast:
    """The week after ``train_weeks`` of ``trace`` and the forecast of it by the model
    :func:`model_for` chooses on the ``calibrated`` scores, its quantiles ``levels`` calibrated
    with the model's own errors on the training weeks (forecasts from origins 23 h apart whose
    whole horizon ends before the week)."""
    rate = scaled_rate(trace, peak_rate)
    start = train_weeks * 168
    if rate.size < start + hours:
        raise ConfigError(f"{trace!r} has {rate.size} hours; need {start + hours}")
    need = 24 * 7 * 5 + hours  # five weeks to fit on, and a whole horizon before the start
    if start < need:
        raise ConfigError(
            f"pool_policies calibrates the plan on the training weeks: train_weeks={train_weeks} "
            f"leaves {start} h, needs {need} h (five weeks to fit plus {hours} h to score)"
        )
    name = model_for(trace, 168, calibrated)
    candidates = selection_models(trace)
    model = next((m for m in candidates if m.name == name), None)
    if model is None:
        raise ConfigError(f"no traffic model named {name!r} among {[m.name for m in candidates]}")
    levels = tuple(sorted(set(levels)))
    train = rate[:start] * 3600
    past = forecasts(train, [model], horizon=hours, step=23, min_train=24 * 7 * 5,
                     quantiles=levels)  # fmt: skip
    fc = Calibrated(model, offsets(past)).fit(train).forecast(hours, levels)
    return WeekForecast(trace, rate[start : start + hours], fc, name)


def plan_levels(settings: Sequence[Setting], quantile: float = 0.9) -> tuple[float, ...]:
    """The forecast quantiles :func:`pool_policies` needs for ``settings``."""
    planned = {quantile} | {s.quantile for s in settings if s.quantile is not None}
    return tuple(sorted({0.1, 0.5} | planned))


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
    settings: Sequence[Setting] | None = None,
    calibrated: pl.DataFrame | None = None,
    week: WeekForecast | None = None,
    seed: int = 0,
    mode: str = "auto",
    executor: Executor | None = None,
    progress: bool = True,
) -> PolicyComparison:
    """Simulate the named policies and the sweep's ``settings`` (default
    :func:`sweep_settings`) on ``hours`` of ``trace`` after ``train_weeks`` weeks of training
    data (see the module docstring). ``week``: the week and its forecast, made beforehand by
    :func:`plan_week` with these arguments (else made here)."""
    settings = list(settings) if settings is not None else sweep_settings(quantile, slo_quantile)
    if not {"reactive", "hybrid"} <= {s.name for s in settings}:
        raise ConfigError("settings must include the named reactive and hybrid policies")
    levels = plan_levels(settings, quantile)
    if week is None:
        week = plan_week(trace, levels=levels, peak_rate=peak_rate, train_weeks=train_weeks,
                         hours=hours, calibrated=calibrated)  # fmt: skip
    missing = set(levels) - set(week.forecast.quantiles)
    if week.trace != trace or week.actual.size != hours or missing:
        raise ConfigError(
            f"the week given is {week.trace!r} over {week.actual.size} h with quantiles "
            f"{sorted(week.forecast.quantiles)}; this run needs {trace!r}, {hours} h, {levels}"
        )
    actual, fc, name = week.actual, week.forecast, week.model

    def plan_for(rates: np.ndarray, slo: float) -> CapacityPlan:
        return plan_pool(
            rates.tolist(),
            service_s=hold.mean,
            service_cv=hold.cv,
            connect_s=connect_s,
            warmup_s=warmup_s,
            max_wait_s=max_wait_s,
            quantile=slo,
        )

    plans: dict[tuple[float, float], CapacityPlan] = {}

    def plan_of(s: Setting) -> CapacityPlan | None:
        if s.slo_quantile is None:
            return None
        key = (-1.0 if s.family == "oracle" else float(s.quantile or 0), s.slo_quantile)
        if key not in plans:
            rates = actual if s.family == "oracle" else fc.quantiles[s.quantile or 0] / 3600
            plans[key] = plan_for(np.clip(rates, 0, None), s.slo_quantile)
        return plans[key]

    peak = servers_needed(float(actual.max()), hold.mean, max_wait_s=max_wait_s,
                          quantile=slo_quantile, service_cv=hold.cv)  # fmt: skip
    settings = [
        *settings,
        Setting("static_peak", size=peak, name="static_peak"),
        Setting("oracle", slo_quantile=slo_quantile, name="oracle"),
    ]
    scenario = PoolScenario(actual, hold, connect_s, late_s=max_wait_s, seed=seed)
    bar = Progress(len(settings), f"pool {trace}", enabled=progress)
    tasks: list[Future[tuple[dict[str, float], pl.DataFrame | None]]] = []
    results: list[tuple[dict[str, float], pl.DataFrame | None]] = []
    for s in settings:
        args = (scenario, s, plan_of(s), mode, s.name is not None)
        if executor is None:
            results.append(_run_point(*args))
            bar.advance()
        else:
            tasks.append(executor.submit(_run_point, *args))
    for _ in as_completed(tasks):
        bar.advance()
    results += [t.result() for t in tasks]
    rows, series = [], []
    for s, (figures, minutes) in zip(settings, results, strict=True):
        rows.append({
            "trace": trace, "family": s.family, "setting": s.label, "policy": s.name,
            "low": s.low if s.family in ("reactive", "hybrid") else None,
            "high": s.high if s.family in ("reactive", "hybrid") else None,
            "up_cooldown": s.up_cooldown if s.family in ("reactive", "hybrid") else None,
            "down_cooldown": s.down_cooldown if s.family in ("reactive", "hybrid") else None,
            "quantile": s.quantile, "slo_quantile": s.slo_quantile, **figures,
        })  # fmt: skip
        if minutes is not None:
            series.append(minutes.with_columns(trace=pl.lit(trace), policy=pl.lit(s.name)))
    points = frontier(pl.DataFrame(rows)).with_columns(
        model=pl.lit(name),
        peak_rate=pl.lit(peak_rate),
        hold_ms=pl.lit(hold.mean * 1000),
        connect_ms=pl.lit(connect_s * 1000),
    )
    summary = (
        points.filter(pl.col("policy").is_not_null())
        .select("trace", "policy", *points.columns[points.columns.index("mode") :])
        .drop("on_frontier")
    )
    ref = summary.filter(pl.col("policy") == "reactive").row(0, named=True)
    summary = summary.with_columns(
        late_vs_reactive=pl.col("late") / max(ref["late"], 1e-9),
        hours_vs_reactive=pl.col("connection_hours") / ref["connection_hours"],
    )
    plan = plan_of(Setting("hybrid", quantile=quantile, slo_quantile=slo_quantile))
    oracle = plan_of(Setting("oracle", slo_quantile=slo_quantile))
    assert plan is not None and oracle is not None
    forecast = pl.DataFrame({
        "trace": trace, "hour": np.arange(hours), "actual": actual, "mean": fc.mean / 3600,
        "lo": fc.quantiles[0.1] / 3600, "hi": np.clip(fc.quantiles[quantile] / 3600, 0, None),
        "planned_size": plan.sizes, "oracle_size": oracle.sizes,
    })  # fmt: skip
    return PolicyComparison(
        summary, pl.concat(series).sort("policy", "minute"), plan, forecast, points
    )
