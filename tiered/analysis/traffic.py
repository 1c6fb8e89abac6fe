"""Traffic model → pool plan, checked on the user's own held-out days.

The hourly series (a traffic file, or the database's own history as a proxy) is split: the last
``holdout_days`` are held out. Cheap seasonal models (daily and weekly seasonal naive, a median
weekly profile when there are weeks enough) are backtested on the earlier part and the best is
selected; it forecasts the held-out days, the forecast's ``quantile`` becomes an Erlang C pool
plan (:func:`tiered.forecast.plan_pool`) for the measured service times, and the plan's
``Hybrid`` policy is simulated against the *actual* held-out traffic beside the reactive
default (:func:`tiered.sim.poolmodel.simulate_pool`, the live pool's own state machine): late
requests and connection-hours for both. The same model, refitted on the whole series, plans the
next week: the recommended schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from tiered.errors import DataError
from tiered.forecast.backtest import backtest, summarize_backtest
from tiered.forecast.capacity import CapacityPlan, plan_pool
from tiered.forecast.models import Model, SeasonalNaive, SeasonalProfile
from tiered.pool.sizing import Reactive, SizingPolicy
from tiered.progress import Progress
from tiered.sim.poolmodel import HoldTimes, PoolScenario, simulate_pool

__all__ = ["TrafficPlan", "plan_traffic"]


@dataclass
class TrafficPlan:
    """What the traffic analysis found (see the module docstring)."""

    hours: int
    model: str
    backtest: pl.DataFrame  # summary per model: mase, relative_mase, coverage ...
    held_out: pl.DataFrame  # per policy: late share, connection-hours on the held-out days
    schedule: list[tuple[float, int]]  # the next week's plan: (epoch seconds, size) changes
    min_size: int
    max_size: int
    #: the lowest and highest ``max_size`` planned over the ``resamples`` of the service and
    #: connect times given to :func:`plan_traffic`; equal to ``max_size`` without them
    max_size_range: tuple[int, int]
    lead_time_s: float
    service_ms: float
    slo_ms: float
    slo_share: float
    notes: list[str]
    #: per hour of the held-out days and of the next week: ``timestamp, part, median, upper``
    #: (the forecast's median and planned quantile, requests per hour) and ``planned_size``
    forecast: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def meets_slo(self) -> bool:
        h = self.held_out.filter(pl.col("policy") == "hybrid")
        return bool(h.height and h["late_share"][0] <= self.slo_share)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hours": self.hours,
            "model": self.model,
            "backtest": self.backtest.to_dicts(),
            "held_out": self.held_out.to_dicts(),
            "schedule": self.schedule,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "max_size_range": list(self.max_size_range),
            "lead_time_s": self.lead_time_s,
            "service_ms": self.service_ms,
            "slo_ms": self.slo_ms,
            "slo_share": self.slo_share,
            "meets_slo": self.meets_slo,
            "notes": self.notes,
            "forecast": self.forecast.to_dicts(),
        }


def _candidates(hours: int) -> list[Model]:
    models: list[Model] = [SeasonalNaive(24)]
    if hours >= 2 * 168:
        models.append(SeasonalNaive(168))
    weeks = min(4, hours // 168 - 2)  # one week left for the backtest's origins
    if weeks >= 2:
        models.append(SeasonalProfile(168, weeks=weeks))
    return models


def _need(model: Model) -> int:
    """Points a candidate needs to fit (see tiered.forecast.models)."""
    if isinstance(model, SeasonalProfile):
        return model.period * (model.weeks + 1)
    if isinstance(model, SeasonalNaive):
        return model.period + 2
    return 48


def _changes(starts: np.ndarray, sizes: np.ndarray) -> list[tuple[float, int]]:
    out: list[tuple[float, int]] = []
    for t, n in zip(starts.tolist(), sizes.tolist(), strict=True):
        if not out or out[-1][1] != n:
            out.append((float(t), int(n)))
    return out


def plan_traffic(
    series: pl.DataFrame,
    hold: HoldTimes,
    connect_s: float,
    *,
    quantile: float = 0.9,
    slo_ms: float = 10.0,
    slo_share: float = 0.001,
    holdout_days: int | None = None,
    max_size: int = 100,
    seed: int = 0,
    resamples: Sequence[tuple[HoldTimes, float]] = (),
    progress: Callable[[str], None] | None = None,
    bars: bool = False,
) -> TrafficPlan:
    """Plan the pool for ``series`` (``timestamp, requests`` per hour) and check the plan on
    held-out days. ``resamples`` (hold and connect times drawn again from what was measured)
    give the spread of the planned ``max_size``. Raises :class:`DataError` when the series is
    shorter than three days."""
    y = series["requests"].to_numpy().astype(float)
    hours = y.size
    if hours < 72:
        raise DataError(
            f"the traffic series has {hours} hours: at least 3 days are needed to plan a pool "
            "(2 to learn a daily rhythm, 1 to check the plan on)"
        )
    notes: list[str] = []
    hold_days = holdout_days or (7 if hours >= 4 * 168 else 1)
    h = hold_days * 24
    train, actual = y[:-h], y[-h:]
    models = _candidates(train.size)
    say = progress or (lambda _m: None)
    say(f"backtesting {len(models)} models on {train.size} hours")
    need = max(_need(m) for m in models)
    count = max(1, min(6, (train.size - need) // 24))
    bt = backtest(train, models, horizons=(24,), count=count, step=23, min_train=need, m=24)
    summary = summarize_backtest(bt, baseline="snaive_daily") if bt.height else bt
    name = str(summary.sort("mase")["model"][0]) if bt.height else models[0].name
    model = next(m for m in models if m.name == name)
    if hours < 14 * 24:
        notes.append("under two weeks of traffic: only the daily rhythm could be modelled")

    bands: list[pl.DataFrame] = []

    def plan_for(
        history: np.ndarray,
        horizon: int,
        start_s: float,
        part: str,
        times: Sequence[tuple[HoldTimes, float]] = ((hold, connect_s),),
    ) -> list[CapacityPlan]:
        fc = model.fit(history.copy()).forecast(horizon, (0.5, quantile))
        upper = np.clip(fc.quantiles[quantile], 0, None)
        plans = [plan_with(upper / 3600, h, c, start_s) for h, c in times]
        bands.append(
            pl.DataFrame(
                {
                    "part": [part] * horizon,
                    "median": np.clip(fc.quantiles[0.5], 0, None),
                    "upper": upper,
                    "planned_size": plans[0].sizes[:horizon].astype(np.int64),
                }
            )
        )
        return plans

    def plan_with(rate: np.ndarray, h: HoldTimes, c: float, start_s: float) -> CapacityPlan:
        return plan_pool(
            rate.tolist(),
            service_s=h.mean,
            service_cv=h.cv,
            connect_s=c,
            warmup_s=30.0,
            max_wait_s=slo_ms / 1000,
            quantile=1 - slo_share,
            start_s=start_s,
            max_size=max_size,
        )

    say(f"planning with {name} and simulating {hold_days} held-out days")
    (plan,) = plan_for(train, h, 0.0, "held-out")
    scenario = PoolScenario(
        actual / 3600, hold, connect_s, max_size=max_size, late_s=slo_ms / 1000, seed=seed
    )
    factories: dict[str, Callable[[Callable[[], float]], SizingPolicy]] = {
        "reactive": lambda c: Reactive(clock=c),
        "hybrid": lambda c: plan.policy(c, reactive=Reactive(clock=c)),
    }
    rows = []
    bar = Progress(len(factories), "held-out simulations", enabled=bars)
    for policy, make in factories.items():
        run = simulate_pool(scenario, make)
        bar.advance()
        s = run.summary
        rows.append(
            {
                "policy": policy,
                "mode": run.mode,
                "requests": s["requests"],
                "late_share": s["late_share"],
                "connection_hours": s["connection_hours"],
                "max_size": s["max_size"],
            }
        )
    held = pl.DataFrame(rows)
    ref = held.filter(pl.col("policy") == "reactive").row(0, named=True)
    held = held.with_columns(
        hours_vs_reactive=pl.col("connection_hours") / max(ref["connection_hours"], 1e-9),
        late_vs_reactive=pl.col("late_share") / max(ref["late_share"], 1e-12),
    )
    # the next week, from the whole series
    end = series["timestamp"].max()
    start_s = (end.timestamp() if hasattr(end, "timestamp") else 0.0) + 3600  # type: ignore[union-attr]
    nxt, *others = plan_for(y, 168, float(start_s), "next week", [(hold, connect_s), *resamples])
    tops = [min(max_size, int(p.sizes.max()) + 2) for p in (nxt, *others)]
    stamps = series["timestamp"]
    forecast = pl.concat(
        [
            bands[0].with_columns(timestamp=stamps.tail(h)),
            bands[1].with_columns(
                timestamp=pl.Series([end + timedelta(hours=i) for i in range(1, 169)])  # type: ignore[operator]
            ),
        ]
    )
    return TrafficPlan(
        hours=hours,
        model=name,
        backtest=summary,
        held_out=held,
        schedule=_changes(nxt.starts, nxt.sizes),
        min_size=int(nxt.sizes.min()),
        max_size=tops[0],
        max_size_range=(min(tops), max(tops)),
        lead_time_s=nxt.lead_time_s,
        service_ms=hold.mean * 1000,
        slo_ms=slo_ms,
        slo_share=slo_share,
        notes=notes,
        forecast=forecast,
    )
