"""Bad input: hypothesis drives every public Store method with arbitrary arguments, and reads
stored frames that were damaged behind the Store's back.

A call either succeeds or raises a :class:`TieredError` (never another exception, never a hang);
a call that raises leaves the database exactly as it was (table counts and the change log's
position are unchanged: no partial write). A damaged compressed frame reads as
:class:`CorruptPayload` on every read path (zstd's content checksum catches damage that still
decompresses; the rare flip of a bit zstd does not use decodes to the original). A raw frame
(small records) has no checksum, so damage there may decode to another valid record, but never
to one under another id.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from array import array
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_url
from tests.strategies import embeddings, episodes, heuristics, ids, patterns
from tiered import (
    CacheConfig,
    CorruptPayload,
    Episode,
    Store,
    SyncStore,
    TieredError,
    ValidationError,
    open_sync,
)
from tiered.compression import Codec
from tiered.compression.codec import CODEC_ZSTD
from tiered.db.driver import Statement, Value, connect
from tiered.model import PatternKind
from tiered.sim import (
    generate_embeddings,
    generate_episodes,
    generate_heuristics,
    generate_patterns,
)
from tiered.store import MAX_LIMIT, OPERATIONS

from .conftest import record

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TABLES = (
    "episodes",
    "episode_metadata",
    "patterns",
    "heuristics",
    "embeddings",
    "embedding_models",
)
FINGERPRINT = Statement(
    "fuzz_fingerprint",
    "SELECT "
    + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES)
    + ", (SELECT coalesce(max(seq), 0) FROM change_log)",
)

# -- arguments ------------------------------------------------------------------------------------

#: strings no UTF-8 encoder accepts (lone surrogates), alone and inside otherwise valid text
unencodable = st.builds(
    lambda pre, c, post: pre + c + post,
    st.text(max_size=8),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.text(max_size=8),
)
#: result counts at and around every bound (the cap is MAX_LIMIT)
extreme_counts = st.sampled_from(
    [-(2**63), -1, 0, 1, MAX_LIMIT - 1, MAX_LIMIT, MAX_LIMIT + 1, 5000, 10**9, 2**63, 2**70]
)

junk_leaf = (
    unencodable
    | st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()  # nan, inf, -0.0 ...
    | st.text(max_size=30)  # NUL, lone surrogates, ...
    | st.text(min_size=300, max_size=400)  # longer than any id may be
    | st.binary(max_size=30)
    | st.datetimes()  # naive
    | st.builds(object)
)
junk = st.recursive(
    junk_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
floats = st.lists(st.floats(width=32), min_size=0, max_size=6)


def records(one: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A list of records, some of them maybe junk (a batch with one bad item)."""
    return st.lists(one | junk_leaf, max_size=4) | st.lists(one, max_size=3)


emb = embeddings(4)
#: plausible values by parameter name (valid ones, near misses); ``junk`` is always an option
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "episode": episodes(),
    "episodes": records(episodes()),
    "pattern": patterns,
    "patterns": records(patterns),
    "heuristic": heuristics,
    "heuristics": records(heuristics),
    "embedding": emb,
    "embeddings": records(emb),
    "episode_ids": st.lists(ids | unencodable | junk_leaf, max_size=4),
    "t": st.integers(-(2**64), 2**64) | st.datetimes(timezones=st.just(UTC)) | st.datetimes(),
    "limit": st.integers(-3, 3000) | extreme_counts,
    "k": st.integers(-3, 3000) | extreme_counts,
    "kind": st.sampled_from([k.value for k in PatternKind] + ["episodes", "patterns", "nope"]),
    "min_success_rate": st.floats(-1, 2) | st.floats(),
    "min_confidence": st.floats(-1, 2) | st.floats(),
    "vector": floats | floats.map(lambda v: array("f", v)) | st.just([math.nan, 1.0, 2.0, 3.0]),
    "exact": st.booleans(),
    "sample": st.integers(-3, 50) | st.none(),
}


