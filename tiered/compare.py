"""Before and after an import: the same data in the original layout and in tiered's, measured.

:func:`compare_layouts` takes the source (the original layout, read-only) and the destination
(tiered's, after ``tiered import``) on the same server kind and reports

* bytes on disk (SQLite's ``page_count * page_size``, read with read-only pragmas), and the bytes
  of the episode payloads as stored (``length()`` of the payload columns);
* the original's hot queries on both layouts, each run ``repeat`` times on the same sampled
  keys, the answer decoded on both sides (the original's JSON parsed, tiered's frames decoded
  into records):
  ``query_episodes_since``, the metadata lookup, get by id and a batch get of embeddings --
  latency (median), rows returned, and the original's plan (``SCAN`` or an index; tiered's
  plans are in the analysis' index report); the original's vector search needs
  libSQL's DiskANN index, which a copy written by plain SQLite lacks, so it is not compared;
  a query that fails on the original layout (its metadata lookup meets a compressed envelope)
  says so instead of a time.

The source side sends the original's own SQL through the analysis' read-only target; the tiered
side goes through a Store opened read-only with the cache off, so every call is a database call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from tiered.analysis.latency import decode_original_rows, original_metadata_pair
from tiered.analysis.sources import Target, detect_layout, open_target
from tiered.cache.config import CacheConfig
from tiered.db.driver import Row, Value
from tiered.errors import DatabaseError, UnknownLayout
from tiered.store import Store, StoreConfig

__all__ = ["compare_layouts"]


async def _timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = await call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, out


async def _disk(target: Target) -> int | None:
    """Bytes on disk, or ``None`` where the server refuses the pragmas (sqld refuses
    ``PRAGMA page_count`` to a read-only token)."""
    try:
        pages = int((await target.query("PRAGMA page_count"))[0][0] or 0)
        size = int((await target.query("PRAGMA page_size"))[0][0] or 0)
    except DatabaseError:
        return None
    return pages * size


async def compare_layouts(
    source: str,
    dest: str,
    *,
    source_token: str | None = None,
    dest_token: str | None = None,
    repeat: int = 5,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per measure: ``measure, original, tiered, ratio`` (tiered / original), and the
    plan on each side for queries (see the module docstring)."""
    src = await open_target(source, auth_token=source_token)
    dst = await open_target(dest, auth_token=dest_token)
    store: Store | None = None
    rows: list[dict[str, Any]] = []
    try:
        if await detect_layout(src) != "original" or await detect_layout(dst) != "tiered":
            raise UnknownLayout("compare_layouts needs the original layout, then tiered's")
        rng = np.random.default_rng(seed)
        rows.append(_row("bytes on disk", await _disk(src), await _disk(dst)))
        original_cols = "task_description, context, steps, outcome, reward, reflection, metadata"
        sums = " + ".join(f"coalesce(length({c}), 0)" for c in original_cols.split(", "))
        before = (await src.query(f"SELECT sum({sums}) FROM episodes"))[0][0]
        after = (await dst.query("SELECT sum(length(payload)) FROM episodes"))[0][0]
        rows.append(_row("episode payload bytes", int(before or 0), int(after or 0)))
        n_src = int((await src.query("SELECT count(*) FROM episodes"))[0][0] or 0)
        n_dst = int((await dst.query("SELECT count(*) FROM episodes"))[0][0] or 0)
        count = _row("episodes", n_src, n_dst)
        if n_src != n_dst:  # every measure below compares these two sets
            count["note"] = f"{n_src - n_dst:,} of the source's episodes are not in tiered"
        rows.append(count)
        store = await Store.open(
            dest,
            auth_token=dest_token,
            config=StoreConfig(read_only=True),
            cache=CacheConfig(enabled=False),
        )
        n = n_src
        ids = [
            str(r[0])
            for r in await src.query(
                "SELECT episode_id FROM episodes WHERE rowid % ? = 0 LIMIT 1000",
                (max(1, n // 1000),),
            )
        ]
        pick = [ids[int(i)] for i in rng.integers(0, len(ids), size=repeat)] if ids else []
        since = int((await src.query("SELECT max(start_time) - 86400 FROM episodes"))[0][0] or 0)
        meta = await _a_metadata_pair(src)
        emb = [str(r[0]) for r in await src.query("SELECT embedding_id FROM embeddings LIMIT 8")]
        st = store
        # (name, original SQL and args, tiered call)
        cases: list[tuple[str, str, Sequence[Value], Callable[[], Awaitable[Any]]]] = [
            (
                "query_episodes_since",
                "SELECT * FROM episodes WHERE start_time >= ? ORDER BY start_time DESC LIMIT 100",
                (since,),
                lambda: st.query_episodes_since(since * 1_000_000, 100),
            ),
            (
                "get_episode",
                "SELECT * FROM episodes WHERE episode_id = ?",
                (pick[0] if pick else "",),
                lambda: st.get_episode(pick[0] if pick else "-"),
            ),
            (
                "get_embeddings (8)",
                f"SELECT * FROM embeddings WHERE embedding_id IN ({', '.join('?' * len(emb))})"
                if emb
                else "SELECT * FROM embeddings WHERE 0",
                tuple(emb),
                lambda: _each(st.get_embedding, emb),
            ),
        ]
        if meta is not None:
            k, v = meta
            cases.append(
                (
                    "query_episodes_by_metadata",
                    "SELECT * FROM episodes WHERE json_extract(metadata, ?) = ? LIMIT 100",
                    (f"$.{k}", v),
                    lambda: st.query_episodes_by_metadata(k, v, 100),
                )
            )
        for name, sql, args, tiered_call in cases:
            plan = await src.query(f"EXPLAIN QUERY PLAN {sql}", args)
            try:
                ms, got = await _timed(_original(src, sql, args), repeat)
                original: dict[str, Any] = {"ms": ms, "rows": len(got)}
            except DatabaseError as e:
                original = {"ms": None, "rows": None, "error": str(e)[:80]}
            t_ms, result = await _timed(tiered_call, repeat)
            n = len(result) if isinstance(result, list) else int(result is not None)
            rows.append(
                {
                    "measure": f"{name} ms (median of {repeat})",
                    "original": original["ms"],
                    "tiered": t_ms,
                    "ratio": t_ms / original["ms"] if original["ms"] else None,
                    "original_rows": original["rows"],
                    "tiered_rows": n,
                    "original_plan": " | ".join(str(p[3]) for p in plan),
                    "note": original.get("error", ""),
                }
            )
    finally:
        if store is not None:
            await store.close()
        await dst.close()
        await src.close()
    return pl.DataFrame(rows)


def _row(measure: str, original: float | None, tiered: float | None) -> dict[str, Any]:
    return {
        "measure": measure,
        "original": None if original is None else float(original),
        "tiered": None if tiered is None else float(tiered),
        "ratio": tiered / original if original and tiered is not None else None,
        "original_rows": None,
        "tiered_rows": None,
        "original_plan": "",
        "note": ""
        if original is not None and tiered is not None
        else "not readable with this token",
    }


def _original(src: Target, sql: str, args: Sequence[Value]) -> Callable[[], Awaitable[Any]]:
    """The original's query, its rows decoded as its reader would (JSON parsed, envelopes
    opened): the same work the tiered side's Store call does with its frames."""

    async def run() -> list[Row]:
        rows = await src.query(sql, args)
        decode_original_rows(rows)
        return rows

    return run


async def _each(get: Callable[[str], Awaitable[Any]], keys: list[str]) -> list[Any]:
    return [await get(k) for k in keys]


async def _a_metadata_pair(src: Target) -> tuple[str, str] | None:
    for (meta,) in await src.query("SELECT metadata FROM episodes LIMIT 50"):
        pair = original_metadata_pair(meta)
        if pair is not None:
            return pair
    return None
