"""``tiered import``: move a database of the original system's layout onto tiered, resumably.

The source is opened read-only (:func:`tiered.analysis.open_target`: only reads are ever sent).
Rows are read in rowid order, a page at a time, decoded (compressed envelopes opened, JSON
``"null"`` and SQL NULL both "absent", epoch seconds to microseconds) and mapped onto tiered's
records:

* episodes with their steps, outcome variant, reward (its ``total``), reflection, metadata, pattern
  and heuristic ids, and their tags (from ``episode_tags``); ``checkpoints`` and ``archived_at``
  have no home in tiered and are counted in :attr:`ImportReport.dropped`;
* heuristics with their evidence; embeddings of any dimension (JSON array, envelope, or the native
  vector when the JSON is absent); patterns, whose kind is recovered from the original's debug
  dump where it names one (``ToolSequence``, ``DecisionPoint``, ``ErrorRecovery``,
  ``ContextPattern``), otherwise kept as a ``ContextPattern`` holding the dump (counted);
* tables with no home (summaries, relationships, tag metadata, ...) are counted, never dropped
  silently.

Each batch is one transaction through the Store (``store_episodes`` and friends: all or nothing).
After each committed batch a checkpoint file records the last source rowid per table, so an
interrupted import resumes after it; records are upserts by id, so a batch replayed after a crash
between commit and checkpoint writes nothing twice. ``dry_run`` reads and maps everything and
writes nothing. ``verify`` reads every imported record back through the Store and compares it
with the mapping of its source row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from tiered.analysis.profile import opened
from tiered.analysis.sources import Target, detect_layout, open_target
from tiered.db.driver import Row
from tiered.errors import (
    ConfigError,
    CorruptPayload,
    DatabaseError,
    UnknownLayout,
    ValidationError,
)
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
from tiered.progress import Progress
from tiered.store import Store, StoreConfig
from tiered.validation import check_json

__all__ = ["ImportReport", "Issue", "import_database", "map_episode", "map_pattern"]

OnError = Literal["skip", "stop"]
PAGE = 500  # rows per read and per write transaction (well under a 4 MiB ws message)
#: tables of the original layout with no home in tiered: counted, reported, not imported
NO_HOME = (
    "episode_summaries",
    "episode_relationships",
    "episode_pattern_relationships",
    "tag_metadata",
    "procedural_memory",
    "recommendation_sessions",
    "recommendation_feedback",
    "execution_records",
    "agent_metrics",
    "task_metrics",
    "metadata",
)


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
    dropped: dict[str, int] = field(default_factory=dict)  # fields with no home, per field
    not_imported: dict[str, int] = field(default_factory=dict)  # tables with no home: rows
    patterns_unrecovered: int = 0
    orphans: dict[str, int] = field(default_factory=dict)
    fts_duplicates: int = 0
    resumed: dict[str, int] = field(default_factory=dict)  # rowid resumed after, per table
    verified: int = 0
    differences: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["issues"] = [i.__dict__ for i in self.issues]
        return d


# -- decoding ---------------------------------------------------------------------------------


def _json(v: Any) -> Any:
    """A column's JSON value (envelopes opened); ``None`` for SQL NULL and JSON ``null``."""
    if v is None:
        return None
    text = opened(v) if isinstance(v, str) else v
    if not isinstance(text, str | bytes):
        raise CorruptPayload(f"a JSON column holds a {type(text).__name__}")
    try:
        # msgspec: 2.5x json.loads here, and it refuses what tiered's records refuse anyway
        # (NaN and Infinity, lone UTF-16 surrogates)
        return _DECODE(text)
    except msgspec.DecodeError as e:
        raise CorruptPayload(f"not JSON: {e}") from e


_DECODE = msgspec.json.Decoder().decode


def _seconds(v: Any) -> int | None:
    return None if v is None else int(v) * 1_000_000


