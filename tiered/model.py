"""Domain records of an agent-memory store: episodes, patterns, heuristics, embeddings.

Records are frozen dataclasses validated at construction: bad input raises
:class:`tiered.errors.ValidationError` naming the field, before anything can reach the database.
Timestamps are integer microseconds since the Unix epoch, UTC (see :func:`to_micros`).

The codec in :mod:`tiered.compression` encodes a record's fields directly (msgspec) into a stored
frame; ``from_doc`` rebuilds and re-validates a record from the decoded fields. Queryable fields
(times, task type, domain, language, outcome and pattern kind, success rate, confidence, owner)
are also kept as real columns by :mod:`tiered.db.schema`.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeAlias

from tiered.errors import ValidationError

__all__ = [
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
    "check_text",
    "check_vector",
    "from_micros",
    "to_micros",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

#: Largest timestamp accepted: 9999-12-31T23:59:59.999999Z in microseconds.
MAX_MICROS = 253_402_300_799_999_999
MAX_ID_LEN = 256
MAX_NAME_LEN = 128
MAX_VECTOR_DIM = 65_536
# Metadata keys are names, not data: letters, digits, "_", ".", ":", "/" and single hyphens.
# Quotes, "%", whitespace and "--" are rejected so that a key can never look like SQL or a
# LIKE pattern anywhere it is shown. Values are arbitrary text, always bound as parameters.
_METADATA_KEY = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.:/]|-(?!-))*\Z")


def to_micros(t: datetime) -> int:
    """Microseconds since the epoch for an aware datetime (naive datetimes are rejected)."""
    if t.tzinfo is None:
        raise ValidationError("timestamp", "naive datetime; pass an aware datetime (UTC)")
    delta = t.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    """Aware UTC datetime for microseconds since the epoch."""
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000)


# ---------------------------------------------------------------------------------------------
# validation helpers: each names the field and says what is allowed
# ---------------------------------------------------------------------------------------------


def _encodable(name: str, value: str) -> None:
    """Reject a string UTF-8 cannot encode (a lone surrogate such as ``"\\udc80"``, which
    Python strings may hold but no database, JSON encoder or server accepts)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValidationError(
                name, f"must be valid Unicode text: character {e.start} is a lone surrogate"
            ) from None


def _text(name: str, value: object, *, max_len: int | None = None, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string, got {type(value).__name__}")
    if not empty and not value.strip():
        raise ValidationError(name, "must not be empty")
    if max_len is not None and len(value) > max_len:
        raise ValidationError(name, f"must be at most {max_len} characters, got {len(value)}")
    if "\x00" in value:
        raise ValidationError(name, "must not contain NUL characters")
    _encodable(name, value)
    return value


def check_text(name: str, value: object, *, max_len: int | None = None, empty: bool = False) -> str:
    """``value`` if it is a string a record may hold, else :class:`ValidationError` naming
    ``name``: not empty or blank (unless ``empty``), at most ``max_len`` characters, no NUL,
    encodable as UTF-8. The Store validates query arguments with the same rules as records."""
    return _text(name, value, max_len=max_len, empty=empty)


def check_id(name: str, value: object) -> str:
    """``value`` if it is a valid record id (see :func:`check_text`; at most
    :data:`MAX_ID_LEN` characters), else :class:`ValidationError` naming ``name``."""
    # the hot path of every cached read: plain ASCII ids, checked without the general rules
    if (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LEN
        and value.isascii()
        and "\x00" not in value
        and not value.isspace()
    ):
        return value
    return _text(name, value, max_len=MAX_ID_LEN)


def check_metadata_key(name: str, value: object) -> str:
    """``value`` if it is a valid metadata key, else :class:`ValidationError` naming ``name``.

    Keys are names: 1-128 letters, digits, ``_ . : /`` and single hyphens."""
    if not isinstance(value, str) or len(value) > MAX_NAME_LEN or not _METADATA_KEY.match(value):
        raise ValidationError(
            name,
            f"key {value!r} is not a name: use 1-{MAX_NAME_LEN} letters, digits, "
            "'_', '.', ':', '/' and single hyphens",
        )
    return value


def _opt_text(name: str, value: object, *, max_len: int | None = None) -> str | None:
    return None if value is None else _text(name, value, max_len=max_len)


def _texts(name: str, values: object, *, max_len: int | None = None) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(name, "must be a sequence of strings")
    return tuple(_text(f"{name}[{i}]", v, max_len=max_len) for i, v in enumerate(values))


def _number(name: str, value: object, *, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValidationError(name, "must be finite")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValidationError(name, f"must be within [{lo}, {hi}], got {v}")
    return v


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, f"must be an integer, got {type(value).__name__}")
    if value < 0 or value > 2**62:
        raise ValidationError(name, f"must be within [0, 2**62], got {value}")
    return value


def _micros(name: str, value: object) -> int:
    if isinstance(value, datetime):
        value = to_micros(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, "must be integer microseconds since the epoch or a datetime")
    if not 0 <= value <= MAX_MICROS:
        raise ValidationError(name, f"must be within [0, {MAX_MICROS}] microseconds, got {value}")
    return value


def _json(name: str, value: object, depth: int = 0) -> JSONValue:
    """Validate a JSON-compatible value (finite floats, string keys, bounded nesting)."""
    if depth > 32:
        raise ValidationError(name, "nested deeper than 32 levels")
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, str):
            if "\x00" in value:
                raise ValidationError(name, "must not contain NUL characters")
            _encodable(name, value)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(name, "floats must be finite")
        return value
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError(name, f"keys must be strings, got {type(k).__name__}")
            _encodable(f"{name} key", k)
            out[k] = _json(f"{name}.{k}", v, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_json(f"{name}[{i}]", v, depth + 1) for i, v in enumerate(value)]
    raise ValidationError(name, f"must be JSON-compatible, got {type(value).__name__}")


