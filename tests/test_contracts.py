"""Contract defects found by trying the API as a new user would (one test per defect).

Each asserts the documented typed error on every backend where it applies: permission errors
are :class:`AuthError` (not an outage), strings that cannot be encoded as UTF-8 are a
:class:`ValidationError` naming the field, a closed :class:`SyncStore` raises
:class:`StoreClosed`, list queries never cut a result silently, and argument names in errors
are the caller's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiered import (
    AuthError,
    Embedding,
    Episode,
    Heuristic,
    Store,
    StoreClosed,
    TaskContext,
    ValidationError,
    open_sync,
)
from tiered.devserver import JwtKey, SqldProcess, free_port
from tiered.sim import generate_episodes
from tiered.store import MAX_LIMIT

BAD = "bad \udc80"  # a lone surrogate: a str Python holds, but no UTF-8 encoder accepts


# -- 1. a read-only token's write is an AuthError on every backend ------------------------------


@pytest.fixture
def jwt_sqld(sqld_binary: Path, tmp_path: Path) -> Iterator[tuple[SqldProcess, JwtKey]]:
    """A fresh sqld that requires JWTs signed by the key it yields beside it."""
    key = JwtKey()
    proc = SqldProcess(
        sqld_binary,
        tmp_path / "db",
        free_port(),
        auth_jwt_key_file=key.write_public(tmp_path / "jwt.pub"),
        log_path=tmp_path / "log",
    )
    proc.start()
    try:
        yield proc, key
    finally:
        proc.stop()


@pytest.mark.parametrize("scheme", ["ws", "http"])
async def test_write_with_read_only_token_is_auth_error(
    jwt_sqld: tuple[SqldProcess, JwtKey], scheme: str
) -> None:
    proc, key = jwt_sqld
    url = getattr(proc, f"{scheme}_url")
    async with await Store.open(url, auth_token=key.token()) as rw:
        await rw.store_episodes(generate_episodes(3, seed=1))
    ro = await Store.open(url, auth_token=key.token("ro"))
    try:
        for write in (
            lambda: ro.store_episodes(generate_episodes(2, seed=8)),
            lambda: ro.delete_episode("nope"),
            lambda: ro.store_heuristic(Heuristic("h", "c", "a", 0.5)),
        ):
            with pytest.raises(AuthError):
                await write()
        stats = ro.pool.get_stats()
        assert not stats["outage"] and stats["connections_lost"] == 0, stats
        assert len(await ro.query_episodes_since(0)) == 3  # reads still work
    finally:
        await ro.close()


async def test_forbidden_write_on_an_opaque_token_is_auth_error(
    jwt_sqld: tuple[SqldProcess, JwtKey],
) -> None:
    """A token whose claims the Store cannot read (not a JWT it can decode) still gets
    AuthError: the driver asks the server whether the socket it dropped was a permission
    refusal."""
    from tiered.db.driver import connect
    from tiered.db.statements import UPSERT_HEURISTIC

    proc, key = jwt_sqld
    async with await Store.open(proc.ws_url, auth_token=key.token()) as rw:
        await rw.store_episodes(generate_episodes(1, seed=1))
    conn = await connect(proc.ws_url, auth_token=key.token("ro"))
    try:
        with pytest.raises(AuthError):
            await conn.execute(UPSERT_HEURISTIC, ("h", 0.5, 1, 1, b"x"))
    finally:
        await conn.close()


# -- 2. strings that cannot be encoded as UTF-8 ---------------------------------------------------


def test_lone_surrogates_are_rejected_at_construction() -> None:
    ctx = TaskContext(domain="d")
    with pytest.raises(ValidationError) as info:
        Episode("e1", "t", BAD, ctx, start_time=1)
    assert info.value.field == "description"
    for make, field in (
        (lambda: Episode(BAD, "t", "d", ctx, start_time=1), "id"),
        (lambda: Episode("e", "t", "d", ctx, start_time=1, metadata={"k": BAD}), "metadata.k"),
        (lambda: Episode("e", "t", "d", ctx, start_time=1, tags=(BAD,)), "tags[0]"),
        (lambda: TaskContext(domain=BAD), "domain"),
        (lambda: Heuristic("h", BAD, "a", 0.5), "condition"),
        (lambda: Embedding("v", "o", BAD, "m", [1.0]), "owner_kind"),
    ):
        with pytest.raises(ValidationError) as info:
            make()
        assert info.value.field.endswith(field), info.value.field


async def test_lone_surrogates_in_query_arguments(db_url: str) -> None:
    async with await Store.open(db_url) as s:
        await s.store_episodes(generate_episodes(2, seed=1))
        calls = {
            "episode_id": lambda: s.get_episode(BAD),
            "episode_ids[1]": lambda: s.get_episodes(["x", BAD]),
            "value": lambda: s.query_episodes_by_metadata("agent", BAD),
            "key": lambda: s.query_episodes_by_metadata(BAD, "x"),
            "domain": lambda: s.query_episodes(domain=BAD),
            "pattern_id": lambda: s.get_pattern(BAD),
            "heuristic_id": lambda: s.delete_heuristic(BAD),
            "owner_kind": lambda: s.nearest([1.0, 0.0], owner_kind=BAD),
            "model": lambda: s.nearest([1.0, 0.0], model=BAD),
        }
        for field, call in calls.items():
            with pytest.raises(ValidationError) as info:
                await call()
            assert info.value.field == field
        # the pool lost nothing: no socket was closed by the server over a bad string
        assert s.pool.get_stats()["connections_lost"] == 0
        assert len(await s.query_episodes_since(0)) == 2


# -- 3. a closed SyncStore ------------------------------------------------------------------------


def test_closed_sync_store_raises_store_closed(tmp_path: Path) -> None:
    s = open_sync(f"file:{tmp_path / 'a.db'}")
    s.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be an error
        for call in (
            lambda: s.get_episode("x"),
            lambda: s.store_episodes(generate_episodes(1, seed=1)),
            lambda: s.query_episodes_since(0),
        ):
            with pytest.raises(StoreClosed):
                call()
    s.close()  # still idempotent


# -- 4. no silent truncation ----------------------------------------------------------------------


async def test_limit_above_the_cap_is_rejected_not_truncated(tmp_path: Path) -> None:
    async with await Store.open(f"file:{tmp_path / 'a.db'}") as s:
        eps = generate_episodes(MAX_LIMIT + 200, seed=3)
        await s.store_episodes(eps)
        domain = eps[0].context.domain
        calls = {
            "limit": [
                lambda n: s.query_episodes(domain=domain, limit=n),
                lambda n: s.query_episodes_since(0, limit=n),
                lambda n: s.query_episodes_by_metadata("agent", "coder", limit=n),
                lambda n: s.search_patterns(limit=n),
                lambda n: s.list_heuristics(limit=n),
            ],
            "k": [lambda n: s.nearest([1.0, 0.0], n)],
        }
        for field, fns in calls.items():
            for fn in fns:
                for n in (MAX_LIMIT + 1, 5000, 10**9):
                    with pytest.raises(ValidationError) as info:
                        await fn(n)
                    assert info.value.field == field and str(MAX_LIMIT) in str(info.value)
        assert len(await s.query_episodes_since(0, limit=MAX_LIMIT)) == MAX_LIMIT


# -- 5. nearest names k -------------------------------------------------------------------------


async def test_nearest_names_k(tmp_path: Path) -> None:
    async with await Store.open(f"file:{tmp_path / 'a.db'}") as s:
        for k in (-1, 0, 1.5, True):
            with pytest.raises(ValidationError) as info:
                await s.nearest([1.0], k)  # type: ignore[arg-type]
            assert info.value.field == "k"


# -- 6. metadata keys are validated on reads as on writes -----------------------------------------


async def test_metadata_key_rules_apply_to_reads(tmp_path: Path) -> None:
    async with await Store.open(f"file:{tmp_path / 'a.db'}") as s:
        for key in ("ticket' OR '1'='1", "a b", "a--b", "%", "   ", "x" * 200):
            with pytest.raises(ValidationError):
                Episode("e", "t", "d", TaskContext("d"), start_time=1, metadata={key: "v"})
            with pytest.raises(ValidationError) as info:
                await s.query_episodes_by_metadata(key, "x")
            assert info.value.field == "key"
        assert await s.query_episodes_by_metadata("ticket:id/1.a-b", "x") == []
        for key in ("   ", ""):
            with pytest.raises(ValidationError):
                await s.get_episode(key)  # the model would never store such an id


# -- 7. dev-server notices its sqld dying ---------------------------------------------------------


def _dev_server(tmp_path: Path, sqld_binary: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TIERED_SQLD": str(sqld_binary)}
    return subprocess.Popen(
        [sys.executable, "-m", "tiered", "dev-server", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _lines_until(proc: subprocess.Popen[str], prefix: str) -> dict[str, str]:
    """Read the dev server's ``name value`` lines until one starts with ``prefix``."""
    assert proc.stdout is not None
    seen: dict[str, str] = {}
    while True:
        line = proc.stdout.readline()
        assert line, f"dev-server exited early: {proc.stderr.read() if proc.stderr else ''}"
        name, _, value = line.strip().partition(" ")
        seen[name] = value.strip()
        if name.startswith(prefix):
            return seen


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_dev_server_exits_nonzero_when_sqld_dies(sqld_binary: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = _dev_server(tmp_path, sqld_binary, "--port", str(port), "--data-dir", str(tmp_path))
    try:
        seen = _lines_until(proc, "pid")
        assert seen["http"] == f"http://127.0.0.1:{port}" and _healthy(port)
        os.kill(int(seen["pid"]), signal.SIGKILL)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode not in (0, None)
    assert "sqld" in err and "exited" in err


def test_dev_server_restarts_on_the_same_port_and_data(sqld_binary: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = _dev_server(
        tmp_path, sqld_binary, "--port", str(port), "--data-dir", str(tmp_path), "--restart"
    )
    try:
        seen = _lines_until(proc, "pid")
        url = seen["ws"]
        eps = generate_episodes(3, seed=4)

        async def write_then_read() -> None:
            async with await Store.open(url) as s:
                await s.store_episodes(eps)

        asyncio.run(write_then_read())
        os.kill(int(seen["pid"]), signal.SIGKILL)
        again = _lines_until(proc, "pid")  # the restart prints its new pid
        assert again["pid"] != seen["pid"] and _healthy(port)

        async def read() -> list[Episode | None]:
            async with await Store.open(url) as s:
                return await s.get_episodes([e.id for e in eps])

        assert asyncio.run(read()) == eps
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0 and not _healthy(port)


def test_dev_server_with_auth_prints_working_tokens(sqld_binary: Path, tmp_path: Path) -> None:
    proc = _dev_server(tmp_path, sqld_binary, "--auth", "--data-dir", str(tmp_path))
    try:
        seen = _lines_until(proc, "pid")
        url, rw, ro = seen["ws"], seen["token-rw"], seen["token-ro"]

        async def check() -> None:
            with pytest.raises(AuthError):
                await Store.open(url)  # no token
            async with await Store.open(url, auth_token=rw) as s:
                await s.store_episodes(generate_episodes(1, seed=5))
            async with await Store.open(url, auth_token=ro) as s:
                assert len(await s.query_episodes_since(0)) == 1
                with pytest.raises(AuthError):
                    await s.store_episodes(generate_episodes(1, seed=6))

        asyncio.run(check())
        key_file = Path(seen["jwt-key-file"])
        assert key_file.is_file() and json.dumps(key_file.read_text())  # the public key, kept
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
