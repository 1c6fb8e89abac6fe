"""The cache layer inside the Store: correct first (races, invalidation, coherence), then fast."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_url
from tests.fakes import FakeClock
from tiered import Episode, Store
from tiered.cache.adaptive import TTLRule
from tiered.cache.config import CacheConfig, RecordCacheConfig
from tiered.db.driver import Statement
from tiered.sim import generate_episodes


class Gate:
    """Pauses the first execution of one statement *after* the database answered."""

    def __init__(self, store: Store, name: str) -> None:
        self.name = name
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.used = False
        self._orig: Callable[..., Awaitable[list[Any]]] = store._rows
        store._rows = self.rows  # type: ignore[method-assign]

    async def rows(self, stmt: Statement, args: Any = (), **kw: Any) -> list[Any]:
        res = await self._orig(stmt, args, **kw)
        if stmt.name == self.name and not self.used:
            self.used = True
            self.reached.set()
            await self.release.wait()
        return res


def reads(store: Store, name: str = "get_episode") -> int:
    return int(store.get_stats()["statements"]["by_name"].get(name, 0))


def variant(ep: Episode, n: int) -> Episode:
    return dataclasses.replace(ep, description=f"version {n}", reward=float(n))


@pytest.fixture(params=["file", "ws"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, tmp_path, request)


async def test_slow_read_miss_racing_a_write_never_installs_the_old_value(url: str) -> None:
    store = await Store.open(url)
    try:
        v1 = generate_episodes(1, seed=1)[0]
        await store.store_episode(v1)
        store._cache.records["episodes"].clear()  # type: ignore[union-attr]
        gate = Gate(store, "get_episode")
        slow = asyncio.create_task(store.get_episode(v1.id))
        await gate.reached.wait()  # the read has the old row in hand
        v2 = variant(v1, 2)
        await store.store_episode(v2)
        # a read that starts after the write must not join the stale in-flight load
        assert await store.get_episode(v1.id) == v2
        gate.release.set()
        assert await slow == v1  # it began before the write: the old value is its answer...
        assert await store.get_episode(v1.id) == v2  # ...but it was not cached
        assert store._cache.records["episodes"].peek(v1.id) == v2  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_query_fill_racing_a_write_is_not_installed(url: str) -> None:
    store = await Store.open(url)
    try:
        eps = generate_episodes(5, seed=2)
        await store.store_episodes(eps[:4])
        gate = Gate(store, "query_episodes_since")
        slow = asyncio.create_task(store.query_episodes_since(0, limit=10))
        await gate.reached.wait()
        await store.store_episode(eps[4])
        gate.release.set()
        assert len(await slow) == 4
        assert await store.query_episodes_since(0, limit=10) == eps
    finally:
        await store.close()


async def test_single_flight_one_load_for_64_callers_of_an_expired_key(url: str) -> None:
    timer = FakeClock()
    store = await Store.open(url, timer=timer, cache=CacheConfig(staleness=None))
    try:
        ep = generate_episodes(1, seed=3)[0]
        await store.store_episode(ep)  # written through: cached
        assert await store.get_episode(ep.id) == ep and reads(store) == 0
        timer.advance(4000.0)  # past any TTL
        before = reads(store)
        hits = store.get_stats()["cache"]["episodes"]["hits"]
        got = await asyncio.gather(*(store.get_episode(ep.id) for _ in range(64)))
        assert got == [ep] * 64
        assert reads(store) - before == 1
        # the 63 others joined the load in flight, or (where the load did not yield: the
        # embedded file) found its value in the cache
        c = store.get_stats()["cache"]
        assert c["single_flight"]["joined"] + c["episodes"]["hits"] - hits >= 63
    finally:
        await store.close()


async def test_negative_caching_and_write_through(url: str) -> None:
    timer = FakeClock()
    store = await Store.open(url, timer=timer, cache=CacheConfig(staleness=None))
    try:
        assert await store.get_episode("nope") is None
        assert await store.get_episode("nope") is None
        assert reads(store) == 1  # the second "not found" came from the cache
        ep = dataclasses.replace(generate_episodes(1, seed=4)[0], id="nope")
        await store.store_episode(ep)
        assert await store.get_episode("nope") == ep and reads(store) == 1
        assert await store.delete_episode("nope") is True
        assert await store.get_episode("nope") is None and reads(store) == 1
        timer.advance(6.0)  # negative entries live 5 s
        assert await store.get_episode("nope") is None and reads(store) == 2
    finally:
        await store.close()


async def test_query_results_are_invalidated_only_by_writes_that_could_change_them(
    url: str,
) -> None:
    store = await Store.open(url, cache=CacheConfig(staleness=None))
    try:
        eps = generate_episodes(50, seed=5)
        await store.store_episodes(eps)
        t0 = eps[25].start_time
        since = await store.query_episodes_since(t0, limit=1000)
        meta = await store.query_episodes_by_metadata("agent", "coder", limit=1000)
        n = reads(store, "query_episodes_since"), reads(store, "query_episodes_by_metadata")

        older = dataclasses.replace(
            eps[0],
            id="older",
            start_time=eps[0].start_time - 1,
            end_time=None,
            metadata={"agent": "planner"},
        )
        await store.store_episode(older)  # before t0, other metadata: changes neither result
        assert await store.query_episodes_since(t0, limit=1000) == since
        assert await store.query_episodes_by_metadata("agent", "coder", limit=1000) == meta
        assert (
            reads(store, "query_episodes_since"),
            reads(store, "query_episodes_by_metadata"),
        ) == n

        newer = dataclasses.replace(older, id="newer", start_time=eps[-1].start_time + 1)
        await store.store_episode(newer)  # after t0: the since() result changes, metadata not
        assert (await store.query_episodes_since(t0, limit=1000))[-1] == newer
        assert reads(store, "query_episodes_since") == n[0] + 1
        assert await store.query_episodes_by_metadata("agent", "coder", limit=1000) == meta
        assert reads(store, "query_episodes_by_metadata") == n[1]

        member = meta[3]
        moved = dataclasses.replace(member, metadata={"agent": "reviewer"})
        await store.store_episode(moved)  # a member leaves the metadata result
        assert member.id not in [
            e.id for e in await store.query_episodes_by_metadata("agent", "coder", limit=1000)
        ]
        await store.delete_episode(since[0].id)  # a deleted member leaves since()
        assert since[0].id not in [e.id for e in await store.query_episodes_since(t0, limit=1000)]
        qs = store.get_stats()["cache"]["queries"]["by_query"]
        assert qs["query_episodes_since"]["hits"] >= 1
    finally:
        await store.close()


async def test_cache_can_be_switched_off_per_record_type(url: str) -> None:
    cfg = CacheConfig(
        episodes=RecordCacheConfig(enabled=False), queries=RecordCacheConfig(enabled=False)
    )
    store = await Store.open(url, cache=cfg)
    try:
        ep = generate_episodes(1, seed=6)[0]
        await store.store_episode(ep)
        for _ in range(3):
            assert await store.get_episode(ep.id) == ep
        assert reads(store) == 3
        assert store.get_stats()["cache"]["episodes"] is None
    finally:
        await store.close()


async def test_two_stores_on_one_sqld_see_each_other_within_the_staleness_bound(
    fresh_sqld: Any,
) -> None:
    timer = FakeClock()
    a = await Store.open(fresh_sqld.ws_url, timer=timer, cache=CacheConfig(staleness=1.0))
    b = await Store.open(fresh_sqld.http_url, cache=CacheConfig(enabled=False))
    try:
        v1 = generate_episodes(1, seed=7)[0]
        await b.store_episode(v1)
        assert await a.get_episode(v1.id) == v1
        assert await a.query_episodes_by_metadata("agent", v1.metadata["agent"]) == [v1]
        v2 = dataclasses.replace(variant(v1, 2), metadata={"agent": "someone-else"})
        await b.store_episode(v2)
        timer.advance(0.5)  # within the bound: a may still answer from its cache
        assert await a.get_episode(v1.id) in (v1, v2)
        timer.advance(0.5)  # the bound has passed: a must see b's write
        assert await a.get_episode(v1.id) == v2
        assert await a.query_episodes_by_metadata("agent", v1.metadata["agent"]) == []
        await b.delete_episode(v1.id)
        timer.advance(1.0)
        assert await a.get_episode(v1.id) is None
        # a's own writes do not evict its own entries when the poll sees them
        own = variant(v1, 3)
        await a.store_episode(own)
        timer.advance(1.0)
        before = reads(a)
        assert await a.get_episode(own.id) == own and reads(a) == before
        assert a.get_stats()["cache"]["coherence"]["remote_invalidations"] >= 1
    finally:
        await a.close()
        await b.close()


async def test_a_miss_sends_its_due_poll_with_its_read_in_one_request(fresh_sqld: Any) -> None:
    """A read whose change-log poll is due and that misses sends both in one request (one round
    trip over a network, not two); a hit polls first; either way b's writes are seen."""
    timer = FakeClock()
    a = await Store.open(fresh_sqld.ws_url, timer=timer, cache=CacheConfig(staleness=1.0))
    b = await Store.open(fresh_sqld.ws_url, cache=CacheConfig(enabled=False))
    calls: list[str] = []
    for name in ("read", "read_many"):
        real = getattr(a._db, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kw)

        setattr(a._db, name, spy)
    try:
        v1, other = generate_episodes(2, seed=9)
        await b.store_episodes([v1, other])
        assert await a.get_episode(v1.id) == v1  # the first read: a miss, its poll folded
        assert calls == ["read_many"]
        # (that poll saw v1 written: the fill it raced is not cached; the next read caches it)
        assert await a.get_episode(v1.id) == v1 and calls == ["read_many", "read"]
        await b.store_episode(v2 := variant(v1, 2))
        timer.advance(1.5)
        calls.clear()
        assert await a.get_episode(other.id) == other  # a miss: one request, poll included
        assert calls == ["read_many"]
        assert await a.get_episode(v1.id) == v2  # the poll that rode along dropped v1
        timer.advance(1.5)
        await b.store_episode(v3 := variant(v1, 3))
        calls.clear()
        assert await a.get_episode(v1.id) == v3  # a hit whose poll is due: polled first
        assert calls[0] == "read"  # (the poll; then v1's fresh read, a miss)
        got = await a.query_episodes_since(0, limit=10)  # a query miss folds the same way
        assert {e.id for e in got} == {v1.id, other.id}
        stats = a.get_stats()["cache"]["coherence"]
        assert stats["polls_folded"] >= 2 and stats["remote_invalidations"] >= 2
    finally:
        await a.close()
        await b.close()