def _record_id(name: str, value: object) -> str:
    return _text(name, value, max_len=MAX_ID_LEN)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


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
        _set(self, "domain", _text("context.domain", self.domain, max_len=MAX_NAME_LEN))
        _set(self, "language", _opt_text("context.language", self.language, max_len=MAX_NAME_LEN))
        _set(
            self, "framework", _opt_text("context.framework", self.framework, max_len=MAX_NAME_LEN)
        )
        try:
            _set(self, "complexity", Complexity(self.complexity))
        except ValueError:
            allowed = ", ".join(c.value for c in Complexity)
            raise ValidationError(
                "context.complexity", f"must be one of {allowed}, got {self.complexity!r}"
            ) from None
        _set(self, "tags", _texts("context.tags", self.tags, max_len=MAX_NAME_LEN))

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> TaskContext:
        return cls(d["domain"], d.get("language"), d.get("framework"), d["complexity"], d["tags"])


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
        _text("step.result.output", self.output, empty=True)


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
        _text("step.tool", self.tool, max_len=MAX_NAME_LEN)
        _text("step.action", self.action, empty=True)
        if not isinstance(self.parameters, Mapping):
            raise ValidationError("step.parameters", "must be a mapping of JSON values")
        _set(self, "parameters", _json("step.parameters", self.parameters))
        if self.result is not None and not isinstance(self.result, StepResult):
            raise ValidationError("step.result", "must be a StepResult or None")
        _set(self, "latency_ms", _number("step.latency_ms", self.latency_ms, lo=0.0))
        if self.tokens is not None:
            _count("step.tokens", self.tokens)

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> ExecutionStep:
        """Rebuild a stored step. Its parameters are not walked again (they were validated when
        written and decode as plain JSON; walking them was 70 % of reading an episode); the
        other fields' types are checked, and a malformed document raises ``TypeError``."""
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
        step = object.__new__(cls)
        for name, value in (
            ("tool", tool),
            ("action", action),
            ("parameters", params),
            ("result", None if r is None else StepResult(r["kind"], r["output"])),
            ("latency_ms", float(latency)),
            ("tokens", tokens),
        ):
            _set(step, name, value)
        return step


@dataclass(frozen=True, slots=True)
class Success:
    verdict: str
    artifacts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _text("outcome.verdict", self.verdict, empty=True)
        _set(self, "artifacts", _texts("outcome.artifacts", self.artifacts))


