"""Group commit: concurrent writes merged into one transaction, each still all-or-nothing.

The unit tests drive :class:`GroupCommit` over a real embedded database; a commit function that
waits on a gate keeps the first group in flight, so queueing, cancellation and failure are
exact (no timing). The Store tests run real writers concurrently on the embedded file and sqld.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tiered import Store
from tiered.db.driver import Connection, Statement, Step, connect
from tiered.db.groupcommit import GroupCommit, _Pending, merged
from tiered.errors import DatabaseError, DatabaseUnavailable, StoreClosed
from tiered.sim import generate_episodes

from .conftest import make_url

CREATE = Statement("create", "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)", reuse=False)
PUT = Statement("put", "INSERT INTO t(k, v) VALUES (?, ?)")
KEYS = Statement("keys", "SELECT k FROM t ORDER BY k")


def put(*keys: int, v: str | None = "x") -> list[Step]:
    return [(PUT, (k, v)) for k in keys]


class Harness:
    """A GroupCommit over a real connection. While ``held``, every group waits for ``release``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.groups: list[int] = []  # statements per commit call
        self.held = False
        self.release = asyncio.Event()
        self.fail_with: BaseException | None = None
        self.gc: GroupCommit[int] = GroupCommit(self.commit, asyncio.Semaphore(1), 1 << 20)

    async def commit(self, steps: list[Step]) -> int:
        self.groups.append(len(steps))
        if self.held:
            await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        await self.conn.transaction(steps, chunk_bytes=1 << 20)
        return len(steps)

    async def keys(self) -> list[int]:
        return [int(r[0]) for r in (await self.conn.execute(KEYS)).rows]  # type: ignore[arg-type]

    async def first_group_in_flight(self, *keys: int) -> asyncio.Task[object]:
        """Submit ``keys`` as one writer whose group stays in flight until ``release``."""
        self.held = True
        task = asyncio.create_task(self.gc.submit(put(*keys)))
        for _ in range(10):
            await asyncio.sleep(0)
        assert self.groups == [len(keys)]
        return task  # type: ignore[return-value]

    async def queued(self, n: int) -> None:
        for _ in range(100):
            if sum(not e.abandoned for e in self.gc._queue) == n:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{len(self.gc._queue)} queued, expected {n}")

    def go(self) -> None:
        self.held = False
        self.release.set()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    conn = await connect(f"file:{tmp_path / 'g.db'}")
    await conn.execute(CREATE)
    harness = Harness(conn)
    yield harness
    await harness.gc.close()
    await conn.close()


async def test_writers_that_wait_behind_a_group_commit_together(h: Harness) -> None:
    first = await h.first_group_in_flight(0)
    rest = [asyncio.create_task(h.gc.submit(put(k))) for k in range(1, 21)]
    await h.queued(20)
    h.go()
    await first
    done = await asyncio.gather(*rest)
    assert h.groups == [1, 20]  # the 20 that queued meanwhile: one transaction
    assert {c.result for c in done} == {20}  # every member receives its group's result
    assert all(c.waited >= 0 for c in done)
    assert await h.keys() == list(range(21))
    assert h.gc.counters.as_dict() == {
        "groups": 2,
        "transactions": 21,
        "largest_group": 20,
        "mean_group": 10.5,
        "groups_split": 0,
    }


async def test_a_faulty_member_fails_alone_and_the_others_commit(h: Harness) -> None:
    first = await h.first_group_in_flight(0)
    good = [asyncio.create_task(h.gc.submit(put(k, k + 100))) for k in (1, 2)]
    bad = asyncio.create_task(h.gc.submit(put(3, 4, v=None)))  # NOT NULL fails on its 1st row
    more = asyncio.create_task(h.gc.submit(put(5)))
    await h.queued(4)
    h.go()
    await first
    await asyncio.gather(*good, more)
    with pytest.raises(DatabaseError):
        await bad
    # the group of 7 statements failed, then each member ran alone: 2 + 2 + 2 + 1
    assert h.groups == [1, 7, 2, 2, 2, 1]
    assert await h.keys() == [0, 1, 2, 5, 101, 102]  # nothing of the faulty writer
    assert h.gc.counters.split == 1


async def test_an_unknown_outcome_reaches_every_member_of_the_group(h: Harness) -> None:
    first = await h.first_group_in_flight(0)
    h.fail_with = DatabaseUnavailable("link dropped mid-commit", code="TIMEOUT")
    members = [asyncio.create_task(h.gc.submit(put(k))) for k in (1, 2, 3)]
    await h.queued(3)
    h.go()
    for t in [first, *members]:
        with pytest.raises(DatabaseUnavailable, match="mid-commit"):
            await t
    assert h.groups == [1, 3]  # not split: these may have committed, so no retry
    h.fail_with = None
    await h.gc.submit(put(9))  # and the queue keeps working
    assert await h.keys() == [9]


