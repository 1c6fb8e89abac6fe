"""Trained zstd dictionaries: in the codec, in the Store, across retrains and processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_url
from tiered import CorruptPayload, Store, StoreConfig, ValidationError
from tiered.compression import CODEC_ZSTD, HEADER_SIZE, Codec, frame_dictionary
from tiered.errors import UnknownDictionary
from tiered.sim import generate_episodes, generate_heuristics, generate_patterns

ENC = msgspec.json.Encoder()


def trained_codec(kind: str = "patterns", dict_id: int = 7) -> tuple[Codec, list[bytes]]:
    raws = [ENC.encode(p) for p in generate_patterns(600, seed=1)]
    c = Codec()
    c.add_dictionary(dict_id, kind, c.train(raws[:400]))
    return c, raws[400:]


def test_a_dictionary_compresses_small_records_that_were_stored_raw() -> None:
    c, held = trained_codec()
    plain = Codec()
    with_dict = sum(len(c.encode(r, kind="patterns")) for r in held)
    without = sum(len(plain.encode(r, kind="patterns")) for r in held)
    assert with_dict * 2 < without  # ~200-byte patterns: raw without, ~3x smaller with
    frame = c.encode(held[0], kind="patterns")
    assert frame[1] == CODEC_ZSTD and frame_dictionary(frame) == 7
    assert c.decode(frame) == held[0]
    st = c.get_stats()
    assert st["by_kind"]["patterns"]["frames_compressed"] == len(held) + 1
    assert st["by_dictionary"][7]["frames_compressed"] == len(held) + 1
    assert st["by_kind"]["patterns"]["frames_decoded"] == 0  # decode() was given no kind
    assert st["frames_decoded"] == 1 and st["encode_ms"] > 0
    # other kinds and kind-less frames do not use it
    assert frame_dictionary(c.encode(held[0] * 3)) == 0


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_round_trip_with_a_dictionary_never_inflates(raw: bytes) -> None:
    c, _ = CODEC
    frame = c.encode(raw, kind="patterns")
    assert len(frame) <= len(raw) + HEADER_SIZE
    assert c.decode(frame) == raw


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.integers(0, 10_000))
def test_mutated_dictionary_frames_raise_corrupt_payload_or_decode(junk: bytes, pos: int) -> None:
    c, held = CODEC
    frame = bytearray(c.encode(held[0], kind="patterns"))
    i = pos % len(frame)
    frame[i : i + len(junk)] = junk
    with contextlib.suppress(CorruptPayload):
        c.decode(bytes(frame))


CODEC = trained_codec()


def test_frames_naming_an_unknown_dictionary() -> None:
    c, held = trained_codec(dict_id=9)
    frame = c.encode(held[0], kind="patterns")
    with pytest.raises(UnknownDictionary) as e:
        Codec().decode(frame)
    assert e.value.dict_id == 9 and isinstance(e.value, CorruptPayload)


def test_training_needs_samples() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        Codec().train([b"x"] * 5)


@pytest.fixture(params=["file", "ws"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, tmp_path, request)


async def test_store_trains_automatically_after_n_records(url: str) -> None:
    cfg = StoreConfig(dictionary_after=300, dictionary_sample=300)
    store = await Store.open(url, config=cfg)
    try:
        pats = generate_patterns(600, seed=2)
        await store.store_patterns(pats[:299])
        assert store.get_stats()["codec"]["active_dictionaries"]["patterns"] is None
        before = store.get_stats()["codec"]["by_kind"]["patterns"]["ratio"]
        await store.store_patterns(pats[299:300])  # the 300th record starts training
        await store.settle()
        dict_id = store.get_stats()["codec"]["active_dictionaries"]["patterns"]
        assert dict_id is not None
        await store.store_patterns(pats[300:])
        st = store.get_stats()["codec"]
        assert st["by_dictionary"][dict_id]["frames_compressed"] == 300
        assert st["by_dictionary"][dict_id]["ratio"] > 2 * before
        for p in pats[::50]:  # read back through the dictionary (cache off the path)
            store._cache.records["patterns"].clear()  # type: ignore[union-attr]
            assert await store.get_pattern(p.id) == p
    finally:
        await store.close()


async def test_retrained_dictionaries_keep_old_frames_readable_across_processes(
    url: str, tmp_path: Path
) -> None:
    cfg = StoreConfig(dictionary_after=0)
    writer = await Store.open(url, config=cfg)
    reader = await Store.open(url, config=cfg)  # opened before any dictionary existed
    eps = generate_episodes(300, seed=3)
    try:
        await writer.store_episodes(eps[:100])  # no dictionary yet
        d1 = await writer.train_dictionary("episodes")
        await writer.store_episodes(eps[100:200])  # frames name d1
        d2 = await writer.train_dictionary("episodes", sample=200)
        await writer.store_episodes(eps[200:])  # frames name d2
        assert d1 is not None and d2 is not None and d1 != d2
        got = await reader.get_episodes([e.id for e in eps])
        assert got == eps
        assert set(reader.codec.dictionaries()) == {d1, d2}
        with pytest.raises(ValidationError):
            await writer.train_dictionary("embeddings")
        with pytest.raises(ValidationError):
            await writer.train_dictionary("episodes", sample=5)
    finally:
        await writer.close()
        await reader.close()
    # and in another process, from a fresh start
    script = (
        "import json, sys; from tiered import open_sync\n"
        "s = open_sync(sys.argv[1])\n"
        "eps = s.get_episodes(json.loads(sys.argv[2]))\n"
        "print(json.dumps([e.description for e in eps]))\n"
        "s.close()\n"
    )
    ids = json.dumps([e.id for e in eps])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, url, ids,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == [e.description for e in eps]


async def test_heuristics_use_their_own_dictionary(tmp_path: Path) -> None:
    store = await Store.open(f"file:{tmp_path / 'h.db'}", config=StoreConfig(dictionary_after=0))
    try:
        await store.store_heuristics(generate_heuristics(200, seed=4))
        await store.store_patterns(generate_patterns(200, seed=4))
        h = await store.train_dictionary("heuristics")
        p = await store.train_dictionary("patterns")
        assert h and p and h != p
        assert store.codec.dictionaries() == {h: "heuristics", p: "patterns"}
    finally:
        await store.close()
