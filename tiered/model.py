"""Domain records of an agent-memory store: episodes, patterns, heuristics, embeddings.

Records are frozen dataclasses validated at construction: bad input raises
:class:`tiered.errors.ValidationError` naming the field, before anything can reach the database.
Timestamps are integer microseconds since the Unix epoch, UTC (see :func:`to_micros`).

The codec in :mod:`tiered.compression` encodes a record's fields directly (msgspec) into a stored
frame; ``from_doc`` rebuilds a record from the decoded fields. An episode's is checked for types
and shape only (a malformed document raises ``TypeError``/``ValueError``, which the Store reports
as :class:`~tiered.errors.CorruptPayload`): its texts were validated when it was written, and
validating them again was most of the cost of every episode read. Queryable fields
(times, task type, domain, language, outcome and pattern kind, success rate, confidence, owner)
are also kept as real columns by :mod:`tiered.db.schema`.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeAlias

from tiered.errors import ValidationError
from tiered.validation import (
    MAX_ID_LEN,
    MAX_MICROS,
    MAX_NAME_LEN,
    MAX_VECTOR_DIM,
    JSONValue,
    check_count,
    check_id,
    check_json,
    check_metadata_key,
    check_micros,
    check_number,
    check_opt_text,
    check_text,
    check_texts,
    check_vector,
    from_micros,
    to_micros,
)

__all__ = [
    "MAX_ID_LEN",
    "MAX_MICROS",
    "MAX_NAME_LEN",
    "MAX_VECTOR_DIM",
    "Abstained",
    "Complexity",
    "ContextPattern",
    "DecisionPoint",
    "Embedding",
    "Episode",
    "ErrorRecovery",
    "Evidence",
    "ExecutionStep",
    "Failure",
    "Heuristic",
    "JSONValue",
    "Outcome",
    "PartialSuccess",
    "Pattern",
    "PatternBody",
    "PatternKind",
    "Reflection",
    "StepResult",
    "Success",
    "TaskContext",
    "ToolSequence",
    "check_id",
    "check_metadata_key",
    "check_micros",
    "check_text",
    "check_vector",
    "from_micros",
    "to_micros",
]


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _new(cls: type[Any], **fields: object) -> Any:
    """A record of ``cls`` with ``fields`` as given, without ``__post_init__``: for rebuilding
    a stored record whose fields were validated when it was written (see ``from_doc``)."""
    obj = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def _doc_str(value: object) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _doc_opt_str(value: object) -> str | None:
    return None if value is None else _doc_str(value)


def _doc_strs(value: object) -> tuple[str, ...]:
    """A stored list of strings as a tuple."""
    if type(value) is not list or not all(type(v) is str for v in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


def _doc_int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------------------------
# episodes
# ---------------------------------------------------------------------------------------------


class Complexity(StrEnum):
    SIMPLE = "simple"
    MODERATE = "moderate"
    COMPLEX = "complex"


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Where an episode happened: domain (required), language, framework, complexity, tags."""

    domain: str
    language: str | None = None
    framework: str | None = None
    complexity: Complexity = Complexity.MODERATE
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "domain", check_text("context.domain", self.domain, max_len=MAX_NAME_LEN))
        _set(
            self,
            "language",
            check_opt_text("context.language", self.language, max_len=MAX_NAME_LEN),
        )
        _set(
            self,
            "framework",
            check_opt_text("context.framework", self.framework, max_len=MAX_NAME_LEN),
        )
        try:
            _set(self, "complexity", Complexity(self.complexity))
        except ValueError:
            allowed = ", ".join(c.value for c in Complexity)
            raise ValidationError(
                "context.complexity", f"must be one of {allowed}, got {self.complexity!r}"
            ) from None
        _set(self, "tags", check_texts("context.tags", self.tags, max_len=MAX_NAME_LEN))

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> TaskContext:
        """Rebuild a stored context (types checked; see the module docstring)."""
        return _new(  # type: ignore[no-any-return]
            cls,
            domain=_doc_str(d["domain"]),
            language=_doc_opt_str(d.get("language")),
            framework=_doc_opt_str(d.get("framework")),
            complexity=Complexity(d["complexity"]),
            tags=_doc_strs(d["tags"]),
        )


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a step produced: ``kind`` is ``success``, ``error`` or ``timeout``."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"success", "error", "timeout"})
    kind: str
    output: str = ""

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValidationError(
                "step.result.kind", f"must be one of error, success, timeout, got {self.kind!r}"
            )
        check_text("step.result.output", self.output, empty=True)

    @classmethod
    def prechecked(cls, kind: str, output: str) -> StepResult:
        """A result built without ``__post_init__``, for a caller that has established its
        rules by other means (the importer's typed decoding, as for
        :meth:`ExecutionStep.prechecked`)."""
        result = object.__new__(cls)
        setattr_ = object.__setattr__  # (frozen: the dataclass's own __setattr__ refuses)
        setattr_(result, "kind", kind)
        setattr_(result, "output", output)
        return result


