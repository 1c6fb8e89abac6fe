"""Hypothesis strategies for valid domain records."""

from __future__ import annotations

from hypothesis import strategies as st

from tiered.model import (
    MAX_MICROS,
    Abstained,
    Complexity,
    ContextPattern,
    DecisionPoint,
    Embedding,
    Episode,
    ErrorRecovery,
    Evidence,
    ExecutionStep,
    Failure,
    Heuristic,
    PartialSuccess,
    Pattern,
    Reflection,
    StepResult,
    Success,
    TaskContext,
    ToolSequence,
)

# Any text without NUL (surrogates excluded: they cannot be encoded as UTF-8 at all).
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
name = text.filter(lambda s: s.strip() != "").map(lambda s: s[:128])
ids = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() != "")
meta_key = st.from_regex(r"[A-Za-z0-9_](?:[A-Za-z0-9_.:/]|-[A-Za-z0-9_.:/]){0,20}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | text
json_value = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
    max_leaves=12,
)
micros = st.integers(0, MAX_MICROS)


@st.composite
def episodes(draw: st.DrawFn) -> Episode:
    start = draw(st.integers(0, MAX_MICROS - 10**12))
    outcome = draw(
        st.none()
        | st.builds(Success, text, st.tuples(name))
        | st.builds(PartialSuccess, text, st.tuples(name), st.tuples(name, name))
        | st.builds(Failure, text, st.none() | text)
        | st.builds(Abstained, text)
    )
    steps = draw(
        st.lists(
            st.builds(
                ExecutionStep,
                tool=name,
                action=text,
                parameters=st.dictionaries(text, json_value, max_size=4),
                result=st.none()
                | st.builds(StepResult, st.sampled_from(["success", "error", "timeout"]), text),
                latency_ms=st.floats(0, 1e7, allow_nan=False),
                tokens=st.none() | st.integers(0, 10**9),
            ),
            max_size=4,
        )
    )
    return Episode(
        id=draw(ids),
        task_type=draw(name),
        description=draw(text),
        context=TaskContext(
            draw(name),
            draw(st.none() | name),
            draw(st.none() | name),
            draw(st.sampled_from(list(Complexity))),
            tuple(draw(st.lists(name, max_size=3))),
        ),
        start_time=start,
        end_time=draw(st.none() | st.integers(start, start + 10**12)),
        steps=tuple(steps),
        outcome=outcome,
        reward=draw(st.none() | finite),
        reflection=draw(
            st.none() | st.builds(Reflection, st.tuples(name), st.tuples(), st.tuples(name, name))
        ),
        pattern_ids=tuple(draw(st.lists(ids, max_size=3))),
        heuristic_ids=tuple(draw(st.lists(ids, max_size=3))),
        metadata=draw(st.dictionaries(meta_key, text, max_size=4)),
        tags=tuple(draw(st.lists(name, max_size=3))),
    )


bodies = (
    st.builds(ToolSequence, st.lists(name, min_size=1, max_size=4).map(tuple), text)
    | st.builds(DecisionPoint, name, name)
    | st.builds(ErrorRecovery, name, st.lists(name, max_size=3).map(tuple))
    | st.builds(ContextPattern, st.lists(name, max_size=3).map(tuple), name)
)
patterns = st.builds(Pattern, ids, bodies, name, st.floats(0, 1), finite, st.integers(0, 2**62))
heuristics = st.builds(
    Heuristic,
    ids,
    name,
    name,
    st.floats(0, 1),
    st.builds(
        Evidence, st.lists(ids, max_size=3).map(tuple), st.floats(0, 1), st.integers(0, 10**6)
    ),
)
float32 = st.floats(-(2.0**100), 2.0**100, allow_nan=False, width=32)


@st.composite
def embeddings(draw: st.DrawFn, dim: int) -> Embedding:
    vec = draw(st.lists(float32, min_size=dim, max_size=dim))
    return Embedding(
        draw(ids), draw(ids), draw(st.sampled_from(["episode", "pattern"])), f"model-{dim}", vec
    )
