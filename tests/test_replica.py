"""The embedded-replica read tier (``Store.open(..., local_replica=...)``) against a real sqld
primary: reads from the local file, read-your-writes, other writers seen after a sync, and the
primary taking over when the local file is unusable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tiered import CacheConfig, Store
from tiered.db.replica import LocalReplica, sync_url_of
from tiered.errors import ConfigError
from tiered.sim import generate_episodes

OFF = CacheConfig(enabled=False)  # every read reaches the database: the tier is what is tested


def local_of(store: Store) -> LocalReplica:
    local = store._db.local
    assert local is not None
    return local


async def test_reads_come_from_the_local_file_and_see_their_own_writes(
    fresh_sqld: Any, tmp_path: Path
) -> None:
    a = await Store.open(
        fresh_sqld.ws_url, local_replica=tmp_path / "local.db", sync_interval=3600, cache=OFF
    )
    b = await Store.open(fresh_sqld.ws_url, cache=OFF)
    try:
        assert a.router is not None
        eps = generate_episodes(20, seed=31)
        violations = 0
        for ep in eps:  # each write then at once its read: never an older answer
            await a.store_episode(ep)
            violations += await a.get_episode(ep.id) != ep
        assert violations == 0
        await local_of(a).sync()
        before = a.router.get_stats()
        assert [await a.get_episode(e.id) for e in eps] == eps
        after = a.router.get_stats()
        assert after["replicas"]["local"]["reads"] - before["replicas"]["local"]["reads"] == 20
        assert after["primary_reads"] == before["primary_reads"]  # none reached the primary
        # another process's write: seen locally once a sync has pulled it
        other = generate_episodes(1, seed=32, id_prefix="other")[0]
        await b.store_episode(other)
        assert await a.get_episode(other.id) in (None, other)  # within the bound: maybe stale
        await local_of(a).sync()
        assert await a.get_episode(other.id) == other
        stats = a.get_stats()["statements"]["local_replica"]
        assert stats["syncs"] >= 3 and stats["sync_failures"] == 0
        assert a.router.get_stats()["replicas"]["local"]["lag_s"] == 0.0
    finally:
        await a.close()
        await b.close()
    assert local_of(a)._proc is None  # the syncing process is stopped with the store


async def test_an_unusable_local_file_hands_reads_to_the_primary(
    fresh_sqld: Any, tmp_path: Path
) -> None:
    path = tmp_path / "local.db"
    a = await Store.open(fresh_sqld.ws_url, local_replica=path, sync_interval=3600, cache=OFF)
    try:
        assert a.router is not None
        eps = generate_episodes(5, seed=33)
        await a.store_episodes(eps)
        await local_of(a).sync()
        await a.get_episode(eps[0].id)
        assert a.router.get_stats()["replicas"]["local"]["reads"] == 1
        with path.open("r+b") as f:
            f.write(b"this is not a database file" * 4096)
        # (the WAL too; not the -shm index, which SQLite maps into memory: truncating a mapped
        # file kills the process with SIGBUS, in any program)
        Path(f"{path}-wal").write_bytes(b"\0" * 65536)  # noqa: ASYNC240 - a test's fault
        assert [await a.get_episode(e.id) for e in eps] == eps  # every answer still right
        local = a.router.get_stats()["replicas"]["local"]
        assert local["errors"] >= 1 and local["downs"] >= 1
    finally:
        await a.close()


async def test_bad_replica_settings_are_refused_before_any_io(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="follows a server"):
        await Store.open(f"file:{tmp_path / 'x.db'}", local_replica=tmp_path / "r.db")
    with pytest.raises(ConfigError, match="folder does not exist"):
        LocalReplica(tmp_path / "no" / "r.db", "ws://127.0.0.1:1")
    with pytest.raises(ConfigError, match="sync_interval"):
        LocalReplica(tmp_path / "r.db", "ws://127.0.0.1:1", interval=0)
    assert sync_url_of("wss://db.example:443/?authToken=secret") == "https://db.example:443/"
    assert sync_url_of("libsql://db.turso.io") == "https://db.turso.io"
    with pytest.raises(ConfigError, match="primary"):
        sync_url_of("file:x.db")