@dataclass(frozen=True, slots=True)
class ExecutionStep:
    """One tool call of an episode, with its parameters, result, latency and token count."""

    tool: str
    action: str
    parameters: Mapping[str, JSONValue] = field(default_factory=dict)
    result: StepResult | None = None
    latency_ms: float = 0.0
    tokens: int | None = None

    def __post_init__(self) -> None:
        check_text("step.tool", self.tool, max_len=MAX_NAME_LEN)
        check_text("step.action", self.action, empty=True)
        if not isinstance(self.parameters, Mapping):
            raise ValidationError("step.parameters", "must be a mapping of JSON values")
        _set(self, "parameters", check_json("step.parameters", self.parameters))
        if self.result is not None and not isinstance(self.result, StepResult):
            raise ValidationError("step.result", "must be a StepResult or None")
        _set(self, "latency_ms", check_number("step.latency_ms", self.latency_ms, lo=0.0))
        if self.tokens is not None:
            check_count("step.tokens", self.tokens)

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> ExecutionStep:
        """Rebuild a stored step. Its parameters are not walked again (they were validated when
        written and decode as plain JSON; walking them was most of the cost of reading an
        episode); the other fields' types are checked, and a malformed document raises
        ``TypeError``."""
        r = d.get("result")
        tool, action, params = d["tool"], d["action"], d["parameters"]
        latency, tokens = d["latency_ms"], d.get("tokens")
        if not (
            type(tool) is str
            and type(action) is str
            and type(params) is dict
            and type(latency) in (float, int)
            and (tokens is None or type(tokens) is int)
        ):
            raise TypeError("malformed execution step document")
        result = None
        if r is not None:
            kind, output = r["kind"], r["output"]
            if kind not in StepResult.KINDS or type(output) is not str:
                raise TypeError("malformed step result document")
            result = StepResult.prechecked(kind, output)
        return cls.prechecked(tool, action, params, result, float(latency), tokens)

    @classmethod
    def prechecked(
        cls,
        tool: str,
        action: str,
        parameters: dict[str, JSONValue],
        result: StepResult | None,
        latency_ms: float,
        tokens: int | None,
    ) -> ExecutionStep:
        """A step built without running ``__post_init__``, for a caller that has established
        every rule it checks by other means: :meth:`from_doc` (a stored step) and the importer's
        fast path (checked on the raw JSON; ``tests/test_importer.py`` holds it equal to the
        constructor on random documents)."""
        step = object.__new__(cls)
        setattr_ = object.__setattr__  # (a call less per field than _set: 8 steps an episode)
        setattr_(step, "tool", tool)
        setattr_(step, "action", action)
        setattr_(step, "parameters", parameters)
        setattr_(step, "result", result)
        setattr_(step, "latency_ms", latency_ms)
        setattr_(step, "tokens", tokens)
        return step


@dataclass(frozen=True, slots=True)
class Success:
    verdict: str
    artifacts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_text("outcome.verdict", self.verdict, empty=True)
        _set(self, "artifacts", check_texts("outcome.artifacts", self.artifacts))


@dataclass(frozen=True, slots=True)
class PartialSuccess:
    verdict: str
    completed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_text("outcome.verdict", self.verdict, empty=True)
        _set(self, "completed", check_texts("outcome.completed", self.completed))
        _set(self, "failed", check_texts("outcome.failed", self.failed))


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    error_details: str | None = None

    def __post_init__(self) -> None:
        check_text("outcome.reason", self.reason, empty=True)
        if self.error_details is not None:
            check_text("outcome.error_details", self.error_details, empty=True)


@dataclass(frozen=True, slots=True)
class Abstained:
    reason: str

    def __post_init__(self) -> None:
        check_text("outcome.reason", self.reason, empty=True)


