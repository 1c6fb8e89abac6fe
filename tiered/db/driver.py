"""Connections to libSQL: embedded file, Hrana over WebSocket, Hrana over HTTP.

One URL picks the backend, as in libsql-client: ``file:path`` is embedded SQLite
(:mod:`tiered.db.embedded`); ``ws://``, ``wss://``, ``libsql://``, ``http://`` and ``https://``
talk Hrana to sqld or Turso (:mod:`tiered.db.hrana`). The types every backend shares and the
translation of driver errors into :mod:`tiered.errors` are in :mod:`tiered.db.base`; this
module is the front door: :func:`connect` and everything a caller of a connection needs.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from tiered.db.base import (
    Connection,
    Result,
    Row,
    Statement,
    StatementStats,
    Step,
    Value,
    args_size,
    as_bytes,
    as_int,
    as_str,
    backend_of,
    redact_url,
    token_access,
    translate,
    url_token,
)
from tiered.db.embedded import EmbeddedConnection
from tiered.db.hrana import MAX_STORED_SQL, HranaHttpConnection, HranaWsConnection, consume_result
from tiered.errors import ConfigError

__all__ = [
    "MAX_STORED_SQL",
    "Connection",
    "EmbeddedConnection",
    "HranaHttpConnection",
    "HranaWsConnection",
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
    "connect",
    "consume_result",
    "file_path",
    "file_read_only",
    "redact_url",
    "token_access",
    "translate",
    "url_token",
]


def file_path(url: str) -> str:
    """The filesystem path of a ``file:`` URL (``file:rel.db``, ``file:///abs.db``; the one
    query parameter allowed is ``mode=ro``, see :func:`file_read_only`)."""
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"file URL must not name a host, got {parts.netloc!r}")
    if parts.query and parts.query not in ("mode=ro", "mode=ro&snapshot=1"):
        raise ConfigError("file URLs take no query parameters but mode=ro (and snapshot=1)")
    path = urllib.parse.unquote(parts.path)
    if not path:
        raise ConfigError("file URL has no path: use file:relative.db or file:///absolute.db")
    return path


def file_read_only(url: str) -> bool:
    """Whether a ``file:`` URL asks for a read-only connection (``?mode=ro``)."""
    return urllib.parse.urlsplit(url).query.startswith("mode=ro")


async def connect(
    url: str,
    *,
    auth_token: str | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - the per-call deadline the connection keeps
) -> Connection:
    """Open a connection for ``url`` and prove it works with one round trip.

    ``timeout`` bounds every later call on the connection, not only this one.
    """
    backend = backend_of(url)
    conn: Connection
    if backend == "file":
        path = file_path(url)
        parent = Path(path).parent
        if not parent.exists():
            raise ConfigError(f"directory {str(parent)!r} of the database file does not exist")
        read_only = file_read_only(url)
        conn = EmbeddedConnection(
            path,
            busy_timeout=min(timeout, 30.0),
            read_only=read_only,
            snapshot=urllib.parse.urlsplit(url).query == "mode=ro&snapshot=1",
        )
    elif backend == "ws":
        conn = HranaWsConnection(url, auth_token=auth_token, timeout=timeout)
    else:
        conn = HranaHttpConnection(url, auth_token=auth_token, timeout=timeout)
    try:
        await conn.ping()
    except BaseException:
        await conn.close()
        raise
    return conn
