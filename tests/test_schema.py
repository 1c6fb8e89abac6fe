"""Every statement the Store sends uses an index: checked with EXPLAIN QUERY PLAN.

Run on the embedded backend and on a real sqld (over ws), with data in the tables so the planner
has statistics-free but realistic choices. Ordered queries must also be served in index order
(no temporary B-tree sort), so a LIMIT reads only the rows it returns.
"""

from __future__ import annotations

import re

import pytest

from tiered import Store
from tiered.db import connect
from tiered.db.driver import Statement
from tiered.db.statements import (
    EPISODES_BY_METADATA,
    EPISODES_SINCE,
    HEURISTICS_BY_CONFIDENCE,
    all_statements,
    episodes_filtered,
    patterns_filtered,
)
from tiered.sim import generate_embeddings, generate_episodes

# A full scan is allowed only where the whole table is the answer's domain and a LIMIT bounds it:
# the unfiltered listing walks the start-time index in order.
ORDERED = [
    EPISODES_SINCE,
    EPISODES_BY_METADATA,
    HEURISTICS_BY_CONFIDENCE,
    episodes_filtered(False, False, False),
    episodes_filtered(True, False, False),
    episodes_filtered(False, True, False),
    episodes_filtered(False, True, True),
    episodes_filtered(False, False, True),
    patterns_filtered(False, False),
    patterns_filtered(True, False),
    patterns_filtered(False, True),
    patterns_filtered(True, True),
]


def dummy_args(sql: str) -> list[object]:
    n = len(set(re.findall(r"\?\d+", sql))) or sql.count("?")
    return [1] * n


@pytest.mark.parametrize("backend", ["file", "ws"])
async def test_every_statement_uses_an_index(backend: str, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_url

    url = make_url(backend, tmp_path, request)
    store = await Store.open(url)
    await store.store_episodes(generate_episodes(50, seed=1))
    await store.store_embeddings(generate_embeddings(20, dim=4, seed=1))
    model_id = store._vectors._models["minilm-64"][0]
    await store.close()
    conn = await connect(url)
    try:
        for stmt in all_statements((model_id,)):
            if stmt.sql.lstrip().upper().startswith(("INSERT", "CREATE")):
                continue
            if backend == "file" and "vector" in stmt.sql:
                continue  # libSQL vector functions exist on sqld only (the Store never sends them)
            plan_stmt = Statement("plan", "EXPLAIN QUERY PLAN " + stmt.sql, reuse=False)
            rows = (await conn.execute(plan_stmt, dummy_args(stmt.sql))).rows
            plan = [str(r[-1]) for r in rows]
            text = " | ".join(plan)
            for line in plan:
                if line.startswith("SCAN") and "VIRTUAL TABLE" not in line:
                    assert "USING" in line and "INDEX" in line, f"{stmt.name}: full scan: {text}"
                    assert stmt is episodes_filtered(False, False, False), f"{stmt.name}: {text}"
            if stmt in ORDERED:
                assert "TEMP B-TREE" not in text, f"{stmt.name} sorts: {text}"
    finally:
        await conn.close()
