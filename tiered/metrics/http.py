"""An optional ``/metrics`` endpoint on 127.0.0.1 for Prometheus to scrape.

``server = await serve_metrics(store.metrics)`` starts a minimal HTTP/1.1 server on the running
event loop (loopback only; ``port=0`` picks a free port, see ``server.url``) that answers
``GET /metrics`` with :meth:`Metrics.to_prometheus` and 404 otherwise; ``await server.close()``
stops it (it is also an async context manager). It serves one small response per connection and
reads at most 8 KiB of request head, so a misbehaving client cannot hold memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

from tiered.errors import ConfigError
from tiered.metrics.registry import Metrics

__all__ = ["CONTENT_TYPE", "MetricsServer", "serve_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_MAX_HEAD = 8192


class MetricsServer:
    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host, self._port = host, port
        self._server: asyncio.Server | None = None
        self.scrapes = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("metrics server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def start(self) -> MetricsServer:
        self._server = await asyncio.start_server(self._handle, self.host, self._port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MetricsServer:
        return await self.start() if self._server is None else self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = f"on {self.url}" if self._server is not None else "stopped"
        return f"<MetricsServer {state}>"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, OSError):
            writer.close()
            return
        parts = head.split(b"\r\n", 1)[0].split()
        if len(head) > _MAX_HEAD or len(parts) != 3:
            status, body, ctype = "400 Bad Request", b"bad request\n", "text/plain"
        elif parts[0] not in (b"GET", b"HEAD"):
            status, body, ctype = "405 Method Not Allowed", b"use GET\n", "text/plain"
        elif parts[1].split(b"?", 1)[0] != b"/metrics":
            status, body, ctype = "404 Not Found", b"see /metrics\n", "text/plain"
        else:
            self.scrapes += 1
            status, body, ctype = "200 OK", self.metrics.to_prometheus().encode(), CONTENT_TYPE
        head_out = (
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            writer.write(head_out + (b"" if parts[:1] == [b"HEAD"] else body))
            await writer.drain()
        writer.close()


async def serve_metrics(
    metrics: Metrics, *, host: str = "127.0.0.1", port: int = 0
) -> MetricsServer:
    """Start a ``/metrics`` endpoint for ``metrics`` on a loopback address."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(f"the metrics endpoint binds to loopback only, got host {host!r}")
    return await MetricsServer(metrics, host, port).start()
