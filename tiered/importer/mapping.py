"""The pure mapping of the original system's rows onto tiered's records.

A source row is a ``{column: value}`` dict as the original wrote it (``seed-schema.md``, "How
values are encoded"): JSON text (or a compressed envelope of it) in TEXT columns, serde's
externally tagged enums, epoch seconds. Each ``map_*`` returns the tiered record, or raises
:class:`CorruptPayload` / :class:`ValidationError` naming what does not map. Values that have no
home in tiered (step times, reward components, checkpoints, ...) are not looked at here: the
verification (:mod:`tiered.importer.verify`) finds them in the source and counts them by name.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Sequence
from typing import Any

import msgspec

from tiered.errors import CorruptPayload, ValidationError
from tiered.model import (
    MAX_NAME_LEN,
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
    Outcome,
    PartialSuccess,
    Pattern,
    PatternBody,
    Reflection,
    StepResult,
    Success,
    TaskContext,
    ToolSequence,
)
from tiered.original import ENVELOPE, DebugStruct, decode_envelope, opened, parse_debug
from tiered.validation import check_json

__all__ = [
    "effectiveness_score",
    "map_embedding",
    "map_episode",
    "map_heuristic",
    "map_pattern",
    "map_steps",
]

_DECODE = msgspec.json.Decoder().decode


def _text(v: Any) -> str | bytes:
    """A TEXT column's content, a compressed envelope opened."""
    if isinstance(v, str):
        return opened(v)
    if not isinstance(v, bytes):
        raise CorruptPayload(f"a JSON column holds a {type(v).__name__}")
    return v


def _json(v: Any) -> Any:
    """A column's JSON value; ``None`` for SQL NULL and JSON ``null`` (both "absent")."""
    if v is None:
        return None
    try:
        # msgspec: faster than json.loads here, and it refuses what tiered's records refuse anyway
        # (NaN and Infinity, lone UTF-16 surrogates)
        return _DECODE(_text(v))
    except msgspec.DecodeError as e:
        raise CorruptPayload(f"not JSON: {e}") from e


def _variant(name: str, v: Any) -> tuple[str, Any]:
    """An externally tagged enum value: ``("Timeout", None)`` for a unit variant, ``(name,
    fields)`` for ``{"Name": {...}}``."""
    if isinstance(v, str):
        return v, None
    if isinstance(v, dict) and len(v) == 1:
        ((tag, body),) = v.items()
        if isinstance(body, dict):
            return str(tag), body
    raise CorruptPayload(f"{name}: not an externally tagged enum value: {str(v)[:80]}")


# -- episodes ---------------------------------------------------------------------------------


def _outcome(v: Any) -> Outcome | None:
    if v is None:
        return None
    tag, d = _variant("outcome", v)
    if d is None:
        raise CorruptPayload(f"outcome: unknown variant {tag!r}")
    if tag == "Success":
        return Success(d["verdict"], tuple(d.get("artifacts") or ()))
    if tag == "PartialSuccess":
        return PartialSuccess(
            d["verdict"], tuple(d.get("completed") or ()), tuple(d.get("failed") or ())
        )
    if tag == "Failure":
        return Failure(d["reason"], d.get("error_details"))
    if tag == "Abstained":
        return Abstained(d["reason"])
    raise CorruptPayload(f"outcome: unknown variant {tag!r}")


_TIMEOUT = StepResult("timeout")
#: the ExecutionResult variants with a field: tiered's result kind, and the field holding its text
_RESULT_FIELDS = {"Success": ("success", "output"), "Error": ("error", "message")}


def _result(v: Any) -> StepResult | None:
    if v is None:
        return None
    tag, d = _variant("step.result", v)
    if tag == "Timeout" and d is None:
        return _TIMEOUT
    field = _RESULT_FIELDS.get(tag)
    if field is not None and d is not None:
        return StepResult(field[0], d[field[1]])
    raise CorruptPayload(f"step.result: unknown variant {tag!r}")


