"""Traffic models and capacity planning: traces, forecasting models, rolling-origin backtests,
and Erlang C pool plans that the predictive pool policies consume."""

from tiered.forecast.backtest import (
    backtest,
    metrics,
    score,
    select_nested,
    summarize_backtest,
)
from tiered.forecast.calendar import (
    CalendarNaive,
    GradientBoosted,
    calendar_models,
    trace_models,
)
from tiered.forecast.capacity import (
    CapacityPlan,
    erlang_b,
    erlang_c,
    plan_pool,
    servers_needed,
    wait_probability,
    wait_quantile,
)
from tiered.forecast.conformal import (
    Calibrated,
    calibrated_scores,
    combine,
    forecasts,
    offsets,
)
from tiered.forecast.models import (
    ETS,
    Combination,
    Forecast,
    MSTLModel,
    SarimaxFourier,
    SeasonalNaive,
    SeasonalProfile,
    default_models,
)
from tiered.forecast.series import (
    REAL_TRACES,
    load_trace,
    resample,
    synthetic_trace,
    trace_from_bench,
    trace_source,
)

__all__ = [
    "ETS",
    "REAL_TRACES",
    "CalendarNaive",
    "Calibrated",
    "CapacityPlan",
    "Combination",
    "Forecast",
    "GradientBoosted",
    "MSTLModel",
    "SarimaxFourier",
    "SeasonalNaive",
    "SeasonalProfile",
    "backtest",
    "calendar_models",
    "calibrated_scores",
    "combine",
    "default_models",
    "erlang_b",
    "erlang_c",
    "forecasts",
    "load_trace",
    "metrics",
    "offsets",
    "plan_pool",
    "resample",
    "score",
    "select_nested",
    "servers_needed",
    "summarize_backtest",
    "synthetic_trace",
    "trace_from_bench",
    "trace_models",
    "trace_source",
    "wait_probability",
    "wait_quantile",
]
