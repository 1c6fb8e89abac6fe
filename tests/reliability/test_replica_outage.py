"""The embedded-replica tier through a primary outage: the primary is really killed
(``kill -9``) while reads are served from the local file; writes fail typed; both recover after
the restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tiered import CacheConfig, Store, StoreConfig
from tiered.devserver import SqldProcess, free_port
from tiered.errors import DatabaseUnavailable
from tiered.sim import generate_episodes

from ..fakes import FakeClock
from .conftest import record


async def test_kill_9_of_the_primary_under_an_embedded_replica(
    sqld_binary: Path, tmp_path: Path
) -> None:
    proc = SqldProcess(sqld_binary, tmp_path / "db", free_port(), log_path=tmp_path / "log")
    proc.start()
    clock = FakeClock()
    store = await Store.open(
        proc.ws_url,
        local_replica=tmp_path / "local.db",
        sync_interval=3600,  # syncs here: after this store's writes, and the test's own
        timer=clock,
        config=StoreConfig(timeout=2.0),
        cache=CacheConfig(staleness=1.0),
    )
    local = store._db.local
    assert local is not None and store.router is not None
    try:
        eps = generate_episodes(30, seed=41)
        # written by another store: not in this one's cache, so its reads reach the database
        other = await Store.open(proc.ws_url, cache=CacheConfig(enabled=False))
        await other.store_episodes(eps)
        await other.close()
        assert await local.sync()

        proc.kill()
        clock.advance(2.0)  # the cache's change-log poll is due: the primary cannot answer it
        assert [await store.get_episode(e.id) for e in eps] == eps
        since = await store.query_episodes_since(0, limit=100)  # never cached: the file serves
        assert sorted(e.id for e in since) == sorted(e.id for e in eps)
        served = store.router.get_stats()["replicas"]["local"]["reads"]
        assert served >= 31
        new = generate_episodes(1, seed=42, id_prefix="after")[0]
        with pytest.raises(DatabaseUnavailable):
            await store.store_episode(new)  # writes fail typed
        assert not await local.sync()  # counted, and reads go on
        assert store.get_stats()["statements"]["local_replica"]["sync_failures"] >= 1
        assert await store.get_episode(eps[0].id) == eps[0]

        await asyncio.to_thread(proc.start)
        t_up = time.monotonic()
        async with asyncio.timeout(20):
            while True:
                try:
                    await store.store_episode(new)
                    break
                except DatabaseUnavailable:
                    await asyncio.sleep(0.02)
        assert await local.sync()  # the same syncing process, or a new one
        recovery = time.monotonic() - t_up
        clock.advance(2.0)
        assert await store.get_episode(new.id) == new
        assert await store.query_episodes_since(0, limit=100) != since  # the new one is there
    finally:
        await store.close()
        proc.stop()
    record(
        fault="kill -9 primary under an embedded replica, restart",
        operations="reads of 30 records and a query; a write and a sync while down",
        errors_to_caller="the write while down (DatabaseUnavailable)",
        acked_lost=0,
        recovery_s=f"{recovery:.2f} after restart",
        load=f"{served} reads served by the local file while down",
    )
