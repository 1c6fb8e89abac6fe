"""The pool on embedded connections and a virtual clock, and the sizing policies on their own.

Nothing here sleeps to let time pass: the pool's clock is a FakeClock and maintenance passes are
run by hand (``pool.maintain()``), as the background task would run them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tiered.db.driver import Connection, Statement, connect
from tiered.devserver import free_port
from tiered.errors import (
    ConfigError,
    DatabaseUnavailable,
    PoolClosed,
    PoolExhausted,
    PoolTimeout,
    ValidationError,
)
from tiered.pool import (
    Fixed,
    Hybrid,
    Pool,
    PoolConfig,
    PoolLoad,
    Predictive,
    Reactive,
    Schedule,
)

from .fakes import FakeClock

SELECT = Statement("one", "SELECT 1")


def make_pool(tmp_path: Path, clock: FakeClock, **kw: object) -> Pool[Connection]:
    url = f"file:{tmp_path / 'pool.db'}"
    kw.setdefault("keepalive", 5.0)
    return Pool(lambda: connect(url), PoolConfig(**kw), name="test-pool", clock=clock, seed=1)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def pool(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Pool[Connection]]:
    p = make_pool(tmp_path, clock, min_size=2, max_size=4, sizing=Fixed(2))
    await p.open(background=False)
    yield p
    await p.close()


async def test_open_connects_min_size_and_reuses_lifo(pool: Pool[Connection]) -> None:
    assert pool.size == 2 and pool.get_stats()["connections_num"] == 2
    async with pool.connection() as a, pool.connection() as b:
        assert a is not b
    # a was returned last (the inner block exits first), so it is on top of the idle stack
    async with pool.connection() as c:
        assert c is a
        assert (await c.execute(SELECT)).rows == [(1,)]
    for _ in range(100):
        async with pool.connection() as c:
            assert c is a
    assert pool.get_stats()["connections_num"] == 2  # nothing new was opened


async def test_health_check_only_for_connections_not_used_recently(
    pool: Pool[Connection], clock: FakeClock
) -> None:
    async with pool.connection():
        pass
    assert pool.get_stats()["pings"] == 0
    clock.advance(pool.config.check_after + 0.1)
    async with pool.connection():
        pass
    assert pool.get_stats()["pings"] == 1


async def test_dead_idle_connection_is_replaced_on_borrow(
    pool: Pool[Connection], clock: FakeClock
) -> None:
    async with pool.connection() as c:
        pass
    await c.close()  # dies behind the pool's back
    clock.advance(pool.config.check_after + 0.1)
    async with pool.connection() as d:
        assert d is not c and (await d.execute(SELECT)).rows == [(1,)]
    s = pool.get_stats()
    assert s["pings_failed"] == 1 and s["connections_lost"] == 1


async def test_sql_errors_keep_the_connection_transport_errors_discard_it(
    pool: Pool[Connection],
) -> None:
    with pytest.raises(ValidationError):
        async with pool.connection() as c:
            raise ValidationError("x", "bad input")
    async with pool.connection() as again:
        assert again is c
    with pytest.raises(DatabaseUnavailable):
        async with pool.connection() as c2:
            raise DatabaseUnavailable("link dropped")
    await pool.wait()
    async with pool.connection() as c3, pool.connection() as c4:
        assert c2 not in (c3, c4)
    assert pool.get_stats()["connections_lost"] == 1 and pool.size == 2


async def test_timeout_names_the_pool(tmp_path: Path, clock: FakeClock) -> None:
    p = make_pool(tmp_path, clock, min_size=1, max_size=1)
    await p.open(background=False)
    try:
        async with p.connection():
            with pytest.raises(PoolTimeout, match="test-pool") as e:
                async with p.connection(timeout=0):
                    pass
            assert e.value.pool == "test-pool"
        assert p.get_stats()["requests_timeouts"] == 1
        async with p.connection() as c:  # the pool is fine afterwards
            await c.execute(SELECT)
    finally:
        await p.close()


async def test_max_waiting_refuses_at_once(tmp_path: Path, clock: FakeClock) -> None:
    p = make_pool(tmp_path, clock, min_size=1, max_size=1, max_waiting=1)
    await p.open(background=False)
    try:
        async with p.connection():
            waiter = asyncio.create_task(p.connection().__aenter__())
            await asyncio.sleep(0)
            with pytest.raises(PoolExhausted, match="max_waiting=1"):
                async with p.connection():
                    pass
        conn = await waiter  # the waiter got the connection when it came back
        assert conn is not None
        p._release(next(iter(p._lent)), None)
    finally:
        await p.close()


async def test_waiters_are_served_in_order_and_cancelled_ones_take_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    p = make_pool(tmp_path, clock, min_size=1, max_size=1)
    await p.open(background=False)
    order: list[int] = []

    async def user(i: int) -> None:
        async with p.connection():
            order.append(i)

    try:
        async with p.connection():
            tasks = [asyncio.create_task(user(i)) for i in range(1000)]
            await asyncio.sleep(0)
            for t in tasks[::2]:
                t.cancel()  # cancelled mid-acquire
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order == list(range(1, 1000, 2))
        s = p.get_stats()
        assert s["pool_in_use"] == 0 and s["requests_waiting"] == 0 and p.size == 1
        assert s["connections_num"] == 1
    finally:
        await p.close()


async def test_cancel_at_the_moment_of_handoff_returns_the_connection(
    tmp_path: Path, clock: FakeClock
) -> None:
    p = make_pool(tmp_path, clock, min_size=1, max_size=1)
    await p.open(background=False)
    try:
        lease = p.connection()
        await lease.__aenter__()
        waiter = asyncio.create_task(p.connection().__aenter__())
        await asyncio.sleep(0)
        await lease.__aexit__(None, None, None)  # hands the connection to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert p.get_stats()["pool_in_use"] == 0 and p.get_stats()["pool_available"] == 1
    finally:
        await p.close()


async def test_keepalive_pings_idle_connections(pool: Pool[Connection], clock: FakeClock) -> None:
    await pool.maintain()
    assert pool.get_stats()["pings"] == 0
    clock.advance(5.0)
    await pool.maintain()
    assert pool.get_stats()["pings"] == 2 and pool.size == 2


async def test_lifetime_is_jittered_and_expired_connections_are_recycled(
    tmp_path: Path, clock: FakeClock
) -> None:
    p = make_pool(tmp_path, clock, min_size=3, max_size=3, max_lifetime=100.0, lifetime_jitter=0.5)
    await p.open(background=False)
    try:
        lifetimes = sorted(s.expires - s.created for s in p._idle)
        assert all(50.0 <= t <= 100.0 for t in lifetimes) and len(set(lifetimes)) == 3
        before = [s.conn for s in p._idle]  # held, so their ids cannot be reused
        clock.advance(100.0)
        await p.maintain()
        await p.wait()
        assert p.get_stats()["connections_recycled"] == 3 and p.size == 3
        assert not {id(c) for c in before} & {id(s.conn) for s in p._idle}
    finally:
        await p.close()


async def test_idle_connections_past_max_idle_are_recycled(
    tmp_path: Path, clock: FakeClock
) -> None:
    p = make_pool(tmp_path, clock, min_size=1, max_size=4, max_idle=60.0, sizing=Fixed(2))
    await p.open(background=False)
    try:
        await p.wait()
        assert p.size == 2
        clock.advance(61.0)
        await p.maintain()
        await p.wait()
        assert p.get_stats()["connections_recycled"] == 2 and p.size == 2
    finally:
        await p.close()


async def test_close_fails_waiters_and_refuses_new_requests(
    tmp_path: Path, clock: FakeClock
) -> None:
    p = make_pool(tmp_path, clock, min_size=1, max_size=1)
    await p.open(background=False)
    lease = p.connection()
    conn = await lease.__aenter__()
    waiter = asyncio.create_task(p.connection().__aenter__())
    await asyncio.sleep(0)
    closing = asyncio.create_task(p.close(timeout=5.0))
    await asyncio.sleep(0)
    with pytest.raises(PoolClosed):
        await waiter
    with pytest.raises(PoolClosed):
        async with p.connection():
            pass
    await lease.__aexit__(None, None, None)  # the lent connection comes back: close finishes
    await closing
    assert conn.closed and p.size == 0


async def test_drain_replaces_idle_now_and_lent_on_return(pool: Pool[Connection]) -> None:
    lease = pool.connection()
    lent = await lease.__aenter__()
    idle = pool._idle[0].conn
    await pool.drain()
    await pool.wait()
    assert idle.closed
    await lease.__aexit__(None, None, None)
    await pool.wait()
    assert lent.closed and pool.size == 2
    assert pool.get_stats()["connections_recycled"] == 2


async def test_outage_fails_fast_with_the_cause_then_recovers(clock: FakeClock) -> None:
    port = free_port()  # nothing listens here yet
    slept: list[float] = []

    async def no_wait(dt: float) -> None:
        slept.append(dt)
        await asyncio.sleep(0)

    p: Pool[Connection] = Pool(
        lambda: connect(f"http://127.0.0.1:{port}", timeout=2.0),
        # one retry, then give up until the next request
        PoolConfig(min_size=0, max_size=2, reconnect_timeout=0.0),
        name="down",
        clock=clock,
        sleep=no_wait,
        seed=3,
    )
    await p.open(background=False)
    try:
        with pytest.raises(DatabaseUnavailable, match="cannot connect"):
            async with p.connection():
                pass
        # while the outage lasts a request fails at once, naming the pool and the cause
        with pytest.raises(DatabaseUnavailable, match="'down': database unavailable"):
            async with p.connection():
                pass
        await asyncio.sleep(0.05)  # let the (non-sleeping) reconnect attempts give up
        assert p.get_stats()["outage"] and p.get_stats()["connections_errors"] >= 2
        assert slept and all(0 < s <= p.config.backoff_max for s in slept)
        assert p.size == 0 and not p._lent
    finally:
        await p.close()


async def test_a_tight_retry_loop_during_an_outage_does_not_starve_the_reconnect(
    tmp_path: Path, clock: FakeClock
) -> None:
    url = f"file:{tmp_path / 'flaky.db'}"
    attempts = 0

    async def flaky() -> Connection:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise DatabaseUnavailable("connection refused", code="REFUSED")
        return await connect(url)

    async def no_wait(dt: float) -> None:
        await asyncio.sleep(0)

    p: Pool[Connection] = Pool(
        flaky, PoolConfig(min_size=0, max_size=2), name="flaky", clock=clock, sleep=no_wait, seed=5
    )
    await p.open(background=False)
    try:
        failures = 0
        for _ in range(100_000):  # a caller retrying with no back-off at all
            try:
                async with p.connection() as conn:
                    assert (await conn.execute(SELECT)).rows == [(1,)]
                break
            except DatabaseUnavailable:
                failures += 1
        else:
            pytest.fail("the pool never reconnected while the caller retried")
        assert failures >= 1 and attempts >= 4
    finally:
        await p.close()


async def test_config_errors(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(ConfigError):
        make_pool(tmp_path, clock, min_size=3, max_size=2)
    with pytest.raises(ConfigError):
        make_pool(tmp_path, clock, timeout=0)
    with pytest.raises(ConfigError):
        make_pool(tmp_path, clock, lifetime_jitter=1.0)
    with pytest.raises(ConfigError):
        Schedule([(10, 1), (5, 2)])
    with pytest.raises(ConfigError):
        Reactive(low=0.8, high=0.5)


# -- sizing policies on a virtual clock ----------------------------------------------------------


def load(size: int, *, waiting: int = 0, util: float = 0.5, lo: int = 1, hi: int = 10) -> PoolLoad:
    return PoolLoad(
        size=size,
        in_use=round(size * util),
        idle=size - round(size * util),
        waiting=waiting,
        utilization=util,
        requests=100,
        waited=waiting,
        wait_mean=0.01 if waiting else 0.0,
        min_size=lo,
        max_size=hi,
    )


def test_reactive_grows_one_at_a_time_under_waiters_with_cooldown() -> None:
    clock = FakeClock()
    r = Reactive(up_cooldown=1.0, down_cooldown=30.0, clock=clock)
    assert r.decide(load(2, waiting=5)).target == 3
    assert r.decide(load(3, waiting=5)).target == 3  # cooling down
    clock.advance(1.0)
    assert r.decide(load(3, waiting=5)).target == 4
    clock.advance(1.0)
    assert r.decide(load(10, waiting=5, hi=10)).target == 10  # never past max_size
    assert r.decide(load(4, util=0.9)).target == 5  # busy enough to grow without waiters
    assert r.decide(load(5, util=0.9)).target == 5  # cooling down


def test_reactive_shrinks_only_after_the_cooldown_and_holds_in_the_hysteresis_band() -> None:
    clock = FakeClock()
    r = Reactive(low=0.3, high=0.75, down_cooldown=30.0, clock=clock)
    assert r.decide(load(5, util=0.5)).target == 5  # inside the band: steady
    clock.advance(29.0)
    assert r.decide(load(5, util=0.1)).target == 5
    clock.advance(1.0)
    assert r.decide(load(5, util=0.1)).target == 4
    assert r.decide(load(4, util=0.1)).target == 4  # next step waits a full cooldown
    clock.advance(30.0)
    assert r.decide(load(4, util=0.1)).target == 3
    clock.advance(30.0)
    assert r.decide(load(1, util=0.0)).target == 1  # never below min_size


def test_predictive_reaches_each_rise_lead_time_early_and_falls_on_schedule() -> None:
    clock = FakeClock(0.0)
    sched = Schedule([(0, 2), (200, 6), (300, 3), (400, 8)])
    p = Predictive(sched, lead_time=30.0, clock=clock)
    expect = {0: 2, 169: 2, 170: 6, 200: 6, 299: 6, 300: 3, 369: 3, 370: 8, 500: 8}
    for t, size in expect.items():
        clock.t = t
        assert p.decide(load(1)).target == size, t


def test_hybrid_takes_the_larger_of_forecast_and_reaction() -> None:
    clock = FakeClock(0.0)
    h = Hybrid(
        Predictive(Schedule([(0, 4)]), lead_time=0, clock=clock),
        Reactive(up_cooldown=0.0, down_cooldown=0.0, clock=clock),
    )
    assert h.decide(load(4, util=0.1)).target == 4  # reactive would shrink: the floor holds
    d = h.decide(load(4, waiting=3))
    assert d.target == 5 and d.reason.startswith("reactive")


async def test_pool_pre_scales_and_warms_up_before_a_scheduled_rise(tmp_path: Path) -> None:
    clock = FakeClock(0.0)
    sched = Schedule([(0, 1), (100, 4), (200, 2)])
    p = make_pool(
        tmp_path, clock, min_size=1, max_size=8,
        sizing=Predictive(sched, lead_time=20.0, clock=clock),
    )  # fmt: skip
    await p.open(background=False)
    try:
        sizes = {}
        for t in (0, 50, 79, 80, 100, 150, 199, 200, 250):
            clock.t = t
            await p.maintain()
            await p.wait()
            sizes[t] = p.size
        assert sizes == {0: 1, 50: 1, 79: 1, 80: 4, 100: 4, 150: 4, 199: 4, 200: 2, 250: 2}
        # the new connections were opened and proved (connect pings) before the rise at t=100
        assert p.get_stats()["connections_num"] == 4
        series = list(p.series)
        assert [s.target for s in series if s.t in (79, 80)] == [1, 4]
    finally:
        await p.close()


async def test_reactive_pool_grows_under_queued_requests(tmp_path: Path) -> None:
    clock = FakeClock()
    p = make_pool(
        tmp_path, clock, min_size=1, max_size=4,
        sizing=Reactive(up_cooldown=0.0, clock=clock),
    )  # fmt: skip
    await p.open(background=False)
    try:
        leases = [p.connection() for _ in range(4)]
        await leases[0].__aenter__()
        waiting = [asyncio.create_task(lease.__aenter__()) for lease in leases[1:]]
        await asyncio.gather(*waiting)  # each queued request grew the pool by one
        assert p.size == 4 and p.get_stats()["resizes"] == 3
        for lease in leases:
            await lease.__aexit__(None, None, None)
    finally:
        await p.close()


async def test_without_reuse_every_borrow_opens_and_every_return_closes(
    tmp_path: Path, clock: FakeClock
) -> None:
    with pytest.raises(ConfigError, match="min_size must be 0"):
        make_pool(tmp_path, clock, min_size=1, reuse=False)
    p = make_pool(tmp_path, clock, min_size=0, max_size=3, reuse=False, keepalive=None)
    await p.open(background=False)
    assert p.size == 0
    seen: list[Connection] = []

    async def use() -> None:
        async with p.connection() as c:
            seen.append(c)
            assert (await c.execute(SELECT)).rows == [(1,)]
            assert p.size <= 3

    await asyncio.gather(*(use() for _ in range(12)))
    await p.maintain()
    s = p.get_stats()
    assert len({id(c) for c in seen}) == 12 and s["connections_num"] == 12
    assert p.size == 0 and s["pool_available"] == 0
    await p.close()
    assert p.get_stats()["connections_closed"] == 12
