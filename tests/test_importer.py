"""``tiered import``: a database of the original layout onto tiered -- faithful, idempotent,
resumable, and the source untouched."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fix_original import episode_fields, expected_episode, sample_database, sample_rows
from tests.test_analysis import checksums_file
from tiered import Store, UnknownLayout, ValidationError
from tiered.analysis import open_target
from tiered.errors import ConfigError, CorruptPayload
from tiered.importer import import_database, map_pattern, mapping
from tiered.importer.run import _verify
from tiered.model import Abstained, ExecutionStep, Failure, PatternKind
from tiered.original import (
    DebugStruct,
    decode_envelope,
    envelope,
    format_rfc3339,
    parse_debug,
    parse_rfc3339,
    rust_debug_str,
)
from tiered.workload.original import write_original_database


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "memory.db"
    write_original_database(path, episodes=400, weeks=2, seed=21, embeddings=60, dim=16)
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
    assert report.imported["patterns"] == 200
    assert not report.issues and not report.differences and report.ok
    assert report.verified == 400 + 200 + 100 + 60
    assert report.dropped["episodes.steps[].timestamp"] == 400  # no home, counted by name
    assert report.not_imported["episode_summaries"] == 101  # counted, not dropped silently
    assert report.orphans["episode_tags"] == 3 and report.fts_duplicates == 8
    assert report.orphans["episode_summaries.episode_id"] == 1
    assert report.orphans["episode_relationships.from_episode_id"] == 1
    async with await Store.open(dest) as s:
        # the original's times are epoch seconds: now microseconds
        eps = await s.query_episodes_since(0, limit=1000)
        assert len(eps) == 400 and all(e.start_time % 1_000_000 == 0 for e in eps)
        changes = s.get_stats()["cache"]["coherence"]["last_change"]
    again = await import_database(f"file:{source}", dest, progress=False)  # a no-op
    assert sum(again.imported.values()) == 0 and not again.differences
    assert again.unchanged == report.imported  # everything found there, equal
    async with await Store.open(dest) as s:
        assert len(await s.query_episodes_since(0, limit=1000)) == 400
        assert s.get_stats()["cache"]["coherence"]["last_change"] == changes  # nothing written


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
    assert not report.ok and report.skipped["episodes"]["CorruptPayload"] == 3
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


# -- the original's exact encoding, from fixtures written by hand ------------------------------


def _step_json(**over: Any) -> dict[str, Any]:
    step = {"step_number": 1, "timestamp": "2026-01-05T14:03:07.5Z", "tool": "cargo",
            "action": "build", "parameters_json": '{"path":"src/a.rs"}', "result": None,
            "latency_ms": 120, "tokens_used": 350, "metadata": {}}  # fmt: skip
    return step | over


def _episode_row(eid: str, steps: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    """An episodes row as the seed note spells its columns (its examples, by hand)."""
    ctx = (
        '{"language":"rust","framework":"axum","complexity":"Moderate",'
        '"domain":"web-api","tags":["x"]}'
    )
    return {
        "episode_id": eid, "task_type": "debugging", "task_description": "fix it",
        "context": ctx, "steps": json.dumps(steps), "outcome": "null", "reward": "null",
        "reflection": "null", "patterns": "[]", "heuristics": "[]", "checkpoints": "[]",
        "metadata": '{"agent":"coder"}', "start_time": 1767225600, "end_time": 1767225660,
        "domain": "web-api", "language": "rust", "created_at": 1767225700, "archived_at": None,
    } | over  # fmt: skip


HAND = [
    ("episodes", _episode_row("hand-1", [
        _step_json(result={"Error": {"message": "exit status 4"}}),
        _step_json(step_number=2, timestamp="2026-01-05T14:03:08Z",
                   result={"Success": {"output": "ok ok"}}),
        _step_json(step_number=3, timestamp="2026-01-05T14:03:09.123456789Z", result="Timeout",
                   parameters_json="null", tokens_used=None, metadata={"retry": "2"}),
    ], outcome='{"Failure":{"reason":"tests fail","error_details":null}}',
        reward='{"total":0.25,"base":1.0,"efficiency":1.1,"complexity_bonus":1.0,'
               '"quality_multiplier":1.0,"learning_bonus":0.1,"abstention_score":0.0}')),
    ("episodes", _episode_row("hand-2", [
        {k: v for k, v in _step_json().items() if k != "parameters_json"}
        | {"parameters": {"path": "src/b.rs", "deep": [1, {"k": None}]}},
    ], outcome='{"Abstained":{"reason":"no creds","stopped_at_step":1,'
               '"infeasibility_signals":["401"]}}',
        reward=None, reflection=None,
        metadata=envelope(b'{"agent":"planner","ticket":"T-1"}', "lz4"),
        patterns=envelope(b'["p1"]', "gzip"), heuristics=envelope(b'["h1"]', "zstd"),
        checkpoints='[{"checkpoint_id":"c1","episode_id":"hand-2","step_number":1,'
                    '"created_at":"2026-01-05T14:03:07Z","reason":"handoff",'
                    '"salient_features_snapshot":null,"is_abstention_checkpoint":true,'
                    '"note":null}]')),
]  # fmt: skip


# raw f32 bytes that begin with "[" (0x5b) are still f32 values, not JSON
_BRACKET = b"[\x00\x80?" + b"\x00\x00\x00@"
HAND.append(
    ("embeddings", {"embedding_id": "e-bracket", "item_id": "hand-1", "item_type": "episode",
                    "embedding_data": envelope(_BRACKET, "zstd"), "embedding_vector": None,
                    "dimension": 2, "model": "m", "created_at": 1767225700})
)  # fmt: skip


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return sample_database(tmp_path / "sample.db", HAND)


async def test_the_seed_sample_and_hand_written_rows_import_exactly(
    sample: Path, tmp_path: Path
) -> None:
    """Every row of the seed note's sample and the rows written by hand from its examples
    imports, verifies with 0 differences, and reads back as the note says it must."""
    before = checksums_file(sample)
    dest = f"file:{tmp_path / 'tiered.db'}"
    report = await import_database(f"file:{sample}", dest, progress=False)
    assert checksums_file(sample) == before
    assert not report.issues, report.issues
    assert report.ok and not report.differences
    counts = {t: n for t, n in report.read.items()}
    assert counts == {"episodes": 11, "patterns": 4, "heuristics": 2, "embeddings": 5}
    assert report.imported == counts and report.verified == sum(counts.values())
    assert report.dropped["episodes.steps[].timestamp"] == 11
    assert report.dropped["episodes.checkpoints"] >= 1
    assert report.dropped["episodes.outcome.Abstained.stopped_at_step"] >= 1
    async with await Store.open(dest) as s:
        one = await s.get_episode("hand-1")
        assert one is not None
        kinds = [(st.result.kind, st.result.output) for st in one.steps if st.result]
        assert kinds == [("error", "exit status 4"), ("success", "ok ok"), ("timeout", "")]
        assert one.steps[0].parameters == {"path": "src/a.rs"}
        assert one.steps[2].parameters == {}  # parameters_json "null": no parameters
        assert one.outcome == Failure("tests fail", None) and one.reward == 0.25
        two = await s.get_episode("hand-2")
        assert two is not None and two.steps[0].parameters["deep"] == [1, {"k": None}]
        assert two.outcome == Abstained("no creds") and two.reward is None
        assert two.metadata == {"agent": "planner", "ticket": "T-1"}  # lz4 block envelope
        assert two.pattern_ids == ("p1",) and two.heuristic_ids == ("h1",)
        ids = [r["pattern_id"] for t, r in sample_rows() if t == "patterns"]
        pats = {p.kind.value: p for p in [await s.get_pattern(i) for i in ids] if p}
        assert set(pats) == {k.value for k in PatternKind}
        assert pats["tool_sequence"].body.tools == ("grep", "edit_file")  # type: ignore[union-attr]
        assert pats["error_recovery"].body.recovery_steps == ("read error", "fix type")  # type: ignore[union-attr]
        assert pats["context_pattern"].body.features == ("async", "db")  # type: ignore[union-attr]
        emb = {r["embedding_id"]: r for t, r in sample_rows() if t == "embeddings"}
        for eid, row in emb.items():
            got = await s.get_embedding(eid)
            assert got is not None and got.dim == row["dimension"] == 384
        bracket = await s.get_embedding("e-bracket")
        assert bracket is not None and bracket.vector.tobytes() == _BRACKET


def test_the_envelope_is_read_as_the_original_writes_it() -> None:
    import gzip as gz

    import lz4.block as lz4b
    import zstandard as zs

    data = b'{"agent":"coder","ticket":"T-125"}'
    b64 = base64.b64encode
    by_hand = {
        "lz4": b64(lz4b.compress(data, store_size=False)),  # lz4_flex::compress: a bare block
        "zstd": b64(zs.ZstdCompressor(level=3).compress(data)),
        "gzip": b64(gz.compress(data)),
    }
    for algo, body in by_hand.items():
        assert decode_envelope(f"__compressed__:{algo}:{len(data)}\n{body.decode()}") == data
    with pytest.raises(CorruptPayload):  # an LZ4 *frame* is not what the original writes
        import lz4.frame

        decode_envelope(f"__compressed__:lz4:{len(data)}\n{b64(lz4.frame.compress(data)).decode()}")


def test_rust_debug_dumps_parse() -> None:
    row = dict(next(r for t, r in sample_rows() if t == "patterns"))
    p = map_pattern(row)
    assert p.kind is PatternKind.TOOL_SEQUENCE and p.domain == "data-pipeline"
    # times_applied 2, success_when_applied 1, avg_reward_delta 0.1: 0.5 * (1 + ln 2 / 3) * 1.1
    assert p.effectiveness == pytest.approx(0.5 * (1 + math.log(2) / 3) * 1.1)
    dump = parse_debug(
        'X { a: "q\\"\\u{7}\\n", b: [1, Some("x")], c: None, d: 2025-01-02T00:00:00Z }'
    )
    assert isinstance(dump, DebugStruct) and dump.fields["a"] == 'q"\x07\n'
    assert dump.fields["b"][1] == DebugStruct("Some", items=("x",)) and dump.fields["c"] is None
    assert dump.fields["d"] == "2025-01-02T00:00:00Z"
    for s in ('q"\\', "tab\there", "\x00\x01", "ünï"):
        assert parse_debug(rust_debug_str(s)) == s
    with pytest.raises(CorruptPayload):
        map_pattern({**row, "pattern_type": 'ToolSequence { id: 7, tools: ["a"'})  # cut short
    for text, nanos in (("2026-01-05T14:03:07Z", 0), ("2026-01-05T14:03:07.5Z", 500_000_000),
                        ("2026-01-05T14:03:07.123456789Z", 123_456_789)):  # fmt: skip
        assert parse_rfc3339(text) % 1_000_000_000 == nanos
        assert format_rfc3339(parse_rfc3339(text), len(text) - 21 if "." in text else 0) == text


async def test_an_independent_decoder_finds_no_difference(source: Path, tmp_path: Path) -> None:
    """100 random episodes of the generated database, decoded by the test's own reading of
    the encoding (tests/fix_original.py imports nothing of the importer), equal what the
    import wrote."""
    import random

    dest = f"file:{tmp_path / 'tiered.db'}"
    report = await import_database(f"file:{source}", dest, progress=False)
    assert report.ok and report.imported["episodes"] == 400
    with contextlib.closing(sqlite3.connect(source)) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM episodes")]
        tags: dict[str, list[str]] = {}
        for eid, tag in db.execute("SELECT episode_id, tag FROM episode_tags"):
            tags.setdefault(eid, []).append(tag)
    picked = random.Random(7).sample(rows, 100)
    shapes = {"enveloped": 0, "old parameters": 0, "timeout": 0, "error": 0, "absent": 0}
    async with await Store.open(dest) as s:
        for row in picked:
            got = await s.get_episode(row["episode_id"])
            assert got is not None
            assert episode_fields(got) == expected_episode(row, tags.get(row["episode_id"], []))
            shapes["enveloped"] += row["metadata"].startswith("__compressed__")
            shapes["old parameters"] += '"parameters":{' in row["steps"]
            shapes["timeout"] += '"result":"Timeout"' in row["steps"]
            shapes["error"] += '"Error":' in row["steps"]
            shapes["absent"] += row["outcome"] in (None, "null")
    assert all(shapes.values()), shapes  # the sample met every shape


def _break_error_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deliberately wrong mapping rule: a step's Error read as a success."""
    monkeypatch.setitem(mapping._RESULT_FIELDS, "Error", ("success", "message"))


