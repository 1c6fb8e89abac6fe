"""Storage profile: rows and bytes per table and column, and what tiered's codec would make of the
payloads, measured on a sample.

The projection samples episodes evenly by rowid (``sample`` rows at most), takes each one's
payload as stored today (the original layout's JSON columns, its compressed envelopes opened; a
tiered database's frames decoded), and encodes the sample with tiered's :class:`Codec` twice:
plain zstd, and with a dictionary trained on four fifths of the sample and measured on the rest
(so the dictionary is judged on rows it has not seen). The projected size of every row is the
row count times the mean encoded size per sampled row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from tiered.analysis.sources import Layout, Target
from tiered.compression import Codec
from tiered.errors import CorruptPayload
from tiered.original import decode_envelope, opened
from tiered.progress import Progress

__all__ = [
    "CompressionProjection",
    "compression_projection",
    "decode_envelope",
    "opened",
    "storage_profile",
]

#: the payload columns of an episode, per layout
PAYLOAD_COLUMNS: dict[str, tuple[str, ...]] = {
    "original": (
        "task_description", "context", "steps", "outcome", "reward", "reflection", "patterns",
        "heuristics", "checkpoints", "metadata",
    ),
    "tiered": ("payload",),
}  # fmt: skip


def _text(v: Any) -> bytes:
    """An original-layout column's value as the bytes it stands for (envelopes opened)."""
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    raw = opened(str(v))
    return raw if isinstance(raw, bytes) else raw.encode()


async def storage_profile(target: Target, layout: Layout) -> pl.DataFrame:
    """Rows and bytes per table and column: ``table, column, rows, bytes`` (``column`` is
    ``*`` for the table's total), largest first. Bytes are SQLite's ``length()`` of each value
    as stored (text in characters, blobs in bytes)."""
    out: list[tuple[str, str, int, int]] = []
    for table in await target.tables():
        if table.endswith(("_fts_data", "_fts_idx", "_fts_docsize", "_fts_config", "_fts_content")):
            continue  # FTS5 shadow tables: counted with their virtual table's index
        cols = [str(r[1]) for r in await target.query(f'PRAGMA table_info("{table}")')]
        if not cols:
            continue
        sums = ", ".join(f'coalesce(sum(length("{c}")), 0)' for c in cols)
        row = (await target.query(f'SELECT count(*), {sums} FROM "{table}"'))[0]
        n = int(row[0] or 0)
        sizes = [int(v or 0) for v in row[1:]]
        out.append((table, "*", n, sum(sizes)))
        out += [(table, c, n, b) for c, b in zip(cols, sizes, strict=True)]
    frame = pl.DataFrame(out, schema=["table", "column", "rows", "bytes"], orient="row")
    return frame.sort(["bytes"], descending=True)


@dataclass
class CompressionProjection:
    """Measured on ``sampled`` of ``rows`` episodes; sizes in bytes (projected to every row)."""

    rows: int
    sampled: int
    stored_bytes: float  # as stored today (the payload columns' length)
    raw_bytes: float  # what they stand for (envelopes opened)
    zstd_bytes: float  # tiered's codec, plain zstd
    dictionary_bytes: float  # tiered's codec with a dictionary trained on part of the sample
    undecodable: int  # sampled rows whose stored payload did not decode (left out)

    @property
    def saving(self) -> float:
        """Share of today's stored bytes the dictionary codec would save."""
        return 1 - self.dictionary_bytes / self.stored_bytes if self.stored_bytes else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "saving": self.saving}


#: rows per read of the sample: one answer stays well under a WebSocket message's 4 MiB limit
PAGE = 100


async def _sample(
    target: Target, layout: Layout, sample: int, progress: bool
) -> tuple[int, list[tuple[Any, ...]]]:
    n = int((await target.query("SELECT count(*) FROM episodes"))[0][0] or 0)
    bar = Progress(min(sample, n), "payload sample", enabled=progress)
    cols = ", ".join(PAYLOAD_COLUMNS[layout])
    stride = max(1, n // max(1, sample))
    rows: list[tuple[Any, ...]] = []
    after = -1
    while len(rows) < sample:
        page = await target.query(
            f"SELECT rowid, {cols} FROM episodes WHERE rowid > ? AND rowid % ? = 0 "
            "ORDER BY rowid LIMIT ?",
            (after, stride, min(PAGE, sample - len(rows))),
        )
        if not page:
            break
        after = int(page[-1][0] or 0)
        rows += [tuple(r[1:]) for r in page]
        bar.advance(len(page))
    return n, rows


async def compression_projection(
    target: Target, layout: Layout, *, sample: int = 2000, level: int = 3, progress: bool = False
) -> CompressionProjection | None:
    """The projection (see the module docstring), or ``None`` for a database without episodes."""
    if layout == "empty":
        return None
    n, rows = await _sample(target, layout, sample, progress)
    if not rows:
        return None
    codec = Codec(level=level)
    if layout == "tiered":  # frames may name the database's trained dictionaries
        for did, kind, data in await target.query("SELECT id, kind, data FROM dictionaries"):
            if isinstance(did, int) and isinstance(data, bytes):
                codec.add_dictionary(did, str(kind), data, activate=False)
    raws: list[bytes] = []
    stored = 0
    bad = 0
    for r in rows:
        try:
            if layout == "original":
                stored += sum(len(v) if isinstance(v, str | bytes) else 0 for v in r)
                raws.append(b"\x1e".join(_text(v) for v in r))
            else:
                frame = r[0]
                if not isinstance(frame, bytes):
                    raise CorruptPayload("payload is not a frame")
                stored += len(frame)
                raws.append(codec.decode(frame))
        except CorruptPayload:
            bad += 1
    if not raws:
        return None
    k = len(raws)
    plain = sum(len(f) for f in codec.encode_many(raws))
    cut = max(1, k // 5)
    held, train = raws[:cut], raws[cut:]
    primed_mean = plain / k
    if len(train) >= 20:  # zstd needs samples to learn from
        try:
            data = codec.train(train, size=16384)
            primed_mean = codec.measure(held, data) / len(held)
        except ValueError:
            pass  # too uniform to train on: the dictionary would not help
    scale = n / k
    return CompressionProjection(
        rows=n,
        sampled=k,
        stored_bytes=stored * scale,
        raw_bytes=sum(map(len, raws)) * scale,
        zstd_bytes=plain * scale,
        dictionary_bytes=min(primed_mean, plain / k) * n,
        undecodable=bad,
    )
