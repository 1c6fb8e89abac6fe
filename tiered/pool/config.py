"""The connection pool's settings: the one place they and their defaults are written down."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tiered.errors import ConfigError
from tiered.pool.sizing import SizingPolicy

__all__ = ["PoolConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """Settings of a :class:`~tiered.pool.Pool` (keyword-only; each default is a sensible
    production value; times in seconds).

    min_size / max_size: bounds of the pool's size (connections open or opening); ``min_size``
        defaults to 1, or 0 without ``reuse``.
    timeout: how long a borrower waits for a connection before :class:`PoolTimeout`.
    connect_timeout: how long opening (or health-checking) one connection may take before it
        counts as failed.
    max_waiting: borrowers allowed to queue at once (0: unbounded); one more is refused at once
        with :class:`PoolExhausted`.
    keepalive: ping connections idle this long (``None``: never), inside the ~10 s idle cut of
        Hrana streams on sqld. Ignored for ``file:`` databases (an embedded connection cannot
        be cut).
    check_after: a connection used or pinged within this long is lent without a health check.
    max_idle / max_lifetime: close a connection idle this long / older than this (jittered down
        by up to ``lifetime_jitter``, so connections opened together do not reconnect together).
    reconnect_timeout: how long the background reconnect keeps trying during an outage, with
        jittered exponential backoff from ``backoff_base`` to ``backoff_max``.
    maintenance_interval: seconds between maintenance passes (keep-alive, recycling, sizing).
    sizing: a :mod:`tiered.pool.sizing` policy; ``None``: :class:`~tiered.pool.Reactive` between
        ``min_size`` and ``max_size`` on the pool's clock.
    history: maintenance samples kept in the utilization series.
    reuse: ``False`` opens a new connection for every borrow and closes it after (no pooling:
        the baseline ``tiered bench --layers`` compares against); keeps no connections, so an
        explicit ``min_size`` above 0 is an error.
    """

    min_size: int | None = None
    max_size: int = 10
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_waiting: int = 0
    keepalive: float | None = 5.0
    check_after: float = 1.0
    max_idle: float = 600.0
    max_lifetime: float = 3600.0
    lifetime_jitter: float = 0.1
    reconnect_timeout: float = 300.0
    backoff_base: float = 0.05
    backoff_max: float = 0.5
    maintenance_interval: float = 0.5
    sizing: SizingPolicy | None = None
    history: int = 3600
    reuse: bool = True

    def __post_init__(self) -> None:
        if self.min_size is None:
            object.__setattr__(self, "min_size", 1 if self.reuse else 0)
        if not 0 <= self.minimum <= self.max_size or self.max_size < 1:
            raise ConfigError(
                "PoolConfig needs 0 <= min_size <= max_size and max_size >= 1, "
                f"got min_size={self.min_size} max_size={self.max_size}"
            )
        for label in (
            "timeout",
            "connect_timeout",
            "maintenance_interval",
            "max_idle",
            "max_lifetime",
        ):
            v = getattr(self, label)
            if not v > 0:
                raise ConfigError(f"PoolConfig.{label} must be > 0, got {v}")
        if self.keepalive is not None and not self.keepalive > 0:
            raise ConfigError(f"PoolConfig.keepalive must be > 0 or None, got {self.keepalive}")
        if self.max_waiting < 0 or self.check_after < 0 or self.reconnect_timeout < 0:
            raise ConfigError(
                "PoolConfig.max_waiting, check_after and reconnect_timeout must be >= 0"
            )
        if not 0 <= self.lifetime_jitter < 1:
            raise ConfigError(
                f"PoolConfig.lifetime_jitter must be within [0, 1), got {self.lifetime_jitter}"
            )
        if not 0 < self.backoff_base <= self.backoff_max:
            raise ConfigError("PoolConfig needs 0 < backoff_base <= backoff_max")
        if self.history < 1:
            raise ConfigError(f"PoolConfig.history must be >= 1, got {self.history}")
        if not self.reuse and self.minimum:
            raise ConfigError("PoolConfig(reuse=False) keeps no connections: min_size must be 0")

    @property
    def minimum(self) -> int:
        """``min_size`` as resolved at construction."""
        return self.min_size if self.min_size is not None else 0

    def for_node(self, *, embedded: bool) -> PoolConfig:
        """These settings for one database node: no keep-alive for an embedded file (it cannot
        be cut) or without reuse (nothing stays open to keep alive)."""
        if self.keepalive is None or (self.reuse and not embedded):
            return self
        return dataclasses.replace(self, keepalive=None)
