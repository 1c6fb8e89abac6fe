"""``tiered bench``: a realistic mixed workload against a Store, with each layer on or off.

The workload is what an agent-memory service does: point reads of episodes with Zipf-skewed keys,
small multi-gets, the three query shapes (time range, metadata, domain/language), pattern
searches, and appends of new episodes in small batches. Every request is planned up front from a
seed (same seed, same requests), then run either **closed loop** (``concurrency`` workers, each
sending its next request when the last one returns) or **open loop** (Poisson arrivals at
``rate`` per second, optionally shaped by a traffic trace; latency is measured from each
request's *scheduled* start, so a slow server is not hidden by a slow sender -- no coordinated
omission).

Each :class:`Layers` configuration runs on its own fresh database (a new file, or a new local
sqld when the bench started it): ``records`` episodes, 200 patterns and 100 heuristics are written
first, then a new Store (cold cache) runs the plan. Switching a layer off means:

* cache off: ``CacheConfig(enabled=False)`` -- every read goes to the database;
* pool off: ``PoolConfig(reuse=False)`` -- a new connection for every call (the seed's world);
* compression off: ``StoreConfig(compress=False)`` -- payloads stored as plain msgspec.

Results: one row per request (``config, op, start_s, latency_s, ok, error``), the Store's own
metrics with their phase breakdown per configuration, and a summary; :func:`format_report` prints
them as tables, :func:`write_results` as parquet files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from tiered.cache.config import CacheConfig
from tiered.cache.layer import hit_ratio
from tiered.db.driver import backend_of, connect
from tiered.errors import ConfigError
from tiered.metrics import PHASES
from tiered.netproxy import TcpProxy
from tiered.progress import Progress
from tiered.store import PoolConfig, Store, StoreConfig
from tiered.workload.plans import (
    DEFAULT_MIX,
    Corpus,
    Layers,
    Link,
    Request,
    Workload,
    arrival_times,
    make_corpus,
    plan_requests,
)
from tiered.workload.records import generate_heuristics, generate_patterns

__all__ = [
    "DEFAULT_MIX",
    "BenchResult",
    "Layers",
    "Link",
    "MissCost",
    "Workload",
    "cache_miss_costs",
    "format_report",
    "layer_removals",
    "plan_requests",
    "run_bench",
    "write_results",
]


def store_options(layers: Layers) -> dict[str, Any]:
    """Keyword arguments of :meth:`Store.open` for a configuration of layers."""
    return {
        "config": StoreConfig(compress=layers.compression),
        "cache": CacheConfig(enabled=layers.cache),
        "pool": PoolConfig(reuse=layers.pool),
    }


def _call(store: Store, op: str, args: tuple[Any, ...]) -> Any:
    """Start the Store call of one planned request."""
    if op == "query_episodes":
        return store.query_episodes(domain=args[0], language=args[1], limit=50)
    if op == "search_patterns":
        return store.search_patterns(min_success_rate=args[0], limit=50)
    fn: Callable[..., Any] = getattr(store, op)
    return fn(*args)


@dataclass
class BenchResult:
    """Requests (one row each), the Store's metrics per configuration (tidy), and a summary."""

    requests: pl.DataFrame
    phases: pl.DataFrame
    summary: pl.DataFrame
    info: dict[str, Any]
    #: with ``record=True``: every operation's time and phases (one row each), and the time to
    #: open a connection (``op == "connect"``): what :class:`tiered.sim.ServiceModel` is built from
    samples: pl.DataFrame | None = None


async def _preload(url: str, layers: Layers, corpus: Corpus, seed: int) -> None:
    async with await Store.open(url, **store_options(layers)) as store:
        for i in range(0, len(corpus.episodes), 500):
            await store.store_episodes(corpus.episodes[i : i + 500])
        await store.store_patterns(generate_patterns(200, seed=seed))
        await store.store_heuristics(generate_heuristics(100, seed=seed))


