"""Driver boundary: error translation, credentials never leak, stored SQL stays within budget."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tiered import AuthError, DatabaseUnavailable, Embedding, Store
from tiered.cache.config import CacheConfig
from tiered.db.driver import MAX_STORED_SQL, HranaWsConnection, connect, redact_url, translate
from tiered.devserver import SqldProcess, free_port

SECRET = "s3cr3t-token-value"


def test_redact_url() -> None:
    assert SECRET not in redact_url(f"libsql://db.example:443?authToken={SECRET}")
    assert SECRET not in redact_url(f"http://user:{SECRET}@host:1/")


async def test_token_never_in_repr_or_errors(sqld, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    # sqld without auth ignores the token: the store works and nothing shows it
    store = await Store.open(sqld.primary.ws_url, auth_token=SECRET)
    texts = [repr(store), repr(store.pool), str(store.get_stats())]
    texts += [repr(s.conn) for s in store.pool._idle]
    await store.close()
    conn = await connect(f"{sqld.primary.http_url}?authToken={SECRET}")
    texts.append(repr(conn))
    await conn.close()
    texts += [r.getMessage() for r in caplog.records]
    assert all(SECRET not in t for t in texts)
    err = translate(RuntimeError(f"bad token {SECRET}"), secret=SECRET)
    assert SECRET not in str(err)


async def test_unreachable_server_is_a_typed_error() -> None:
    port = free_port()
    for url in (f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"):
        with pytest.raises(DatabaseUnavailable):
            await Store.open(url, auth_token=SECRET)


async def test_auth_rejection_is_auth_error(sqld_binary, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # sqld with a JWT key: requests without a (valid) token are rejected
    import base64
    import os

    key = tmp_path / "jwt.key"
    key.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))
    proc = SqldProcess(
        sqld_binary, tmp_path / "db", free_port(), auth_jwt_key_file=key, log_path=tmp_path / "log"
    )
    proc.start()
    try:
        for url in (proc.http_url, proc.ws_url):
            with pytest.raises(AuthError) as info:
                await Store.open(url, auth_token=SECRET)
            assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    finally:
        proc.stop()


async def test_more_shapes_than_stored_sql_slots(sqld) -> None:  # type: ignore[no-untyped-def]
    # one ANN statement shape per model: more models than sqld's 150 stored-SQL slots
    async with await Store.open(sqld.primary.ws_url) as s:
        n = 160
        await s.store_embeddings(
            [
                Embedding(f"v{i}", "o", "episode", f"shape-model-{i}", [1.0, float(i)])
                for i in range(n)
            ]
        )
        for i in range(n):
            got = await s.nearest([1.0, float(i)], 1, model=f"shape-model-{i}")
            assert got[0][0].id == f"v{i}"
        for slot in s.pool._idle:
            conn = slot.conn
            assert isinstance(conn, HranaWsConnection) and len(conn._sql_ids) <= MAX_STORED_SQL


async def test_server_gone_mid_session(sqld_binary, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = SqldProcess(sqld_binary, tmp_path / "db", free_port(), log_path=tmp_path / "log")
    proc.start()
    store = await Store.open(proc.ws_url, cache=CacheConfig(enabled=False))
    try:
        await store.get_episode("x")
        proc.kill()
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(store.get_episode("x"), 10)
    finally:
        await store.close()
        proc.stop()
