"""``tiered import``: move a database of the original system onto tiered, resumably, verified.

The source is opened read-only (:func:`tiered.analysis.open_target`: only reads are ever sent).
Rows are read in rowid order, a page at a time, and mapped onto tiered's records by
:mod:`tiered.importer.mapping` (the original's exact encoding: externally tagged enums, JSON
``"null"`` and SQL NULL both "absent", compressed envelopes, epoch seconds to microseconds).
Episodes, patterns, heuristics and embeddings (``embeddings`` and the per-dimension
``embeddings_<dim>`` tables) are imported; tables with no home in tiered (summaries,
relationships, tag metadata, ...) are counted, never dropped silently.

Each batch is one transaction through the Store (``store_episodes`` and friends: all or nothing).
After each committed batch a checkpoint file records the last source rowid per table, so an
interrupted import resumes after it; records are upserts by id, so a batch replayed after a crash
between commit and checkpoint writes nothing twice. ``dry_run`` reads and maps everything and
writes nothing.

``verify`` (on by default) reads every source row again and every record back from the
destination, and compares them by :mod:`tiered.importer.verify`, which decodes the source on its
own and writes the record back into the original's shapes: a difference names the record and the
field; fields with no home in tiered are counted by name (:attr:`ImportReport.dropped`).
A row that does not map is an :class:`Issue` naming it; :attr:`ImportReport.ok` is false when
more rows were skipped than ``max_skipped`` allows, or the verification found a difference or
did not cover every imported record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tiered.analysis.sources import Target, detect_layout, open_target
from tiered.db.driver import Row
from tiered.errors import ConfigError, DatabaseError, UnknownLayout, ValidationError
from tiered.importer.mapping import (
    map_embedding,
    map_episode,
    map_heuristic,
    map_pattern,
    unmappable,
)
from tiered.importer.verify import Check, check_record
from tiered.progress import Progress
from tiered.store import Store, StoreConfig

__all__ = ["ImportReport", "Issue", "import_database"]

OnError = Literal["skip", "stop"]
PAGE = 500  # rows per read and per write transaction (well under a 4 MiB ws message)
#: tables of the original layout with no home in tiered: counted, reported, not imported
NO_HOME = (
    "episode_summaries",
    "episode_relationships",
    "episode_pattern_relationships",
    "episode_tags",  # imported as the episodes' tags; counted here only as orphans
    "tag_metadata",
    "procedural_memory",
    "recommendation_sessions",
    "recommendation_feedback",
    "execution_records",
    "agent_metrics",
    "task_metrics",
    "metadata",
)
#: the tables imported, in order (the per-dimension embedding tables where they exist)
EMBEDDING_TABLES = (
    "embeddings",
    "embeddings_384",
    "embeddings_1024",
    "embeddings_1536",
    "embeddings_3072",
    "embeddings_other",
)
_UNMAPPABLE = unmappable()


@dataclass(frozen=True)
class Issue:
    """A source row that could not be imported as it is."""

    table: str
    row_id: str
    message: str


@dataclass
class ImportReport:
    read: dict[str, int] = field(default_factory=dict)
    imported: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)  # already there, equal: not written
    seconds: dict[str, float] = field(default_factory=dict)  # time spent per table
    issues: list[Issue] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # fields with no home: records, by name
    not_imported: dict[str, int] = field(default_factory=dict)  # tables with no home: rows
    orphans: dict[str, int] = field(default_factory=dict)
    fts_duplicates: int = 0
    resumed: dict[str, int] = field(default_factory=dict)  # rowid resumed after, per table
    verify: bool = True
    verified: int = 0  # records compared with their source row
    differences: list[str] = field(default_factory=list)
    max_skipped: int = 0
    dry_run: bool = False

    @property
    def skipped(self) -> dict[str, Counter[str]]:
        """Rows not imported, per table and reason (the message up to its first colon)."""
        out: dict[str, Counter[str]] = {}
        for i in self.issues:
            out.setdefault(i.table, Counter())[i.message.split(":")[0]] += 1
        return out

    @property
    def unverified(self) -> int:
        """Imported (or unchanged) records the verification did not compare."""
        if not self.verify or self.dry_run:
            return 0
        done = sum(self.imported.values()) + sum(self.unchanged.values())
        return max(0, done - self.verified)

    @property
    def ok(self) -> bool:
        """Nothing lost beyond what was allowed: at most ``max_skipped`` rows skipped, no
        difference, every record verified (when verifying)."""
        return len(self.issues) <= self.max_skipped and not self.differences and not self.unverified

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["issues"] = [i.__dict__ for i in self.issues]
        d["skipped"] = {t: dict(c) for t, c in self.skipped.items()}
        d["unverified"] = self.unverified
        d["ok"] = self.ok
        return d


def _mappers(tags: dict[str, list[str]], tables: set[str]) -> dict[str, Callable[[Any], Any]]:
    """Per table present in the source, in import order, what a source row becomes."""
    out: dict[str, Callable[[Any], Any]] = {
        "episodes": lambda r: map_episode(r, tags.get(r["episode_id"], ())),
        "patterns": map_pattern,
        "heuristics": map_heuristic,
    }
    out |= {t: map_embedding for t in EMBEDDING_TABLES if t in tables}
    return {t: m for t, m in out.items() if t in tables}


def _kind(table: str) -> str:
    """The Store's record kind of a source table (``embeddings_384`` -> ``embeddings``)."""
    return "embeddings" if table.startswith("embeddings") else table


