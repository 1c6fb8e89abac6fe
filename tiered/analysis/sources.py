"""Read-only sources for the analysis of a user's deployment, each yielding tidy polars frames.

* :class:`Target`: a database the user points at -- an embedded file (opened with SQLite's
  ``mode=ro``: nothing can be written) or a sqld/Turso server (with the token the user gives;
  a read-only token where they have one). Every statement the analysis sends passes
  :meth:`Target.query`, which refuses anything but reads (``SELECT``, ``EXPLAIN``, read-only
  ``PRAGMA``) with :class:`~tiered.errors.ReadOnlyError` before any I/O. No migration, no
  temporary table, nothing.
* :func:`detect_layout`: tiered's own schema, the original system's layout
  (``shared/seed/seed-schema.md``), an empty database, or :class:`~tiered.errors.UnknownLayout`.
* :func:`history`: records created per hour in the database itself -- a *proxy* for write
  traffic (reads leave no trace in a database; say so wherever it is shown).
* :func:`traffic_file`: a CSV or parquet file the user has (request logs, an export of their
  metrics system): a timestamp column and optionally a count column, any spacing, as an hourly
  request series with its gaps and its span labelled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, cast

import polars as pl

from tiered.db.driver import Connection, Row, Statement, Value, backend_of, connect, redact_url
from tiered.errors import ConfigError, DataError, ReadOnlyError, UnknownLayout
from tiered.forecast.series import resample
from tiered.workload.original import ORIGINAL_TABLES

__all__ = [
    "Layout",
    "Target",
    "TrafficSeries",
    "detect_layout",
    "history",
    "open_target",
    "traffic_file",
]

Layout = Literal["tiered", "original", "empty"]

TIERED_TABLES = ("episodes", "episode_metadata", "patterns", "heuristics", "change_log")
_READ = re.compile(r"\s*(SELECT|EXPLAIN)\b", re.IGNORECASE)  # (not WITH: a CTE may write)
#: the pragmas the analysis reads (each of them only reads when given no value)
_PRAGMAS = {"table_info", "index_list", "index_info", "page_size", "page_count", "freelist_count"}


@dataclass
class Target:
    """A database opened for reading only (see the module docstring)."""

    url: str
    conn: Connection
    statements: int = 0  # statements sent (all reads)

    @property
    def backend(self) -> str:
        return backend_of(self.url)

    def __repr__(self) -> str:
        return f"<Target {self.backend} {redact_url(self.url)}>"

    async def query(
        self, sql: str, args: Sequence[Value] = (), *, name: str = "analysis"
    ) -> list[Row]:
        """Rows of a read; anything that is not a read raises :class:`ReadOnlyError` before
        it reaches the database."""
        if not _is_read(sql):
            raise ReadOnlyError(f"the analysis only reads; refused to send: {sql[:60]!r}")
        self.statements += 1
        return (await self.conn.execute(Statement(name, sql, reuse=False), args)).rows

    async def tables(self) -> list[str]:
        rows = await self.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
        return [str(r[0]) for r in rows]

    async def close(self) -> None:
        await self.conn.close()


def _is_read(sql: str) -> bool:
    if _READ.match(sql):
        return ";" not in sql.strip().rstrip(";")
    m = re.fullmatch(r"\s*PRAGMA\s+(\w+)\s*(\(\s*[\w\"']+\s*\))?\s*;?\s*", sql, re.IGNORECASE)
    return m is not None and m.group(1).lower() in _PRAGMAS


async def open_target(url: str, *, auth_token: str | None = None, timeout: float = 30.0) -> Target:  # noqa: ASYNC109
    """Open ``url`` for reading only (``file:`` URLs with SQLite's ``mode=ro``).

    Raises :class:`ConfigError` for a bad URL or a file that does not exist,
    :class:`DatabaseUnavailable` when a server does not answer, :class:`AuthError` when it
    rejects the token.
    """
    if not isinstance(url, str) or not url:
        raise ConfigError("the target must be a database URL: file:path, ws://host:port, ...")
    if backend_of(url) == "file":
        path = url.split("?", 1)[0]
        url = f"{path}?mode=ro&snapshot=1"  # a one-off read: nothing beside the file either
    conn = await connect(url, auth_token=auth_token, timeout=timeout)
    return Target(url, conn)


async def detect_layout(target: Target) -> Layout:
    """Which layout the database has, from its tables (nothing else is read)."""
    tables = set(await target.tables())
    if not tables:
        return "empty"
    if {"episodes", "episode_metadata", "change_log"} <= tables:
        return "tiered"
    if set(ORIGINAL_TABLES) <= tables:
        cols = {str(r[1]) for r in await target.query("PRAGMA table_info(episodes)")}
        if {"episode_id", "steps", "metadata", "start_time"} <= cols:
            return "original"
    raise UnknownLayout(
        "the database is neither of tiered's layout nor of the original system's: "
        f"found tables {sorted(tables)}; expected {list(TIERED_TABLES)} or {list(ORIGINAL_TABLES)}",
        tuple(sorted(tables)),
    )


#: seconds per unit of each layout's time columns (tiered: microseconds, original: seconds)
TIME_UNIT = {"tiered": 1e-6, "original": 1.0}


async def history(target: Target, layout: Layout) -> pl.DataFrame:
    """Episodes started per hour (``timestamp``, ``requests``), hours without any as 0.

    A proxy for write traffic: reads leave no trace in a database, and an episode is written
    around its start. Empty frame for an empty database.
    """
    if layout == "empty":
        return pl.DataFrame(schema={"timestamp": pl.Datetime("us"), "requests": pl.Float64})
    unit = TIME_UNIT[layout]
    hour = round(3600 / unit)
    rows = await target.query(
        f"SELECT start_time / {hour} AS h, count(*) FROM episodes GROUP BY h ORDER BY h"
    )
    frame = pl.DataFrame(
        {"h": [int(r[0] or 0) for r in rows], "n": [float(r[1] or 0) for r in rows]},
        schema={"h": pl.Int64, "n": pl.Float64},
    )
    return _hourly(
        frame.select(timestamp=pl.from_epoch(pl.col("h") * 3600, time_unit="s"), requests="n")
    )


def _hourly(frame: pl.DataFrame) -> pl.DataFrame:
    """``timestamp, requests`` on a full hourly grid (missing hours 0)."""
    if frame.height == 0:
        return frame.cast({"timestamp": pl.Datetime("us"), "requests": pl.Float64})
    return resample(frame, "1h", how="sum", fill="zero")


@dataclass
class TrafficSeries:
    """An hourly request series read from a user's file, with what was found on the way."""

    frame: pl.DataFrame  # timestamp, requests (per hour)
    source: str
    timestamp_column: str
    count_column: str | None
    gaps: int = 0  # hours inside the span with no row at all (filled with 0)
    notes: list[str] = field(default_factory=list)

    @property
    def hours(self) -> int:
        return self.frame.height

    @property
    def days(self) -> float:
        return self.hours / 24


_TS_NAMES = ("timestamp", "ts", "time", "datetime", "date", "hour", "minute", "period", "t")
_COUNT_NAMES = ("requests", "count", "counts", "n", "value", "calls", "hits", "qps", "rps")


def traffic_file(path: str | Path) -> TrafficSeries:
    """An hourly request series from a CSV or parquet file.

    The timestamp column is the first datetime column, or the first column named like a time
    (``timestamp``, ``time``, ``ts``, ...) that parses as one (ISO text or epoch seconds). With a
    count column (``requests``, ``count``, ``value``, ...) each row adds its count to its hour
    (a metrics export); without one, each row is one request (a request log). Raises
    :class:`DataError` for an unreadable file, no timestamp column, negative or non-numeric
    counts, or no rows.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"traffic file {p} does not exist")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            raw = pl.read_parquet(p)
        else:
            raw = pl.read_csv(p, try_parse_dates=True, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"traffic file {p} cannot be read as CSV or parquet: {e}") from e
    if raw.height == 0:
        raise DataError(f"traffic file {p} has no rows")
    ts_col, ts = _timestamps(raw, p)
    count_col = next((c for c in raw.columns if c.lower() in _COUNT_NAMES and c != ts_col), None)
    notes: list[str] = []
    if count_col is None:
        counts = pl.Series("requests", [1.0] * raw.height)
        notes.append("no count column: each row counted as one request (a request log)")
    else:
        try:
            counts = raw[count_col].cast(pl.Float64, strict=True).alias("requests")
        except pl.exceptions.PolarsError as e:
            raise DataError(f"traffic file {p}: column {count_col!r} is not numeric") from e
        if (counts.fill_null(0) < 0).any():
            bad = int((counts < 0).sum())
            raise DataError(
                f"traffic file {p}: column {count_col!r} has {bad} negative counts; "
                "request counts cannot be negative"
            )
        if counts.null_count():
            notes.append(f"{counts.null_count()} rows without a count were left out")
    frame = pl.DataFrame({"timestamp": ts, "requests": counts}).drop_nulls()
    if frame.height == 0:
        raise DataError(f"traffic file {p}: no row has both a timestamp and a count")
    rows_hours = frame["timestamp"].dt.truncate("1h").n_unique()
    hourly = _hourly(frame)
    gaps = hourly.height - rows_hours
    if gaps:
        notes.append(f"{gaps} hours inside the span had no rows (counted as 0 requests)")
    if hourly.height < 14 * 24:
        notes.append(
            f"{hourly.height / 24:.1f} days of traffic: weekly models need 2 weeks or more; "
            "the plan rests on the daily rhythm only"
        )
    return TrafficSeries(hourly, str(p), ts_col, count_col, gaps, notes)


def _timestamps(raw: pl.DataFrame, p: Path) -> tuple[str, pl.Series]:
    for c in raw.columns:
        if raw[c].dtype in (pl.Datetime, pl.Date) or isinstance(raw[c].dtype, pl.Datetime):
            return c, raw[c].cast(pl.Datetime("us"))
    for c in raw.columns:
        if c.lower() not in _TS_NAMES:
            continue
        s = raw[c]
        if s.dtype.is_numeric():  # epoch seconds (or milliseconds, if they look like it)
            scale = 1000 if s.max() is not None and float(s.max()) > 1e11 else 1  # type: ignore[arg-type]
            return c, pl.from_epoch(
                (s.cast(pl.Float64) / scale).cast(pl.Int64), time_unit="s"
            ).cast(pl.Datetime("us"))
        if s.dtype == pl.Utf8:
            parsed = s.str.to_datetime(strict=False, time_unit="us")
            if parsed.null_count() < s.len():
                return c, parsed.dt.replace_time_zone(None)
    raise DataError(
        f"traffic file {p} has no timestamp column: expected a datetime column or one named "
        f"like {', '.join(_TS_NAMES[:5])} holding ISO times or epoch seconds; "
        f"found columns {raw.columns}"
    )


def window(series: pl.DataFrame, days: float) -> pl.DataFrame:
    """The last ``days`` days of an hourly series."""
    if series.height == 0:
        return series
    end = cast(datetime, series["timestamp"].max())
    return series.filter(pl.col("timestamp") > end - timedelta(days=days))
