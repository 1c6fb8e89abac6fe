"""A small TCP proxy on 127.0.0.1 for link faults and added latency (no root, no netem).

``TcpProxy`` forwards every connection it accepts to ``target`` and can:

* add a one-way ``delay`` to each chunk in each direction (so a request/response pays about
  ``2 x delay``: ``tiered bench --rtt MS`` uses ``delay = MS / 2``), preserving order;
* limit each connection's ``bandwidth`` (bytes per second, each direction): a chunk is
  serialized after the ones before it, so large responses pay ``size / bandwidth`` as on a real
  link (what compression saves over a remote link);
* :meth:`cut` every open connection (a server's or proxy's idle cut, a NAT timeout);
* ``mode = "blackhole"``: accept and keep connections but forward nothing (a half-open link:
  the client sees silence, not an error); ``mode = "refuse"``: close new connections at once.

It runs on the caller's event loop; :meth:`start` binds a free loopback port and :meth:`close`
stops it and every connection it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

__all__ = ["TcpProxy"]

Mode = Literal["forward", "blackhole", "refuse"]


class TcpProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        delay: float = 0.0,
        bandwidth: float | None = None,
        port: int = 0,
    ) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0 bytes/s or None, got {bandwidth}")
        self.bandwidth = bandwidth
        self.target = (target_host, target_port)
        self.delay = delay
        self._mode: Mode = "forward"
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._port = port
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.bytes_up = 0  # client -> server, as forwarded
        self.bytes_down = 0  # server -> client

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        if mode not in ("forward", "blackhole", "refuse"):
            raise ValueError(f"mode must be forward, blackhole or refuse, got {mode!r}")
        self._mode = mode
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._links)

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.cut()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def cut(self) -> int:
        """Reset every open connection (both sides see the link drop); returns how many."""
        links, self._links = self._links, set()
        for a, b in links:
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "refuse":
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_w)
        self._links.add(link)
        for src, dst, up in ((reader, up_w, True), (up_r, writer, False)):
            task = asyncio.get_running_loop().create_task(self._pump(src, dst, link, up))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        up: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        # chunks carry their due time; a second task delivers them in order
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._flowing.wait()  # a blackhole holds data back
                dst.write(data)
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                await dst.drain()

        sender = loop.create_task(deliver())
        free_at = 0.0  # when the simulated link finishes sending what it already has
        try:
            while True:
                data = await src.read(65536)
                now = loop.time()
                if self.bandwidth:
                    free_at = max(free_at, now) + len(data) / self.bandwidth
                    now = free_at
                await queue.put((now + self.delay, data))
                if not data:
                    break
            await sender
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            self._links.discard(link)
            for w in link:
                with contextlib.suppress(Exception):
                    w.transport.abort()
