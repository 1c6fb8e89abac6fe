"""Read replicas: read-your-writes with a lagging replica, lag bound, failover, spreading, auth.

Every test runs a real sqld primary and real replicas (``--primary-grpc-url``) on loopback. A
replica is made to lag by putting a :class:`TcpProxy` in its replication link and freezing it
(``blackhole``): the replica keeps serving reads from the snapshot it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tiered import AuthError, CacheConfig, ConfigError, Store
from tiered.db.driver import Statement, connect
from tiered.db.router import RouterConfig
from tiered.devserver import JwtKey, SqldCluster, SqldProcess
from tiered.netproxy import TcpProxy
from tiered.sim import generate_episodes

from .fakes import FakeClock

pytestmark = pytest.mark.sqld

COUNT = Statement("count_episodes", "SELECT count(*) FROM episodes")


@pytest.fixture
def cluster(sqld_binary: Path, tmp_path: Path) -> AsyncIterator[SqldCluster]:
    with SqldCluster(replicas=1, binary=sqld_binary, data_dir=tmp_path / "c") as c:
        yield c


async def _start(proc: SqldProcess) -> None:
    # start() blocks until /health answers; run it off the loop that drives the proxy
    await asyncio.to_thread(proc.start)


async def _count(url: str) -> int:
    conn = await connect(url)
    try:
        return int((await conn.execute(COUNT)).rows[0][0])  # type: ignore[arg-type]
    finally:
        await conn.close()


async def _caught_up(url: str, n: int) -> None:
    """Wait (bounded) until the replica at ``url`` has ``n`` episodes: replication is async."""
    async with asyncio.timeout(10):
        while True:
            try:
                if await _count(url) >= n:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.01)


@pytest.fixture
async def lagging(cluster: SqldCluster) -> AsyncIterator[tuple[SqldProcess, TcpProxy]]:
    """A second replica whose replication link runs through a proxy the test can freeze."""
    grpc = cluster.primary.grpc_port
    assert grpc is not None
    async with TcpProxy("127.0.0.1", grpc) as proxy:
        replica = cluster.add_replica(primary_grpc_url=proxy.url("http"))
        await _start(replica)
        try:
            yield replica, proxy
        finally:
            await asyncio.to_thread(replica.stop)


@pytest.mark.parametrize("scheme", ["ws", "http"])
async def test_reads_see_own_writes_with_a_lagging_replica(
    cluster: SqldCluster, lagging: tuple[SqldProcess, TcpProxy], scheme: str
) -> None:
    replica, proxy = lagging
    url = getattr(cluster.primary, f"{scheme}_url")
    # the cache off: every read is a database read that the router places
    store = await Store.open(
        url,
        replicas=[getattr(replica, f"{scheme}_url")],
        cache=CacheConfig(enabled=False),
        routing=RouterConfig(health_interval=None, probe_after=0.0),
    )
    try:
        first = generate_episodes(5, seed=1)
        await store.store_episodes(first)
        await _caught_up(replica.http_url, 5)
        assert await store.get_episodes([e.id for e in first]) == first
        node = store.router.replicas[0]  # type: ignore[union-attr]
        served = node.reads
        assert served >= 1  # caught up: the replica served it

        proxy.mode = "blackhole"  # replication frozen from here on
        second = generate_episodes(20, seed=2)
        for ep in second:
            await store.store_episode(ep)
            # every read right after its write sees it, though the replica cannot
            assert await store.get_episode(ep.id) == ep
            since = await store.query_episodes_since(ep.start_time, limit=1000)
            assert ep.id in {e.id for e in since}
        assert await _count(replica.http_url) == 5  # the replica really is behind
        assert node.stale >= 1  # it was tried, found behind, and the primary answered
        assert node.reads == served

        proxy.mode = "forward"
        await _caught_up(replica.http_url, 25)
        assert await store.get_episodes([e.id for e in second]) == second
        assert node.reads > served  # caught up again: reads go back to the replica
    finally:
        await store.close()


async def test_a_replica_lagging_beyond_the_bound_gets_no_reads(
    cluster: SqldCluster, lagging: tuple[SqldProcess, TcpProxy]
) -> None:
    replica, proxy = lagging
    clock = FakeClock()
    writer = await Store.open(cluster.primary.ws_url)
    reader = await Store.open(
        cluster.primary.ws_url,
        replicas=[replica.ws_url],
        cache=CacheConfig(enabled=False),
        routing=RouterConfig(max_lag=1.0, health_interval=None, probe_after=0.0),
        timer=clock,
    )
    try:
        router = reader.router
        assert router is not None
        await writer.store_episodes(generate_episodes(3, seed=3))  # creates nothing new
        await _caught_up(replica.http_url, 3)
        proxy.mode = "blackhole"
        (ep,) = generate_episodes(1, seed=4)
        await writer.store_episode(ep)  # another process's write, not on the replica
        await router.poll()
        # within the bound a read of another process's write may be served stale by the replica
        assert await reader.get_episode(ep.id) is None
        assert router.replicas[0].reads >= 1
        clock.advance(1.5)
        await router.poll()
        assert router.replicas[0].lag == pytest.approx(1.5)
        before = router.primary_reads
        # beyond the bound the replica is skipped: the primary answers, with the write
        assert await reader.get_episode(ep.id) == ep
        assert router.primary_reads == before + 1
        proxy.mode = "forward"
        await _caught_up(replica.http_url, 4)
        await router.poll()
        assert router.replicas[0].lag == 0.0
    finally:
        await reader.close()
        await writer.close()


async def test_a_dead_replica_costs_no_errors_and_comes_back(cluster: SqldCluster) -> None:
    clock = FakeClock()
    replica = cluster.replicas[0]
    store = await Store.open(
        cluster.primary.ws_url,
        replicas=[replica.ws_url],
        cache=CacheConfig(enabled=False),
        routing=RouterConfig(health_interval=None, probe_after=0.0, retry_after=1.0),
        timer=clock,
    )
    try:
        eps = generate_episodes(10, seed=5)
        await store.store_episodes(eps)
        await _caught_up(replica.http_url, 10)
        node = store.router.replicas[0]  # type: ignore[union-attr]
        served = node.reads
        assert await store.get_episodes([e.id for e in eps]) == eps
        assert node.reads == served + 1
        replica.kill()
        for ep in eps:  # no error reaches the caller
            assert await store.get_episode(ep.id) == ep
        assert not node.healthy and node.downs == 1 and node.errors >= 1
        assert "Unavailable" in node.last_error
        await asyncio.to_thread(replica.start)
        await store.router.poll()  # type: ignore[union-attr]
        assert not node.healthy  # still in its back-off: not probed
        clock.advance(5.0)
        await store.router.poll()  # type: ignore[union-attr]
        assert node.healthy
        # the pool reconnects; reads go back to the replica
        async with asyncio.timeout(10):
            while node.reads < served + 2:
                assert await store.get_episode(eps[0].id) == eps[0]
                await asyncio.sleep(0.01)
    finally:
        await store.close()


async def test_a_refresh_after_the_router_closed_does_nothing(cluster: SqldCluster) -> None:
    # a local replica's sync that finishes while the Store closes refreshes a closed router
    store = await Store.open(
        cluster.primary.ws_url,
        replicas=[cluster.replicas[0].ws_url],
        cache=CacheConfig(enabled=False),
        routing=RouterConfig(health_interval=None),
    )
    try:
        router = store.router
        assert router is not None
        name = router.replicas[0].name
        await router.refresh(name)  # open: polls the replica
        await router.close()
        await router.refresh(name)  # closed: no PoolClosed from the replica's closed pool
    finally:
        await store.close()


async def test_reads_spread_over_replicas(sqld_binary: Path, tmp_path: Path) -> None:
    with SqldCluster(replicas=2, binary=sqld_binary, data_dir=tmp_path / "c2") as c:
        store = await Store.open(
            c.primary.http_url,
            replicas=[r.http_url for r in c.replicas],
            cache=CacheConfig(enabled=False),
        )
        try:
            eps = generate_episodes(40, seed=6)
            await store.store_episodes(eps)
            for r in c.replicas:
                await _caught_up(r.http_url, 40)
            await store.router.poll()  # type: ignore[union-attr]
            got = await asyncio.gather(*(store.get_episode(e.id) for e in eps))
            assert got == eps
            reads = [n.reads for n in store.router.replicas]  # type: ignore[union-attr]
            assert sum(reads) >= 30 and min(reads) >= 10, reads
            stats = store.get_stats()["router"]
            assert set(stats["replicas"]) == {"replica0", "replica1"}
            text = store.metrics.to_prometheus()
            assert 'key="replicas.replica0.reads"' in text
        finally:
            await store.close()


async def test_replica_settings_are_checked_before_any_io(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        await Store.open(f"file:{tmp_path / 'a.db'}", replicas=["ws://127.0.0.1:1"])
    with pytest.raises(ConfigError):
        await Store.open("ws://127.0.0.1:1", replicas=[f"file:{tmp_path / 'b.db'}"])
    with pytest.raises(ConfigError):
        await Store.open("ws://127.0.0.1:1", replicas="ws://127.0.0.1:2")  # type: ignore[arg-type]
    for bad in ({"max_lag": 0}, {"read_timeout": -1}, {"health_interval": 0}, {"probe_after": -1}):
        with pytest.raises(ConfigError):
            RouterConfig(**bad)  # type: ignore[arg-type]
    assert not (tmp_path / "a.db").exists()


async def test_jwt_auth_on_primary_and_replicas(
    sqld_binary: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = JwtKey()
    key_file = key.write_public(tmp_path / "jwt.pub")
    token, other = key.token(), JwtKey().token()
    texts: list[str] = [repr(key)]
    with SqldCluster(
        replicas=1, binary=sqld_binary, data_dir=tmp_path / "a", auth_jwt_key_file=key_file
    ) as c:
        for scheme in ("ws", "http"):
            primary = getattr(c.primary, f"{scheme}_url")
            replicas = [getattr(c.replicas[0], f"{scheme}_url")]
            for bad in (None, other, "not-a-jwt"):
                with pytest.raises(AuthError) as info:
                    await Store.open(primary, auth_token=bad, replicas=replicas)
                texts += [str(info.value), repr(info.value), str(info.value.__cause__)]
            store = await Store.open(primary, auth_token=token, replicas=replicas)
            try:
                eps = generate_episodes(5, seed=7)
                await store.store_episodes(eps)
                await _caught_up_auth(c.replicas[0].ws_url, token, 5)
                await store.router.poll()  # type: ignore[union-attr]
                assert await store.get_episodes([e.id for e in eps]) == eps
                texts += [repr(store), repr(store.pool), repr(store.router), str(store.get_stats())]
                texts += [repr(n.pool) for n in store.router.replicas]  # type: ignore[union-attr]
                texts += [store.metrics.to_prometheus(), str(store.metrics.to_polars())]
            finally:
                await store.close()
            # a read-only token cannot write: a typed error, and nothing written
            ro = await Store.open(primary, auth_token=key.token("ro"), replicas=replicas)
            try:
                assert await ro.get_episodes([eps[0].id]) == [eps[0]]
                with pytest.raises(AuthError) as info:  # over ws: refused before any I/O
                    await ro.store_episodes(generate_episodes(2, seed=8))
                texts.append(str(info.value))
            finally:
                await ro.close()
        texts += [p.read_text(errors="replace") for p in (tmp_path / "a").glob("*.log")]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info) for r in caplog.records if r.exc_info]
    for secret in (token, other, key.token("ro")[: len(token) // 2]):
        assert all(secret not in t for t in texts)


async def _caught_up_auth(url: str, token: str, n: int) -> None:
    async with asyncio.timeout(10):
        while True:
            conn = await connect(url, auth_token=token)
            try:
                if int((await conn.execute(COUNT)).rows[0][0]) >= n:  # type: ignore[arg-type]
                    return
            except Exception:
                pass
            finally:
                await conn.close()
            await asyncio.sleep(0.01)