@dataclass(frozen=True, slots=True)
class PartialSuccess:
    verdict: str
    completed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _text("outcome.verdict", self.verdict, empty=True)
        _set(self, "completed", _texts("outcome.completed", self.completed))
        _set(self, "failed", _texts("outcome.failed", self.failed))


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    error_details: str | None = None

    def __post_init__(self) -> None:
        _text("outcome.reason", self.reason, empty=True)
        if self.error_details is not None:
            _text("outcome.error_details", self.error_details, empty=True)


@dataclass(frozen=True, slots=True)
class Abstained:
    reason: str

    def __post_init__(self) -> None:
        _text("outcome.reason", self.reason, empty=True)


Outcome: TypeAlias = Success | PartialSuccess | Failure | Abstained
_OUTCOME_KINDS: dict[type, str] = {
    Success: "success",
    PartialSuccess: "partial_success",
    Failure: "failure",
    Abstained: "abstained",
}


def _outcome_from_doc(kind: str, d: Mapping[str, Any]) -> Outcome:
    if kind == "success":
        return Success(d["verdict"], d["artifacts"])
    if kind == "partial_success":
        return PartialSuccess(d["verdict"], d["completed"], d["failed"])
    if kind == "failure":
        return Failure(d["reason"], d.get("error_details"))
    if kind == "abstained":
        return Abstained(d["reason"])
    raise ValidationError("outcome.kind", f"unknown outcome kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Reflection:
    successes: tuple[str, ...] = ()
    improvements: tuple[str, ...] = ()
    insights: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _set(self, "successes", _texts("reflection.successes", self.successes))
        _set(self, "improvements", _texts("reflection.improvements", self.improvements))
        _set(self, "insights", _texts("reflection.insights", self.insights))


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
        _record_id("id", self.id)
        _text("task_type", self.task_type, max_len=MAX_NAME_LEN)
        _text("description", self.description, empty=True)
        if not isinstance(self.context, TaskContext):
            raise ValidationError("context", "must be a TaskContext")
        _set(self, "start_time", _micros("start_time", self.start_time))
        if self.end_time is not None:
            _set(self, "end_time", _micros("end_time", self.end_time))
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
            _set(self, "reward", _number("reward", self.reward))
        if self.reflection is not None and not isinstance(self.reflection, Reflection):
            raise ValidationError("reflection", "must be a Reflection or None")
        _set(self, "pattern_ids", _texts("pattern_ids", self.pattern_ids, max_len=MAX_ID_LEN))
        _set(self, "heuristic_ids", _texts("heuristic_ids", self.heuristic_ids, max_len=MAX_ID_LEN))
        if not isinstance(self.metadata, Mapping):
            raise ValidationError("metadata", "must be a mapping of str to str")
        meta: dict[str, str] = {}
        for k, v in self.metadata.items():
            check_metadata_key("metadata", k)
            meta[k] = _text(f"metadata.{k}", v, empty=True)
        _set(self, "metadata", meta)
        _set(self, "tags", _texts("tags", self.tags, max_len=MAX_NAME_LEN))

    @property
    def outcome_kind(self) -> str | None:
        return None if self.outcome is None else _OUTCOME_KINDS[type(self.outcome)]

    @classmethod
    def from_doc(cls, d: Mapping[str, Any], outcome_kind: str | None) -> Episode:
        """Rebuild (and re-validate) an episode from its encoded fields; the outcome's kind is
        kept beside the document (it is an indexed column)."""
        r = d.get("reflection")
        o = d.get("outcome")
        return cls(
            id=d["id"],
            task_type=d["task_type"],
            description=d["description"],
            context=TaskContext.from_doc(d["context"]),
            start_time=d["start_time"],
            end_time=d["end_time"],
            steps=tuple(ExecutionStep.from_doc(s) for s in d["steps"]),
            outcome=None
            if o is None or outcome_kind is None
            else _outcome_from_doc(outcome_kind, o),
            reward=d["reward"],
            reflection=None
            if r is None
            else Reflection(r["successes"], r["improvements"], r["insights"]),
            pattern_ids=d["pattern_ids"],
            heuristic_ids=d["heuristic_ids"],
            metadata=d["metadata"],
            tags=d["tags"],
        )


# ---------------------------------------------------------------------------------------------
# patterns
# ---------------------------------------------------------------------------------------------


class PatternKind(StrEnum):
    TOOL_SEQUENCE = "tool_sequence"
    DECISION_POINT = "decision_point"
    ERROR_RECOVERY = "error_recovery"
    CONTEXT_PATTERN = "context_pattern"


@dataclass(frozen=True, slots=True)
class ToolSequence:
    tools: tuple[str, ...]
    context: str = ""

    def __post_init__(self) -> None:
        _set(self, "tools", _texts("body.tools", self.tools, max_len=MAX_NAME_LEN))
        if not self.tools:
            raise ValidationError("body.tools", "must name at least one tool")
        _text("body.context", self.context, empty=True)


@dataclass(frozen=True, slots=True)
class DecisionPoint:
    condition: str
    action: str

    def __post_init__(self) -> None:
        _text("body.condition", self.condition)
        _text("body.action", self.action)


@dataclass(frozen=True, slots=True)
class ErrorRecovery:
    error_type: str
    recovery_steps: tuple[str, ...]

    def __post_init__(self) -> None:
        _text("body.error_type", self.error_type, max_len=MAX_NAME_LEN)
        _set(self, "recovery_steps", _texts("body.recovery_steps", self.recovery_steps))


@dataclass(frozen=True, slots=True)
class ContextPattern:
    features: tuple[str, ...]
    recommended_approach: str

    def __post_init__(self) -> None:
        _set(self, "features", _texts("body.features", self.features))
        _text("body.recommended_approach", self.recommended_approach)


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
        _record_id("id", self.id)
        if type(self.body) not in _BODY_KINDS:
            raise ValidationError(
                "body", "must be ToolSequence, DecisionPoint, ErrorRecovery or ContextPattern"
            )
        _text("domain", self.domain, max_len=MAX_NAME_LEN)
        _set(self, "success_rate", _number("success_rate", self.success_rate, lo=0.0, hi=1.0))
        _set(self, "effectiveness", _number("effectiveness", self.effectiveness))
        _count("occurrence_count", self.occurrence_count)

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
            _texts("evidence.episode_ids", self.episode_ids, max_len=MAX_ID_LEN),
        )
        _set(
            self,
            "success_rate",
            _number("evidence.success_rate", self.success_rate, lo=0.0, hi=1.0),
        )
        _count("evidence.sample_size", self.sample_size)