async def test_staleness_zero_checks_on_every_read(fresh_sqld: Any) -> None:
    a = await Store.open(fresh_sqld.ws_url, cache=CacheConfig(staleness=0.0))
    b = await Store.open(fresh_sqld.ws_url, cache=CacheConfig(enabled=False))
    try:
        v1 = generate_episodes(1, seed=8)[0]
        await a.store_episode(v1)
        for n in range(2, 6):
            vn = variant(v1, n)
            await b.store_episode(vn)
            assert await a.get_episode(v1.id) == vn
    finally:
        await a.close()
        await b.close()


async def test_xfetch_refreshes_hot_entries_before_they_expire(url: str) -> None:
    timer = FakeClock()
    rule = TTLRule(base=60.0, min=10.0, max=600.0, jitter=0.0)
    cfg = CacheConfig(staleness=None, xfetch_beta=1.0, episodes=RecordCacheConfig(ttl=rule))
    store = await Store.open(url, timer=timer, cache=cfg)
    try:
        ep = generate_episodes(1, seed=9)[0]
        await store.store_episode(ep)
        store._cache._load_time["episodes"] = 30.0  # loads "take" 30 s: refresh well ahead
        timer.advance(59.0)
        for _ in range(20):
            assert await store.get_episode(ep.id) == ep
        await store._cache.settle()  # let the background refresh finish (no time passes)
        assert store.get_stats()["cache"]["early_refreshes"] >= 1
        timer.advance(2.0)  # past the original expiry: still a hit after the refresh
        before = reads(store)
        assert await store.get_episode(ep.id) == ep and reads(store) == before
    finally:
        await store.close()