Outcome: TypeAlias = Success | PartialSuccess | Failure | Abstained
_OUTCOME_KINDS: dict[type, str] = {
    Success: "success",
    PartialSuccess: "partial_success",
    Failure: "failure",
    Abstained: "abstained",
}


def _outcome_from_doc(kind: str, d: Mapping[str, Any]) -> Outcome:
    """Rebuild a stored outcome (types checked; see the module docstring)."""
    out: Outcome
    if kind == "success":
        out = _new(Success, verdict=_doc_str(d["verdict"]), artifacts=_doc_strs(d["artifacts"]))
    elif kind == "partial_success":
        out = _new(PartialSuccess, verdict=_doc_str(d["verdict"]),
                   completed=_doc_strs(d["completed"]), failed=_doc_strs(d["failed"]))  # fmt: skip
    elif kind == "failure":
        out = _new(Failure, reason=_doc_str(d["reason"]),
                   error_details=_doc_opt_str(d.get("error_details")))  # fmt: skip
    elif kind == "abstained":
        out = _new(Abstained, reason=_doc_str(d["reason"]))
    else:
        raise ValidationError("outcome.kind", f"unknown outcome kind {kind!r}")
    return out


@dataclass(frozen=True, slots=True)
class Reflection:
    successes: tuple[str, ...] = ()
    improvements: tuple[str, ...] = ()
    insights: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "successes", check_texts("reflection.successes", self.successes))
        _set(self, "improvements", check_texts("reflection.improvements", self.improvements))
        _set(self, "insights", check_texts("reflection.insights", self.insights))


@dataclass(frozen=True, slots=True)
class Episode:
    """One task an agent worked on: what it did (steps), how it went (outcome, reward), and why.

    ``start_time``/``end_time`` are microseconds since the epoch (datetimes are converted);
    ``end_time`` is ``None`` while the episode is open and never before ``start_time``.
    ``metadata`` maps keys (names: letters, digits, ``_ . : /`` and single hyphens) to any text.
    """

    id: str
    task_type: str
    description: str
    context: TaskContext
    start_time: int
    end_time: int | None = None
    steps: tuple[ExecutionStep, ...] = ()
    outcome: Outcome | None = None
    reward: float | None = None
    reflection: Reflection | None = None
    pattern_ids: tuple[str, ...] = ()
    heuristic_ids: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_id("id", self.id)
        check_text("task_type", self.task_type, max_len=MAX_NAME_LEN)
        check_text("description", self.description, empty=True)
        if not isinstance(self.context, TaskContext):
            raise ValidationError("context", "must be a TaskContext")
        _set(self, "start_time", check_micros("start_time", self.start_time))
        if self.end_time is not None:
            _set(self, "end_time", check_micros("end_time", self.end_time))
            if self.end_time < self.start_time:
                raise ValidationError("end_time", "must not be before start_time")
        steps = self.steps
        if isinstance(steps, str | bytes) or not isinstance(steps, Iterable):
            raise ValidationError("steps", "must be a sequence of ExecutionStep")
        steps = tuple(steps)
        for i, s in enumerate(steps):
            if not isinstance(s, ExecutionStep):
                raise ValidationError(f"steps[{i}]", "must be an ExecutionStep")
        _set(self, "steps", steps)
        if self.outcome is not None and type(self.outcome) not in _OUTCOME_KINDS:
            raise ValidationError(
                "outcome", "must be Success, PartialSuccess, Failure, Abstained or None"
            )
        if self.reward is not None:
            _set(self, "reward", check_number("reward", self.reward))
        if self.reflection is not None and not isinstance(self.reflection, Reflection):
            raise ValidationError("reflection", "must be a Reflection or None")
        _set(self, "pattern_ids", check_texts("pattern_ids", self.pattern_ids, max_len=MAX_ID_LEN))
        _set(
            self,
            "heuristic_ids",
            check_texts("heuristic_ids", self.heuristic_ids, max_len=MAX_ID_LEN),
        )
        if not isinstance(self.metadata, Mapping):
            raise ValidationError("metadata", "must be a mapping of str to str")
        meta: dict[str, str] = {}
        for k, v in self.metadata.items():
            check_metadata_key("metadata", k)
            meta[k] = check_text(f"metadata.{k}", v, empty=True)
        _set(self, "metadata", meta)
        _set(self, "tags", check_texts("tags", self.tags, max_len=MAX_NAME_LEN))

    @property
    def outcome_kind(self) -> str | None:
        return None if self.outcome is None else _OUTCOME_KINDS[type(self.outcome)]

    @classmethod
    def from_doc(cls, d: Mapping[str, Any], outcome_kind: str | None) -> Episode:
        """Rebuild a stored episode from its encoded fields, its types and shape checked (its
        texts were validated when it was written; see the module docstring); the outcome's kind
        is kept beside the document (it is an indexed column)."""
        r, o, reward, meta = d.get("reflection"), d.get("outcome"), d["reward"], d["metadata"]
        start, end = _doc_int(d["start_time"]), d["end_time"]
        if end is not None and _doc_int(end) < start:
            raise ValueError("end_time before start_time")
        if reward is not None:
            if type(reward) not in (float, int):
                raise TypeError("malformed reward")
            reward = float(reward)
        if type(meta) is not dict or not all(
            type(k) is str and type(v) is str for k, v in meta.items()
        ):
            raise TypeError("malformed metadata")
        steps = d["steps"]
        if type(steps) is not list:
            raise TypeError("malformed steps")
        return _new(  # type: ignore[no-any-return]
            cls,
            id=_doc_str(d["id"]),
            task_type=_doc_str(d["task_type"]),
            description=_doc_str(d["description"]),
            context=TaskContext.from_doc(d["context"]),
            start_time=start,
            end_time=end,
            steps=tuple([ExecutionStep.from_doc(s) for s in steps]),
            outcome=None
            if o is None or outcome_kind is None
            else _outcome_from_doc(outcome_kind, o),
            reward=reward,
            reflection=None
            if r is None
            else _new(
                Reflection,
                successes=_doc_strs(r["successes"]),
                improvements=_doc_strs(r["improvements"]),
                insights=_doc_strs(r["insights"]),
            ),
            pattern_ids=_doc_strs(d["pattern_ids"]),
            heuristic_ids=_doc_strs(d["heuristic_ids"]),
            metadata=meta,
            tags=_doc_strs(d["tags"]),
        )


