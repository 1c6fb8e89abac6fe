"""Error families of tiered.

Every error raised by the library derives from :class:`TieredError`. Subclasses also inherit the
builtin they refine, so ``except ValueError`` keeps working for callers that do not know tiered.
Driver errors (libsql-client, sqlite3, aiohttp) are translated at the boundary in
:mod:`tiered.db.driver` and chained with ``raise ... from``; their messages are scrubbed of
credentials before they reach an exception, a log or a repr.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "ConstraintError",
    "CorruptPayload",
    "DataError",
    "DatabaseBusy",
    "DatabaseError",
    "DatabaseUnavailable",
    "DevServerError",
    "PayloadTooLarge",
    "PoolClosed",
    "PoolExhausted",
    "PoolTimeout",
    "ReadOnlyError",
    "StoreClosed",
    "TieredError",
    "UnknownDictionary",
    "UnknownLayout",
    "ValidationError",
]


class TieredError(Exception):
    """Base class of every error raised by tiered."""


class ConfigError(TieredError, ValueError):
    """A setting is invalid (raised at construction, before any I/O)."""


class ValidationError(TieredError, ValueError):
    """A record or argument is invalid; nothing was written.

    ``field`` names the offending field (dotted for nested fields, e.g. ``context.domain``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PayloadTooLarge(ValidationError):
    """An encoded record is larger than the store's ``max_payload_bytes``; nothing was written."""


class DataError(TieredError, ValueError):
    """Input data cannot be used as given: a traffic file without a timestamp column or with
    negative counts, a database whose contents the analysis cannot read. The message says what
    was found and what is needed."""


class UnknownLayout(DataError):
    """The database is neither of tiered's layout nor of the original system's (nor empty);
    ``tables`` lists what it holds."""

    def __init__(self, message: str, tables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.tables = tables


class CorruptPayload(TieredError, ValueError):
    """A stored frame cannot be decoded (bad magic, unknown codec, truncated or lying length)."""


class UnknownDictionary(CorruptPayload):
    """A frame names a compression dictionary this codec has not loaded (``dict_id``).

    A Store reloads its dictionaries table and retries once: another process may have trained it.
    """

    def __init__(self, dict_id: int) -> None:
        super().__init__(f"frame names compression dictionary {dict_id}, which is not loaded")
        self.dict_id = dict_id


class StoreClosed(TieredError, RuntimeError):
    """The store (or connection) was closed; open a new one."""


class ReadOnlyError(TieredError, PermissionError):
    """A write method was called on a store opened read-only (``StoreConfig(read_only=True)``);
    it was refused before any I/O, and nothing was written."""


class DatabaseError(TieredError):
    """The database reported an error. ``code`` is the server's or SQLite's error code."""

    def __init__(self, message: str, *, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


class ConstraintError(DatabaseError, ValueError):
    """A constraint (unique, foreign key, check) rejected the write; the transaction rolled back."""


class DatabaseUnavailable(DatabaseError, ConnectionError):
    """The database could not be reached (refused, reset, timed out, server gone)."""


class DatabaseBusy(DatabaseUnavailable):
    """Another writer held the database lock for longer than the server waits
    (``SQLITE_BUSY``/``SQLITE_LOCKED``). Nothing of the statement or transaction was applied and
    the connection is still good; the Store retries with backoff for up to its ``timeout``
    before raising this."""


class PoolTimeout(DatabaseUnavailable, TimeoutError):
    """No connection became free within the acquire timeout. The message names the pool."""

    def __init__(self, message: str, *, pool: str, code: str = "POOL_TIMEOUT") -> None:
        super().__init__(message, code=code)
        self.pool = pool


class PoolExhausted(PoolTimeout):
    """The pool already had ``max_waiting`` requests queued; this one was refused at once."""


class PoolClosed(StoreClosed):
    """The connection pool was closed."""


class AuthError(DatabaseError, PermissionError):
    """The server rejected the credentials (missing, malformed or wrong token)."""


class DevServerError(TieredError, RuntimeError):
    """The local sqld could not be located, extracted, started or stopped."""
