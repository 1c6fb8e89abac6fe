"""Rolling-origin backtests: how well each model forecasts data it has not seen.

At each origin ``o`` a model is fitted on ``y[:o]`` only, forecasts the longest horizon once
(:func:`forecasts` keeps every forecast), and is scored on ``y[o : o + h]`` for each horizon ``h``
(:func:`score`) (a 24 h score is the first 24 hours of
the 168 h forecast, as a planner would use it). Metrics (Hyndman & Koehler 2006; Gneiting &
Raftery 2007):

* **MASE**: mean absolute error over the in-sample mean absolute error of the seasonal naive of
  period ``m`` (168: weekly) on the training data -- below 1 beats last week's in-sample;
* **sMAPE**: mean of ``2|y - f| / (|y| + |f|)`` (terms with both 0 count 0), in percent;
* **coverage** of the 80 % and 95 % intervals (the share of actuals inside);
* **pinball**: the quantile loss averaged over the forecast's quantiles, scaled like MASE.

:func:`select_nested` picks by backtest MASE, never by in-sample fit, and nested: chosen on the
earlier origins, scored on the later ones that took no part in the choice, with the weekly
seasonal naive kept unless something beat it. It is the project's one selection path, on scores
calibrated by :func:`~tiered.forecast.conformal.calibrated_scores` (the benchmark, the scenarios'
plans and a learning pool's planner).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
import polars.selectors as cs

from tiered.errors import ConfigError
from tiered.forecast.models import DEFAULT_QUANTILES, Forecast, Model

__all__ = [
    "backtest",
    "forecasts",
    "mase_scale",
    "metrics",
    "origins",
    "pinball",
    "quantile_column",
    "quantile_levels",
    "score",
    "select_nested",
    "summarize_backtest",
]


def origins(n: int, *, horizon: int, count: int, step: int, min_train: int) -> list[int]:
    """The last ``count`` origins, ``step`` apart, that leave ``horizon`` points to score."""
    last = n - horizon
    out = [o for o in range(last, min_train - 1, -step)][:count]
    if not out:
        raise ConfigError(
            f"series of {n} points is too short for min_train={min_train} and horizon={horizon}"
        )
    return sorted(out)


def mase_scale(train: np.ndarray, m: int = 168) -> float:
    """MASE's denominator: the in-sample mean absolute error of the seasonal naive of period
    ``m`` on ``train`` (of the one-step naive when that is 0 or undefined; else 1)."""
    scale = float(np.mean(np.abs(train[m:] - train[:-m]))) if len(train) > m else np.nan
    if not scale > 0:
        scale = float(np.mean(np.abs(np.diff(train)))) or 1.0
    return scale


def pinball(actual: np.ndarray, forecast: np.ndarray, q: float) -> float:
    """The mean quantile ("pinball") loss of ``forecast`` as the ``q`` quantile of ``actual``."""
    d = actual - forecast
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def metrics(actual: np.ndarray, fc: Forecast, train: np.ndarray, m: int = 168) -> dict[str, float]:
    """Scores of one forecast (its first ``len(actual)`` points) against ``actual``."""
    h = len(actual)
    f = fc.mean[:h]
    scale = mase_scale(train, m)
    err = np.abs(actual - f)
    denom = np.abs(actual) + np.abs(f)
    smape = np.where(denom > 0, 2 * err / np.where(denom > 0, denom, 1), 0.0)
    out = {"mase": float(err.mean() / scale), "smape": float(100 * smape.mean())}
    for cov in (0.8, 0.95):
        try:
            lo, hi = fc.interval(cov)
        except ConfigError:
            continue
        out[f"coverage{round(cov * 100)}"] = float(np.mean((actual >= lo[:h]) & (actual <= hi[:h])))
    losses = [pinball(actual, v[:h], q) for q, v in fc.quantiles.items()]
    out["pinball"] = float(np.mean(losses) / scale) if losses else np.nan
    return out


def quantile_column(q: float) -> str:
    """The column of the ``q`` quantile in a frame of kept forecasts (``q0.9``)."""
    return f"q{q:g}"


def quantile_levels(frame: pl.DataFrame) -> list[float]:
    """The quantile levels a frame of kept forecasts has columns for."""
    return sorted(float(c[1:]) for c in frame.columns if c.startswith("q") and c[1:2].isdigit())


def forecasts(
    y: np.ndarray,
    models: Sequence[Model],
    *,
    horizon: int = 168,
    count: int = 10_000,
    step: int = 197,
    min_train: int = 24 * 7 * 5,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    on_fit: Callable[[str, int, float], None] | None = None,
) -> pl.DataFrame:
    """Every model's forecast at every rolling origin, kept (one row per model, origin, lead):
    ``model, origin, lead, actual, mean, q<level>..., fit_s``; each fit sees only ``y[:origin]``.
    ``fit_s`` is the fit and forecast time; ``on_fit(model, origin, seconds)`` is called after
    each fit (a progress display)."""
    import time

    y = np.asarray(y, dtype=float)
    frames = []
    for o in origins(len(y), horizon=horizon, count=count, step=step, min_train=min_train):
        for model in models:
            t0 = time.perf_counter()
            fc = model.fit(y[:o].copy()).forecast(horizon, quantiles)
            secs = time.perf_counter() - t0
            if on_fit is not None:
                on_fit(model.name, o, secs)
            frames.append(
                pl.DataFrame(
                    {
                        "model": [model.name] * horizon,
                        "origin": [o] * horizon,
                        "lead": np.arange(horizon),
                        "actual": y[o : o + horizon],
                        "mean": fc.mean,
                        **{quantile_column(q): fc.quantiles[float(q)] for q in quantiles},
                        "fit_s": [secs] * horizon,
                    }
                )
            )
    return pl.concat(frames)


def score(
    fcs: pl.DataFrame, y: np.ndarray, *, horizons: Sequence[int] = (24, 168), m: int = 168
) -> pl.DataFrame:
    """The scores of kept forecasts (:func:`forecasts`) of series ``y``: one row per model,
    origin and horizon, ``model, origin, horizon, mase, smape, coverage80, coverage95, pinball,
    fit_s`` (a ``h`` h score is the first ``h`` hours of the forecast, as a planner would use
    it)."""
    y = np.asarray(y, dtype=float)
    levels = quantile_levels(fcs)
    rows = []
    for (name, o), g in fcs.group_by(["model", "origin"], maintain_order=True):
        g = g.sort("lead")
        fc = Forecast(g["mean"].to_numpy(), {q: g[quantile_column(q)].to_numpy() for q in levels})
        train = y[: int(o)]
        secs = float(g["fit_s"][0])
        for h in horizons:
            row = {"model": name, "origin": o, "horizon": h}
            rows.append(row | metrics(y[o : o + h], fc, train, m) | {"fit_s": secs})
    return pl.DataFrame(rows)


def backtest(
    y: np.ndarray,
    models: Sequence[Model],
    *,
    horizons: Sequence[int] = (24, 168),
    count: int = 8,
    step: int = 197,
    min_train: int = 24 * 7 * 5,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    m: int = 168,
    on_fit: Callable[[str, int, float], None] | None = None,
) -> pl.DataFrame:
    """Backtest ``models`` on ``y`` at ``count`` origins ``step`` points apart (197 h by
    default: not a multiple of a day or a week, so the origins fall on different hours and
    weekdays): the :func:`score` of their :func:`forecasts` of the longest horizon. One row per
    model, origin and horizon: ``model, origin, horizon, mase, smape, coverage80, coverage95,
    pinball, fit_s``. ``on_fit(model, origin, seconds)`` is called after each fit."""
    fcs = forecasts(y, models, horizon=max(horizons), count=count, step=step,
                    min_train=min_train, quantiles=quantiles, on_fit=on_fit)  # fmt: skip
    return score(fcs, y, horizons=horizons, m=m)


def summarize_backtest(results: pl.DataFrame, baseline: str = "snaive_weekly") -> pl.DataFrame:
    """Mean scores per model and horizon, with MASE relative to ``baseline`` (below 1: better)."""
    metric_cols = [c for c in ("mase", "smape", "coverage80", "coverage95", "pinball", "fit_s")
                   if c in results.columns]  # fmt: skip
    s = results.group_by("model", "horizon").agg(
        *[pl.col(c).mean() for c in metric_cols], pl.len().alias("origins")
    )
    base = s.filter(pl.col("model") == baseline).select("horizon", base_mase="mase")
    if base.height:
        s = (
            s.join(base, on="horizon", how="left")
            .with_columns(relative_mase=pl.col("mase") / pl.col("base_mase"))
            .drop("base_mase")
        )
    return s.sort("horizon", "mase")


def select_nested(
    scores: pl.DataFrame, horizon: int, *, split: float = 0.5, metric: str = "mase",
    baseline: str = "snaive_weekly",
) -> dict[str, Any]:  # fmt: skip
    """Choose the model with the lowest mean ``metric`` on the first ``split`` of the origins
    (the weekly seasonal naive unless something beat it there), and report its score, and the
    baseline's, on the remaining origins, which took no part in the choice."""
    s = scores.filter(pl.col("horizon") == horizon)
    origins = sorted(s["origin"].unique().to_list())
    if len(origins) < 2:
        raise ConfigError("nested selection needs at least two origins")
    cut = max(1, min(len(origins) - 1, round(len(origins) * split)))
    early, late = origins[:cut], origins[cut:]
    choose = s.filter(pl.col("origin").is_in(early)).group_by("model").agg(pl.col(metric).mean())
    best = choose.sort(metric).row(0, named=True)
    base = choose.filter(pl.col("model") == baseline)
    chosen = str(best["model"])
    if base.height and not best[metric] < base[metric][0]:
        chosen = baseline
    later = (
        s.filter(pl.col("origin").is_in(late))
        .group_by("model")
        .agg(cs.numeric().exclude("origin", "horizon").mean())
    )
    pick = later.filter(pl.col("model") == chosen).row(0, named=True)
    ref = later.filter(pl.col("model") == baseline)
    out: dict[str, Any] = {"model": chosen, "horizon": horizon}
    out |= {"selection_origins": len(early), "scored_origins": len(late)}
    out |= {k: v for k, v in pick.items() if k != "model"}
    if ref.height:
        out["baseline_mase"] = float(ref["mase"][0])
        ours, ref_mase = float(pick["mase"]), float(ref["mase"][0])
        # a perfect baseline (MASE 0: a constant series) is matched only by a perfect model
        out["relative_mase"] = ours / ref_mase if ref_mase > 0 else (1.0 if ours == 0 else math.inf)
    return out
