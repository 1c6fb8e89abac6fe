"""The simulator: engine order, the pool model against Erlang C, fluid vs request-level, and the
replay through the real cache layer."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tiered.bench import Layers, Workload
from tiered.errors import ConfigError
from tiered.forecast import wait_probability
from tiered.pool import Fixed, Reactive
from tiered.scenarios import compare
from tiered.sim.engine import Simulator
from tiered.sim.poolmodel import HoldTimes, PoolScenario, simulate_pool
from tiered.sim.replay import replay
from tiered.sim.service import ServiceModel


def test_engine_runs_in_time_order_with_fifo_ties() -> None:
    sim, seen = Simulator(), []
    sim.at(2.0, seen.append, "c")
    sim.at(1.0, seen.append, "a")
    sim.at(1.0, seen.append, "b")  # same time: scheduled later, runs later
    sim.run(until=1.5)
    assert seen == ["a", "b"] and sim.now() == 1.5
    sim.run()
    assert seen == ["a", "b", "c"]
    with pytest.raises(ConfigError):
        sim.at(0.5, seen.append, "late")


def _hold(mean: float = 0.02, cv: float = 1.0, n: int = 20000) -> HoldTimes:
    rng = np.random.default_rng(1)
    k = 1 / cv**2
    return HoldTimes(rng.gamma(k, mean / k, n))


def test_fixed_pool_matches_erlang_c() -> None:
    # M/M/c with c = 4, a = 3 erlangs: P(wait > 10 ms) from the closed form
    hold = _hold(0.02, 1.0)
    sc = PoolScenario(np.array([150.0]), hold, connect_s=0.0, interval_s=3600.0, seed=3)
    run = simulate_pool(sc, lambda c: Fixed(4), mode="requests")
    expected = wait_probability(4, 150.0, hold.mean, 0.010)
    assert run.mode == "requests"
    assert run.summary["late_share"] == pytest.approx(expected, rel=0.1)
    assert run.summary["connection_hours"] == pytest.approx(4.0, rel=0.01)


def test_simulation_is_deterministic_and_drives_the_policy_on_virtual_time() -> None:
    rate = np.array([5.0, 80.0, 80.0, 5.0])
    sc = PoolScenario(rate, _hold(0.025, 0.3), connect_s=0.1, interval_s=600.0, seed=7)
    a = simulate_pool(sc, lambda c: Reactive(clock=c), mode="requests")
    b = simulate_pool(sc, lambda c: Reactive(clock=c), mode="requests")
    assert a.summary == b.summary
    sizes = a.series.group_by((pl.col("t") // 600).alias("i")).agg(pl.col("size").mean()).sort("i")
    quiet, busy = sizes["size"][0], sizes["size"][1]
    assert busy > quiet + 1  # it grew for the busy intervals (600 s of virtual time each)


def test_fluid_mode_agrees_with_request_level() -> None:
    rate = np.array([10.0, 40.0, 60.0, 30.0, 10.0, 50.0])
    sc = PoolScenario(rate, _hold(0.025, 0.3), connect_s=0.1, interval_s=900.0, seed=2)
    for make in (lambda c: Reactive(clock=c), lambda c: Fixed(3)):
        r = simulate_pool(sc, make, mode="requests").summary
        f = simulate_pool(sc, make, mode="fluid").summary
        assert f["requests"] == pytest.approx(r["requests"], rel=0.01)
        assert f["connection_hours"] == pytest.approx(r["connection_hours"], rel=0.05)
        assert f["late_share"] == pytest.approx(r["late_share"], rel=0.5, abs=2e-4)


def _model() -> ServiceModel:
    """A service model from synthetic rows: hits 0.05 ms, database calls 20 ms round trip."""
    rng = np.random.default_rng(0)
    ops = ["get_episode", "get_episodes", "query_episodes_since", "query_episodes_by_metadata",
           "query_episodes", "search_patterns", "store_episodes"]  # fmt: skip
    rows = []
    for op in ops:
        for _ in range(50):
            rt = float(rng.uniform(0.018, 0.022))
            rows.append((op, rt + 0.001, 0.0001, rt, 0.0, 0.0, 0.0))
            rows.append((op, 0.00005, 0.0, 0.0, 0.0, 0.0, 0.00005))
    rows += [("connect", 0.05, 0, 0, 0, 0, 0)] * 5 + [("dispatch", 0.0005, 0, 0, 0, 0, 0)] * 5
    cols = ["op", "total_s", "acquire_s", "round_trip_s", "encode_s", "decode_s", "cache_s"]
    return ServiceModel(pl.DataFrame(rows, schema=cols, orient="row"))


def test_replay_runs_the_real_cache_layer() -> None:
    w = Workload(ops=1500, rate=50.0, records=300, seed=1)
    model = _model()
    on = replay(w, model)
    again = replay(w, model)
    off = replay(w, model, layers=Layers(cache=False))
    assert on.requests.equals(again.requests) and on.hit_ratio == again.hit_ratio
    assert 0.3 < on.hit_ratio < 1.0 and off.hit_ratio == 0.0
    hits = on.requests.filter(pl.col("path") == "hit")
    assert hits.height > 0 and hits["latency_s"].max() < 0.002
    assert off.requests.filter(pl.col("path") == "db").height == w.ops
    # writes never come from the cache
    assert set(on.requests.filter(pl.col("op") == "store_episodes")["path"]) == {"db"}
    table = compare(off.requests, on.requests, (0.0, on.hit_ratio))
    p50 = table.filter((pl.col("op") == "all") & (pl.col("stat") == "p50_ms"))
    assert p50["simulated"][0] < p50["measured"][0]  # the cache lowers the median


def test_replay_needs_open_loop() -> None:
    with pytest.raises(ConfigError):
        replay(Workload(ops=10), _model())
