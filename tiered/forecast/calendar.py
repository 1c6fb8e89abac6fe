"""A weekly seasonal naive that knows the calendar: public holidays and the days around them.

Why the fitted models lose to "same as last week" on traffic (notebook 02, ``bench_forecast``):
a published schedule (flights) or a staffed service (a call centre) repeats weekly almost exactly,
so the weekly seasonal naive's error is mostly the weeks that did not repeat -- a holiday, and
the week *after* it, when "last week" was the holiday. ETS, MSTL+ARIMA and SARIMAX smooth over
those weeks (the log transform, the damped trend and the seasonal states all carry part of a
holiday into the following weeks) and pay for it every week; a median profile ignores one bad
week but lags schedule changes. None of them knows which days are holidays.

:class:`CalendarNaive` keeps the weekly naive and fixes exactly those weeks:

* **reference**: each hour is forecast from the same hour of the most recent week whose day was
  not *affected* by a holiday (within ``window`` days of one), up to ``weeks`` weeks back;
* **holiday effects from their own history**: each affected day is labelled by its holiday's
  kind (on a Monday or Friday: a long weekend; Tuesday to Thursday: midweek; a weekend day) and
  its offset from it (-``window``..+``window`` days); the effect of a label is the median, over
  the earlier occurrences of that label in the training data, of the day's total over its
  reference day's total; a forecast day with that label is its reference scaled by it. Labels
  never seen before are left at 1 (no effect assumed).

Holidays come from the ``holidays`` package (``country`` and optional ``subdiv``, e.g. ``"US"``,
``"GB"``/``"ENG"``). The model needs the time of the first point (``start``): the backtests and
the scenarios fit on prefixes of a series, so every ``y`` given to :meth:`CalendarNaive.fit`
begins at ``start``. Intervals are Gaussian on the model's own in-sample errors over the last
four weeks, widening with each week ahead, as the weekly naive's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

from tiered.errors import ConfigError
from tiered.forecast.models import (
    DEFAULT_QUANTILES,
    Combination,
    Forecast,
    Model,
    check_series,
    default_models,
    gaussian_forecast,
    seasonal_sd,
)

__all__ = [
    "MEDIAN_MEMBERS",
    "TRACE_CALENDARS",
    "CalendarNaive",
    "GradientBoosted",
    "calendar_models",
    "holiday_labels",
    "selection_models",
    "trace_models",
]

Label = tuple[str, int]  # (holiday kind, days from the holiday)


def _kind(d: date) -> str:
    wd = d.weekday()
    return "long_weekend" if wd in (0, 4) else "weekend" if wd >= 5 else "midweek"


def holiday_labels(
    first: date, days: int, country: str, subdiv: str | None = None, window: int = 2
) -> list[Label | None]:
    """For each of ``days`` days from ``first``: the (kind, offset) of the nearest public
    holiday within ``window`` days, or None (a day no holiday affects)."""
    try:
        import holidays
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigError("CalendarNaive needs the 'holidays' package") from exc
    last = first + timedelta(days=days)
    years = range(first.year - 1, last.year + 2)
    try:
        cal = holidays.country_holidays(country, subdiv=subdiv, years=years)
    except NotImplementedError as exc:
        raise ConfigError(f"no holiday calendar for country={country!r} subdiv={subdiv!r}") from exc
    out: list[Label | None] = []
    for i in range(days):
        d = first + timedelta(days=i)
        best: Label | None = None
        for off in sorted(range(-window, window + 1), key=abs):
            h = d - timedelta(days=off)
            if h in cal:
                best = (_kind(h), off)
                break
        out.append(best)
    return out


@dataclass(frozen=True)
class _HourCalendar:
    """Hour ``t`` of an hourly series that starts at ``start``: its day and holiday label,
    prepared for the data and a year beyond it."""

    start: datetime
    labels: list[Label | None]

    @classmethod
    def build(
        cls, start: datetime, hours: int, country: str, subdiv: str | None, window: int = 2
    ) -> _HourCalendar:
        days = (start.hour + hours) // 24 + 400
        return cls(start, holiday_labels(start.date(), days, country, subdiv, window))

    def day(self, t: int) -> int:
        return (self.start.hour + t) // 24

    def label(self, t: int) -> Label | None:
        return self.labels[self.day(t)]

    def check(self, end: int, name: str) -> None:
        """Raise unless hour ``end`` is within the prepared calendar."""
        if self.day(end) >= len(self.labels):
            raise ConfigError(f"{name}: horizon ending at hour {end} is beyond the calendar")


@dataclass(frozen=True)
class CalendarNaive:
    """See the module docstring. ``start``: the time of ``y[0]`` (hourly series)."""

    start: datetime
    country: str = "US"
    subdiv: str | None = None
    profile: int = 1
    weeks: int = 4
    window: int = 2

    @property
    def name(self) -> str:
        return "calendar_naive" if self.profile == 1 else f"calendar_median{self.profile}"

    @property
    def lookback(self) -> int:
        """How many weeks back unaffected reference weeks are looked for."""
        return max(self.weeks, 2 * self.profile)

    def fit(self, y: np.ndarray) -> _FittedCalendar:
        y = check_series(y, 2 * 168 + 2, self.name)
        if self.weeks < 1 or self.profile < 1 or self.window < 0:
            raise ConfigError("CalendarNaive needs weeks >= 1, profile >= 1 and window >= 0")
        return _FittedCalendar(self, y)


@dataclass
class _FittedCalendar:
    model: CalendarNaive
    y: np.ndarray
    effects: dict[Label, float] = field(init=False)
    sigma: float = field(init=False)

    def __post_init__(self) -> None:
        m = self.model
        n = len(self.y)
        self._cal = _HourCalendar.build(m.start, n, m.country, m.subdiv, m.window)
        self.effects = self._learn()
        # in-sample errors of the whole rule over the last four weeks (for the intervals)
        lo = max(2 * 168, n - 4 * 168)
        pred = self._predict(np.arange(lo, n), self.y)
        err = self.y[lo:n] - pred
        self.sigma = float(np.sqrt(np.mean(err**2))) if err.size else 0.0

    def _reference(self, t: int) -> list[int]:
        """The hours ``t`` is forecast from: the same hour of the ``profile`` most recent weeks
        (within ``lookback``) whose day no holiday affects (last week's if none is). Beyond the
        data, a reference may itself be a forecast hour."""
        refs: list[int] = []
        for k in range(1, self.model.lookback + 1):
            r = t - 168 * k
            if r < 0:
                break
            if self._cal.label(r) is None:
                refs.append(r)
                if len(refs) == self.model.profile:
                    break
        return refs or [t - 168]

    def _learn(self) -> dict[Label, float]:
        """Per label: the median, over its earlier occurrences, of the day's total over its
        reference day's total (whole days inside the training data only)."""
        y, n = self.y, len(self.y)
        ratios: dict[Label, list[float]] = {}
        first_full = (24 - self.model.start.hour) % 24
        for d0 in range(first_full, n - 23, 24):
            lab = self._cal.label(d0)
            if lab is None:
                continue
            hours = range(d0, d0 + 24)
            refs = [self._reference(t) for t in hours]
            if any(min(r) < 0 for r in refs):
                continue
            base = float(sum(np.median(y[r]) for r in refs))
            if base > 0:
                ratios.setdefault(lab, []).append(float(y[d0 : d0 + 24].sum()) / base)
        return {lab: float(np.median(r)) for lab, r in ratios.items()}

    def _predict(self, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Forecast each hour in ``ts`` from ``values`` (the data, extended by the forecast
        itself beyond it)."""
        out = np.empty(ts.size)
        for i, t in enumerate(ts.tolist()):
            ref = float(np.median(values[self._reference(t)]))
            lab = self._cal.label(t)
            out[i] = ref * (self.effects.get(lab, 1.0) if lab is not None else 1.0)
        return out

    def forecast(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        n = len(self.y)
        self._cal.check(n + h, self.model.name)
        values = np.concatenate([self.y, np.zeros(h)])
        for t in range(n, n + h):  # hour by hour: a reference may itself be forecast
            values[t] = self._predict(np.array([t]), values)[0]
        sd = seasonal_sd(self.sigma, h, 168)
        return gaussian_forecast(values[n:], sd, quantiles, log=False)


_KINDS = {"long_weekend": 0, "midweek": 1, "weekend": 2}


@dataclass(frozen=True)
class GradientBoosted:
    """Gradient-boosted trees (scikit-learn's ``HistGradientBoostingRegressor``, squared error)
    on the hour of day, the day of week, the holiday label of the day (kind and
    offset, as :class:`CalendarNaive` labels them) and the same hour 1, 2 and 3 weeks earlier
    (and their median), fitted on the last ``train_weeks`` weeks. Forecasts hour by hour, so
    a lag beyond the data is the forecast itself. Intervals: Gaussian on the in-sample errors of
    the last four weeks (narrow: calibrate them, :mod:`tiered.forecast.conformal`).

    Squared error, not the quantile loss at 0.5: with scikit-learn 1.9 the quantile and
    absolute-error losses predicted 0 for every hour of ``bank_calls`` (more than half of its
    hours are closed, so the initial median is 0), measured in this project."""

    start: datetime
    country: str = "US"
    subdiv: str | None = None
    train_weeks: int = 12
    max_iter: int = 150
    seed: int = 0

    @property
    def name(self) -> str:
        return "gbm_calendar"

    def fit(self, y: np.ndarray) -> _FittedGBM:
        y = check_series(y, 5 * 168, self.name)
        try:
            from sklearn.ensemble import HistGradientBoostingRegressor
        except ImportError as exc:
            raise ConfigError("gbm_calendar needs scikit-learn (pip install scikit-learn)") from exc
        n = len(y)
        fitted = _FittedGBM(self, y, _HourCalendar.build(self.start, n, self.country, self.subdiv))
        lo = max(3 * 168, n - self.train_weeks * 168)
        x = fitted.features(np.arange(lo, n), y)
        reg = HistGradientBoostingRegressor(
            loss="squared_error", max_iter=self.max_iter, learning_rate=0.05,
            max_leaf_nodes=15, random_state=self.seed,
        )  # fmt: skip
        reg.fit(x, y[lo:n])
        fitted.reg = reg
        tail = np.arange(max(lo, n - 4 * 168), n)
        err = y[tail] - reg.predict(fitted.features(tail, y))
        fitted.sigma = float(np.sqrt(np.mean(err**2)))
        return fitted


@dataclass
class _FittedGBM:
    model: GradientBoosted
    y: np.ndarray
    cal: _HourCalendar
    reg: object = None
    sigma: float = 0.0

    def features(self, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        start, labels = self.cal.start, self.cal.labels
        hour = start.hour + ts
        day, hod = hour // 24, hour % 24
        dow = (start.weekday() + day) % 7
        kind = np.array([_KINDS[lab[0]] if (lab := labels[d]) else -1 for d in day])
        off = np.array([lab[1] if (lab := labels[d]) else 99 for d in day])
        lags = np.stack([values[ts - 168 * k] for k in (1, 2, 3)], axis=1)
        return np.column_stack([hod, dow, kind, off, lags, np.median(lags, axis=1)])

    def forecast(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        n = len(self.y)
        self.cal.check(n + h, self.model.name)
        values = np.concatenate([self.y, np.zeros(h)])
        predict = self.reg.predict  # type: ignore[attr-defined]
        for a in range(n, n + h, 168):  # a week at a time: its lags are all known by then
            b = min(a + 168, n + h)
            values[a:b] = np.maximum(predict(self.features(np.arange(a, b), values)), 0.0)
        return gaussian_forecast(values[n:], seasonal_sd(self.sigma, h, 168), quantiles, log=False)


#: the holiday calendar of each real trace: (country, subdivision). bank_calls is a "North
#: American" bank's call centre (fpp3): the US calendar is an assumption, and only matters on
#: the days it labels.
TRACE_CALENDARS: dict[str, tuple[str, str | None]] = {
    "nycflights13": ("US", None),
    "bank_calls": ("US", None),
    "taylor": ("GB", "ENG"),
}


def calendar_models(start: datetime, country: str = "US", subdiv: str | None = None) -> list[Model]:
    """The calendar-aware candidates for a series whose first hour is ``start``."""
    return [
        CalendarNaive(start, country, subdiv),
        CalendarNaive(start, country, subdiv, profile=4),
        GradientBoosted(start, country, subdiv),
    ]


#: the median combination's members (:func:`selection_models`)
MEDIAN_MEMBERS = ("snaive_weekly", "profile_median4", "ets_weekly", "mstl_arima")


def selection_models(name: str) -> list[Model]:
    """The candidates the model for the real trace ``name`` is chosen among (by
    ``bench_forecast``, on calibrated scores, and for the scenarios' plans): every model of
    :func:`trace_models` but the mean combination, and the median combination of
    :data:`MEDIAN_MEMBERS` in its place."""
    models = [m for m in trace_models(name) if not isinstance(m, Combination)]
    members = tuple(m for m in models if m.name in MEDIAN_MEMBERS)
    return [*models, Combination(members, label="median_combination", how="median")]


def trace_models(name: str) -> list[Model]:
    """Every candidate for the real trace ``name``: :func:`default_models` and the
    calendar-aware ones on the trace's own start and holiday calendar."""
    from tiered.forecast.series import load_trace

    if name not in TRACE_CALENDARS:
        raise ConfigError(f"no holiday calendar known for trace {name!r}")
    start = load_trace(name)["timestamp"][0]
    return [*default_models(), *calendar_models(start, *TRACE_CALENDARS[name])]
