"""The Store's settings, limits and the argument checks its methods share."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tiered.errors import ConfigError, ValidationError

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MIN_DICT_RECORDS",
    "Clock",
    "StoreConfig",
    "check_limit",
    "check_records",
    "last_per_id",
    "wall_clock_us",
]

Clock = Callable[[], int]

#: records a dictionary needs: 20 to train on (zstd's minimum) plus 5 held out to judge it
MIN_DICT_RECORDS = 25
DEFAULT_LIMIT = 100
#: the most rows one list query returns; a larger ``limit`` is an error, never a cut
MAX_LIMIT = 1000


def wall_clock_us() -> int:
    """Microseconds since the epoch (the default clock of a Store)."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """Settings of a Store (keyword-only; every default is a sensible production value).

    timeout: seconds one database call may take before :class:`DatabaseUnavailable`.
    chunk_bytes: a batch is sent in chunks of about this many bytes of arguments (one transaction).
    max_payload_bytes: largest encoded record; larger ones raise :class:`PayloadTooLarge`.
    compression_level / compression_min_size / compress: the payload codec's settings.
    dictionary_after: after this many records of one type are written through this Store and no
        dictionary exists for the type, train one from a sample of them (0: only on demand, with
        :meth:`Store.train_dictionary`).
    dictionary_size / dictionary_sample: a dictionary's size in bytes, and how many payloads
        train it.
    max_concurrent_writes: write transactions this Store runs at once. SQLite admits one writer
        at a time, so more only queue inside the server while each holds a pooled connection
        (starving reads); and sqld 0.24's write-lock queue loses a waiter's turn when a
        checkpoint runs beside it, which stalls every writer for its transaction timeout.
        Writers beyond the limit wait
        in the Store, holding no connection, and are committed together as one transaction
        (group commit, :mod:`tiered.db.groupcommit`); the wait counts as the ``acquire`` phase.
    group_commit: ``False`` commits every write transaction alone (the baseline
        ``benchmarks/bench_writes.py`` compares against).
    read_only: open without writing anything, ever: no schema migration (a database of an older
        version or of another layout is read as it is), ``file:`` databases opened with
        SQLite's ``mode=ro``, and every write method raises :class:`ReadOnlyError` before any
        I/O.
    access_log / access_sample: a folder to record this Store's access trace in (keys salted
        and hashed; see :mod:`tiered.metrics.access`), and the share of keys recorded; ``tiered
        analyze --access-log`` sizes the cache on it. ``None`` (default): nothing recorded.
    """

    timeout: float = 30.0
    chunk_bytes: int = 1 << 20
    max_payload_bytes: int = 4 << 20
    compress: bool = True
    compression_level: int = 3
    compression_min_size: int = 256
    dictionary_after: int = 1000
    dictionary_size: int = 16384
    dictionary_sample: int = 1000
    max_concurrent_writes: int = 1
    group_commit: bool = True
    read_only: bool = False
    access_log: str | None = None
    access_sample: float = 1.0

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError(f"StoreConfig.timeout must be > 0 seconds, got {self.timeout}")
        if self.dictionary_after < 0 or self.dictionary_sample < MIN_DICT_RECORDS:
            raise ConfigError(
                "StoreConfig.dictionary_after must be >= 0, "
                f"dictionary_sample >= {MIN_DICT_RECORDS}"
            )
        if not 1024 <= self.dictionary_size <= 1 << 20:
            raise ConfigError(
                f"StoreConfig.dictionary_size must be within [1 KiB, 1 MiB], "
                f"got {self.dictionary_size}"
            )
        if self.max_concurrent_writes < 1:
            raise ConfigError(
                f"StoreConfig.max_concurrent_writes must be >= 1, got {self.max_concurrent_writes}"
            )
        if self.chunk_bytes < 1024:
            raise ConfigError(f"StoreConfig.chunk_bytes must be >= 1024, got {self.chunk_bytes}")
        if not 1024 <= self.max_payload_bytes <= 64 << 20:
            raise ConfigError(
                f"StoreConfig.max_payload_bytes must be within [1 KiB, 64 MiB], "
                f"got {self.max_payload_bytes}"
            )
        if not 0 < self.access_sample <= 1:
            raise ConfigError(
                f"StoreConfig.access_sample must be within (0, 1], got {self.access_sample}"
            )
        if not isinstance(self.read_only, bool):
            raise ConfigError(f"StoreConfig.read_only must be a bool, got {self.read_only!r}")

    def database_options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`tiered.db.Database.open` these settings give."""
        return {
            "timeout": self.timeout,
            "chunk_bytes": self.chunk_bytes,
            "max_concurrent_writes": self.max_concurrent_writes,
            "group_commit": self.group_commit,
            "read_only": self.read_only,
        }


def check_limit(limit: object, name: str = "limit") -> int:
    """Validate a result count: an integer within ``[1, MAX_LIMIT]``.

    A larger one is an error rather than a silently shorter result: a caller that asked for
    5,000 rows and got 1,000 could not tell that rows were missing.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValidationError(name, f"must be an integer, got {type(limit).__name__}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            name, f"must be within [1, {MAX_LIMIT}] (the most one query returns), got {limit}"
        )
    return limit


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T")
R = TypeVar("R", bound=HasId)


def check_records(name: str, records: object, cls: type[T]) -> list[T]:
    """``records`` as a list of ``cls``, else :class:`ValidationError` naming the bad item."""
    if isinstance(records, str | bytes) or not isinstance(records, Iterable):
        raise ValidationError(name, f"must be a sequence of {cls.__name__}")
    out = list(records)
    for i, r in enumerate(out):
        if not isinstance(r, cls):
            raise ValidationError(
                f"{name}[{i}]", f"must be a {cls.__name__}, got {type(r).__name__}"
            )
    return out


def last_per_id(records: list[R]) -> list[R]:
    """Keep the last record of each id (a batch writes each id once: last one wins)."""
    seen: dict[str, R] = {}
    for r in records:
        seen.pop(r.id, None)
        seen[r.id] = r
    return list(seen.values())
