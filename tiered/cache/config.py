"""The cache layer's settings: one :class:`RecordCacheConfig` per record type and for query
results, inside :class:`CacheConfig` (which ``Store.open(cache=...)`` takes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tiered.cache.adaptive import TTLRule
from tiered.errors import ConfigError

__all__ = ["CacheConfig", "RecordCacheConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordCacheConfig:
    """One record type's cache. ``negative_ttl``: seconds a "not found" is remembered."""

    enabled: bool = True
    maxsize: int = 10_000
    max_bytes: int | None = 64 << 20
    ttl: TTLRule = field(default_factory=TTLRule)
    negative_ttl: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """Settings of the cache layer (``enabled=False`` switches all of it off).

    staleness: seconds a cached read may lag writes made by *other* processes (the change-log
        poll interval); 0 = check on every read, None = never (this process is the only writer).
    xfetch_beta: probabilistic early refresh of entries close to expiry (XFetch, Vattani et al.
        2015); None disables it, 1.0 is the paper's default.
    write_through: writes of at most this many records install them in the cache after commit;
        larger batches invalidate instead (0 = always invalidate).
    stale_if_error: serve-stale (RFC 5861's ``stale-if-error``): when the database is unavailable
        (:class:`~tiered.errors.DatabaseUnavailable`: down, unreachable, timed out, no connection
        free), a cached record or query result that expired less than this many seconds ago is
        served instead of the error, and a change-log poll that fails does not fail the read.
        So during an outage a read may be up to its TTL plus this much stale, whatever
        ``staleness`` says; records changed by a write this process saw are never served
        stale. 0 (the default) = never.
    """

    enabled: bool = True
    episodes: RecordCacheConfig = field(default_factory=RecordCacheConfig)
    patterns: RecordCacheConfig = field(default_factory=lambda: RecordCacheConfig(maxsize=5_000))
    heuristics: RecordCacheConfig = field(default_factory=lambda: RecordCacheConfig(maxsize=5_000))
    embeddings: RecordCacheConfig = field(default_factory=lambda: RecordCacheConfig(maxsize=5_000))
    queries: RecordCacheConfig = field(
        default_factory=lambda: RecordCacheConfig(
            maxsize=1_000, max_bytes=32 << 20, ttl=TTLRule(base=60.0, min=10.0, max=600.0)
        )
    )
    staleness: float | None = 1.0
    xfetch_beta: float | None = None
    write_through: int = 32
    stale_if_error: float = 0.0
    policy: str = "wtinylfu"
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.staleness is not None and self.staleness < 0:
            raise ConfigError(f"CacheConfig.staleness must be >= 0 or None, got {self.staleness}")
        if self.xfetch_beta is not None and self.xfetch_beta <= 0:
            raise ConfigError(f"CacheConfig.xfetch_beta must be > 0, got {self.xfetch_beta}")
        if not self.stale_if_error >= 0:
            raise ConfigError(
                f"CacheConfig.stale_if_error must be >= 0 seconds, got {self.stale_if_error}"
            )
