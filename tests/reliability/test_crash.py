"""Process faults: ``kill -9`` of the primary mid-batch, and of a replica under read load.

Waits here are for real events (a batch acknowledged, an error seen, a process up), each bounded
by a deadline; nothing sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tiered import (
    CacheConfig,
    DatabaseUnavailable,
    PoolConfig,
    Store,
    StoreConfig,
    TieredError,
)
from tiered.db.driver import Statement, connect
from tiered.db.router import RouterConfig
from tiered.devserver import SqldCluster, SqldProcess, free_port
from tiered.sim import generate_episodes

from .conftest import record, timed, until

ALL_IDS = Statement("all_episode_ids", "SELECT id FROM episodes")


async def stored_ids(url: str) -> set[str]:
    conn = await connect(url)
    try:
        return {str(r[0]) for r in (await conn.execute(ALL_IDS)).rows}
    finally:
        await conn.close()


async def test_kill9_primary_mid_batch_loses_no_acknowledged_write(
    sqld_binary: Path, tmp_path: Path
) -> None:
    proc = SqldProcess(sqld_binary, tmp_path / "db", free_port(), log_path=tmp_path / "log")
    proc.start()
    # small chunks: a batch is an interactive transaction of many requests, so the kill lands
    # inside transactions, not between them
    store = await Store.open(
        proc.ws_url,
        config=StoreConfig(chunk_bytes=4096, timeout=5.0),
        pool=PoolConfig(max_size=8, timeout=5.0),
    )
    acked: list[list[str]] = []
    failed: list[list[str]] = []
    errors: list[str] = []
    attempted = 0
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        nonlocal attempted
        i = 0
        while not stop.is_set():
            batch = generate_episodes(30, seed=w * 1000 + i, id_prefix=f"w{w}b{i}-")
            ids = [e.id for e in batch]
            attempted += 1
            try:
                await store.store_episodes(batch)
                acked.append(ids)
            except TieredError as e:
                failed.append(ids)
                errors.append(type(e).__name__)
                await asyncio.sleep(0.01)  # a client's back-off before retrying
            i += 1

    try:
        tasks = [asyncio.create_task(writer(w)) for w in range(4)]
        await until(lambda: len(acked) >= 20)
        proc.kill()  # kill -9 while four batches are in flight
        t_kill = time.monotonic()
        await until(lambda: len(failed) >= 1)
        await asyncio.to_thread(proc.start)  # same port, same files
        t_up = time.monotonic()
        n = len(acked)
        await until(lambda: len(acked) > n)  # the same Store writes again
        recovery = time.monotonic() - t_up
        await until(lambda: len(acked) >= n + 20)
        stop.set()
        await asyncio.gather(*tasks)
        present = await stored_ids(proc.http_url)
    finally:
        await store.close()
        proc.stop()

    lost = sum(1 for ids in acked for i in ids if i not in present)
    partial = [ids for ids in failed if 0 < sum(i in present for i in ids) < len(ids)]
    assert lost == 0
    assert not partial, "a batch was partly written"
    # every failure the caller saw says the database was unavailable: typed, retryable
    assert errors and all(e in ("DatabaseUnavailable", "PoolTimeout") for e in errors), errors
    record(
        fault="kill -9 primary mid-batch (4 writers, 30-episode batches in 4 KB chunks)",
        operations=f"{attempted} batches",
        errors_to_caller=f"{len(failed)} ({', '.join(sorted(set(errors)))})",
        acked_lost=lost,
        recovery_s=f"{recovery:.2f} after restart ({t_up - t_kill:.2f} down)",
        load=f"{len(acked)} batches acked, {len(failed)} all-or-nothing",
    )


async def _read_load(
    store: Store, ids: list[str], stop: asyncio.Event, tasks: int
) -> tuple[list[int], list[str]]:
    """``tasks`` readers reading ``ids`` round-robin until ``stop``; returns (reads, errors)."""
    counts = [0] * tasks
    errors: list[str] = []

    async def reader(k: int) -> None:
        i = k
        while not stop.is_set():
            try:
                got = await store.get_episode(ids[i % len(ids)])
                assert got is not None
                counts[k] += 1
            except TieredError as e:
                errors.append(type(e).__name__)
            i += tasks

    await asyncio.gather(*(reader(k) for k in range(tasks)))
    return counts, errors


async def test_kill9_replica_under_read_load_costs_no_errors(
    sqld_binary: Path, tmp_path: Path
) -> None:
    with SqldCluster(replicas=1, binary=sqld_binary, data_dir=tmp_path / "c") as c:
        replica = c.replicas[0]
        store = await Store.open(
            c.primary.ws_url,
            replicas=[replica.ws_url],
            cache=CacheConfig(enabled=False),  # every read reaches a database
            routing=RouterConfig(health_interval=0.05, retry_after=0.1, max_retry_after=0.5),
        )
        try:
            eps = generate_episodes(200, seed=9)
            await store.store_episodes(eps)
            router = store.router
            assert router is not None
            node = router.replicas[0]
            ids = [e.id for e in eps]
            stop = asyncio.Event()
            load = asyncio.create_task(_read_load(store, ids, stop, tasks=20))
            await until(lambda: node.reads >= 200)  # the replica serves
            replica.kill()
            t_kill = time.monotonic()
            primary_before = router.primary_reads
            await until(lambda: not node.healthy)
            await until(lambda: router.primary_reads >= primary_before + 200)  # primary serves
            await asyncio.to_thread(replica.start)
            t_up = time.monotonic()
            served = node.reads
            await until(lambda: node.reads >= served + 200)  # and the replica again
            recovery = time.monotonic() - t_up
            stop.set()
            counts, errors = await load
        finally:
            await store.close()
    assert errors == []
    record(
        fault="kill -9 replica under read load (20 readers), restart",
        operations=f"{sum(counts)} reads",
        errors_to_caller=len(errors),
        acked_lost=0,
        recovery_s=f"{recovery:.2f} after restart ({t_up - t_kill:.2f} down)",
        load=f"{router.primary_reads} reads by the primary meanwhile",
    )


async def test_primary_down_is_a_typed_error_then_the_same_store_recovers(
    sqld_binary: Path, tmp_path: Path
) -> None:
    proc = SqldProcess(sqld_binary, tmp_path / "db", free_port(), log_path=tmp_path / "log")
    proc.start()
    store = await Store.open(proc.http_url, config=StoreConfig(timeout=2.0))
    try:
        (ep,) = generate_episodes(1, seed=11)
        proc.kill()
        took, err = await timed(store.store_episode(ep))
        assert isinstance(err, DatabaseUnavailable) and took < 3.0
        await asyncio.to_thread(proc.start)
        t_up = time.monotonic()
        # the pool reconnects in the background; the first call after that succeeds
        async with asyncio.timeout(10):
            while True:
                _, err = await timed(store.store_episode(ep))
                if err is None:
                    break
                assert isinstance(err, DatabaseUnavailable)
                await asyncio.sleep(0.02)
        recovery = time.monotonic() - t_up
        assert await store.get_episode(ep.id) == ep
    finally:
        await store.close()
        proc.stop()
    record(
        fault="primary down (kill -9), then restarted",
        operations="writes during and after",
        errors_to_caller="1 DatabaseUnavailable (while down)",
        acked_lost=0,
        recovery_s=f"{recovery:.2f} after restart",
        load="1 Store, not recreated",
    )