Row = tuple[str, float, float, bool, str | None, float, bool]


async def _run_plan(
    store: Store,
    plan: list[Request],
    w: Workload,
    bar: Progress,
    span: tuple[int, int] | None = None,
    offset: float = 0.0,
) -> list[Row]:
    """Run ``plan[lo:hi]`` (``span``; all of it by default) on ``store``; start times count
    from ``offset`` seconds."""
    lo, hi = span or (0, len(plan))
    rows: list[Row | None] = [None] * (hi - lo)
    t0 = time.perf_counter() - offset
    samples = store.metrics.samples

    async def one(i: int, scheduled: float) -> None:
        op, args = plan[i]
        err: str | None = None
        began = time.perf_counter() - t0  # lag_s: how late the harness started it
        n = len(samples) if samples is not None else 0
        try:
            await _call(store, op, args)
        except Exception as e:  # recorded per request: the table reports errors by type
            err = type(e).__name__
        end = time.perf_counter() - t0
        # db: the request waited for a database round trip (a cache miss, a due poll, a
        # write). The Store records an operation's sample just before it returns, with no
        # yield in between, so the last sample is this request's.
        db = samples is not None and len(samples) > n and samples[-1][2].get("round_trip", 0) > 0
        rows[i - lo] = (op, scheduled, end - scheduled, err is None, err, began - scheduled, db)
        bar.advance()

    arrivals = arrival_times(w)
    if arrivals is None:
        it: Iterator[int] = iter(range(lo, hi))

        async def worker() -> None:
            for i in it:
                await one(i, time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(w.concurrency)))
    else:
        tasks = []
        for i, at in enumerate(arrivals.tolist()):
            delay = at - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, at)))
        await asyncio.gather(*tasks)
    await store.settle()
    return [r for r in rows if r is not None]


@dataclass
class _Run:
    """One configuration's store and plan, and what its turns measured so far."""

    cfg: Layers
    store: Store
    plan: list[Request]
    target: str
    bar: Progress
    rows: list[Row] = dataclasses.field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0

    async def turn(self, w: Workload, span: tuple[int, int] | None = None) -> None:
        t0, cpu0 = time.perf_counter(), time.process_time()
        self.rows += await _run_plan(self.store, self.plan, w, self.bar, span, self.wall)
        self.wall += time.perf_counter() - t0
        self.cpu += time.process_time() - cpu0


def _proxied(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))


