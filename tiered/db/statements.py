"""Every SQL statement the Store sends, each built once as a :class:`Statement`.

Shapes are fixed: variable-length ``IN (...)`` lists are padded to a power of two (at most
:data:`MAX_IN`), so the set of shapes is small and each is prepared (or stored over Hrana) once
per connection and reused after.
"""

from __future__ import annotations

from functools import cache

from tiered.db.driver import Statement

__all__ = [
    "MAX_IN",
    "all_statements",
    "episodes_by_ids",
    "episodes_by_ids_chunks",
    "nearest_exact",
    "vector_nearest",
]

MAX_IN = 256

# -- episodes -----------------------------------------------------------------------------------

EPISODE_COLS = "e.id, e.outcome, e.payload"

UPSERT_EPISODE = Statement(
    "upsert_episode",
    "INSERT INTO episodes(id, task_type, domain, language, start_time, end_time, outcome, reward,"
    " created_at, updated_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(id) DO UPDATE SET task_type = excluded.task_type, domain = excluded.domain,"
    " language = excluded.language, start_time = excluded.start_time,"
    " end_time = excluded.end_time, outcome = excluded.outcome, reward = excluded.reward,"
    " updated_at = excluded.updated_at, payload = excluded.payload",
)
CLEAR_EPISODE_METADATA = Statement(
    "clear_episode_metadata", "DELETE FROM episode_metadata WHERE episode_id = ?"
)
INSERT_EPISODE_METADATA = Statement(
    "insert_episode_metadata",
    "INSERT INTO episode_metadata(episode_id, key, value, start_time) VALUES (?, ?, ?, ?)",
)
GET_EPISODE = Statement("get_episode", f"SELECT {EPISODE_COLS} FROM episodes e WHERE e.id = ?")
DELETE_EPISODE = Statement("delete_episode", "DELETE FROM episodes WHERE id = ?")
EPISODES_SINCE = Statement(
    "query_episodes_since",
    f"SELECT {EPISODE_COLS} FROM episodes e WHERE e.start_time >= ?"
    " ORDER BY e.start_time, e.id LIMIT ?",
)
EPISODES_BY_METADATA = Statement(
    "query_episodes_by_metadata",
    f"SELECT {EPISODE_COLS} FROM episode_metadata m JOIN episodes e ON e.id = m.episode_id"
    " WHERE m.key = ? AND m.value = ? ORDER BY m.start_time DESC, m.episode_id DESC LIMIT ?",
)


@cache
def episodes_filtered(task_type: bool, domain: bool, language: bool) -> Statement:
    """``query_episodes`` for one combination of filters, newest first."""
    where = [
        c for c, on in (("task_type", task_type), ("domain", domain), ("language", language)) if on
    ]
    cond = " WHERE " + " AND ".join(f"e.{c} = ?" for c in where) if where else ""
    name = "query_episodes" + "".join(f"_{c}" for c in where)
    return Statement(
        name,
        f"SELECT {EPISODE_COLS} FROM episodes e{cond}"
        " ORDER BY e.start_time DESC, e.id DESC LIMIT ?",
    )


@cache
def episodes_by_ids(n: int) -> Statement:
    """``get_episodes`` for ``n`` ids (``n`` a power of two up to :data:`MAX_IN`)."""
    marks = ", ".join("?" * n)
    return Statement(
        f"get_episodes_{n}", f"SELECT {EPISODE_COLS} FROM episodes e WHERE e.id IN ({marks})"
    )


def episodes_by_ids_chunks(ids: list[str]) -> list[tuple[Statement, list[str]]]:
    """``get_episodes`` for any number of ids: chunks of at most :data:`MAX_IN`, each padded
    (with its last id) to a power of two, so only a few statement shapes are ever sent."""
    out = []
    for start in range(0, len(ids), MAX_IN):
        chunk = ids[start : start + MAX_IN]
        n = 1 << (len(chunk) - 1).bit_length()
        out.append((episodes_by_ids(n), chunk + [chunk[-1]] * (n - len(chunk))))
    return out


# -- patterns -----------------------------------------------------------------------------------

PATTERN_COLS = "id, kind, payload"

UPSERT_PATTERN = Statement(
    "upsert_pattern",
    "INSERT INTO patterns(id, kind, domain, success_rate, effectiveness, occurrence_count,"
    " created_at, updated_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, domain = excluded.domain,"
    " success_rate = excluded.success_rate, effectiveness = excluded.effectiveness,"
    " occurrence_count = excluded.occurrence_count, updated_at = excluded.updated_at,"
    " payload = excluded.payload",
)
GET_PATTERN = Statement("get_pattern", f"SELECT {PATTERN_COLS} FROM patterns WHERE id = ?")
DELETE_PATTERN = Statement("delete_pattern", "DELETE FROM patterns WHERE id = ?")


