"""``tiered import``: a database of the original layout onto tiered -- faithful, idempotent,
resumable, and the source untouched."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.test_analysis import checksums_file
from tiered import Store, UnknownLayout, ValidationError
from tiered.analysis import open_target
from tiered.importer import (
    _DECODE_STEPS,
    _prechecked_step,
    _step,
    _steps,
    _verify,
    import_database,
    map_pattern,
)
from tiered.model import PatternKind
from tiered.workload.legacy import envelope, write_legacy_database


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "memory.db"
    write_legacy_database(path, episodes=400, weeks=2, seed=21, embeddings=60, dim=16)
    return path


@pytest.fixture
def source(source_db: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "source.db"
    shutil.copy(source_db, dest)
    return dest


async def test_import_is_faithful_idempotent_and_leaves_the_source_alone(
    source: Path, tmp_path: Path
) -> None:
    before = checksums_file(source)
    dest = f"file:{tmp_path / 'tiered.db'}"
    report = await import_database(f"file:{source}", dest, progress=False)
    assert checksums_file(source) == before
    assert report.read["episodes"] == 400 and report.imported["episodes"] == 400
    assert report.imported["heuristics"] == 100 and report.imported["embeddings"] == 60
    assert report.imported["patterns"] == 200 and 0 < report.patterns_unrecovered < 60
    assert not report.issues and not report.differences
    assert report.verified == 400 + 200 + 100 + 60
    assert report.not_imported["episode_summaries"] == 101  # counted, not dropped silently
    assert report.orphans["episode_tags"] == 3 and report.fts_duplicates == 8
    assert report.orphans["episode_summaries.episode_id"] == 1
    assert report.orphans["episode_relationships.from_episode_id"] == 1
    async with await Store.open(dest) as s:
        # the original's times are epoch seconds: now microseconds
        eps = await s.query_episodes_since(0, limit=1000)
        assert len(eps) == 400 and all(e.start_time % 1_000_000 == 0 for e in eps)
        changes = s.stats()["cache"]["coherence"]["last_change"]
    again = await import_database(f"file:{source}", dest, progress=False)  # a no-op
    assert sum(again.imported.values()) == 0 and not again.differences
    assert again.unchanged == report.imported  # everything found there, equal
    async with await Store.open(dest) as s:
        assert len(await s.query_episodes_since(0, limit=1000)) == 400
        assert s.stats()["cache"]["coherence"]["last_change"] == changes  # nothing written


async def test_a_checkpoint_resumes_after_the_last_committed_batch(
    source: Path, tmp_path: Path
) -> None:
    dest = f"file:{tmp_path / 'tiered.db'}"
    ck = tmp_path / "import.checkpoint"
    ck.write_text('{"episodes": 200}')  # as if the import had stopped after rowid 200
    db = sqlite3.connect(source)
    rest = db.execute("SELECT count(*) FROM episodes WHERE rowid > 200").fetchone()[0]
    db.close()
    report = await import_database(f"file:{source}", dest, checkpoint=ck, progress=False)
    assert report.resumed == {"episodes": 200} and report.imported["episodes"] == rest
    async with await Store.open(dest) as s:
        assert len(await s.query_episodes_since(0, limit=1000)) == rest
    # the checkpoint now holds every table's last rowid: a rerun imports nothing
    again = await import_database(f"file:{source}", dest, checkpoint=ck, progress=False)
    assert sum(again.imported.values()) == 0


async def test_bad_rows_are_reported_with_their_id_or_stop_the_import(
    source: Path, tmp_path: Path
) -> None:
    db = sqlite3.connect(source)
    good = envelope(b'{"agent": "coder"}', "gzip")
    head, body = good.split("\n", 1)
    lying = head.replace(":18", ":99") + "\n" + body  # the size does not match
    ids = [r[0] for r in db.execute("SELECT episode_id FROM episodes ORDER BY rowid LIMIT 5")]
    garbled = head + "\n" + "bm90IHpzdGQgZGF0YQ=="  # base64 of bytes that are not zstd
    db.execute(
        "UPDATE episodes SET metadata = ? WHERE episode_id = ?",
        (garbled.replace("gzip", "zstd"), ids[4]),
    )
    db.execute("UPDATE episodes SET metadata = ? WHERE episode_id = ?", (lying, ids[0]))
    db.execute("UPDATE episodes SET steps = '[{not json' WHERE episode_id = ?", (ids[1],))
    # text that is not UTF-8 (the original never checked): sqlite3 cannot even read the row
    db.execute(
        "UPDATE episodes SET task_description = CAST(x'ff41' AS TEXT) WHERE episode_id = ?",
        (ids[3],),
    )
    db.execute(
        "UPDATE embeddings SET embedding_data = '[1.0, 2.0]' "
        "WHERE rowid = (SELECT min(rowid) FROM embeddings)"
    )
    db.commit()
    db.close()
    dest = f"file:{tmp_path / 'tiered.db'}"
    report = await import_database(f"file:{source}", dest, progress=False)
    bad = {(i.table, i.row_id) for i in report.issues}
    assert {("episodes", ids[i]) for i in (0, 1, 3, 4)} <= bad
    assert any(t == "embeddings" for t, _ in bad)
    assert report.imported["episodes"] == 396 and not report.differences
    with pytest.raises(ValidationError, match=ids[0]):
        await import_database(
            f"file:{source}", f"file:{tmp_path / 'other.db'}", on_error="stop", progress=False
        )


async def test_dry_run_writes_nothing_and_other_layouts_are_refused(
    source: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "never.db"
    report = await import_database(f"file:{source}", f"file:{dest}", dry_run=True, progress=False)
    assert report.dry_run and report.imported["episodes"] == 400 and not dest.exists()
    tiered_db = f"file:{tmp_path / 't.db'}"
    async with await Store.open(tiered_db):
        pass
    with pytest.raises(UnknownLayout):
        await import_database(tiered_db, f"file:{tmp_path / 'x.db'}", progress=False)


def test_pattern_kinds_are_recovered_from_the_original_debug_dump() -> None:
    row = {
        "pattern_id": "p1",
        "pattern_data": '{"description": "retry"}',
        "success_rate": 0.5,
        "context_domain": "web-api",
        "occurrence_count": 3,
    }
    dump = 'ErrorRecovery { error_type: "timeout", recovery_steps: ["wait, then retry", "b"] }'
    p, ok = map_pattern({**row, "pattern_type": dump})
    assert ok and p.kind is PatternKind.ERROR_RECOVERY
    assert p.body.recovery_steps == ("wait, then retry", "b")  # type: ignore[union-attr]
    p, ok = map_pattern({**row, "pattern_type": "Pattern { id: 7, Tool"})
    assert not ok and p.kind is PatternKind.CONTEXT_PATTERN
    assert p.body.features == ("Pattern { id: 7, Tool",)  # type: ignore[union-attr]


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
_DEEP: object = "x"
for _ in range(40):
    _DEEP = {"a": _DEEP}
_step_docs = st.fixed_dictionaries(
    {"tool": st.one_of(st.sampled_from(["run_tests", "", " \t", "x" * 129, "t\x00"]),
                       st.text(max_size=4), st.integers(), st.none())},
    optional={
        "action": st.one_of(st.text(max_size=5), st.none(), st.integers()),
        "parameters": st.one_of(
            st.dictionaries(st.text(max_size=3), _values, max_size=3),
            st.none(), st.lists(_scalars, max_size=2), st.just({"deep": _DEEP}),
        ),
        "result": st.one_of(
            st.none(), st.text(max_size=3),
            st.fixed_dictionaries({}, optional={
                "type": st.sampled_from(["success", "Error", "TIMEOUT", "nope", None, 3]),
                "output": st.one_of(st.none(), st.text(max_size=5), st.integers()),
            }),
        ),
        "latency_ms": st.one_of(
            st.none(), st.floats(-5, 1e9), st.integers(-3, 10**6), st.booleans(), st.just("12")
        ),
        "tokens_used": st.one_of(
            st.none(), st.integers(-2, 2**63 + 5), st.floats(0, 10), st.booleans()
        ),
        "timestamp": st.one_of(st.none(), st.integers(0, 2**40)),
        "metadata": st.one_of(
            st.none(), st.just({}), st.dictionaries(st.text(max_size=2), _scalars)
        ),
    },
)  # fmt: skip


def _outcome_of(f: Callable[[], object]) -> object:
    try:
        return ("ok", f())
    except Exception as e:  # compared below: the same error, named the same way
        return ("error", type(e), str(e))


@settings(max_examples=400, deadline=None)
@given(st.lists(_step_docs, max_size=4))
# found by this test: the fast path named a later step's unknown result kind before an earlier
# step's empty tool name
@example([{"tool": "", "result": {"type": "success"}},
          {"tool": "run_tests", "result": {"type": "nope"}}])  # fmt: skip
def test_the_fast_path_of_steps_builds_what_the_constructor_builds(docs: list[Any]) -> None:
    """Steps built from raw JSON without the model's checks (see ``_prechecked_step``) equal
    the constructor's on every document, and a document the constructor refuses is refused
    with the constructor's own error."""
    text = json.dumps(docs)
    slow = _outcome_of(lambda: tuple(_step(d) for d in docs))
    got = _outcome_of(lambda: _steps(text)[0])
    assert got == slow
    if "\\u0000" in text:
        return  # (the fast path's precondition: no NUL anywhere in the text)
    with contextlib.suppress(msgspec.DecodeError):
        for typed, doc in zip(_DECODE_STEPS(text), docs, strict=True):
            fast = _prechecked_step(typed)
            if fast is not None:  # taken: the constructor accepts it and builds the same
                assert fast == _step(doc)


