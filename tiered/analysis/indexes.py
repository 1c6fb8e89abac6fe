"""Index health: how the database answers its hot queries, and how tiered's layout would.

``EXPLAIN QUERY PLAN`` of each hot query of the detected layout runs against the user's schema
(a read: nothing is executed). The same queries in tiered's layout are planned against an empty
in-memory SQLite database with tiered's schema -- built locally, never on the target -- so the
two plans can be compared side by side: a ``SCAN`` of a table is a full read of it per query.
"""

from __future__ import annotations

import sqlite3

import polars as pl

from tiered.analysis.sources import Layout, Target
from tiered.db import statements as q
from tiered.db.driver import Value
from tiered.db.schema import MIGRATIONS

__all__ = ["HOT_QUERIES", "index_health"]

#: the original layout's hot queries (shared/seed/seed-schema.md), with sample arguments
ORIGINAL_HOT: dict[str, tuple[str, tuple[Value, ...]]] = {
    "query_episodes_since": (
        "SELECT * FROM episodes WHERE start_time >= ? ORDER BY start_time DESC LIMIT ?",
        (0, 100),
    ),
    "query_episodes_by_metadata": (
        "SELECT * FROM episodes WHERE json_extract(metadata, ?) = ? LIMIT ?",
        ("$.agent", "coder", 100),
    ),
    "get_episode": ("SELECT * FROM episodes WHERE episode_id = ?", ("x",)),
    "get_embeddings": (
        "SELECT * FROM embeddings WHERE embedding_id IN (?, ?, ?, ?)",
        ("a", "b", "c", "d"),
    ),
    "list_patterns": (
        "SELECT * FROM patterns WHERE context_domain = ? ORDER BY success_rate DESC LIMIT ?",
        ("web-api", 100),
    ),
}

#: tiered's statements for the same questions
TIERED_HOT: dict[str, tuple[str, tuple[Value, ...]]] = {
    "query_episodes_since": (q.EPISODES_SINCE.sql, (0, 100)),
    "query_episodes_by_metadata": (q.EPISODES_BY_METADATA.sql, ("agent", "coder", 100)),
    "get_episode": (q.GET_EPISODE.sql, ("x",)),
    "get_embeddings": (q.GET_EMBEDDING.sql, ("a",)),
    "list_patterns": (q.patterns_filtered(False, True).sql, ("web-api", 0.0, 100)),
}

HOT_QUERIES = {"original": ORIGINAL_HOT, "tiered": TIERED_HOT}


def _scans(details: list[str]) -> list[str]:
    """Tables a plan reads in full (``SCAN t`` without an index)."""
    out = []
    for d in details:
        words = d.split()
        if words[:1] == ["SCAN"] and "INDEX" not in words and len(words) > 1:
            out.append(words[1])
    return out


def _tiered_plans() -> dict[str, list[str]]:
    db = sqlite3.connect(":memory:")
    try:
        for _, ddl in MIGRATIONS:
            for sql in ddl:
                db.execute(sql)
        return {
            name: [str(r[3]) for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
            for name, (sql, args) in TIERED_HOT.items()
        }
    finally:
        db.close()


async def index_health(target: Target, layout: Layout) -> pl.DataFrame:
    """One row per hot query: ``query, plan`` on the database (``layout``) and in tiered's
    layout, the tables each scans in full, and whether the database's plan scans."""
    ours = _tiered_plans()
    rows = []
    for name, (sql, args) in HOT_QUERIES["tiered" if layout == "empty" else layout].items():
        if layout == "empty":  # nothing to plan against: tiered's plans alone
            plan = []
        else:
            plan = [str(r[3]) for r in await target.query(f"EXPLAIN QUERY PLAN {sql}", args)]
        rows.append(
            {
                "query": name,
                "layout": layout,
                "plan": " | ".join(plan),
                "scans": ", ".join(_scans(plan)),
                "tiered_plan": " | ".join(ours[name]),
                "tiered_scans": ", ".join(_scans(ours[name])),
            }
        )
    return pl.DataFrame(rows).with_columns(full_scan=pl.col("scans") != "")
