"""The query cache finds the results a write could change through indexes (members, predicate
buckets); it must drop exactly the results a test of every result against every written record
would drop. Checked against that brute force on random queries, writes and evictions."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Hashable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import episodes
from tiered import Episode
from tiered.cache import predicates
from tiered.cache.adaptive import AdaptiveTTLCache
from tiered.cache.queries import QueryCache, QueryEntry
from tiered.sim import generate_episodes
from tiered.workload.records import generate_patterns


@settings(max_examples=200, deadline=None)
@given(episodes(), st.data())
def test_a_record_matches_only_predicates_under_its_own_buckets(ep: Episode, data: Any) -> None:
    own = set(predicates.BUCKETS["episodes"](ep))
    pick = data.draw
    maybe = st.one_of(st.none(), st.text(max_size=4))
    preds = [
        predicates.episodes_matching(
            pick(st.sampled_from([None, ep.task_type])) if pick(st.booleans()) else pick(maybe),
            pick(st.sampled_from([None, ep.context.domain])),
            pick(st.sampled_from([None, ep.context.language])) if pick(st.booleans()) else "x",
        ),
        *(predicates.episodes_by_metadata(k, v) for k, v in ep.metadata.items()),
        predicates.episodes_by_metadata("k", pick(st.text(max_size=3))),
    ]
    for p in preds:
        if p(ep):
            assert p.bucket in own


def _queries(eps: list[Episode], rng: random.Random) -> Iterator[tuple[Hashable, Any]]:
    """Random queries over the values the records have (and a few they do not)."""
    types = [*sorted({e.task_type for e in eps}), "none-such"]
    domains = sorted({e.context.domain for e in eps})
    langs = sorted({str(e.context.language) for e in eps})
    meta = sorted({(k, v) for e in eps for k, v in e.metadata.items()})
    while True:
        kind = rng.random()
        if kind < 0.5:
            f = (
                rng.choice([None, *types]),
                rng.choice([None, *domains]),
                rng.choice([None, *langs]),
            )
            yield ("q", *f), predicates.episodes_matching(*f)
        elif kind < 0.8 and meta:
            k, v = rng.choice(meta)
            yield ("m", k, v), predicates.episodes_by_metadata(k, v)
        else:
            t = rng.choice(eps).start_time
            yield ("s", t), predicates.episodes_since(t)


@pytest.mark.parametrize("seed", range(4))
def test_invalidation_drops_exactly_what_testing_every_result_drops(seed: int) -> None:
    rng = random.Random(seed)
    eps = generate_episodes(300, seed=seed)
    qc = QueryCache(AdaptiveTTLCache(60, getsizeof=lambda v: 1))  # small: evictions happen
    queries = _queries(eps, rng)
    written = 0
    for step in range(400):
        if rng.random() < 0.7:
            key, pred = next(queries)
            members = rng.sample(eps, rng.randint(0, 6))
            ids = frozenset(e.id for e in members)
            qc.put(key, QueryEntry("episodes", tuple(members), ids, pred))
            continue
        batch = [
            dataclasses.replace(e, description=f"rewritten {step}")
            for e in rng.sample(eps, rng.randint(1, 5))
        ]
        deleted = [e.id for e in rng.sample(eps, rng.randint(0, 1))]
        live = {k: qc.cache.get_stale(k) for k in list(qc.cache)}
        ids = {r.id for r in batch} | set(deleted)
        expect = {
            k
            for k, e in live.items()
            if e is not None
            and (not ids.isdisjoint(e.members) or any(e.predicate(r) for r in batch))
        }
        qc.invalidate("episodes", batch, deleted)
        dropped = {k for k, e in live.items() if e is not None and qc.cache.get_stale(k) is None}
        assert dropped == expect, f"step {step}"
        written += 1
    assert written > 50 and qc.invalidations > 0
    # the indexes stay bounded by the live entries however many results came and went
    assert qc._names <= qc._rebuild_at <= 2 * (2 + 6) * qc.cache.maxsize + 4096


def test_patterns_and_embeddings_route_to_their_buckets() -> None:
    for p in generate_patterns(50, seed=3):
        own = set(predicates.BUCKETS["patterns"](p))
        for kind in (None, p.kind):
            for domain in (None, p.domain):
                assert predicates.patterns_matching(kind, domain, 0.0).bucket in own
    e = generate_episodes(1, seed=1)[0]
    assert ("match", None, None, None) in set(predicates.BUCKETS["episodes"](e))


def test_a_route_that_leaves_out_a_bucket_is_caught() -> None:
    """The brute-force comparison above can fail: a route without the "any task type"
    buckets leaves a matching result in the cache."""
    eps = generate_episodes(20, seed=2)

    def narrow(e: Episode) -> Iterator[Hashable]:
        return (b for b in predicates.BUCKETS["episodes"](e) if b[:2] != ("match", None))

    qc = QueryCache(AdaptiveTTLCache(100), buckets={"episodes": narrow})
    e = eps[0]
    pred = predicates.episodes_matching(None, e.context.domain, None)
    qc.put(("q",), QueryEntry("episodes", (), frozenset(), pred))
    qc.invalidate("episodes", [e], [])
    assert qc.cache.get_stale(("q",)) is not None  # missed: what the exactness test catches


def test_a_query_whose_results_are_never_read_again_stops_being_cached() -> None:
    """In a write-heavy workload every result is dropped before a read comes: caching them
    costs and saves nothing, so only one in eight is cached (to keep measuring); a query
    whose results are read again stays cached."""
    from tiered.cache.queries import _PROBE, _USE_WARM, MIN_USE

    qc = QueryCache(AdaptiveTTLCache(1000))
    pred = predicates.episodes_since(0)
    cached = 0
    for i in range(200):
        if qc.admit("since"):
            qc.put(("since", i), QueryEntry("episodes", (), frozenset(), pred))
            cached += 1
    assert _USE_WARM <= cached <= _USE_WARM + 200 / _PROBE + 1
    assert qc.by_query["since"][2] == 200 - cached  # counted as not cached
    hot = 0
    for i in range(200):
        if qc.admit("meta"):
            qc.put(("meta", i), QueryEntry("episodes", (), frozenset(), pred))
            hot += 1
        if i % 2 == 0:  # every other result read back once: used, kept on caching
            assert qc.get(("meta", i)) is not None
    assert hot == 200 and MIN_USE < 0.5
