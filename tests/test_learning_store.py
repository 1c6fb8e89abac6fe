"""A learning pool inside a Store: its hours and heartbeats in the database, a fleet planning
from them, a read-only Store writing nothing, and the fleet's plans under the server limit.

The history a later Store plans from is written here with ``sqlite3`` (an independent writer),
or by other Store processes on a real sqld; the clock is virtual throughout."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiered import Store
from tiered.forecast.planner import plan_from_history
from tiered.forecast.series import synthetic_trace
from tiered.pool import PoolConfig, Reactive
from tiered.pool.learning import Fleet, Interval, Learning
from tiered.store import StoreConfig

H = 3600.0
T0 = 1_767_225_600.0  # an hour boundary
ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def learning(clock: Clock, **fleet: object) -> Learning:
    return Learning(reactive=Reactive(clock=clock), above=Reactive(clock=clock), clock=clock,
                    monotonic=clock, fleet=Fleet(**fleet))  # type: ignore[arg-type]  # fmt: skip


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as c:
        return c.execute(sql).fetchall()


def seed_history(path: Path, instances: dict[str, np.ndarray], *, seen: float) -> None:
    """Hours of ``instances`` from T0 and their heartbeats, written with sqlite3."""
    with sqlite3.connect(path) as c:
        for name, y in instances.items():
            c.executemany(
                "INSERT INTO pool_traffic(instance, hour, requests, busy_s) VALUES (?, ?, ?, ?)",
                [(name, int(T0 + i * H), int(r), float(r) * 0.02) for i, r in enumerate(y)],
            )
            c.execute("INSERT INTO pool_instances VALUES (?, ?, ?)", (name, int(T0), int(seen)))


async def test_the_pool_writes_its_hours_and_leaves_the_fleet_at_close(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    clock = Clock(T0 + 10)
    store = await Store.open(f"file:{path}", pool=PoolConfig(sizing=learning(clock, instance="a")))
    assert store.traffic is not None and store.traffic.get_stats()["mode"] == "reactive"
    assert rows(path, "SELECT instance FROM pool_instances") == [("a",)]
    for h in range(3):  # three hours of traffic, the pool consulted in each
        clock.t = T0 + h * H + 60
        for i in range(5 + h):
            await store.get_episode(f"nope-{h}-{i}")
        await store.pool.maintain()
    await store.traffic.tick()
    got = rows(path, "SELECT instance, hour, requests FROM pool_traffic ORDER BY hour")
    assert [(i, hr) for i, hr, _ in got] == [("a", int(T0)), ("a", int(T0 + H))]
    assert all(n >= 5 for *_, n in got)  # type: ignore[operator]
    # with the squared hold times of those requests (the holds' spread the planner sizes with)
    assert all(sq > 0 for (sq,) in rows(path, "SELECT hold_sq_s FROM pool_traffic"))  # type: ignore[operator]
    await store.close()
    got = rows(path, "SELECT hour FROM pool_traffic ORDER BY hour")
    assert [h for (h,) in got] == [int(T0), int(T0 + H), int(T0 + 2 * H)]  # the partial hour
    assert rows(path, "SELECT * FROM pool_instances") == []  # left the fleet


async def test_a_new_instance_plans_from_the_fleets_history_at_once(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    await (await Store.open(f"file:{path}")).close()  # the schema
    days = 21
    y = synthetic_trace(days=days, seed=7, base=100_000.0)["requests"].to_numpy()
    now = T0 + days * 86400 + 60
    seed_history(path, {"a": y / 2, "b": y / 2}, seen=now - 30)
    clock = Clock(now)
    store = await Store.open(
        f"file:{path}", pool=PoolConfig(sizing=learning(clock, instance="c", server_limit=12))
    )
    try:
        assert store.traffic is not None
        stats = store.traffic.get_stats()
        assert stats["mode"] == "planned", stats["why"]
        assert stats["live_instances"] == 3 and stats["model"] is not None
        # its share: a third of the fleet's traffic, under a third of the server limit
        sizing = store.pool.sizing
        assert isinstance(sizing, Learning)
        assert sizing.plan is not None and sizing.plan.schedule is not None
        assert max(sizing.plan.schedule.sizes) <= 12 // 3
        alone = plan_from_history(
            [Interval(T0 + i * H, int(r), r * 0.02) for i, r in enumerate(y)], now=now
        )
        assert alone.rates is not None and sizing.plan.rates is not None
        assert sizing.plan.rates[0] == pytest.approx(alone.rates[0] / 3, rel=0.02)
    finally:
        await store.close()


async def test_a_read_only_store_plans_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    await (await Store.open(f"file:{path}")).close()
    y = synthetic_trace(days=21, seed=8, base=100_000.0)["requests"].to_numpy()
    now = T0 + 21 * 86400 + 60
    seed_history(path, {"a": y}, seen=now - 30)
    before = path.read_bytes()
    clock = Clock(now)
    store = await Store.open(
        f"file:{path}",
        config=StoreConfig(read_only=True),
        pool=PoolConfig(sizing=learning(clock, instance="ro")),
    )
    assert store.traffic is not None and store.traffic.get_stats()["mode"] == "planned"
    for h in range(3):
        clock.t = now + h * H
        await store.get_episode("nope")
        await store.pool.maintain()
    await store.traffic.tick()
    await store.close()
    assert path.read_bytes() == before
    assert rows(path, "SELECT count(*) FROM pool_traffic WHERE instance = 'ro'") == [(0,)]


async def test_a_read_only_store_plans_from_a_database_it_cannot_migrate(tmp_path: Path) -> None:
    """A database at schema 3 (before the squared holds were counted): a read-only Store
    cannot add the column, so it reads the hours without them and plans as for exponential
    holds (M/M/c); a writable Store migrates it, and the old rows read as not counted."""
    path = tmp_path / "t.db"
    await (await Store.open(f"file:{path}")).close()
    with sqlite3.connect(path) as c:  # back to schema 3, as an older tiered left it
        c.execute("ALTER TABLE pool_traffic DROP COLUMN hold_sq_s")
        c.execute("DELETE FROM schema_version WHERE version = 4")
    y = synthetic_trace(days=21, seed=8, base=100_000.0)["requests"].to_numpy()
    now = T0 + 21 * 86400 + 60
    seed_history(path, {"a": y}, seen=now - 30)
    before = path.read_bytes()
    clock = Clock(now)
    ro = await Store.open(f"file:{path}", config=StoreConfig(read_only=True),
                          pool=PoolConfig(sizing=learning(clock, instance="ro")))  # fmt: skip
    assert ro.traffic is not None
    plan = ro.traffic.policy.plan
    assert plan is not None and plan.schedule is not None, plan and plan.reason
    assert plan.hold_cv is None  # not counted: sized as M/M/c
    await ro.close()
    assert path.read_bytes() == before
    rw = await Store.open(f"file:{path}", pool=PoolConfig(sizing=learning(clock, instance="b")))
    assert rw.traffic is not None and rw.traffic.policy.plan is not None
    assert rw.traffic.policy.plan.hold_cv is None
    await rw.close()
    assert rows(path, "SELECT count(*) FROM pool_traffic WHERE hold_sq_s IS NULL") == [(y.size,)]


async def test_an_unwritten_pass_keeps_its_hours_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    clock = Clock(T0 + 10)
    store = await Store.open(f"file:{path}", pool=PoolConfig(sizing=learning(clock, instance="a")))
    assert store.traffic is not None
    clock.t = T0 + 60
    await store.get_episode("x")
    await store.pool.maintain()
    clock.t = T0 + H + 60
    await store.pool.maintain()
    with sqlite3.connect(path) as c:  # the table is gone for a moment: the write fails
        c.execute("ALTER TABLE pool_traffic RENAME TO pool_traffic_away")
    with pytest.raises(Exception, match="pool_traffic"):
        await store.traffic.tick()
    with sqlite3.connect(path) as c:
        c.execute("ALTER TABLE pool_traffic_away RENAME TO pool_traffic")
    await store.traffic.tick()
    assert rows(path, "SELECT hour FROM pool_traffic") == [(int(T0),)]
    await store.close()


@settings(max_examples=25, deadline=None)
@given(
    live=st.integers(1, 9),
    limit=st.integers(1, 60),
    base=st.floats(2_000, 2_000_000),
    seed=st.integers(0, 3),
)
def test_the_fleets_planned_connections_stay_under_the_server_limit(
    live: int, limit: int, base: float, seed: int
) -> None:
    y = synthetic_trace(days=15, seed=seed, base=base)["requests"].to_numpy()
    ivs = [Interval(T0 + i * H, int(r), r * 0.05) for i, r in enumerate(y)]
    now = T0 + y.size * H
    plan = plan_from_history(ivs, now=now, instances=live, server_limit=limit, horizon_h=24)
    if plan.schedule is None:
        return
    for h in range(24):  # every member plans the same share: the fleet is live x the plan
        assert live * plan.schedule.at(now + h * H + 1) <= limit


async def test_a_fleet_on_sqld_shares_its_history_across_processes(
    fresh_sqld: object, tmp_path: Path
) -> None:
    """Two Store processes write their hours to one sqld; one is killed (-9) after its last
    pass: it loses only the hour it was in. A third Store, started later, plans from the
    fleet's history at once."""
    import os
    import signal
    import subprocess
    import sys

    from tiered.devserver import SqldProcess

    assert isinstance(fresh_sqld, SqldProcess)
    url = fresh_sqld.ws_url
    await (await Store.open(url)).close()  # the schema, before two processes race for it
    hours = 15 * 24

    def member(name: str, end: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.learning_member", url, name, "0", str(hours), end],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    closing, killed = member("a", "close"), member("b", "hang")
    try:
        assert killed.stdout is not None and killed.stdout.readline().strip() == "ready"
        os.kill(killed.pid, signal.SIGKILL)
        assert closing.wait(timeout=240) == 0
    finally:
        for p in (closing, killed):
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
    from tiered.db.driver import Statement, connect

    conn = await connect(url)
    try:
        q = Statement("t", "SELECT instance, count(*), max(hour) FROM pool_traffic GROUP BY 1")
        got = {str(r[0]): (int(r[1]), int(r[2])) for r in (await conn.execute(q)).rows}  # type: ignore[arg-type]
    finally:
        await conn.close()
    last = int(T0 + (hours - 1) * H)
    assert got["a"] == (hours, last)  # every hour, the last one written at close
    assert got["b"] == (hours - 1, last - int(H))  # killed: only the hour it was in is lost
    clock = Clock(T0 + hours * H + 120)
    third = await Store.open(url, pool=PoolConfig(sizing=learning(clock, instance="c")))
    try:
        assert third.traffic is not None
        stats = third.traffic.get_stats()
        assert stats["mode"] == "planned", stats["why"]
        # a left at close; b's heartbeat is older than live_after_s on this clock: c alone
        assert stats["live_instances"] == 1
    finally:
        await third.close()