def _parameters(d: Any) -> Any:
    """A step's parameters: the JSON in ``parameters_json`` (a string), or the older
    ``parameters`` object. JSON ``null`` (what the original's ``parameters()`` reads for it) is
    no parameters; text that is not JSON, or JSON that is not an object, does not map."""
    if "parameters_json" in d:
        text = d["parameters_json"]
        if not isinstance(text, str):
            raise CorruptPayload("step.parameters_json: not a string")
        try:
            params = _DECODE(text)
        except msgspec.DecodeError as e:
            raise CorruptPayload(f"step.parameters_json: not JSON: {e}") from e
    else:
        params = d.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise CorruptPayload(f"step parameters: a JSON {type(params).__name__}, not an object")
    return params


class _StepDoc(msgspec.Struct):
    """A step as the original writes it, typed (unknown fields are ignored: they are the
    verification's to count)."""

    tool: str
    action: str
    latency_ms: int | float  # required, as in the original (a u64 without a serde default)
    parameters_json: str | None = None
    parameters: dict[str, Any] | None = None
    result: dict[str, dict[str, str]] | str | None = None
    tokens_used: int | None = None


_DECODE_STEPS = msgspec.json.Decoder(list[_StepDoc]).decode


def _typed_step(d: _StepDoc) -> ExecutionStep:
    """The step of a typed document: built without the model's checks where the cheap ones
    below establish them (decoded by msgspec from text without a NUL escape, every string is
    valid Unicode without NUL and every number finite), else by the constructor, which names
    the problem."""
    if d.parameters_json is not None:
        params = _parameters({"parameters_json": d.parameters_json})
    else:
        params = d.parameters or {}
    r = d.result
    if r is None:
        result = None
    elif r == "Timeout":
        result = _TIMEOUT
    elif len(r) == 1 and type(r) is dict:
        # a typed document's strings are valid text: the result needs no further check
        ((tag, body),) = r.items()
        field = _RESULT_FIELDS.get(tag)
        if field is None or len(body) != 1 or field[1] not in body:
            result = _result(r)  # names what is wrong
        else:
            result = StepResult.prechecked(field[0], body[field[1]])
    else:
        result = _result(r)
    tool, latency, tokens = d.tool, d.latency_ms, d.tokens_used
    if (
        0 < len(tool) <= MAX_NAME_LEN
        and not tool.isspace()
        and latency >= 0
        and (tokens is None or 0 <= tokens <= 2**62)
    ):
        for v in params.values():
            if type(v) is dict or type(v) is list:
                params = check_json("step.parameters", params)
                break
        return ExecutionStep.prechecked(tool, d.action, params, result, float(latency), tokens)
    return ExecutionStep(tool, d.action, params, result, float(latency), tokens)


def _step(d: Any) -> ExecutionStep:
    if not isinstance(d, dict):
        raise CorruptPayload("step: not a JSON object")
    latency = d.get("latency_ms")
    return ExecutionStep(
        d["tool"],
        d["action"],
        _parameters(d),
        _result(d.get("result")),
        float(latency) if isinstance(latency, int | float) else latency,  # type: ignore[arg-type]
        d.get("tokens_used"),
    )


def map_steps(v: Any) -> tuple[ExecutionStep, ...]:
    """The steps of a ``steps`` column: typed decoding where the text allows it (faster),
    else the general decoding and the constructor (same steps, same errors; held equal by
    ``tests/test_importer.py``)."""
    if v is None:
        return ()
    text = _text(v)
    nul = "\\u0000" in text if isinstance(text, str) else b"\\u0000" in text
    if not nul:
        try:
            return tuple(_typed_step(d) for d in _DECODE_STEPS(text))
        except msgspec.ValidationError:
            pass  # a shape the typed decoding does not take: the general path names it
        except msgspec.DecodeError as e:
            raise CorruptPayload(f"steps: not JSON: {e}") from e
    docs = _json(text)
    if not isinstance(docs, list):
        raise CorruptPayload("steps: not a JSON array")
    return tuple(_step(d) for d in docs)


