"""The pool against a real sqld: reuse, a crash and restart, cancellation, idle cuts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tiered import CacheConfig, PoolConfig, Store
from tiered.db.driver import Connection, Statement, connect
from tiered.devserver import SqldProcess
from tiered.errors import DatabaseUnavailable
from tiered.netproxy import TcpProxy
from tiered.pool import Fixed, Pool
from tiered.sim import generate_episodes

from .fakes import FakeClock

SLOW = Statement(
    "slow",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) "
    "SELECT count(*) FROM c",
)


def established(port: int) -> int:
    """Established TCP connections whose local end is ``port`` (sqld's side of each client)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


@pytest.mark.parametrize("scheme", ["ws", "http"])
async def test_connections_are_reused_over_10k_operations(
    fresh_sqld: SqldProcess, scheme: str
) -> None:
    url = fresh_sqld.ws_url if scheme == "ws" else fresh_sqld.http_url
    store = await Store.open(
        url,
        cache=CacheConfig(enabled=False),
        pool=PoolConfig(min_size=1, max_size=4, sizing=Fixed(4)),
    )
    try:
        eps = generate_episodes(50, seed=2)
        await store.store_episodes(eps)
        peak = 0

        async def worker(w: int) -> None:
            nonlocal peak
            for i in range(625):
                assert await store.get_episode(eps[(w * 7 + i) % 50].id) is not None
                if i % 125 == 0:
                    peak = max(peak, established(fresh_sqld.http_port))

        await asyncio.gather(*(worker(w) for w in range(16)))  # 10,000 reads
        stats = store.pool.get_stats()
        assert stats["requests_num"] >= 10_000
        assert stats["connections_num"] == 4 and stats["connections_closed"] == 0
        assert 1 <= peak <= 4
        assert established(fresh_sqld.http_port) <= 4
    finally:
        await store.close()


async def test_kill_and_restart_fails_typed_then_recovers_within_a_second(
    fresh_sqld: SqldProcess,
) -> None:
    store = await Store.open(
        fresh_sqld.ws_url,
        cache=CacheConfig(enabled=False),
        pool=PoolConfig(min_size=2, max_size=4, sizing=Fixed(2)),
    )
    try:
        ep = generate_episodes(1, seed=3)[0]
        await store.store_episode(ep)
        fresh_sqld.kill()
        for _ in range(20):  # every call during the outage fails with a typed error, quickly
            t0 = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                await store.get_episode(ep.id)
            assert time.monotonic() - t0 < 5.0
        assert store.pool.get_stats()["outage"]
        await asyncio.to_thread(fresh_sqld.start)  # same port, same data
        back = time.monotonic()
        while True:
            try:
                got = await store.get_episode(ep.id)
                break
            except DatabaseUnavailable:
                await asyncio.sleep(0.01)  # polling the real server, not waiting for time
        recovered = time.monotonic() - back
        assert got == ep and recovered < 1.0, recovered
        await store.pool.wait()
        s = store.pool.get_stats()
        # no leaks: every connection opened is either closed or in the pool now
        assert s["connections_num"] - s["connections_closed"] == store.pool.size
        assert store.pool.size <= 4 and not s["outage"]
    finally:
        await store.close()


async def test_cancelling_1000_tasks_mid_acquire_and_mid_query_leaves_the_pool_consistent(
    fresh_sqld: SqldProcess,
) -> None:
    pool: Pool[Connection] = Pool(
        lambda: connect(fresh_sqld.ws_url),
        PoolConfig(min_size=2, max_size=4, sizing=Fixed(4)),
        name="cancel",
    )
    await pool.open(background=False)
    try:
        await pool.wait()
        in_query = 0
        all_busy = asyncio.Event()

        async def user() -> None:
            nonlocal in_query
            async with pool.connection() as conn:
                in_query += 1
                if in_query == 4:
                    all_busy.set()
                await conn.execute(SLOW)

        tasks = [asyncio.create_task(user()) for _ in range(1000)]
        await all_busy.wait()  # four tasks are inside a query, 996 wait to acquire
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) >= 990
        await pool.wait()
        s = pool.get_stats()
        assert s["pool_in_use"] == 0 and s["requests_waiting"] == 0
        assert s["connections_lost"] >= 4  # connections cancelled mid-query were not reused
        assert s["connections_num"] - s["connections_closed"] == pool.size == 4
        # and the pool serves requests normally afterwards
        results = await asyncio.gather(*(one(pool) for _ in range(50)))
        assert results == [[(1,)]] * 50
    finally:
        await pool.close()


async def one(pool: Pool[Connection]) -> list[tuple[object, ...]]:
    async with pool.connection() as conn:
        return (await conn.execute(Statement("one", "SELECT 1"))).rows


@pytest.mark.parametrize("scheme", ["ws", "http"])
async def test_connection_cut_while_idle_is_renewed_without_an_error(
    fresh_sqld: SqldProcess, scheme: str
) -> None:
    clock = FakeClock()
    async with TcpProxy("127.0.0.1", fresh_sqld.http_port) as proxy:
        store = await Store.open(
            proxy.url(scheme),
            cache=CacheConfig(enabled=False),
            pool=PoolConfig(min_size=2, max_size=2, sizing=Fixed(2)),
            timer=clock,
        )
        try:
            ep = generate_episodes(1, seed=4)[0]
            await store.store_episode(ep)
            # the idle cut of a server or proxy: every connection drops while idle
            assert proxy.cut() >= 1
            clock.advance(2.0)  # past check_after: the borrow health check notices
            assert await store.get_episode(ep.id) == ep
            # cut again; this time the keep-alive pass finds the dead ones first
            proxy.cut()
            clock.advance(5.0)
            await store.pool.maintain()
            await store.pool.wait()
            assert await store.get_episode(ep.id) == ep
            s = store.pool.get_stats()
            assert s["pings_failed"] >= 2 and store.pool.size == 2
        finally:
            await store.close()
