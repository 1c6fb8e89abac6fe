"""Latency of the hot read operations against the live database, on its own data, politely.

Real keys and predicates are sampled from the database (episode ids spread over the table, recent
start times, metadata key/value pairs that occur), then each hot read of the layout runs on them,
paced by a :class:`RateLimiter` (20 requests/s by default, so a production server hardly notices;
the achieved rate is measured and reported beside the limit). Each request's time is split into
the round trip (the database call) and decoding (turning the rows into records: JSON and
envelopes for the original layout, frames for tiered's).
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from tiered.analysis.sources import Layout, Target
from tiered.compression import Codec
from tiered.db import statements as q
from tiered.errors import ConfigError, CorruptPayload, DatabaseError
from tiered.original import ENVELOPE, decode_envelope, opened
from tiered.progress import Progress

__all__ = [
    "LatencyProbe",
    "RateLimiter",
    "decode_original_rows",
    "original_metadata_pair",
    "probe_latency",
]


class RateLimiter:
    """At most ``rate`` acquisitions per second, evenly spaced (no bursts): each one waits until
    its slot. ``clock`` and ``sleep`` are injectable for tests on a virtual clock."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ConfigError(f"the probe rate must be > 0 requests/s, got {rate}")
        self.interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None

    async def acquire(self) -> None:
        now = self._clock()
        if self._next is None or self._next < now:
            self._next = now
        wait = self._next - now
        self._next += self.interval
        if wait > 0:
            await self._sleep(wait)


@dataclass
class LatencyProbe:
    """Per request: ``op, round_trip_ms, decode_ms, rows, error`` (the database's error when the
    query failed on this data); and the rate actually sent."""

    requests: pl.DataFrame
    rate_limit: float
    achieved_rate: float

    def summary(self) -> pl.DataFrame:
        return (
            self.requests.group_by("op")
            .agg(
                pl.len().alias("n"),
                pl.col("round_trip_ms").median().alias("round_trip_p50_ms"),
                pl.col("round_trip_ms").quantile(0.95).alias("round_trip_p95_ms"),
                pl.col("decode_ms").median().alias("decode_p50_ms"),
                pl.col("rows").mean().alias("rows_mean"),
                pl.col("error").is_not_null().sum().alias("errors"),
                pl.col("error").drop_nulls().first().alias("first_error"),
            )
            .sort("op")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary().to_dicts(),
            "rate_limit": self.rate_limit,
            "achieved_rate": self.achieved_rate,
        }


def original_metadata_pair(meta: Any) -> tuple[str, str] | None:
    """The first ``key, value`` pair with a text value of an original-layout ``metadata``
    column (envelope opened), or ``None`` when it has none or does not decode."""
    if not isinstance(meta, str):
        return None
    try:
        doc = json.loads(opened(meta))
    except (CorruptPayload, ValueError):
        return None
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, str):
                return str(k), v
    return None


def decode_original_rows(rows: Sequence[Sequence[Any]]) -> None:
    """What a reader of the original layout does with each row: parse its JSON columns."""
    for r in rows:
        for v in r:
            if not isinstance(v, str):
                continue
            try:
                if v.startswith(ENVELOPE):
                    raw = decode_envelope(v)
                    if raw[:1] in (b"[", b"{", b'"'):
                        json.loads(raw)
                    else:  # an embedding: the vector's raw little-endian f32 bytes
                        array("f", raw[: len(raw) - len(raw) % 4])
                elif v[:1] in '[{"' or v == "null":
                    json.loads(v)
            except (ValueError, CorruptPayload):
                pass