async def test_cache_statistics_are_reported(url: str) -> None:
    store = await Store.open(url)
    try:
        eps = generate_episodes(20, seed=10)
        await store.store_episodes(eps)
        for e in eps:
            await store.get_episode(e.id)
        await store.get_episodes([e.id for e in eps] + ["missing"])
        snap = store.get_stats()["cache"]
        assert snap["episodes"]["hits"] >= 20 and snap["episodes"]["entries"] >= 20
        assert snap["episodes"]["bytes"] > 0 and "evictions" in snap["episodes"]
    finally:
        await store.close()


async def test_single_flight_runs_a_lone_load_in_the_caller_and_survives_cancellations() -> None:
    from tiered.cache.flight import SingleFlight

    flights: SingleFlight[str] = SingleFlight()
    calls: list[asyncio.Task[object] | None] = []
    gate = asyncio.Event()

    async def load() -> str:
        calls.append(asyncio.current_task())
        await gate.wait()
        return "v"

    # alone: the load runs in the caller's own task (no task made, nothing scheduled)
    gate.set()
    me = asyncio.current_task()
    assert await flights.run("k", 0, lambda t: True, load) == "v" and calls == [me]
    # the first caller cancelled: a joiner loads again and gets the value
    gate.clear()
    first = asyncio.ensure_future(flights.run("k", 0, lambda t: True, load))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(flights.run("k", 0, lambda t: True, load))
    third = asyncio.ensure_future(flights.run("k", 0, lambda t: True, load))
    await asyncio.sleep(0)
    first.cancel()
    for _ in range(3):  # the joiners wake: one loads again, the other joins it
        await asyncio.sleep(0)
    gate.set()
    assert await second == "v" and await third == "v"
    assert first.cancelled() and flights.loads == 3 and flights.joined >= 2
    # a joiner cancelled: the load goes on for the others; a failure reaches every caller
    gate.clear()

    async def failing() -> str:
        await gate.wait()
        raise ValueError("boom")

    lead = asyncio.ensure_future(flights.run("f", 0, lambda t: True, failing))
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(flights.run("f", 0, lambda t: True, failing))
    joiner = asyncio.ensure_future(flights.run("f", 0, lambda t: True, failing))
    await asyncio.sleep(0)
    quitter.cancel()
    gate.set()
    for t in (lead, joiner):
        with pytest.raises(ValueError, match="boom"):
            await t
    assert quitter.cancelled()