def _outcome(d: Any) -> Outcome | None:
    if not isinstance(d, dict):
        return None
    kind = str(d.get("type", "")).lower().replace("partialsuccess", "partial_success")
    if kind == "success":
        return Success(d.get("verdict", ""), tuple(d.get("artifacts") or ()))
    if kind == "partial_success":
        return PartialSuccess(
            d.get("verdict", ""), tuple(d.get("completed") or ()), tuple(d.get("failed") or ())
        )
    if kind == "failure":
        return Failure(d.get("reason", ""), d.get("error_details"))
    if kind == "abstained":
        return Abstained(d.get("reason", ""))
    raise CorruptPayload(f"unknown outcome type {d.get('type')!r}")


def _step(d: dict[str, Any]) -> ExecutionStep:
    r = d.get("result")
    result = None
    if isinstance(r, dict):
        result = StepResult(str(r.get("type", "success")).lower(), r.get("output") or "")
    return ExecutionStep(
        d["tool"],
        d.get("action", ""),
        d.get("parameters") or {},
        result,
        float(d.get("latency_ms") or 0.0),
        d.get("tokens_used"),
    )


class _ResultDoc(msgspec.Struct):
    type: str = "success"
    output: str | None = None


class _StepDoc(msgspec.Struct):
    """A step of the original layout, typed: what :func:`_step` reads, in the types it accepts
    without converting (anything else fails the typed decode and takes :func:`_step`)."""

    tool: str
    action: str = ""
    parameters: dict[str, Any] | None = None
    result: _ResultDoc | None = None
    latency_ms: float | None = None
    tokens_used: int | None = None
    timestamp: Any = None
    metadata: Any = None


_DECODE_STEPS = msgspec.json.Decoder(list[_StepDoc]).decode


def _prechecked_step(d: _StepDoc) -> ExecutionStep | None:
    """The step of a typed document, or ``None`` where a rule of :class:`ExecutionStep` may
    fail (the caller then builds it with the constructor, which names the problem).

    Decoded by msgspec from JSON text that holds no ``\\u0000`` escape, every string is valid
    Unicode without NUL, every number finite and every key a string; what JSON does not
    guarantee is checked here: the tool's name, the latency's and the token count's ranges,
    the result's kind, nested parameters (walked by the model's own check)."""
    tool, params, latency, tokens = d.tool, d.parameters or {}, d.latency_ms or 0.0, d.tokens_used
    if (
        not 0 < len(tool) <= MAX_NAME_LEN
        or tool.isspace()
        or latency < 0
        or (tokens is not None and not 0 <= tokens <= 2**62)
    ):
        return None
    for v in params.values():
        if type(v) is dict or type(v) is list:
            try:
                params = check_json("step.parameters", params)  # type: ignore[assignment]
            except ValidationError:
                return None  # the constructor names it (after any earlier step's problem)
            break
    r, result = d.result, None
    if r is not None:
        kind = r.type.lower()
        if kind not in StepResult.KINDS:
            return None  # the constructor names it, after any earlier step's problem
        result = StepResult(kind, r.output or "")
    return ExecutionStep.prechecked(tool, d.action, params, result, float(latency), tokens)


def _steps(v: Any) -> tuple[tuple[ExecutionStep, ...], list[str]]:
    """The steps of a ``steps`` column, and the names of their fields that have no home
    (``timestamp``, non-empty ``metadata``). Typed decoding and :func:`_prechecked_step` where
    they apply (3x faster), else the general decoding and the constructor: same steps, same
    errors (held equal by ``tests/test_importer.py``)."""
    text = opened(v) if isinstance(v, str) else v
    if isinstance(text, str) and "\\u0000" not in text:
        with contextlib.suppress(msgspec.DecodeError):
            typed = _DECODE_STEPS(text)
            fast = [_prechecked_step(d) for d in typed]
            if None not in fast:
                stamps = any(d.timestamp is not None for d in typed)
                meta = any(bool(d.metadata) for d in typed)
                return tuple(fast), _step_drops(stamps, meta)  # type: ignore[arg-type]
    docs = _json(v) or []
    stamps = any(isinstance(d, dict) and d.get("timestamp") is not None for d in docs)
    meta = any(isinstance(d, dict) and bool(d.get("metadata")) for d in docs)
    return tuple(_step(d) for d in docs), _step_drops(stamps, meta)


