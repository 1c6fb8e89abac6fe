"""``tiered analyze``: a read-only analysis of a user's database and traffic, recommendations first.

:func:`analyze` opens the target read-only (:mod:`tiered.analysis.sources`), detects its layout,
and runs each analysis that its inputs allow, each returning its evidence as frames:

* storage profile and the compression tiered's codec would achieve on a sample
  (:mod:`tiered.analysis.profile`);
* index health: the plans of the layout's hot queries beside tiered's
  (:mod:`tiered.analysis.indexes`);
* traffic model → pool plan, checked on held-out days (:mod:`tiered.analysis.traffic`), on the
  user's traffic file, or else on the database's own history (a proxy for writes);

then turns the evidence into :class:`Recommendation` s and one configuration snippet to paste.
What is not analysed yet (a recorded access trace for cache sizing, latency probes against the
live server) is listed as such in :attr:`Analysis.notes`, never guessed.
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tiered.analysis.cache import CacheSizing, size_cache
from tiered.analysis.indexes import index_health
from tiered.analysis.latency import LatencyProbe, probe_latency
from tiered.analysis.profile import CompressionProjection, compression_projection, storage_profile
from tiered.analysis.sources import (
    Layout,
    TrafficSeries,
    detect_layout,
    history,
    open_target,
    traffic_file,
)
from tiered.analysis.traffic import TrafficPlan, plan_traffic
from tiered.db.driver import redact_url
from tiered.errors import ConfigError, DataError
from tiered.sim.poolmodel import HoldTimes

__all__ = ["Analysis", "Recommendation", "analyze"]


@dataclass
class Recommendation:
    """One part of the recommended configuration, its predicted effect and how sure we are."""

    part: str
    setting: str  # a keyword argument of Store.open, as Python
    effect: str
    confidence: str
    evidence: str  # which section of the report backs it

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class Analysis:
    """Everything :func:`analyze` found; :meth:`render` shows the recommendations first."""

    target: str  # the URL, credentials redacted
    layout: Layout
    storage: pl.DataFrame
    compression: CompressionProjection | None
    indexes: pl.DataFrame
    history: pl.DataFrame
    traffic_source: str
    traffic: TrafficPlan | None
    series: pl.DataFrame  # the hourly traffic the pool plan was made on (timestamp, requests)
    cache: CacheSizing | None = None
    latency: LatencyProbe | None = None
    recommendations: list[Recommendation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    statements_sent: int = 0
    schedule_path: Path | None = None  # where write() put the pool schedule (absolute)

    def snippet(self) -> str:
        """The recommended configuration as a complete script that runs as printed: it opens
        a Store with every recommended setting (the token from ``TIERED_AUTH_TOKEN``, the pool
        schedule from the absolute path :meth:`write` gave it) and prints the Store.

        On a database of the original layout the Store is for the tiered database its data is
        imported into (``tiered import``), never the original itself."""
        settings = [r.setting for r in self.recommendations if r.setting]
        joined = "\n".join(settings)
        names = sorted(
            n
            for n in ("CacheConfig", "PoolConfig", "RecordCacheConfig", "StoreConfig")
            if f"{n}(" in joined
        )
        pool = [n for n in ("Hybrid", "Predictive", "Reactive", "Schedule") if f"{n}(" in joined]
        schedule = "steps" in joined
        lines = [f'"""tiered\'s recommended configuration for {self.target} (tiered analyze)."""']
        lines += ["", "import asyncio"] + (["import json"] if schedule else []) + ["import os"]
        lines += ["", f"from tiered import {', '.join(['Store', *names])}"]
        if pool:
            lines.append(f"from tiered.pool import {', '.join(pool)}")
        if self.layout == "original":
            url = "file:tiered.db"
            lines += ["", "# the tiered database this one's data is imported into:",
                      f"#   tiered import {self.target} {url}"]  # fmt: skip
        else:
            url = self.target
        lines += ["", f"URL = {url!r}"]
        if schedule:
            path = str(self.schedule_path or Path("pool-schedule.json").resolve())
            lines.append(f"SCHEDULE = {path!r}  # (epoch seconds, pool size) changes")
        lines += ["", "", "async def main() -> None:"]
        if schedule:
            lines += [
                "    with open(SCHEDULE) as f:",
                "        steps = [(float(t), int(n)) for t, n in json.load(f)]",
            ]
        lines += ["    store = await Store.open(", "        URL,"]
        lines.append('        auth_token=os.environ.get("TIERED_AUTH_TOKEN"),')
        lines += [f"        {x}," for x in settings]
        lines += ["    )", "    async with store:", "        print(store)", ""]
        lines += ["", "asyncio.run(main())"]
        return "\n".join(lines)

    def recommendations_markdown(self) -> str:
        """The recommendations as a Markdown list, each in full with how sure it is."""
        out = []
        for r in self.recommendations:
            setting = f" `{r.setting}`" if r.setting else " (nothing to set)"
            out.append(f"- **{r.part}**{setting}: {r.effect}. *How sure:* {r.confidence}.")
        return "\n".join(out) or "No recommendation: nothing was measured."

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "layout": self.layout,
            "recommendations": [r.as_dict() for r in self.recommendations],
            "snippet": self.snippet(),
            "storage": self.storage.to_dicts(),
            "compression": self.compression.as_dict() if self.compression else None,
            "indexes": self.indexes.to_dicts(),
            "traffic_source": self.traffic_source,
            "traffic": self.traffic.as_dict() if self.traffic else None,
            "cache": self.cache.as_dict() if self.cache else None,
            "latency": self.latency.as_dict() if self.latency else None,
            "history_hours": self.history.height,
            "notes": self.notes,
            "statements_sent": self.statements_sent,
        }

    def render(self) -> str:
        out = [f"tiered analyze: {self.target} ({self.layout} layout)", "", "Recommended:"]
        for r in self.recommendations:
            out.append(f"  [{r.part}] {r.effect}")
            out.append(f"      how sure: {r.confidence}")
        out += ["", "Paste:", *("  " + x for x in self.snippet().splitlines())]
        out += ["", "Evidence:"]
        tables = self.storage.filter(pl.col("column") == "*").head(8)
        out.append("  storage (rows, bytes as stored):")
        for t in tables.iter_rows(named=True):
            out.append(f"    {t['table']:<28}{t['rows']:>10,} rows {t['bytes']:>14,} bytes")
        c = self.compression
        if c is not None:
            out.append(
                f"  payloads of {c.rows:,} episodes (sample {c.sampled:,}): stored "
                f"{c.stored_bytes:,.0f} B, raw {c.raw_bytes:,.0f} B, tiered zstd "
                f"{c.zstd_bytes:,.0f} B, with a dictionary {c.dictionary_bytes:,.0f} B"
            )
        out.append("  hot queries (plan on this database | in tiered's layout):")
        for q in self.indexes.iter_rows(named=True):
            mark = "SCAN" if q["full_scan"] else "index"
            out.append(f"    {q['query']:<28}{mark:<6} {q['plan'][:60]}")
            out.append(f"    {'':<28}{'':<6} tiered: {q['tiered_plan'][:60]}")
        if self.traffic is not None:
            tp = self.traffic
            out.append(f"  traffic ({self.traffic_source}): {tp.hours} hours, model {tp.model}")
            for p in tp.held_out.iter_rows(named=True):
                out.append(
                    f"    held-out {p['policy']:<9} late {p['late_share']:.4%}  "
                    f"connection-hours {p['connection_hours']:,.1f}"
                )
        if self.latency is not None:
            lp = self.latency
            out.append(
                f"  latency of hot reads on this database ({lp.requests.height} requests at "
                f"{lp.achieved_rate:.1f}/s, limit {lp.rate_limit:g}/s):"
            )
            for row in lp.summary().iter_rows(named=True):
                out.append(
                    f"    {row['op']:<28}round trip p50 {row['round_trip_p50_ms']:.2f} ms, "
                    f"p95 {row['round_trip_p95_ms']:.2f} ms; decode p50 "
                    f"{row['decode_p50_ms']:.3f} ms"
                )
                if row["errors"]:
                    out.append(
                        f"    {'':<28}FAILED {row['errors']} of {row['n']}: {row['first_error']}"
                    )
        if self.cache is not None:
            cs = self.cache
            out.append(f"  cache ({cs.events:,} accesses over {cs.seconds:,.0f} s):")
            for row in cs.curve.sort("table", "size").iter_rows(named=True):
                out.append(
                    f"    {row['table']:<12} {row['size']:>8,} entries  "
                    f"hit ratio {row['hit_ratio']:.3f}"
                )
        for n in self.notes:
            out.append(f"  note: {n}")
        out.append(f"  ({self.statements_sent} read-only statements sent; nothing written)")
        return "\n".join(out)

    def write(self, out: Path) -> dict[str, Path]:
        """Into ``out``: ``analysis.json``, the evidence frames as parquet, the pool schedule,
        the snippet as ``recommended.py``, and the whole analysis as ``analysis.pickle`` (what
        notebook 06 reads under ``tiered report``: one analysis, one pass over the database)."""
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "analysis.json"}
        for name, frame in (
            ("storage", self.storage),
            ("indexes", self.indexes),
            ("history", self.history),
        ):
            paths[name] = out / f"{name}.parquet"
            frame.write_parquet(paths[name])
        if self.traffic is not None:
            paths["schedule"] = out / "pool-schedule.json"
            paths["schedule"].write_text(json.dumps(self.traffic.schedule))
            self.schedule_path = paths["schedule"].resolve()
        paths["snippet"] = out / "recommended.py"
        paths["snippet"].write_text(self.snippet() + "\n")
        paths["json"].write_text(json.dumps(self.as_dict(), indent=2, default=str))
        paths["pickle"] = out / "analysis.pickle"
        paths["pickle"].write_bytes(pickle.dumps(self))
        return paths

    @staticmethod
    def load(path: str | Path) -> Analysis:
        """The analysis :meth:`write` saved as ``analysis.pickle`` (a file this tool wrote:
        a pickle runs code when loaded, so load only your own)."""
        obj = pickle.loads(Path(path).read_bytes())
        if not isinstance(obj, Analysis):
            raise ConfigError(f"{path} does not hold an analysis")
        return obj


