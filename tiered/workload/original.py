"""A realistic database of the original system in its exact encoding, written by ``sqlite3``.

Teams that run the original agent-memory system have their data in its libSQL layout, every JSON
column written by ``serde_json::to_string`` of a Rust value with serde's default representation
(``shared/seed/seed-schema.md``, "How values are encoded"): externally tagged enums
(``{"Success":{"verdict":..}}``, the bare string ``"Timeout"``), ``"Moderate"`` complexities,
steps whose parameters are a *string* holding JSON (``parameters_json``; older releases: an object
under ``parameters``), chrono's RFC 3339 step times with 0 to 9 fractional digits, rewards with and
without the newer four fields, checkpoints under their aliases, a pattern's "type" that is Rust's
``Debug`` dump of the whole pattern, ``pattern_data`` of ``{description, context, heuristic}``,
embeddings as a JSON float array or an envelope around their raw little-endian f32 bytes beside
the native vector column, the ``__compressed__:<lz4|zstd|gzip>:<size>`` envelope (lz4: a bare
block), JSON ``"null"`` beside SQL NULL, orphans (foreign keys off) and duplicate FTS rows
(``INSERT OR REPLACE``).

:func:`write_original_database` makes one to test and benchmark tiered's import and analysis on:
weeks of history with a daily and weekly rhythm, the content of
:func:`tiered.workload.generate_episodes` written in that encoding. It is written by ``sqlite3``
and ``json`` alone, never through tiered's mapping.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
import struct
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tiered.errors import ConfigError
from tiered.model import Episode, Pattern
from tiered.original import Envelope, envelope, format_rfc3339, rust_debug_str
from tiered.workload.records import generate_heuristics, generate_patterns, iter_episodes

__all__ = ["ORIGINAL_TABLES", "OriginalDatabase", "to_json", "write_original_database"]

#: the tables whose presence identifies the original layout (see tiered.analysis.sources)
ORIGINAL_TABLES = ("episodes", "patterns", "heuristics", "embeddings")
CODECS: tuple[Envelope, ...] = ("lz4", "zstd", "gzip")

_SCHEMA = """
CREATE TABLE episodes (
    episode_id TEXT PRIMARY KEY,
    task_type TEXT NOT NULL,
    task_description TEXT NOT NULL,
    context TEXT NOT NULL,
    steps TEXT NOT NULL,
    outcome TEXT,
    reward TEXT,
    reflection TEXT,
    patterns TEXT NOT NULL DEFAULT '[]',
    heuristics TEXT NOT NULL DEFAULT '[]',
    checkpoints TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    start_time INTEGER NOT NULL,
    end_time INTEGER,
    domain TEXT NOT NULL,
    language TEXT,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
    archived_at INTEGER
);
CREATE INDEX idx_episodes_task_type ON episodes(task_type);
CREATE INDEX idx_episodes_start_time ON episodes(start_time DESC);
CREATE INDEX idx_episodes_domain ON episodes(domain);
CREATE INDEX idx_episodes_archived ON episodes(archived_at);
CREATE TABLE patterns (
    pattern_id TEXT PRIMARY KEY,
    pattern_type TEXT NOT NULL,
    pattern_data TEXT NOT NULL,
    success_rate REAL NOT NULL,
    context_domain TEXT,
    context_language TEXT,
    context_tags TEXT,
    occurrence_count INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
    updated_at INTEGER NOT NULL DEFAULT (strftime('%s','now'))
);
CREATE INDEX idx_patterns_context ON patterns(context_domain, context_language);
CREATE TABLE heuristics (
    heuristic_id TEXT PRIMARY KEY,
    condition_text TEXT NOT NULL,
    action_text TEXT NOT NULL,
    confidence REAL NOT NULL,
    evidence TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
    updated_at INTEGER NOT NULL DEFAULT (strftime('%s','now'))
);
CREATE INDEX idx_heuristics_confidence ON heuristics(confidence DESC);
CREATE TABLE embeddings (
    embedding_id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    item_type TEXT NOT NULL,
    embedding_data TEXT NOT NULL,
    embedding_vector F32_BLOB(384),
    dimension INTEGER NOT NULL,
    model TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s','now'))
);
CREATE INDEX idx_embeddings_item ON embeddings(item_id, item_type);
CREATE TABLE episode_summaries (
    episode_id TEXT PRIMARY KEY REFERENCES episodes(episode_id) ON DELETE CASCADE,
    summary_text TEXT NOT NULL,
    key_concepts TEXT NOT NULL,
    key_steps TEXT NOT NULL,
    summary_embedding BLOB,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s','now'))
);
CREATE TABLE episode_tags (
    episode_id TEXT NOT NULL REFERENCES episodes(episode_id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
    PRIMARY KEY (episode_id, tag)
);
CREATE INDEX idx_episode_tags_tag ON episode_tags(tag);
CREATE INDEX idx_episode_tags_episode ON episode_tags(episode_id);
CREATE TABLE tag_metadata (
    tag TEXT PRIMARY KEY,
    usage_count INTEGER NOT NULL DEFAULT 0,
    first_used INTEGER,
    last_used INTEGER
);
CREATE TABLE episode_relationships (
    relationship_id TEXT PRIMARY KEY,
    from_episode_id TEXT NOT NULL REFERENCES episodes(episode_id) ON DELETE CASCADE,
    to_episode_id TEXT NOT NULL REFERENCES episodes(episode_id) ON DELETE CASCADE,
    relationship_type TEXT NOT NULL,
    reason TEXT,
    created_by TEXT,
    priority INTEGER,
    weight REAL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),
    UNIQUE(from_episode_id, to_episode_id, relationship_type)
);
CREATE INDEX idx_rel_from ON episode_relationships(from_episode_id);
CREATE INDEX idx_rel_to ON episode_relationships(to_episode_id);
CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT, updated_at INTEGER);
"""

_FTS = """
CREATE VIRTUAL TABLE episodes_fts USING fts5(
    episode_id UNINDEXED, task_description, context, domain, tokenize = 'porter unicode61'
);
CREATE TRIGGER episodes_fts_ai AFTER INSERT ON episodes BEGIN
    INSERT INTO episodes_fts(episode_id, task_description, context, domain)
    VALUES (new.episode_id, new.task_description, new.context, new.domain);
