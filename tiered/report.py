"""``tiered report``'s second half: the scenarios, the notebooks and ``reports/index.html``.

Steps (each announced, with its time): the simulation scenarios (calibration against a local
sqld, the layer breakdown over a 20 ms link, pool policies on the real traces, cache sizes),
writing ``data/results/*.parquet``; then every ``notebooks/NN-*.ipynb`` executed top to bottom
(nbclient) and exported to ``reports/notebooks/*.html``; then static PNG charts (vl-convert) and
``reports/index.html``, which needs no network to show every chart (images are inline).
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from tiered import charts
from tiered.errors import ConfigError
from tiered.scenarios import runs as scenarios
from tiered.sim.frontier import cheapest_meeting, frontier_summary

__all__ = ["build_index", "run_deployment", "run_notebooks", "run_scenarios", "screenshot"]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _step(name: str, fn: Callable[[], Any]) -> Any:
    print(f"\n== {name}", flush=True)
    t0 = time.perf_counter()
    out = fn()
    print(f"   done in {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def run_scenarios(results: Path = scenarios.RESULTS) -> None:
    _step("calibration: real stack vs simulator (local sqld, 20 ms link)",
          lambda: print(scenarios.run_calibration(results)))  # fmt: skip
    _step("layer breakdown over a 20 ms / 100 Mbit/s link",
          lambda: scenarios.run_breakdown(results))  # fmt: skip
    _step("pool policies on the real traces (simulated weeks)",
          lambda: print(scenarios.run_pool_policies(results).select(
              "trace", "policy", "late", "connection_hours", "late_vs_reactive",
              "hours_vs_reactive")))  # fmt: skip
    _step("cache sizes and policies (replay)", lambda: print(scenarios.run_cache_sizes(results)))


def _run_notebook(book: Path, target: Path, timeout: int) -> tuple[Path, float]:
    """Execute one notebook (its own kernel process) and export it; the page and seconds."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    t0 = time.perf_counter()
    nb = nbformat.read(book, as_version=4)
    NotebookClient(nb, timeout=timeout, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    body, _ = HTMLExporter().from_notebook_node(nb)
    page = target / f"{book.stem}.html"
    page.write_text(body)
    return page, time.perf_counter() - t0


def run_notebooks(out: Path, *, timeout: int = 300, workers: int = 2) -> list[Path]:
    """Execute every notebook in ``notebooks/`` and export it to ``out/notebooks/*.html``,
    ``workers`` at a time (each runs in a kernel process of its own; they only read
    ``data/results``)."""
    from concurrent.futures import ThreadPoolExecutor

    books = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if not books:
        raise ConfigError(f"no notebooks in {NOTEBOOKS}")
    target = out / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        runs = [pool.submit(_run_notebook, book, target, timeout) for book in books]
        pages = []
        for i, (book, run) in enumerate(zip(books, runs, strict=True), 1):
            page, seconds = run.result()
            pages.append(page)
            print(f"   [{i}/{len(books)}] {book.name} ({seconds:.1f} s)", flush=True)
    return pages


DEPLOYMENT = NOTEBOOKS / "06-your-deployment.ipynb"


def run_deployment(out: Path, *, analysis: Path, timeout: int = 900) -> Path:
    """Execute notebook 06 with papermill on an analysis :func:`tiered.analysis.analyze` wrote
    (``analysis``: its ``analysis.pickle``, the notebook's ``ANALYSIS`` parameter: the
    notebook reads it, it does not read the database again) and export it to
    ``out/notebooks``."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    target = out / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    executed = target / DEPLOYMENT.name
    t0 = time.perf_counter()
    papermill.execute_notebook(
        str(DEPLOYMENT),
        str(executed),
        parameters={"ANALYSIS": str(analysis.resolve())},
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        execution_timeout=timeout,
    )
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    page = target / f"{DEPLOYMENT.stem}.html"
    page.write_text(body)
    print(f"   {DEPLOYMENT.name} on {analysis} ({time.perf_counter() - t0:.1f} s)")
    return page


def _png(chart: Any) -> str:
    import vl_convert as vlc

    data = vlc.vegalite_to_png(chart.to_dict(), scale=1.5)
    return base64.b64encode(data).decode()


def _table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for r in frame.iter_rows():
        cells = "".join(
            f"<td>{v:,.4g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
            for v in r
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def build_index(
    out: Path, results: Path = scenarios.RESULTS, pages: list[Path] | None = None
) -> Path:
    """Write ``out/index.html``: headline tables, every chart as an inline PNG, and links to the
    executed notebooks."""
    r = results
    sections: list[tuple[str, str, Any, pl.DataFrame | list[pl.DataFrame] | None]] = []
    cal = pl.read_parquet(r / "calibration.parquet")
    sections.append((
        "Calibration",
        "Simulator vs the real stack (local sqld behind a 20 ms link), out of sample.",
        charts.calibration_chart(cal.filter(pl.col("op") == "all")),
        cal.filter(pl.col("op") == "all"),
    ))  # fmt: skip
    phases = pl.read_parquet(r / "breakdown_remote20-phases.parquet")
    summary = pl.read_parquet(r / "breakdown_remote20-summary.parquet")
    sections.append((
        "Bottleneck breakdown", "Mean ms per phase, each layer switched on in turn (20 ms link).",
        charts.phase_chart(phases), summary,
    ))  # fmt: skip
    pol = pl.read_parquet(r / "pool_policies.parquet")
    sections.append((
        "Pool policies", "Simulated week per real trace (peak 100 requests/s).",
        charts.policy_chart(pol),
        pol.select("trace", "policy", "mode", "late", "late_share", "wait_p99_ms",
                   "connection_hours", "late_vs_reactive", "hours_vs_reactive"),
    ))  # fmt: skip
    points = pl.read_parquet(r / "pool_frontier.parquet")
    sections.append((
        "Pool policy frontiers",
        "Every setting swept per family: late share against connection-hours; at the SLO "
        f"(≤ {scenarios.SLO_LATE_SHARE:.1%} of requests waiting > 10 ms), the cheapest of each.",
        charts.frontier_chart(points, slo=scenarios.SLO_LATE_SHARE),
        [cheapest_meeting(points, scenarios.SLO_LATE_SHARE).select(
            "trace", "family", "setting", "late_share", "connection_hours"),
         frontier_summary(points, scenarios.SLO_LATE_SHARE)],
    ))  # fmt: skip
    sections.append((
        "Forecast and pool size (nycflights13)",
        "The plan's forecast and the pool each policy ran.",
        charts.forecast_chart(pl.read_parquet(r / "pool_forecast.parquet")) & charts.pool_chart(
            pl.read_parquet(r / "pool_series.parquet").filter(pl.col("minute") < 60 * 48)),
        pl.read_parquet(r / "fluid_validation.parquet").select(
            "policy", "mode", "late", "late_share", "connection_hours"),
    ))  # fmt: skip
    cs = pl.read_parquet(r / "cache_sizes.parquet")
    sections.append(("Cache sizes", "Replay of the bench workload through the real cache layer.",
                     charts.hit_ratio_chart(cs), cs))  # fmt: skip
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>tiered report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}img{max-width:100%}</style></head><body>",
        "<h1>tiered report</h1>",
        f"<p>Generated {time.strftime('%Y-%m-%d %H:%M')} from <code>data/results/</code>.</p>",
    ]
    for title, text, chart, table in sections:
        parts.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p>")
        parts.append(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{_png(chart)}'>")
        for frame in table if isinstance(table, list) else [] if table is None else [table]:
            parts.append(_table(frame))
    if pages:
        parts.append("<h2>Notebooks</h2><ul>")
        for p in pages:
            parts.append(f"<li><a href='notebooks/{p.name}'>{html.escape(p.stem)}</a></li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index


def screenshot(index: Path, *, width: int = 1200, height: int = 6000) -> Path | None:
    """A headless Chromium screenshot of ``index`` (``index.png`` beside it), when Chromium is
    installed (Debian: ``apt-get install chromium``); None otherwise."""
    import shutil
    import subprocess

    browser = next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if browser is None:
        print("   (no Chromium found: screenshot skipped)")
        return None
    png = index.with_suffix(".png")
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},{height}", f"--screenshot={png}", index.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return png
