"""Conformal calibration of forecast quantiles, median combination and nested selection.

A model whose intervals are far too narrow must cover its nominal share once calibrated, with
offsets learnt only from origins before the one scored (a poisoned future changes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from tiered.errors import ConfigError
from tiered.forecast import SeasonalNaive, select_nested, synthetic_trace
from tiered.forecast.conformal import (
    Calibrated,
    calibrated_scores,
    combine,
    forecasts,
    offsets,
)
from tiered.forecast.models import Forecast


@dataclass(frozen=True)
class _Overconfident:
    """Last week's values with intervals 1 % wide: a q0.9 that covers about half the actuals."""

    label: str = "overconfident"

    @property
    def name(self) -> str:
        return self.label

    def fit(self, y: np.ndarray) -> _FittedOverconfident:
        return _FittedOverconfident(np.asarray(y[-168:], dtype=float))


@dataclass(frozen=True)
class _FittedOverconfident:
    last: np.ndarray

    def forecast(self, h: int, quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> Forecast:
        mean = self.last[np.arange(h) % 168]
        return Forecast(mean, {float(q): mean * (1 + 0.02 * (q - 0.5)) for q in quantiles})


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return synthetic_trace(days=7 * 30, bursts=0, seed=3)["requests"].to_numpy()


@pytest.fixture(scope="module")
def fcs(series: np.ndarray) -> pl.DataFrame:
    return forecasts(series, [_Overconfident(), SeasonalNaive(168)], quantiles=(0.1, 0.5, 0.9))


def test_calibration_brings_a_narrow_models_q90_to_its_nominal_coverage(
    series: np.ndarray, fcs: pl.DataFrame
) -> None:
    s = calibrated_scores(fcs, y=series).filter(pl.col("model") == "overconfident")
    raw, cal = s["raw_coverage_q0.9"].mean(), s["coverage_q0.9"].mean()
    assert raw < 0.7, raw  # the model's own q0.9 is far off
    assert 0.85 <= cal <= 0.95, cal  # calibrated: about what it says
    assert 0.72 <= s["coverage80"].mean() <= 0.88


def test_offsets_come_only_from_earlier_origins(series: np.ndarray, fcs: pl.DataFrame) -> None:
    origins = sorted(fcs["origin"].unique().to_list())
    scored = origins[6]
    # poison every actual from the scored origin on: the scores at that origin use the true
    # actuals of that origin only, and its offsets must not change
    poisoned = fcs.with_columns(
        actual=pl.when(pl.col("origin") > scored).then(pl.col("actual") * 50).otherwise("actual")
    )
    a = calibrated_scores(fcs, y=series).filter(pl.col("origin") == scored)
    b = calibrated_scores(poisoned, y=series).filter(pl.col("origin") == scored)
    assert a.equals(b)
    assert not calibrated_scores(poisoned, y=series).equals(calibrated_scores(fcs, y=series))


def test_calibrated_model_applies_its_offsets(series: np.ndarray, fcs: pl.DataFrame) -> None:
    offs = offsets(fcs.filter(pl.col("model") == "overconfident"))
    assert offs[(0.9, 0)] > 0 > offs[(0.1, 0)]  # widened both ways
    fc = Calibrated(_Overconfident(), offs).fit(series).forecast(168, (0.1, 0.5, 0.9))
    raw = _Overconfident().fit(series).forecast(168, (0.1, 0.5, 0.9))
    assert (fc.quantiles[0.9] >= raw.quantiles[0.9]).all()
    assert (fc.quantiles[0.1] <= fc.quantiles[0.5]).all() and (fc.quantiles[0.1] >= 0).all()


def test_median_combination_is_not_moved_by_one_wild_member(fcs: pl.DataFrame) -> None:
    wild = fcs.filter(pl.col("model") == "overconfident").with_columns(
        pl.col("q0.9") * 100, model=pl.lit("wild")
    )
    both = pl.concat([fcs, wild])
    comb = combine(both, ["overconfident", "snaive_weekly", "wild"])
    top = both.group_by("model").agg(pl.col("q0.9").max())
    assert comb["q0.9"].max() <= top.filter(pl.col("model") != "wild")["q0.9"].max()
    with pytest.raises(ConfigError):
        combine(fcs, ["nope"])


def test_nested_selection_chooses_on_early_origins_and_falls_back_to_the_baseline() -> None:
    rows = []
    for i, o in enumerate(range(10)):
        early = i < 5
        rows += [
            {"model": "snaive_weekly", "origin": o, "horizon": 24, "mase": 1.0},
            # good early, bad late: chosen, and its late score is what is reported
            {"model": "lucky", "origin": o, "horizon": 24, "mase": 0.8 if early else 1.5},
            # bad early, good late: never chosen on data it is scored on
            {"model": "late", "origin": o, "horizon": 24, "mase": 1.2 if early else 0.5},
        ]
    s = pl.DataFrame(rows)
    got = select_nested(s, 24)
    assert got["model"] == "lucky" and got["mase"] == pytest.approx(1.5)
    assert got["relative_mase"] == pytest.approx(1.5)
    no_winner = s.filter(pl.col("model") != "lucky")
    assert select_nested(no_winner, 24)["model"] == "snaive_weekly"
    with pytest.raises(ConfigError):
        select_nested(s.filter(pl.col("origin") == 0), 24)


def test_a_lead_days_errors_are_used_once_that_day_is_over(series: np.ndarray) -> None:
    # origins 23 h apart: at an origin, the forecast made 46 h before it has its first day
    # observed but not its last; the first day's errors must count, the unobserved ones not
    fcs = forecasts(series, [_Overconfident()], step=23, quantiles=(0.1, 0.5, 0.9))
    origins = sorted(fcs["origin"].unique().to_list())
    scored, recent = origins[20], origins[18]

    def poison(leads: pl.Expr) -> pl.DataFrame:
        hit = (pl.col("origin") == recent) & leads
        return fcs.with_columns(actual=pl.when(hit).then(pl.col("actual") * 50).otherwise("actual"))

    def at(frame: pl.DataFrame) -> pl.DataFrame:
        return calibrated_scores(frame, y=series, horizons=(24,)).filter(pl.col("origin") == scored)

    base = at(fcs)
    assert not at(poison(pl.col("lead") < 24)).equals(base)  # day 1 of `recent` is known
    assert at(poison(pl.col("lead") >= 24)).equals(base)  # its later days are not yet