async def test_a_writer_cancelled_while_queued_is_not_written(h: Harness) -> None:
    first = await h.first_group_in_flight(0)
    keep = asyncio.create_task(h.gc.submit(put(1)))
    drop = asyncio.create_task(h.gc.submit(put(2)))
    await h.queued(2)
    drop.cancel()
    await h.queued(1)
    h.go()
    await asyncio.gather(first, keep)
    assert drop.cancelled()
    assert await h.keys() == [0, 1]
    assert h.groups == [1, 1]


async def test_cancelling_a_leader_does_not_cancel_its_group(h: Harness) -> None:
    first = await h.first_group_in_flight(0)
    member = asyncio.create_task(h.gc.submit(put(1)))
    await h.queued(1)
    h.go()
    # the second writer is now leader of group [1]; cancel it while that group commits
    h.held = True
    h.release = asyncio.Event()
    await first
    for _ in range(10):
        await asyncio.sleep(0)
    assert h.groups == [1, 1]
    member.cancel()
    later = asyncio.create_task(h.gc.submit(put(2)))
    await h.queued(1)
    h.go()
    await later  # the gate passed on only after the cancelled leader's group finished
    assert member.cancelled()
    assert await h.keys() == [0, 1, 2]  # the cancelled leader's write committed
    assert h.groups == [1, 1, 1]


async def test_closing_fails_queued_writers(h: Harness) -> None:
    first = await h.first_group_in_flight(0)
    queued = asyncio.create_task(h.gc.submit(put(1)))
    await h.queued(1)
    await h.gc.close()
    with pytest.raises(DatabaseUnavailable, match="while a write was committing"):
        await first  # in flight: its outcome is unknown
    with pytest.raises(StoreClosed):
        await queued  # never sent
    assert await h.keys() == []


async def test_max_group_1_commits_every_transaction_alone(h: Harness) -> None:
    h.gc.max_group = 1
    first = await h.first_group_in_flight(0)
    rest = [asyncio.create_task(h.gc.submit(put(k))) for k in (1, 2, 3)]
    await h.queued(3)
    h.go()
    await asyncio.gather(first, *rest)
    assert h.groups == [1, 1, 1, 1]
    assert await h.keys() == [0, 1, 2, 3]


