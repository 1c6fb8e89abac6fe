"""Calendar-aware traffic models: holiday labels, the calendar naive's holiday effects learnt from
their own history, the gradient-boosted candidate, and the per-trace candidate sets."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

from tiered.errors import ConfigError
from tiered.forecast import CalendarNaive, GradientBoosted, SeasonalNaive, trace_models
from tiered.forecast.calendar import holiday_labels

START = datetime(2024, 6, 3)  # a Monday


def _week() -> np.ndarray:
    hours = np.arange(168)
    daily = 100 + 60 * np.sin((hours % 24) / 24 * 2 * np.pi) ** 2
    weekend = np.where(hours // 24 >= 5, 0.6, 1.0)
    out: np.ndarray = daily * weekend
    return out


def _series(weeks: int, effect: float = 0.6) -> np.ndarray:
    """Exactly weekly traffic from START; midweek US holidays (Juneteenth, 4 July,
    Thanksgiving) carry ``effect`` x the usual day; Monday holidays are ordinary days."""
    y = np.tile(_week(), weeks)
    for d in (date(2024, 6, 19), date(2024, 7, 4), date(2024, 11, 28)):
        i = (d - START.date()).days * 24
        if i + 24 <= y.size:
            y[i : i + 24] *= effect
    return y


def test_holiday_labels_name_the_kind_and_the_offset() -> None:
    first = date(2024, 11, 24)
    labels = holiday_labels(first, 10, "US")
    by_day = {first + timedelta(days=i): lab for i, lab in enumerate(labels)}
    assert by_day[date(2024, 11, 28)] == ("midweek", 0)  # Thanksgiving, a Thursday
    assert by_day[date(2024, 11, 29)] == ("midweek", 1)
    assert by_day[date(2024, 11, 26)] == ("midweek", -2)
    assert by_day[date(2024, 11, 24)] is None and by_day[date(2024, 12, 3)] is None
    assert holiday_labels(date(2024, 9, 1), 3, "US")[1] == ("long_weekend", 0)  # Labor Day
    with pytest.raises(ConfigError):
        holiday_labels(first, 3, "XX")


def test_calendar_naive_learns_a_holiday_effect_and_skips_holiday_weeks() -> None:
    y = _series(29)
    cut = (date(2024, 11, 28) - START.date()).days * 24  # fit up to Thanksgiving's midnight
    fitted = CalendarNaive(START, "US").fit(y[:cut])
    assert fitted.effects[("midweek", 0)] == pytest.approx(0.6)  # Juneteenth, 4 July
    assert fitted.effects[("long_weekend", 0)] == pytest.approx(1.0)  # Labor Day and others
    fc = fitted.forecast(24 * 14).mean
    np.testing.assert_allclose(fc, y[cut : cut + 24 * 14], rtol=1e-9)
    # the weekly naive misses Thanksgiving, and the Thursday after it (last week's holiday)
    naive = SeasonalNaive(168).fit(y[: cut + 168]).forecast(168).mean
    thursday = slice(cut + 168, cut + 168 + 24)
    assert np.abs(naive[:24] - y[thursday]).max() > 10
    again = CalendarNaive(START, "US").fit(y[: cut + 168]).forecast(168).mean
    np.testing.assert_allclose(again[:24], y[thursday], rtol=1e-9)


def test_calendar_naive_without_history_of_a_label_assumes_no_effect() -> None:
    y = _series(20)  # ends in October: Thanksgiving's label never seen, 4 July's is
    cut = (date(2024, 10, 17) - START.date()).days * 24
    fitted = CalendarNaive(START, "US", profile=4).fit(y[:cut])
    assert fitted.model.name == "calendar_median4"
    assert ("weekend", 0) not in fitted.effects
    fc = fitted.forecast(168, (0.1, 0.9))
    assert (fc.quantiles[0.1] <= fc.mean).all() and (fc.mean <= fc.quantiles[0.9]).all()
    with pytest.raises(ConfigError):
        CalendarNaive(START, "US").fit(y[:300])  # under two weeks
    with pytest.raises(ConfigError):
        CalendarNaive(START, "US", weeks=0).fit(y[:cut])


def test_gradient_boosted_candidate_follows_a_weekly_series() -> None:
    y = _series(14, effect=1.0) + np.random.default_rng(0).normal(0, 2, 14 * 168)
    model = GradientBoosted(START, "US")
    a = model.fit(y[: 12 * 168]).forecast(168)
    b = model.fit(y[: 12 * 168]).forecast(168)
    np.testing.assert_array_equal(a.mean, b.mean)  # seeded
    err = np.abs(a.mean - y[12 * 168 : 13 * 168]).mean()
    assert err < 0.1 * y.mean()
    with pytest.raises(ConfigError):
        model.fit(y[:600])


def test_trace_models_add_the_calendar_candidates() -> None:
    names = [m.name for m in trace_models("nycflights13")]
    assert {"snaive_weekly", "calendar_naive", "calendar_median4", "gbm_calendar"} <= set(names)
    assert len(names) == len(set(names))
    with pytest.raises(ConfigError):
        trace_models("no-such-trace")