@cache
def patterns_filtered(kind: bool, domain: bool) -> Statement:
    """``search_patterns`` for one combination of filters, best success rate first."""
    where = [f"{c} = ?" for c, on in (("kind", kind), ("domain", domain)) if on]
    where.append("success_rate >= ?")
    name = "search_patterns" + ("_kind" if kind else "") + ("_domain" if domain else "")
    return Statement(
        name,
        f"SELECT {PATTERN_COLS} FROM patterns WHERE {' AND '.join(where)}"
        " ORDER BY success_rate DESC, id DESC LIMIT ?",
    )


# -- heuristics ---------------------------------------------------------------------------------

HEURISTIC_COLS = "id, payload"
UPSERT_HEURISTIC = Statement(
    "upsert_heuristic",
    "INSERT INTO heuristics(id, confidence, created_at, updated_at, payload) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(id) DO UPDATE SET confidence = excluded.confidence,"
    " updated_at = excluded.updated_at, payload = excluded.payload",
)
GET_HEURISTIC = Statement("get_heuristic", f"SELECT {HEURISTIC_COLS} FROM heuristics WHERE id = ?")
DELETE_HEURISTIC = Statement("delete_heuristic", "DELETE FROM heuristics WHERE id = ?")
HEURISTICS_BY_CONFIDENCE = Statement(
    "list_heuristics",
    f"SELECT {HEURISTIC_COLS} FROM heuristics WHERE confidence >= ?"
    " ORDER BY confidence DESC, id DESC LIMIT ?",
)

# -- embeddings ---------------------------------------------------------------------------------

EMBEDDING_COLS = "e.id, e.owner_id, e.owner_kind, m.model, e.vector"
REGISTER_MODEL = Statement(
    "register_model", "INSERT OR IGNORE INTO embedding_models(model, dim) VALUES (?, ?)"
)
GET_MODEL = Statement("get_model", "SELECT id, dim FROM embedding_models WHERE model = ?")
MODELS_BY_DIM = Statement("models_by_dim", "SELECT id, model FROM embedding_models WHERE dim = ?")
UPSERT_EMBEDDING = Statement(
    "upsert_embedding",
    "INSERT INTO embeddings(id, owner_id, owner_kind, model_id, vector, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(id) DO UPDATE SET owner_id = excluded.owner_id,"
    " owner_kind = excluded.owner_kind, model_id = excluded.model_id, vector = excluded.vector,"
    " updated_at = excluded.updated_at",
)
GET_EMBEDDING = Statement(
    "get_embedding",
    f"SELECT {EMBEDDING_COLS} FROM embeddings e JOIN embedding_models m ON m.id = e.model_id"
    " WHERE e.id = ?",
)
DELETE_EMBEDDING = Statement("delete_embedding", "DELETE FROM embeddings WHERE id = ?")
EMBEDDINGS_OF_MODEL = Statement(
    "nearest_scan",
    f"SELECT {EMBEDDING_COLS} FROM embeddings e JOIN embedding_models m ON m.id = e.model_id"
    " WHERE e.model_id = ?",
)
EMBEDDINGS_OF_MODEL_KIND = Statement(
    "nearest_scan_kind",
    f"SELECT {EMBEDDING_COLS} FROM embeddings e JOIN embedding_models m ON m.id = e.model_id"
    " WHERE e.model_id = ? AND e.owner_kind = ?",
)


@cache
def nearest_exact(kind: bool) -> Statement:
    """Exact cosine search computed by libSQL (sqld only); args: vector, model id, limit[, kind]."""
    cond = " AND e.owner_kind = ?4" if kind else ""
    return Statement(
        "nearest_exact" + ("_kind" if kind else ""),
        f"SELECT {EMBEDDING_COLS} FROM embeddings e JOIN embedding_models m ON m.id = e.model_id"
        f" WHERE e.model_id = ?2{cond}"
        " ORDER BY vector_distance_cos(vector32(e.vector), vector32(?1)), e.id LIMIT ?3",
    )


