"""An access trace recorded by the Store, for sizing its cache on the real access pattern.

``StoreConfig(access_log=folder)`` makes the Store record every operation on a record or a
query: when (wall clock, µs), which operation, which table, which key (a record id, or a query
and its arguments), whether the cache answered it, how long it took, and how big the record was.
:mod:`tiered.analysis.cache` replays such a trace through the real cache layer at a range of
sizes.

No user data is written in clear: keys are hashed (BLAKE2b, 8 bytes) with a salt kept in the
folder (``salt``, made once, shared by every process that logs there, so one key hashes alike in
every file; without the salt file nobody can test a guessed id against the log). Rows are
buffered in memory and written every ``flush_rows`` rows as a parquet file
(``access-<pid>-<n>.parquet``) by a worker thread, so the read path only appends to lists; the
folder is kept under ``max_bytes`` by deleting the oldest files. ``sample`` < 1 keeps a random
subset of *keys* (all accesses of each kept key: the sampling that keeps miss-ratio curves
right, as in SHARDS), chosen by the salted hash.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tiered.errors import ConfigError

__all__ = ["COLUMNS", "AccessLog", "flagged", "read_access_log"]

COLUMNS = ("t_us", "op", "table", "key", "hit", "latency_us", "size")


class AccessLog:
    """Buffered, salted, rotating access trace (see the module docstring)."""

    @classmethod
    def of(
        cls, folder: str | Path | None, sample: float, *, sizeof: Callable[[Any], int]
    ) -> AccessLog | None:
        """The log a Store's settings ask for (``None``: none)."""
        return None if folder is None else cls(folder, sample=sample, sizeof=sizeof)

    def __init__(
        self,
        folder: str | Path,
        *,
        sample: float = 1.0,
        max_bytes: int = 64 << 20,
        flush_rows: int = 20_000,
        sizeof: Callable[[Any], int] = lambda v: 0,
    ) -> None:
        if not 0 < sample <= 1:
            raise ConfigError(f"access log sample must be within (0, 1], got {sample}")
        if max_bytes < 1 << 20 or flush_rows < 1:
            raise ConfigError("access log needs max_bytes >= 1 MiB and flush_rows >= 1")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            salt_file = self.folder / "salt"
            if not salt_file.exists():
                # exclusive create: two processes starting together agree on one salt
                try:
                    with open(salt_file, "xb") as f:
                        f.write(secrets.token_bytes(16))
                except FileExistsError:
                    pass
            self._salt = salt_file.read_bytes()
        except OSError as e:
            raise ConfigError(f"access log folder {self.folder}: {e}") from e
        self.sample = sample
        self.sizeof = sizeof
        self._keep = int(sample * 0xFFFFFFFF)
        self.max_bytes = max_bytes
        self.flush_rows = flush_rows
        self._rows: list[tuple[int, str, str, Hashable, bool | None, float, int]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._writers: list[threading.Thread] = []
        self.recorded = 0
        self.files_written = 0

    def __repr__(self) -> str:
        return f"<AccessLog {self.folder} sample={self.sample} recorded={self.recorded}>"

    def keep(self, key: Hashable) -> bool:
        """Whether accesses of ``key`` are recorded (all of them, or none: key sampling)."""
        if self._keep >= 0xFFFFFFFF:
            return True
        return zlib.crc32(self._salt + repr(key).encode()) <= self._keep

    def record(
        self,
        t_us: int,
        op: str,
        table: str,
        key: Hashable,
        hit: bool | None,
        seconds: float,
        size: int = 0,
    ) -> None:
        """One access (the read path: an append; hashing and writing happen at flush)."""
        rows = self._rows
        rows.append((t_us, op, table, key, hit, seconds * 1e6, size))
        if len(rows) >= self.flush_rows:
            self.flush(wait=False)

    # -- what the Store records ------------------------------------------------------------------

    def got(self, t_us: int, table: str, key: str, loaded: Any, seconds: float) -> None:
        """A point read: ``loaded`` is ``False`` when the cache answered, else what the miss
        loaded (a record's size is seen at its miss)."""
        if self.keep(key):
            size = self.sizeof(loaded) if loaded else 0
            self.record(t_us, "get", table, key, loaded is False, seconds, size)

    def got_many(
        self, t_us: int, table: str, keys: Iterable[str], loaded: Mapping[str, Any]
    ) -> None:
        """A batch read: the keys in ``loaded`` missed (and loaded that), the others hit."""
        for k in dict.fromkeys(keys):
            if self.keep(k):
                v = loaded.get(k)
                size = self.sizeof(v) if v else 0
                self.record(t_us, "get", table, k, k not in loaded, 0.0, size)

    def queried(self, t_us: int, table: str, key: Hashable, hit: bool, seconds: float) -> None:
        """A query (its name and arguments as ``key``; the name, not secret, is also kept in
        clear in ``op``, ``query:<name>``, as the cache decides per query name whether its
        results are worth caching)."""
        if self.keep(key):
            name = key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else ""
            self.record(t_us, f"query:{name}", table, key, hit, seconds)

    def put(self, t_us: int, table: str, records: Iterable[Any], seconds: float) -> None:
        """Records written (one row each)."""
        for r in records:
            if self.keep(r.id):
                self.record(t_us, "put", table, r.id, None, seconds, self.sizeof(r))

    def deleted(self, t_us: int, table: str, key: str) -> None:
        if self.keep(key):
            self.record(t_us, "delete", table, key, None, 0.0)

    def flush(self, *, wait: bool = True) -> None:
        """Write the buffered rows as one parquet file (in a worker thread unless ``wait``)."""
        rows, self._rows = self._rows, []
        if rows:
            self.recorded += len(rows)
            self._seq += 1
            path = self.folder / f"access-{os.getpid()}-{int(time.time())}-{self._seq}.parquet"
            if wait:
                self._write(rows, path)
            else:
                t = threading.Thread(target=self._write, args=(rows, path), daemon=True)
                self._writers = [w for w in self._writers if w.is_alive()] + [t]
                t.start()
        if wait:
            for w in self._writers:
                w.join()
            self._writers = []

    def _hash(self, key: Hashable) -> int:
        data = key.encode() if isinstance(key, str) else repr(key).encode()
        digest = hashlib.blake2b(data, key=self._salt, digest_size=8).digest()
        return int.from_bytes(digest, "little", signed=True)

    def _write(self, rows: list[tuple[Any, ...]], path: Path) -> None:
        import polars as pl

        frame = pl.DataFrame(
            {
                "t_us": [r[0] for r in rows],
                "op": [r[1] for r in rows],
                "table": [r[2] for r in rows],
                "key": [self._hash(r[3]) for r in rows],
                "hit": [r[4] for r in rows],
                "latency_us": [r[5] for r in rows],
                "size": [r[6] for r in rows],
            },
            schema={
                "t_us": pl.Int64,
                "op": pl.Categorical,
                "table": pl.Categorical,
                "key": pl.Int64,
                "hit": pl.Boolean,
                "latency_us": pl.Float32,
                "size": pl.Int32,
            },
        )
        tmp = path.with_suffix(".tmp")
        frame.write_parquet(tmp, compression="zstd")
        tmp.replace(path)  # readers never see half a file
        with self._lock:
            self.files_written += 1
            self._rotate()

    def _rotate(self) -> None:
        files = sorted(self.folder.glob("access-*.parquet"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)


def flagged(load: Callable[[], Awaitable[Any]], flag: list[bool]) -> Callable[[], Awaitable[Any]]:
    """``load``, appending ``True`` to ``flag`` when it runs (a cache miss)."""

    async def run() -> Any:
        flag.append(True)
        return await load()

    return run


def read_access_log(folder: str | Path) -> Any:
    """Every file of an access log folder as one polars frame, oldest access first, with the
    ``process`` that wrote each row (the pid in its file's name: each process has its own
    cache)."""
    import polars as pl

    files = sorted(Path(folder).glob("access-*.parquet"))
    if not files:
        raise ConfigError(f"no access log files (access-*.parquet) in {folder}")
    return pl.concat(
        [pl.read_parquet(f).with_columns(process=pl.lit(f.name.split("-")[1])) for f in files]
    ).sort("t_us", maintain_order=True)
