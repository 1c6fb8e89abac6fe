"""The driver layer's common parts: values and statements, error translation, the connection
interface every backend implements, and URL and token helpers.

Every driver error is translated here into the :mod:`tiered.errors` families, with the auth token
scrubbed from messages (:func:`translate`).
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, TypeAlias

import aiohttp
import libsql_client
import msgspec

from tiered.errors import (
    AuthError,
    ConfigError,
    ConstraintError,
    DatabaseBusy,
    DatabaseError,
    DatabaseUnavailable,
    StoreClosed,
    TieredError,
)

__all__ = [
    "Connection",
    "Result",
    "Row",
    "Statement",
    "StatementStats",
    "Step",
    "Value",
    "args_size",
    "as_bytes",
    "as_int",
    "as_str",
    "backend_of",
    "redact_url",
    "scrub",
    "token_access",
    "translate",
    "url_token",
]

Value: TypeAlias = int | float | str | bytes | None
Row: TypeAlias = tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL shape, built once; ``name`` labels it in statistics.

    ``reuse=False`` marks one-off statements (DDL, migrations): they are sent as text and never
    take one of the connection's limited stored-SQL slots.
    """

    name: str
    sql: str
    reuse: bool = True


class Result(NamedTuple):
    rows: list[Row]
    rows_affected: int


Step: TypeAlias = tuple[Statement, Sequence[Value]]