async def run_bench(
    url: str | None,
    layers: Sequence[Layers],
    workload: Workload,
    *,
    link: Link | None = None,
    sqld: bool = False,
    progress: bool = True,
    record: bool = False,
) -> BenchResult:
    """Run ``workload`` once per configuration in ``layers`` and collect the results.

    ``url``: a ``file:``, ``ws://`` or ``http://`` database (None: a fresh embedded file per
    configuration in a temporary folder, or a fresh local sqld per configuration when ``sqld`` or
    an active ``link`` asks for a server). A ``link`` puts a delay/bandwidth proxy in front of
    the server. With a given server URL every configuration writes its own records (ids prefixed
    ``bench<seed>c<i>``) into that database; they are left there. ``record`` keeps every
    operation's phases and times ``connects`` fresh connections (:attr:`BenchResult.samples`).

    Every configuration's store is opened first; then, for closed-loop workloads, they take
    turns at slices of the same plan (alternating order), so noise from a shared machine falls
    on every configuration alike. Open-loop workloads (``rate``, ``trace``) run one
    configuration after the other.
    """
    link = link or Link()
    if not layers:
        raise ConfigError("run_bench needs at least one layer configuration")
    if url is not None and backend_of(url) == "file" and (link.active or sqld):
        raise ConfigError("--rtt/--mbps/--sqld need a server: leave --url unset or give ws://...")
    own_sqld = url is None and (sqld or link.active)
    info: dict[str, Any] = {
        "url": url or ("local sqld (ws)" if own_sqld else "embedded file (temporary)"),
        "link": str(link),
        "workload": {
            k: v for k, v in dataclasses.asdict(workload).items() if k != "trace" or v is None
        },
        "configs": [c.name for c in layers],
    }
    request_frames, phase_frames, sample_frames = [], [], []
    with TemporaryDirectory(prefix="tiered-bench-") as tmp:
        async with AsyncExitStack() as stack:
            runs: list[_Run] = []
            bar = Progress(workload.ops * len(layers), "requests", enabled=progress)
            for ci, cfg in enumerate(layers):
                prefix = f"bench{workload.seed}c{ci}" if url else "b"
                corpus = make_corpus(workload, prefix)
                target = url or f"file:{Path(tmp) / f'{ci}-{cfg.name}.db'}"
                if own_sqld:
                    from tiered.devserver import SqldCluster

                    cluster = SqldCluster(data_dir=str(Path(tmp) / f"sqld-{ci}"))
                    stack.enter_context(cluster)
                    target = str(cluster.urls()["ws"])
                await _preload(target, cfg, corpus, workload.seed)
                if link.active:
                    host_port = urlsplit(target)
                    proxy = TcpProxy(
                        host_port.hostname or "127.0.0.1",
                        host_port.port or 8080,
                        delay=link.rtt_ms / 2000,
                        bandwidth=link.mbps * 125_000 if link.mbps else None,
                    )
                    await stack.enter_async_context(proxy)
                    target = _proxied(target, proxy)
                store = await Store.open(target, **store_options(cfg))
                stack.push_async_callback(store.close)
                store.metrics.keep_samples()  # (every operation's phases: misses below)
                plan = plan_requests(workload, corpus)
                runs.append(_Run(cfg, store, plan, target, bar))
            n = len(runs[0].plan)
            # the harness's own objects (corpora, plans) out of the collector's way: a full
            # collection that walks them lands on whichever configuration runs then
            gc.collect()
            gc.freeze()
            stack.callback(gc.unfreeze)
            if arrival_times(workload) is None:
                # closed loop: the configurations take turns, a slice of the plan each, in
                # alternating order, so a machine that is slower for a while (these are shared)
                # slows every configuration alike and the same-run ratios hold
                step = max(100, 50 * workload.concurrency)
                for k, lo in enumerate(range(0, n, step)):
                    for r in runs if k % 2 == 0 else runs[::-1]:
                        await r.turn(workload, (lo, min(n, lo + step)))
            else:
                for r in runs:
                    await r.turn(workload)
            for r in runs:
                name = r.cfg.name
                # this process's CPU over the run (all its threads): near the wall time, the
                # event loop (one core, the GIL) was the bottleneck
                info.setdefault("cpu_share", {})[name] = r.cpu / r.wall
                frame = pl.DataFrame(
                    r.rows,
                    schema={
                        "op": pl.Utf8,
                        "start_s": pl.Float64,
                        "latency_s": pl.Float64,
                        "ok": pl.Boolean,
                        "error": pl.Utf8,
                        "lag_s": pl.Float64,
                        "db": pl.Boolean,
                    },
                    orient="row",
                ).with_columns(config=pl.lit(name), wall_s=pl.lit(r.wall))
                request_frames.append(frame)
                phase_frames.append(r.store.metrics.to_polars().with_columns(config=pl.lit(name)))
                info.setdefault("stats", {})[name] = _layer_stats(r.store.get_stats())
                if record:
                    sample_frames.append(
                        (await _samples(r.store, r.target)).with_columns(config=pl.lit(name))
                    )
    requests = pl.concat(request_frames).select(
        "config", "op", "start_s", "latency_s", "ok", "error", "lag_s", "db", "wall_s"
    )
    phases = pl.concat(phase_frames).select("config", "op", "phase", "stat", "value")
    samples = pl.concat(sample_frames) if sample_frames else None
    return BenchResult(requests, phases, summarize(requests, phases), info, samples)


