"""The public API is pinned: one front door, sorted, every name importable."""

from __future__ import annotations

import asyncio

import tiered
from tiered import open_sync
from tiered.sim import generate_episodes

EXPECTED = [
    "Abstained",
    "AuthError",
    "CacheConfig",
    "Complexity",
    "ConfigError",
    "ConstraintError",
    "ContextPattern",
    "CorruptPayload",
    "DataError",
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseUnavailable",
    "DecisionPoint",
    "Embedding",
    "Episode",
    "ErrorRecovery",
    "Evidence",
    "ExecutionStep",
    "Failure",
    "Heuristic",
    "PartialSuccess",
    "Pattern",
    "PatternKind",
    "PayloadTooLarge",
    "PoolClosed",
    "PoolConfig",
    "PoolExhausted",
    "PoolTimeout",
    "ReadOnlyError",
    "RecordCacheConfig",
    "Reflection",
    "RouterConfig",
    "StepResult",
    "Store",
    "StoreClosed",
    "StoreConfig",
    "Success",
    "SyncStore",
    "TTLRule",
    "TaskContext",
    "TieredError",
    "ToolSequence",
    "UnknownDictionary",
    "UnknownLayout",
    "ValidationError",
    "__version__",
    "from_micros",
    "open_sync",
    "serve_metrics",
    "to_micros",
]


def test_exports_are_pinned() -> None:
    assert tiered.__all__ == EXPECTED
    assert sorted(tiered.__all__, key=str.lower) == tiered.__all__ or tiered.__all__ == sorted(
        tiered.__all__
    )
    for name in tiered.__all__:
        assert hasattr(tiered, name)


def test_error_families_refine_builtins() -> None:
    assert issubclass(tiered.ValidationError, ValueError)
    assert issubclass(tiered.ConfigError, ValueError)
    assert issubclass(tiered.DatabaseUnavailable, ConnectionError)
    assert issubclass(tiered.AuthError, PermissionError)
    assert all(
        issubclass(getattr(tiered, n), tiered.TieredError) for n in EXPECTED if n.endswith("Error")
    )


def test_sync_store_works_with_and_without_a_running_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    eps = generate_episodes(5, seed=1)
    with open_sync(f"file:{tmp_path}/a.db") as s:
        assert s.store_episodes(eps) == 5
        assert s.get_episode(eps[0].id) == eps[0]
        assert "SyncStore" in repr(s)

    async def inside_a_loop() -> None:  # e.g. a Jupyter cell
        with open_sync(f"file:{tmp_path}/a.db") as s:
            assert s.query_episodes_since(0) == eps

    asyncio.run(inside_a_loop())


def test_settings_are_keyword_only() -> None:
    """``PoolConfig(3, 5)`` would silently mean whatever the fields' order is today."""
    import pytest

    for cls in (
        tiered.PoolConfig,
        tiered.StoreConfig,
        tiered.CacheConfig,
        tiered.RecordCacheConfig,
        tiered.RouterConfig,
        tiered.TTLRule,
    ):
        with pytest.raises(TypeError):
            cls(3)  # type: ignore[misc]
        assert cls() == cls()  # every setting has a default


def test_one_statistics_verb() -> None:
    """Every object that keeps statistics answers ``get_stats()`` (psycopg_pool's verb), and
    none of the old spellings is left beside it."""
    from tiered.cache.adaptive import AdaptiveTTLCache
    from tiered.cache.layer import CacheLayer
    from tiered.cache.policy import WTinyLFU
    from tiered.compression import Codec
    from tiered.db.database import Database
    from tiered.db.replica import LocalReplica
    from tiered.db.router import Router
    from tiered.metrics import Metrics
    from tiered.pool import Pool
    from tiered.store.dictionaries import Dictionaries

    for cls in (
        tiered.Store,
        tiered.SyncStore,
        Pool,
        AdaptiveTTLCache,
        WTinyLFU,
        CacheLayer,
        Codec,
        Database,
        Router,
        LocalReplica,
        Metrics,
        Dictionaries,
    ):
        assert callable(getattr(cls, "get_stats", None)), cls
        for old in ("stats", "snapshot", "tuning", "as_dict"):
            assert not hasattr(cls, old), (cls, old)
    assert callable(Pool.pop_stats)


def test_pool_settings_live_in_the_config() -> None:
    import pytest

    from tiered.pool import Pool

    with pytest.raises(tiered.ConfigError):
        tiered.PoolConfig(connect_timeout=0)

    async def factory() -> object:
        raise AssertionError("never opened")

    cfg = tiered.PoolConfig(max_size=3, connect_timeout=2.5)
    pool = Pool(factory, cfg)  # type: ignore[arg-type]
    assert pool.config is cfg
    for mirrored in ("max_size", "timeout", "connect_timeout", "keepalive", "check_after"):
        assert not hasattr(pool, mirrored), mirrored