# ---------------------------------------------------------------------------------------------
# patterns
# ---------------------------------------------------------------------------------------------


class PatternKind(StrEnum):
    TOOL_SEQUENCE = "tool_sequence"
    DECISION_POINT = "decision_point"
    ERROR_RECOVERY = "error_recovery"
    CONTEXT_PATTERN = "context_pattern"

    @classmethod
    def check(cls, name: str, value: object) -> PatternKind:
        """``value`` as a kind, else :class:`ValidationError` naming ``name``."""
        if isinstance(value, str) and value in cls._value2member_map_:
            return cls(value)
        allowed = ", ".join(k.value for k in cls)
        raise ValidationError(name, f"must be one of {allowed}, got {value!r}")


@dataclass(frozen=True, slots=True)
class ToolSequence:
    tools: tuple[str, ...]
    context: str = ""

    def __post_init__(self) -> None:
        _set(self, "tools", check_texts("body.tools", self.tools, max_len=MAX_NAME_LEN))
        if not self.tools:
            raise ValidationError("body.tools", "must name at least one tool")
        check_text("body.context", self.context, empty=True)


@dataclass(frozen=True, slots=True)
class DecisionPoint:
    condition: str
    action: str

    def __post_init__(self) -> None:
        check_text("body.condition", self.condition)
        check_text("body.action", self.action)


@dataclass(frozen=True, slots=True)
class ErrorRecovery:
    error_type: str
    recovery_steps: tuple[str, ...]

    def __post_init__(self) -> None:
        check_text("body.error_type", self.error_type, max_len=MAX_NAME_LEN)
        _set(self, "recovery_steps", check_texts("body.recovery_steps", self.recovery_steps))


@dataclass(frozen=True, slots=True)
class ContextPattern:
    features: tuple[str, ...]
    recommended_approach: str

    def __post_init__(self) -> None:
        _set(self, "features", check_texts("body.features", self.features))
        check_text("body.recommended_approach", self.recommended_approach)


PatternBody: TypeAlias = ToolSequence | DecisionPoint | ErrorRecovery | ContextPattern
_BODY_KINDS: dict[type, PatternKind] = {
    ToolSequence: PatternKind.TOOL_SEQUENCE,
    DecisionPoint: PatternKind.DECISION_POINT,
    ErrorRecovery: PatternKind.ERROR_RECOVERY,
    ContextPattern: PatternKind.CONTEXT_PATTERN,
}