@cache
def vector_nearest(model_id: int) -> Statement:
    """libSQL ANN search over one model's vector index (sqld only); args: vector, fetch."""
    t = f"embedding_vectors_{int(model_id)}"
    return Statement(
        "nearest_ann",
        f"SELECT {EMBEDDING_COLS} FROM vector_top_k('{t}_idx', vector32(?), ?) AS t"
        " JOIN embeddings e ON e.rowid = t.id JOIN embedding_models m ON m.id = e.model_id",
    )


# -- change log ---------------------------------------------------------------------------------

CHANGES_SINCE = Statement(
    "changes_since", "SELECT seq, tbl, key, op FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?"
)
LAST_CHANGE = Statement("last_change", "SELECT coalesce(max(seq), 0) FROM change_log")
#: a change_log row for a write no trigger logs (schema, model registry): it moves the position
#: past that write, so a replica "caught up" to a later position has it (tiered.db.router)
LOG_MARK = Statement(
    "log_mark", "INSERT INTO change_log(tbl, key, op, at) VALUES (?, ?, 'mark', ?)"
)


# -- learning pools' traffic (tiered.store.traffic) ---------------------------------------------

#: a completed (or, at close, partial) hour of one instance; a second write of the same hour
#: adds to it (a pool closed and reopened within the hour under the same instance name)
TRAFFIC_ADD = Statement(
    "traffic_add",
    "INSERT INTO pool_traffic(instance, hour, requests, busy_s, hold_sq_s) "
    "VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(instance, hour) DO UPDATE SET requests = requests + excluded.requests, "
    "busy_s = busy_s + excluded.busy_s, "
    "hold_sq_s = coalesce(hold_sq_s, 0) + excluded.hold_sq_s",
)
TRAFFIC_SINCE = Statement(
    "traffic_since",
    "SELECT instance, hour, requests, busy_s, hold_sq_s FROM pool_traffic WHERE hour >= ?",
)
#: the same, on a database a read-only Store cannot migrate (schema 3: no squared holds)
TRAFFIC_SINCE_V3 = Statement(
    "traffic_since_v3",
    "SELECT instance, hour, requests, busy_s, 0.0 FROM pool_traffic WHERE hour >= ?",
)
HEARTBEAT = Statement(
    "heartbeat",
    "INSERT INTO pool_instances(instance, started, seen) VALUES (?, ?, ?) "
    "ON CONFLICT(instance) DO UPDATE SET seen = excluded.seen",
)
LIVE_INSTANCES = Statement("live_instances", "SELECT instance FROM pool_instances WHERE seen >= ?")
INSTANCE_GONE = Statement("instance_gone", "DELETE FROM pool_instances WHERE instance = ?")


def all_statements(model_ids: tuple[int, ...] = ()) -> list[Statement]:
    """Every statement shape the Store can send (``vector_nearest`` for the given models)."""
    fixed = [v for v in globals().values() if isinstance(v, Statement)]
    combos = [(a, b, c) for a in (False, True) for b in (False, True) for c in (False, True)]
    return (
        fixed
        + [episodes_filtered(*c) for c in combos]
        + [patterns_filtered(a, b) for a, b, _ in combos[::2]]
        + [episodes_by_ids(1 << i) for i in range(MAX_IN.bit_length())]
        + [nearest_exact(k) for k in (False, True)]
        + [vector_nearest(m) for m in model_ids]
    )


# -- compression dictionaries --------------------------------------------------------------------
# Dictionaries train on the most recently written payloads (rowid order; a rowid range, not a
# scan): what new frames will look like.

INSERT_DICTIONARY = Statement(
    "insert_dictionary",
    "INSERT INTO dictionaries(kind, data, samples, sample_bytes, created_at) "
    "VALUES (?, ?, ?, ?, ?) RETURNING id",
)
LOAD_DICTIONARIES = Statement(
    "load_dictionaries", "SELECT id, kind, data FROM dictionaries WHERE id > ? ORDER BY id"
)
SAMPLE_EPISODE_PAYLOADS = Statement(
    "sample_episode_payloads",
    "SELECT payload FROM episodes WHERE rowid > (SELECT max(rowid) FROM episodes) - ?",
)
SAMPLE_PATTERN_PAYLOADS = Statement(
    "sample_pattern_payloads",
    "SELECT payload FROM patterns WHERE rowid > (SELECT max(rowid) FROM patterns) - ?",
)
SAMPLE_HEURISTIC_PAYLOADS = Statement(
    "sample_heuristic_payloads",
    "SELECT payload FROM heuristics WHERE rowid > (SELECT max(rowid) FROM heuristics) - ?",
)