def as_int(v: Value) -> int:
    """A column the schema declares INTEGER (``NULL`` reads as 0: aggregates over nothing)."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    raise DatabaseError(f"expected an integer column, got {type(v).__name__}", code="TYPE")


def as_str(v: Value) -> str:
    """A column the schema declares TEXT NOT NULL."""
    if isinstance(v, str):
        return v
    raise DatabaseError(f"expected a text column, got {type(v).__name__}", code="TYPE")


def as_bytes(v: Value) -> bytes:
    """A column the schema declares BLOB NOT NULL."""
    if isinstance(v, bytes):
        return v
    raise DatabaseError(f"expected a blob column, got {type(v).__name__}", code="TYPE")


@dataclass(slots=True)
class StatementStats:
    """How statements were sent: executions, distinct shapes, and how often a shape was reused.

    ``prepared`` counts first uses of a shape on a connection (an SQLite prepare on the embedded
    backend, a ``store_sql`` on WebSocket); ``reused`` counts every later execution of it, which
    skipped the prepare (embedded: sqlite3's statement cache) or sent only a ``sql_id`` (WebSocket).
    """

    executions: int = 0
    prepared: int = 0
    reused: int = 0
    by_name: dict[str, int] = field(default_factory=dict)

    def count(self, stmt: Statement, n: int, first: bool) -> None:
        self.executions += n
        self.prepared += 1 if first else 0
        self.reused += n - 1 if first else n
        self.by_name[stmt.name] = self.by_name.get(stmt.name, 0) + n


def backend_of(url: str) -> str:
    """``file``, ``ws`` or ``http`` for a database URL (``libsql:`` and TLS schemes included)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "file":
        return "file"
    if scheme in ("ws", "wss", "libsql"):
        return "ws"
    if scheme in ("http", "https"):
        return "http"
    raise ConfigError(
        f"unsupported database URL scheme {scheme!r}: "
        "use file:, ws:, wss:, libsql:, http: or https:"
    )


def redact_url(url: str) -> str:
    """``url`` with any ``authToken`` query value and userinfo password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    q = "&".join(f"{k}={'***' if k == 'authToken' else v}" for k, v in query)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, q, parts.fragment))


def url_token(url: str, auth_token: str | None) -> str | None:
    """The token a connection to ``url`` sends: the URL's ``authToken`` wins, as in
    libsql-client."""
    for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True):
        if k == "authToken":
            return v or None
    return auth_token


def token_access(token: str | None) -> str | None:
    """The access a JWT grants by its ``a`` claim (``"ro"`` or ``"rw"``, as sqld and Turso
    mint them), or ``None`` when there is no token or it cannot be read (an opaque token).

    The signature is not checked: the server does that. This only lets a Store refuse a write
    it knows the server will refuse, before any I/O.
    """
    if not token or token.count(".") != 2:
        return None
    body = token.split(".")[1]
    try:
        claims = msgspec.json.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, msgspec.DecodeError):
        return None
    access = claims.get("a") if isinstance(claims, dict) else None
    return access if access in ("ro", "rw") else None


def scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


_AUTH_CODES = ("AUTH_", "UNAUTHORIZED")
_BUSY_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED")


def translate(exc: BaseException, *, secret: str | None = None) -> TieredError:
    """The tiered error for a driver exception (the caller raises it ``from`` the original)."""
    if isinstance(exc, TieredError):
        return exc
    msg = scrub(str(exc), secret) or type(exc).__name__
    if isinstance(exc, libsql_client.LibsqlError):
        code = exc.code or "UNKNOWN"
        if code.startswith("SQLITE_CONSTRAINT") or "constraint failed" in msg.lower():
            return ConstraintError(msg, code=code)
        if code.startswith(_BUSY_CODES) or msg.startswith(_BUSY_CODES):
            return DatabaseBusy(msg, code=code if code.startswith(_BUSY_CODES) else "SQLITE_BUSY")
        if code.startswith(_AUTH_CODES) or "401" in msg or "Unauthorized" in msg:
            return AuthError(msg, code=code)
        if code in ("CLIENT_CLOSED",):
            return StoreClosed(msg)
        if code in ("STREAM_CLOSED", "HRANA_WEBSOCKET_ERROR", "SERVER_ERROR") and (
            "502" in msg or "503" in msg or "closed" in msg.lower()
        ):
            return DatabaseUnavailable(msg, code=code)
        return DatabaseError(msg, code=code)
    if isinstance(exc, aiohttp.WSServerHandshakeError | aiohttp.ClientResponseError) and (
        exc.status in (401, 403)
    ):
        return AuthError(msg, code="AUTH_FAILED")
    if isinstance(exc, aiohttp.ClientError | OSError | asyncio.TimeoutError):
        return DatabaseUnavailable(f"{type(exc).__name__}: {msg}", code="UNAVAILABLE")
    if isinstance(exc, sqlite3.IntegrityError):
        return ConstraintError(msg, code=getattr(exc, "sqlite_errorname", "SQLITE_CONSTRAINT"))
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorname", "SQLITE_ERROR")
        if code.startswith(_BUSY_CODES):
            return DatabaseBusy(msg, code=code)
        if code.startswith("SQLITE_CANTOPEN"):
            return DatabaseUnavailable(msg, code=code)
        return DatabaseError(msg, code=code)
    return DatabaseError(f"{type(exc).__name__}: {msg}")


class Connection(ABC):
    """One connection to the database. Not shared between event loops.

    ``execute`` runs one statement in autocommit mode; ``transaction`` runs ``steps`` as one
    transaction (all of them or none), splitting them into chunks of at most ``chunk_bytes`` of
    arguments where the backend allows a transaction to span several requests.
    """

    backend: ClassVar[str]

    def __init__(self) -> None:
        self.counters = StatementStats()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @abstractmethod
    async def execute(self, stmt: Statement, args: Sequence[Value] = ()) -> Result: ...

    @abstractmethod
    async def transaction(self, steps: Sequence[Step], *, chunk_bytes: int) -> None: ...

    @abstractmethod
    async def execute_many(self, steps: Sequence[Step]) -> list[Result]:
        """Run ``steps`` in order in one round trip, each in autocommit (no transaction);
        the first failing step raises. Used for reads that need several answers at once."""

    @abstractmethod
    async def ping(self) -> None:
        """A cheap round trip (``SELECT 1``) that proves the connection works."""

    @abstractmethod
    async def close(self) -> None: ...

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{type(self).__name__} is closed")


def args_size(args: Sequence[Value]) -> int:
    """Approximate bytes of a statement's arguments on the wire (for chunking batches)."""
    n = 16
    for a in args:
        n += len(a) if isinstance(a, str | bytes) else 8
    return n
