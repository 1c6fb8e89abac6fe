"""The Hrana backends, over libsql-client: WebSocket (``ws://``, ``wss://``, ``libsql://``) and
HTTP (``http://``, ``https://``).

Over WebSocket, statements are sent as Hrana *stored SQL* (``store_sql`` once per connection and
shape, then ``sql_id``), and large batches run as an interactive transaction on one stream,
chunk by chunk. Over HTTP each call is one stateless request; a batch is one request, so it is
atomic without a session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import urllib.parse
from collections.abc import Sequence
from typing import Any, TypeVar

import aiohttp
import libsql_client
import msgspec
from libsql_client.hrana.client import HranaClient
from libsql_client.http import HttpClient

from tiered.db.base import (
    Connection,
    Result,
    Statement,
    Step,
    Value,
    args_size,
    redact_url,
    scrub,
    translate,
    url_token,
)
from tiered.errors import AuthError, DatabaseError, DatabaseUnavailable, TieredError

__all__ = ["MAX_STORED_SQL", "HranaHttpConnection", "HranaWsConnection", "consume_result"]


def _http_base(url: str) -> str:
    """The HTTP base URL of a Hrana WebSocket URL (same host and path, no query)."""
    parts = urllib.parse.urlsplit(url)
    tls = parts.scheme in ("wss", "libsql") and "tls=0" not in parts.query
    return urllib.parse.urlunsplit(
        ("https" if tls else "http", parts.netloc, parts.path.rstrip("/"), "", "")
    )


#: a write statement that can never change anything: sqld checks write permission on the
#: statement's kind before SQLite sees it (403 for a read-only token); with write permission
#: SQLite refuses it ("table sqlite_master may not be modified")
_WRITE_PROBE = "DELETE FROM sqlite_master WHERE 0"


_JSON = msgspec.json.Encoder()
_MIN_INT, _MAX_INT = -(2**63), 2**63 - 1


def _to_proto(v: Value) -> dict[str, Any]:
    if v is None:
        return {"type": "null"}
    if isinstance(v, str):
        return {"type": "text", "value": v}
    if isinstance(v, bool):
        return {"type": "integer", "value": str(int(v))}
    if isinstance(v, int):
        if not _MIN_INT <= v <= _MAX_INT:
            raise DatabaseError("integer exceeds 64 bits", code="ARGS_INVALID")
        return {"type": "integer", "value": str(v)}
    if isinstance(v, float):
        if not math.isfinite(v):
            raise DatabaseError("non-finite float", code="ARGS_INVALID")
        return {"type": "float", "value": v}
    return {"type": "blob", "base64": base64.b64encode(v).decode()}


def _from_proto(v: dict[str, Any]) -> Value:
    t = v["type"]
    if t == "null":
        return None
    if t == "integer":
        return int(v["value"])
    if t == "float":
        return float(v["value"])
    if t == "text":
        return str(v["value"])
    if t == "blob":
        return base64.b64decode(v["base64"] + "==")
    raise DatabaseError(f"unknown Hrana value type {t!r}", code="HRANA_PROTO_ERROR")


def _result(res: dict[str, Any]) -> Result:
    rows = [tuple(_from_proto(v) for v in row) for row in res["rows"]]
    return Result(rows, int(res.get("affected_row_count") or 0))


def _proto_error(err: dict[str, Any]) -> libsql_client.LibsqlError:
    return libsql_client.LibsqlError(err.get("message", "error"), err.get("code") or "UNKNOWN")


def _check_batch(res: dict[str, Any], skip: int = 0) -> None:
    for err in res["step_errors"][skip:]:
        if err is not None:
            raise _proto_error(err)


def _txn_batch(stmts: list[dict[str, Any]]) -> dict[str, Any]:
    """A Hrana batch that runs ``stmts`` in one transaction: BEGIN, each step only if the one
    before succeeded, COMMIT, and ROLLBACK if the commit did not happen."""
    steps: list[dict[str, Any]] = [{"stmt": {"sql": "BEGIN", "want_rows": False}}]
    for s in stmts:
        steps.append({"condition": {"type": "ok", "step": len(steps) - 1}, "stmt": s})
    steps.append(
        {
            "condition": {"type": "ok", "step": len(steps) - 1},
            "stmt": {"sql": "COMMIT", "want_rows": False},
        }
    )
    steps.append(
        {
            "condition": {"type": "not", "cond": {"type": "ok", "step": len(steps) - 1}},
            "stmt": {"sql": "ROLLBACK", "want_rows": False},
        }
    )
    return {"steps": steps}


T = TypeVar("T")


async def _response(fut: asyncio.Future[T]) -> T:
    """Await a libsql-client response future without cancelling it.

    A deadline (or a caller's cancellation) that cancelled the future itself would make
    libsql-client's callback fail with ``InvalidStateError`` when the server's answer arrives
    later; shielded, the answer lands in a future nobody awaits, whose error is consumed.
    """
    fut.add_done_callback(consume_result)
    return await asyncio.shield(fut)


def consume_result(fut: asyncio.Future[Any]) -> None:
    """Retrieve a finished future's exception, so an answer nobody awaits logs no warning."""
    if not fut.cancelled():
        fut.exception()


class _HranaBase(Connection):
    def __init__(self, url: str, auth_token: str | None, timeout: float) -> None:
        super().__init__()
        self._url = url
        self._token = auth_token
        self.timeout = timeout

    def __repr__(self) -> str:
        # The token is never part of a repr; the URL has it redacted.
        return f"<{type(self).__name__} {redact_url(self._url)}{' closed' if self._closed else ''}>"

    async def _guard(self, coro: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await coro
        except TieredError:
            raise
        except TimeoutError as e:
            raise DatabaseUnavailable(
                f"no answer from {redact_url(self._url)} within {self.timeout} s", code="TIMEOUT"
            ) from e
        except Exception as e:
            raise translate(e, secret=self._token) from e

    async def ping(self) -> None:
        await self.execute(_PING)


_PING = Statement("ping", "SELECT 1")
#: sqld keeps at most 150 stored SQL texts per WebSocket connection (SQL_STORE_TOO_MANY), and
#: libsql-client drops the store error, so the first use of an unstored id kills the socket.
#: Shapes past this budget are sent as text.
MAX_STORED_SQL = 128


class HranaWsConnection(_HranaBase):
    """libsql-client's Hrana WebSocket client with stored SQL and chunked transactions."""

    backend = "ws"

    def __init__(self, url: str, *, auth_token: str | None = None, timeout: float = 30.0) -> None:
        super().__init__(url, auth_token, timeout)
        try:
            client = libsql_client.create_client(url, auth_token=auth_token)
        except Exception as e:
            raise translate(e, secret=auth_token) from e
        assert isinstance(client, HranaClient)
        self._client = client
        self._received_error: BaseException | None = None
        self._sql_conn: object | None = None
        self._sql_ids: dict[str, int] = {}
        self._ready_conn: object | None = None
        self._stream: Any = None  # the stream single statements and batches run on
        self._stream_conn: object | None = None  # the socket it belongs to

    async def _ready(self) -> None:
        """Wait for the Hrana handshake of a new socket before sending requests on it.

        Requests pipelined behind ``hello`` would otherwise race the server's ``hello_error``
        (a rejected token) and surface as a transport error instead of :class:`AuthError`.
        """
        conn = self._client._conn
        if conn.exception is not None:
            # the socket failed: libsql-client's _open_stream replaces it (rare path)
            try:
                self._client._open_stream().close()
            except Exception as e:
                raise translate(e, secret=self._token) from e
            conn = self._client._conn
        if conn is not self._ready_conn:
            self._watch(conn)
            await self._guard(conn.wait_connected())
            # libsql-client sets the handshake event before a hello_error becomes the socket's
            # exception (the receive task's done-callback, queued behind us): yield once so it
            # lands, then fail with it rather than with the transport error a request would hit.
            await asyncio.sleep(0)
            if conn.exception is not None:
                err = self._received_error or conn.exception
                raise translate(err, secret=self._token) from err
            self._ready_conn = conn

    def _watch(self, conn: Any) -> None:
        """Remember the error the server's messages raised on ``conn`` (a ``hello_error``: a
        rejected token). libsql-client keeps only the socket's *first* failure, and a request
        written while the server closes the socket can fail first with a transport error; the
        server's own answer is the one to report. Called before any await on a new socket, so
        no message can have arrived yet."""
        if getattr(conn, "_tiered_watched", False):
            return
        receive = conn._receive
        self._received_error = None

        def watched(text: str) -> None:
            try:
                receive(text)
            except libsql_client.LibsqlError as e:
                self._received_error = e
                raise

        conn._receive = watched
        conn._tiered_watched = True

    async def _guard(self, coro: Any) -> Any:
        try:
            return await super()._guard(coro)
        except DatabaseUnavailable as e:
            # a socket that died because the server rejected the handshake: report why
            err = self._received_error or self._client._conn.exception
            if isinstance(err, libsql_client.LibsqlError) and err is not e.__cause__:
                raise translate(err, secret=self._token) from err
            raise

    async def _request(self, coro: Any) -> Any:
        """A request on a connected socket; a socket the server dropped without a close frame
        is checked for a permission refusal (see :meth:`_forbidden`)."""
        try:
            return await self._guard(coro)
        except DatabaseUnavailable as e:
            if e.code == "HRANA_WEBSOCKET_ERROR" and "with code" not in str(e):
                refusal = await self._forbidden()
                if refusal is not None:
                    raise refusal from e
            raise

    async def _forbidden(self) -> AuthError | None:
        """sqld answers a write by a read-only token on a WebSocket by dropping the socket,
        with no close frame and no reason (an outage looks the same). Ask the server over HTTP,
        with a write that cannot change anything, whether this token may write: a 403 makes
        the error an :class:`AuthError`. ``None`` when it may, or when the server does not
        answer (then it is an outage)."""
        token = url_token(self._url, self._token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {
            "requests": [
                {"type": "execute", "stmt": {"sql": _WRITE_PROBE}},
                {"type": "close"},
            ]
        }
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=min(5.0, self.timeout))
                ) as session,
                session.post(
                    f"{_http_base(self._url)}/v2/pipeline", json=body, headers=headers
                ) as resp,
            ):
                if resp.status != 403:
                    return None
                text = scrub((await resp.text())[:300], token)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None
        return AuthError(
            f"the server refused a write: this token has no write permission ({text})",
            code="FORBIDDEN",
        )

    def _stmt(self, stmt: Statement, args: Sequence[Value], want_rows: bool) -> dict[str, Any]:
        """The Hrana statement for ``stmt``, storing its SQL on this socket the first time."""
        conn = self._client._conn
        if conn is not self._sql_conn:
            # A new socket (first use, or libsql-client reconnected): stored ids are gone.
            self._sql_conn, self._sql_ids = conn, {}
        sql_id = self._sql_ids.get(stmt.sql)
        first = sql_id is None
        if sql_id is None:
            if not stmt.reuse or len(self._sql_ids) >= MAX_STORED_SQL:
                self.counters.count(stmt, 1, False)
                return {
                    "sql": stmt.sql,
                    "args": [_to_proto(a) for a in args],
                    "want_rows": want_rows,
                }
            sql_id = conn.store_sql(stmt.sql)
            self._sql_ids[stmt.sql] = sql_id
        self.counters.count(stmt, 1, first)
        return {"sql_id": sql_id, "args": [_to_proto(a) for a in args], "want_rows": want_rows}

    def _main_stream(self) -> Any:
        """The connection's long-lived Hrana stream (reopened after a reconnect or an error).

        On sqld every stream is a database connection: opening one per statement costs two more
        messages and a server-side connection set-up each time, which is exactly the
        per-operation overhead a pool removes.
        """
        stream = self._stream
        if stream is None or stream.closed or self._stream_conn is not self._client._conn:
            stream = self._stream = self._client._open_stream()
            self._stream_conn = self._client._conn
        return stream

    async def execute(self, stmt: Statement, args: Sequence[Value] = ()) -> Result:
        self._check_open()
        await self._ready()

        async def run() -> Result:
            stmt_proto = self._stmt(stmt, args, True)
            fut = self._main_stream().execute(stmt_proto)
            return _result(await _response(fut))

        result: Result = await self._request(run())
        return result

    async def transaction(self, steps: Sequence[Step], *, chunk_bytes: int) -> None:
        self._check_open()
        await self._ready()
        chunks: list[list[Step]] = [[]]
        size = 0
        for step in steps:
            s = args_size(step[1])
            if chunks[-1] and size + s > chunk_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(step)
            size += s

        async def one() -> None:
            batch = _txn_batch([self._stmt(st, a, False) for st, a in chunks[0]])
            fut = self._main_stream().batch(batch)
            _check_batch(await _response(fut))

        async def interactive() -> None:
            # BEGIN, one batch per chunk (each step conditional on the one before), COMMIT;
            # any failure rolls back, so the whole transaction is all-or-nothing.
            stream = self._client._open_stream()
            try:
                await _response(stream.execute({"sql": "BEGIN", "want_rows": False}))
                for chunk in chunks:
                    body: list[dict[str, Any]] = []
                    for st, a in chunk:
                        cond = {"type": "ok", "step": len(body) - 1} if body else None
                        step: dict[str, Any] = {"stmt": self._stmt(st, a, False)}
                        if cond:
                            step["condition"] = cond
                        body.append(step)
                    res = await _response(stream.batch({"steps": body}))
                    _check_batch(res)
                await _response(stream.execute({"sql": "COMMIT", "want_rows": False}))
            except BaseException:
                if not stream.closed:
                    rollback = stream.execute({"sql": "ROLLBACK", "want_rows": False})
                    rollback.add_done_callback(lambda f: f.cancelled() or f.exception())
                raise
            finally:
                stream.close()

        await self._request(one() if len(chunks) == 1 else interactive())

    async def execute_many(self, steps: Sequence[Step]) -> list[Result]:
        self._check_open()
        await self._ready()

        async def run() -> list[Result]:
            batch = {"steps": [{"stmt": self._stmt(st, a, True)} for st, a in steps]}
            res = await _response(self._main_stream().batch(batch))
            _check_batch(res)
            return [_result(r) for r in res["step_results"]]

        results: list[Result] = await self._request(run())
        return results

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            # closing a dead socket must not mask the caller's error, and libsql-client closes
            # its HTTP session only after the socket closed cleanly: close it in any case
            try:
                with contextlib.suppress(Exception):
                    await self._client.close()
            finally:
                if not self._client._session.closed:
                    with contextlib.suppress(Exception):
                        await self._client._session.close()


