"""Traffic models behind one small interface: ``model.fit(y) -> fitted``,
``fitted.forecast(h, quantiles) -> Forecast``.

``y`` is a 1-D array of requests per interval (hourly in this project); every model returns a
point forecast (the median) and the requested quantiles, never below 0. Models:

* :class:`SeasonalNaive` -- the value one period ago (``period=24``: yesterday, ``168``: last
  week); intervals from the in-sample seasonal differences, widening with each period ahead
  (Hyndman & Athanasopoulos, *FPP3* 5.5).
* :class:`SeasonalProfile` -- the median of the last ``weeks`` values at the same point of the
  period (hour of the week): a seasonal naive that one unusual week (a holiday, an outage)
  cannot derail; intervals from its in-sample errors.
* :class:`ETS` -- additive Holt-Winters (damped trend, one seasonal period: weekly by default)
  as a statsmodels ``ETSModel`` on ``log1p(y)``; intervals from the state-space model.
* :class:`MSTLModel` -- ``statsmodels.tsa.seasonal.MSTL`` with daily and weekly periods; each
  seasonal component continues as its last cycle, the deseasonalized rest is an ARIMA whose
  intervals are the forecast's.
* :class:`SarimaxFourier` -- regression on Fourier terms of the daily and weekly cycles with
  ARMA errors (``statsmodels`` ``SARIMAX``), the usual way to fit long or multiple seasonal
  periods that SARIMA's seasonal lags cannot (FPP3 12.1).

The log transform stabilises the variance of counts whose swings grow with their level; its
back-transform of the median is the median, so the point forecast is a median. Models fit on the
most recent ``window`` points (default 8 weeks of hours), which bounds the fit time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.stats import norm

from tiered.errors import ConfigError

__all__ = [
    "ETS",
    "MODELS",
    "Combination",
    "Fitted",
    "Forecast",
    "MSTLModel",
    "Model",
    "SarimaxFourier",
    "SeasonalNaive",
    "SeasonalProfile",
    "default_models",
]

DEFAULT_QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)


@dataclass(frozen=True, slots=True)
class Forecast:
    """``mean``: the point forecast (a median); ``quantiles``: level -> values."""

    mean: np.ndarray
    quantiles: dict[float, np.ndarray] = field(default_factory=dict)

    def interval(self, coverage: float) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = round((1 - coverage) / 2, 6), round(1 - (1 - coverage) / 2, 6)
        if lo not in self.quantiles or hi not in self.quantiles:
            raise ConfigError(f"the forecast has no {coverage:.0%} interval (quantiles {lo}, {hi})")
        return self.quantiles[lo], self.quantiles[hi]


class Fitted(Protocol):
    def forecast(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast: ...


class Model(Protocol):
    @property
    def name(self) -> str: ...

    def fit(self, y: np.ndarray) -> Fitted: ...


def check_series(y: np.ndarray, need: int, name: str) -> np.ndarray:
    """``y`` as a float array, checked for what every model needs (1-D, finite, no negative
    counts, at least ``need`` points); raises ConfigError naming the model."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or not np.isfinite(y).all():
        raise ConfigError(f"{name}: the series must be 1-D and finite")
    if (y < 0).any():
        raise ConfigError(f"{name}: request counts cannot be negative")
    if len(y) < need:
        raise ConfigError(f"{name}: needs at least {need} points, got {len(y)}")
    return y


def _window(y: np.ndarray, window: int | None) -> np.ndarray:
    return y if window is None or len(y) <= window else y[-window:]


def gaussian_forecast(
    center: np.ndarray, sd: np.ndarray, quantiles: Sequence[float], log: bool
) -> Forecast:
    """Quantiles of a normal forecast on the (log1p) model scale, back-transformed, >= 0."""
    back = np.expm1 if log else (lambda v: v)
    qs = {float(q): np.maximum(back(center + norm.ppf(q) * sd), 0.0) for q in quantiles}
    return Forecast(np.maximum(back(center), 0.0), qs)