async def test_a_broken_mapping_rule_is_caught_by_the_verification(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _break_error_results(monkeypatch)
    report = await import_database(
        f"file:{source}", f"file:{tmp_path / 'tiered.db'}", progress=False
    )
    assert not report.ok and report.differences
    assert all(".result" in d for d in report.differences)
    assert any("'Error'" in d or "Error" in d for d in report.differences)


def test_the_command_exits_non_zero_on_a_difference_or_a_skipped_row(
    source: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tiered.cli import main

    src = f"file:{source}"
    assert main(["import", src, f"file:{tmp_path / 'a.db'}", "--no-compare"]) == 0
    assert "result: OK" in capsys.readouterr().out
    with contextlib.closing(sqlite3.connect(source)) as db:
        db.execute("UPDATE episodes SET outcome = '{\"Unheard\":{}}' WHERE rowid = 7")
        db.commit()
    assert main(["import", src, f"file:{tmp_path / 'b.db'}", "--no-compare"]) == 1
    out = capsys.readouterr().out
    assert "1 rows skipped (allowed: --max-skipped 0)" in out and "unknown variant" in out
    assert main(["import", src, f"file:{tmp_path / 'c.db'}", "--no-compare",
                 "--max-skipped", "1"]) == 0  # fmt: skip
    capsys.readouterr()
    _break_error_results(monkeypatch)
    assert main(["import", src, f"file:{tmp_path / 'd.db'}", "--no-compare",
                 "--max-skipped", "1"]) == 1  # fmt: skip
    assert "differences from the source" in capsys.readouterr().out


async def test_a_read_only_token_on_the_source_is_enough(
    sample: Path, sqld_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tiered.cli import main
    from tiered.devserver import JwtKey, SqldProcess, free_port

    key = JwtKey()
    data = tmp_path / "src" / "dbs" / "default"
    data.mkdir(parents=True)
    shutil.copy(sample, data / "data")
    src = SqldProcess(sqld_binary, tmp_path / "src", free_port(), log_path=tmp_path / "s.log",
                      auth_jwt_key_file=key.write_public(tmp_path / "jwt.pub"))  # fmt: skip
    src.start()
    try:
        monkeypatch.setenv("TIERED_SOURCE_TOKEN", key.token("ro"))
        code = await asyncio.to_thread(
            main, ["import", src.ws_url, f"file:{tmp_path / 'tiered.db'}"]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert "result: OK" in out and "bytes on disk" in out and "n/a" in out
        assert key.token("ro") not in out
    finally:
        src.stop()


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
)  # fmt: skip
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
_params = st.one_of(
    st.dictionaries(st.text(max_size=3), _values, max_size=3),
    st.none(),
    st.lists(_scalars, max_size=2),
    st.just({"deep": _DEEP}),
)
_step_docs = st.fixed_dictionaries(
    {"tool": st.one_of(st.sampled_from(["run_tests", "", " \t", "x" * 129, "t\x00"]),
                       st.text(max_size=4), st.integers(), st.none()),
     "action": st.one_of(st.text(max_size=5), st.none(), st.integers())},
    optional={
        "parameters_json": st.one_of(_params.map(json.dumps), st.text(max_size=4), st.none()),
        "parameters": _params,
        "result": st.one_of(
            st.none(), st.sampled_from(["Timeout", "Nope", "timeout"]),
            st.fixed_dictionaries({}, optional={
                "Success": st.one_of(st.fixed_dictionaries({"output": st.text(max_size=3)}),
                                     st.none(), st.just({})),
                "Error": st.fixed_dictionaries({"message": st.one_of(st.text(max_size=3),
                                                                     st.integers())}),
            }),
        ),
        "latency_ms": st.one_of(
            st.none(), st.floats(-5, 1e9), st.integers(-3, 10**6), st.booleans(), st.just("12")
        ),
        "tokens_used": st.one_of(
            st.none(), st.integers(-2, 2**63 + 5), st.floats(0, 10), st.booleans()
        ),
        "timestamp": st.one_of(st.none(), st.just("2026-01-05T14:03:07Z")),
        "metadata": st.one_of(st.none(), st.just({}), st.dictionaries(st.text(max_size=2),
                                                                      st.text(max_size=2))),
    },
)  # fmt: skip


def _outcome_of(f: Callable[[], object]) -> object:
    try:
        return ("ok", f())
    except Exception as e:  # compared below: the same error, named the same way
        return ("error", type(e), str(e))


@settings(max_examples=400, deadline=None)
@given(st.lists(_step_docs, max_size=4))
def test_the_typed_steps_build_what_the_constructor_builds(docs: list[Any]) -> None:
    """Steps decoded typed and built without the model's checks (``_typed_step``) equal the
    constructor's on every document, and a document the constructor refuses is refused."""
    text = json.dumps(docs)
    slow = _outcome_of(lambda: tuple(mapping._step(d) for d in docs))
    got = _outcome_of(lambda: mapping.map_steps(text))
    assert (got[0], got[1] if got[0] == "ok" else None) == (
        slow[0], slow[1] if slow[0] == "ok" else None
    )  # fmt: skip


def test_the_typed_path_takes_every_step_of_the_generated_database(source_db: Path) -> None:
    with sqlite3.connect(source_db) as db:
        texts = [r[0] for r in db.execute("SELECT steps FROM episodes")]
    assert len(texts) == 400
    for t in texts:
        assert all(isinstance(mapping._typed_step(d), ExecutionStep)
                   for d in mapping._DECODE_STEPS(t))  # fmt: skip


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
    write_original_database(src, episodes=4000, weeks=4, seed=22, embeddings=0)
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
            check = await _verify(src, store, tags, set(await src.tables()), set(), False)
            checked, diffs = check.checked, check.differences
    finally:
        await src.close()
    assert checked == 400 + 200 + 100 + 60
    assert sorted(d.split(":")[0] for d in diffs) == [
        f"episodes {gone_episode}",
        f"heuristics {gone_heuristic}",
    ]


async def test_without_lz4_the_import_stops_instead_of_skipping_rows(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row in an lz4 envelope on an installation without lz4 (``tiered[analysis]`` not
    installed) is not a bad row: the import stops with a ConfigError naming the extra."""
    monkeypatch.setitem(sys.modules, "lz4", None)  # import lz4.block: ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "lz4.block", None)
    with pytest.raises(ConfigError, match=r"tiered\[analysis\]"):
        decode_envelope(f"__compressed__:lz4:3\n{base64.b64encode(b'abc').decode()}")
    with pytest.raises(ConfigError, match=r"tiered\[analysis\]"):
        await import_database(f"file:{sample}", f"file:{tmp_path / 't.db'}", progress=False)
