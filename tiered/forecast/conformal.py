"""Calibrated forecast quantiles and honest model selection.

A model's quantiles come from its own assumptions (a Gaussian on the log scale, a seasonal
naive's in-sample errors ...), and on traffic they are often wrong: a q0.9 that covers far
less of the actuals than 0.9, or all of them. A capacity plan sized on q0.9 inherits the error.
This module corrects each model's quantiles with its own out-of-sample errors (split
conformal, one-sided, as in conformalized quantile regression: Romano, Patterson & Candes,
NeurIPS 2019):

* a **rolling-origin** backtest keeps every forecast
  (:func:`~tiered.forecast.backtest.forecasts`): model, origin, lead (hours after the origin),
  actual, and each quantile;
* at an origin ``o``, the **offset** of quantile ``q`` for lead block ``b`` (``lead // 24``: the
  first day, the second ...) is the empirical ``q``-quantile of ``actual - forecast_q`` over the
  same model's block-``b`` forecasts from the last ``window`` origins whose block ``b`` ended
  before ``o`` (nothing at or after ``o`` is used; a first day is known a day after its origin,
  so short leads learn from recent errors without waiting for the whole horizon). Adding it
  makes ``q`` cover ``q`` of those errors exactly; on later data, as well as the errors repeat;
* the calibrated quantiles are clipped at 0 and sorted across levels (no crossing);
* :func:`calibrated_scores` scores every origin that has ``warmup`` finished forecasts before
  it, with offsets from those only: coverage and pinball loss per quantile, and MASE of the
  calibrated median (its offset is a bias correction learnt from the past) beside the model's;
* :class:`Calibrated` wraps a model with fixed offsets for use after the backtest (a plan);
* :func:`combine` merges several models' forecasts by their **median** per level (then
  calibrated like any model), so one wild member cannot set the plan (a mean of quantiles
  let one model's wild q0.9 pull the combination's far above the actual peak).

:func:`~tiered.forecast.backtest.select_nested` chooses among calibrated models as among raw ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tiered.errors import ConfigError
from tiered.forecast.backtest import (
    forecasts,
    mase_scale,
    metrics,
    pinball,
    quantile_column,
    quantile_levels,
)
from tiered.forecast.models import DEFAULT_QUANTILES, Fitted, Forecast, Model

__all__ = [
    "BLOCK",
    "Calibrated",
    "calibrated_scores",
    "combine",
    "forecasts",
    "offsets",
]

BLOCK = 24  # hours per lead block: offsets are kept per day ahead


def offsets(past: pl.DataFrame, *, block: int = BLOCK) -> dict[tuple[float, int], float]:
    """``(level, lead block) -> offset`` from past forecasts of one model: the ``level``
    quantile of ``actual - forecast`` (the conformal correction of that quantile)."""
    out: dict[tuple[float, int], float] = {}
    b = (past["lead"] // block).to_numpy()
    actual = past["actual"].to_numpy()
    for q in quantile_levels(past):
        err = actual - past[quantile_column(q)].to_numpy()
        for blk in np.unique(b):
            out[(q, int(blk))] = float(np.quantile(err[b == blk], q, method="higher"))
    return out


def _apply(
    qs: dict[float, np.ndarray], offs: dict[tuple[float, int], float], lead: np.ndarray, block: int
) -> dict[float, np.ndarray]:
    blk = lead // block
    last = max((k[1] for k in offs), default=0)
    adj = {
        q: np.maximum(v + np.array([offs.get((q, min(int(x), last)), 0.0) for x in blk]), 0.0)
        for q, v in qs.items()
    }
    levels = sorted(adj)
    stacked = np.sort(np.vstack([adj[q] for q in levels]), axis=0)  # no crossing quantiles
    return {q: stacked[i] for i, q in enumerate(levels)}


def _latest(origin: np.ndarray, blk: np.ndarray, known: np.ndarray, window: int) -> np.ndarray:
    """``known`` narrowed, per lead block, to the rows of the last ``window`` origins that have
    that block known."""
    keep = np.zeros_like(known)
    for b in np.unique(blk[known]):
        rows = known & (blk == b)
        last = np.unique(origin[rows])[-window:]
        keep |= rows & np.isin(origin, last)
    return keep


def calibrated_scores(
    fcs: pl.DataFrame, *, y: np.ndarray, warmup: int = 4, window: int = 40, block: int = BLOCK,
    horizons: Sequence[int] = (24, 168), m: int = 168,
) -> pl.DataFrame:  # fmt: skip
    """Score each model at every origin with at least ``warmup`` earlier forecasts that ended
    before it, its quantiles calibrated with the offsets of (per lead block) the last
    ``window`` forecasts whose block ended before it. The default of 40 (about 40 weeks of
    errors at weekly origins) came from the real series: with a quarter's errors, the q0.9
    estimate of the daily blocks moved with the last quarter's luck, and no series was
    calibrated better with a shorter window. One
    row per model, origin, horizon: the scores of :func:`~tiered.forecast.backtest.metrics`
    for the calibrated forecast (``mase`` of the calibrated median, ``smape``,
    ``coverage80``/``coverage95``, mean ``pinball``), and per quantile ``coverage_q<level>``
    (share of actuals at or below it), ``below_q<level>`` (strictly below it: an hour of no
    traffic under a forecast of none is not below the band) and ``pinball_q<level>`` (scaled
    like MASE); the
    uncalibrated ``raw_mase`` and ``raw_coverage_q<level>`` beside them. ``y`` is the series
    the forecasts were made on (MASE's in-sample scale)."""
    y = np.asarray(y, dtype=float)
    levels = quantile_levels(fcs)
    rows = []
    for (name,), g in fcs.group_by(["model"], maintain_order=True):
        origins = sorted(g["origin"].unique().to_list())
        span = int(g["lead"].to_numpy().max()) + 1
        origin, lead = g["origin"].to_numpy(), g["lead"].to_numpy()
        blk = lead // block
        # the hour after the last one of each forecast's lead block: known from then on
        seen = origin + np.minimum((blk + 1) * block, span)
        for o in origins:
            # the origins whose every forecast hour lies before ``o``
            if sum(p + span <= o for p in origins) < warmup:
                continue
            known = _latest(origin, blk, seen <= o, window)
            past = g.filter(pl.Series(known))
            now = g.filter(pl.col("origin") == o).sort("lead")
            raw = {q: now[quantile_column(q)].to_numpy() for q in levels}
            cal = _apply(raw, offsets(past, block=block), now["lead"].to_numpy(), block)
            own = now["mean"].to_numpy()
            calibrated = Forecast(cal.get(0.5, own), cal)
            actual, train = now["actual"].to_numpy(), y[:o]
            scale = mase_scale(train, m)
            for h in horizons:
                a = actual[:h]
                row: dict[str, object] = {"model": name, "origin": o, "horizon": h}
                row |= metrics(a, calibrated, train, m)
                row["raw_mase"] = float(np.mean(np.abs(a - own[:h])) / scale)
                for q in levels:
                    row[f"coverage_{quantile_column(q)}"] = float(np.mean(a <= cal[q][:h]))
                    row[f"below_{quantile_column(q)}"] = float(np.mean(a < cal[q][:h]))
                    row[f"raw_coverage_{quantile_column(q)}"] = float(np.mean(a <= raw[q][:h]))
                    row[f"pinball_{quantile_column(q)}"] = pinball(a, cal[q][:h], q) / scale
                rows.append(row)
    return pl.DataFrame(rows)


def combine(
    fcs: pl.DataFrame, members: Sequence[str], name: str = "median_combination"
) -> pl.DataFrame:
    """A model made of ``members``' forecasts: per origin and lead, the median of each column
    (point forecast and every quantile); calibrate it like any other model."""
    have = set(fcs["model"].unique().to_list())
    missing = [m for m in members if m not in have]
    if missing:
        raise ConfigError(f"no forecasts for {missing} (have {sorted(have)})")
    cols = ["mean"] + [quantile_column(q) for q in quantile_levels(fcs)]
    sub = fcs.filter(pl.col("model").is_in(list(members)))
    out = sub.group_by("origin", "lead").agg(
        pl.col("actual").first(), *[pl.col(c).median() for c in cols], pl.col("fit_s").sum()
    )
    return out.with_columns(model=pl.lit(name)).select(fcs.columns).sort("origin", "lead")


@dataclass(frozen=True)
class Calibrated:
    """``model`` with conformal ``offs`` (from :func:`offsets` on its backtest forecasts) added
    to its quantiles."""

    model: Model
    offs: dict[tuple[float, int], float] = field(default_factory=dict)
    block: int = BLOCK

    @property
    def name(self) -> str:
        return f"{self.model.name}+conformal"

    def fit(self, y: np.ndarray) -> _FittedCalibrated:
        return _FittedCalibrated(self.model.fit(y), self.offs, self.block)


@dataclass(frozen=True)
class _FittedCalibrated:
    inner: Fitted
    offs: dict[tuple[float, int], float]
    block: int

    def forecast(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        fc = self.inner.forecast(h, quantiles)
        qs = _apply(fc.quantiles, self.offs, np.arange(h), self.block)
        return Forecast(qs.get(0.5, fc.mean), qs)