def _complexity(v: Any) -> Complexity:
    if v is None:
        return Complexity.MODERATE  # serde's default for the field in older releases
    try:
        return Complexity(str(v).lower())
    except ValueError:
        raise CorruptPayload(f"context.complexity: unknown variant {v!r}") from None


def map_episode(row: dict[str, Any], tags: Sequence[str] = ()) -> Episode:
    """The tiered episode of a source row of ``episodes`` (its tags from ``episode_tags``)."""
    ctx = _json(row["context"]) or {}
    if not isinstance(ctx, dict):
        raise CorruptPayload("context: not a JSON object")
    reward = _json(row.get("reward"))
    if reward is not None:
        if not isinstance(reward, dict) or not isinstance(reward.get("total"), int | float):
            raise CorruptPayload("reward: no numeric total")
        reward = float(reward["total"])
    refl = _json(row.get("reflection"))
    if refl is not None and not isinstance(refl, dict):
        raise CorruptPayload("reflection: not a JSON object")
    meta = _json(row.get("metadata")) or {}
    if not isinstance(meta, dict):
        raise CorruptPayload("metadata: not a JSON object")
    return Episode(
        id=row["episode_id"],
        task_type=row["task_type"],
        description=row["task_description"],
        context=TaskContext(
            ctx.get("domain") or row["domain"],
            ctx["language"] if "language" in ctx else row.get("language"),
            ctx.get("framework"),
            _complexity(ctx.get("complexity")),
            tuple(ctx.get("tags") or ()),
        ),
        start_time=int(row["start_time"]) * 1_000_000,
        end_time=None if row.get("end_time") is None else int(row["end_time"]) * 1_000_000,
        steps=map_steps(row["steps"]),
        outcome=_outcome(_json(row.get("outcome"))),
        reward=reward,
        reflection=None
        if refl is None
        else Reflection(
            tuple(refl.get("successes") or ()),
            tuple(refl.get("improvements") or ()),
            tuple(refl.get("insights") or ()),
        ),
        pattern_ids=tuple(_json(row.get("patterns")) or ()),
        heuristic_ids=tuple(_json(row.get("heuristics")) or ()),
        metadata=meta,
        tags=tuple(sorted(tags)),
    )


# -- patterns ---------------------------------------------------------------------------------