def test_the_fast_path_takes_every_step_of_the_original_layout(source_db: Path) -> None:
    with sqlite3.connect(source_db) as db:
        texts = [r[0] for r in db.execute("SELECT steps FROM episodes")]
    plain = [t for t in texts if not t.startswith("__compressed__")]
    assert len(plain) > 300
    for t in plain:
        assert all(_prechecked_step(d) is not None for d in _DECODE_STEPS(t))


async def test_before_and_after_on_the_same_data(source: Path, tmp_path: Path) -> None:
    from tiered.compare import compare_layouts

    dest = f"file:{tmp_path / 'tiered.db'}"
    await import_database(f"file:{source}", dest, verify=False, progress=False)
    table = await compare_layouts(f"file:{source}", dest, repeat=2)
    by = {r["measure"].split(" ms")[0]: r for r in table.iter_rows(named=True)}
    assert by["bytes on disk"]["tiered"] < by["bytes on disk"]["original"]
    assert by["episode payload bytes"]["ratio"] < 0.6
    meta = by["query_episodes_by_metadata"]
    # a scan that fails on the original layout (enveloped metadata), an index lookup in tiered's
    assert meta["original_plan"] == "SCAN episodes" and meta["original"] is None
    assert "malformed JSON" in meta["note"] and meta["tiered_rows"] > 0
    assert by["get_episode"]["original_rows"] == by["get_episode"]["tiered_rows"] == 1