@dataclass(frozen=True, slots=True)
class Pattern:
    """A learned regularity; its ``kind`` follows from the type of ``body``."""

    id: str
    body: PatternBody
    domain: str
    success_rate: float = 0.0
    effectiveness: float = 0.0
    occurrence_count: int = 0

    def __post_init__(self) -> None:
        check_id("id", self.id)
        if type(self.body) not in _BODY_KINDS:
            raise ValidationError(
                "body", "must be ToolSequence, DecisionPoint, ErrorRecovery or ContextPattern"
            )
        check_text("domain", self.domain, max_len=MAX_NAME_LEN)
        _set(self, "success_rate", check_number("success_rate", self.success_rate, lo=0.0, hi=1.0))
        _set(self, "effectiveness", check_number("effectiveness", self.effectiveness))
        check_count("occurrence_count", self.occurrence_count)

    @property
    def kind(self) -> PatternKind:
        return _BODY_KINDS[type(self.body)]

    @classmethod
    def from_doc(cls, d: Mapping[str, Any], kind: str) -> Pattern:
        """Rebuild a pattern from its encoded fields; ``kind`` (a column) says which body it has."""
        return cls(
            d["id"],
            cls.body_from_doc(kind, d["body"]),
            d["domain"],
            d["success_rate"],
            d["effectiveness"],
            d["occurrence_count"],
        )

    @staticmethod
    def body_from_doc(kind: str, d: Mapping[str, Any]) -> PatternBody:
        k = PatternKind(kind)
        if k is PatternKind.TOOL_SEQUENCE:
            return ToolSequence(d["tools"], d["context"])
        if k is PatternKind.DECISION_POINT:
            return DecisionPoint(d["condition"], d["action"])
        if k is PatternKind.ERROR_RECOVERY:
            return ErrorRecovery(d["error_type"], d["recovery_steps"])
        return ContextPattern(d["features"], d["recommended_approach"])


# ---------------------------------------------------------------------------------------------
# heuristics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    episode_ids: tuple[str, ...] = ()
    success_rate: float = 0.0
    sample_size: int = 0

    def __post_init__(self) -> None:
        _set(
            self,
            "episode_ids",
            check_texts("evidence.episode_ids", self.episode_ids, max_len=MAX_ID_LEN),
        )
        _set(
            self,
            "success_rate",
            check_number("evidence.success_rate", self.success_rate, lo=0.0, hi=1.0),
        )
        check_count("evidence.sample_size", self.sample_size)


@dataclass(frozen=True, slots=True)
class Heuristic:
    """A rule of thumb: when ``condition`` holds, do ``action``; ``confidence`` in [0, 1]."""

    id: str
    condition: str
    action: str
    confidence: float
    evidence: Evidence = field(default_factory=Evidence)

    def __post_init__(self) -> None:
        check_id("id", self.id)
        check_text("condition", self.condition)
        check_text("action", self.action)
        _set(self, "confidence", check_number("confidence", self.confidence, lo=0.0, hi=1.0))
        if not isinstance(self.evidence, Evidence):
            raise ValidationError("evidence", "must be an Evidence")

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> Heuristic:
        e = d["evidence"]
        return cls(
            d["id"],
            d["condition"],
            d["action"],
            d["confidence"],
            Evidence(e["episode_ids"], e["success_rate"], e["sample_size"]),
        )


# ---------------------------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Embedding:
    """A float32 vector of any dimension (1..65536) owned by a record.

    ``vector`` is kept as ``array('f')``: values are rounded to float32 at construction, so what
    is stored is exactly what reads return. Equality compares the float32 values.
    """

    id: str
    owner_id: str
    owner_kind: str
    model: str
    vector: array[float]  # typecode "f"; any sequence of numbers is converted

    def __post_init__(self) -> None:
        check_id("id", self.id)
        check_id("owner_id", self.owner_id)
        check_text("owner_kind", self.owner_kind, max_len=MAX_NAME_LEN)
        check_text("model", self.model, max_len=MAX_NAME_LEN)
        _set(self, "vector", check_vector("vector", self.vector))

    @property
    def dim(self) -> int:
        return len(self.vector)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Embedding):
            return NotImplemented
        return (
            self.id == other.id
            and self.owner_id == other.owner_id
            and self.owner_kind == other.owner_kind
            and self.model == other.model
            and self.vector.tobytes() == other.vector.tobytes()
        )

    __hash__ = None  # type: ignore[assignment]
