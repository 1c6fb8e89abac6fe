"""Property tests: random valid records read back exactly as stored, on every backend.

They drive the blocking :class:`tiered.SyncStore` (the scripts' entry point), which forwards to the
async Store on its own loop, so hypothesis runs plain synchronous examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_url
from tests.strategies import embeddings, episodes, heuristics, patterns
from tiered import Embedding, Episode, Heuristic, Pattern, SyncStore, open_sync

PROPS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=("file", "http", "ws"))
def sync_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SyncStore]:
    s = open_sync(make_url(request.param, tmp_path, request))
    try:
        yield s
    finally:
        s.close()


@PROPS
@given(st.lists(episodes(), min_size=1, max_size=5, unique_by=lambda e: e.id))
def test_episodes_round_trip(sync_store: SyncStore, eps: list[Episode]) -> None:
    sync_store.store_episodes(eps)
    assert sync_store.get_episodes([e.id for e in eps]) == eps
    for e in eps:
        assert sync_store.get_episode(e.id) == e
        for k, v in e.metadata.items():
            assert e in sync_store.query_episodes_by_metadata(k, v, limit=1000)


@PROPS
@given(
    st.lists(patterns, min_size=1, max_size=5, unique_by=lambda p: p.id),
    st.lists(heuristics, max_size=5, unique_by=lambda h: h.id),
)
def test_patterns_and_heuristics_round_trip(
    sync_store: SyncStore, ps: list[Pattern], hs: list[Heuristic]
) -> None:
    sync_store.store_patterns(ps)
    sync_store.store_heuristics(hs)
    for p in ps:
        got = sync_store.get_pattern(p.id)
        assert got == p and got.kind is p.kind
    for h in hs:
        assert sync_store.get_heuristic(h.id) == h


@PROPS
@given(
    st.integers(1, 48).flatmap(
        lambda d: st.lists(embeddings(d), min_size=1, max_size=5, unique_by=lambda e: e.id)
    )
)
def test_embeddings_round_trip(sync_store: SyncStore, es: list[Embedding]) -> None:
    # ids may be reused across examples with another model/dimension: the store must follow.
    try:
        sync_store.store_embeddings(es)
    except Exception as e:  # a model name already registered with another dimension
        assert "dimension" in str(e)
        return
    for e in es:
        assert sync_store.get_embedding(e.id) == e
