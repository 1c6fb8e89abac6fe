"""Readers of cache-access traces (key sequences) and seeded synthetic traces.

Real traces (``../shared/traces/cache/``, see its README): LIRS text traces (one integer per line,
``*`` breakpoints skipped), cache2k (big-endian int32) and CloudPhysics (32-bit) binary traces,
compressed with gzip or xz. Every trace is returned as a NumPy ``int64`` array of keys.
"""

from __future__ import annotations

import gzip
import io
import lzma
from pathlib import Path

import numpy as np
import zstandard

__all__ = [
    "load_cache_trace",
    "loop_mix_trace",
    "shifting_trace",
    "zipf_scan_trace",
    "zipf_trace",
]


def _open(path: Path) -> bytes:
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".zst":
        with path.open("rb") as f:
            return zstandard.ZstdDecompressor().stream_reader(f).read()
    return path.read_bytes()


def _arc_keys(data: bytes) -> np.ndarray:
    """The ARC paper's ``.lis`` format: lines ``start count 0 seq``, each the keys ``start``,
    ``start + 1``, ..., ``start + count - 1`` requested in that order."""
    cols = np.loadtxt(io.BytesIO(data), dtype=np.int64, usecols=(0, 1), ndmin=2)
    starts, counts = cols[:, 0], cols[:, 1]
    if (counts < 1).any():
        raise ValueError("an ARC trace line asks for fewer than one key")
    first = np.repeat(np.cumsum(counts) - counts, counts)  # index of each key's line start
    return np.repeat(starts, counts) + (np.arange(int(counts.sum())) - first)


def load_cache_trace(path: str | Path, *, limit: int | None = None) -> np.ndarray:
    """Keys of a trace file; the format follows its folder (lirs, cache2k, cloud_physics, arc)."""
    p = Path(path)
    data = _open(p)
    head = data[:256]
    if p.parent.name == "arc" or ".lis" in p.suffixes:
        keys = _arc_keys(data)
        return keys if limit is None else keys[:limit]
    if p.parent.name == "lirs" or (head and all(c in b"0123456789*-\r\n \t" for c in head)):
        lines = [ln for ln in data.split(b"\n") if ln.strip() and not ln.startswith(b"*")]
        keys = np.array([int(ln) for ln in lines[:limit]], dtype=np.int64)
    else:
        n = len(data) // 4
        dtype = ">i4" if p.parent.name == "cache2k" else ">u4"
        keys = np.frombuffer(data[: n * 4], dtype=dtype).astype(np.int64)
        if limit is not None:
            keys = keys[:limit]
    return keys


def zipf_trace(n: int, keys: int, alpha: float, *, seed: int = 0) -> np.ndarray:
    """``n`` requests over ``keys`` keys with Zipf(``alpha``) popularity (any alpha > 0)."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, keys + 1, dtype=np.float64)
    p = ranks**-alpha
    p /= p.sum()
    perm = rng.permutation(keys)  # popularity is not correlated with key value
    return perm[rng.choice(keys, size=n, p=p)].astype(np.int64)


def zipf_scan_trace(
    n: int, keys: int, alpha: float, *, scan_every: int, scan_len: int, seed: int = 0
) -> np.ndarray:
    """Zipf traffic interrupted by one-off sequential scans of never-seen keys."""
    base = zipf_trace(n, keys, alpha, seed=seed)
    out, nxt = [], keys * 10
    for start in range(0, n, scan_every):
        out.append(base[start : start + scan_every])
        out.append(np.arange(nxt, nxt + scan_len, dtype=np.int64))
        nxt += scan_len
    return np.concatenate(out)[: n + (n // scan_every) * scan_len]


def shifting_trace(n: int, keys: int, alpha: float, *, phases: int, seed: int = 0) -> np.ndarray:
    """Zipf traffic whose popular set changes completely ``phases`` times."""
    parts = [zipf_trace(n // phases, keys, alpha, seed=seed + i) + i * keys for i in range(phases)]
    return np.concatenate(parts)


def loop_mix_trace(n: int, keys: int, *, loop_keys: int, seed: int = 0) -> np.ndarray:
    """Recency (Zipf 1.0) -> a loop over ``loop_keys`` keys -> recency again (thirds)."""
    third = n // 3
    loop = np.tile(
        np.arange(keys * 10, keys * 10 + loop_keys, dtype=np.int64), third // loop_keys + 1
    )[:third]
    return np.concatenate(
        [
            zipf_trace(third, keys, 1.0, seed=seed),
            loop,
            zipf_trace(n - 2 * third, keys, 1.0, seed=seed + 1),
        ]
    )
