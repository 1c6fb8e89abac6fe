"""The Store and its parts: settings (:mod:`.config`), record kinds (:mod:`.records`), compression
dictionaries (:mod:`.dictionaries`), embeddings (:mod:`.vectors`), the async Store
(:mod:`.core`) and its blocking wrapper (:mod:`.sync`)."""

from tiered.pool import PoolConfig
from tiered.store.config import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MIN_DICT_RECORDS,
    Clock,
    StoreConfig,
    wall_clock_us,
)
from tiered.store.core import OPERATIONS, Store
from tiered.store.sync import SyncStore, open_sync

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MIN_DICT_RECORDS",
    "OPERATIONS",
    "Clock",
    "PoolConfig",
    "Store",
    "StoreConfig",
    "SyncStore",
    "open_sync",
    "wall_clock_us",
]
