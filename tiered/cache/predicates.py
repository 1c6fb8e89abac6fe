"""What each cached query matches, as predicates over records.

A cached query result is dropped when a written record matches its predicate (see
:class:`tiered.cache.layer.QueryCache`). The Store builds its predicates here, and so does the
simulator (:mod:`tiered.sim.replay`), so both invalidate exactly the same results.

So that a write does not test every cached result of its table, a predicate that filters on
equalities names a **bucket** (its query's equality filters), and :data:`BUCKETS` gives, per
table, every bucket a record could match (its own values, each filter also as ``None``). A
record can only match a predicate whose bucket is among its own: the write tests those, and
the predicates with no bucket (ranges such as "since"), and no other.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tiered.model import Embedding, Episode, Heuristic, Pattern, PatternKind

__all__ = [
    "BUCKETS",
    "Predicate",
    "embeddings_near",
    "episodes_by_metadata",
    "episodes_matching",
    "episodes_since",
    "heuristics_above",
    "patterns_matching",
]


@dataclass(frozen=True, slots=True)
class Predicate:
    """``test(record)``: whether the record may enter the query's result. ``bucket``: the
    query's equality filters (``None``: test it against every written record)."""

    test: Callable[[Any], bool]
    bucket: Hashable | None = None

    def __call__(self, record: Any) -> bool:
        return self.test(record)


def episodes_since(t0: int) -> Predicate:
    """``query_episodes_since(t0)``: episodes that started at or after ``t0`` (µs)."""

    def since(e: Episode) -> bool:
        return e.start_time >= t0

    return Predicate(since)


def episodes_by_metadata(key: str, value: str) -> Predicate:
    """``query_episodes_by_metadata(key, value)``: metadata ``key`` equals ``value``."""

    def equals(e: Episode) -> bool:
        return e.metadata.get(key) == value

    return Predicate(equals, ("meta", key, value))


def episodes_matching(task_type: str | None, domain: str | None, language: str | None) -> Predicate:
    """``query_episodes(...)``: every given filter matches (``None`` filters are ignored)."""

    def matches(e: Episode) -> bool:
        return (
            (task_type is None or e.task_type == task_type)
            and (domain is None or e.context.domain == domain)
            and (language is None or e.context.language == language)
        )

    return Predicate(matches, ("match", task_type, domain, language))


def patterns_matching(kind: PatternKind | None, domain: str | None, floor: float) -> Predicate:
    """``search_patterns(...)``: kind and domain (when given) and success rate >= ``floor``."""

    def matches(p: Pattern) -> bool:
        return (
            (kind is None or p.kind is kind)
            and (domain is None or p.domain == domain)
            and p.success_rate >= floor
        )

    return Predicate(matches, ("patterns", kind, domain))


def heuristics_above(floor: float) -> Predicate:
    """``list_heuristics(min_confidence=floor)``: confidence >= ``floor``."""

    def above(h: Heuristic) -> bool:
        return h.confidence >= floor

    return Predicate(above)


def embeddings_near(dim: int, model: str | None, owner_kind: str | None) -> Predicate:
    """``nearest(...)``: any embedding of the probe's dimension (and ``model``, ``owner_kind``
    when given) may enter the result."""

    def matches(e: Embedding) -> bool:
        return (
            e.dim == dim
            and (model is None or e.model == model)
            and (owner_kind is None or e.owner_kind == owner_kind)
        )

    return Predicate(matches, ("near", dim, model, owner_kind))


def _episode_buckets(e: Episode) -> Iterator[Hashable]:
    c = e.context
    for t in (None, e.task_type):
        for d in (None, c.domain):
            for lang in (None, c.language):
                yield ("match", t, d, lang)
    for k, v in e.metadata.items():
        if isinstance(v, Hashable):
            yield ("meta", k, v)


def _pattern_buckets(p: Pattern) -> Iterator[Hashable]:
    for k in (None, p.kind):
        for d in (None, p.domain):
            yield ("patterns", k, d)


def _embedding_buckets(e: Embedding) -> Iterator[Hashable]:
    for m in (None, e.model):
        for o in (None, e.owner_kind):
            yield ("near", e.dim, m, o)


#: per table: every bucket a record of it could match
BUCKETS: Mapping[str, Callable[[Any], Iterator[Hashable]]] = {
    "episodes": _episode_buckets,
    "patterns": _pattern_buckets,
    "embeddings": _embedding_buckets,
}
