"""Fixtures of the original system's data that do not come from tiered's own generator.

* :func:`sample_database`: the rows of ``tests/data/original-sample.jsonl`` (a copy of
  ``shared/seed/original-sample.jsonl``: rows in exactly the original's encoding, every outcome
  variant, ``"null"`` and SQL NULL, every step result, both parameter forms, each envelope codec,
  a checkpoint, the four pattern variants, plain and enveloped embeddings) in a database of the
  original's schema.
* :func:`expected_episode`: what a source row of ``episodes`` must become in tiered, decoded
  here with the standard library from the encoding as ``seed-schema.md`` states it -- a third
  reading, sharing nothing with ``tiered.importer`` (neither its mapping nor its verification).
"""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import lz4.block
import zstandard

from tiered.workload.original import _SCHEMA

SAMPLE = Path(__file__).parent / "data" / "original-sample.jsonl"


def sample_rows() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for line in SAMPLE.read_text().splitlines():
        d = json.loads(line)
        row = {k: bytes.fromhex(v["blob_hex"]) if isinstance(v, dict) else v
               for k, v in d["row"].items()}  # fmt: skip
        out.append((d["table"], row))
    return out


def sample_database(path: Path, extra: list[tuple[str, dict[str, Any]]] = ()) -> Path:  # type: ignore[assignment]
    db = sqlite3.connect(path)
    try:
        db.executescript(_SCHEMA)
        for table, row in [*sample_rows(), *extra]:
            cols = list(row)
            db.execute(
                f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})",
                [row[c] for c in cols],
            )
        db.commit()
    finally:
        db.close()
    return path


def _open(v: Any) -> Any:
    if v is None:
        return None
    if v.startswith("__compressed__:"):
        head, body = v.split("\n", 1)
        algo, size = head.split(":")[1:]
        data = base64.b64decode(body)
        if algo == "gzip":
            v = gzip.decompress(data)
        elif algo == "zstd":
            v = zstandard.ZstdDecompressor().decompress(data, max_output_size=int(size))
        else:
            v = lz4.block.decompress(data, uncompressed_size=int(size))
    return json.loads(v)


def _result(r: Any) -> Any:
    if r is None:
        return None
    if r == "Timeout":
        return ("timeout", "")
    ((tag, body),) = r.items()
    return {"Success": ("success", body.get("output")), "Error": ("error", body.get("message"))}[
        tag
    ]


def expected_episode(row: dict[str, Any], tags: list[str]) -> dict[str, Any]:
    """The tiered fields of an episode row (plain values; see the module docstring)."""
    ctx = _open(row["context"])
    steps = []
    for s in _open(row["steps"]):
        params = json.loads(s["parameters_json"]) if "parameters_json" in s else s["parameters"]
        steps.append((s["tool"], s["action"], params or {}, _result(s["result"]),
                      float(s["latency_ms"]), s["tokens_used"]))  # fmt: skip
    outcome = _open(row["outcome"])
    if outcome is not None:
        ((tag, body),) = outcome.items()
        keep = {
            "Success": ("verdict", "artifacts"),
            "PartialSuccess": ("verdict", "completed", "failed"),
            "Failure": ("reason", "error_details"),
            "Abstained": ("reason",),
        }
        outcome = (tag, {k: body[k] for k in keep[tag]})  # fmt: skip
    reward = _open(row["reward"])
    refl = _open(row["reflection"])
    end = row["end_time"]
    return {
        "id": row["episode_id"],
        "task_type": row["task_type"],
        "description": row["task_description"],
        "context": (
            ctx["domain"],
            ctx["language"],
            ctx["framework"],
            ctx["complexity"].lower(),
            list(ctx["tags"]),
        ),
        "start_time": row["start_time"] * 1_000_000,
        "end_time": None if end is None else end * 1_000_000,
        "steps": steps,
        "outcome": outcome,
        "reward": None if reward is None else reward["total"],
        "reflection": None
        if refl is None
        else (refl["successes"], refl["improvements"], refl["insights"]),
        "pattern_ids": _open(row["patterns"]),
        "heuristic_ids": _open(row["heuristics"]),
        "metadata": _open(row["metadata"]),
        "tags": sorted(tags),
    }


def episode_fields(e: Any) -> dict[str, Any]:
    """The same fields of a tiered :class:`~tiered.model.Episode` as plain values."""
    c = e.context
    o = e.outcome
    outcome = None
    if o is not None:
        tag = type(o).__name__
        outcome = (tag, {k: list(v) if isinstance(v, tuple) else v
                         for k in o.__slots__ for v in [getattr(o, k)]})  # fmt: skip
    r = e.reflection
    return {
        "id": e.id,
        "task_type": e.task_type,
        "description": e.description,
        "context": (c.domain, c.language, c.framework, c.complexity.value, list(c.tags)),
        "start_time": e.start_time,
        "end_time": e.end_time,
        "steps": [
            (
                s.tool,
                s.action,
                dict(s.parameters),
                None if s.result is None else (s.result.kind, s.result.output),
                s.latency_ms,
                s.tokens,
            )
            for s in e.steps
        ],
        "outcome": outcome,
        "reward": e.reward,
        "reflection": None
        if r is None
        else (list(r.successes), list(r.improvements), list(r.insights)),
        "pattern_ids": list(e.pattern_ids),
        "heuristic_ids": list(e.heuristic_ids),
        "metadata": dict(e.metadata),
        "tags": list(e.tags),
    }