@pytest.mark.parametrize("backend", ["file", "ws"])
async def test_concurrent_store_writes_are_grouped_and_all_stored(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with await Store.open(make_url(backend, tmp_path, request)) as store:
        store.metrics.keep_samples()
        eps = generate_episodes(200, seed=3)
        await asyncio.gather(*(store.store_episode(e) for e in eps))
        stats = store.get_stats()["statements"]["group_commit"]
        assert stats["transactions"] == 200
        assert stats["groups"] < 200 and stats["largest_group"] > 1
        got = await store.get_episodes([e.id for e in eps])
        assert got == eps
        # a follower's phases: its wait, then its group's connection and round trip
        samples = [p for op, _, p in store.metrics.samples or [] if op == "store_episode"]
        assert len(samples) == 200
        assert all(p["acquire"] >= 0 and p["round_trip"] > 0 for p in samples)


CLEAR = Statement("clear", "DELETE FROM t WHERE k = ?")


def member(steps: list[Step], order: tuple[Statement, ...], *keys: str) -> _Pending[int]:
    loop = asyncio.get_event_loop()
    return _Pending(steps, 0, loop.create_future(), 0.0, order, frozenset(keys))


async def test_writes_of_one_kind_on_disjoint_records_merge_statement_by_statement() -> None:
    order = (CLEAR, PUT)
    a = member([(CLEAR, (1,)), (PUT, (1, "a"))], order, "1")
    b = member([(CLEAR, (2,)), (PUT, (2, "b"))], order, "2")
    c = member([(CLEAR, (1,)), (PUT, (1, "c"))], order, "1")  # the same record as a's
    d = member([(PUT, (3, "d")), (CLEAR, (3,))], order, "3")  # not in its declared order
    e = member([(PUT, (4, "e"))], (), "4")  # no order declared
    assert merged([a, b]) == [(CLEAR, (1,)), (CLEAR, (2,)), (PUT, (1, "a")), (PUT, (2, "b"))]
    # c touches a's record: a run ends before it (c's clear must follow a's put)
    assert merged([a, b, c]) == [*merged([a, b]), *c.steps]
    assert merged([a, d, e, b]) == [*a.steps, *d.steps, *e.steps, *b.steps]


@pytest.mark.parametrize("backend", ["file", "ws"])
async def test_grouped_writes_of_one_record_end_as_the_last_one_wrote_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Concurrent writers of the same episode, with different metadata: merging never lets an
    earlier writer's metadata survive a later writer's (its clear comes after it)."""
    async with await Store.open(make_url(backend, tmp_path, request)) as store:
        base, *others = generate_episodes(40, seed=5)
        versions = [
            dataclasses.replace(base, description=f"v{i}", metadata={f"k{i}": "x"})
            for i in range(8)
        ]
        pairs = zip(versions, others, strict=False)
        writes = [store.store_episode(e) for pair in pairs for e in pair]
        await asyncio.gather(*writes)
        assert store.get_stats()["statements"]["group_commit"]["largest_group"] > 1
        got = await store.get_episode(base.id)
        assert got == versions[-1]
        for i in range(7):  # earlier writers' metadata: cleared by the later writers
            assert await store.query_episodes_by_metadata(f"k{i}", "x") == []
        assert await store.query_episodes_by_metadata("k7", "x") == [versions[-1]]
        assert await store.get_episodes([e.id for e in others[:8]]) == others[:8]


def _slow_preparation(monkeypatch: pytest.MonkeyPatch, slow: dict[str, float]) -> None:
    """Writes of episodes whose description is in ``slow`` yield for that many seconds while
    they prepare (as a large batch's encoding yields between slices, or a GC pause meets it)."""
    from tiered.store import core

    frames = core.Store._frames

    async def prepare(self: Store, table: str, records: list[object]) -> list[bytes]:
        for r in records:
            delay = slow.get(getattr(r, "description", ""))
            if delay is not None:
                await asyncio.sleep(delay)
        return await frames(self, table, records)

    monkeypatch.setattr(core.Store, "_frames", prepare)


async def test_a_slow_encoding_does_not_reorder_concurrent_writes_of_one_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent writers of one episode, the third one's encoding slow and yielding: the last
    writer still wins. Without the write order the later writers joined the queue first, and
    the third writer's value was kept."""
    _slow_preparation(monkeypatch, {"v2": 0.005})
    async with await Store.open(f"file:{tmp_path / 'w.db'}") as store:
        base = generate_episodes(1, seed=5)[0]
        versions = [dataclasses.replace(base, description=f"v{i}") for i in range(8)]
        await asyncio.gather(*(store.store_episode(e) for e in versions))
        assert await store.get_episode(base.id) == versions[-1]


async def test_a_write_cancelled_before_its_turn_lets_no_later_write_overtake_an_earlier_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 prepares slowly; v2 waits for its turn behind it and is cancelled; v3 must still join
    after v1 (a cancelled write that passed its turn on at once let v3 in first: v1 kept)."""
    _slow_preparation(monkeypatch, {"v1": 0.02})
    async with await Store.open(f"file:{tmp_path / 'w.db'}") as store:
        base = generate_episodes(1, seed=6)[0]
        v = [dataclasses.replace(base, description=f"v{i}") for i in range(4)]
        first = asyncio.create_task(store.store_episode(v[1]))
        second = asyncio.create_task(store.store_episode(v[2]))
        third = asyncio.create_task(store.store_episode(v[3]))
        await asyncio.sleep(0.005)  # all three started; v1 is still preparing
        second.cancel()
        await asyncio.gather(first, third)
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await store.get_episode(base.id) == v[3]


async def test_a_delete_called_after_a_slowly_prepared_write_of_its_record_comes_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """store(v1) prepares slowly; delete, called after it, must not run first (the write
    would then bring the record back)."""
    _slow_preparation(monkeypatch, {"v1": 0.01})
    async with await Store.open(f"file:{tmp_path / 'w.db'}") as store:
        ep = dataclasses.replace(generate_episodes(1, seed=7)[0], description="v1")
        stored = asyncio.create_task(store.store_episode(ep))
        await asyncio.sleep(0)  # the write has started preparing
        assert await store.delete_episode(ep.id)  # it came after the write: the record existed
        await stored
        assert await store.get_episode(ep.id) is None


async def test_the_first_concurrent_writes_of_a_new_embedding_model_keep_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes of one embedding with a model the store has not seen each look the model up
    (a read; the first one registers it, a write) before joining the queue, the first call's
    lookup slowest here; the last call still wins (without the write order the first call
    joined last and its value was kept)."""
    from tiered.model import Embedding
    from tiered.store.vectors import Vectors

    lookup = Vectors.model
    calls = 0

    async def model(self: Vectors, name: str, dim: int | None, now: int) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.01)
        return await lookup(self, name, dim, now)

    monkeypatch.setattr(Vectors, "model", model)
    async with await Store.open(f"file:{tmp_path / 'w.db'}") as store:
        versions = [
            Embedding("emb-1", "ep-1", "episode", "model-new", [float(i)] * 8) for i in range(8)
        ]
        await asyncio.gather(*(store.store_embedding(e) for e in versions))
        assert await store.get_embedding("emb-1") == versions[-1]
