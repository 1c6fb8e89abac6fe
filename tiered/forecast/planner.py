"""The planner of a learning pool: from the hours a pool counted to a :class:`LearntPlan`.

:func:`plan_from_history` is what :class:`~tiered.pool.learning.Learning` installs, made off the
event loop (a worker thread) once a day and at start when history exists:

1. the hourly request counts (a fleet's total, or one pool's) as a series; a missing hour (the
   process was down) is filled from the same hour a week earlier, and a history missing more
   hours than a tenth of two weeks is refused;
2. the project's one selection path: rolling-origin forecasts of the candidates (last hour,
   same hour yesterday, same hour last week, the four-week median profile), each calibrated
   with its own past errors (:func:`~tiered.forecast.conformal.calibrated_scores`), and the
   nested choice (:func:`~tiered.forecast.backtest.select_nested`: chosen on the earlier
   origins, judged on the later ones);
3. refusals where a plan would cost more than it saves: no daily or weekly pattern (the last
   hour's value forecasts as well), a calibrated q0.9 that covered too little of the later
   origins, or a latest day mostly outside the calibrated band (the traffic changed: a level
   shift, a holiday, or the week after one that a weekly model copies; an hour is outside
   only strictly beyond the band: a quiet night or weekend with no traffic, forecast as none,
   is not "below" it);
4. else the chosen model, calibrated, forecasts the next ``horizon_h`` hours, and their
   ``plan_quantile`` -- for one of ``instances`` live members of a fleet, its equal share --
   becomes an Erlang C plan (:func:`~tiered.forecast.capacity.plan_pool`) with the pool's
   measured hold and connect times -- the holds' mean and their spread (:func:`hold_spread`;
   Allen-Cunneen's correction of the waits; holds not counted are taken as exponential, M/M/c,
   the cautious side for a pool's holds) -- each member's sizes capped at its share of
   ``server_limit`` so the fleet's planned connections never exceed it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from tiered.errors import ConfigError
from tiered.forecast.backtest import forecasts, quantile_column, select_nested
from tiered.forecast.capacity import plan_pool
from tiered.forecast.conformal import Calibrated, calibrated_scores, offsets
from tiered.forecast.models import Model, SeasonalNaive, SeasonalProfile
from tiered.pool.learning import Interval, LearntPlan

__all__ = ["MIN_DAYS", "hold_spread", "hourly_series", "plan_from_history"]

#: days of history before a plan is tried: a week to copy from and a week of origins to judge
#: the candidates on
MIN_DAYS = 14
#: the calibrated q0.9 must cover at least this share of the later origins' hours
MIN_COVERAGE = 0.8
#: a plan is refused while more than this share of the latest judged day's hours fell outside
#: the calibrated band (q0.1..q0.9)
RECENT_OUTSIDE = 0.5
#: a seasonal model must beat the last hour's value by this factor (relative MASE below it)
MIN_SKILL = 0.7


def hourly_series(
    intervals: Sequence[Interval], *, interval_s: float = 3600.0
) -> tuple[float, np.ndarray, np.ndarray, int]:
    """``(start, requests per hour, busy seconds per hour, hours filled)`` from intervals of one
    or several pools (summed per start), contiguous from the first to the last; a missing hour
    is the same hour a week earlier (or 0 in the first week), and counted."""
    if not intervals:
        raise ConfigError("no traffic history")
    starts = sorted({iv.start for iv in intervals})
    first, last = starts[0], starts[-1]
    n = round((last - first) / interval_s) + 1
    req = np.full(n, np.nan)
    busy = np.zeros(n)
    for iv in intervals:
        i = round((iv.start - first) / interval_s)
        req[i] = (0.0 if math.isnan(req[i]) else req[i]) + iv.requests
        busy[i] += iv.busy_s
    week = round(7 * 86400 / interval_s)
    missing = np.flatnonzero(np.isnan(req))
    for j in missing:
        req[j] = req[j - week] if j >= week else 0.0
    return first, req, busy, int(missing.size)


def hold_spread(intervals: Sequence[Interval]) -> float | None:
    """The coefficient of variation of the hold times counted in ``intervals`` (from their
    requests, busy seconds and squared holds; intervals without squared holds, as rows written
    before they were counted, left out), or ``None`` when none has them."""
    n = busy = sq = 0.0
    for iv in intervals:
        if iv.hold_sq_s > 0 and iv.requests:
            n += iv.requests
            busy += iv.busy_s
            sq += iv.hold_sq_s
    if not (n and busy > 0):
        return None
    mean = busy / n
    return math.sqrt(max(sq / n / (mean * mean) - 1.0, 0.0))


def plan_from_history(
    intervals: Sequence[Interval],
    *,
    now: float,
    connect_s: float = 0.05,
    instances: int = 1,
    server_limit: int | None = None,
    horizon_h: int = 48,
    quantile: float = 0.9,
    plan_quantile: float = 0.5,
    min_coverage: float = MIN_COVERAGE,
    max_wait_s: float = 0.010,
    wait_quantile: float = 0.999,
    warmup_s: float = 30.0,
    max_size: int = 100,
) -> LearntPlan:
    """A plan for the ``horizon_h`` hours after ``now`` from the counted ``intervals`` (see the
    module docstring), or a :class:`LearntPlan` without a schedule and the reason.

    ``intervals``: the fleet's (every member's hours; summed per hour) or one pool's;
    ``instances``: the live members the traffic is shared by (1: a pool alone);
    ``server_limit``: the connections the server accepts from the whole fleet;
    ``quantile``: the forecast band's upper end the checks use; ``plan_quantile``: the
    forecast quantile the plan is sized for (the median: the reactive part above the plan takes
    the hours above it; the sweep of :mod:`tiered.scenarios.policies` found it the cheapest at
    the SLO)."""
    hour = 3600.0
    if instances < 1:
        raise ConfigError(f"plan_from_history needs instances >= 1, got {instances}")
    if server_limit is not None:
        if server_limit // instances < 1:
            return LearntPlan(None, now, f"the server limit of {server_limit} connections "
                              f"leaves none to plan for each of {instances} instances")  # fmt: skip
        max_size = min(max_size, server_limit // instances)
    share = 1.0 / instances
    if not intervals:
        return LearntPlan(None, now, "cold start: no traffic history yet")
    start, y, _, filled = hourly_series(intervals)
    days = y.size / 24
    if days < MIN_DAYS:
        return LearntPlan(None, now, f"{days:.1f} days of history; a plan needs {MIN_DAYS}")
    recent = min(y.size, 24 * 14)
    if filled > 0.1 * recent:
        return LearntPlan(None, now, f"{filled} of the history's hours are missing")
    # the hold time from the hours actually counted (a filled-in hour has requests, no busy)
    counted = sum(iv.requests for iv in intervals)
    hold = sum(iv.busy_s for iv in intervals) / counted if counted else 0.0
    if not hold > 0:
        return LearntPlan(None, now, "no request held a connection: nothing to plan for")
    cv = hold_spread(intervals)
    candidates: list[Model] = [SeasonalNaive(1), SeasonalNaive(24), SeasonalNaive(168)]
    min_train = 24 * 8
    if days >= 42:  # the profile needs five weeks at every origin, and a week of origins
        candidates.append(SeasonalProfile(168, weeks=4))
        min_train = 24 * 35
    levels = tuple(sorted({0.1, 0.5, plan_quantile, quantile}))
    past = forecasts(y, candidates, horizon=24, step=24, min_train=min_train, quantiles=levels)
    scores = calibrated_scores(past, y=y, warmup=3, horizons=(24,), m=168)
    if scores["origin"].n_unique() < 2:
        return LearntPlan(None, now, "too few days to judge the traffic models on")
    chosen = select_nested(scores, 24, baseline="snaive_weekly")
    name, persistence = str(chosen["model"]), SeasonalNaive(1).name
    # the chosen model against the last hour's value, scored on the later origins
    judged = select_nested(scores.filter(pl.col("model").is_in([name, persistence])), 24,
                           baseline=persistence)  # fmt: skip
    if (
        name == persistence
        or judged["model"] == persistence
        or not (judged.get("relative_mase", 0.0) < MIN_SKILL)
    ):
        return LearntPlan(None, now, "no daily or weekly pattern: the last hour forecasts as well")
    coverage = float(chosen[f"coverage_{quantile_column(quantile)}"])
    if coverage < min_coverage:
        return LearntPlan(
            None, now, f"the traffic changed: the q{quantile:g} forecast covered {coverage:.2f}"
        )
    # the latest day judged: traffic that left the calibrated band for most of it (a level
    # shift, a holiday, the week after one copied by a weekly model) is left to reactive
    # until the model has caught up
    last = scores.filter((pl.col("model") == name) & (pl.col("horizon") == 24)).sort("origin")
    above = 1.0 - float(last[f"coverage_{quantile_column(quantile)}"][-1])
    below = float(last[f"below_{quantile_column(levels[0])}"][-1])
    if max(above, below) > RECENT_OUTSIDE:
        where = "above" if above > below else "below"
        return LearntPlan(None, now, f"the traffic changed: {max(above, below):.0%} of the "
                          f"last day's hours were {where} the forecast band")  # fmt: skip
    model = next(m for m in candidates if m.name == name)
    mine_past = past.filter(past["model"] == name)
    fc = Calibrated(model, offsets(mine_past)).fit(y).forecast(horizon_h, levels)
    # the forecast's first hour follows the last counted one; the plan starts at now's hour,
    # or at that first hour if now's hour is already counted (a fleet member's clock ahead)
    origin = start + y.size * hour
    ahead = max(round((math.floor(now / hour) * hour - origin) / hour), 0)
    begin = origin + ahead * hour

    def per_s(q: float) -> tuple[float, ...]:
        out: np.ndarray = np.clip(fc.quantiles[q][ahead:], 0, None) * share / hour
        return tuple(out.tolist())

    rates = np.asarray(per_s(plan_quantile))
    if rates.size == 0:
        return LearntPlan(None, now, "the history is too old to plan the next hours on")
    plan = plan_pool(
        rates.tolist(), service_s=hold, start_s=begin, interval_s=hour, max_wait_s=max_wait_s,
        quantile=wait_quantile, service_cv=1.0 if cv is None else cv, connect_s=connect_s,
        warmup_s=warmup_s, max_size=max_size,
    )  # fmt: skip
    until = begin + rates.size * hour
    return LearntPlan(
        plan.schedule, until, f"{name}, chosen on {days:.0f} days (q{quantile:g} covered "
        f"{coverage:.2f})", lead_time=plan.lead_time_s, model=name, hold_s=hold, hold_cv=cv,
        rates=tuple(rates.tolist()), band=(per_s(levels[0]), per_s(quantile)),
    )  # fmt: skip
