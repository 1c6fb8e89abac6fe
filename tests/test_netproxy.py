"""The loopback proxy: what it forwards arrives intact and in order, no sooner than its delay and
bandwidth allow (lower bounds only: a busy machine can only make it later)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tiered.netproxy import TcpProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _round_trip(proxy: TcpProxy, payload: bytes) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    t0 = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    got = await reader.readexactly(len(payload))
    elapsed = time.perf_counter() - t0
    writer.close()
    return got, elapsed


async def test_delay_and_bandwidth_are_lower_bounds_and_bytes_arrive_in_order() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    payload = bytes(range(256)) * 800  # 200 KiB
    async with server, TcpProxy("127.0.0.1", port, delay=0.01) as proxy:
        got, elapsed = await _round_trip(proxy, b"ping")
        assert got == b"ping" and elapsed >= 0.02
        # 2 MB/s each way: 200 KiB takes >= 0.1 s to cross (the echo streams back meanwhile,
        # a full-duplex link), plus both delays
        proxy.bandwidth = 2e6
        got, elapsed = await _round_trip(proxy, payload)
        assert got == payload and elapsed >= 0.1 + 0.02
        assert proxy.bytes_up == proxy.bytes_down == len(payload) + 4


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="delay"):
        TcpProxy("127.0.0.1", 1, delay=-1)
    with pytest.raises(ValueError, match="bandwidth"):
        TcpProxy("127.0.0.1", 1, bandwidth=0)