def test_kill_9_of_the_importing_process_then_resume(tmp_path: Path) -> None:
    import asyncio
    import os
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "big.db"
    write_legacy_database(src, episodes=4000, weeks=4, seed=22, embeddings=0)
    ck, dest = tmp_path / "import.ck", tmp_path / "tiered.db"
    cmd = [sys.executable, "-m", "tiered", "import", f"file:{src}", f"file:{dest}",
           "--checkpoint", str(ck), "--no-verify", "--no-compare"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if ck.exists() and '"episodes"' in ck.read_text():
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # mid-import: after at least one committed batch
    proc.wait()
    import json

    assert 0 < json.loads(ck.read_text())["episodes"] < 4000  # it really stopped half-way
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    clean = tmp_path / "clean.db"
    asyncio.run(import_database(f"file:{src}", f"file:{clean}", verify=False, progress=False))

    def episodes(path: Path) -> list[tuple[object, ...]]:
        db = sqlite3.connect(path)
        try:
            return db.execute(
                "SELECT id, task_type, start_time, end_time, reward FROM episodes ORDER BY id"
            ).fetchall()
        finally:
            db.close()

    resumed, uninterrupted = episodes(dest), episodes(clean)
    assert len(resumed) == 4000 and resumed == uninterrupted  # no duplicate, no gap


async def test_import_between_sqld_servers_and_a_killed_destination(
    source_db: Path, sqld_binary: Path, tmp_path: Path
) -> None:
    """The source served by one sqld, the destination another; the destination is killed
    (kill -9) in the middle of the import, restarted, and the import resumed from its
    checkpoint: the result is complete, equal to the source, without duplicates."""
    from tests.test_analysis import checksums_url
    from tiered import DatabaseUnavailable
    from tiered.devserver import SqldProcess, free_port

    data = tmp_path / "src" / "dbs" / "default"
    data.mkdir(parents=True)
    shutil.copy(source_db, data / "data")
    src = SqldProcess(sqld_binary, tmp_path / "src", free_port(), log_path=tmp_path / "s.log")
    dst = SqldProcess(sqld_binary, tmp_path / "dst", free_port(), log_path=tmp_path / "d.log")
    src.start()
    dst.start()
    try:
        before = await checksums_url(src.http_url)
        ck = tmp_path / "import.ck"
        killed = ""

        async def kill_after_first_batches() -> None:
            nonlocal killed
            # the checkpoint file is written by the import: polled, there is no event for it
            while not ck.exists() or '"episodes"' not in ck.read_text():  # noqa: ASYNC110
                await asyncio.sleep(0.002)
            dst.kill()
            killed = ck.read_text()

        killer = asyncio.create_task(kill_after_first_batches())
        with pytest.raises(DatabaseUnavailable):
            await import_database(
                src.ws_url, dst.ws_url, checkpoint=ck, verify=False, progress=False
            )
        await killer
        assert "embeddings" not in json.loads(killed)  # killed before the import was done
        dst.start()  # same port, same data
        report = await import_database(src.ws_url, dst.ws_url, checkpoint=ck, progress=False)
        assert not report.differences and report.verified == 760
        async with await Store.open(dst.ws_url) as s:
            assert len(await s.query_episodes_since(0, limit=1000)) == 400
        again = await import_database(src.ws_url, dst.ws_url, progress=False)
        assert sum(again.imported.values()) == 0
        assert await checksums_url(src.http_url) == before
    finally:
        dst.stop()
        src.stop()


async def test_a_row_that_does_not_read_is_reported_once_wherever_it_stands(
    source: Path, tmp_path: Path
) -> None:
    db = sqlite3.connect(source)
    last = db.execute("SELECT episode_id FROM episodes ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    db.execute(
        "UPDATE episodes SET task_description = CAST(x'ff41' AS TEXT) WHERE episode_id = ?",
        (last,),
    )
    db.commit()
    db.close()
    report = await import_database(
        f"file:{source}", f"file:{tmp_path / 'tiered.db'}", progress=False
    )
    assert [(i.table, i.row_id) for i in report.issues] == [("episodes", last)]
    assert report.imported["episodes"] == 399


async def test_verification_names_each_record_missing_from_the_destination(
    source: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "tiered.db"
    await import_database(f"file:{source}", f"file:{dest}", verify=False, progress=False)
    db = sqlite3.connect(dest)
    gone_episode = db.execute("SELECT id FROM episodes ORDER BY id LIMIT 1").fetchone()[0]
    gone_heuristic = db.execute("SELECT id FROM heuristics ORDER BY id LIMIT 1").fetchone()[0]
    db.execute("DELETE FROM episodes WHERE id = ?", (gone_episode,))
    db.execute("DELETE FROM heuristics WHERE id = ?", (gone_heuristic,))
    db.commit()
    db.close()
    tags: dict[str, list[str]] = {}
    with contextlib.closing(sqlite3.connect(source)) as db:
        for eid, tag in db.execute("SELECT episode_id, tag FROM episode_tags"):
            tags.setdefault(eid, []).append(tag)
    src = await open_target(f"file:{source}")
    try:
        async with await Store.open(f"file:{dest}") as store:
            checked, diffs = await _verify(src, store, tags)
    finally:
        await src.close()
    assert checked == 400 + 200 + 100 + 60
    assert sorted(d.split(":")[0] for d in diffs) == [
        f"episodes {gone_episode}",
        f"heuristics {gone_heuristic}",
    ]
