"""``tiered bench``: the plan is seeded, each layer switch really switches the layer, results are
complete and written, and the CLI reports bad options as errors (tiny workloads: seconds)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl
import pytest

from tiered.bench import (
    Layers,
    Link,
    Workload,
    arrival_times,
    cache_miss_costs,
    format_report,
    make_corpus,
    plan_requests,
    run_bench,
    write_results,
)
from tiered.cli import main
from tiered.devserver import SqldProcess
from tiered.errors import ConfigError
from tiered.metrics import PHASES


def test_layers_parse() -> None:
    assert [c.name for c in Layers.parse("compare")] == [
        "off", "cache", "pool", "compression", "all",
    ]  # fmt: skip
    assert Layers.parse("cache+pool")[0] == Layers(cache=True, pool=True, compression=False)
    assert Layers.parse("pool+cache")[0].name == "cache+pool"
    for bad in ("cache+disk", "", "all,,off"):
        with pytest.raises(ConfigError, match="unknown layer"):
            Layers.parse(bad)


def test_workload_validation() -> None:
    with pytest.raises(ConfigError, match="ops"):
        Workload(ops=0)
    with pytest.raises(ConfigError, match="mix"):
        Workload(mix={"drop_table": 1.0})
    with pytest.raises(ConfigError, match="rate"):
        Workload(trace=[1.0, 2.0])
    with pytest.raises(ConfigError, match="trace"):
        Workload(rate=10, trace=[0.0, -1.0])


def test_plan_is_seeded_and_follows_the_mix() -> None:
    w = Workload(ops=4000, records=500, seed=3)
    a, b = plan_requests(w, make_corpus(w, "x")), plan_requests(w, make_corpus(w, "x"))
    assert a == b
    ops = pl.Series([op for op, _ in a]).value_counts(normalize=True)
    share = dict(ops.rows())
    for op, p in w.mix.items():
        assert abs(share[op] - p) < 0.03, (op, share[op], p)
    # reads are skewed: the most read key is read far more than a uniform share
    keys = pl.Series([args[0] for op, args in a if op == "get_episode"]).value_counts()
    assert keys["count"].max() > 10 * len(keys) / w.records  # type: ignore[operator]
    assert plan_requests(Workload(ops=4000, records=500, seed=4), make_corpus(w, "x")) != a


def test_open_loop_arrivals_follow_rate_and_trace() -> None:
    t = arrival_times(Workload(ops=5000, rate=1000.0))
    assert t is not None and (abs(5000 / t[-1] - 1000) < 60) and (t[1:] >= t[:-1]).all()
    # a trace with a quiet and a busy step: the busy one gets 3x the arrivals
    t = arrival_times(Workload(ops=4000, rate=100.0, trace=[1.0, 3.0], trace_step=1.0))
    assert t is not None
    per_step = pl.Series((t // 1).astype(int) % 2).value_counts().sort("")
    quiet, busy = per_step["count"].to_list()
    assert 2.5 < busy / quiet < 3.5
    assert arrival_times(Workload()) is None


async def test_compare_on_embedded_switches_each_layer(tmp_path: Path) -> None:
    w = Workload(ops=300, records=200, concurrency=4)
    r = await run_bench(None, Layers.parse("compare"), w, progress=False)
    assert r.requests.height == 5 * 300 and r.requests["ok"].all()
    assert set(r.summary["config"]) == {"off", "cache", "pool", "compression", "all"}
    stats = r.info["stats"]
    # cache off: no hits; pool off: a connection per call; compression off: bytes stored = raw
    assert stats["off"]["cache_hit_ratio"] == 0 and stats["cache"]["cache_hit_ratio"] > 0.2
    off, pooled = stats["off"], stats["pool"]
    assert off["connections_opened"] >= off["connections_borrowed"] > 200  # grouped writes: < 300
    assert pooled["connections_borrowed"] > 200 and pooled["connections_opened"] <= 10
    assert stats["off"]["bytes_stored"] >= stats["off"]["bytes_raw"]
    assert stats["compression"]["bytes_stored"] < stats["compression"]["bytes_raw"] / 2
    row = r.summary.filter(config="all", op="all").row(0, named=True)
    assert row["count"] == 300 and row["p50_ms"] <= row["p99_ms"]
    # phase means add up to (about) the mean latency of the sampled operations
    phased = sum(row[f"{p}_ms"] for p in PHASES)
    assert phased == pytest.approx(row["mean_ms"], rel=0.5)
    text = format_report(r)
    assert "What each configuration removes vs all layers off" in text
    # the reads that reached the database, cache on vs its twin without the cache
    misses = cache_miss_costs(r)
    # ("all" has no twin here: pool+compression did not run)
    assert {m.config for m in misses} == {"cache"} and "get_episode" in {m.op for m in misses}
    assert all(m.p50_ms > 0 and m.twin_p50_ms > 0 for m in misses)
    # each request knows whether it waited for the database: without a cache every one did,
    # with it the misses did (the requests a miss is paired with, by place in the plan)
    req = r.requests
    assert req.filter(pl.col("config") == "off")["db"].all()
    cached = req.filter(pl.col("config") == "cache")
    reads = cached.filter(~pl.col("op").str.starts_with("store"))
    assert 0 < reads["db"].sum() < reads.height
    got = reads.filter(pl.col("op") == "get_episode")["db"].sum()
    assert {m.op: m.misses for m in misses}["get_episode"] == got
    assert "A read that reaches the database: cache on vs the same requests" in text
    # the breakdown chart: off first, each layer in the order run, all last
    from tiered import charts

    spec = charts.phase_chart(r.phases.filter(pl.col("config") != "cache")).to_dict()
    assert spec["encoding"]["row"]["sort"] == ["off", "pool", "compression", "all"]
    paths = write_results(r, tmp_path / "out" / "b.parquet")
    back = pl.read_parquet(paths["requests"])
    assert back.equals(r.requests)
    assert pl.read_parquet(paths["summary"]).height == r.summary.height
    assert pl.read_parquet(paths["phases"])["config"].n_unique() == 5


async def test_rtt_link_through_a_proxy_to_sqld(fresh_sqld: SqldProcess) -> None:
    w = Workload(ops=60, records=50, concurrency=4)
    link = Link(rtt_ms=10)
    r = await run_bench(fresh_sqld.ws_url, Layers.parse("pool,off"), w, link=link, progress=False)
    assert r.requests["ok"].all() and "10 ms RTT" in r.info["link"]
    by = {row["config"]: row for row in r.summary.filter(op="all").iter_rows(named=True)}
    # every call pays at least one round trip; without a pool, a connection set-up on top
    assert by["pool"]["p50_ms"] >= 10
    assert by["off"]["p50_ms"] >= by["pool"]["p50_ms"] + 10


def test_cli_bench_writes_parquet_and_rejects_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.parquet"
    args = ["bench", "--ops", "100", "--records", "100", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Where the time goes" in text and out.exists()
    assert main(["bench", "--layers", "cache+disk"]) == 2
    assert "unknown layer" in capsys.readouterr().err
    assert main(["bench", "--url", f"file:{tmp_path / 'x.db'}", "--rtt", "5"]) == 2
    assert "need a server" in capsys.readouterr().err
    trace = tmp_path / "t.csv"
    trace.write_text("hour,requests\n0,1\n1,2\n")
    assert main([*args, "--rate", "500", "--trace", str(trace), "--trace-step", "0.1"]) == 0


def test_bench_never_hangs_on_a_closed_loop_of_one() -> None:
    w = Workload(ops=50, records=20, concurrency=1)
    r = asyncio.run(run_bench(None, [Layers()], w, progress=False))
    assert r.requests["start_s"].is_sorted()