async def test_a_lone_miss_loads_inline_and_its_joiners_outlive_its_cancellation() -> None:
    from tiered.cache.layer import CacheLayer

    layer = CacheLayer(CacheConfig(staleness=None))
    gate = asyncio.Event()
    calls: list[asyncio.Task[object] | None] = []

    async def load() -> str:
        calls.append(asyncio.current_task())
        await gate.wait()
        return "v"

    def flight() -> Any:
        return layer.flights.joinable(("episodes", "k"), lambda t: True)

    first = asyncio.ensure_future(layer.read("episodes", "k", load))
    await asyncio.sleep(0)
    assert calls == [first] and flight() is not None and flight().future is None  # alone
    second = asyncio.ensure_future(layer.read("episodes", "k", load))
    third = asyncio.ensure_future(layer.read("episodes", "k", load))
    await asyncio.sleep(0)
    assert flight().future is not None  # made by the first caller to join
    first.cancel()
    for _ in range(3):  # the joiners wake: one loads again, the other joins it
        await asyncio.sleep(0)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(second, third), 5) == ["v", "v"]
    assert first.cancelled() and len(calls) == 2 and flight() is None
    assert await layer.read("episodes", "k", load) == "v" and len(calls) == 2  # cached

    # the lone caller's load fails: the failure reaches its joiner, and nothing is cached
    gate.clear()

    async def failing() -> str:
        await gate.wait()
        raise ValueError("boom")

    lead = asyncio.ensure_future(layer.read("episodes", "f", failing))
    await asyncio.sleep(0)
    joiner = asyncio.ensure_future(layer.read("episodes", "f", failing))
    await asyncio.sleep(0)
    gate.set()
    for t in (lead, joiner):
        with pytest.raises(ValueError, match="boom"):
            await asyncio.wait_for(t, 5)
    assert layer.records["episodes"] is not None and "f" not in layer.records["episodes"]