def _step_drops(stamps: bool, meta: bool) -> list[str]:
    return ["episodes.steps.timestamp"] * stamps + ["episodes.steps.metadata"] * meta


def map_episode(row: dict[str, Any], tags: Sequence[str] = ()) -> tuple[Episode, list[str]]:
    """The tiered episode of a source row, and the names of its fields that have no home."""
    ctx = _json(row["context"]) or {}
    reward = _json(row["reward"])
    steps, dropped = _steps(row["steps"])
    if isinstance(reward, dict):
        if any(v is not None for k, v in reward.items() if k != "total"):
            dropped.append("episodes.reward.components")  # tiered keeps the total
        reward = reward.get("total")
    refl = _json(row["reflection"])
    outcome = _json(row["outcome"])
    if isinstance(outcome, dict):
        dropped += [
            f"episodes.outcome.{k}"
            for k in ("stopped_at_step", "infeasibility_signals")
            if outcome.get(k) not in (None, [])
        ]
    if _json(row.get("checkpoints")) not in (None, []):
        dropped.append("episodes.checkpoints")
    if row.get("archived_at") is not None:
        dropped.append("episodes.archived_at")
    episode = Episode(
        id=row["episode_id"],
        task_type=row["task_type"],
        description=row["task_description"],
        context=TaskContext(
            ctx.get("domain") or row["domain"],
            ctx.get("language") or row.get("language"),
            ctx.get("framework"),
            Complexity(str(ctx.get("complexity") or "moderate").lower()),
            tuple(ctx.get("tags") or ()),
        ),
        start_time=_seconds(row["start_time"]) or 0,
        end_time=_seconds(row["end_time"]),
        steps=steps,
        outcome=_outcome(outcome),
        reward=float(reward) if isinstance(reward, int | float) else None,
        reflection=Reflection(
            tuple(refl.get("successes") or ()),
            tuple(refl.get("improvements") or ()),
            tuple(refl.get("insights") or ()),
        )
        if isinstance(refl, dict)
        else None,
        pattern_ids=tuple(_json(row["patterns"]) or ()),
        heuristic_ids=tuple(_json(row["heuristics"]) or ()),
        metadata={str(k): str(v) for k, v in (_json(row["metadata"]) or {}).items()},
        tags=tuple(sorted(tags)),
    )
    return episode, dropped


_DUMP = re.compile(r"^\s*(ToolSequence|DecisionPoint|ErrorRecovery|ContextPattern)\s*\{(.*)\}\s*$")


def _field(body: str, name: str) -> Any:
    """A field of a Rust ``Debug`` dump: a string or a list of strings (JSON-like)."""
    m = re.search(rf'\b{name}:\s*(\[(?:[^\]"]|"(?:[^"\\]|\\.)*")*\]|"(?:[^"\\]|\\.)*")', body)
    if m is None:
        return None
    try:
        return json.loads(m.group(1))
    except ValueError:
        return None


def map_pattern(row: dict[str, Any]) -> tuple[Pattern, bool]:
    """The tiered pattern of a source row, and whether its kind was recovered from the dump
    (if not, it is kept as a ``ContextPattern`` whose features hold the whole dump)."""
    data = _json(row["pattern_data"]) or {}
    dump = str(row["pattern_type"])
    body: PatternBody | None = None
    m = _DUMP.match(dump)
    if m is not None:
        kind, inner = m.group(1), m.group(2)

        def f(name: str) -> Any:
            return _field(inner, name)

        try:
            if kind == "ToolSequence":
                body = ToolSequence(tuple(f("tools") or ()), f("context") or "")
            elif kind == "DecisionPoint":
                body = DecisionPoint(f("condition") or "", f("action") or "")
            elif kind == "ErrorRecovery":
                body = ErrorRecovery(f("error_type") or "", tuple(f("recovery_steps") or ()))
            else:
                body = ContextPattern(tuple(f("features") or ()), f("recommended_approach") or "")
        except ValidationError:
            body = None
    recovered = body is not None
    if body is None:
        body = ContextPattern((dump,), str(data.get("description") or dump)[:1000] or "-")
    pattern = Pattern(
        row["pattern_id"],
        body,
        row.get("context_domain") or "unknown",
        float(row["success_rate"]),
        0.0,
        int(row.get("occurrence_count") or 0),
    )
    return pattern, recovered


