"""Verification of an import against its source, by a path that shares nothing with the mapping.

For every record, the source row is decoded here on its own (the standard library's ``json``, the
envelope opened by this module's own code) into the original's field names, and the record read
back from the destination is written out the other way: into the original's JSON shapes
(externally tagged enums, ``"Moderate"``, epoch seconds, a step's parameters as the object its
``parameters_json`` holds). The two are compared leaf by leaf:

* a source value the record holds differently is a **difference**;
* a source value the record does not hold is **dropped**, counted by the name of its field, if
  the field is one tiered has no home for (:data:`NO_HOME`: step times, reward components,
  checkpoints, ...); any other missing value is a difference. Nulls and empty containers are
  nothing to lose.

So a mapping rule that goes wrong (an error read as a success, an output lost, a field left
out) shows as a difference naming the record and the field.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import zstandard

from tiered.model import Embedding, Episode, Heuristic, Pattern

__all__ = ["NO_HOME", "Check", "check_record", "source_document"]

#: fields of the original with no home in tiered, per table (a leaf under one is "dropped")
NO_HOME: dict[str, tuple[str, ...]] = {
    "episodes": (
        "steps[].step_number",
        "steps[].timestamp",
        "steps[].metadata",
        "outcome.Abstained.stopped_at_step",
        "outcome.Abstained.infeasibility_signals",
        "reward.base",
        "reward.efficiency",
        "reward.complexity_bonus",
        "reward.quality_multiplier",
        "reward.learning_bonus",
        "reward.abstention_score",
        "reward.raw_reward",
        "reward.normalized_reward",
        "reward.decayed_reward",
        "reward.effective_reward",
        "reflection.generated_at",
        "checkpoints",
        "created_at",
        "archived_at",
    ),
    "patterns": (
        "pattern_type.context",
        "pattern_type.avg_latency",
        "pattern_type.outcome_stats",
        "pattern_type.evidence",
        "pattern_type.effectiveness",  # held as its effectiveness score, checked
        "pattern_data",
        "context_language",
        "context_tags",
        "created_at",
        "updated_at",
    ),
    "heuristics": ("created_at", "updated_at"),
    "embeddings": ("created_at",),
}

_VARIANT_FIELDS = {
    "ToolSequence": ("tools",),
    "DecisionPoint": ("condition", "action"),
    "ErrorRecovery": ("error_type", "recovery_steps"),
    "ContextPattern": ("context_features", "recommended_approach"),
}
#: every field of each variant in the original's Rust definition (patterns/types.rs)
_ALL_FIELDS = {
    "ToolSequence": ("id", "tools", "context", "success_rate", "avg_latency",
                     "occurrence_count", "effectiveness"),
    "DecisionPoint": ("id", "condition", "action", "outcome_stats", "context", "effectiveness"),
    "ErrorRecovery": ("id", "error_type", "recovery_steps", "success_rate", "context",
                      "effectiveness"),
    "ContextPattern": ("id", "context_features", "recommended_approach", "evidence",
                       "success_rate", "effectiveness"),
}  # fmt: skip


#: fields of the dump that are also columns (imported and checked from the column)
_IN_COLUMNS = ("id", "success_rate", "occurrence_count")


@dataclass
class Check:
    """What the comparisons found: differences (named) and dropped fields (counted by name)."""

    checked: int = 0
    differences: list[str] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


# -- the source, decoded on its own ----------------------------------------------------------


def _unwrap(text: Any) -> Any:
    """The bytes an envelope stands for (this module's own reading of it), else ``text``."""
    if not isinstance(text, str) or not text.startswith("__compressed__:"):
        return text
    head, _, body = text.partition("\n")
    _, algo, size = head.split(":")
    packed = base64.b64decode(body)
    if algo == "gzip":
        return gzip.decompress(packed)
    if algo == "zstd":
        return zstandard.ZstdDecompressor().decompress(packed, max_output_size=int(size) or 1)
    import lz4.block

    return lz4.block.decompress(packed, uncompressed_size=int(size))


def _loads(v: Any) -> Any:
    if v is None:
        return None
    raw = _unwrap(v)
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _f32_bytes(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def source_document(table: str, row: dict[str, Any], tags: list[str] | None = None) -> Any:
    """The source row with its JSON decoded (envelopes opened), in the original's names."""
    base = table if not table.startswith("embeddings") else "embeddings"
    if base == "episodes":
        doc = dict(row)
        for c in ("context", "steps", "outcome", "reward", "reflection", "patterns",
                  "heuristics", "checkpoints", "metadata"):  # fmt: skip
            doc[c] = _loads(row.get(c))
        for s in doc["steps"] or ():
            if "parameters_json" in s:
                try:
                    s["parameters"] = json.loads(s.pop("parameters_json"))
                except ValueError:
                    s["parameters"] = "<not JSON>"
        doc["tags"] = sorted(tags or ())
        return doc
    if base == "heuristics":
        return {**row, "evidence": _loads(row["evidence"])}
    if base == "embeddings":
        doc = dict(row)
        raw = _unwrap(row.get("embedding_data"))
        if isinstance(raw, bytes) and len(raw) == 4 * int(row.get("dimension") or -1):
            doc["embedding_data"] = raw  # the vector's raw f32 bytes
        elif raw is not None:
            doc["embedding_data"] = _f32_bytes(json.loads(raw))
        return doc
    return dict(row)  # patterns: the dump is checked as text


# -- the record, written back into the original's shapes --------------------------------------


def _episode_doc(e: Episode) -> dict[str, Any]:
    c = e.context

    def result(r: Any) -> Any:
        if r is None:
            return None
        if r.kind == "timeout":
            return "Timeout" if not r.output else {"Timeout": r.output}
        return (
            {"Success": {"output": r.output}}
            if r.kind == "success"
            else {"Error": {"message": r.output}}
        )

    o = e.outcome
    outcome: Any = None
    if o is not None:
        name = type(o).__name__
        outcome = {name: {k: list(v) if isinstance(v, tuple) else v
                          for k in o.__slots__ for v in [getattr(o, k)]}}  # fmt: skip
    r = e.reflection
    return {
        "episode_id": e.id,
        "task_type": e.task_type,
        "task_description": e.description,
        "context": {
            "language": c.language,
            "framework": c.framework,
            "complexity": c.complexity.value.capitalize(),
            "domain": c.domain,
            "tags": list(c.tags),
        },
        "steps": [
            {
                "tool": s.tool,
                "action": s.action,
                "parameters": dict(s.parameters),
                "result": result(s.result),
                "latency_ms": s.latency_ms,
                "tokens_used": s.tokens,
            }
            for s in e.steps
        ],
        "outcome": outcome,
        "reward": None if e.reward is None else {"total": e.reward},
        "reflection": None
        if r is None
        else {k: list(getattr(r, k)) for k in ("successes", "improvements", "insights")},
        "patterns": list(e.pattern_ids),
        "heuristics": list(e.heuristic_ids),
        "metadata": dict(e.metadata),
        "start_time": e.start_time / 1_000_000,
        "end_time": None if e.end_time is None else e.end_time / 1_000_000,
        "domain": c.domain,
        "language": c.language,
        "tags": sorted(e.tags),
    }


def _heuristic_doc(h: Heuristic) -> dict[str, Any]:
    ev = h.evidence
    return {
        "heuristic_id": h.id,
        "condition_text": h.condition,
        "action_text": h.action,
        "confidence": h.confidence,
        "evidence": {
            "episode_ids": list(ev.episode_ids),
            "success_rate": ev.success_rate,
            "sample_size": ev.sample_size,
        },
    }


def _embedding_doc(m: Embedding) -> dict[str, Any]:
    return {
        "embedding_id": m.id,
        "item_id": m.owner_id,
        "item_type": m.owner_kind,
        "model": m.model,
        "dimension": len(m.vector),
    }


# -- leaf-by-leaf comparison --------------------------------------------------------------------


def _leaves(v: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(v, dict) and v:
        for k, x in v.items():
            _leaves(x, f"{path}.{k}" if path else str(k), out)
    elif isinstance(v, list) and v:
        for i, x in enumerate(v):
            _leaves(x, f"{path}[{i}]", out)
    else:
        out[path] = v


_INDEX = re.compile(r"\[\d+\]")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (math.isclose(a, b, rel_tol=1e-6) and isinstance(a, float))
    return bool(a == b and type(a) is type(b))


def _empty(v: Any) -> bool:
    return v is None or v == [] or v == {}


def compare(
    table: str, key: str, source: dict[str, Any], record: dict[str, Any], out: Check
) -> None:
    """Compare ``source`` with ``record`` leaf by leaf into ``out`` (see the module docstring)."""
    want: dict[str, Any] = {}
    got: dict[str, Any] = {}
    _leaves(source, "", want)
    _leaves(record, "", got)
    no_home = NO_HOME[table]
    dropped: set[str] = set()
    for path, v in want.items():
        if path in got:
            if not _same(v, got[path]) and not (_empty(v) and _empty(got[path])):
                out.differences.append(
                    f"{table} {key}: {path} is {_show(got[path])} in tiered, "
                    f"{_show(v)} in the source"
                )
            continue
        name = _INDEX.sub("[]", path)
        home = next((h for h in no_home if name == h or name.startswith(h + ".")
                     or name.startswith(h + "[")), None)  # fmt: skip
        if home is not None:
            if not _empty(v) and not (home == "steps[].step_number" and _is_position(path, v)):
                dropped.add(f"{table}.{home}")
        elif not _empty(v) and not any(p.startswith(path + ".") or p.startswith(path + "[")
                                       for p in got):  # fmt: skip
            out.differences.append(f"{table} {key}: {path} ({_show(v)}) is not in tiered")
    for path, v in got.items():
        if path not in want and not _empty(v):
            out.differences.append(f"{table} {key}: {path} ({_show(v)}) is not in the source")
    out.dropped.update(dropped)


def _is_position(path: str, v: Any) -> bool:
    m = re.match(r"steps\[(\d+)\]", path)
    return m is not None and v == int(m.group(1)) + 1


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _debug_str(s: str) -> str:
    """``s`` as Rust's Debug prints it (escapes of quotes, backslashes, control characters)."""
    out = json.dumps(s, ensure_ascii=False)  # same escapes for " \\ \n \r \t
    return re.sub(r"\\u00([0-9a-f]{2})", lambda m: "\\u{" + m.group(1).lstrip("0") + "}", out)


def _check_pattern(row: dict[str, Any], p: Pattern, out: Check) -> None:
    """The pattern against its row: the dump names the same variant and id and holds each of
    the body's fields as Rust prints them; columns equal; the effectiveness score recomputed
    from the dumped counters; the rest counted as dropped by name."""
    key, dump = p.id, str(row["pattern_type"])
    variant = dump.split(" ", 1)[0]
    kind = {"ToolSequence": "tool_sequence", "DecisionPoint": "decision_point",
            "ErrorRecovery": "error_recovery", "ContextPattern": "context_pattern"}  # fmt: skip
    if kind.get(variant) != p.kind.value or not dump.startswith(f"{variant} {{ id: {key},"):
        out.differences.append(f"patterns {key}: kind {p.kind.value}, the source dumps {variant}")
        return
    values = {
        "tools": getattr(p.body, "tools", None),
        "condition": getattr(p.body, "condition", None),
        "action": getattr(p.body, "action", None),
        "error_type": getattr(p.body, "error_type", None),
        "recovery_steps": getattr(p.body, "recovery_steps", None),
        "context_features": getattr(p.body, "features", None),
        "recommended_approach": getattr(p.body, "recommended_approach", None),
    }
    for name in _VARIANT_FIELDS[variant]:
        v = values[name]
        text = (
            _debug_str(v) if isinstance(v, str) else "[" + ", ".join(map(_debug_str, v or ())) + "]"
        )
        if f" {name}: {text}," not in dump and f" {name}: {text} }}" not in dump:
            out.differences.append(f"patterns {key}: {name} {text[:60]} is not in the source dump")
    for c, v in (("success_rate", p.success_rate), ("occurrence_count", p.occurrence_count)):
        if not _same(float(row[c] or 0), float(v)):
            out.differences.append(f"patterns {key}: {c} is {v} in tiered, {row[c]} in the source")
    domain = row.get("context_domain")
    if domain and domain != p.domain:
        out.differences.append(f"patterns {key}: domain is {p.domain!r}, source {domain!r}")
    counters = dict(re.findall(r"(times_applied|success_when_applied|avg_reward_delta): ([-\d.e]+)",
                               dump[dump.rfind("PatternEffectiveness"):]))  # fmt: skip
    if counters:
        applied = float(counters["times_applied"])
        rate = 0.5 if applied == 0 else float(counters["success_when_applied"]) / applied
        weight = min(3.0, max(0.0, math.log(applied))) if applied else 0.0
        score = rate * (1 + weight / 3) * max(0.0, 1 + float(counters["avg_reward_delta"]))
        if not math.isclose(score, p.effectiveness, rel_tol=1e-9, abs_tol=1e-12):
            out.differences.append(
                f"patterns {key}: effectiveness {p.effectiveness}, source {score}"
            )
    held = set(_VARIANT_FIELDS[variant])
    out.dropped.update(f"patterns.pattern_type.{f}" for f in _ALL_FIELDS[variant]
                       if f not in held and f not in _IN_COLUMNS and f" {f}: " in dump)  # fmt: skip
    for c in ("pattern_data", "context_language", "context_tags", "created_at", "updated_at"):
        if not _empty(row.get(c)) and row.get(c) != "[]":
            out.dropped[f"patterns.{c}"] += 1


def check_record(table: str, row: dict[str, Any], record: Any, tags: list[str] | None,
                 out: Check) -> None:  # fmt: skip
    """Compare one record read back from tiered (``None``: missing) with its source row."""
    base = table if not table.startswith("embeddings") else "embeddings"
    key = str(row.get(f"{base[:-1]}_id"))
    out.checked += 1
    if record is None:
        out.differences.append(f"{table} {key}: missing from the destination")
        return
    if base == "patterns":
        _check_pattern(row, record, out)
        return
    source = source_document(table, row, tags)
    if base == "episodes":
        doc = _episode_doc(record)
    elif base == "heuristics":
        doc = _heuristic_doc(record)
    else:
        doc = _embedding_doc(record)
        vector = _f32_bytes(list(record.vector))
        # each form of the vector the source holds (JSON or enveloped f32 bytes, the native
        # column) must be tiered's vector, compared whole
        for c in ("embedding_data", "embedding_vector"):
            v = source.pop(c, None)
            if isinstance(v, bytes) and v != vector:
                out.differences.append(f"{table} {key}: {c} holds another vector than tiered's")
    compare(base, key, source, doc, out)