def _load_checkpoint(path: Path | None) -> dict[str, int]:
    if path is None or not path.exists():
        return {}
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as e:
        raise ConfigError(f"checkpoint {path} is not readable: {e}") from e


def _save_checkpoint(path: Path | None, state: dict[str, int]) -> None:
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)  # a crash leaves the old checkpoint or the new one, never half of one


def _row_id(table: str, row: dict[str, Any], rowid: int) -> str:
    return str(row.get(f"{_kind(table)[:-1]}_id", rowid))


async def _pages(
    src: Target, table: str, after: int, issues: list[Issue] | None = None
) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
    """Pages of ``(rowid, row)`` after ``after``, in rowid order. A page that does not read
    (text that is not valid UTF-8 fails the whole answer) is read again row by row, and each
    row that still fails becomes an :class:`Issue` naming it."""
    cols = [str(r[1]) for r in await src.query(f'PRAGMA table_info("{table}")')]
    key = f"{_kind(table)[:-1]}_id"
    key = key if key in cols else cols[0]
    sql = f'SELECT rowid AS _rowid, * FROM "{table}"'
    while True:
        try:
            rows = await src.query(f"{sql} WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, PAGE))
            if not rows:
                return
            last = int(rows[-1][0] or 0)
        except DatabaseError:
            ids = await src.query(
                f'SELECT rowid, CAST("{key}" AS BLOB) FROM "{table}" WHERE rowid > ? '
                "ORDER BY rowid LIMIT ?",
                (after, PAGE),
            )
            if not ids:
                return
            last = int(ids[-1][0] or 0)
            rows = []
            for rowid, rid in ids:
                try:
                    rows += await src.query(f"{sql} WHERE rowid = ?", (rowid,))
                except DatabaseError as e:
                    name = rid.decode(errors="replace") if isinstance(rid, bytes) else str(rid)
                    if issues is not None:
                        issues.append(Issue(table, name, f"does not read: {e}"))
        if rows:
            yield [(int(r[0] or 0), dict(zip(cols, r[1:], strict=True))) for r in rows]
        after = last  # past every row tried: one that does not read is reported once


async def _survey(src: Target, tables: set[str], report: ImportReport) -> dict[str, list[str]]:
    """Count what has no home (tables, orphans, duplicate FTS rows) and read the episodes'
    tags."""
    for t in NO_HOME:
        if t in tables and t != "episode_tags":
            n = int((await src.query(f'SELECT count(*) FROM "{t}"'))[0][0] or 0)
            if n:
                report.not_imported[t] = n
    tags: dict[str, list[str]] = {}
    if "episode_tags" in tables:
        for eid, tag in await _column_pages(src, "episode_tags", "episode_id, tag"):
            tags.setdefault(str(eid), []).append(str(tag))
        known = {str(r[0]) for r in await _column_pages(src, "episodes", "episode_id")}
        report.orphans["episode_tags"] = sum(1 for e in tags if e not in known)
    # foreign keys are off in the original: rows may point at episodes that are gone
    for t, col in (
        ("episode_summaries", "episode_id"),
        ("episode_relationships", "from_episode_id"),
        ("episode_relationships", "to_episode_id"),
    ):
        if t in tables:
            gone = await src.query(
                f'SELECT count(*) FROM "{t}" WHERE "{col}" NOT IN (SELECT episode_id FROM episodes)'
            )
            if int(gone[0][0] or 0):
                report.orphans[f"{t}.{col}"] = int(gone[0][0] or 0)
    if "episodes_fts" in tables:
        dup = await src.query("SELECT count(*) - count(DISTINCT episode_id) FROM episodes_fts")
        report.fts_duplicates = int(dup[0][0] or 0)
    return tags


async def import_database(
    source: str,
    dest: str,
    *,
    source_token: str | None = None,
    dest_token: str | None = None,
    dry_run: bool = False,
    verify: bool = True,
    on_error: OnError = "skip",
    max_skipped: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> ImportReport:
    """Import ``source`` (the original layout) into ``dest`` (see the module docstring).

    ``on_error``: ``"skip"`` reports a row that does not map (with its id and why) and goes on;
    ``"stop"`` raises :class:`ValidationError` for it before its batch is written (batches
    already committed stay: the checkpoint resumes after them). ``max_skipped`` is how many
    skipped rows :attr:`ImportReport.ok` allows. Raises :class:`UnknownLayout` when the source
    is not of the original layout.
    """
    if on_error not in ("skip", "stop"):
        raise ConfigError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    if max_skipped < 0:
        raise ConfigError(f"max_skipped must be >= 0, got {max_skipped}")
    ck = Path(checkpoint) if checkpoint is not None else None
    state = _load_checkpoint(ck)
    report = ImportReport(
        dry_run=dry_run, resumed=dict(state), verify=verify, max_skipped=max_skipped
    )
    src = await open_target(source, auth_token=source_token)
    store: Store | None = None
    try:
        layout = await detect_layout(src)
        if layout != "original":
            raise UnknownLayout(f"the source is of the {layout} layout, not the original one")
        tables = set(await src.tables())
        tags = await _survey(src, tables, report)
        present: dict[str, set[str]] = {}
        if not dry_run:
            store = await Store.open(
                dest, auth_token=dest_token, config=StoreConfig(dictionary_after=0)
            )
            present = await _present_ids(dest, dest_token)
        for table, mapper in _mappers(tags, tables).items():
            await _import_table(
                src, store, table, mapper, state, ck, report, present, on_error, progress
            )
        if verify and store is not None:
            skipped = {(i.table, i.row_id) for i in report.issues}
            check = await _verify(src, store, tags, tables, skipped, progress)
            report.verified, report.differences = check.checked, check.differences
            report.dropped = dict(sorted(check.dropped.items()))
    finally:
        if store is not None:
            await store.close()
        await src.close()
    return report


async def _import_table(
    src: Target,
    store: Store | None,
    table: str,
    mapper: Callable[[Any], Any],
    state: dict[str, int],
    ck: Path | None,
    report: ImportReport,
    present: dict[str, set[str]],
    on_error: OnError,
    progress: bool,
) -> None:
    """Read, map and write one table, a page (one transaction) at a time."""
    total = int((await src.query(f'SELECT count(*) FROM "{table}"'))[0][0] or 0)
    bar = Progress(total, f"import {table}", enabled=progress)
    started = time.perf_counter()
    report.read.setdefault(table, 0)
    report.imported.setdefault(table, 0)
    # the write of a batch (a network round trip on a server) overlaps reading and mapping the
    # next page; the checkpoint moves only after its batch committed
    writing: asyncio.Task[None] | None = None
    try:
        async for page in _pages(src, table, state.get(table, 0), report.issues):
            batch = []
            for rowid, row in page:
                report.read[table] += 1
                try:
                    batch.append(mapper(row))
                except ConfigError:
                    raise  # this installation cannot read the row (a missing library): stop
                except _UNMAPPABLE as e:
                    rid = _row_id(table, row, rowid)
                    report.issues.append(Issue(table, rid, f"{type(e).__name__}: {e}"))
                    if on_error == "stop":
                        raise ValidationError(f"{table}[{rid}]", f"does not import: {e}") from e
            if writing is not None:
                await writing
            if store is not None and batch:
                there = present.get(_kind(table), set())
                same = await _already_there(store, table, [r for r in batch if r.id in there])
                if same:
                    batch = [r for r in batch if r.id not in same]
                    report.unchanged[table] = report.unchanged.get(table, 0) + len(same)
            if store is None:
                report.imported[table] += len(batch)
                bar.advance(len(page))
                continue
            writing = asyncio.create_task(
                _write(store, table, batch, page[-1][0], state, ck, report, bar, len(page))
            )
        if writing is not None:
            await writing
    finally:
        if writing is not None and not writing.done():
            # stopped by a bad row or an error: the batch already sent still commits (or
            # fails) before the error goes up, and its checkpoint moves
            with contextlib.suppress(Exception):
                await writing
    report.seconds[table] = time.perf_counter() - started


async def _write(
    store: Store,
    table: str,
    batch: list[Any],
    last_rowid: int,
    state: dict[str, int],
    ck: Path | None,
    report: ImportReport,
    bar: Progress,
    rows: int,
) -> None:
    """Commit one batch (one transaction), then move the checkpoint past its source rows."""
    if batch:
        await getattr(store, f"store_{_kind(table)}")(batch)
    report.imported[table] += len(batch)
    state[table] = last_rowid
    _save_checkpoint(ck, state)
    bar.advance(rows)


async def _column_pages(src: Target, table: str, columns: str) -> list[Row]:
    """A few columns of every row, read in pages (one answer stays under a ws message's
    4 MiB limit however big the table)."""
    out: list[Row] = []
    after = -1
    while True:
        page = await src.query(
            f'SELECT rowid, {columns} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT 20000',
            (after,),
        )
        if not page:
            return out
        out += [tuple(r[1:]) for r in page]
        after = int(page[-1][0] or 0)


async def _present_ids(dest: str, token: str | None) -> dict[str, set[str]]:
    """The record ids the destination holds already, per table (read-only, paged): only those
    records are compared before writing, so a fresh import pays nothing for it."""
    target = await open_target(dest, auth_token=token)
    out: dict[str, set[str]] = {}
    try:
        for table in ("episodes", "patterns", "heuristics", "embeddings"):
            out[table] = {str(r[0]) for r in await _column_pages(target, table, "id")}
    finally:
        await target.close()
    return out


async def _read_back(store: Store, table: str, ids: list[str]) -> list[Any]:
    """The destination's records for ``ids``, in order, ``None`` where missing (episodes in a
    few queries, the others one by one)."""
    kind = _kind(table)
    if kind == "episodes":
        return list(await store.get_episodes(ids))
    get = getattr(store, f"get_{kind[:-1]}")
    return [await get(i) for i in ids]


async def _already_there(store: Store, table: str, batch: list[Any]) -> set[str]:
    """Ids of ``batch`` whose record is already in the destination, equal: a rerun of an
    import (without its checkpoint) writes nothing it wrote before."""
    found = await _read_back(store, table, [r.id for r in batch])
    return {r.id for r, f in zip(batch, found, strict=True) if f is not None and f == r}


async def _verify(
    src: Target,
    store: Store,
    tags: dict[str, list[str]],
    tables: set[str],
    skipped: set[tuple[str, str]],
    progress: bool,
) -> Check:
    """Every source row of an imported table, read again, against its record read back from
    the destination (:mod:`tiered.importer.verify`); the rows this import skipped
    (``(table, id)``: its issues) are left out. A row skipped by an earlier run of a resumed
    import is not among them: it shows as missing from the destination."""
    check = Check()
    for table in _mappers(tags, tables):
        total = int((await src.query(f'SELECT count(*) FROM "{table}"'))[0][0] or 0)
        bar = Progress(total, f"verify {table}", enabled=progress)
        async for page in _pages(src, table, 0):
            rows = [(_row_id(table, row, rowid), row) for rowid, row in page]
            rows = [(k, row) for k, row in rows if (table, k) not in skipped]
            found = await _read_back(store, table, [k for k, _ in rows])
            for (key, row), record in zip(rows, found, strict=True):
                check_record(table, row, record, tags.get(key) if table == "episodes" else None,
                             check)  # fmt: skip
            bar.advance(len(page))
    return check
