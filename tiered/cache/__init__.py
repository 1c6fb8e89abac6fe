"""Cache layer: adaptive-TTL record cache, query-result cache, single-flight, coherence."""

from tiered.cache.adaptive import AdaptiveTTLCache, CacheStats, TTLRule
from tiered.cache.config import CacheConfig, RecordCacheConfig
from tiered.cache.layer import CacheLayer
from tiered.cache.policy import Token, WTinyLFU
from tiered.cache.queries import QueryCache
from tiered.cache.sketch import FrequencySketch, stable_hash

__all__ = [
    "AdaptiveTTLCache",
    "CacheConfig",
    "CacheLayer",
    "CacheStats",
    "FrequencySketch",
    "QueryCache",
    "RecordCacheConfig",
    "TTLRule",
    "Token",
    "WTinyLFU",
    "stable_hash",
]