SAMPLE_PHASES = tuple(p for p in PHASES if p != "other")


async def _samples(store: Store, url: str, connects: int = 20) -> pl.DataFrame:
    """The store's recorded operations, plus ``connects`` timed connection opens."""
    rows = [
        (op, total, *(ph.get(p, 0.0) for p in SAMPLE_PHASES))
        for op, total, ph in store.metrics.samples or []
    ]
    for _ in range(connects):
        t0 = time.perf_counter()
        conn = await connect(url)
        rows.append(("connect", time.perf_counter() - t0, *(0.0 for _ in SAMPLE_PHASES)))
        await conn.close()
    schema = {"op": pl.Utf8, "total_s": pl.Float64} | {f"{p}_s": pl.Float64 for p in SAMPLE_PHASES}
    return pl.DataFrame(rows, schema=schema, orient="row")


class MissCost(NamedTuple):
    """The reads of one operation that reached the database with the cache on (misses, and
    hits whose change-log poll was due), against the same requests -- the same places in the
    same request plan -- in the twin configuration without the cache."""

    config: str
    op: str
    misses: int
    p50_ms: float
    twin_p50_ms: float
    p50_ratio: float
    p99_ratio: float
    mean_ratio: float


def cache_miss_costs(result: BenchResult, *, min_misses: int = 5) -> list[MissCost]:
    """For each configuration with the cache on whose twin without it ran too, per read
    operation with at least ``min_misses`` database reads: what a miss costs over the same
    read with the cache off (a due change-log poll rides with the miss). The comparison is
    paired by request: the misses are the colder keys, which cost more than the average read
    even with no cache (pages not in SQLite's page cache), so an unpaired one would charge the
    cache for its workload."""
    req = result.requests
    out = []
    for cfg in Layers.parse(",".join(result.info["configs"])):
        twin = dataclasses.replace(cfg, cache=False).name
        if not cfg.cache or twin not in result.info["configs"]:
            continue
        mine = req.filter(pl.col("config") == cfg.name).with_row_index("i")
        base = req.filter(pl.col("config") == twin).with_row_index("i")
        pairs = mine.filter(pl.col("db") & ~pl.col("op").str.starts_with("store")).join(
            base.select("i", twin_s="latency_s"), on="i"
        )
        for (op,), g in sorted(pairs.group_by("op"), key=lambda kv: str(kv[0][0])):
            if g.height < min_misses:
                continue
            m, t = g["latency_s"] * 1000, g["twin_s"] * 1000
            p50, tp50 = float(m.median()), float(t.median())  # type: ignore[arg-type]
            p99 = float(m.quantile(0.99, "nearest"))  # type: ignore[arg-type]
            tp99 = float(t.quantile(0.99, "nearest"))  # type: ignore[arg-type]
            out.append(
                MissCost(
                    cfg.name, str(op), g.height, p50, tp50, p50 / tp50, p99 / tp99,
                    float(m.mean()) / float(t.mean()),  # type: ignore[arg-type]
                )
            )  # fmt: skip
    return out


def _layer_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """The few layer figures the report prints (cache hit ratio, connections, bytes stored)."""
    codec, pool = stats["codec"], stats["pool"]
    return {
        "cache_hit_ratio": hit_ratio(stats["cache"]),
        "connections_opened": pool["connections_num"],
        "connections_borrowed": pool["requests_num"],
        "statements": stats["statements"]["executions"],
        "bytes_raw": codec["bytes_raw"],
        "bytes_stored": codec["bytes_stored"],
    }