def seasonal_sd(sigma: float, h: int, period: int) -> np.ndarray:
    """A seasonal naive's forecast error: ``sigma`` for the first period ahead, growing with
    the square root of the number of periods ahead (FPP3 5.5)."""
    out: np.ndarray = sigma * np.sqrt(np.arange(h) // period + 1)
    return out


# -- seasonal naive ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeasonalNaive:
    period: int = 168

    @property
    def name(self) -> str:
        return {24: "snaive_daily", 168: "snaive_weekly"}.get(self.period, f"snaive_{self.period}")

    def fit(self, y: np.ndarray) -> _FittedNaive:
        y = check_series(y, self.period + 2, self.name)
        resid = y[self.period :] - y[: -self.period]
        return _FittedNaive(y[-self.period :], float(np.sqrt(np.mean(resid**2))), self.period)


@dataclass(frozen=True, slots=True)
class _FittedNaive:
    last: np.ndarray
    sigma: float
    period: int
    grow: bool = True  # a seasonal naive's error grows with each period ahead

    def forecast(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        idx = np.arange(h)
        mean = self.last[idx % self.period]
        sd = seasonal_sd(self.sigma, h, self.period) if self.grow else np.full(h, self.sigma)
        return gaussian_forecast(mean, sd, quantiles, log=False)


@dataclass(frozen=True, slots=True)
class SeasonalProfile:
    period: int = 168
    weeks: int = 4

    @property
    def name(self) -> str:
        return f"profile_median{self.weeks}"

    def fit(self, y: np.ndarray) -> _FittedNaive:
        y = check_series(y, self.period * (self.weeks + 1), self.name)
        k, p = self.weeks, self.period

        def profile(end: int) -> np.ndarray:
            out: np.ndarray = np.median(y[end - k * p : end].reshape(k, p), axis=0)
            return out

        # in-sample errors: each of the last few periods forecast from the weeks before it
        ends = range(max(k * p, len(y) - 4 * p), len(y) - p + 1, p)
        errs = np.concatenate([y[e : e + p] - profile(e) for e in ends])
        return _FittedNaive(profile(len(y)), float(np.sqrt(np.mean(errs**2))), p, grow=False)


# -- ETS ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ETS:
    """Additive error, damped additive trend, additive seasonality of ``period`` on log1p(y)."""

    period: int = 168
    window: int | None = 24 * 7 * 8

    @property
    def name(self) -> str:
        return {24: "ets_daily", 168: "ets_weekly"}.get(self.period, f"ets_{self.period}")

    def fit(self, y: np.ndarray) -> _FittedStatsmodels:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        y = _window(check_series(y, 2 * self.period + 2, self.name), self.window)
        import pandas as pd  # ETSModel's prediction intervals need an indexed series

        model = ETSModel(
            pd.Series(np.log1p(y)),
            error="add",
            trend="add",
            damped_trend=True,
            seasonal="add",
            seasonal_periods=self.period,
            initialization_method="heuristic",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(disp=False, maxiter=200)
        return _FittedStatsmodels(res, "ets")


@dataclass(frozen=True, slots=True)
class _FittedStatsmodels:
    res: Any
    kind: str
    exog_future: Any = None

    def forecast(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.kind == "ets":
                pred = self.res.get_prediction(start=self.res.nobs, end=self.res.nobs + h - 1)
                center = np.asarray(pred.predicted_mean)
                sd = np.sqrt(np.asarray(pred.var_pred_mean))
            else:
                exog = None if self.exog_future is None else self.exog_future(h)
                pred = self.res.get_forecast(h, exog=exog)
                center = np.asarray(pred.predicted_mean)
                sd = np.sqrt(np.asarray(pred.var_pred_mean))
        return gaussian_forecast(center, sd, quantiles, log=True)


# -- MSTL ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MSTLModel:
    """MSTL (daily + weekly) on log1p(y); seasonal components repeat their last cycle, the rest
    is an ARIMA(``order``) with a constant."""

    periods: tuple[int, ...] = (24, 168)
    order: tuple[int, int, int] = (2, 0, 1)
    window: int | None = 24 * 7 * 8

    @property
    def name(self) -> str:
        return "mstl_arima"

    def fit(self, y: np.ndarray) -> _FittedMSTL:
        from statsmodels.tsa.arima.model import ARIMA
        from statsmodels.tsa.seasonal import MSTL

        y = _window(check_series(y, 2 * max(self.periods) + 2, self.name), self.window)
        z = np.log1p(y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dec = MSTL(z, periods=self.periods).fit()
            seasonal = np.asarray(dec.seasonal).reshape(len(z), -1)
            rest = z - seasonal.sum(axis=1)
            res = ARIMA(rest, order=self.order, trend="c").fit()
        lasts = [seasonal[-p:, i] for i, p in enumerate(self.periods)]
        return _FittedMSTL(res, lasts, self.periods)


@dataclass(frozen=True, slots=True)
class _FittedMSTL:
    res: Any
    lasts: list[np.ndarray]
    periods: tuple[int, ...]

    def forecast(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        idx = np.arange(h)
        seasonal = sum(last[idx % p] for last, p in zip(self.lasts, self.periods, strict=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = self.res.get_forecast(h)
        center = np.asarray(pred.predicted_mean) + seasonal
        return gaussian_forecast(
            center, np.sqrt(np.asarray(pred.var_pred_mean)), quantiles, log=True
        )


# -- SARIMAX with Fourier terms -----------------------------------------------------------------


def fourier(t: np.ndarray, period: float, k: int) -> np.ndarray:
    """``2k`` columns: sin and cos of the first ``k`` harmonics of ``period`` at times ``t``."""
    cols = []
    for j in range(1, k + 1):
        w = 2 * math.pi * j * t / period
        cols += [np.sin(w), np.cos(w)]
    return np.column_stack(cols)


@dataclass(frozen=True, slots=True)
class SarimaxFourier:
    """log1p(y) = Fourier(daily, ``k_daily``) + Fourier(weekly, ``k_weekly``) + ARMA(p, q)."""

    k_daily: int = 6
    k_weekly: int = 4
    order: tuple[int, int, int] = (2, 0, 1)
    window: int | None = 24 * 7 * 4

    @property
    def name(self) -> str:
        return "sarimax_fourier"

    def _exog(self, t: np.ndarray) -> np.ndarray:
        return np.column_stack([fourier(t, 24, self.k_daily), fourier(t, 168, self.k_weekly)])

    def fit(self, y: np.ndarray) -> _FittedStatsmodels:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        full = check_series(y, 2 * 168 + 2, self.name)
        y = _window(full, self.window)
        t0 = len(full) - len(y)  # Fourier phase follows the position in the whole series
        t = np.arange(t0, len(full), dtype=float)
        model = SARIMAX(np.log1p(y), exog=self._exog(t), order=self.order, trend="c")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(disp=False, maxiter=100)
        n = len(full)
        return _FittedStatsmodels(
            res, "sarimax", exog_future=lambda h: self._exog(np.arange(n, n + h, dtype=float))
        )


@dataclass(frozen=True, slots=True)
class Combination:
    """The equal-weight average of several models' forecasts: point forecasts and each quantile
    (quantile averaging, "Vincentization"). Combining forecasts of different kinds is one of the
    most reliable ways to cut error (the M4 competition's finding). ``how="median"``: the
    median of them instead, which one member's bad week does not move."""

    models: tuple[Model, ...]
    label: str = "combination"
    how: str = "mean"

    @property
    def name(self) -> str:
        return self.label

    def fit(self, y: np.ndarray) -> _FittedCombination:
        if not self.models:
            raise ConfigError("a Combination needs at least one model")
        if self.how not in ("mean", "median"):
            raise ConfigError(f"a Combination combines by 'mean' or 'median', not {self.how!r}")
        return _FittedCombination(tuple(m.fit(y) for m in self.models), self.how == "median")


@dataclass(frozen=True, slots=True)
class _FittedCombination:
    parts: tuple[Fitted, ...]
    median: bool = False

    def forecast(self, h: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        fcs = [p.forecast(h, quantiles) for p in self.parts]
        how = np.median if self.median else np.mean
        mean = how([f.mean for f in fcs], axis=0)
        qs = {q: how([f.quantiles[q] for f in fcs], axis=0) for q in fcs[0].quantiles}
        return Forecast(mean, qs)


def default_models() -> list[Model]:
    """The models compared by the backtests, the benchmark and the notebooks."""
    return [
        SeasonalNaive(24),
        SeasonalNaive(168),
        SeasonalProfile(168, 4),
        ETS(168),
        MSTLModel(),
        SarimaxFourier(),
        Combination((SeasonalNaive(168), SeasonalProfile(168, 4), ETS(168), MSTLModel())),
    ]


MODELS = {m.name: m for m in default_models()}