END;
CREATE TRIGGER episodes_fts_ad AFTER DELETE ON episodes BEGIN
    DELETE FROM episodes_fts WHERE episode_id = old.episode_id;
END;
"""


def to_json(value: Any) -> str:
    """``serde_json::to_string``'s text of a plain value: compact, non-ASCII kept as it is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class OriginalDatabase:
    """What :func:`write_original_database` wrote, counted by table and by kind of oddity."""

    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    enveloped: Counter[str] = field(default_factory=Counter)  # "table.column:codec"
    json_nulls: int = 0  # outcome/reward/reflection stored as JSON "null" (single-row path)
    sql_nulls: int = 0  # ... stored as SQL NULL (batch path)
    shapes: Counter[str] = field(default_factory=Counter)  # variants and forms written
    orphans: int = 0  # tags/summaries/relationships pointing at a missing episode
    rewritten: int = 0  # episodes written twice (INSERT OR REPLACE: duplicate FTS rows)
    first_start: int = 0  # epoch seconds
    last_start: int = 0


def _rhythm(t: float) -> float:
    """Relative activity at epoch second ``t``: busy working hours, quiet nights and weekends."""
    dt = datetime.fromtimestamp(t, UTC)
    hour = dt.hour + dt.minute / 60
    daily = 0.15 + math.exp(-(((hour - 14.0) / 4.0) ** 2))
    weekly = 0.35 if dt.weekday() >= 5 else 1.0
    return daily * weekly