def _num(v: Any, name: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise CorruptPayload(f"{name}: not a number: {v!r}") from None
    if not math.isfinite(x):
        raise CorruptPayload(f"{name}: not finite: {v!r}")
    return x


def effectiveness_score(eff: Any) -> float:
    """The original's ``PatternEffectiveness::effectiveness_score()`` of a Debug-dumped
    ``PatternEffectiveness``: success rate when applied (0.5 untested) x (1 + ln(times
    applied) clamped to [0, 3] / 3) x max(1 + average reward delta, 0). 0.0 when absent."""
    if not isinstance(eff, DebugStruct):
        return 0.0
    f = eff.fields
    applied = _num(f.get("times_applied", 0), "effectiveness.times_applied")
    won = _num(f.get("success_when_applied", 0), "effectiveness.success_when_applied")
    delta = _num(f.get("avg_reward_delta", 0), "effectiveness.avg_reward_delta")
    rate = 0.5 if applied == 0 else won / applied
    weight = min(max(math.log(applied), 0.0), 3.0) if applied > 0 else 0.0
    return rate * (1 + weight / 3) * max(1 + delta, 0.0)


def _strings(v: Any, name: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise CorruptPayload(f"{name}: not a list of strings")
    return tuple(v)


def _string(v: Any, name: str) -> str:
    if not isinstance(v, str):
        raise CorruptPayload(f"{name}: not a string")
    return v


def map_pattern(row: dict[str, Any]) -> Pattern:
    """The tiered pattern of a source row of ``patterns``: its kind and body from the Debug
    dump in ``pattern_type``; domain, success rate and occurrence count from their columns
    (the dump's context domain where the column is empty); effectiveness is the original's
    effectiveness score of the dumped counters."""
    dump = parse_debug(str(row["pattern_type"]))
    if not isinstance(dump, DebugStruct):
        raise CorruptPayload("pattern_type: not a Debug dump of a pattern")
    kind, f = dump.name, dump.fields
    body: PatternBody
    if kind == "ToolSequence":
        body = ToolSequence(_strings(f.get("tools"), "tools"))
    elif kind == "DecisionPoint":
        body = DecisionPoint(
            _string(f.get("condition"), "condition"), _string(f.get("action"), "action")
        )
    elif kind == "ErrorRecovery":
        body = ErrorRecovery(
            _string(f.get("error_type"), "error_type"),
            _strings(f.get("recovery_steps"), "recovery_steps"),
        )
    elif kind == "ContextPattern":
        body = ContextPattern(
            _strings(f.get("context_features"), "context_features"),
            _string(f.get("recommended_approach"), "recommended_approach"),
        )
    else:
        raise CorruptPayload(f"pattern_type: unknown pattern variant {kind!r}")
    domain = row.get("context_domain")
    if not domain:
        ctx = f.get("context")
        domain = ctx.fields.get("domain") if isinstance(ctx, DebugStruct) else None
    if not domain:
        raise CorruptPayload("pattern: no domain (context_domain and the dump's context)")
    return Pattern(
        row["pattern_id"],
        body,
        str(domain),
        _num(row["success_rate"], "success_rate"),
        effectiveness_score(f.get("effectiveness")),
        int(row.get("occurrence_count") or 0),
    )


# -- heuristics and embeddings -----------------------------------------------------------------


def map_heuristic(row: dict[str, Any]) -> Heuristic:
    ev = _json(row["evidence"]) or {}
    if not isinstance(ev, dict):
        raise CorruptPayload("evidence: not a JSON object")
    return Heuristic(
        row["heuristic_id"],
        row["condition_text"],
        row["action_text"],
        _num(row["confidence"], "confidence"),
        Evidence(
            tuple(ev.get("episode_ids") or ()),
            _num(ev.get("success_rate") or 0.0, "evidence.success_rate"),
            int(ev.get("sample_size") or 0),
        ),
    )


def _f32(raw: bytes) -> array[float]:
    vec = array("f")
    vec.frombytes(raw)
    if sys.byteorder == "big":
        vec.byteswap()  # the original writes little-endian f32
    return vec


def map_embedding(row: dict[str, Any]) -> Embedding:
    """The tiered embedding of a source row of ``embeddings`` (or ``embeddings_<dim>``): the
    vector from ``embedding_data`` -- a JSON float array, or an envelope around the raw
    little-endian f32 bytes -- else from the native ``embedding_vector`` column."""
    data, blob = row.get("embedding_data"), row.get("embedding_vector")
    vec: Any
    if isinstance(data, str) and data.startswith(ENVELOPE):
        raw = decode_envelope(data)
        dimension = row.get("dimension")
        if len(raw) % 4 == 0 and (dimension is None or len(raw) == 4 * int(dimension)):
            vec = _f32(raw)  # what the original writes: the raw f32 bytes
        elif raw[:1] == b"[":  # JSON text in an envelope (not the original's, but plain)
            vec = _json(raw)
        else:
            raise CorruptPayload(f"enveloped vector of {len(raw)} bytes: not {dimension} f32s")
    elif data is not None and data != "":
        vec = _json(data)
    elif isinstance(blob, bytes):
        vec = _f32(blob[: len(blob) - len(blob) % 4])
    else:
        raise CorruptPayload("no vector: neither embedding_data nor the native column")
    if not isinstance(vec, list | array):
        raise CorruptPayload("embedding_data: not a JSON array of numbers")
    dim = int(row.get("dimension") or len(vec))
    if len(vec) != dim:
        raise CorruptPayload(f"vector of {len(vec)} floats, the row says dimension {dim}")
    return Embedding(
        row["embedding_id"],
        row["item_id"],
        row["item_type"],
        row["model"],
        vec,  # type: ignore[arg-type]
    )


def unmappable() -> tuple[type[Exception], ...]:
    """What a source row that does not map raises (reported as an issue naming the row)."""
    return (CorruptPayload, ValidationError, KeyError, TypeError, ValueError)
