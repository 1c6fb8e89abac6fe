"""tiered: cache, pool, compression and metrics layers for agent memory on libSQL/Turso.

The front door holds what a user of the store needs: :class:`Store` (and the blocking
:class:`SyncStore`, :func:`open_sync`), its settings, the records it stores, the errors it
raises, and :func:`serve_metrics`. Everything else lives in its layer's module: sizing policies
in :mod:`tiered.pool`, the cache in :mod:`tiered.cache`, the codec in
:mod:`tiered.compression`, metrics in :mod:`tiered.metrics`, a local sqld in
:mod:`tiered.devserver`, test tools in :mod:`tiered.testing`.
"""

from tiered.cache import CacheConfig, RecordCacheConfig, TTLRule
from tiered.db.router import RouterConfig
from tiered.errors import (
    AuthError,
    ConfigError,
    ConstraintError,
    CorruptPayload,
    DatabaseBusy,
    DatabaseError,
    DatabaseUnavailable,
    DataError,
    PayloadTooLarge,
    PoolClosed,
    PoolExhausted,
    PoolTimeout,
    ReadOnlyError,
    StoreClosed,
    TieredError,
    UnknownDictionary,
    UnknownLayout,
    ValidationError,
)
from tiered.metrics import serve_metrics
from tiered.model import (
    Abstained,
    Complexity,
    ContextPattern,
    DecisionPoint,
    Embedding,
    Episode,
    ErrorRecovery,
    Evidence,
    ExecutionStep,
    Failure,
    Heuristic,
    PartialSuccess,
    Pattern,
    PatternKind,
    Reflection,
    StepResult,
    Success,
    TaskContext,
    ToolSequence,
    from_micros,
    to_micros,
)
from tiered.store import PoolConfig, Store, StoreConfig, SyncStore, open_sync

__version__ = "0.1.0"

__all__ = [
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
