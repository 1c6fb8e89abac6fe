"""Link faults with a TCP proxy between the Store and sqld: half-open, dropped, slow.

Every call made while the link is bad must end, within a bound derived from the configured
timeouts, in a typed :class:`DatabaseUnavailable` (``PoolTimeout`` is one); nothing may hang;
once the link is good again the same Store serves without being recreated, with a pool no larger
than its ``max_size``. Each test runs under an outer deadline so a hang fails rather than blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tiered import (
    CacheConfig,
    DatabaseUnavailable,
    Episode,
    PoolConfig,
    Store,
    StoreConfig,
)
from tiered.devserver import SqldProcess
from tiered.netproxy import TcpProxy
from tiered.sim import generate_episodes

from .conftest import record, timed, until

CALL_TIMEOUT = 0.5  # StoreConfig.timeout: one database call, and one connect
POOL_TIMEOUT = 1.0  # PoolConfig.timeout: waiting for a connection
#: the longest a failing call may take: a pool wait, then a connect and a call that time out
BOUND = POOL_TIMEOUT + 2 * CALL_TIMEOUT + 0.5
MAX_SIZE = 4


@pytest.fixture
async def proxied(
    fresh_sqld: SqldProcess, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Store, TcpProxy, list[Episode]]]:
    async with TcpProxy("127.0.0.1", fresh_sqld.http_port) as proxy:
        store = await Store.open(
            proxy.url(request.param),
            config=StoreConfig(timeout=CALL_TIMEOUT),
            pool=PoolConfig(min_size=2, max_size=MAX_SIZE, timeout=POOL_TIMEOUT),
            cache=CacheConfig(enabled=False),  # every call crosses the link
        )
        try:
            eps = generate_episodes(40, seed=21)
            await store.store_episodes(eps)
            yield store, proxy, eps
        finally:
            await store.close()


def mixed_op(store: Store, eps: list[Episode], i: int) -> Awaitable[object]:
    """The i-th call of a read-mostly mix: point reads, a query, a write."""
    ep = eps[i % len(eps)]
    match i % 4:
        case 0 | 1:
            return store.get_episode(ep.id)
        case 2:
            return store.query_episodes_since(0, limit=10)
        case _:
            return store.store_episode(ep)


async def recover(store: Store, eps: list[Episode]) -> float:
    """Seconds until a call succeeds again (failures meanwhile must be typed)."""
    t0 = time.monotonic()
    while True:
        _, err = await timed(store.get_episode(eps[0].id))
        if err is None:
            return time.monotonic() - t0
        assert isinstance(err, DatabaseUnavailable), err
        await asyncio.sleep(0.02)  # a client's back-off between retries


async def healthy_after(store: Store, eps: list[Episode]) -> None:
    """The same Store serves a burst of calls without error and within its pool bound."""
    results = await asyncio.gather(*(timed(mixed_op(store, eps, i)) for i in range(60)))
    assert [e for _, e in results if e is not None] == []
    await store.pool.wait()
    s = store.pool.get_stats()
    assert store.pool.size <= MAX_SIZE and s["pool_in_use"] == 0 and not s["outage"]


async def under_fault(
    store: Store, eps: list[Episode], fault: Callable[[], None], calls: int = 12
) -> list[tuple[float, BaseException | None]]:
    """Apply ``fault``, then make ``calls`` concurrent mixed calls; all must fail typed, in time."""
    fault()
    results = await asyncio.gather(*(timed(mixed_op(store, eps, i)) for i in range(calls)))
    for took, err in results:
        assert isinstance(err, DatabaseUnavailable), err
        assert took < BOUND, f"a call took {took:.2f}s under the fault (bound {BOUND}s)"
    return results


def codes(results: list[tuple[float, BaseException | None]]) -> str:
    c = Counter(getattr(e, "code", type(e).__name__) for _, e in results)
    return ", ".join(f"{n} {code}" for code, n in sorted(c.items()))


def half_open(proxy: TcpProxy) -> None:
    proxy.mode = "blackhole"  # connections stay up, nothing comes back


def slow(proxy: TcpProxy) -> None:
    proxy.delay = CALL_TIMEOUT  # each way: a round trip takes twice the call timeout


def link_ok(proxy: TcpProxy) -> None:
    # held bytes and late replies are dropped with the connections that were given up on
    proxy.cut()
    proxy.mode = "forward"
    proxy.delay = 0.0


LINK_FAULTS = {
    "half-open": (half_open, "proxy forwards nothing"),
    "slow": (slow, f"+{2 * CALL_TIMEOUT:.1f}s round trip"),
}


@pytest.mark.parametrize("fault", sorted(LINK_FAULTS))
@pytest.mark.parametrize("proxied", ["ws", "http"], indirect=True)
async def test_bad_link_times_out_typed_and_bounded_then_heals(
    proxied: tuple[Store, TcpProxy, list[Episode]], fault: str
) -> None:
    store, proxy, eps = proxied
    apply, what = LINK_FAULTS[fault]
    async with asyncio.timeout(30):
        results = await under_fault(store, eps, lambda: apply(proxy))
        link_ok(proxy)
        recovery = await recover(store, eps)
        await healthy_after(store, eps)
    record(
        fault=f"{fault} link ({store.backend}): {what}",
        operations=f"{len(results)} concurrent calls",
        errors_to_caller=f"{codes(results)}, max {max(t for t, _ in results):.2f}s",
        acked_lost=0,
        recovery_s=f"{recovery:.2f} after the link is good again",
        load=f"pool {store.pool.size}/{MAX_SIZE}",
    )


@pytest.mark.parametrize("proxied", ["ws", "http"], indirect=True)
async def test_links_dropped_under_load_fail_only_calls_in_flight(
    proxied: tuple[Store, TcpProxy, list[Episode]],
) -> None:
    store, proxy, eps = proxied
    done = 0
    errors: list[tuple[float, BaseException | None]] = []
    failed_reads = 0
    stop = asyncio.Event()
    workers = 8

    async def worker(k: int) -> None:
        nonlocal done, failed_reads
        i = k
        while not stop.is_set():
            took, err = await timed(mixed_op(store, eps, i))
            if err is None:
                done += 1
            else:
                errors.append((took, err))
                failed_reads += i % 4 != 3
                await asyncio.sleep(0.02)
            i += workers

    async with asyncio.timeout(60):
        tasks = [asyncio.create_task(worker(k)) for k in range(workers)]
        cuts = 0
        recoveries = []
        for _ in range(5):
            n = done
            await until(lambda n=n: done >= n + 100)  # traffic flows between cuts
            cuts += proxy.cut()  # every connection drops, mid-call for some
            t_cut, n = time.monotonic(), done
            await until(lambda n=n: done > n)
            recoveries.append(time.monotonic() - t_cut)
        stop.set()
        await asyncio.gather(*tasks)
        await healthy_after(store, eps)
    # at most the calls in flight at each cut fail, each with a typed error, quickly; a read
    # whose connection drops is retried on another one, so failures are mostly writes in flight
    assert all(isinstance(e, DatabaseUnavailable) and t < BOUND for t, e in errors), errors
    assert len(errors) <= 5 * workers
    present = {e.id for e in await store.get_episodes([e.id for e in eps]) if e is not None}
    assert present == {e.id for e in eps}
    record(
        fault=f"links dropped under load ({store.backend}): 5 cuts, {cuts} connections",
        operations=f"{done + len(errors)} calls by {workers} tasks",
        errors_to_caller=f"{len(errors)} ({codes(errors) or 'none'}; {failed_reads} reads)",
        acked_lost=0,
        recovery_s=f"max {max(recoveries):.2f} to the next success",
        load=f"pool {store.pool.size}/{MAX_SIZE}",
    )
