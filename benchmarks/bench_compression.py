"""Compression benchmark; prints one JSON document (progress goes to stderr).

Corpus: seeded, realistic agent records from ``tiered.sim`` (episodes with transcripts, patterns,
heuristics), serialized as the Store serializes them.

1. Serializer: msgspec (what the codec uses) against ``json.dumps(dataclasses.asdict(...))``.
2. zstd levels 1, 3 and 9, without and with a dictionary trained per record type on a training
   split (40 %) and measured on the rest: ratio (raw bytes / stored bytes, frame headers
   included), compression and decompression MB/s. Reported for all episodes and for the small
   records (< 2 KB: patterns, heuristics, short episodes), where the dictionary must improve the
   ratio by >= 1.5x.
3. Embeddings: float32 vectors, zstd with and without a 4-byte shuffle.
4. End to end: bytes the client sent to a local sqld over HTTP (counted by a TCP proxy in
   between) to store 1,000 episodes with compression off, on, and on with a dictionary.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from _common import log

from tiered import Store, StoreConfig
from tiered.cache import CacheConfig
from tiered.compression import Codec
from tiered.devserver import SqldProcess, find_sqld, free_port
from tiered.netproxy import TcpProxy
from tiered.sim import (
    generate_embeddings,
    generate_episodes,
    generate_heuristics,
    generate_patterns,
)

SMALL = 2048


def corpus(n: int, seed: int) -> dict[str, list[Any]]:
    return {
        "episodes": generate_episodes(n, seed=seed),
        "patterns": generate_patterns(n // 2, seed=seed),
        "heuristics": generate_heuristics(n // 2, seed=seed),
    }


def serializers(records: list[Any]) -> dict[str, float]:
    codec = Codec()
    t = time.perf_counter()
    a = [codec.serialize(r) for r in records]
    msgspec_s = time.perf_counter() - t
    t = time.perf_counter()
    b = [json.dumps(dataclasses.asdict(r), default=str).encode() for r in records]
    json_s = time.perf_counter() - t
    return {
        "records": len(records),
        "msgspec_us_per_record": msgspec_s / len(records) * 1e6,
        "json_asdict_us_per_record": json_s / len(records) * 1e6,
        "speedup": json_s / msgspec_s,
        "msgspec_bytes": sum(map(len, a)),
        "json_bytes": sum(map(len, b)),
    }


def measure(codec: Codec, raws: list[bytes], kind: str, rounds: int = 3) -> dict[str, float]:
    """Ratio and throughput of one codec on ``raws`` (the best of ``rounds`` timings)."""
    enc, dec = [], []
    frames: list[bytes] = []
    for _ in range(rounds):
        t = time.perf_counter()
        frames = [codec.encode(r, kind=kind) for r in raws]
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        for f in frames:
            codec.decode(f)
        dec.append(time.perf_counter() - t)
    raw_bytes = sum(map(len, raws))
    stored = sum(map(len, frames))
    mb = raw_bytes / 1e6
    return {
        "raw_bytes": raw_bytes,
        "stored_bytes": stored,
        "ratio": raw_bytes / stored,
        "compress_mb_s": mb / min(enc),
        "decompress_mb_s": mb / min(dec),
    }


def levels(data: dict[str, list[Any]]) -> dict[str, Any]:
    ser = Codec()
    raws = {k: [ser.serialize(r) for r in v] for k, v in data.items()}
    split = {k: (v[: len(v) * 2 // 5], v[len(v) * 2 // 5 :]) for k, v in raws.items()}
    out: dict[str, Any] = {}
    for level in (1, 3, 9):
        for with_dict in (False, True):
            codec = Codec(level=level)
            if with_dict:
                for i, (kind, (train, _)) in enumerate(split.items(), 1):
                    codec.add_dictionary(i, kind, codec.train(train))
            row: dict[str, Any] = {}
            row["episodes"] = measure(codec, split["episodes"][1], "episodes")
            small = {k: [r for r in test if len(r) < SMALL] for k, (_, test) in split.items()}
            parts = [measure(codec, v, k) for k, v in small.items() if v]
            raw_b = sum(p["raw_bytes"] for p in parts)
            st_b = sum(p["stored_bytes"] for p in parts)
            row["small_records"] = {
                "records": sum(len(v) for v in small.values()),
                "raw_bytes": raw_b,
                "stored_bytes": st_b,
                "ratio": raw_b / st_b,
                "compress_mb_s": statistics.mean(p["compress_mb_s"] for p in parts),
                "decompress_mb_s": statistics.mean(p["decompress_mb_s"] for p in parts),
            }
            key = f"level_{level}_{'dict' if with_dict else 'plain'}"
            out[key] = row
            log(
                f"  {key:16} episodes {row['episodes']['ratio']:.2f}x "
                f"small {row['small_records']['ratio']:.2f}x "
                f"{row['episodes']['compress_mb_s']:.0f} MB/s"
            )
    out["dictionary_gain_small_records"] = {
        f"level_{lv}": out[f"level_{lv}_dict"]["small_records"]["ratio"]
        / out[f"level_{lv}_plain"]["small_records"]["ratio"]
        for lv in (1, 3, 9)
    }
    return out


def embeddings(n: int = 2000, dim: int = 384) -> dict[str, Any]:
    vecs = generate_embeddings(n, dim=dim, seed=5)
    raw = b"".join(v.vector.tobytes() for v in vecs)
    shuffled = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 4).T.copy().tobytes()
    c = zstandard.ZstdCompressor(level=3)
    return {
        "vectors": n,
        "dim": dim,
        "raw_bytes": len(raw),
        "zstd_ratio": len(raw) / len(c.compress(raw)),
        "zstd_byte_shuffle_ratio": len(raw) / len(c.compress(shuffled)),
        "decision": "stored as raw packed float32: libSQL's vector index needs the raw "
        "F32_BLOB, and the ratios above are what compression would have saved",
    }


async def end_to_end(tmp: Path, n: int = 1000) -> dict[str, Any]:
    eps = generate_episodes(n + 300, seed=9)
    train, eps = eps[:300], eps[300:]
    out: dict[str, Any] = {}
    for name, compress, with_dict in (
        ("off", False, False),
        ("on", True, False),
        ("on_with_dictionary", True, True),
    ):
        proc = SqldProcess(find_sqld(), tmp / f"e2e-{name}", free_port())
        proc.start()
        try:
            async with TcpProxy("127.0.0.1", proc.http_port) as proxy:
                cfg = StoreConfig(compress=compress, dictionary_after=0)
                store = await Store.open(
                    proxy.url("http"), config=cfg, cache=CacheConfig(enabled=False)
                )
                try:
                    if with_dict:
                        await store.store_episodes(train)
                        await store.train_dictionary("episodes", sample=300)
                    up0, down0 = proxy.bytes_up, proxy.bytes_down
                    for i in range(0, n, 100):
                        await store.store_episodes(eps[i : i + 100])
                    sent, received = proxy.bytes_up - up0, proxy.bytes_down - down0
                finally:
                    await store.close()
        finally:
            proc.stop()
        out[name] = {"bytes_sent": sent, "bytes_received": received}
        log(f"  e2e compression {name:20} sent {sent:,} bytes")
    out["episodes"] = n
    out["sent_ratio_off_vs_on"] = out["off"]["bytes_sent"] / out["on"]["bytes_sent"]
    out["sent_ratio_off_vs_dictionary"] = (
        out["off"]["bytes_sent"] / out["on_with_dictionary"]["bytes_sent"]
    )
    return out


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-compression-"))
    data = corpus(args.records, seed=11)
    log("serializers ...")
    out: dict[str, Any] = {"records": {k: len(v) for k, v in data.items()}}
    out["serializer"] = serializers(data["episodes"])
    log("levels and dictionaries ...")
    out["levels"] = levels(data)
    out["embeddings"] = embeddings()
    log("end to end over HTTP ...")
    out["end_to_end_http"] = await end_to_end(tmp)
    gain = out["levels"]["dictionary_gain_small_records"]["level_3"]
    out["targets"] = {"dictionary_gain_small_records": 1.5}
    out["passed"] = {"dictionary_gain_small_records": gain >= 1.5}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=5000, help="episodes in the corpus")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(amain(args)), indent=2))


if __name__ == "__main__":
    main()
