"""Metrics: histogram accuracy, phases, exporters (Prometheus parsed back), concurrent use."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_url
from tiered import CacheConfig, Store, ValidationError
from tiered.metrics import PHASES, Histogram, Metrics
from tiered.sim import generate_episodes


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "exponential", "pareto"])
def test_quantiles_within_one_percent_of_exact(dist: str) -> None:
    rng = np.random.default_rng(7)
    data = {
        "lognormal": rng.lognormal(-7, 1.5, 50_000),
        "uniform": rng.uniform(1e-6, 1e-2, 50_000),
        "exponential": rng.exponential(1e-3, 50_000),
        "pareto": (rng.pareto(1.5, 50_000) + 1) * 1e-4,
    }[dist]
    h = Histogram()
    h.record_many(data.tolist())
    for q in (0.01, 0.1, 0.5, 0.9, 0.99, 0.999):
        exact = float(np.quantile(data, q, method="inverted_cdf"))
        assert abs(h.quantile(q) - exact) <= 0.01 * exact, (q, h.quantile(q), exact)
    assert h.count == len(data) and math.isclose(h.sum, float(data.sum()), rel_tol=1e-9)
    assert h.quantile(0.0) == data.min() and h.quantile(1.0) == data.max()


def test_merged_histograms_equal_one_histogram_of_everything() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(-6, 1, 5000).tolist(), rng.lognormal(-5, 1, 5000).tolist()
    ha, hb, hall = Histogram(), Histogram(), Histogram()
    ha.record_many(a)
    hb.record_many(b)
    hall.record_many(a + b)
    ha.merge(hb)
    assert list(ha.buckets()) == list(hall.buckets()) and ha.count == hall.count
    with pytest.raises(ValueError):
        ha.quantile(1.5)
    assert math.isnan(Histogram().quantile(0.5))


@pytest.fixture(params=["file", "ws"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, tmp_path, request)


async def test_operations_record_latency_phases_and_errors(url: str) -> None:
    store = await Store.open(url)
    store.metrics.phase_every = 1  # every operation's phases (the default samples 1 in 4)
    try:
        eps = generate_episodes(20, seed=1)
        await store.store_episodes(eps)
        store._cache.records["episodes"].clear()  # type: ignore[union-attr]  # (written through)
        for e in eps:
            await store.get_episode(e.id)  # misses: database path
        for e in eps:
            await store.get_episode(e.id)  # hits
        with pytest.raises(ValidationError):
            await store.get_episode("")
        snap = {s.op: s for s in store.metrics.get_stats()}
        get, put = snap["get_episode"], snap["store_episodes"]
        assert get.count == 41 and get.errors == {"ValidationError": 1}
        assert put.count == 1 and set(put.phases) >= {"encode", "acquire", "round_trip"}
        # misses went to the database and decoded; hits only touched the cache
        assert get.phases["round_trip"].count >= 20 and get.phases["decode"].count == 20
        assert get.phases["cache"].count == 40
        for s in (get, put):  # the phases add up to the operation's time
            assert math.isclose(sum(p.sum_s for p in s.phases.values()), s.sum_s, rel_tol=0.05)
            assert s.phased_sum_s == s.sum_s
            assert set(s.phases) <= set(PHASES)
    finally:
        await store.close()


async def test_exports_parse_back_with_the_same_values(tmp_path: Path) -> None:
    store = await Store.open(f"file:{tmp_path / 'm.db'}", cache=CacheConfig(enabled=False))
    try:
        eps = generate_episodes(10, seed=2)
        await store.store_episodes(eps)
        for e in eps:
            await store.get_episode(e.id)
        text = store.metrics.to_prometheus()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        snap = {s.op: s for s in store.metrics.get_stats()}
        op = families["tiered_operation_seconds"]
        assert op.type == "summary"
        values = {(s.name, s.labels["op"], s.labels.get("quantile")): s.value for s in op.samples}
        get = snap["get_episode"]
        assert values[("tiered_operation_seconds_count", "get_episode", None)] == get.count
        assert values[("tiered_operation_seconds_sum", "get_episode", None)] == pytest.approx(
            get.sum_s, rel=1e-12
        )
        for q, v in get.quantiles_s.items():
            assert values[("tiered_operation_seconds", "get_episode", str(q))] == pytest.approx(
                v, rel=1e-12
            )
        phases = families["tiered_phase_seconds"]
        assert {s.labels["phase"] for s in phases.samples} >= {"round_trip", "decode"}
        pool = {s.labels["key"]: s.value for s in families["tiered_pool"].samples}
        assert pool["requests_num"] >= 11 and pool["pool_size"] >= 1
        codec = {s.labels["key"]: s.value for s in families["tiered_codec"].samples}
        assert codec["by_kind.episodes.bytes_raw"] > 0
        frame = store.metrics.to_polars()
        assert frame.columns == ["op", "phase", "stat", "value"]
        row = frame.filter(
            (pl.col("op") == "get_episode")
            & (pl.col("phase") == "total")
            & (pl.col("stat") == "count")
        )
        assert row["value"].to_list() == [10.0]
    finally:
        await store.close()


async def test_metrics_survive_concurrent_use(tmp_path: Path) -> None:
    store = await Store.open(f"file:{tmp_path / 'c.db'}")
    try:
        eps = generate_episodes(50, seed=3)
        await store.store_episodes(eps)
        await asyncio.gather(*(store.get_episode(eps[i % 50].id) for i in range(500)))
        await asyncio.gather(*(store.query_episodes(limit=5) for _ in range(100)))
        snap = {s.op: s for s in store.metrics.get_stats()}
        assert snap["get_episode"].count == 500 and snap["query_episodes"].count == 100
        # phases of one operation in four (601 operations in all, the batch write first)
        sampled = sum(s.phases["other"].count for s in snap.values() if s.phases)
        assert sampled == 601 // 4
        for s in snap.values():
            phased = sum(p.sum_s for p in s.phases.values())
            assert math.isclose(phased, s.phased_sum_s, rel_tol=0.05, abs_tol=1e-9)
        other = Metrics()
        other.merge(store.metrics)
        assert {s.op: s.count for s in other.get_stats()} == {
            s.op: s.count for s in store.metrics.get_stats()
        }
    finally:
        await store.close()


async def _http(port: int, request: bytes) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode().split("\r\n")[0], body


async def test_metrics_endpoint_serves_the_exposition_on_loopback_only(tmp_path: Path) -> None:
    from tiered.errors import ConfigError
    from tiered.metrics import serve_metrics

    async with await Store.open(f"file:{tmp_path / 'm.db'}") as store:
        await store.store_episodes(generate_episodes(5, seed=2))
        for e in generate_episodes(5, seed=2):
            await store.get_episode(e.id)
        with pytest.raises(ConfigError, match="loopback"):
            await serve_metrics(store.metrics, host="0.0.0.0")
        async with await serve_metrics(store.metrics) as server:
            assert server.url.startswith("http://127.0.0.1:")
            status, body = await _http(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == "HTTP/1.1 200 OK"
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            counts = {
                s.labels["op"]: s.value
                for s in families["tiered_operation_seconds"].samples
                if s.name.endswith("_count")
            }
            assert counts["get_episode"] == 5 and counts["store_episodes"] == 1
            assert (await _http(server.port, b"GET /other HTTP/1.1\r\n\r\n"))[0].endswith(
                "404 Not Found"
            )
            assert "405" in (await _http(server.port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0]
            assert "400" in (await _http(server.port, b"garbage\r\n\r\n"))[0]
            assert server.scrapes == 1
        # the pool's utilization series, as a frame
        await store.pool.maintain()
        frame = store.pool.series_frame()
        assert frame.height >= 1 and frame["size"][-1] >= 1
        assert frame.columns == ["t", "size", "in_use", "idle", "waiting", "utilization", "target"]
