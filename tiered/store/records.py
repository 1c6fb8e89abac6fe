"""Record kinds as data: one table the Store's store/get/delete/batch paths all read.

Each :class:`RecordKind` says where a kind lives (table, statements), what its id argument is
called in errors, how a batch of records becomes write steps (given their encoded payload
frames), and how a row becomes a record again. Embeddings have no payload frame (their vector is
stored as float32 bytes) and need their model's id to be written, so :mod:`tiered.store.vectors`
builds their steps.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Generic, TypeVar

from tiered.compression import Codec
from tiered.db import statements as q
from tiered.db.driver import Row, Statement, Step, Value, as_bytes, as_str
from tiered.db.embedded import SLICE_S
from tiered.errors import CorruptPayload, PayloadTooLarge, UnknownDictionary
from tiered.model import Embedding, Episode, Heuristic, Pattern

__all__ = [
    "EMBEDDINGS",
    "EPISODES",
    "HEURISTICS",
    "KINDS",
    "PATTERNS",
    "PAYLOAD_KINDS",
    "RecordKind",
    "approx_size",
    "decode_embedding",
    "decode_rows",
    "encode_frames",
    "encode_sliced",
]

R = TypeVar("R", Episode, Pattern, Heuristic, Embedding)


@dataclass(frozen=True, slots=True)
class RecordKind(Generic[R]):
    """One kind of record and how it is stored.

    ``table`` names the kind everywhere (cache, codec statistics, dictionaries, change log);
    ``key`` is its id argument's name in errors (``episode_id``). ``steps(records, frames, now)``
    gives the write steps of a batch (``None``: not built from frames); ``decode(row, codec)``
    rebuilds a record from a row of ``get`` (``id`` first), raising :class:`CorruptPayload` when
    it does not decode. ``sample`` reads recent payloads to train a dictionary on (``None``: no
    dictionary for this kind).
    """

    table: str
    cls: type[R]
    key: str
    get: Statement
    delete: Statement
    decode: Callable[[Row, Codec], R]
    steps: Callable[[Sequence[R], Sequence[bytes], int], list[Step]] | None = None
    sample: Statement | None = None
    #: the statements ``steps`` gives, in the order it gives them (steps of several writes of
    #: this kind with disjoint ids may then be merged statement by statement: group commit)
    order: tuple[Statement, ...] = ()


def _doc(codec: Codec, frame: Value, table: str) -> Any:
    if not isinstance(frame, bytes):
        raise CorruptPayload(
            f"a stored {table[:-1]} payload is {type(frame).__name__}, not a frame"
        )
    return codec.decode_doc(frame, kind=table)


def _record(codec: Codec, row_id: Value, frame: Value, table: str, build: Callable[[Any], R]) -> R:
    """Decode a payload frame and rebuild its record; anything malformed is CorruptPayload, and
    so is a record whose id is not its row's (a frame damaged or written elsewhere)."""
    doc = _doc(codec, frame, table)
    try:
        record = build(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptPayload(f"stored record does not decode: {type(e).__name__}: {e}") from e
    if record.id != row_id:
        raise CorruptPayload(f"a stored {table[:-1]} frame holds another id than its row's")
    return record


def encode_frames(
    codec: Codec, table: str, records: Sequence[Any], limit: int, first: int = 0
) -> tuple[list[bytes], list[bytes]]:
    """The payload frames of ``records`` and their serialized bytes; a record that serializes
    above ``codec.max_output_size`` or encodes above ``limit`` raises :class:`PayloadTooLarge`
    naming its index in the batch (``records`` starts at index ``first`` of it; before any
    I/O)."""
    raws = [codec.serialize(r) for r in records]
    for i, raw in enumerate(raws, first):
        if len(raw) > codec.max_output_size:
            raise PayloadTooLarge(
                f"{table}[{i}]", f"record serializes to {len(raw)} bytes, above {limit * 4}"
            )
    frames = codec.encode_many(raws, kind=table)
    for i, frame in enumerate(frames, first):
        if len(frame) > limit:
            raise PayloadTooLarge(
                f"{table}[{i}]",
                f"encoded record is {len(frame)} bytes, above max_payload_bytes {limit}",
            )
    return frames, raws


async def encode_sliced(
    codec: Codec, table: str, records: Sequence[Any], limit: int
) -> tuple[list[bytes], list[bytes], float]:
    """:func:`encode_frames` record by record, yielding to the loop after every
    :data:`~tiered.db.embedded.SLICE_S` of the work, and the seconds spent encoding (the time
    given away not counted). Compressing a whole batch on zstd's threads stops the loop for all
    of it, and in threaded chunks small enough to yield between is slower than one by one
    (threads started each time); see the commit that made this."""
    frames: list[bytes] = []
    raws: list[bytes] = []
    n = len(records)
    spent = 0.0
    start = perf_counter()
    for i in range(n):
        f, r = encode_frames(codec, table, records[i : i + 1], limit, i)
        frames += f
        raws += r
        if i + 1 < n and (t := perf_counter()) - start >= SLICE_S:
            spent += t - start
            await asyncio.sleep(0)
            start = perf_counter()
    return frames, raws, spent + perf_counter() - start


# -- episodes -------------------------------------------------------------------------------------


def _episode(row: Row, codec: Codec) -> Episode:
    row_id, outcome, payload = row
    kind = outcome if isinstance(outcome, str) else None
    return _record(codec, row_id, payload, "episodes", lambda d: Episode.from_doc(d, kind))


def _episode_steps(eps: Sequence[Episode], frames: Sequence[bytes], now: int) -> list[Step]:
    # ordered by statement, so each shape is bound row after row
    upserts: list[Step] = []
    clears: list[Step] = []
    metas: list[Step] = []
    for ep, payload in zip(eps, frames, strict=True):
        ctx = ep.context
        upserts.append(
            (
                q.UPSERT_EPISODE,
                (
                    ep.id,
                    ep.task_type,
                    ctx.domain,
                    ctx.language,
                    ep.start_time,
                    ep.end_time,
                    ep.outcome_kind,
                    ep.reward,
                    now,
                    now,
                    payload,
                ),
            )
        )
        clears.append((q.CLEAR_EPISODE_METADATA, (ep.id,)))
        metas.extend(
            (q.INSERT_EPISODE_METADATA, (ep.id, k, v, ep.start_time))
            for k, v in ep.metadata.items()
        )
    return upserts + clears + metas


EPISODES: RecordKind[Episode] = RecordKind(
    "episodes",
    Episode,
    "episode_id",
    q.GET_EPISODE,
    q.DELETE_EPISODE,
    _episode,
    _episode_steps,
    q.SAMPLE_EPISODE_PAYLOADS,
    (q.UPSERT_EPISODE, q.CLEAR_EPISODE_METADATA, q.INSERT_EPISODE_METADATA),
)


# -- patterns -------------------------------------------------------------------------------------


def _pattern(row: Row, codec: Codec) -> Pattern:
    row_id, kind, payload = row
    k = as_str(kind)
    return _record(codec, row_id, payload, "patterns", lambda d: Pattern.from_doc(d, k))


def _pattern_steps(ps: Sequence[Pattern], frames: Sequence[bytes], now: int) -> list[Step]:
    return [
        (
            q.UPSERT_PATTERN,
            (
                p.id,
                p.kind.value,
                p.domain,
                p.success_rate,
                p.effectiveness,
                p.occurrence_count,
                now,
                now,
                f,
            ),
        )
        for p, f in zip(ps, frames, strict=True)
    ]


PATTERNS: RecordKind[Pattern] = RecordKind(
    "patterns",
    Pattern,
    "pattern_id",
    q.GET_PATTERN,
    q.DELETE_PATTERN,
    _pattern,
    _pattern_steps,
    q.SAMPLE_PATTERN_PAYLOADS,
    (q.UPSERT_PATTERN,),
)


# -- heuristics -----------------------------------------------------------------------------------


def _heuristic(row: Row, codec: Codec) -> Heuristic:
    return _record(codec, row[0], row[1], "heuristics", Heuristic.from_doc)


def _heuristic_steps(hs: Sequence[Heuristic], frames: Sequence[bytes], now: int) -> list[Step]:
    return [
        (q.UPSERT_HEURISTIC, (h.id, h.confidence, now, now, f))
        for h, f in zip(hs, frames, strict=True)
    ]


HEURISTICS: RecordKind[Heuristic] = RecordKind(
    "heuristics",
    Heuristic,
    "heuristic_id",
    q.GET_HEURISTIC,
    q.DELETE_HEURISTIC,
    _heuristic,
    _heuristic_steps,
    q.SAMPLE_HEURISTIC_PAYLOADS,
    (q.UPSERT_HEURISTIC,),
)


# -- embeddings -----------------------------------------------------------------------------------


def decode_embedding(row: Row) -> Embedding:
    """An embedding from its row (``id, owner_id, owner_kind, model, vector``)."""
    eid, owner_id, owner_kind, model, blob = row
    vec: array[float] = array("f")
    vec.frombytes(as_bytes(blob))
    return Embedding(as_str(eid), as_str(owner_id), as_str(owner_kind), as_str(model), vec)


EMBEDDINGS: RecordKind[Embedding] = RecordKind(
    "embeddings",
    Embedding,
    "embedding_id",
    q.GET_EMBEDDING,
    q.DELETE_EMBEDDING,
    lambda row, codec: decode_embedding(row),
)


#: rows decoded between two looks at the clock (see :func:`decode_rows`)
_DECODE_ROWS = 8


async def decode_rows(
    rows: Sequence[Row],
    kind: RecordKind[R],
    codec: Codec,
    reload: Callable[[], Awaitable[object]],
) -> tuple[list[R], float]:
    """The records of ``rows`` and the seconds spent decoding them. A frame naming a
    dictionary another process trained calls ``reload`` (the dictionaries table) once and
    retries. Decoding is Python on the event loop (tens of microseconds an episode): a result of
    many records yields to the loop every :data:`~tiered.db.embedded.SLICE_S` seconds of it, so
    one agent's large query does not hold up every other agent's turn (the time given away is
    not counted as decoding)."""
    decode = kind.decode
    out: list[R] = []
    spent = 0.0
    t0 = perf_counter()
    for i in range(0, len(rows), _DECODE_ROWS):
        chunk = rows[i : i + _DECODE_ROWS]
        try:
            out += [decode(r, codec) for r in chunk]
        except UnknownDictionary:
            spent += perf_counter() - t0
            await reload()
            t0 = perf_counter()
            out += [decode(r, codec) for r in chunk]
        now = perf_counter()
        if now - t0 >= SLICE_S and i + _DECODE_ROWS < len(rows):
            spent += now - t0
            await asyncio.sleep(0)
            t0 = perf_counter()
    return out, spent + perf_counter() - t0


def approx_size(value: Any) -> int:
    """A cheap, stable estimate of a cached record's bytes (the cache's ``getsizeof``): an
    episode is dominated by its steps' text, an embedding by its vector."""
    if isinstance(value, Episode):
        n = 600 + len(value.description)
        for s in value.steps:
            r = s.result
            n += 300 + len(s.action) + (len(r.output) if r is not None else 0)
        return n
    if isinstance(value, Embedding):
        return 200 + 4 * len(value.vector)
    return 400


#: every kind by its table name
KINDS: dict[str, RecordKind[Any]] = {
    k.table: k for k in (EPISODES, PATTERNS, HEURISTICS, EMBEDDINGS)
}
#: the kinds whose payloads are compressed frames with trained dictionaries
PAYLOAD_KINDS: tuple[str, ...] = tuple(t for t, k in KINDS.items() if k.sample is not None)