async def _sample_keys(target: Target, layout: Layout, n: int) -> dict[str, list[Any]]:
    idcol = "episode_id" if layout == "original" else "id"
    total = int((await target.query("SELECT count(*) FROM episodes"))[0][0] or 0)
    stride = max(1, total // max(1, n))
    ids = [
        r[0]
        for r in await target.query(
            f"SELECT {idcol} FROM episodes WHERE rowid % ? = 0 LIMIT ?", (stride, n)
        )
    ]
    times = [
        r[0]
        for r in await target.query(
            "SELECT start_time FROM episodes ORDER BY start_time DESC LIMIT ?", (n,)
        )
    ]
    pairs: list[tuple[str, str]] = []
    if layout == "original":
        for (meta,) in await target.query(
            "SELECT metadata FROM episodes WHERE rowid % ? = 0 LIMIT ?", (stride, n)
        ):
            pair = original_metadata_pair(meta)
            if pair is not None:
                pairs.append(pair)
    else:
        # the sampled episodes' metadata, by its primary key (episode_metadata is WITHOUT
        # ROWID: it has no rowid to sample by)
        for i in range(0, len(ids), 100):
            chunk = ids[i : i + 100]
            pairs += [
                (str(k), str(v))
                for k, v in await target.query(
                    "SELECT key, value FROM episode_metadata "
                    f"WHERE episode_id IN ({', '.join('?' * len(chunk))})",
                    tuple(chunk),
                )
            ]
        pairs = pairs[:n]
    return {"ids": ids, "times": times, "pairs": pairs}


async def probe_latency(
    target: Target,
    layout: Layout,
    *,
    count: int = 100,
    rate: float = 20.0,
    seed: int = 0,
    limiter: RateLimiter | None = None,
    progress: bool = False,
) -> LatencyProbe | None:
    """Run ``count`` hot reads on sampled keys at most ``rate`` per second (see the module
    docstring); ``None`` for an empty database."""
    if layout == "empty" or count < 1:
        return None
    keys = await _sample_keys(target, layout, count)
    if not keys["ids"]:
        return None
    rng = np.random.default_rng(seed)
    codec = Codec()
    if layout == "tiered":
        for did, kind, data in await target.query("SELECT id, kind, data FROM dictionaries"):
            if isinstance(did, int) and isinstance(data, bytes):
                codec.add_dictionary(did, str(kind), data, activate=False)
    if layout == "original":
        ops: dict[str, tuple[str, Callable[[], tuple[Any, ...]]]] = {
            "get_episode": (
                "SELECT * FROM episodes WHERE episode_id = ?",
                lambda: (keys["ids"][rng.integers(len(keys["ids"]))],),
            ),
            "query_episodes_since": (
                "SELECT * FROM episodes WHERE start_time >= ? ORDER BY start_time DESC LIMIT 50",
                lambda: (keys["times"][rng.integers(len(keys["times"]))],),
            ),
        }
        if keys["pairs"]:
            ops["query_episodes_by_metadata"] = (
                "SELECT * FROM episodes WHERE json_extract(metadata, ?) = ? LIMIT 50",
                lambda: (lambda k, v: (f"$.{k}", v))(
                    *keys["pairs"][rng.integers(len(keys["pairs"]))]
                ),
            )
    else:
        ops = {
            "get_episode": (
                q.GET_EPISODE.sql,
                lambda: (keys["ids"][rng.integers(len(keys["ids"]))],),
            ),
            "query_episodes_since": (
                q.EPISODES_SINCE.sql,
                lambda: (keys["times"][rng.integers(len(keys["times"]))], 50),
            ),
        }
        if keys["pairs"]:
            ops["query_episodes_by_metadata"] = (
                q.EPISODES_BY_METADATA.sql,
                lambda: (*keys["pairs"][rng.integers(len(keys["pairs"]))], 50),
            )
    limiter = limiter or RateLimiter(rate)
    bar = Progress(count, "latency probes", enabled=progress)
    names = sorted(ops)
    rows: list[tuple[str, float, float, int, str | None]] = []
    sent: list[float] = []
    for i in range(count):
        name = names[i % len(names)]
        sql, args = ops[name]
        await limiter.acquire()
        bar.advance()
        t0 = time.perf_counter()
        sent.append(t0)
        try:
            result = await target.query(sql, args(), name=f"probe_{name}")
        except DatabaseError as e:
            # a hot query that fails on this data is a finding (the original's metadata lookup
            # fails on rows whose metadata is a compressed envelope: "malformed JSON")
            rows.append((name, (time.perf_counter() - t0) * 1000, 0.0, 0, str(e)[:120]))
            continue
        t1 = time.perf_counter()
        try:
            if layout == "original":
                decode_original_rows(result)
            else:
                for r in result:
                    codec.decode(r[2])  # type: ignore[arg-type]
        except CorruptPayload:
            pass  # a damaged row costs what it costs; the storage profile reports damage
        t2 = time.perf_counter()
        rows.append((name, (t1 - t0) * 1000, (t2 - t1) * 1000, len(result), None))
    frame = pl.DataFrame(
        rows,
        schema={
            "op": pl.Utf8,
            "round_trip_ms": pl.Float64,
            "decode_ms": pl.Float64,
            "rows": pl.Int64,
            "error": pl.Utf8,
        },
        orient="row",
    )
    span = sent[-1] - sent[0]
    achieved = (len(sent) - 1) / span if span > 0 else 0.0
    return LatencyProbe(frame, rate, achieved)
