"""What each cached query matches, as plain predicates over records.

A cached query result is dropped when a written record matches its predicate (see
:class:`tiered.cache.layer.QueryCache`). The Store builds its predicates here, and so does the
simulator (:mod:`tiered.sim.replay`), so both invalidate exactly the same results.
"""

from __future__ import annotations

from collections.abc import Callable

from tiered.model import Embedding, Episode, Heuristic, Pattern, PatternKind

__all__ = [
    "embeddings_near",
    "episodes_by_metadata",
    "episodes_matching",
    "episodes_since",
    "heuristics_above",
    "patterns_matching",
]


def episodes_since(t0: int) -> Callable[[Episode], bool]:
    """``query_episodes_since(t0)``: episodes that started at or after ``t0`` (µs)."""
    return lambda e: e.start_time >= t0


def episodes_by_metadata(key: str, value: str) -> Callable[[Episode], bool]:
    """``query_episodes_by_metadata(key, value)``: metadata ``key`` equals ``value``."""
    return lambda e: e.metadata.get(key) == value


def episodes_matching(
    task_type: str | None, domain: str | None, language: str | None
) -> Callable[[Episode], bool]:
    """``query_episodes(...)``: every given filter matches (``None`` filters are ignored)."""

    def matches(e: Episode) -> bool:
        return (
            (task_type is None or e.task_type == task_type)
            and (domain is None or e.context.domain == domain)
            and (language is None or e.context.language == language)
        )

    return matches


def patterns_matching(
    kind: PatternKind | None, domain: str | None, floor: float
) -> Callable[[Pattern], bool]:
    """``search_patterns(...)``: kind and domain (when given) and success rate >= ``floor``."""

    def matches(p: Pattern) -> bool:
        return (
            (kind is None or p.kind is kind)
            and (domain is None or p.domain == domain)
            and p.success_rate >= floor
        )

    return matches


def heuristics_above(floor: float) -> Callable[[Heuristic], bool]:
    """``list_heuristics(min_confidence=floor)``: confidence >= ``floor``."""
    return lambda h: h.confidence >= floor


def embeddings_near(
    dim: int, model: str | None, owner_kind: str | None
) -> Callable[[Embedding], bool]:
    """``nearest(...)``: any embedding of the probe's dimension (and ``model``, ``owner_kind``
    when given) may enter the result."""

    def matches(e: Embedding) -> bool:
        return (
            e.dim == dim
            and (model is None or e.model == model)
            and (owner_kind is None or e.owner_kind == owner_kind)
        )

    return matches
