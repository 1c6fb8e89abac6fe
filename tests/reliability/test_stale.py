"""Serve-stale (``CacheConfig.stale_if_error``): cached reads go on through an outage, bounded.

The server is really killed (``kill -9``); entry lifetimes run on a virtual clock (short TTLs, so
the clock moves seconds, not hours, and the pool's own timers are unaffected).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tiered import CacheConfig, RecordCacheConfig, Store, StoreConfig, TTLRule
from tiered.devserver import SqldProcess, free_port
from tiered.errors import DatabaseUnavailable
from tiered.sim import generate_episodes

from ..fakes import FakeClock
from .conftest import record

TTL = TTLRule(base=1.0, min=1.0, max=1.0, jitter=0.0)
STALE = 30.0


def config(stale_if_error: float) -> CacheConfig:
    rc = RecordCacheConfig(ttl=TTL, negative_ttl=1.0)
    return CacheConfig(
        episodes=rc, queries=rc, staleness=1.0, write_through=0, stale_if_error=stale_if_error
    )


@pytest.mark.parametrize("stale_if_error", [STALE, 0.0])
async def test_cached_reads_continue_through_an_outage_up_to_the_bound(
    stale_if_error: float, sqld_binary: Path, tmp_path: Path
) -> None:
    proc = SqldProcess(sqld_binary, tmp_path / "db", free_port(), log_path=tmp_path / "log")
    proc.start()
    clock = FakeClock()
    store = await Store.open(
        proc.ws_url, timer=clock, cache=config(stale_if_error), config=StoreConfig(timeout=2.0)
    )
    served = 0
    try:
        eps = generate_episodes(4, seed=21)
        await store.store_episodes(eps)
        hot, other, written, uncached = eps
        ids = [hot.id, other.id]
        # cache them: a record, a batch, a query result, a "not found"
        assert await store.get_episode(hot.id) == hot
        assert await store.get_episodes(ids) == [hot, other]
        query = await store.query_episodes_by_metadata("agent", hot.metadata["agent"], 10)
        assert hot in query
        assert await store.get_episode(written.id) == written
        assert await store.get_episode("missing") is None  # `uncached` is never read

        proc.kill()
        clock.advance(2.0)  # every entry expired, within the stale window

        async def reads() -> list[object]:
            return [
                await store.get_episode(hot.id),
                await store.get_episodes(ids),
                await store.query_episodes_by_metadata("agent", hot.metadata["agent"], 10),
                await store.get_episode("missing"),
            ]

        if stale_if_error:
            assert await reads() == [hot, [hot, other], query, None]
            served = 4
            stats = store.get_stats()["cache"]
            assert stats["stale_served"] == 5 and stats["coherence"]["failed_polls"] >= 1
        else:
            for read in (
                store.get_episode(hot.id),
                store.get_episodes(ids),
                store.query_episodes_by_metadata("agent", hot.metadata["agent"], 10),
            ):
                with pytest.raises(DatabaseUnavailable):
                    await read
        # a write fails during the outage (it may or may not have committed): its record and
        # every query result of its table are no longer served stale
        with pytest.raises(DatabaseUnavailable):
            await store.store_episode(written)
        for read in (
            store.get_episode(written.id),
            store.query_episodes_by_metadata("agent", hot.metadata["agent"], 10),
            store.get_episode(uncached.id),  # and one that was never cached
        ):
            with pytest.raises(DatabaseUnavailable):
                await read
        if stale_if_error:
            assert await store.get_episode(hot.id) == hot  # the rest still is

        clock.advance(STALE)  # past the bound: errors again
        with pytest.raises(DatabaseUnavailable):
            await store.get_episode(hot.id)

        await asyncio.to_thread(proc.start)
        t_up = time.monotonic()

        async with asyncio.timeout(10):
            while True:
                try:
                    assert await store.get_episode(written.id) == written
                    break
                except DatabaseUnavailable:
                    await asyncio.sleep(0.02)
        recovery = time.monotonic() - t_up
        assert await store.get_episode(hot.id) == hot  # fresh again
    finally:
        await store.close()
        proc.stop()
    if stale_if_error:
        record(
            fault=f"primary down, stale_if_error={STALE:g}s (virtual clock)",
            operations="cached record, batch, query, not-found; a failed write; an uncached key",
            errors_to_caller="uncached / written-during-outage / past the bound only",
            acked_lost=0,
            recovery_s=f"{recovery:.2f} after restart",
            load=f"{served} kinds of cached read served stale",
        )
