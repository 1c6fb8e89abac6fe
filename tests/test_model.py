"""Domain records validate at construction and name the offending field."""

from __future__ import annotations

from array import array
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tiered import (
    Abstained,
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
    PatternKind,
    StepResult,
    Success,
    TaskContext,
    ToolSequence,
    ValidationError,
    from_micros,
    to_micros,
)


def episode(**kw: object) -> Episode:
    base: dict[str, object] = {
        "id": "e1",
        "task_type": "debugging",
        "description": "fix flaky test",
        "context": TaskContext("web-api", "python"),
        "start_time": 1_000,
    }
    base.update(kw)
    return Episode(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": "x" * 257}, "id"),
        ({"id": 5}, "id"),
        ({"task_type": " "}, "task_type"),
        ({"description": None}, "description"),
        ({"context": {"domain": "x"}}, "context"),
        ({"start_time": -1}, "start_time"),
        ({"start_time": 1.5}, "start_time"),
        ({"start_time": True}, "start_time"),
        ({"end_time": 10, "start_time": 20}, "end_time"),
        ({"steps": "abc"}, "steps"),
        ({"steps": (1,)}, "steps[0]"),
        ({"outcome": "ok"}, "outcome"),
        ({"reward": float("nan")}, "reward"),
        ({"reward": "1"}, "reward"),
        ({"metadata": {"bad'key": "v"}}, "metadata"),
        ({"metadata": {"a%b": "v"}}, "metadata"),
        ({"metadata": {"a--b": "v"}}, "metadata"),
        ({"metadata": {"": "v"}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {"k": "nul\x00"}}, "metadata.k"),
        ({"tags": "abc"}, "tags"),
        ({"pattern_ids": ("",)}, "pattern_ids[0]"),
    ],
)
def test_episode_rejects_bad_fields(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        episode(**kw)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_nested_fields_are_named() -> None:
    with pytest.raises(ValidationError, match=r"^context\.domain"):
        TaskContext("")
    with pytest.raises(ValidationError, match=r"^context\.complexity.*simple"):
        TaskContext("d", complexity="huge")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"^step\.parameters"):
        ExecutionStep("bash", "run", {"x": float("inf")})
    with pytest.raises(ValidationError, match=r"^step\.parameters"):
        ExecutionStep("bash", "run", {"x": object()})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match=r"^step\.latency_ms"):
        ExecutionStep("bash", "run", latency_ms=-1)
    with pytest.raises(ValidationError, match=r"^step\.result\.kind"):
        StepResult("maybe")
    with pytest.raises(ValidationError, match=r"^outcome\.artifacts"):
        Success("ok", ("a", 3))  # type: ignore[arg-type]


def test_metadata_keys_allow_names_and_values_are_free_text() -> None:
    ep = episode(metadata={"user-id": "it's 100% -- fine", "a.b:c/d_e": ""})
    assert ep.metadata == {"user-id": "it's 100% -- fine", "a.b:c/d_e": ""}


def test_datetimes_convert_to_micros() -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert from_micros(to_micros(t)) == t
    tz = timezone(timedelta(hours=2))
    assert to_micros(t.astimezone(tz)) == to_micros(t)
    ep = episode(start_time=t, end_time=t + timedelta(seconds=1))
    assert ep.start_time == to_micros(t) and ep.end_time == ep.start_time + 1_000_000
    with pytest.raises(ValidationError, match="naive"):
        to_micros(datetime(2026, 1, 1))


def test_outcomes_and_kinds() -> None:
    for o, kind in [
        (Success("ok", ("a.py",)), "success"),
        (PartialSuccess("meh", ("a",), ("b",)), "partial_success"),
        (Failure("boom", "trace"), "failure"),
        (Abstained("no access"), "abstained"),
    ]:
        assert episode(outcome=o).outcome_kind == kind
    assert episode().outcome_kind is None


def test_pattern_kinds_follow_body() -> None:
    bodies = {
        PatternKind.TOOL_SEQUENCE: ToolSequence(("grep", "edit")),
        PatternKind.DECISION_POINT: DecisionPoint("tests fail", "read logs"),
        PatternKind.ERROR_RECOVERY: ErrorRecovery("KeyError", ("add guard",)),
        PatternKind.CONTEXT_PATTERN: ContextPattern(("web",), "test first"),
    }
    for kind, body in bodies.items():
        assert Pattern("p", body, "web").kind is kind
    with pytest.raises(ValidationError, match=r"^success_rate"):
        Pattern("p", bodies[PatternKind.TOOL_SEQUENCE], "web", success_rate=1.5)
    with pytest.raises(ValidationError, match=r"^body.tools"):
        ToolSequence(())
    with pytest.raises(ValidationError, match=r"^body"):
        Pattern("p", "grep", "web")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"^occurrence_count"):
        Pattern("p", bodies[PatternKind.TOOL_SEQUENCE], "web", occurrence_count=-1)


def test_heuristic_validation() -> None:
    with pytest.raises(ValidationError, match=r"^confidence"):
        Heuristic("h", "if", "then", 2.0)
    with pytest.raises(ValidationError, match=r"^evidence.sample_size"):
        Evidence(sample_size=-3)
    with pytest.raises(ValidationError, match=r"^evidence"):
        Heuristic("h", "if", "then", 0.5, evidence={})  # type: ignore[arg-type]


def test_embedding_vectors_are_float32_of_any_dimension() -> None:
    e = Embedding("v", "o", "episode", "m", [0.1, 0.2, 0.3])
    assert e.vector.typecode == "f" and e.dim == 3
    assert e == Embedding("v", "o", "episode", "m", array("f", [0.1, 0.2, 0.3]))
    assert Embedding("v", "o", "episode", "m", [1.0] * 4096).dim == 4096
    for bad in ([], [float("nan")], [1e39], ["a"], "abc"):
        with pytest.raises(ValidationError, match=r"^vector"):
            Embedding("v", "o", "episode", "m", bad)  # type: ignore[arg-type]
