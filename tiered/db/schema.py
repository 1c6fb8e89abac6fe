"""Schema, secondary indexes and idempotent migrations, applied at open.

Queryable fields are real columns with indexes chosen for the Store's queries (each query's plan is
checked by ``tests/test_schema.py``); bulky fields live in one ``payload`` column of codec frames.
Every index that serves an ordered query ends with the columns the query orders by, so a ``LIMIT``
reads only the rows it returns. Timestamps are integer microseconds since the epoch, UTC.

Migrations are a list of ``(version, statements)``. Each runs in one transaction together with
its row in ``schema_version``; statements use ``IF NOT EXISTS`` and the version row ``OR IGNORE``,
so two processes opening the same database at once both succeed. SQLite has no ``IF NOT EXISTS``
for ``ALTER TABLE ... ADD COLUMN``: such a statement runs only when the table lacks the column,
and one that loses a race to a process adding it at the same moment is retried (the version
read again).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence

from tiered.db.driver import Connection, Statement
from tiered.errors import DatabaseError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "migrate", "vector_table_ddl"]

# Server-side wall clock in microseconds (julianday works on every SQLite the backends ship).
_NOW_US = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"

_V1: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS episodes (
        id TEXT PRIMARY KEY,
        task_type TEXT NOT NULL,
        domain TEXT NOT NULL,
        language TEXT,
        start_time INTEGER NOT NULL,
        end_time INTEGER,
        outcome TEXT,
        reward REAL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        payload BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS episodes_start ON episodes(start_time, id)",
    "CREATE INDEX IF NOT EXISTS episodes_task_type ON episodes(task_type, start_time, id)",
    "CREATE INDEX IF NOT EXISTS episodes_domain ON episodes(domain, start_time, id)",
    "CREATE INDEX IF NOT EXISTS episodes_domain_language "
    "ON episodes(domain, language, start_time, id)",
    "CREATE INDEX IF NOT EXISTS episodes_language ON episodes(language, start_time, id)",
    # Metadata is a side table so that a (key, value) lookup is an index search, not a JSON scan.
    # start_time is copied in so the index also yields the rows newest-first without a sort.
    """CREATE TABLE IF NOT EXISTS episode_metadata (
        episode_id TEXT NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        start_time INTEGER NOT NULL,
        PRIMARY KEY (episode_id, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS episode_metadata_kv "
    "ON episode_metadata(key, value, start_time, episode_id)",
    """CREATE TABLE IF NOT EXISTS patterns (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        domain TEXT NOT NULL,
        success_rate REAL NOT NULL,
        effectiveness REAL NOT NULL,
        occurrence_count INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        payload BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS patterns_kind ON patterns(kind, success_rate, id)",
    "CREATE INDEX IF NOT EXISTS patterns_kind_domain ON patterns(kind, domain, success_rate, id)",
    "CREATE INDEX IF NOT EXISTS patterns_domain ON patterns(domain, success_rate, id)",
    "CREATE INDEX IF NOT EXISTS patterns_success ON patterns(success_rate, id)",
    """CREATE TABLE IF NOT EXISTS heuristics (
        id TEXT PRIMARY KEY,
        confidence REAL NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        payload BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS heuristics_confidence ON heuristics(confidence, id)",
    # A model's dimension is fixed by its first embedding; the trigger below enforces it even
    # against writers that skip the Store's own check.
    """CREATE TABLE IF NOT EXISTS embedding_models (
        id INTEGER PRIMARY KEY,
        model TEXT NOT NULL UNIQUE,
        dim INTEGER NOT NULL CHECK (dim > 0)
    )""",
    "CREATE INDEX IF NOT EXISTS embedding_models_dim ON embedding_models(dim)",
    """CREATE TABLE IF NOT EXISTS embeddings (
        id TEXT PRIMARY KEY,
        owner_id TEXT NOT NULL,
        owner_kind TEXT NOT NULL,
        model_id INTEGER NOT NULL REFERENCES embedding_models(id),
        vector BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS embeddings_owner ON embeddings(owner_kind, owner_id)",
    "CREATE INDEX IF NOT EXISTS embeddings_model ON embeddings(model_id, owner_kind)",
    """CREATE TRIGGER IF NOT EXISTS embeddings_dim_insert BEFORE INSERT ON embeddings
       WHEN length(NEW.vector) != 4 * (SELECT dim FROM embedding_models WHERE id = NEW.model_id)
       BEGIN SELECT RAISE(ABORT, 'vector dimension does not match its model'); END""",
    """CREATE TRIGGER IF NOT EXISTS embeddings_dim_update BEFORE UPDATE ON embeddings
       WHEN length(NEW.vector) != 4 * (SELECT dim FROM embedding_models WHERE id = NEW.model_id)
       BEGIN SELECT RAISE(ABORT, 'vector dimension does not match its model'); END""",
    # Appended by triggers, so in the same transaction as every write, whoever the writer is;
    # other processes poll it (seq > last seen) to invalidate their caches.
    """CREATE TABLE IF NOT EXISTS change_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tbl TEXT NOT NULL,
        key TEXT NOT NULL,
        op TEXT NOT NULL,
        at INTEGER NOT NULL
    )""",
    *(
        f"""CREATE TRIGGER IF NOT EXISTS {tbl}_log_{op} AFTER {op.upper()} ON {tbl}
           BEGIN INSERT INTO change_log(tbl, key, op, at)
                 VALUES ('{tbl}', {row}.id, '{op}', {_NOW_US}); END"""
        for tbl in ("episodes", "patterns", "heuristics", "embeddings")
        for op, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD"))
    ),
)

# v2: trained zstd dictionaries, one row per training; frames name the id they were compressed
# with, so rows are never updated or deleted while frames may use them.
_V2: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS dictionaries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        data BLOB NOT NULL,
        samples INTEGER NOT NULL,
        sample_bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    )""",
)

# v3: what learning pools count (tiered.pool.learning): one row per instance and completed
# hour, and one heartbeat row per instance; no change_log trigger (no cache holds them).
_V3: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS pool_traffic (
        instance TEXT NOT NULL,
        hour INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        busy_s REAL NOT NULL,
        PRIMARY KEY (instance, hour)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS idx_pool_traffic_hour ON pool_traffic(hour)",
    """CREATE TABLE IF NOT EXISTS pool_instances (
        instance TEXT PRIMARY KEY,
        started INTEGER NOT NULL,
        seen INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS idx_pool_instances_seen ON pool_instances(seen)",
)

# version 4: the squared hold times of each hour (the holds' spread, for the planner's queue
# model); NULL in the rows written before (read as not counted)
_V4: tuple[str, ...] = ("ALTER TABLE pool_traffic ADD COLUMN hold_sq_s REAL",)

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, _V1), (2, _V2), (3, _V3), (4, _V4)
)  # fmt: skip
SCHEMA_VERSION = MIGRATIONS[-1][0]
#: Data tables in dependency order (children first), e.g. for clearing a test database.
TABLES = (
    "change_log",
    "episode_metadata",
    "episodes",
    "patterns",
    "heuristics",
    "embeddings",
    "embedding_models",
    "dictionaries",
    "pool_traffic",
    "pool_instances",
)

_CREATE_VERSION = Statement(
    "schema_version_create",
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    reuse=False,
)
_READ_VERSION = Statement(
    "schema_version_read", "SELECT max(version) FROM schema_version", reuse=False
)
_MARK_VERSION = Statement(
    "schema_version_mark",
    "INSERT OR IGNORE INTO schema_version(version, applied_at) VALUES (?, ?)",
    reuse=False,
)


_HAS_COLUMN = Statement(
    "schema_has_column",
    "SELECT count(*) FROM pragma_table_info(?) WHERE name = ?",
    reuse=False,
)
_ADD_COLUMN = re.compile(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", re.IGNORECASE)


def _lost_race(exc: DatabaseError) -> bool:
    """Whether a migration failed because another process was migrating the same database:
    it held the lock, or added a column between this one's check and its ``ALTER TABLE``."""
    return (
        exc.code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
        or "SQLITE_BUSY" in str(exc)
        or "duplicate column name" in str(exc)  # another process added it at the same moment
    )


async def migrate(conn: Connection, *, now_us: int, busy_timeout: float = 10.0) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; returns the version it was at before.

    Processes opening one database at the same time race to migrate it: one wins, the others
    see the database locked (``SQLITE_BUSY``), or a column they were about to add already there,
    and retry with jittered backoff -- re-reading the version, so a migration is never applied
    twice -- for up to ``busy_timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + busy_timeout
    delay = 0.01
    while True:
        try:
            return await _migrate_once(conn, now_us)
        except DatabaseError as e:
            if not _lost_race(e) or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.5)


async def _migrate_once(conn: Connection, now_us: int) -> int:
    try:
        # read first: an up-to-date database needs no write (a read-only token can open it)
        rows = (await conn.execute(_READ_VERSION)).rows
    except DatabaseError as e:
        if "no such table" not in str(e).lower():
            raise
        await conn.execute(_CREATE_VERSION)
        rows = (await conn.execute(_READ_VERSION)).rows
    current = int(rows[0][0] or 0)
    for version, ddl in MIGRATIONS:
        if version <= current:
            continue
        steps: list[tuple[Statement, Sequence[int]]] = []
        for sql in ddl:
            add = _ADD_COLUMN.match(sql)
            if add and (await conn.execute(_HAS_COLUMN, add.groups())).rows[0][0]:
                continue  # the column is there: this migration ran before its version row
            steps.append((Statement(f"migration_{version}", sql, reuse=False), ()))
        steps.append((_MARK_VERSION, (version, now_us)))
        await conn.transaction(steps, chunk_bytes=1 << 30)
    return current


def vector_table_ddl(model_id: int, dim: int) -> tuple[str, ...]:
    """DDL of the libSQL vector table, index and sync triggers of one model (sqld backends only).

    libSQL's vector index needs a fixed-dimension ``F32_BLOB(dim)`` column, so each model gets its
    own table keyed by the embedding's rowid; triggers keep it in step with ``embeddings`` in the
    same transaction, including when an embedding moves to another model or is deleted.
    """
    m, t = int(model_id), vector_table(model_id)
    # Delete + insert rather than INSERT OR REPLACE: an upsert's conflict clause would override
    # the trigger's, and the vector index rejects the replace.
    put = (
        f"DELETE FROM {t} WHERE rowid = NEW.rowid; "
        f"INSERT INTO {t}(rowid, v) VALUES (NEW.rowid, vector32(NEW.vector))"
    )
    drop = f"DELETE FROM {t} WHERE rowid = OLD.rowid"
    return (
        f"CREATE TABLE IF NOT EXISTS {t} (rowid INTEGER PRIMARY KEY, v F32_BLOB({int(dim)}))",
        f"CREATE INDEX IF NOT EXISTS {t}_idx ON {t}(libsql_vector_idx(v, 'metric=cosine'))",
        f"CREATE TRIGGER IF NOT EXISTS {t}_ins AFTER INSERT ON embeddings "
        f"WHEN NEW.model_id = {m} BEGIN {put}; END",
        f"CREATE TRIGGER IF NOT EXISTS {t}_upd_old AFTER UPDATE ON embeddings "
        f"WHEN OLD.model_id = {m} AND NEW.model_id != {m} BEGIN {drop}; END",
        f"CREATE TRIGGER IF NOT EXISTS {t}_upd_new AFTER UPDATE ON embeddings "
        f"WHEN NEW.model_id = {m} BEGIN {put}; END",
        f"CREATE TRIGGER IF NOT EXISTS {t}_del AFTER DELETE ON embeddings "
        f"WHEN OLD.model_id = {m} BEGIN {drop}; END",
    )


def vector_table(model_id: int) -> str:
    return f"embedding_vectors_{int(model_id)}"