def _start_times(n: int, start: int, end: int, rng: random.Random) -> list[int]:
    """``n`` epoch seconds in ``[start, end)`` drawn from the rhythm (thinning), sorted."""
    out: list[int] = []
    peak = 1.15
    while len(out) < n:
        t = rng.uniform(start, end)
        if rng.random() * peak <= _rhythm(t):
            out.append(int(t))
    out.sort()
    return out


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stamp(nanos: int, rng: random.Random) -> str:
    """chrono's RFC 3339 text of ``nanos``: 0, 3, 6 or 9 fractional digits as chrono picks them
    for values with that many, and now and then another count (``...:07.5Z``)."""
    digits = rng.choice((0, 3, 3, 6, 9, 9, 1, 2, 4, 5, 7, 8))
    unit = 10 ** (9 - digits)
    return format_rfc3339(nanos - nanos % unit, digits)


def _context(ctx: Any) -> dict[str, Any]:
    return {
        "language": ctx.language,
        "framework": ctx.framework,
        "complexity": ctx.complexity.value.capitalize(),
        "domain": ctx.domain,
        "tags": list(ctx.tags),
    }


def _result(step: Any) -> Any:
    r = step.result
    if r is None:
        return None
    if r.kind == "success":
        return {"Success": {"output": r.output}}
    if r.kind == "error":
        return {"Error": {"message": r.output}}
    return "Timeout"


def _steps(ep: Episode, start: int, rng: random.Random, old_form: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    t = start * 1_000_000_000 + rng.randrange(1_000_000_000)
    for i, s in enumerate(ep.steps, 1):
        t += int(s.latency_ms * 1_000_000) + rng.randrange(1, 2_000_000_000)
        step: dict[str, Any] = {"step_number": i, "timestamp": _stamp(t, rng)}
        step |= {"tool": s.tool, "action": s.action}
        if old_form:
            step["parameters"] = dict(s.parameters)
        else:
            step["parameters_json"] = to_json(dict(s.parameters))
        step |= {
            "result": _result(s),
            "latency_ms": round(s.latency_ms),
            "tokens_used": s.tokens if rng.random() < 0.8 else None,
            "metadata": {"retry": str(rng.randint(1, 3))} if rng.random() < 0.1 else {},
        }
        out.append(step)
    return out


def _outcome(ep: Episode, rng: random.Random) -> dict[str, Any] | None:
    o = ep.outcome
    if o is None:
        return None
    kind = type(o).__name__
    body: dict[str, Any] = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in ((k, getattr(o, k)) for k in o.__slots__)
    }
    if kind == "Failure" and rng.random() < 0.3:
        body["error_details"] = None
    if kind == "Abstained":
        body["stopped_at_step"] = rng.randint(1, max(1, len(ep.steps)))
        body["infeasibility_signals"] = ["missing credentials"] * rng.randint(0, 2)
    return {kind: body}


