"""Traffic models, backtests and capacity planning.

Models must recover a known seasonal signal; Erlang C must match the closed form and published
table values; a backtest must never look past its origin (a poisoned future changes nothing).
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import polars as pl
import pytest

from tiered.errors import ConfigError
from tiered.forecast import (
    ETS,
    Combination,
    MSTLModel,
    SarimaxFourier,
    SeasonalNaive,
    SeasonalProfile,
    backtest,
    erlang_b,
    erlang_c,
    load_trace,
    plan_pool,
    resample,
    select_nested,
    servers_needed,
    summarize_backtest,
    synthetic_trace,
    trace_from_bench,
    wait_probability,
    wait_quantile,
)
from tiered.forecast.models import default_models
from tiered.pool import PoolLoad

# -- traces ------------------------------------------------------------------------------------


def test_resample_sums_counts_and_fills_gaps() -> None:
    ts = [datetime(2026, 1, 1, 0, 10), datetime(2026, 1, 1, 0, 50), datetime(2026, 1, 1, 3, 5)]
    f = pl.DataFrame({"timestamp": ts, "requests": [1.0, 2.0, 4.0]})
    out = resample(f, "1h")
    assert out["requests"].to_list() == [3.0, 0.0, 0.0, 4.0]
    interpolated = resample(f, "1h", fill="interpolate")["requests"].to_list()
    assert interpolated == pytest.approx([3.0, 3.0 + 1 / 3, 3.0 + 2 / 3, 4.0])
    assert resample(f, "1h", fill="null")["requests"].null_count() == 2
    with pytest.raises(ConfigError):
        resample(f.rename({"requests": "x"}))


def test_synthetic_trace_is_seeded_with_daily_and_weekly_shape() -> None:
    a, b = synthetic_trace(days=14, seed=1), synthetic_trace(days=14, seed=1)
    assert a.equals(b) and not a.equals(synthetic_trace(days=14, seed=2))
    y = a["requests"].to_numpy().reshape(14, 24)
    assert y[:5, 10].mean() > 2 * y[:5, 3].mean()  # 10:00 busier than 03:00 on weekdays
    assert y[5:7].sum() < 0.8 * y[:2].sum()  # the weekend (days 5, 6) is quieter


@pytest.mark.parametrize("name", ["nycflights13", "bank_calls", "taylor"])
def test_real_traces_load_offline_hourly(name: str) -> None:
    f = load_trace(name)
    assert f.columns == ["timestamp", "requests"] and f.height > 24 * 7 * 10
    steps = f["timestamp"].diff().drop_nulls().unique().to_list()
    assert len(steps) == 1 and steps[0].total_seconds() == 3600  # regular, gaps filled
    assert f["requests"].min() >= 0 and f["requests"].null_count() == 0


def test_trace_from_bench_counts_arrivals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    frame = pl.DataFrame(
        {"config": ["all"] * 5 + ["off"], "start_s": [0.1, 0.2, 1.5, 3.2, 3.3, 0.0]}
    )
    frame.write_parquet(tmp_path / "b.parquet")
    assert trace_from_bench(tmp_path / "b.parquet")["requests"].to_list() == [2.0, 1.0, 0.0, 2.0]


# -- models ------------------------------------------------------------------------------------


def _signal(n: int, noise: float, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    day = 1 + 0.6 * np.sin(2 * np.pi * t / 24)
    week = np.where((t // 24) % 7 >= 5, 0.6, 1.0)
    rng = np.random.default_rng(seed)
    return 500 * day * week * np.exp(rng.normal(0, noise, n))


@pytest.mark.parametrize(
    ("model", "bound"),
    [
        (SeasonalNaive(168), 0.08),
        (SeasonalProfile(168, 4), 0.06),
        (ETS(168), 0.06),
        (MSTLModel(), 0.06),
        (SarimaxFourier(), 0.08),
        (Combination((SeasonalNaive(168), ETS(168))), 0.06),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_each_model_recovers_a_known_seasonal_signal(model, bound: float) -> None:  # type: ignore[no-untyped-def]
    y = _signal(24 * 7 * 9, noise=0.03)
    truth = _signal(24 * 7 * 10, noise=0.0)[-168:]
    fc = model.fit(y).forecast(168)
    # mean absolute percentage error of the point forecast against the noise-free signal
    err = float(np.mean(np.abs(fc.mean - truth) / truth))
    assert err < bound, (model.name, err)
    lo, hi = fc.interval(0.95)
    assert (lo <= fc.mean + 1e-9).all() and (fc.mean <= hi + 1e-9).all() and (lo >= 0).all()


def test_models_reject_bad_series() -> None:
    for bad in (np.array([1.0, np.nan] * 400), -np.ones(800), np.ones(10)):
        with pytest.raises(ConfigError):
            SeasonalNaive(168).fit(bad)


# -- backtests ---------------------------------------------------------------------------------


def test_backtest_never_looks_past_the_origin() -> None:
    y = _signal(24 * 7 * 8, noise=0.1, seed=3)
    models = [SeasonalNaive(168), ETS(168)]
    kw = {"horizons": (24,), "count": 3, "step": 100, "min_train": 24 * 7 * 4}
    clean = backtest(y, models, **kw)
    # poison everything after the last scored point: metrics must be identical
    last = int(clean["origin"].max()) + 24
    poisoned = y.copy()
    poisoned[last:] = 1e9
    y2 = np.concatenate([y[:last], np.full(len(y) - last, 1e9)])
    assert np.array_equal(poisoned, y2)
    again = backtest(y2, models, **kw)
    cols = ["model", "origin", "horizon", "mase", "smape", "coverage80", "coverage95", "pinball"]
    assert clean.select(cols).equals(again.select(cols))
    # and poisoning inside a scored window does change them (the test can fail)
    y3 = y.copy()
    y3[last - 5] = 1e9
    assert not clean.select(cols).equals(backtest(y3, models, **kw).select(cols))


def test_backtest_summary_and_selection() -> None:
    y = _signal(24 * 7 * 8, noise=0.05, seed=4)
    r = backtest(y, [SeasonalNaive(24), SeasonalNaive(168)], count=2, min_train=24 * 7 * 5)
    s = summarize_backtest(r)
    assert set(s["horizon"]) == {24, 168} and "relative_mase" in s.columns
    assert select_nested(r, 168)["model"] == "snaive_weekly"  # the daily one misses weekends
    assert {m.name for m in default_models()} >= {"snaive_daily", "snaive_weekly", "ets_weekly",
                                                  "mstl_arima", "sarimax_fourier"}  # fmt: skip


# -- capacity ----------------------------------------------------------------------------------


def _erlang_c_closed_form(c: int, a: float) -> float:
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize("c", [1, 2, 3, 5, 10, 20, 40])
def test_erlang_c_matches_the_closed_form(c: int) -> None:
    for rho in (0.1, 0.5, 0.8, 0.95):
        a = rho * c
        assert erlang_c(c, a) == pytest.approx(_erlang_c_closed_form(c, a), rel=1e-9)
    assert erlang_c(c, c) == 1.0 and erlang_c(c, 0) == 0.0


def test_erlang_values_from_published_tables() -> None:
    # Erlang B: 10 circuits, 5 erlangs -> 1.84 %; 5 circuits, 3 erlangs -> 11.0 %
    assert erlang_b(10, 5.0) == pytest.approx(0.018385, abs=5e-6)
    assert erlang_b(5, 3.0) == pytest.approx(0.110054, abs=5e-6)
    # Erlang C: 10 agents, 5 erlangs -> 3.61 % wait; 2 servers at 50 % -> 1/3
    assert erlang_c(10, 5.0) == pytest.approx(0.036105, abs=5e-6)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # M/M/1: P(W > t) = rho * exp(-(mu - lam) t)
    assert wait_probability(1, 50, 0.01, 0.02) == pytest.approx(0.5 * math.exp(-50 * 0.02))


def test_servers_needed_is_the_smallest_meeting_the_target() -> None:
    rate, s = 400.0, 0.01  # 4 erlangs
    c = servers_needed(rate, s, max_wait_s=0.005, quantile=0.99)
    assert wait_quantile(c, rate, s, 0.99) <= 0.005 < wait_quantile(c - 1, rate, s, 0.99)
    assert servers_needed(0.0, s) == 1
    assert wait_quantile(4, rate, s, 0.99) == math.inf


def test_plan_pool_builds_a_schedule_a_predictive_policy_follows() -> None:
    rates = np.array([10.0, 10.0, 200.0, 400.0, 50.0])
    plan = plan_pool(rates, service_s=0.02, interval_s=3600, warmup_s=60, connect_s=0.05)
    assert list(plan.sizes[:4]) == sorted(plan.sizes[:4]) and plan.sizes[4] < plan.sizes[3]
    assert plan.sizes[3] > plan.sizes[0] and plan.connection_hours() == plan.sizes.sum()
    clock = [0.0]
    policy = plan.policy(lambda: clock[0])
    load = PoolLoad(size=1, in_use=0, idle=1, waiting=0, utilization=0.0, requests=0, waited=0,
                    wait_mean=0.0, min_size=1, max_size=100)  # fmt: skip
    clock[0] = 2 * 3600 - 30  # 30 s before the rise: within the 60.05 s lead time
    assert policy.decide(load).target == plan.sizes[2]
    ev = plan.evaluate(rates)
    assert ev["intervals_missing_slo"] == 0 and ev["late_share"] < 0.01
    worse = plan.evaluate(rates * 1.5)
    assert worse["intervals_missing_slo"] > 0 and worse["late_share"] > ev["late_share"]
    with pytest.raises(ConfigError):
        plan_pool([-1.0], service_s=0.01)


def test_a_plan_keeps_its_assumptions_and_says_what_it_capped() -> None:
    rates = np.array([10.0, 50.0, 2000.0])
    plan = plan_pool(rates, service_s=0.02, service_cv=2.0, max_size=20)
    assert plan.service_cv == 2.0
    # judged with the variation it was made with, unless told otherwise
    assert plan.evaluate(rates) == plan.evaluate(rates, service_cv=2.0)
    assert plan.evaluate(rates) != plan.evaluate(rates, service_cv=0.5)
    # 2000 requests/s x 20 ms needs ~40 connections: sized at max_size, and counted
    assert plan.sizes[2] == 20 and plan.capped == 1
    assert plan_pool(rates[:2], service_s=0.02, max_size=20).capped == 0


def test_the_scenarios_fall_back_to_a_model_that_exists() -> None:
    from tiered.scenarios.policies import model_for

    name = model_for("nycflights13", 168, None)
    assert name in {m.name for m in default_models()}


def test_the_scenarios_choose_as_the_benchmark_does_on_calibrated_scores() -> None:
    """One selection path: the scenarios' model is the nested choice on the calibrated scores
    (as ``bench_forecast`` reports it), not on the raw ones, and it is a model they can fit."""
    from tiered.forecast import calibrated_scores, forecasts
    from tiered.forecast.calendar import selection_models
    from tiered.scenarios.policies import model_for

    y = _signal(24 * 7 * 9, noise=0.05, seed=4)
    models = [SeasonalNaive(24), SeasonalNaive(168), SeasonalProfile(168, 4)]
    past = forecasts(y, models, horizon=168, step=23, min_train=24 * 7 * 5, quantiles=(0.1, 0.9))
    scores = calibrated_scores(past, y=y, warmup=3).with_columns(series=pl.lit("taylor"))
    assert model_for("taylor", 168, scores) == select_nested(scores, 168)["model"]
    # whatever it chooses can be fitted: the median combination (the benchmark's candidate,
    # not a model of trace_models) made the best here
    best = pl.col("model") == "snaive_daily"
    other = scores.with_columns(
        model=pl.when(best).then(pl.lit("median_combination")).otherwise(pl.col("model")),
        mase=pl.when(best).then(0.0).otherwise(pl.col("mase")),
    )
    assert model_for("taylor", 168, other) == "median_combination"
    assert "median_combination" in {m.name for m in selection_models("taylor")}


def test_the_median_combination_is_the_benchmarks_median_of_its_members() -> None:
    """``Combination(how="median")`` forecasts what ``combine`` makes from its members'
    forecasts (the benchmark scores the one, the scenarios fit the other)."""
    from tiered.forecast import combine, forecasts

    y = _signal(24 * 7 * 6, noise=0.1, seed=8)
    members = (SeasonalNaive(24), SeasonalNaive(168), SeasonalProfile(168, 2))
    median = Combination(members, label="median_combination", how="median")
    kw = {"horizon": 48, "step": 48, "min_train": 24 * 7 * 5, "quantiles": (0.1, 0.5, 0.9)}
    past = forecasts(y, [*members, median], **kw)  # type: ignore[arg-type]
    made = combine(past.filter(pl.col("model") != "median_combination"), [m.name for m in members])
    fitted = past.filter(pl.col("model") == "median_combination").drop("fit_s")
    assert made.drop("fit_s").sort("origin", "lead").equals(fitted.sort("origin", "lead"))
    with pytest.raises(ConfigError, match="'mean' or 'median'"):
        Combination(members, how="mode").fit(y)
