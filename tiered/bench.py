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
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import polars as pl

from tiered.cache.layer import CacheConfig
from tiered.db.driver import backend_of, connect
from tiered.errors import ConfigError
from tiered.metrics import PHASES
from tiered.model import Episode
from tiered.netproxy import TcpProxy
from tiered.progress import Progress
from tiered.sim.traces import zipf_trace
from tiered.sim.workload import (
    DOMAINS,
    LANGUAGES,
    generate_episodes,
    generate_heuristics,
    generate_patterns,
)
from tiered.store import PoolConfig, Store, StoreConfig

__all__ = [
    "DEFAULT_MIX",
    "BenchResult",
    "Layers",
    "Link",
    "Workload",
    "format_report",
    "plan_requests",
    "run_bench",
    "write_results",
]

LAYER_NAMES = ("cache", "pool", "compression")

#: share of each operation in the default mix (reads dominate; 10 % of requests append a batch)
DEFAULT_MIX: Mapping[str, float] = {
    "get_episode": 0.62,
    "get_episodes": 0.05,
    "query_episodes_since": 0.05,
    "query_episodes_by_metadata": 0.05,
    "query_episodes": 0.04,
    "search_patterns": 0.04,
    "store_episodes": 0.15,
}


@dataclass(frozen=True, slots=True)
class Layers:
    """Which optimization layers are on."""

    cache: bool = True
    pool: bool = True
    compression: bool = True

    @property
    def name(self) -> str:
        on = [n for n in LAYER_NAMES if getattr(self, n)]
        return "all" if len(on) == len(LAYER_NAMES) else "+".join(on) if on else "off"

    @classmethod
    def parse(cls, spec: str) -> list[Layers]:
        """``"all"``, ``"off"``, ``"cache+pool"``, comma-separated lists of those, or
        ``"compare"`` (off, each layer alone, all: what each layer removes on its own)."""
        if spec.strip() == "compare":
            spec = "off,cache,pool,compression,all"
        out: list[Layers] = []
        for item in (s.strip() for s in spec.split(",")):
            if item == "all":
                out.append(cls())
            elif item in ("off", "none"):
                out.append(cls(False, False, False))
            else:
                names = set(item.split("+"))
                unknown = names - set(LAYER_NAMES)
                if not item or unknown:
                    raise ConfigError(
                        f"--layers: unknown layer {sorted(unknown) or [item]!r}; use all, off, "
                        f"compare, or names from {', '.join(LAYER_NAMES)} joined by '+'"
                    )
                out.append(cls(*(n in names for n in LAYER_NAMES)))
        return out

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`Store.open` for this configuration."""
        return {
            "config": StoreConfig(compress=self.compression),
            "cache": CacheConfig(enabled=self.cache),
            "pool": PoolConfig(reuse=self.pool),
        }


@dataclass(frozen=True, slots=True)
class Workload:
    """What the bench sends (see the module docstring).

    ops: requests per configuration. concurrency: closed-loop workers (ignored when ``rate`` is
    set). records: episodes written before the run (the key space of reads). zipf: skew of the
    keys read. batch: episodes per ``store_episodes``. rate: open-loop arrivals per second.
    trace: relative request rate per ``trace_step`` seconds (e.g. an hourly series compressed
    in time), scaling ``rate``.
    """

    ops: int = 2000
    concurrency: int = 4
    records: int = 2000
    zipf: float = 1.0
    batch: int = 10
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    rate: float | None = None
    trace: Sequence[float] | None = None
    trace_step: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ops", "concurrency", "records", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Workload.{name} must be >= 1, got {getattr(self, name)}")
        if self.zipf < 0:
            raise ConfigError(f"Workload.zipf must be >= 0, got {self.zipf}")
        unknown = set(self.mix) - set(DEFAULT_MIX)
        if unknown or not self.mix or any(v < 0 for v in self.mix.values()):
            raise ConfigError(
                f"Workload.mix: shares must be >= 0 for operations among {sorted(DEFAULT_MIX)}"
            )
        if sum(self.mix.values()) <= 0:
            raise ConfigError("Workload.mix: shares must not all be 0")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"Workload.rate must be > 0 requests/s, got {self.rate}")
        if self.trace is not None:
            if self.rate is None:
                raise ConfigError("Workload.trace needs a rate (the mean request rate)")
            t = np.asarray(self.trace, dtype=float)
            if t.size == 0 or not np.isfinite(t).all() or (t < 0).any() or t.sum() <= 0:
                raise ConfigError("Workload.trace must be finite, >= 0 and not all 0")
            if not self.trace_step > 0:
                raise ConfigError("Workload.trace_step must be > 0 seconds")


@dataclass(frozen=True, slots=True)
class Link:
    """A simulated network link between the Store and sqld: round-trip time (ms) and bandwidth
    (Mbit/s each way, None = unlimited), put in place by a loopback :class:`TcpProxy`."""

    rtt_ms: float = 0.0
    mbps: float | None = None

    @property
    def active(self) -> bool:
        return self.rtt_ms > 0 or self.mbps is not None

    def __str__(self) -> str:
        if not self.active:
            return "loopback"
        bw = f", {self.mbps:g} Mbit/s" if self.mbps else ""
        return f"{self.rtt_ms:g} ms RTT{bw} (delay proxy on 127.0.0.1)"


Request = tuple[str, tuple[Any, ...]]


@dataclass(slots=True)
class Corpus:
    """Everything a plan refers to: the preloaded records and the episodes appended later."""

    episodes: list[Episode]
    appends: list[Episode]


def make_corpus(w: Workload, prefix: str) -> Corpus:
    eps = generate_episodes(w.records, seed=w.seed, id_prefix=f"{prefix}e")
    n_writes = math.ceil(w.ops * w.mix.get("store_episodes", 0) / sum(w.mix.values()) * 1.5) + 1
    appends = generate_episodes(
        n_writes * w.batch,
        seed=w.seed + 1,
        id_prefix=f"{prefix}n",
        start_time=eps[-1].start_time + 1,
    )
    return Corpus(eps, appends)


def plan_requests(w: Workload, corpus: Corpus) -> list[Request]:
    """The seeded list of requests: ``(operation, arguments)``."""
    rng = np.random.default_rng(w.seed)
    ops = sorted(w.mix)
    p = np.array([w.mix[o] for o in ops], dtype=float)
    choice = rng.choice(len(ops), size=w.ops, p=p / p.sum())
    keys = zipf_trace(w.ops * 10 + 10, len(corpus.episodes), w.zipf, seed=w.seed).tolist()
    ids = [e.id for e in corpus.episodes]
    key_it = iter(keys)
    # "since" points: recent history, a few distinct values (agents ask about the last N tasks)
    recent = [corpus.episodes[max(0, len(ids) - 50 * k)].start_time for k in range(1, 11)]
    langs = sorted(LANGUAGES)
    appended = 0
    out: list[Request] = []
    for i in choice:
        op = ops[i]
        args: tuple[Any, ...]
        if op == "get_episode":
            args = (ids[next(key_it)],)
        elif op == "get_episodes":
            args = ([ids[next(key_it)] for _ in range(10)],)
        elif op == "query_episodes_since":
            args = (recent[int(rng.integers(len(recent)))], 50)
        elif op == "query_episodes_by_metadata":
            args = ("agent", ("planner", "coder", "reviewer")[int(rng.integers(3))], 50)
        elif op == "query_episodes":
            args = (DOMAINS[int(rng.integers(len(DOMAINS)))], langs[int(rng.integers(len(langs)))])
        elif op == "search_patterns":
            args = (round(0.5 + 0.1 * int(rng.integers(5)), 1),)
        else:
            batch = corpus.appends[appended : appended + w.batch]
            if len(batch) < w.batch:  # more writes drawn than planned for: reuse from the start
                appended = 0
                batch = corpus.appends[: w.batch]
            appended += w.batch
            args = (batch,)
        out.append((op, args))
    return out


def _call(store: Store, op: str, args: tuple[Any, ...]) -> Any:
    """Start the Store call of one planned request."""
    if op == "query_episodes":
        return store.query_episodes(domain=args[0], language=args[1], limit=50)
    if op == "search_patterns":
        return store.search_patterns(min_success_rate=args[0], limit=50)
    fn: Callable[..., Any] = getattr(store, op)
    return fn(*args)


def arrival_times(w: Workload) -> np.ndarray | None:
    """Scheduled start of each request in seconds (open loop), or None (closed loop)."""
    if w.rate is None:
        return None
    rng = np.random.default_rng(w.seed + 7)
    if w.trace is None:
        return np.cumsum(rng.exponential(1.0 / w.rate, size=w.ops))
    # piecewise-constant rate: the trace, normalised to mean 1, times `rate`; repeated as needed
    shape = np.asarray(w.trace, dtype=float)
    shape = shape / shape.mean()
    times: list[np.ndarray] = []
    total, step = 0, 0
    while total < w.ops:
        lam = w.rate * shape[step % shape.size] * w.trace_step
        n = int(rng.poisson(lam))
        times.append(np.sort(rng.uniform(step, step + 1, size=n)) * w.trace_step)
        total += n
        step += 1
    return np.concatenate(times)[: w.ops]


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
    async with await Store.open(url, **layers.store_options()) as store:
        for i in range(0, len(corpus.episodes), 500):
            await store.store_episodes(corpus.episodes[i : i + 500])
        await store.store_patterns(generate_patterns(200, seed=seed))
        await store.store_heuristics(generate_heuristics(100, seed=seed))


Row = tuple[str, float, float, bool, str | None, float]


async def _run_plan(store: Store, plan: list[Request], w: Workload, bar: Progress) -> list[Row]:
    rows: list[Row | None] = [None] * len(plan)
    t0 = time.perf_counter()

    async def one(i: int, scheduled: float) -> None:
        op, args = plan[i]
        err: str | None = None
        began = time.perf_counter() - t0  # lag_s: how late the harness started it
        try:
            await _call(store, op, args)
        except Exception as e:  # recorded per request: the table reports errors by type
            err = type(e).__name__
        end = time.perf_counter() - t0
        rows[i] = (op, scheduled, end - scheduled, err is None, err, began - scheduled)
        bar.advance()

    arrivals = arrival_times(w)
    if arrivals is None:
        it: Iterator[int] = iter(range(len(plan)))

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


def _proxied(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))


async def run_bench(
    url: str | None,
    layers: Sequence[Layers],
    workload: Workload,
    *,
    link: Link = Link(),
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
    """
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
        for ci, cfg in enumerate(layers):
            prefix = f"bench{workload.seed}c{ci}" if url else "b"
            corpus = make_corpus(workload, prefix)
            plan = plan_requests(workload, corpus)
            async with AsyncExitStack() as stack:
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
                store = await Store.open(target, **cfg.store_options())
                stack.push_async_callback(store.close)
                if record:
                    store.metrics.keep_samples()
                bar = Progress(len(plan), cfg.name, enabled=progress)
                t0 = time.perf_counter()
                rows = await _run_plan(store, plan, workload, bar)
                wall = time.perf_counter() - t0
                frame = pl.DataFrame(
                    rows,
                    schema={
                        "op": pl.Utf8,
                        "start_s": pl.Float64,
                        "latency_s": pl.Float64,
                        "ok": pl.Boolean,
                        "error": pl.Utf8,
                        "lag_s": pl.Float64,
                    },
                    orient="row",
                ).with_columns(config=pl.lit(cfg.name), wall_s=pl.lit(wall))
                request_frames.append(frame)
                phase_frames.append(store.metrics.to_polars().with_columns(config=pl.lit(cfg.name)))
                info.setdefault("stats", {})[cfg.name] = _layer_stats(store.stats())
                if record:
                    sample_frames.append(
                        (await _samples(store, target)).with_columns(config=pl.lit(cfg.name))
                    )
    requests = pl.concat(request_frames).select(
        "config", "op", "start_s", "latency_s", "ok", "error", "lag_s", "wall_s"
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


def cache_hit_ratio(snapshot: dict[str, Any]) -> float:
    """Hits / lookups over every cache of a cache layer snapshot (records and queries)."""
    hits = sum(v.get("hits", 0) for v in snapshot.values() if isinstance(v, dict))
    misses = sum(v.get("misses", 0) for v in snapshot.values() if isinstance(v, dict))
    return hits / (hits + misses) if hits + misses else 0.0


def _layer_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """The few layer figures the report prints (cache hit ratio, connections, bytes stored)."""
    codec, pool = stats["codec"], stats["pool"]
    return {
        "cache_hit_ratio": cache_hit_ratio(stats["cache"]),
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
    if "off" in info["configs"] and len(info["configs"]) > 1:
        lines += ["", "What each configuration removes vs all layers off (all operations)"]
        allops = s.filter(pl.col("op") == "all")
        base = allops.filter(pl.col("config") == "off").row(0, named=True)
        rows = []
        for r in allops.filter(pl.col("config") != "off").iter_rows(named=True):
            rows.append(
                (
                    r["config"],
                    r["p50_ms"],
                    base["p50_ms"] - r["p50_ms"],
                    1 - r["p50_ms"] / base["p50_ms"] if base["p50_ms"] else math.nan,
                    r["p99_ms"],
                    base["p99_ms"] - r["p99_ms"],
                    1 - r["p99_ms"] / base["p99_ms"] if base["p99_ms"] else math.nan,
                    r["ops_per_s"] / base["ops_per_s"] if base["ops_per_s"] else math.nan,
                )
            )
        lines += _table(
            ["config", "p50", "p50 removed", "share", "p99", "p99 removed", "share",
             "throughput x"],
            rows,
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