class HranaHttpConnection(_HranaBase):
    """libsql-client's HTTP client: each call is one stateless request on a keep-alive session."""

    backend = "http"

    def __init__(
        self,
        url: str,
        *,
        auth_token: str | None = None,
        timeout: float = 30.0,
        max_request_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        super().__init__(url, auth_token, timeout)
        try:
            client = libsql_client.create_client(url, auth_token=auth_token)
        except Exception as e:
            raise translate(e, secret=auth_token) from e
        assert isinstance(client, HttpClient)
        self._client = client
        self.max_request_bytes = max_request_bytes

    async def execute(self, stmt: Statement, args: Sequence[Value] = ()) -> Result:
        self._check_open()
        self.counters.count(stmt, 1, False)
        req = {"stmt": {"sql": stmt.sql, "args": [_to_proto(a) for a in args], "want_rows": True}}
        res = await self._guard(self._post("v1/execute", req))
        return _result(res["result"])

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        # libsql-client's own _send passes json=, which aiohttp warns about for large bodies;
        # this sends the same request on the same keep-alive session, streamed from a buffer.
        client = self._client
        url = urllib.parse.urljoin(client._url, path)
        data = io.BytesIO(_JSON.encode(body))
        headers = {"content-type": "application/json"}
        async with client._session.post(url, data=data, headers=headers) as resp:
            payload = await resp.read()
            if resp.ok:
                return msgspec.json.decode(payload)
            if resp.status in (401, 403):
                raise AuthError(f"server answered HTTP {resp.status}", code="AUTH_FAILED")
            try:
                err = msgspec.json.decode(payload)
                message, code = err["message"], err.get("code") or "UNKNOWN"
            except (msgspec.DecodeError, KeyError, TypeError):
                message = f"HTTP {resp.status}: {payload[:200].decode(errors='replace')}"
                code = "SERVER_ERROR"
            if resp.status >= 500 and code == "SERVER_ERROR":
                raise DatabaseUnavailable(message, code=code)
            raise libsql_client.LibsqlError(message, code)

    async def transaction(self, steps: Sequence[Step], *, chunk_bytes: int) -> None:
        # HTTP has no session to hold a transaction open across requests: one request carries
        # the whole transaction, bounded by max_request_bytes.
        self._check_open()
        size = sum(args_size(a) for _, a in steps)
        if size > self.max_request_bytes:
            raise DatabaseError(
                f"transaction of ~{size} bytes exceeds max_request_bytes {self.max_request_bytes} "
                "for HTTP; use a ws:// URL (chunked transactions) or smaller batches",
                code="REQUEST_TOO_LARGE",
            )
        stmts = []
        for st, a in steps:
            self.counters.count(st, 1, False)
            stmts.append({"sql": st.sql, "args": [_to_proto(x) for x in a], "want_rows": False})

        async def run() -> None:
            res = await self._post("v1/batch", {"batch": _txn_batch(stmts)})
            _check_batch(res["result"])

        await self._guard(run())

    async def execute_many(self, steps: Sequence[Step]) -> list[Result]:
        self._check_open()
        stmts = []
        for st, a in steps:
            self.counters.count(st, 1, False)
            stmts.append({"stmt": {"sql": st.sql, "args": [_to_proto(x) for x in a]}})

        async def run() -> list[Result]:
            res = (await self._post("v1/batch", {"batch": {"steps": stmts}}))["result"]
            _check_batch(res)
            return [_result(r) for r in res["step_results"]]

        results: list[Result] = await self._guard(run())
        return results

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()