#: resamples of the measured service times behind the pool plan's spread
RESAMPLES = 50
#: the service times are also planned at these multiples of the measured ones (the spread)
SERVICE_DRIFT = (0.5, 2.0)


def _hold_times(
    probe: LatencyProbe | None = None, seed: int = 0
) -> tuple[HoldTimes, float, str, list[tuple[HoldTimes, float]]]:
    """The service times a plan assumes: the round trips the probes measured on this database
    (20 or more), else the project's measured model, else an assumption (said so); with the
    measured ones, :data:`RESAMPLES` bootstrap resamples of them (seeded) for the spread."""
    ok = None if probe is None else probe.requests.filter(pl.col("error").is_null())
    if ok is not None and ok.height >= 20:
        rtt = np.maximum(ok["round_trip_ms"].to_numpy() / 1000, 1e-5)
        connect = float(np.median(rtt)) * 3  # TCP, TLS and the protocol's hello
        note = f"service times measured: {ok.height} probe round trips on this database"
        rng = np.random.default_rng(seed)
        draws = [rng.choice(rtt, size=rtt.size) for _ in range(RESAMPLES)]
        # and half and twice them: a server's service times drift between one sample and the
        # next (load, a shared machine) by more than one sample's own spread shows
        draws += [rtt * f for f in SERVICE_DRIFT]
        resamples = [(HoldTimes(d), float(np.median(d)) * 3) for d in draws]
        return HoldTimes(rtt), connect, note, resamples
    try:
        from tiered.scenarios.runs import load_service

        model = load_service()
        hold, connect = model.hold_times(), float(np.median(model.connect_times()))
        rtt = model.info.get("rtt_ms", 0.0)
        return hold, connect, f"service times measured on a local sqld behind a {rtt:g} ms link", []
    except (OSError, ConfigError, pl.exceptions.PolarsError):
        rng = np.random.default_rng(0)
        sample = rng.gamma(2.0, 0.0125, 5000)  # mean 25 ms, cv 0.7
        return HoldTimes(sample), 0.05, "assumed service times (mean 25 ms): none measured", []


