"""Codec frames: round trip, never inflate past the header, corrupt input is CorruptPayload."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import episodes
from tiered import ConfigError, CorruptPayload, Episode
from tiered.compression import CODEC_RAW, CODEC_ZSTD, HEADER_SIZE, MAGIC, Codec


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=5000), st.integers(1, 9), st.integers(0, 512))
def test_round_trip_and_never_inflates(raw: bytes, level: int, min_size: int) -> None:
    c = Codec(level=level, min_size=min_size)
    frame = c.encode(raw)
    assert len(frame) <= len(raw) + HEADER_SIZE
    assert c.decode(frame) == raw


@settings(max_examples=50, deadline=None)
@given(episodes())
def test_documents_round_trip(ep: Episode) -> None:
    c = Codec()
    d = c.decode_doc(c.encode_doc(ep))
    assert Episode.from_doc(d, ep.outcome_kind) == ep


#: (path into a stored episode document, a value of the wrong type for it)
_BAD_FIELDS = [
    (("id",), 7), (("description",), None), (("task_type",), ["x"]), (("start_time",), "1"),
    (("start_time",), True), (("end_time",), 1.5), (("reward",), "high"), (("metadata",), []),
    (("metadata", "k"), 3), (("tags",), "a,b"), (("tags",), ["a", 1]), (("pattern_ids",), None),
    (("context",), "web"), (("context", "domain"), 1), (("context", "language"), 2),
    (("context", "complexity"), "huge"), (("context", "tags"), [None]),
    (("steps",), {}), (("steps", 0, "tool"), 1), (("steps", 0, "parameters"), []),
    (("steps", 0, "latency_ms"), "1"), (("steps", 0, "result", "kind"), "maybe"),
    (("steps", 0, "result", "output"), 4), (("outcome", "verdict"), 1),
    (("outcome", "artifacts"), "a"), (("reflection", "insights"), [1]),
]  # fmt: skip


@pytest.mark.parametrize(("path", "bad"), _BAD_FIELDS, ids=lambda v: str(v))
def test_a_stored_episode_of_the_wrong_shape_does_not_decode(path: tuple, bad: object) -> None:
    """Decoding checks a stored episode's types and shape (not its texts: they were validated
    when it was written); each wrong type raises what the Store reports as CorruptPayload, never
    a record holding it."""
    from tiered.model import ExecutionStep, Reflection, StepResult, Success, TaskContext

    ep = Episode(
        "ep1", "coding", "d", TaskContext("web", tags=("t",)), 1_000, 2_000,
        steps=(ExecutionStep("tool", "act", {"a": 1}, StepResult("success", "ok"), 1.0),),
        outcome=Success("v", ("a",)), reward=0.5, reflection=Reflection(("s",), (), ("i",)),
        pattern_ids=("p",), metadata={"k": "v"}, tags=("x",),
    )  # fmt: skip
    c = Codec()
    doc = c.decode_doc(c.encode_doc(ep))
    assert Episode.from_doc(doc, ep.outcome_kind) == ep
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises((KeyError, TypeError, ValueError, AttributeError)):
        Episode.from_doc(doc, ep.outcome_kind)


def test_small_and_incompressible_payloads_stay_raw() -> None:
    c = Codec(min_size=256)
    assert c.encode(b"x" * 100)[1] == CODEC_RAW
    assert c.encode(b"x" * 1000)[1] == CODEC_ZSTD
    rnd = random.Random(1).randbytes(4000)
    assert c.encode(rnd)[1] == CODEC_RAW  # compression would not save min_saving
    assert Codec(compress=False).encode(b"x" * 1000)[1] == CODEC_RAW
    assert (c.counters.frames_raw, c.counters.frames_compressed) == (2, 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(junk: bytes) -> None:
    c = Codec()
    with contextlib.suppress(CorruptPayload):
        c.decode(junk)


def test_corrupt_frames() -> None:
    c = Codec(max_output_size=1 << 20)
    good = c.encode(b"hello world " * 100)
    cases = {
        "short": good[:5],
        "magic": bytes([0]) + good[1:],
        "codec": good[:1] + bytes([9]) + good[2:],
        "dictionary": good[:2] + struct.pack("<I", 7) + good[6:],
        "truncated": good[:-10],
        "lying length": good[:6] + struct.pack("<I", 99) + good[10:],
        "huge length": good[:6] + struct.pack("<I", 2**31) + good[10:],
        "raw length": struct.pack("<BBII", MAGIC, CODEC_RAW, 0, 10) + b"abc",
        "trailing byte": good + b"\x00",
        "second frame": good + good[10:],
    }
    for name, frame in cases.items():
        with pytest.raises(CorruptPayload):
            c.decode(frame)
        assert name


def test_any_flipped_bit_of_a_compressed_frame_is_caught() -> None:
    """zstd's content checksum: damage that still decompresses never passes as other data.

    (A few bits of a zstd block do not change what it decodes to, such as unused table bits;
    those flips decode to the original bytes, which is not damage.)"""
    c = Codec()
    raw = b"".join(b"record %d: some text that compresses; " % i for i in range(60))
    good = c.encode(raw)
    assert good[1] == CODEC_ZSTD
    caught = 0
    for i in range(len(good)):
        for bit in (0, 5):
            bad = bytearray(good)
            bad[i] ^= 1 << bit
            try:
                assert c.decode(bytes(bad)) == raw
            except CorruptPayload:
                caught += 1
    assert caught >= 0.95 * 2 * len(good)


def test_decompression_bomb_is_bounded() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (50 << 20))  # 50 MiB of zeros, ~2 KB
    c = Codec(max_output_size=1 << 20)
    frame = struct.pack("<BBII", MAGIC, CODEC_ZSTD, 0, 1000) + bomb
    with pytest.raises(CorruptPayload):
        c.decode(frame)
    # a frame without a content size in its zstd header is rejected, never streamed unbounded
    nosize = zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 5000)
    with pytest.raises(CorruptPayload):
        c.decode(struct.pack("<BBII", MAGIC, CODEC_ZSTD, 0, 5000) + nosize)


def test_not_json() -> None:
    c = Codec()
    with pytest.raises(CorruptPayload):
        c.decode_doc(c.encode(b"\xff\xfe not json"))


def test_bad_settings() -> None:
    for kw in ({"level": 0}, {"min_size": -1}, {"min_saving": 1.0}, {"max_output_size": 0}):
        with pytest.raises(ConfigError):
            Codec(**kw)  # type: ignore[arg-type]