def value_for(name: str) -> st.SearchStrategy[Any]:
    plausible = PLAUSIBLE.get(name)
    if plausible is None and name.endswith("_id"):
        plausible = ids
    if plausible is None:
        plausible = st.text(max_size=20) | st.none()  # key, value, domain, model, owner_kind ...
    if name.endswith(("_id", "key", "value", "domain", "model", "owner_kind", "task_type")):
        plausible = plausible | unencodable
    return plausible | junk


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, list[Any], dict[str, Any]]:
    """A public operation and arguments that fit its signature (values anything at all)."""
    name = draw(st.sampled_from(OPERATIONS))
    sig = inspect.signature(getattr(Store, name))
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in list(sig.parameters.values())[1:]:  # skip self
        if p.default is not inspect.Parameter.empty and draw(st.booleans()):
            continue  # leave an optional one out
        v = draw(value_for(p.name))
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[p.name] = v
        else:
            args.append(v)
    return name, args, kwargs


# -- fixtures ------------------------------------------------------------------------------------


def raw(url: str, stmt: Statement, args: tuple[Value, ...] = ()) -> list[tuple[Value, ...]]:
    """Run one statement on a connection of its own: behind the Store's back."""

    async def run() -> list[tuple[Value, ...]]:
        conn = await connect(url)
        try:
            return (await conn.execute(stmt, args)).rows
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture(params=("file", "ws"))
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SyncStore, str]]:
    """A store holding a few records of each kind (so reads and deletes find something)."""
    url = make_url(request.param, tmp_path, request)
    s = open_sync(url)
    try:
        s.store_episodes(generate_episodes(20, seed=1))
        s.store_patterns(generate_patterns(10, seed=1))
        s.store_heuristics(generate_heuristics(10, seed=1))
        s.store_embeddings(generate_embeddings(10, dim=4, seed=1))
        yield s, url
    finally:
        s.close()


OUTCOMES: dict[str, int] = {}
#: outcomes of the calls that carried a hostile argument: an unencodable string, or a count
#: outside [1, MAX_LIMIT]
HOSTILE: dict[str, dict[str, int]] = {"unencodable": {}, "count out of range": {}}


def _has_unencodable(v: Any, depth: int = 0) -> bool:
    if isinstance(v, str):
        return not v.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in v)
    if depth < 6 and isinstance(v, list | tuple):
        return any(_has_unencodable(x, depth + 1) for x in v)
    if depth < 6 and isinstance(v, dict):
        return any(_has_unencodable(x, depth + 1) for kv in v.items() for x in kv)
    return False


def _hostile(args: list[Any], kwargs: dict[str, Any], sig: inspect.Signature) -> list[str]:
    bound = dict(zip(list(sig.parameters)[1:], args, strict=False)) | kwargs
    kinds = []
    if any(_has_unencodable(v) for v in bound.values()):
        kinds.append("unencodable")
    for n in ("limit", "k"):
        v = bound.get(n)
        if isinstance(v, int) and not isinstance(v, bool) and not 1 <= v <= MAX_LIMIT:
            kinds.append("count out of range")
    return kinds


@FUZZ
@given(call=calls())
def test_any_arguments_to_any_method_raise_only_typed_errors_and_write_nothing(
    seeded: tuple[SyncStore, str], call: tuple[str, list[Any], dict[str, Any]]
) -> None:
    store, url = seeded
    name, args, kwargs = call
    hostile = _hostile(args, kwargs, inspect.signature(getattr(Store, name)))
    before = raw(url, FINGERPRINT)
    lost = store.store.pool.get_stats()["connections_lost"]
    try:
        getattr(store, name)(*args, **kwargs)
    except TieredError as e:
        outcome = type(e).__name__
        # the server is healthy: bad input must be caught before it reaches it
        assert isinstance(e, ValidationError), f"{name} raised {e!r}, not a ValidationError"
        assert raw(url, FINGERPRINT) == before, f"{name} raised {e!r} but wrote"
    else:
        outcome = "ok"
        if not name.startswith(("store_", "delete_", "train_")):
            assert raw(url, FINGERPRINT) == before, f"the read {name} wrote"
    # no argument made the server drop a pooled connection (sqld closes a socket on bad UTF-8)
    assert store.store.pool.get_stats()["connections_lost"] == lost, f"{name} lost a connection"
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
    for kind in hostile:
        HOSTILE[kind][outcome] = HOSTILE[kind].get(outcome, 0) + 1
        # a count out of range is never served: it fails, or a bad other argument failed first
        assert kind != "count out of range" or outcome != "ok", f"{name} accepted {kind}"


