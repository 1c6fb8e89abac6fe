"""``tiered`` command line: ``report`` (the main job), ``bench`` and ``dev-server``.

``tiered report`` runs the storage core end to end on the embedded default, the bench workload
with each layer in turn, the simulation scenarios (:mod:`tiered.sim.scenarios`), every notebook,
and writes ``reports/index.html`` (:mod:`tiered.report`). The store run writes
a seeded corpus of realistic episodes, patterns, heuristics and embeddings in batches, reads them
back through every query path, prints what it did with timings, and saves
``reports/store-run.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tiered.devserver import SqldCluster
from tiered.errors import ConfigError, TieredError
from tiered.progress import Progress
from tiered.store import Store, StoreConfig

if TYPE_CHECKING:
    from tiered.bench import BenchResult

__all__ = ["main"]


async def _timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """Result of ``await fn()`` and its median wall time over ``repeat`` runs."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - t)
    return result, sorted(times)[len(times) // 2]


async def run_store_report(
    url: str, *, episodes: int = 5000, batch: int = 500, seed: int = 0, out: TextIO = sys.stdout
) -> dict[str, Any]:
    """Write and read a seeded corpus through every Store path; returns what was measured."""
    from tiered.sim import (
        generate_embeddings,
        generate_episodes,
        generate_heuristics,
        generate_patterns,
    )

    eps = generate_episodes(episodes, seed=seed)
    pats, heus = generate_patterns(200, seed=seed), generate_heuristics(100, seed=seed)
    embs = generate_embeddings(1000, dim=64, seed=seed)
    results: dict[str, Any] = {"url": url, "episodes": episodes, "batch": batch, "seed": seed}
    async with await Store.open(url, config=StoreConfig()) as store:
        bar = Progress(len(eps), "store_episodes")
        t0 = time.perf_counter()
        for i in range(0, len(eps), batch):
            await store.store_episodes(eps[i : i + batch])
            bar.advance(len(eps[i : i + batch]))
        write_s = time.perf_counter() - t0
        results["store_episodes_per_s"] = len(eps) / write_s
        (_, results["store_patterns_s"]) = await _timed(lambda: store.store_patterns(pats))
        (_, results["store_heuristics_s"]) = await _timed(lambda: store.store_heuristics(heus))
        (_, results["store_embeddings_s"]) = await _timed(lambda: store.store_embeddings(embs))

        ids = [e.id for e in eps[:: max(1, len(eps) // 500)]]
        t0 = time.perf_counter()
        for eid in ids:
            assert await store.get_episode(eid) is not None
        results["get_episode_ms"] = (time.perf_counter() - t0) / len(ids) * 1e3
        checks: dict[str, tuple[int, float, float]] = {}
        mid = eps[len(eps) // 2].start_time
        for name, fn in {
            "query_episodes_since": lambda: store.query_episodes_since(mid, limit=100),
            "query_episodes_by_metadata": lambda: store.query_episodes_by_metadata(
                "agent", "coder"
            ),
            "query_episodes(domain, language)": lambda: store.query_episodes(
                domain="web-api", language="python"
            ),
            "search_patterns": lambda: store.search_patterns(min_success_rate=0.5),
            "list_heuristics": lambda: store.list_heuristics(min_confidence=0.8),
            "get_episodes(500)": lambda: store.get_episodes(ids),
            "nearest(k=10)": lambda: store.nearest(embs[3].vector, 10),
        }.items():
            got, first = await _timed(fn)  # a miss: the database answers
            _, cached = await _timed(fn, repeat=3)  # the query cache answers
            checks[name] = (len(got), first * 1e3, cached * 1e3)
        results["queries"] = {
            k: {"rows": n, "first_ms": f, "cached_ms": c} for k, (n, f, c) in checks.items()
        }

        # a skewed read workload through the cache layer
        from tiered.sim.traces import zipf_trace

        picks = zipf_trace(20_000, len(eps), 1.0, seed=seed).tolist()
        before = store.stats()["statements"]["by_name"].get("get_episode", 0)
        t0 = time.perf_counter()
        for i in picks:
            await store.get_episode(eps[i].id)
        secs = time.perf_counter() - t0
        db_reads = store.stats()["statements"]["by_name"].get("get_episode", 0) - before
        results["zipf_reads"] = {
            "reads": len(picks),
            "db_reads": db_reads,
            "reads_per_s": len(picks) / secs,
        }
        results["stats"] = store.stats()

    codec = results["stats"]["codec"]
    st = results["stats"]["statements"]
    print(f"\ntiered store run on {url}", file=out)
    print(
        f"  wrote {episodes} episodes in batches of {batch}: "
        f"{results['store_episodes_per_s']:,.0f} episodes/s",
        file=out,
    )
    print(
        f"  payload bytes {codec['bytes_raw']:,} raw -> {codec['bytes_stored']:,} stored "
        f"(ratio {codec['ratio']:.2f}, {codec['frames_compressed']} compressed frames, "
        f"{codec['frames_raw']} raw)",
        file=out,
    )
    print(
        f"  get_episode: {results['get_episode_ms']:.3f} ms average over {len(ids)} reads", file=out
    )
    print(f"  {'query':<34}{'rows':>6}{'first ms':>10}{'cached ms':>11}", file=out)
    for name, (n, first, cached) in checks.items():
        print(f"  {name:<34}{n:>6}{first:>10.2f}{cached:>11.3f}", file=out)
    print(
        f"  statements: {st['executions']:,} executed, {st['prepared']} prepared, "
        f"{st['reused']:,} reused",
        file=out,
    )
    z, ce = results["zipf_reads"], results["stats"]["cache"]["episodes"]
    print(
        f"  cache: {z['reads']:,} Zipf(1.0) get_episode calls -> {z['db_reads']:,} database "
        f"reads ({1 - z['db_reads'] / z['reads']:.1%} saved), {z['reads_per_s']:,.0f} reads/s; "
        f"episode cache {ce['entries']:,} entries, {ce['bytes'] / 1e6:.1f} MB, "
        f"hit ratio {ce['hit_ratio']:.3f}",
        file=out,
    )
    return results


def _cmd_report(args: argparse.Namespace) -> int:
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    db = outdir / "store-run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = args.url or f"file:{db}"
    results = asyncio.run(
        run_store_report(url, episodes=args.episodes, batch=args.batch, seed=args.seed)
    )
    path = outdir / "store-run.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"  results: {path}")

    # the bench workload on the embedded default, each layer switched on in turn
    from tiered.bench import Layers, Workload, run_bench

    print("\nMixed workload, each layer on in turn (tiered bench --layers compare)")
    bench = asyncio.run(
        run_bench(None, Layers.parse("compare"), Workload(ops=1000, seed=args.seed))
    )
    _print_bench(bench, outdir / "bench.parquet")
    if args.quick:
        return 0

    from tiered import report

    if not args.skip_scenarios:
        report.run_scenarios()
    print("\n== notebooks", flush=True)
    pages = report.run_notebooks(outdir)
    index = report.build_index(outdir, pages=pages)
    print(f"\nreport: {index}")
    shot = report.screenshot(index)
    if shot is not None:
        print(f"screenshot (headless Chromium): {shot}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from tiered.bench import Layers, Link, Workload, run_bench

    try:
        mbps = args.mbps if args.mbps is not None else (100.0 if args.rtt else 0.0)
        link = Link(rtt_ms=args.rtt, mbps=mbps or None)
        spec = args.layers or ("compare" if link.active else "all")
        layers = Layers.parse(spec)
        trace = None
        if args.trace:
            trace = _read_trace(Path(args.trace))
        workload = Workload(
            ops=args.ops,
            concurrency=args.concurrency,
            records=args.records,
            zipf=args.zipf,
            batch=args.batch,
            rate=args.rate,
            trace=trace,
            trace_step=args.trace_step,
            seed=args.seed,
        )
        result = asyncio.run(
            run_bench(args.url, layers, workload, link=link, sqld=args.sqld, progress=True)
        )
    except TieredError as e:
        print(f"tiered bench: {e}", file=sys.stderr)
        return 2
    _print_bench(result, Path(args.out))
    return 0


def _print_bench(result: BenchResult, out: Path) -> None:
    """Print a bench run's tables and write its parquet files to ``out`` (and siblings)."""
    from tiered.bench import format_report, write_results

    print(format_report(result))
    paths = write_results(result, out)
    print(f"\nresults: {paths['requests']} (+ {paths['phases'].name}, {paths['summary'].name})")


def _read_trace(path: Path) -> list[float]:
    """A request-rate series: a parquet or CSV file whose ``requests`` column (or last column)
    holds the relative rate per step."""
    import polars as pl

    if not path.exists():
        raise ConfigError(f"--trace: no such file: {path}")
    frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    col = "requests" if "requests" in frame.columns else frame.columns[-1]
    try:
        return frame[col].cast(pl.Float64).to_list()
    except pl.exceptions.PolarsError as e:
        raise ConfigError(f"--trace: column {col!r} of {path} is not numeric") from e


def _cmd_dev_server(args: argparse.Namespace) -> int:
    """Run sqld until interrupted; watch it, and say so (exit 1) if it dies, or restart it."""
    from tiered.devserver import JwtKey

    if args.auth and args.jwt_key_file:
        raise ConfigError("--auth generates a key; --jwt-key-file uses yours: give one of them")
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port must be within 1..65535, got {args.port}")
    key: JwtKey | None = None
    key_file: Path | None = Path(args.jwt_key_file) if args.jwt_key_file else None
    if key_file is not None and not key_file.is_file():
        raise ConfigError(f"--jwt-key-file {key_file} does not exist")
    cluster = SqldCluster(
        replicas=args.replicas, data_dir=args.data_dir, port=args.port, auth_jwt_key_file=None
    )
    if args.auth:
        key = JwtKey()
        key_file = key.write_public(cluster.data_dir / "jwt-public.key")
    if key_file is not None:  # set before anything starts
        for p in cluster.processes():
            p.auth_jwt_key_file = key_file
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    names = {
        id(p): ("primary" if i == 0 else f"replica{i - 1}")
        for i, p in enumerate(cluster.processes())
    }

    def pid_line(proc: Any) -> str:
        name = names[id(proc)]
        return f"{'pid' if name == 'primary' else name + '-pid'} {proc.pid}"

    with cluster:
        urls = cluster.urls()
        print(f"http {urls['http']}", flush=True)
        print(f"ws   {urls['ws']}", flush=True)
        print(f"grpc {urls['grpc']}", flush=True)
        print(f"data-dir {cluster.data_dir}", flush=True)
        for i, (h, w) in enumerate(zip(urls["replicas_http"], urls["replicas_ws"], strict=True)):
            print(f"replica{i} http {h} ws {w}", flush=True)
        if key_file is not None:
            print(f"jwt-key-file {key_file}", flush=True)
        if key is not None:
            print(f"token-rw {key.token('rw')}", flush=True)
            print(f"token-ro {key.token('ro')}", flush=True)
        for proc in reversed(list(cluster.processes())):  # the primary's pid line comes last
            print(pid_line(proc), flush=True)
        print("Ctrl-C stops the server(s).", file=sys.stderr, flush=True)
        while not stop:
            for proc in cluster.processes():
                code = proc.exited()
                if code is None:
                    continue
                how = f"signal {-code}" if code < 0 else f"code {code}"
                print(
                    f"tiered dev-server: sqld ({names[id(proc)]}, port {proc.http_port}) "
                    f"exited with {how}",
                    file=sys.stderr,
                    flush=True,
                )
                if not args.restart:
                    return 1
                try:
                    proc.start()
                except TieredError as e:
                    print(f"tiered dev-server: restart failed: {e}", file=sys.stderr, flush=True)
                    return 1
                print(f"tiered dev-server: restarted, pid {proc.pid}", file=sys.stderr, flush=True)
                print(pid_line(proc), flush=True)
            time.sleep(0.1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tiered", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="run the main job and write reports/")
    rep.add_argument("--url", help="database URL (default: a fresh embedded file in --out)")
    rep.add_argument("--out", default="reports", help="output folder (default: reports)")
    rep.add_argument("--episodes", type=int, default=5000)
    rep.add_argument("--batch", type=int, default=500)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--quick", action="store_true", help="only the store run and the bench")
    rep.add_argument(
        "--skip-scenarios",
        action="store_true",
        help="reuse data/results/ instead of re-running the simulation scenarios",
    )
    rep.set_defaults(func=_cmd_report)
    b = sub.add_parser(
        "bench",
        help="run a mixed workload with layers on/off and print the latency breakdown",
        description="A realistic mixed workload (Zipf-keyed reads, queries, batched appends) "
        "against a Store; prints throughput, latency quantiles, the phase breakdown and what "
        "each layer removes; writes parquet results. Default: an embedded database in a "
        "temporary folder. Example over a simulated remote link: tiered bench --rtt 20",
    )
    b.add_argument("--url", help="database URL (default: a fresh embedded file per config)")
    b.add_argument("--sqld", action="store_true", help="start a local sqld per config (ws)")
    b.add_argument(
        "--layers",
        help="configs to run: all, off, compare (off, each layer alone, all), or e.g. "
        "cache+pool,compression (default: all; compare when --rtt/--mbps is set)",
    )
    b.add_argument(
        "--rtt",
        type=float,
        default=0.0,
        metavar="MS",
        help="round-trip time of a delay proxy on 127.0.0.1 in front of sqld",
    )
    b.add_argument(
        "--mbps",
        type=float,
        default=None,
        metavar="MBIT",
        help="link bandwidth each way (default with --rtt: 100; 0 = unlimited)",
    )
    b.add_argument("--ops", type=int, default=2000, help="requests per config (default 2000)")
    b.add_argument("--concurrency", type=int, default=4, help="closed-loop workers (default 4)")
    b.add_argument("--records", type=int, default=2000, help="episodes written first")
    b.add_argument("--zipf", type=float, default=1.0, help="key skew of reads (default 1.0)")
    b.add_argument("--batch", type=int, default=10, help="episodes per store_episodes")
    b.add_argument("--rate", type=float, default=None, help="open loop: requests per second")
    b.add_argument("--trace", help="open loop: parquet/CSV request-rate series shaping --rate")
    b.add_argument("--trace-step", type=float, default=1.0, help="seconds per trace point")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", default="reports/bench.parquet", help="requests parquet file")
    b.set_defaults(func=_cmd_bench)
    dev = sub.add_parser("dev-server", help="run sqld on 127.0.0.1 until interrupted")
    dev.add_argument("--replicas", type=int, default=0)
    dev.add_argument(
        "--data-dir",
        "--db-path",
        dest="data_dir",
        default=None,
        help="keep data here; started again on it, serves the same data (default: a temp folder)",
    )
    dev.add_argument("--port", type=int, default=None, help="primary HTTP/ws port (default: free)")
    dev.add_argument(
        "--restart", action="store_true", help="restart a server that dies (default: exit 1)"
    )
    dev.add_argument(
        "--auth",
        action="store_true",
        help="require JWTs: generate a key and print a read-write and a read-only token",
    )
    dev.add_argument(
        "--jwt-key-file", default=None, help="require JWTs signed by this Ed25519 public key"
    )
    dev.set_defaults(func=_cmd_dev_server)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except TieredError as e:  # a typed error is a message for the user, not a traceback
        print(f"tiered {args.command}: error: {e}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
