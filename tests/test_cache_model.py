"""Model-based tests (hypothesis stateful): a cached Store behaves exactly like an uncached one.

Random interleavings of writes, deletes, reads and queries go to a cached and an uncached Store,
each on its own fresh database of the same backend; every answer must be the same. One rule runs a
batch of operations as concurrent tasks in each store, then compares the resulting state. A second
machine drives two cached Stores sharing one sqld (on fake timers) and checks that no read is
older than the staleness bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.fakes import FakeClock
from tiered import Embedding, Episode, SyncStore, open_sync
from tiered.cache.config import CacheConfig
from tiered.devserver import SqldProcess, free_port
from tiered.sim import generate_episodes

BASE = generate_episodes(6, seed=11)
IDS = [e.id for e in BASE]
AGENTS = ["planner", "coder", "reviewer"]


def episode(i: int, version: int, agent: int, shift: int) -> Episode:
    e = BASE[i]
    return dataclasses.replace(
        e,
        description=f"v{version}",
        start_time=BASE[0].start_time + shift * 1_000_000,
        end_time=None,
        metadata={"agent": AGENTS[agent]},
        context=dataclasses.replace(e.context, domain=["web-api", "infra"][version % 2]),
    )


episodes = st.builds(
    episode, st.integers(0, 5), st.integers(0, 3), st.integers(0, 2), st.integers(0, 5)
)
ops = st.one_of(
    st.tuples(st.just("store"), episodes),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(st.just("get"), st.sampled_from(IDS)),
    st.tuples(st.just("since"), st.integers(0, 5)),
    st.tuples(st.just("meta"), st.sampled_from(AGENTS)),
)


async def apply(store: Any, op: tuple[str, Any]) -> Any:
    kind, arg = op
    if kind == "store":
        return await store.store_episode(arg)
    if kind == "delete":
        return await store.delete_episode(arg)
    if kind == "get":
        return await store.get_episode(arg)
    if kind == "since":
        return await store.query_episodes_since(BASE[0].start_time + arg * 1_000_000)
    return await store.query_episodes_by_metadata("agent", arg)


async def run_concurrently(store: Any, batch: list[tuple[str, Any]]) -> None:
    await asyncio.gather(*(apply(store, op) for op in batch))


class CachedEqualsUncached(RuleBasedStateMachine):
    url_factory: Any = None

    @initialize()
    def open_stores(self) -> None:
        cached_url, plain_url = self.url_factory()
        self.cached: SyncStore = open_sync(cached_url, cache=CacheConfig(staleness=None))
        self.plain: SyncStore = open_sync(plain_url, cache=CacheConfig(enabled=False))

    def both(self, op: tuple[str, Any]) -> tuple[Any, Any]:
        return (
            self.cached._run(apply(self.cached._store, op)),
            self.plain._run(apply(self.plain._store, op)),
        )

    @rule(op=ops)
    def one_operation(self, op: tuple[str, Any]) -> None:
        a, b = self.both(op)
        assert a == b, op

    @rule(batch=st.lists(ops, min_size=2, max_size=8))
    def concurrent_batch(self, batch: list[tuple[str, Any]]) -> None:
        # commit order of concurrent writes to one id is not defined: keep one writer per id
        seen: set[str] = set()
        batch = [
            op
            for op in batch
            if op[0] not in ("store", "delete") or (_id(op) not in seen and not seen.add(_id(op)))
        ]  # type: ignore[func-returns-value]
        self.cached._run(run_concurrently(self.cached._store, batch))
        self.plain._run(run_concurrently(self.plain._store, batch))

    @rule(vec=st.lists(st.floats(-1, 1), min_size=3, max_size=3).filter(lambda v: any(v)))
    def embeddings_and_nearest(self, vec: list[float]) -> None:
        e = Embedding(f"emb-{round(vec[0], 1)}", "o", "episode", "m3", vec)
        self.cached.store_embedding(e)
        self.plain.store_embedding(e)
        a = [(x.id, round(d, 9)) for x, d in self.cached.nearest(vec, 3)]
        b = [(x.id, round(d, 9)) for x, d in self.plain.nearest(vec, 3)]
        assert a == b

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "cached"):
            return
        assert self.cached.get_episodes(IDS) == self.plain.get_episodes(IDS)

    def teardown(self) -> None:
        if hasattr(self, "cached"):
            self.cached.close()
            self.plain.close()


def _id(op: tuple[str, Any]) -> str:
    return op[1].id if op[0] == "store" else str(op[1])


@pytest.fixture(params=["file", "ws"])
def machine_urls(
    request: pytest.FixtureRequest, tmp_path: Path, sqld_binary: Path
) -> Iterator[Any]:
    procs: list[SqldProcess] = []
    counter = [0]

    def factory() -> tuple[str, str]:
        counter[0] += 1
        urls = []
        for side in ("cached", "plain"):
            if request.param == "file":
                urls.append(f"file:{tmp_path}/{side}{counter[0]}.db")
            else:
                p = SqldProcess(
                    sqld_binary,
                    tmp_path / f"{side}{counter[0]}",
                    free_port(),
                    log_path=tmp_path / f"{side}{counter[0]}.log",
                )
                p.start()
                procs.append(p)
                urls.append(p.ws_url)
        return urls[0], urls[1]

    yield factory
    for p in procs:
        p.stop()


def test_cached_store_equals_uncached_store(machine_urls: Any) -> None:
    CachedEqualsUncached.url_factory = staticmethod(machine_urls)
    run_state_machine_as_test(
        CachedEqualsUncached,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


class SharedServer(RuleBasedStateMachine):
    """Two cached stores on one sqld; every read is checked against the history of writes."""

    url: str = ""
    STALENESS = 1.0

    @initialize()
    def open_stores(self) -> None:
        self.timer = FakeClock(0.0)
        self.stores = [
            open_sync(self.url, timer=self.timer, cache=CacheConfig(staleness=self.STALENESS))
            for _ in range(2)
        ]
        # id -> list of (time written, value); the truth at time t is the last entry <= t
        self.history: dict[str, list[tuple[float, Episode | None]]] = {}
        for s in self.stores:
            s.store_episodes([])
        for i in IDS:
            self.stores[0].delete_episode(i)
            self.history[i] = [(self.timer.t, None)]

    # two ids only, so reads, writes and deletes of one key by both stores interleave often
    @rule(
        which=st.integers(0, 1),
        ep=st.builds(
            episode, st.integers(0, 1), st.integers(0, 3), st.integers(0, 2), st.integers(0, 5)
        ),
    )
    def write(self, which: int, ep: Episode) -> None:
        self.stores[which].store_episode(ep)
        self.history[ep.id].append((self.timer.t, ep))

    @rule(which=st.integers(0, 1), i=st.sampled_from(IDS[:2]))
    def delete(self, which: int, i: str) -> None:
        self.stores[which].delete_episode(i)
        self.history[i].append((self.timer.t, None))

    @rule(dt=st.sampled_from([0.1, 0.4, 0.7, 1.0, 2.5]))
    def time_passes(self, dt: float) -> None:
        self.timer.t += dt

    @rule(i=st.sampled_from(IDS[:2]))
    def read(self, i: str) -> None:
        for store in self.stores:
            got = store.get_episode(i)
            assert _current_within(self.history[i], got, self.timer.t, self.STALENESS), (i, got)

    def teardown(self) -> None:
        if hasattr(self, "stores"):
            for s in self.stores:
                s.close()


def _current_within(h: list[tuple[float, Any]], got: Any, now: float, bound: float) -> bool:
    """Was ``got`` the committed value at some moment of [now - bound, now]?"""
    for n, (t, val) in enumerate(h):
        until = h[n + 1][0] if n + 1 < len(h) else float("inf")
        # a value replaced exactly at now - bound is still acceptable (the poll started then)
        if val == got and t <= now and until >= now - bound:
            return True
    return False


def test_two_stores_sharing_one_sqld_never_read_older_than_the_bound(
    fresh_sqld: SqldProcess,
) -> None:
    SharedServer.url = fresh_sqld.ws_url
    run_state_machine_as_test(
        SharedServer,
        settings=settings(
            max_examples=30,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