async def analyze(
    url: str,
    *,
    auth_token: str | None = None,
    traffic: str | Path | None = None,
    access_log: str | Path | None = None,
    sample: int = 2000,
    probes: int = 100,
    rate: float = 20.0,
    holdout_days: int | None = None,
    quantile: float = 0.9,
    slo_ms: float = 10.0,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> Analysis:
    """Analyse the database at ``url`` (read-only) and, if given, the ``traffic`` file.

    Raises :class:`DataError` / :class:`UnknownLayout` for inputs it cannot use, the database
    errors of :func:`tiered.analysis.sources.open_target` when the target cannot be opened.
    """
    bars = (say is None) if progress is None else progress  # bars unless the caller is quiet
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    series: TrafficSeries | None = None
    if traffic is not None:
        series = traffic_file(traffic)  # a bad file fails before any connection is made
    sizing: CacheSizing | None = None
    if access_log is not None:
        say(f"replaying the access trace in {access_log} at a range of cache sizes")
        sizing = size_cache(access_log, progress=bars)
    say(f"opening {redact_url(url)} read-only")
    target = await open_target(url, auth_token=auth_token)
    notes: list[str] = []
    try:
        layout = await detect_layout(target)
        if layout == "empty":
            notes.append("the database is empty: no storage, compression or traffic evidence")
        say("storage profile")
        storage = await storage_profile(target, layout)
        say(f"compression of a sample of up to {sample} episodes")
        compression = await compression_projection(target, layout, sample=sample, progress=bars)
        say("index health of the hot queries")
        indexes = await index_health(target, layout)
        hist = await history(target, layout)
        probe = None
        if probes:
            say(f"{probes} hot reads on sampled keys, at most {rate:g}/s")
            probe = await probe_latency(
                target, layout, count=probes, rate=rate, seed=seed, progress=bars
            )
        statements = target.statements
    finally:
        await target.close()
    if series is not None:
        frame, source = series.frame, f"file {series.source}"
        notes += [f"traffic file: {n}" for n in series.notes]
    else:
        frame, source = hist, "the database's own history (episodes started per hour)"
        if hist.height:
            notes.append(
                "traffic from the database's history is a proxy for writes only: reads leave "
                "no trace in a database; give --traffic with request counts for the real load"
            )
    plan: TrafficPlan | None = None
    if frame.height:
        hold, connect, service_note, resamples = _hold_times(probe, seed)
        notes.append(service_note)
        try:
            plan = plan_traffic(
                frame,
                hold,
                connect,
                quantile=quantile,
                slo_ms=slo_ms,
                holdout_days=holdout_days,
                seed=seed,
                resamples=resamples,
                progress=say,
                bars=bars,
            )
        except DataError as e:
            notes.append(f"no pool plan: {e}")
    if sizing is None:
        notes.append(
            "no cache sizing: record an access trace with StoreConfig(access_log=folder) and "
            "give it with --access-log"
        )
    analysis = Analysis(
        target=redact_url(url),
        layout=layout,
        storage=storage,
        compression=compression,
        indexes=indexes,
        history=hist,
        traffic_source=source,
        traffic=plan,
        series=frame,
        cache=sizing,
        latency=probe,
        notes=notes,
        statements_sent=statements,
    )
    analysis.recommendations = _recommend(analysis)
    return analysis


#: a plan (or a setting) is recommended only where it saves at least this share
MIN_GAIN = 0.02


def _recommend(a: Analysis) -> list[Recommendation]:
    """One recommendation per part the evidence covers; a setting only where it changes
    tiered's default and a gain is predicted (otherwise: the default is right, and why)."""
    recs: list[Recommendation] = []
    c = a.compression
    if c is not None and c.stored_bytes:
        recs.append(
            Recommendation(
                "compression",
                "",  # tiered's default codec: zstd, a dictionary after 1,000 records
                f"episode payloads {c.stored_bytes / 1e6:,.1f} MB as stored today -> "
                f"{c.dictionary_bytes / 1e6:,.1f} MB with tiered's zstd and a trained "
                f"dictionary ({c.saving:.0%} less): tiered's default codec, nothing to set",
                f"measured on {c.sampled:,} of {c.rows:,} episodes (dictionary judged on "
                "rows it was not trained on)",
                "compression",
            )
        )
        if c.undecodable:
            recs.append(
                Recommendation(
                    "data",
                    "",
                    f"{c.undecodable:,} of the {c.sampled + c.undecodable:,} sampled episodes "
                    "do not decode (a compressed envelope that does not open, text that is not "
                    "JSON): they are left out of the projection; tiered import names each",
                    "observed in the sample",
                    "compression",
                )
            )
    if a.latency is not None:
        failing = a.latency.summary().filter(pl.col("errors") > 0)
        for row in failing.iter_rows(named=True):
            recs.append(
                Recommendation(
                    "data",
                    "",
                    f"{row['op']} fails on this database for {row['errors']} of {row['n']} "
                    f"probes ({row['first_error']}); tiered's layout answers it from an index "
                    "on decoded values (move the data with tiered import)",
                    "observed: the database's own answer to real keys from its data",
                    "latency",
                )
            )
    scans = a.indexes.filter(pl.col("full_scan") & (pl.col("tiered_scans") == ""))
    if scans.height:
        names = ", ".join(scans["query"].to_list())
        recs.append(
            Recommendation(
                "indexes",
                "",
                f"{names}: a full scan of the table per query here, an index lookup in "
                "tiered's layout (move the data with tiered import)",
                "from the query plans of this database and of tiered's schema",
                "indexes",
            )
        )
    cs = a.cache
    if cs is not None:
        tables = ", ".join(f"{t} {cs.predicted[t]:.0%}" for t in cs.sizes)
        latency = f", ~{cs.latency_saved_ms:.1f} ms each" if cs.latency_saved_ms is not None else ""
        recs.append(
            Recommendation(
                "cache",
                cs.snippet(),
                f"reads answered by the cache: {tables}; {cs.reads_saved_per_s:,.1f} database "
                f"reads/s saved at the traced load{latency}",
                f"replayed {cs.events:,} recorded accesses through the real cache layer at "
                f"{cs.curve['size'].n_unique()} sizes",
                "cache",
            )
        )
    t = a.traffic
    if t is not None:
        recs.append(_pool_recommendation(t, a.traffic_source))
    return recs


def _pool_recommendation(t: TrafficPlan, source: str) -> Recommendation:
    """The planned pool where it saves connection-hours (at no more lateness) or meets the SLO
    the reactive default misses, else the reactive default, with the figures either way."""
    held = {r["policy"]: r for r in t.held_out.iter_rows(named=True)}
    hy, re_ = held["hybrid"], held["reactive"]
    lo, hi = t.max_size_range
    spread = f"max_size {t.max_size}" + (
        f" (from {lo} to {hi} over resamples of the measured service times, and for half to "
        "twice them)"
        if lo != hi
        else ""
    )
    checked = (
        f"simulated on the held-out end of {source} "
        f"({'meets' if t.meets_slo else 'misses'} the {t.slo_share:.1%} target); {spread}"
    )
    figures = (
        f"requests waiting > {t.slo_ms:g} ms: {hy['late_share']:.3%} planned, "
        f"{re_['late_share']:.3%} reactive; {hy['hours_vs_reactive']:.2f}x the reactive "
        "default's connection-hours"
    )
    cheaper = hy["hours_vs_reactive"] <= 1 - MIN_GAIN and hy["late_share"] <= max(
        re_["late_share"], t.slo_share
    )
    rescues = hy["late_share"] <= t.slo_share < re_["late_share"]
    if not (cheaper or rescues):
        return Recommendation(
            "pool",
            "",
            f"the reactive default is right here: a plan saves nothing measurable ({figures})",
            checked,
            "traffic",
        )
    return Recommendation(
        "pool",
        f"pool=PoolConfig(min_size={t.min_size}, max_size={t.max_size}, "
        f"sizing=Hybrid(Predictive(Schedule(steps), lead_time={round(t.lead_time_s)}), "
        "Reactive()))",
        figures,
        checked,
        "traffic",
    )
