"""The Store's contract, run on every backend: file:, http:// and ws:// (a real sqld)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from tiered import (
    ConfigError,
    ConstraintError,
    DatabaseBusy,
    DecisionPoint,
    Embedding,
    Episode,
    Heuristic,
    PayloadTooLarge,
    Store,
    StoreClosed,
    StoreConfig,
    TaskContext,
    ToolSequence,
    ValidationError,
)
from tiered.cache.config import CacheConfig
from tiered.db import connect
from tiered.db.driver import Statement
from tiered.db.schema import MIGRATIONS, TABLES
from tiered.model import Pattern
from tiered.sim import (
    generate_embeddings,
    generate_episodes,
    generate_heuristics,
    generate_patterns,
)


async def counts(url: str) -> dict[str, int]:
    """Rows per table, read over a raw connection (not through the Store under test)."""
    conn = await connect(url)
    try:
        out = {}
        for t in TABLES:
            rows = (await conn.execute(Statement("count", f"SELECT count(*) FROM {t}"))).rows
            out[t] = int(rows[0][0])  # type: ignore[arg-type]
        return out
    finally:
        await conn.close()


async def raw(url: str, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = await connect(url)
    try:
        return list((await conn.execute(Statement("raw", sql), args)).rows)  # type: ignore[arg-type]
    finally:
        await conn.close()


def ep(i: int, **kw: object) -> Episode:
    base = generate_episodes(1, seed=i, id_prefix="t")[0]
    return dataclasses.replace(base, id=f"ep{i}", **kw)  # type: ignore[arg-type]


async def test_episode_round_trip_and_upsert_keeps_created_time(store: Store, db_url: str) -> None:
    t = [1_000, 2_000]
    store.clock = lambda: t[0]
    e = ep(1)
    await store.store_episode(e)
    assert await store.get_episode("ep1") == e
    store.clock = lambda: t[1]
    e2 = dataclasses.replace(e, description="second version", metadata={"agent": "coder"})
    await store.store_episode(e2)
    assert await store.get_episode("ep1") == e2
    rows = await raw(db_url, "SELECT created_at, updated_at FROM episodes WHERE id = 'ep1'")
    assert rows == [(1_000, 2_000)]
    # metadata was replaced, not merged
    assert await raw(db_url, "SELECT key FROM episode_metadata WHERE episode_id = 'ep1'") == [
        ("agent",)
    ]
    assert await store.get_episode("missing") is None


async def test_batch_get_and_delete(store: Store, db_url: str) -> None:
    eps = generate_episodes(300, seed=3)
    assert await store.store_episodes(eps) == 300
    ids = [eps[5].id, "nope", eps[299].id, eps[5].id]
    got = await store.get_episodes(ids)
    assert got == [eps[5], None, eps[299], eps[5]]
    assert await store.get_episodes([e.id for e in eps]) == eps
    assert await store.delete_episode(eps[5].id) is True
    assert await store.delete_episode(eps[5].id) is False
    assert await store.get_episode(eps[5].id) is None
    c = await counts(db_url)
    assert c["episodes"] == 299
    assert c["episode_metadata"] == sum(len(e.metadata) for e in eps) - len(eps[5].metadata)


async def test_duplicate_ids_in_one_batch_last_wins(store: Store) -> None:
    a, b = ep(1), dataclasses.replace(ep(1), description="later", metadata={"only": "this"})
    assert await store.store_episodes([a, b]) == 1
    assert await store.get_episode("ep1") == b


async def test_queries_order_filter_and_limit(store: Store) -> None:
    eps = generate_episodes(400, seed=7)
    await store.store_episodes(eps)
    t0 = eps[150].start_time
    since = await store.query_episodes_since(t0, limit=1000)
    assert since == sorted(
        (e for e in eps if e.start_time >= t0), key=lambda e: (e.start_time, e.id)
    )
    assert await store.query_episodes_since(t0) == since[:100]  # default limit 100
    assert len(await store.query_episodes_since(0, limit=1000)) == 400
    with pytest.raises(ValidationError):  # above the cap: an error, never a shorter result
        await store.query_episodes_since(0, limit=5000)

    newest = sorted(eps, key=lambda e: (e.start_time, e.id), reverse=True)
    key, value = "agent", "coder"
    want = [e for e in newest if e.metadata.get(key) == value]
    assert await store.query_episodes_by_metadata(key, value, limit=1000) == want
    assert await store.query_episodes_by_metadata(key, value, limit=3) == want[:3]

    for kw in (
        {"task_type": "debugging"},
        {"domain": "web-api"},
        {"language": "rust"},
        {"domain": "infra", "language": "go"},
        {"task_type": "testing", "domain": "cli-tool", "language": "python"},
        {},
    ):
        got = await store.query_episodes(**kw, limit=1000)  # type: ignore[arg-type]
        exp = [
            e
            for e in newest
            if all(
                getattr(e, "task_type" if k == "task_type" else "context").__getattribute__(k)
                if k != "task_type"
                else e.task_type == v
                for k, v in kw.items()
            )
        ]
        exp = [
            e
            for e in newest
            if kw.get("task_type", e.task_type) == e.task_type
            and kw.get("domain", e.context.domain) == e.context.domain
            and kw.get("language", e.context.language) == e.context.language
        ]
        assert got == exp, kw


async def test_metadata_values_are_matched_literally(store: Store, db_url: str) -> None:
    tricky = ["it's", 'say "hi"', "100%", "a_b", "--", "x' OR '1'='1", "%", "_"]
    eps = [ep(i, metadata={"note": v}) for i, v in enumerate(tricky)]
    await store.store_episodes(eps)
    for e, v in zip(eps, tricky, strict=True):
        assert await store.query_episodes_by_metadata("note", v) == [e]
    assert await store.query_episodes_by_metadata("note", "100") == []
    assert (await counts(db_url))["episodes"] == len(tricky)  # the injection attempt wrote nothing


async def test_patterns_heuristics(store: Store) -> None:
    pats = generate_patterns(40, seed=1)
    assert await store.store_patterns(pats) == 40
    for p in pats[:4]:
        assert await store.get_pattern(p.id) == p  # each kind round-trips as its own kind
    best = sorted(pats, key=lambda p: (p.success_rate, p.id), reverse=True)
    assert await store.search_patterns(limit=1000) == best
    dom = pats[0].domain
    assert await store.search_patterns(domain=dom, min_success_rate=0.3) == [
        p for p in best if p.domain == dom and p.success_rate >= 0.3
    ]
    assert await store.search_patterns(kind="decision_point", domain=dom) == [
        p for p in best if p.domain == dom and isinstance(p.body, DecisionPoint)
    ]
    assert await store.delete_pattern(pats[0].id) and await store.get_pattern(pats[0].id) is None

    hs = generate_heuristics(30, seed=2)
    await store.store_heuristics(hs)
    await store.store_heuristic(hs[0])
    assert await store.get_heuristic(hs[3].id) == hs[3]
    conf = sorted(hs, key=lambda h: (h.confidence, h.id), reverse=True)
    assert await store.list_heuristics(min_confidence=0.5) == [
        h for h in conf if h.confidence >= 0.5
    ]
    assert await store.delete_heuristic(hs[3].id) is True


async def test_embeddings_and_nearest(store: Store) -> None:
    embs = generate_embeddings(200, dim=16, seed=4)
    await store.store_embeddings(embs)
    assert await store.get_embedding(embs[7].id) == embs[7]
    probe = embs[11].vector
    top = await store.nearest(probe, 5)
    assert top[0][0] == embs[11] and top[0][1] == pytest.approx(0.0, abs=1e-6)
    dists = [d for _, d in top]
    assert dists == sorted(dists)
    exact = await store.nearest(probe, 5, exact=True)
    assert [e.id for e, _ in exact] == [e.id for e, _ in top]
    kinds = await store.nearest(probe, 5, owner_kind="pattern")
    assert kinds and all(e.owner_kind == "pattern" for e, _ in kinds)
    # an embedding that moves to another model leaves the first model's search
    moved = Embedding(embs[11].id, "o", "episode", "other-model", list(probe))
    await store.store_embedding(moved)
    assert embs[11].id not in [e.id for e, _ in await store.nearest(probe, 5, model=embs[0].model)]
    assert (await store.nearest(probe, 1, model="other-model"))[0][0] == moved
    assert await store.delete_embedding(moved.id) is True
    assert await store.nearest(probe, 1, model="other-model") == []
    assert await store.nearest([1.0, 2.0, 3.0], 3) == []  # no model of that dimension


async def test_wrong_vector_dimension_writes_nothing(store: Store, db_url: str) -> None:
    await store.store_embedding(Embedding("a", "o", "episode", "m3", [1.0, 2.0, 3.0]))
    before = await counts(db_url)
    with pytest.raises(ValidationError, match="dimension 3"):
        await store.store_embeddings(
            [
                Embedding("b", "o", "episode", "new-model", [1.0]),
                Embedding("c", "o", "episode", "m3", [1.0, 2.0]),
            ]
        )
    with pytest.raises(ValidationError, match="dimension"):
        await store.store_embeddings(
            [
                Embedding("d", "o", "episode", "x", [1.0]),
                Embedding("e", "o", "episode", "x", [1.0, 2.0]),
            ]
        )
    with pytest.raises(ValidationError, match="dimension 3"):
        await store.nearest([1.0, 2.0], 3, model="m3")
    assert await counts(db_url) == before
    # a second store (its own model cache) is stopped by the database trigger
    other = await Store.open(db_url)
    try:
        other._vectors._models["m3"] = (1, 2)  # simulate a stale or lying cache
        with pytest.raises(ConstraintError, match="dimension"):
            await other.store_embedding(Embedding("f", "o", "episode", "m3", [1.0, 2.0]))
    finally:
        await other.close()
    assert await counts(db_url) == before


async def test_bad_input_raises_typed_errors_and_writes_nothing(store: Store, db_url: str) -> None:
    await store.store_episode(ep(0))
    before = await counts(db_url)
    bad_calls = [
        store.store_episodes([ep(1), "not an episode"]),  # type: ignore[list-item]
        store.store_episodes("ep1"),  # type: ignore[arg-type]
        store.store_patterns([ep(1)]),  # type: ignore[list-item]
        store.get_episode(""),
        store.get_episode(None),  # type: ignore[arg-type]
        store.get_episodes("abc"),
        store.query_episodes_since("yesterday"),  # type: ignore[arg-type]
        store.query_episodes_since(0, limit=0),
        store.query_episodes_since(0, limit=True),
        store.query_episodes_by_metadata("", "v"),
        store.query_episodes_by_metadata("k", None),  # type: ignore[arg-type]
        store.query_episodes(domain=""),
        store.search_patterns(kind="bogus"),
        store.search_patterns(min_success_rate=2),
        store.list_heuristics(min_confidence=-1),
        store.nearest([], 3),
        store.nearest([1.0], 0),
    ]
    for call in bad_calls:
        with pytest.raises(ValidationError):
            await call
    assert await counts(db_url) == before


async def test_oversized_payload(db_url: str) -> None:
    store = await Store.open(db_url, config=StoreConfig(max_payload_bytes=4096, compress=False))
    try:
        big = ep(1, description="x" * 10_000)
        with pytest.raises(PayloadTooLarge) as info:
            await store.store_episodes([ep(2), big])
        assert info.value.field == "episodes[1]"
        assert (await counts(db_url))["episodes"] == 0
    finally:
        await store.close()


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 4096])
async def test_batch_failing_at_item_500_leaves_database_unchanged(
    db_url: str, chunk_bytes: int
) -> None:
    store = await Store.open(db_url, config=StoreConfig(chunk_bytes=chunk_bytes))
    try:
        await store.store_episodes(generate_episodes(10, seed=1, id_prefix="old"))
        before = await counts(db_url)
        eps = generate_episodes(600, seed=2)
        # A database-side rejection of the 500th row: the failure happens inside the transaction
        # (with small chunk_bytes, after several chunks were already sent on ws).
        await raw(
            db_url,
            f"CREATE TRIGGER reject_one BEFORE INSERT ON episodes WHEN NEW.id = '{eps[499].id}' "
            "BEGIN SELECT RAISE(ABORT, 'rejected by test'); END",
        )
        with pytest.raises(ConstraintError, match="rejected by test"):
            await store.store_episodes(eps)
        assert await counts(db_url) == before
        # An invalid record (oversized) at position 500 fails before any I/O.
        store2 = await Store.open(db_url, config=StoreConfig(max_payload_bytes=64 << 10))
        try:
            eps[499] = dataclasses.replace(eps[0], id="huge", description="y" * (1 << 20))
            store2.codec.compress = False
            with pytest.raises(PayloadTooLarge, match=r"episodes\[499\]"):
                await store2.store_episodes(eps)
        finally:
            await store2.close()
        assert await counts(db_url) == before
        # and the store still works afterwards
        await raw(db_url, "DROP TRIGGER reject_one")
        assert await store.store_episodes(eps[:20]) == 20
    finally:
        await store.close()


async def test_closed_store(db_url: str) -> None:
    store = await Store.open(db_url)
    await store.close()
    await store.close()  # idempotent
    assert store.closed
    for call in (
        store.store_episode(ep(1)),
        store.get_episode("ep1"),
        store.query_episodes_since(0),
    ):
        with pytest.raises(StoreClosed):
            await call
    assert (await counts(db_url))["episodes"] == 0
    assert "closed" in repr(store)


async def test_concurrent_tasks_share_a_store(store: Store) -> None:
    eps = generate_episodes(200, seed=9)
    await asyncio.gather(*(store.store_episode(e) for e in eps))
    got = await asyncio.gather(*(store.get_episode(e.id) for e in eps))
    assert got == eps


async def test_statement_reuse_is_counted(db_url: str) -> None:
    store = await Store.open(db_url, cache=CacheConfig(enabled=False))
    await store.store_episodes(generate_episodes(5, seed=1))
    for _ in range(20):
        await store.get_episode("ep-1-0000001")
    st = store.get_stats()["statements"]
    assert st["by_name"]["get_episode"] == 20
    if store.backend in ("file", "ws"):
        # prepared (or stored over Hrana) once per shape, reused afterwards
        assert st["reused"] >= 19 and st["prepared"] < st["executions"]
    await store.close()


async def test_schema_migrations_are_idempotent(db_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(db_url) for _ in range(3)))
    for s in stores:
        await s.close()
    rows = await raw(db_url, "SELECT version FROM schema_version ORDER BY version")
    assert rows == [(v,) for v, _ in MIGRATIONS]


async def test_a_version_1_database_is_upgraded_in_place(db_url: str) -> None:
    store = await Store.open(db_url)
    await store.store_episode(ep(1))
    await store.close()
    # make it a v1 database again, with its data
    await raw(db_url, "DROP TABLE dictionaries")
    await raw(db_url, "DELETE FROM schema_version WHERE version > 1")
    store = await Store.open(db_url)
    try:
        assert await store.get_episode("ep1") == ep(1)
    finally:
        await store.close()
    assert await raw(db_url, "SELECT count(*) FROM dictionaries") == [(0,)]
    rows = await raw(db_url, "SELECT version FROM schema_version ORDER BY version")
    assert rows == [(v,) for v, _ in MIGRATIONS]


async def test_change_log_is_written_with_every_write(store: Store, db_url: str) -> None:
    await store.store_episodes([ep(1), ep(2)])
    await store.store_episode(ep(1))
    await store.delete_episode("ep2")
    await store.store_pattern(Pattern("p", ToolSequence(("a",)), "web"))
    await store.store_heuristic(Heuristic("h", "c", "a", 0.5))
    rows = await raw(db_url, "SELECT tbl, key, op FROM change_log ORDER BY seq")
    assert rows == [
        ("episodes", "ep1", "insert"),
        ("episodes", "ep2", "insert"),
        ("episodes", "ep1", "update"),
        ("episodes", "ep2", "delete"),
        ("patterns", "p", "insert"),
        ("heuristics", "h", "insert"),
    ]


async def test_open_errors() -> None:
    with pytest.raises(ConfigError):
        await Store.open("postgres://x")
    with pytest.raises(ConfigError):
        await Store.open("file:/no/such/dir/x.db")
    with pytest.raises(ConfigError):
        StoreConfig(timeout=0)


def test_episode_context_fields_are_columns() -> None:
    # guard against the domain/language columns drifting from the model
    e = ep(1)
    assert isinstance(e.context, TaskContext)


async def test_a_locked_database_is_retried_then_a_typed_busy_error_and_nothing_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    store = await Store.open(f"file:{path}", config=StoreConfig(timeout=0.3))
    try:
        a, b = generate_episodes(2, seed=8)
        await store.store_episode(a)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(DatabaseBusy) as e:
                await store.store_episode(b)
            assert e.value.code.startswith("SQLITE_BUSY")
        finally:
            other.execute("ROLLBACK")
            other.close()
        s = store.get_stats()
        assert s["pool"]["connections_lost"] == 0  # a locked database is no broken connection
        assert await store.get_episode(b.id) is None
        await store.store_episode(b)  # the lock is gone: the same store writes
        assert await store.get_episode(b.id) == b
    finally:
        await store.close()