def summarize(requests: pl.DataFrame, phases: pl.DataFrame) -> pl.DataFrame:
    """One row per configuration and operation (plus ``op = "all"``): count, errors,
    throughput, latency quantiles (ms, exact from the requests) and the mean time per phase
    (ms per request, from the Store's sampled phase breakdown)."""
    ms = pl.col("latency_s") * 1000
    aggs = [
        pl.len().alias("count"),
        (~pl.col("ok")).sum().alias("errors"),
        ms.quantile(0.5, "linear").alias("p50_ms"),
        ms.quantile(0.9, "linear").alias("p90_ms"),
        ms.quantile(0.99, "linear").alias("p99_ms"),
        ms.mean().alias("mean_ms"),
        pl.col("wall_s").first().alias("wall_s"),
    ]
    per_op = requests.group_by("config", "op").agg(aggs)
    overall = requests.group_by("config").agg(aggs).with_columns(op=pl.lit("all"))
    out = pl.concat([overall.select(per_op.columns), per_op])
    out = out.with_columns(ops_per_s=pl.col("count") / pl.col("wall_s")).drop("wall_s")
    # phase means: share of the sampled operations' time in each phase x the mean latency
    stat = phases.filter(pl.col("stat") == "sum_s")
    phased = (
        stat.filter(pl.col("phase") != "total")
        .group_by("config", "op")
        .agg(pl.col("value").sum().alias("phased_s"))
    )
    share = (
        stat.filter(pl.col("phase") != "total")
        .join(phased, on=["config", "op"])
        .with_columns(share=pl.col("value") / pl.col("phased_s"))
        .pivot(on="phase", index=["config", "op"], values="share")
    )
    for p in PHASES:
        if p not in share.columns:
            share = share.with_columns(pl.lit(0.0).alias(p))
    out = out.join(share, on=["config", "op"], how="left")
    out = out.with_columns(
        [(pl.col(p).fill_null(0.0) * pl.col("mean_ms")).alias(f"{p}_ms") for p in PHASES]
    ).drop(list(PHASES))
    # the "all" rows: each operation's phase means weighted by its request count
    weighted = (
        out.filter(pl.col("op") != "all")
        .group_by("config")
        .agg([(pl.col(f"{p}_ms") * pl.col("count")).sum() / pl.col("count").sum() for p in PHASES])
    )
    out = pl.concat(
        [
            out.filter(pl.col("op") == "all")
            .drop([f"{p}_ms" for p in PHASES])
            .join(weighted, on="config"),
            out.filter(pl.col("op") != "all"),
        ]
    )
    order = {c: i for i, c in enumerate(requests["config"].unique(maintain_order=True))}
    return (
        out.with_columns(
            _c=pl.col("config").replace_strict(order, return_dtype=pl.Int32),
            _o=pl.when(pl.col("op") == "all").then(0).otherwise(1),
        )
        .sort("_c", "_o", "op")
        .drop("_c", "_o")
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.rjust(w) if i else h.ljust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    out = [line, "-" * len(line)]
    for r in cells:
        out.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return out


def format_report(result: BenchResult) -> str:
    """The tables ``tiered bench`` prints: per configuration and operation, the phase
    breakdown, and (when an ``off`` configuration ran) what each layer removes from p50/p99."""
    s, info = result.summary, result.info
    w = info["workload"]
    mode = (
        f"open loop, {w['rate']:g} req/s" + (" shaped by a trace" if w.get("trace") else "")
        if w["rate"]
        else f"closed loop, {w['concurrency']} workers"
    )
    lines = [
        f"tiered bench: {info['url']}, link {info['link']}",
        f"  {w['ops']:,} requests per configuration ({mode}), {w['records']:,} episodes, "
        f"Zipf {w['zipf']:g}, batches of {w['batch']}, seed {w['seed']}",
        "",
        "Latency per operation (ms) and throughput",
    ]
    lines += _table(
        ["config", "op", "count", "errors", "ops/s", "p50", "p90", "p99", "mean"],
        s.select("config", "op", "count", "errors", "ops_per_s", "p50_ms", "p90_ms", "p99_ms",
                 "mean_ms").rows(),
    )  # fmt: skip
    lines += ["", "Where the time goes: mean ms per request in each phase"]
    lines += _table(
        ["config", "op", *PHASES, "total"],
        s.select("config", "op", *(f"{p}_ms" for p in PHASES), "mean_ms").rows(),
    )
    lines += ["", "Layer figures"]
    stats = info.get("stats", {})
    lines += _table(
        ["config", "cache hit ratio", "connections opened", "statements", "MB raw", "MB stored"],
        [
            (c, v["cache_hit_ratio"], v["connections_opened"], v["statements"],
             v["bytes_raw"] / 1e6, v["bytes_stored"] / 1e6)
            for c, v in stats.items()
        ],
    )  # fmt: skip
    misses = cache_miss_costs(result)
    if misses:
        lines += [
            "",
            "A read that reaches the database: cache on vs the same requests without it (ms)",
        ]
        lines += _table(
            ["config", "op", "misses", "miss p50", "cache off p50", "p50 ratio", "p99 ratio",
             "ratio of means"],
            misses,
        )  # fmt: skip
    if "off" in info["configs"] and len(info["configs"]) > 1:
        lines += ["", "What each configuration removes vs all layers off (all operations)"]
        base = s.filter((pl.col("op") == "all") & (pl.col("config") == "off")).row(0, named=True)
        lines += _table(
            ["config", "p50", "p50 removed", "share", "p99", "p99 removed", "share",
             "throughput x"],
            layer_removals(s).rows(),
        )  # fmt: skip
        lines.append(f"  (off: p50 {base['p50_ms']:.3f} ms, p99 {base['p99_ms']:.3f} ms)")
        others = [c for c in info["configs"] if c != "off"]
        for q in ("p50", "p99"):
            lines += ["", f"{q} removed vs off, per operation (ms; negative = slower)"]
            wide = (
                s.join(s.filter(pl.col("config") == "off").select("op", base=f"{q}_ms"), on="op")
                .with_columns(removed=pl.col("base") - pl.col(f"{q}_ms"))
                .pivot(on="config", index=["op", "base"], values="removed")
            )
            lines += _table(
                ["op", f"off {q}", *others],
                wide.select("op", "base", *others).rows(),
            )
    return "\n".join(lines)


def layer_removals(summary: pl.DataFrame) -> pl.DataFrame:
    """What each configuration removes against all layers off, over all operations: p50 and
    p99 (ms), the time removed and its share, and throughput as a multiple of off's (a
    ``summary`` frame with an ``off`` configuration; configurations in the order they ran)."""
    allops = summary.filter(pl.col("op") == "all")
    base = allops.filter(pl.col("config") == "off").row(0, named=True)
    out = allops.filter(pl.col("config") != "off").select(
        "config",
        "p50_ms",
        p50_removed_ms=base["p50_ms"] - pl.col("p50_ms"),
        p50_share=1 - pl.col("p50_ms") / base["p50_ms"],
        p99_ms="p99_ms",
        p99_removed_ms=base["p99_ms"] - pl.col("p99_ms"),
        p99_share=1 - pl.col("p99_ms") / base["p99_ms"],
        throughput_x=pl.col("ops_per_s") / base["ops_per_s"],
    )
    return out


def write_results(result: BenchResult, path: str | Path) -> dict[str, Path]:
    """Write ``<path>`` (requests), ``<stem>-phases.parquet`` and ``<stem>-summary.parquet``."""
    path = Path(path)
    if path.suffix != ".parquet":
        raise ConfigError(f"bench results go to a .parquet file, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "requests": path,
        "phases": path.with_name(f"{path.stem}-phases.parquet"),
        "summary": path.with_name(f"{path.stem}-summary.parquet"),
    }
    result.requests.write_parquet(out["requests"])
    result.phases.write_parquet(out["phases"])
    result.summary.write_parquet(out["summary"])
    return out