def map_heuristic(row: dict[str, Any]) -> Heuristic:
    ev = _json(row["evidence"]) or {}
    return Heuristic(
        row["heuristic_id"],
        row["condition_text"],
        row["action_text"],
        float(row["confidence"]),
        Evidence(
            tuple(ev.get("episode_ids") or ()),
            float(ev.get("success_rate") or 0.0),
            int(ev.get("sample_size") or 0),
        ),
    )


def map_embedding(row: dict[str, Any]) -> Embedding:
    vec = _json(row["embedding_data"])
    if not isinstance(vec, list):
        blob = row.get("embedding_vector")
        if not isinstance(blob, bytes):
            raise CorruptPayload("no vector: neither the JSON array nor the native column")
        vec = array("f")
        vec.frombytes(blob)
    dim = int(row.get("dimension") or len(vec))
    if len(vec) != dim:
        raise CorruptPayload(f"vector of {len(vec)} floats, the row says dimension {dim}")
    return Embedding(row["embedding_id"], row["item_id"], row["item_type"], row["model"], vec)


# -- the import -------------------------------------------------------------------------------


# what a source row that does not map raises (reported as an issue naming the row)
_UNMAPPABLE = (CorruptPayload, ValidationError, KeyError, TypeError, ValueError)


def _mappers(tags: dict[str, list[str]]) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """Per table, in import order, what a source row becomes: an episode and the names of its
    dropped fields, a pattern and whether its kind was recovered, a heuristic, an embedding."""
    return {
        "episodes": lambda r: map_episode(r, tags.get(r["episode_id"], ())),
        "patterns": map_pattern,
        "heuristics": map_heuristic,
        "embeddings": map_embedding,
    }


def _record(got: Any) -> Any:
    """The record of a mapper's answer (episodes and patterns come with a note)."""
    return got[0] if isinstance(got, tuple) else got


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


async def _pages(
    src: Target, table: str, after: int, issues: list[Issue] | None = None
) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
    """Pages of ``(rowid, row)`` after ``after``, in rowid order. A page that does not read
    (text that is not valid UTF-8 fails the whole answer) is read again row by row, and each
    row that still fails becomes an :class:`Issue` naming it."""
    cols = [str(r[1]) for r in await src.query(f'PRAGMA table_info("{table}")')]
    key = f"{table[:-1]}_id" if f"{table[:-1]}_id" in cols else cols[0]
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