@dataclass(frozen=True, slots=True)
class Heuristic:
    """A rule of thumb: when ``condition`` holds, do ``action``; ``confidence`` in [0, 1]."""

    id: str
    condition: str
    action: str
    confidence: float
    evidence: Evidence = field(default_factory=Evidence)

    def __post_init__(self) -> None:
        _record_id("id", self.id)
        _text("condition", self.condition)
        _text("action", self.action)
        _set(self, "confidence", _number("confidence", self.confidence, lo=0.0, hi=1.0))
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
        _record_id("id", self.id)
        _record_id("owner_id", self.owner_id)
        _text("owner_kind", self.owner_kind, max_len=MAX_NAME_LEN)
        _text("model", self.model, max_len=MAX_NAME_LEN)
        _set(self, "vector", _float32("vector", self.vector))

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


def check_vector(name: str, values: object) -> array[float]:
    """``values`` as a float32 ``array('f')`` (1..65536 finite numbers), else
    :class:`ValidationError` naming ``name``."""
    return _float32(name, values)


def _float32(name: str, values: object) -> array[float]:
    if isinstance(values, array) and values.typecode == "f":
        vec = array("f", values)
    else:
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | Iterable):
            raise ValidationError(name, "must be a sequence of floats")
        try:
            vec = array("f", [float(x) for x in values])
        except (TypeError, ValueError, OverflowError):
            raise ValidationError(name, "must contain only numbers") from None
    if not 1 <= len(vec) <= MAX_VECTOR_DIM:
        raise ValidationError(
            name, f"dimension must be within [1, {MAX_VECTOR_DIM}], got {len(vec)}"
        )
    for x in vec:
        if not math.isfinite(x):
            raise ValidationError(name, "values must be finite float32")
    return vec