def test_fuzz_outcomes_recorded() -> None:
    """Runs after the fuzz test (file order): puts its outcome counts into the fault table."""
    if not OUTCOMES:
        pytest.skip("the fuzz test did not run in this session")
    record(
        fault="bad input: hypothesis over every public Store method (file, ws)",
        operations=f"{sum(OUTCOMES.values())} calls of {len(OPERATIONS)} methods",
        errors_to_caller=", ".join(f"{n} {k}" for k, n in sorted(OUTCOMES.items())),
        acked_lost=0,
        recovery_s="-",
        load="no write by any call that raised",
    )
    for kind, outcomes in HOSTILE.items():
        if outcomes:
            record(
                fault=f"bad input: {kind} argument (hypothesis, file, ws)",
                operations=f"{sum(outcomes.values())} calls",
                errors_to_caller=", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())),
                acked_lost=0,
                recovery_s="-",
                load="no write, no server error, pool intact",
            )


# -- damaged frames ------------------------------------------------------------------------------

damage = st.one_of(
    st.binary(max_size=64).map(lambda junk: ("replace", junk)),
    st.integers(0, 10_000).map(lambda i: ("truncate", i)),
    st.tuples(st.integers(0, 10_000), st.integers(1, 255)).map(lambda f: ("flip", f)),
    st.binary(min_size=1, max_size=16).map(lambda tail: ("append", tail)),
)


def damaged(frame: bytes, how: tuple[str, Any]) -> bytes:
    op, arg = how
    if op == "replace":
        return bytes(arg)
    if op == "truncate":
        return frame[: arg % max(1, len(frame))]
    if op == "flip":
        i, mask = arg
        b = bytearray(frame)
        b[i % len(b)] ^= mask
        return bytes(b)
    return frame + arg


READ_FRAME = Statement("fuzz_read_frame", "SELECT payload FROM episodes WHERE id = ?")
WRITE_FRAME = Statement("fuzz_write_frame", "UPDATE episodes SET payload = ? WHERE id = ?")


@pytest.fixture(params=("file", "ws"))
def uncached(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[SyncStore, str, Episode]]:
    url = make_url(request.param, tmp_path, request)
    s = open_sync(url, cache=CacheConfig(enabled=False))
    try:
        (ep,) = generate_episodes(1, seed=2, steps=(30, 40))  # large: stored compressed
        s.store_episode(ep)
        yield s, url, ep
    finally:
        s.close()


@FUZZ
@given(how=damage)
def test_damaged_frames_read_as_corrupt_payload_on_every_path(
    uncached: tuple[SyncStore, str, Episode], how: tuple[str, Any]
) -> None:
    s, url, ep = uncached
    original = raw(url, READ_FRAME, (ep.id,))[0][0]
    assert isinstance(original, bytes) and original[1] == CODEC_ZSTD  # compressed
    raw(url, WRITE_FRAME, (damaged(original, how), ep.id))
    try:
        reads = (
            lambda: s.get_episode(ep.id),
            lambda: s.get_episodes([ep.id]),
            lambda: s.query_episodes_since(0),
            lambda: s.query_episodes(task_type=ep.task_type),
            lambda: s.query_episodes_by_metadata("agent", ep.metadata["agent"]),
        )
        for read in reads:
            try:
                got = read()
            except CorruptPayload:
                continue
            # a flip zstd cannot see (an unused bit) decodes to the original, nothing else
            assert got == ep or got == [ep], "damage decoded to another record"
    finally:
        raw(url, WRITE_FRAME, (original, ep.id))
    assert s.get_episode(ep.id) == ep


def test_empty_or_misshapen_frames_are_corrupt_payload(
    uncached: tuple[SyncStore, str, Episode],
) -> None:
    """Deterministic damage the fuzzer may not hit: empty, one byte, JSON of the wrong shape."""
    s, url, ep = uncached
    other = Codec().encode_doc(generate_episodes(1, seed=3)[0])  # a valid frame, but
    for frame in (b"", b"\x00", b"{}", b'{"id": 1}', b"null", "text, not a blob", other):
        raw(url, WRITE_FRAME, (frame, ep.id))
        with pytest.raises(CorruptPayload):
            s.get_episode(ep.id)
