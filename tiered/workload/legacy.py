"""A realistic database in the original system's layout, written with plain ``sqlite3``.

Teams that run the original agent-memory system have their data in its libSQL layout
(``shared/seed/seed-schema.md``): JSON in TEXT columns, epoch-second times, a
``__compressed__:<algo>:<size>`` envelope in some columns, JSON ``"null"`` beside SQL NULL, no
index on metadata, foreign keys off (orphans), FTS5 tables kept by triggers. tiered reads such
databases (analysis, import); :func:`write_legacy_database` makes one to test and benchmark that
on: weeks of history with a daily and weekly rhythm, episodes with steps, outcomes and metadata
(the content of :func:`tiered.workload.generate_episodes`), patterns, heuristics, embeddings,
summaries, tags and relationships. It is written by ``sqlite3`` alone, as the original would
have, never through tiered.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import random
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from tiered.errors import ConfigError
from tiered.model import Episode
from tiered.workload.records import generate_heuristics, generate_patterns, iter_episodes

__all__ = ["LEGACY_TABLES", "LegacyDatabase", "envelope", "write_legacy_database"]

#: the tables whose presence identifies the original layout (see tiered.analysis.sources)
LEGACY_TABLES = ("episodes", "patterns", "heuristics", "embeddings")

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


def envelope(data: bytes, algo: str = "zstd") -> str:
    """The original's compressed envelope of ``data``:
    ``__compressed__:<algo>:<original size>\\n<base64 of the compressed bytes>``."""
    if algo == "zstd":
        packed = zstandard.ZstdCompressor(level=3).compress(data)
    elif algo == "gzip":
        packed = gzip.compress(data, mtime=0)
    elif algo == "lz4":
        import lz4.frame

        packed = lz4.frame.compress(data)
    else:
        raise ConfigError(f"unknown envelope codec {algo!r}: use lz4, zstd or gzip")
    return f"__compressed__:{algo}:{len(data)}\n{base64.b64encode(packed).decode()}"


@dataclass
class LegacyDatabase:
    """What :func:`write_legacy_database` wrote (counts by table and kind of oddity)."""

    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    enveloped: dict[str, int] = field(default_factory=dict)  # by column
    json_nulls: int = 0  # outcome/reward/reflection stored as JSON "null"
    sql_nulls: int = 0  # ... stored as SQL NULL
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


def _outcome(ep: Episode) -> dict[str, Any] | None:
    o = ep.outcome
    if o is None:
        return None
    kind = ep.outcome_kind
    body = {k: (list(v) if isinstance(v, tuple) else v) for k, v in _fields(o).items()}
    return {"type": kind, **body}


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def _steps(ep: Episode, start: int) -> list[dict[str, Any]]:
    out, t = [], start
    for i, s in enumerate(ep.steps, 1):
        t += max(1, round(s.latency_ms / 1000))
        result = None
        if s.result is not None:
            result = {"type": s.result.kind, "output": s.result.output}
        out.append(
            {
                "step_number": i,
                "timestamp": t,
                "tool": s.tool,
                "action": s.action,
                "parameters": s.parameters,
                "result": result,
                "latency_ms": s.latency_ms,
                "tokens_used": s.tokens,
                "metadata": {},
            }
        )
    return out


def write_legacy_database(
    path: str | Path,
    *,
    episodes: int = 2000,
    weeks: float = 4.0,
    seed: int = 0,
    end: datetime = datetime(2026, 11, 2, tzinfo=UTC),
    envelope_share: float = 0.2,
    embeddings: int | None = None,
    dim: int = 384,
    fts: bool = True,
    batch: int = 5000,
) -> LegacyDatabase:
    """Write a database in the original layout at ``path`` (which must not exist yet).

    ``episodes`` episodes start over the ``weeks`` weeks before ``end`` with a daily and weekly
    rhythm; about ``envelope_share`` of the episodes written "by the batch path" carry the
    compressed envelope in their ``patterns``, ``heuristics`` and ``metadata`` columns and SQL
    NULL for absent values (the others JSON ``"null"``); embeddings (default: one per four
    episodes) of ``dim`` floats are stored as a JSON array or an envelope, with the native
    vector column filled for 384-dimensional ones. A few tags, summaries and relationships point
    at episodes that do not exist (foreign keys are off in the original), and some episodes are
    written twice (``INSERT OR REPLACE``: the FTS table keeps both rows).
    """
    p = Path(path)
    if p.exists():
        raise ConfigError(f"{p} exists: write_legacy_database makes a new database")
    if episodes < 1 or weeks <= 0 or not 0 <= envelope_share <= 1:
        raise ConfigError("need episodes >= 1, weeks > 0 and envelope_share within [0, 1]")
    rng = random.Random(seed)
    out = LegacyDatabase(p)
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
            eid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
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
        _write_patterns(db, rng, seed, stop, out)
        _write_heuristics(db, rng, seed, ids, stop, out)
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
    ep: Episode, eid: str, start: int, rng: random.Random, share: float, out: LegacyDatabase
) -> tuple[Any, ...]:
    batch_path = rng.random() < share
    end = start + max(1, round(sum(s.latency_ms for s in ep.steps) / 1000))
    ctx = ep.context
    context = {
        "language": ctx.language,
        "framework": ctx.framework,
        "complexity": ctx.complexity.value.capitalize(),
        "domain": ctx.domain,
        "tags": list(ctx.tags),
    }
    outcome = _outcome(ep)
    reward = None if ep.reward is None else {"total": ep.reward, "base": 1.0, "efficiency": 1.0}
    reflection = None
    if ep.reflection is not None:
        reflection = {k: list(v) for k, v in _fields(ep.reflection).items()}
    if rng.random() < 0.15:  # still open when the database was copied: nothing to judge yet
        outcome = reward = reflection = None

    def nullable(v: Any) -> str | None:
        if v is not None:
            return json.dumps(v)
        if batch_path:
            out.sql_nulls += 1
            return None
        out.json_nulls += 1
        return "null"

    def maybe_enveloped(column: str, v: Any) -> str:
        text = json.dumps(v)
        if not batch_path:
            return text
        out.enveloped[column] = out.enveloped.get(column, 0) + 1
        return envelope(text.encode(), rng.choice(("zstd", "gzip")))

    return (
        eid,
        ep.task_type,
        ep.description,
        json.dumps(context),
        json.dumps(_steps(ep, start)),
        nullable(outcome),
        nullable(reward),
        nullable(reflection),
        maybe_enveloped("episodes.patterns", list(ep.pattern_ids)),
        maybe_enveloped("episodes.heuristics", list(ep.heuristic_ids)),
        "[]",
        maybe_enveloped("episodes.metadata", dict(ep.metadata)),
        start,
        end,
        ctx.domain,
        ctx.language,
        end + rng.randint(0, 5),
        None,
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


def _write_patterns(
    db: sqlite3.Connection, rng: random.Random, seed: int, stop: int, out: LegacyDatabase
) -> None:
    pats = generate_patterns(200, seed=seed)
    rows = []
    for p in pats:
        body = _fields(p.body)
        # the original stores a debug dump of the whole pattern as its "type" (Rust's Debug:
        # `ToolSequence { tools: ["a", "b"], context: "..." }`); one in ten is mangled beyond
        # recognising (a newer variant, a truncated dump)
        fields = ", ".join(
            f"{k}: {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in body.items()
        )
        dump = f"{type(p.body).__name__} {{ {fields} }}"
        if rng.random() < 0.1:
            dump = f"Pattern {{ id: {p.id}, {dump[:40]}"
        data = {"description": dump[:80], "context": {"domain": p.domain}, "heuristic": None}
        t = stop - rng.randint(0, 30 * 86400)
        rows.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                dump,
                json.dumps(data),
                p.success_rate,
                p.domain,
                None,
                json.dumps([]),
                p.occurrence_count,
                t,
                t,
            )
        )
    db.executemany("INSERT INTO patterns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    out.rows["patterns"] = len(rows)


def _write_heuristics(
    db: sqlite3.Connection,
    rng: random.Random,
    seed: int,
    ids: list[str],
    stop: int,
    out: LegacyDatabase,
) -> None:
    rows = []
    for h in generate_heuristics(100, seed=seed):
        evidence = {
            "episode_ids": rng.sample(ids, min(3, len(ids))),
            "success_rate": h.evidence.success_rate,
            "sample_size": h.evidence.sample_size,
        }
        t = stop - rng.randint(0, 30 * 86400)
        rows.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                h.condition,
                h.action,
                h.confidence,
                json.dumps(evidence),
                t,
                t,
            )
        )
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
    out: LegacyDatabase,
) -> None:
    import hashlib
    import struct

    count = len(ids) // 4 if n is None else n
    rows = []
    for i in range(count):
        item = ids[i % len(ids)]
        vec = [round(rng.gauss(0, 1), 6) for _ in range(dim)]
        text = json.dumps(vec)
        if rng.random() < share:
            text = envelope(text.encode(), "zstd")
            out.enveloped["embeddings.embedding_data"] = (
                out.enveloped.get("embeddings.embedding_data", 0) + 1
            )
        blob = struct.pack(f"<{dim}f", *vec) if dim == 384 else None
        eid = hashlib.sha256(f"{item}:episode:{i}".encode()).hexdigest()[:32]
        rows.append(
            (eid, item, "episode", text, blob, dim, "all-MiniLM-L6-v2", starts[i % len(starts)])
        )
    db.executemany("INSERT INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    out.rows["embeddings"] = len(rows)


def _write_extras(
    db: sqlite3.Connection,
    rng: random.Random,
    ids: list[str],
    starts: list[int],
    out: LegacyDatabase,
) -> None:
    ghost = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(3)]
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
            (str(uuid.UUID(int=rng.getrandbits(128), version=4)), ids[i], ids[i + 1],
             "follows", "same task", "agent", 1, 0.5, "{}")
        )  # fmt: skip
    rels.append(
        (str(uuid.UUID(int=rng.getrandbits(128), version=4)), ghost[1], ids[0], "follows",
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