def _reward(total: float, rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {
        "total": total,
        "base": rng.choice((0.0, 0.5, 1.0)),
        "efficiency": round(rng.uniform(0.5, 1.5), 3),
        "complexity_bonus": rng.choice((1.0, 1.1, 1.2)),
        "quality_multiplier": 1.0,
        "learning_bonus": round(rng.uniform(0, 0.3), 3),
        "abstention_score": 0.0,
    }
    if rng.random() < 0.5:  # newer releases
        out |= {
            "raw_reward": total,
            "normalized_reward": round(min(1.0, total), 3),
            "decayed_reward": round(total * 0.9, 3),
            "effective_reward": round(total * 0.95, 3),
        }
    return out


def _checkpoints(eid: str, ep: Episode, end: int, rng: random.Random) -> list[dict[str, Any]]:
    if rng.random() >= 0.05:
        return []
    alias = rng.random() < 0.5  # written by a release that named them created_at and reason
    return [
        {
            "checkpoint_id": _uuid(rng),
            "episode_id": eid,
            "step_number": rng.randint(1, max(1, len(ep.steps))),
            "created_at" if alias else "timestamp": format_rfc3339(end * 1_000_000_000),
            "reason" if alias else "label": "agent switch",
            "salient_features_snapshot": None,
            "is_abstention_checkpoint": False,
            "note": rng.choice((None, "handoff to reviewer")),
        }
    ]


def write_original_database(
    path: str | Path,
    *,
    episodes: int = 2000,
    weeks: float = 4.0,
    seed: int = 0,
    end: datetime = datetime(2026, 11, 2, tzinfo=UTC),
    envelope_share: float = 0.2,
    embeddings: int | None = None,
    dim: int = 384,
    patterns: int = 200,
    heuristics: int = 100,
    fts: bool = True,
    batch: int = 5000,
) -> OriginalDatabase:
    """Write a database of the original system at ``path`` (which must not exist yet).

    ``episodes`` episodes start over the ``weeks`` weeks before ``end`` with a daily and weekly
    rhythm. About ``envelope_share`` of them are written "by the batch path": SQL NULL for absent
    values and the compressed envelope (lz4, zstd and gzip in turn) in their ``patterns``,
    ``heuristics`` and ``metadata`` columns; the others by the single-row path (JSON ``"null"``).
    One in ten stores its steps' parameters in the older ``parameters`` object form. Embeddings
    (default: one per four episodes) of ``dim`` floats are a JSON array or, for about
    ``envelope_share`` of them, an envelope of their raw f32 bytes; the native vector column is
    filled for 384 dimensions. A few tags, summaries and relationships point at episodes that do
    not exist, and some episodes are written twice (the FTS table keeps both rows).
    """
    p = Path(path)
    if p.exists():
        raise ConfigError(f"{p} exists: write_original_database makes a new database")
    if episodes < 1 or weeks <= 0 or not 0 <= envelope_share <= 1:
        raise ConfigError("need episodes >= 1, weeks > 0 and envelope_share within [0, 1]")
    rng = random.Random(seed)
    out = OriginalDatabase(p)
    stop = int(end.timestamp())
    starts = _start_times(episodes, stop - int(weeks * 7 * 86400), stop, rng)
    out.first_start, out.last_start = starts[0], starts[-1]
    db = sqlite3.connect(p)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        if fts:
            db.executescript(_FTS)
        ids: list[str] = []
        rows: list[tuple[Any, ...]] = []
        for ep, start in zip(_episodes(episodes, seed), starts, strict=True):
            eid = _uuid(rng)
            ids.append(eid)
            rows.append(_episode_row(ep, eid, start, rng, envelope_share, out))
            if len(rows) >= batch:
                _insert_episodes(db, rows)
                rows = []
        _insert_episodes(db, rows)
        # INSERT OR REPLACE of some episodes again: created_at moves, FTS keeps both rows
        again = rng.sample(ids, max(1, episodes // 50))
        cur = db.execute(
            f"SELECT * FROM episodes WHERE episode_id IN ({','.join('?' * len(again))})",
            again,
        )
        cols = [d[0] for d in cur.description]
        at = cols.index("created_at")
        rewrites = [(*r[:at], r[at] + 3600, *r[at + 1 :]) for r in cur.fetchall()]
        db.executemany(
            f"INSERT OR REPLACE INTO episodes({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})",
            rewrites,
        )
        out.rewritten = len(again)
        out.rows["episodes"] = episodes
        _write_patterns(db, rng, seed, patterns, stop, out)
        _write_heuristics(db, rng, seed, heuristics, ids, stop, out)
        _write_embeddings(db, rng, ids, embeddings, dim, starts, envelope_share, out)
        _write_extras(db, rng, ids, starts, out)
        db.commit()
    finally:
        db.close()
    return out


def _episodes(n: int, seed: int) -> Iterator[Episode]:
    # content from the project's generator (the ids and times are the original's), one at a
    # time: a database of hundreds of thousands of episodes never sits in memory
    return iter_episodes(n, seed=seed)


def _episode_row(
    ep: Episode, eid: str, start: int, rng: random.Random, share: float, out: OriginalDatabase
) -> tuple[Any, ...]:
    batch_path = rng.random() < share
    old_form = rng.random() < 0.1
    out.shapes["steps.parameters (older object form)" if old_form else "steps.parameters_json"] += 1
    end = start + max(1, round(sum(s.latency_ms for s in ep.steps) / 1000))
    outcome = _outcome(ep, rng)
    reward = None if ep.reward is None else _reward(ep.reward, rng)
    reflection = None
    if ep.reflection is not None:
        r = ep.reflection
        reflection = {
            "successes": list(r.successes),
            "improvements": list(r.improvements),
            "insights": list(r.insights),
            "generated_at": format_rfc3339(end * 1_000_000_000 + rng.randrange(10**9)),
        }
    end_time: int | None = end
    if rng.random() < 0.15:  # still open when the database was copied: nothing to judge yet
        outcome = reward = reflection = end_time = None
    out.shapes[f"outcome {next(iter(outcome)) if outcome else 'absent'}"] += 1

    def nullable(v: Any) -> str | None:
        if v is not None:
            return to_json(v)
        if batch_path:
            out.sql_nulls += 1
            return None
        out.json_nulls += 1
        return "null"

    def maybe_enveloped(column: str, v: Any) -> str:
        text = to_json(v)
        if not batch_path:
            return text
        codec = rng.choice(CODECS)
        out.enveloped[f"episodes.{column}:{codec}"] += 1
        return envelope(text.encode(), codec)

    return (
        eid,
        ep.task_type,
        ep.description,
        to_json(_context(ep.context)),
        to_json(_steps(ep, start, rng, old_form)),
        nullable(outcome),
        nullable(reward),
        nullable(reflection),
        maybe_enveloped("patterns", list(ep.pattern_ids)),
        maybe_enveloped("heuristics", list(ep.heuristic_ids)),
        to_json(_checkpoints(eid, ep, end, rng)),
        maybe_enveloped("metadata", dict(ep.metadata)),
        start,
        end_time,
        ep.context.domain,
        ep.context.language,
        end + rng.randint(0, 5),
        end + 86400 * 30 if rng.random() < 0.03 else None,
    )


def _insert_episodes(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        db.executemany(
            "INSERT OR REPLACE INTO episodes(episode_id, task_type, task_description, context, "
            "steps, outcome, reward, reflection, patterns, heuristics, checkpoints, metadata, "
            "start_time, end_time, domain, language, created_at, archived_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


# -- patterns: Rust's Debug dump of the whole enum, and pattern_data --------------------------


def _debug_list(items: Any) -> str:
    return "[" + ", ".join(rust_debug_str(s) for s in items) + "]"


def _debug_opt(v: str | None) -> str:
    return "None" if v is None else f"Some({rust_debug_str(v)})"


def _debug_context(c: dict[str, Any]) -> str:
    return (
        f"TaskContext {{ language: {_debug_opt(c['language'])}, "
        f"framework: {_debug_opt(c['framework'])}, complexity: {c['complexity']}, "
        f"domain: {rust_debug_str(c['domain'])}, tags: {_debug_list(c['tags'])} }}"
    )


def _debug_effectiveness(rng: random.Random, at: int) -> str:
    applied = rng.randint(0, 8)
    won = rng.randint(0, applied)
    return (
        f"PatternEffectiveness {{ times_retrieved: {applied + rng.randint(0, 20)}, "
        f"times_applied: {applied}, success_when_applied: {won}, "
        f"failure_when_applied: {applied - won}, "
        f"avg_reward_delta: {round(rng.uniform(-0.5, 0.5), 3)!r}, "
        f"last_used: {format_rfc3339(at * 1_000_000_000)}, "
        f"created_at: {format_rfc3339((at - 86400) * 1_000_000_000)} }}"
    )


def _duration(rng: random.Random) -> str:
    ms = rng.choice((150, 1200, 3400, 45))
    return f"{ms}ms" if ms < 1000 else f"{ms / 1000:g}s"


def _pattern_row(p: Pattern, pid: str, rng: random.Random, t: int) -> tuple[Any, ...]:
    """A pattern as the original stores it: ``format!("{:?}", pattern)`` as its type, the
    description, context and heuristic the original derives from it as ``pattern_data``."""
    body = p.body
    kind = type(body).__name__
    ctx = {
        "language": rng.choice((None, "rust", "go")),
        "framework": rng.choice((None, "axum")),
        "complexity": rng.choice(("Simple", "Moderate", "Complex")),
        "domain": p.domain,
        "tags": rng.sample(["db", "auth", "ci"], rng.randint(0, 2)),
    }
    rate = p.success_rate
    eff = _debug_effectiveness(rng, t)
    count = p.occurrence_count
    if kind == "ToolSequence":
        tools = list(body.tools)  # type: ignore[union-attr]
        fields = (
            f"tools: {_debug_list(tools)}, context: {_debug_context(ctx)}, "
            f"success_rate: {rate!r}, avg_latency: {_duration(rng)}, occurrence_count: {count}"
        )
        desc = f"Tool sequence: {' -> '.join(tools)}"
        cond, act = f"When need tools: {', '.join(tools)}", f"Use sequence: {' -> '.join(tools)}"
    elif kind == "DecisionPoint":
        cond, act = body.condition, body.action  # type: ignore[union-attr]
        won = round(rate * count)
        fields = (
            f"condition: {rust_debug_str(cond)}, action: {rust_debug_str(act)}, "
            f"outcome_stats: OutcomeStats {{ success_count: {won}, failure_count: {count - won}, "
            f"total_count: {count}, avg_duration_secs: 12.5 }}, context: {_debug_context(ctx)}"
        )
        desc = f"Decision: {cond} -> {act}"
    elif kind == "ErrorRecovery":
        err, steps = body.error_type, list(body.recovery_steps)  # type: ignore[union-attr]
        fields = (
            f"error_type: {rust_debug_str(err)}, recovery_steps: {_debug_list(steps)}, "
            f"success_rate: {rate!r}, context: {_debug_context(ctx)}"
        )
        desc = f"Error recovery for: {err}"
        cond, act = f"Error: {err}", f"Recovery: {' -> '.join(steps)}"
        count = 1
    else:
        feats, approach = list(body.features), body.recommended_approach  # type: ignore[union-attr]
        evidence = ", ".join(_uuid(rng) for _ in range(rng.randint(0, 3)))
        fields = (
            f"context_features: {_debug_list(feats)}, "
            f"recommended_approach: {rust_debug_str(approach)}, evidence: [{evidence}], "
            f"success_rate: {rate!r}"
        )
        desc = f"Context pattern: {approach}"
        cond, act = f"Features: {', '.join(feats)}", approach
        ctx = {"language": None, "framework": None, "complexity": "Moderate",
               "domain": p.domain, "tags": []}  # fmt: skip
        count = rng.randint(0, 3)
    dump = f"{kind} {{ id: {pid}, {fields}, effectiveness: {eff} }}"
    stamp = format_rfc3339(t * 1_000_000_000 + rng.randrange(10**9))
    data = {
        "description": desc,
        "context": ctx,
        "heuristic": {
            "heuristic_id": _uuid(rng),
            "condition": cond,
            "action": act,
            "confidence": rate,
            "evidence": {"episode_ids": [], "success_rate": 0.0, "sample_size": 0},
            "created_at": stamp,
            "updated_at": stamp,
        },
    }
    return (
        pid, dump, to_json(data), rate, ctx["domain"], ctx["language"], to_json(ctx["tags"]),
        count, t, t,
    )  # fmt: skip


def _write_patterns(
    db: sqlite3.Connection,
    rng: random.Random,
    seed: int,
    n: int,
    stop: int,
    out: OriginalDatabase,
) -> None:
    rows = [
        _pattern_row(p, _uuid(rng), rng, stop - rng.randint(0, 30 * 86400))
        for p in generate_patterns(n, seed=seed)
    ]
    db.executemany("INSERT INTO patterns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    out.rows["patterns"] = len(rows)


def _write_heuristics(
    db: sqlite3.Connection,
    rng: random.Random,
    seed: int,
    n: int,
    ids: list[str],
    stop: int,
    out: OriginalDatabase,
) -> None:
    rows = []
    for h in generate_heuristics(n, seed=seed):
        evidence = {
            "episode_ids": rng.sample(ids, min(3, len(ids))),
            "success_rate": h.evidence.success_rate,
            "sample_size": h.evidence.sample_size,
        }
        t = stop - rng.randint(0, 30 * 86400)
        rows.append((_uuid(rng), h.condition, h.action, h.confidence, to_json(evidence), t, t))
    db.executemany("INSERT INTO heuristics VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    out.rows["heuristics"] = len(rows)


def _write_embeddings(
    db: sqlite3.Connection,
    rng: random.Random,
    ids: list[str],
    n: int | None,
    dim: int,
    starts: list[int],
    share: float,
    out: OriginalDatabase,
) -> None:
    count = len(ids) // 4 if n is None else n
    rows = []
    for i in range(count):
        # one embedding per item: the id is a hash of "item_id:item_type"
        item, kind = (ids[i], "episode") if i < len(ids) else (_uuid(rng), "pattern")
        # four decimals: the f32 nearest each value prints (serde_json, ryu) as the same text
        vec = [round(rng.gauss(0, 0.3), 4) for _ in range(dim)]
        raw = struct.pack(f"<{dim}f", *vec)
        if rng.random() < share:
            codec = CODECS[i % 3]
            text = envelope(raw, codec)  # the vector's raw f32 bytes, not JSON
            out.enveloped[f"embeddings.embedding_data:{codec}"] += 1
        else:
            text = to_json(vec)
        eid = hashlib.sha1(f"{item}:{kind}".encode()).hexdigest()
        native = raw if dim == 384 else None
        rows.append(
            (eid, item, kind, text, native, dim, "all-MiniLM-L6-v2", starts[i % len(starts)])
        )
    db.executemany("INSERT INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    out.rows["embeddings"] = len(rows)


def _write_extras(
    db: sqlite3.Connection,
    rng: random.Random,
    ids: list[str],
    starts: list[int],
    out: OriginalDatabase,
) -> None:
    ghost = [_uuid(rng) for _ in range(3)]
    tags = ("flaky", "perf", "security", "ux", "infra")
    tag_rows = {(e, t) for e in rng.sample(ids, min(len(ids), 200)) for t in rng.sample(tags, 2)}
    tag_rows |= {(g, "flaky") for g in ghost}
    db.executemany("INSERT INTO episode_tags(episode_id, tag) VALUES (?, ?)", sorted(tag_rows))
    db.executemany(
        "INSERT INTO tag_metadata VALUES (?, ?, ?, ?)",
        [(t, sum(1 for _, x in tag_rows if x == t), starts[0], starts[-1]) for t in tags],
    )
    summaries = [
        (e, f"summary of {e[:8]}", json.dumps(["retry", "cache"]), json.dumps([1, 2]), None)
        for e in rng.sample(ids, min(len(ids), 100))
    ] + [(ghost[0], "summary of a deleted episode", "[]", "[]", None)]
    db.executemany(
        "INSERT INTO episode_summaries(episode_id, summary_text, key_concepts, key_steps, "
        "summary_embedding) VALUES (?, ?, ?, ?, ?)",
        summaries,
    )
    rels: list[tuple[Any, ...]] = []
    for i in range(min(len(ids) - 1, 100)):
        rels.append(
            (_uuid(rng), ids[i], ids[i + 1],
             "follows", "same task", "agent", 1, 0.5, "{}")
        )  # fmt: skip
    rels.append(
        (_uuid(rng), ghost[1], ids[0], "follows",
         None, None, None, None, "{}")
    )  # fmt: skip
    db.executemany(
        "INSERT INTO episode_relationships(relationship_id, from_episode_id, to_episode_id, "
        "relationship_type, reason, created_by, priority, weight, metadata) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rels,
    )
    out.orphans = len(ghost)
    out.rows |= {
        "episode_tags": len(tag_rows),
        "episode_summaries": len(summaries),
        "episode_relationships": len(rels),
    }