async def import_database(
    source: str,
    dest: str,
    *,
    source_token: str | None = None,
    dest_token: str | None = None,
    dry_run: bool = False,
    verify: bool = True,
    on_error: OnError = "skip",
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> ImportReport:
    """Import ``source`` (the original layout) into ``dest`` (see the module docstring).

    ``on_error``: ``"skip"`` reports a row that does not map (with its id) and goes on;
    ``"stop"`` raises :class:`ValidationError` for it before its batch is written (batches
    already committed stay: the checkpoint resumes after them). Raises :class:`UnknownLayout`
    when the source is not of the original layout.
    """
    if on_error not in ("skip", "stop"):
        raise ConfigError(f"on_error must be 'skip' or 'stop', got {on_error!r}")
    ck = Path(checkpoint) if checkpoint is not None else None
    state = _load_checkpoint(ck)
    report = ImportReport(dry_run=dry_run, resumed=dict(state))
    src = await open_target(source, auth_token=source_token)
    store: Store | None = None
    try:
        layout = await detect_layout(src)
        if layout != "legacy":
            raise UnknownLayout(f"the source is of the {layout} layout, not the original one")
        tables = set(await src.tables())
        for t in NO_HOME:
            if t in tables:
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
                    f'SELECT count(*) FROM "{t}" '
                    f'WHERE "{col}" NOT IN (SELECT episode_id FROM episodes)'
                )
                if int(gone[0][0] or 0):
                    report.orphans[f"{t}.{col}"] = int(gone[0][0] or 0)
        if "episodes_fts" in tables:
            dup = await src.query("SELECT count(*) - count(DISTINCT episode_id) FROM episodes_fts")
            report.fts_duplicates = int(dup[0][0] or 0)
        present: dict[str, set[str]] = {}
        if not dry_run:
            store = await Store.open(
                dest, auth_token=dest_token, config=StoreConfig(dictionary_after=0)
            )
            present = await _present_ids(dest, dest_token)
        for table, mapper in _mappers(tags).items():
            total = int((await src.query(f'SELECT count(*) FROM "{table}"'))[0][0] or 0)
            bar = Progress(total, f"import {table}", enabled=progress)
            started = time.perf_counter()
            # the write of a batch (a network round trip on a server) overlaps reading and mapping
            # the next page; the checkpoint moves only after its batch committed
            writing: asyncio.Task[None] | None = None
            try:
                async for page in _pages(src, table, state.get(table, 0), report.issues):
                    batch = []
                    for rowid, row in page:
                        report.read[table] = report.read.get(table, 0) + 1
                        try:
                            got = mapper(row)
                        except _UNMAPPABLE as e:
                            rid = str(row.get(f"{table[:-1]}_id", rowid))
                            report.issues.append(Issue(table, rid, f"{type(e).__name__}: {e}"))
                            if on_error == "stop":
                                raise ValidationError(
                                    f"{table}[{rid}]", f"does not import: {e}"
                                ) from e
                            continue
                        if table == "episodes":
                            got, dropped = got
                            for name in dropped:
                                report.dropped[name] = report.dropped.get(name, 0) + 1
                        elif table == "patterns":
                            got, recovered = got
                            report.patterns_unrecovered += 0 if recovered else 1
                        batch.append(got)
                    if writing is not None:
                        await writing
                    if store is not None and batch:
                        there = present.get(table, set())
                        same = await _already_there(
                            store, table, [r for r in batch if r.id in there]
                        )
                        if same:
                            batch = [r for r in batch if r.id not in same]
                            report.unchanged[table] = report.unchanged.get(table, 0) + len(same)
                    if store is None:
                        report.imported[table] = report.imported.get(table, 0) + len(batch)
                        bar.advance(len(page))
                        continue
                    writing = asyncio.create_task(
                        _write(store, table, batch, page[-1][0], state, ck, report, bar, len(page))
                    )
                if writing is not None:
                    await writing
            finally:
                if writing is not None and not writing.done():
                    # stopped by a bad row or an error: the batch already sent still commits
                    # (or fails) before the error goes up, and its checkpoint moves
                    with contextlib.suppress(Exception):
                        await writing
            report.seconds[table] = time.perf_counter() - started
        if verify and store is not None:
            report.verified, report.differences = await _verify(src, store, tags)
    finally:
        if store is not None:
            await store.close()
        await src.close()
    return report


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
        await getattr(store, f"store_{table}")(batch)
    report.imported[table] = report.imported.get(table, 0) + len(batch)
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
    if table == "episodes":
        return list(await store.get_episodes(ids))
    get = getattr(store, f"get_{table[:-1]}")
    return [await get(i) for i in ids]


async def _already_there(store: Store, table: str, batch: list[Any]) -> set[str]:
    """Ids of ``batch`` whose record is already in the destination, equal: a rerun of an
    import (without its checkpoint) writes nothing it wrote before."""
    found = await _read_back(store, table, [r.id for r in batch])
    return {r.id for r, f in zip(batch, found, strict=True) if f is not None and f == r}


async def _verify(src: Target, store: Store, tags: dict[str, list[str]]) -> tuple[int, list[str]]:
    """Every mappable source record read back through the Store and compared field by field."""
    checked, diffs = 0, []
    for table, mapper in _mappers(tags).items():
        async for page in _pages(src, table, 0):
            wants = []
            for _, row in page:
                try:
                    wants.append(_record(mapper(row)))
                except _UNMAPPABLE:
                    continue  # reported as an issue by the import
            found = await _read_back(store, table, [w.id for w in wants])
            checked += len(wants)
            diffs += [
                f"{table} {want.id}: read back differs from the source row"
                for want, got in zip(wants, found, strict=True)
                if got != want
            ]
    return checked, diffs
