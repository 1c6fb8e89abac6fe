"""Cache sizing from an access trace the Store recorded (``StoreConfig(access_log=...)``).

The trace (:mod:`tiered.metrics.access`: time, operation, table, salted key hash, hit, latency,
record size) is replayed through the library's **real** cache objects -- a
:class:`~tiered.cache.CacheLayer` on a virtual clock set to each access's time, with the
record sizes the trace saw -- once per candidate size of the record caches, one layer per
process that logged: a ``get`` is a hit or a miss that fills the cache; a write takes the layer's
own write path (:meth:`~tiered.cache.CacheLayer.end_write`: write-through of batches up to
``CacheConfig.write_through``, invalidation of larger ones and of deletes) and reaches the other
processes as their change-log polls do (invalidation). Query results are
replayed too, conservatively: their predicates cannot be evaluated on hashed keys, so any write
to a table drops every cached result of that table (the live cache drops only the results the
write could change, so it does at least as well). The result is a miss-ratio curve per table
and a recommended :class:`CacheConfig`: the smallest size that saves at least 95 % of the reads
the largest candidate saves, with a byte bound for the records it will hold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tiered.cache.config import CacheConfig, RecordCacheConfig
from tiered.cache.layer import TABLES, CacheLayer
from tiered.cache.queries import QueryEntry
from tiered.errors import DataError
from tiered.metrics.access import read_access_log
from tiered.progress import Progress

__all__ = ["CacheSizing", "replay_trace", "size_cache"]


@dataclass(frozen=True, slots=True)
class _Rec:
    """A stand-in for a cached record: its (hashed) id and size are all the cache needs."""

    id: int
    size: int


_ALWAYS = lambda r: True  # noqa: E731 - (a hashed trace cannot tell which results a write changes)


def replay_trace(trace: pl.DataFrame, config: CacheConfig) -> dict[str, dict[str, float]]:
    """Replay ``trace`` through cache layers built from ``config``, one per process that
    logged (the ``process`` column; one layer without it): per table (and ``"queries"``)
    lookups, hits, database reads and the hit ratio.

    Each access does what the live Store does: a ``get`` or ``query`` miss fills the layer; a
    write (the rows of one ``store_*``/``delete_*`` call: one time, table and operation) takes
    the layer's own write path in the process that made it (:meth:`CacheLayer.begin_write` and
    :meth:`~CacheLayer.end_write`: write-through of batches up to ``write_through``,
    invalidation of larger ones, and of the table's query results) and reaches every other
    process as its change-log poll does (:meth:`CacheLayer.apply_changes`: invalidation)."""
    now = [0.0]
    layers: dict[str, CacheLayer] = {}

    def layer_of(process: str) -> CacheLayer:
        if process not in layers:
            layers[process] = CacheLayer(
                config, timer=lambda: now[0], getsizeof=lambda v: getattr(v, "size", 400)
            )
        return layers[process]

    mean_size = {
        t: int(trace.filter((pl.col("table") == t) & (pl.col("size") > 0))["size"].mean() or 400)  # type: ignore[arg-type]
        for t in TABLES
    }
    sizes: dict[tuple[str, int], int] = {}
    stats: dict[str, list[int]] = {t: [0, 0] for t in (*TABLES, "queries")}
    t0 = int(trace["t_us"][0]) if trace.height else 0
    procs = (
        trace["process"].cast(pl.Utf8).to_list()
        if "process" in trace.columns
        else [""] * trace.height
    )
    cols = [trace[c].to_list() for c in ("t_us", "op", "table", "key", "size")]
    rows = list(zip(*cols, procs, strict=True))
    seq = 0
    i = 0
    while i < len(rows):
        t_us, op, table, key, size, proc = rows[i]
        i += 1
        now[0] = (t_us - t0) / 1e6
        if size:
            sizes[(table, key)] = size
        layer = layer_of(proc)
        if op.startswith("query"):
            st = stats["queries"]
            st[0] += 1
            qc = layer.queries
            # keyed by the query's name first, as the live cache is (``query:<name>``; a trace
            # older than that counts every query under one name). Every result is cached: a
            # write here drops all of its table's results (their predicates are not in the
            # trace), so the live cache's "worth caching" measure would read lower than live
            qkey = (op[6:], table, key)
            if qc is None or qc.get(qkey) is None:
                st[1] += 1
                if qc is not None:
                    qc.put(qkey, QueryEntry(table, (), frozenset(), _ALWAYS))
            continue
        cache = layer.records.get(table)
        if op == "get":
            st = stats[table]
            st[0] += 1
            if cache is None or cache.get(key) is None:
                st[1] += 1
                if cache is not None:
                    cache.set(key, _Rec(key, sizes.get((table, key), mean_size[table])))
            continue
        # a write: the rows of one call, then the layer's own write path
        keys = [key]
        while i < len(rows) and rows[i][:3] == (t_us, op, table) and rows[i][5] == proc:
            keys.append(rows[i][3])
            if rows[i][4]:
                sizes[(table, rows[i][3])] = rows[i][4]
            i += 1
        if table not in TABLES:
            continue
        ticket = layer.begin_write(table, keys)
        if op == "put":
            recs = [_Rec(k, sizes.get((table, k), mean_size[table])) for k in keys]
            layer.end_write(ticket, recs)
        else:
            layer.end_write(ticket, [], deleted=keys)
        changes = []
        for k in keys:
            seq += 1
            changes.append((seq, table, k, op))
        for other, o in layers.items():
            if other != proc:
                for j in range(0, len(changes), 1000):
                    o.apply_changes(changes[j : j + 1000], now[0])
    out: dict[str, dict[str, float]] = {}
    for t, (lookups, misses) in stats.items():
        if lookups:
            out[t] = {
                "lookups": lookups,
                "db_reads": misses,
                "hits": lookups - misses,
                "hit_ratio": (lookups - misses) / lookups,
            }
    return out


@dataclass
class CacheSizing:
    """The miss-ratio curve (``curve``: table, size, lookups, db_reads, hit_ratio), the
    recommended configuration and what it is predicted to save."""

    curve: pl.DataFrame
    config: CacheConfig
    sizes: dict[str, int]  # recommended entries per table
    predicted: dict[str, float]  # share of lookups the recommended config answers, per table
    reads_saved_per_s: float
    latency_saved_ms: float | None  # per lookup answered from the cache instead of the database
    events: int
    seconds: float

    def snippet(self) -> str:
        parts = [
            f"{t}=RecordCacheConfig(maxsize={n}, max_bytes={getattr(self.config, t).max_bytes})"
            for t, n in self.sizes.items()
        ]
        return "cache=CacheConfig(" + ", ".join(parts) + ")"

    def as_dict(self) -> dict[str, Any]:
        return {
            "curve": self.curve.to_dicts(),
            "sizes": self.sizes,
            "predicted_hit_ratio": self.predicted,
            "reads_saved_per_s": self.reads_saved_per_s,
            "latency_saved_ms": self.latency_saved_ms,
            "events": self.events,
            "seconds": self.seconds,
            "snippet": self.snippet(),
        }


def _candidates(distinct: int) -> list[int]:
    top = max(16, distinct)
    sizes = {max(8, round(top * f)) for f in (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)}
    return sorted(sizes)


def size_cache(
    trace: pl.DataFrame | str | Path, *, base: CacheConfig | None = None, progress: bool = False
) -> CacheSizing:
    """Replay ``trace`` (a frame, or an access log folder) at a range of record-cache sizes and
    recommend one per table (see the module docstring). :class:`DataError` for a trace with no
    point reads."""
    frame = read_access_log(trace) if isinstance(trace, str | Path) else trace.sort("t_us")
    reads = frame.filter(pl.col("op") == "get")
    if reads.height == 0:
        raise DataError("the access trace holds no point reads: nothing to size a cache on")
    base = base or CacheConfig()
    tables = sorted(set(reads["table"].cast(pl.Utf8).to_list()))
    distinct = {t: reads.filter(pl.col("table") == t)["key"].n_unique() for t in tables}
    frame = frame.with_columns(pl.col("table").cast(pl.Utf8), pl.col("op").cast(pl.Utf8))
    rows = []
    grid = sorted({s for t in tables for s in _candidates(distinct[t])})
    bar = Progress(len(grid), "cache sizes replayed", enabled=progress)
    for size in grid:
        bar.advance()
        sized: dict[str, Any] = {
            t: dataclasses.replace(getattr(base, t), maxsize=size, max_bytes=None) for t in tables
        }
        cfg = dataclasses.replace(base, **sized)
        for t, s in replay_trace(frame, cfg).items():
            if t in tables:
                rows.append({"table": t, "size": size, **s})
    curve = pl.DataFrame(rows)
    chosen: dict[str, int] = {}
    predicted: dict[str, float] = {}
    for t in tables:
        c = curve.filter(pl.col("table") == t).sort("size")
        best = float(c["hit_ratio"].max())  # type: ignore[arg-type]
        ok = c.filter(pl.col("hit_ratio") >= 0.95 * best)
        chosen[t] = int(ok["size"][0])
        predicted[t] = float(ok["hit_ratio"][0])
    mean_size = {
        t: float(frame.filter((pl.col("table") == t) & (pl.col("size") > 0))["size"].mean() or 400)  # type: ignore[arg-type]
        for t in tables
    }
    recommended: dict[str, Any] = {
        t: RecordCacheConfig(
            maxsize=chosen[t],
            max_bytes=max(1 << 20, int(chosen[t] * mean_size[t] * 1.25)),
            ttl=getattr(base, t).ttl,
            negative_ttl=getattr(base, t).negative_ttl,
        )
        for t in tables
    }
    config = dataclasses.replace(base, **recommended)
    span = (int(frame["t_us"].max()) - int(frame["t_us"].min())) / 1e6 if frame.height else 0.0  # type: ignore[arg-type]
    saved = sum(predicted[t] * reads.filter(pl.col("table") == t).height for t in tables)
    hits = reads.filter(pl.col("hit") == True)["latency_us"]  # noqa: E712
    misses = reads.filter(pl.col("hit") == False)["latency_us"]  # noqa: E712
    latency = None
    if hits.len() and misses.len():
        latency = float(np.median(misses.to_numpy()) - np.median(hits.to_numpy())) / 1000
    return CacheSizing(
        curve=curve,
        config=config,
        sizes=chosen,
        predicted=predicted,
        reads_saved_per_s=saved / span if span > 0 else 0.0,
        latency_saved_ms=latency,
        events=frame.height,
        seconds=span,
    )
