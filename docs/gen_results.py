"""Benchmark pages generated from ``data/results/*.json``: the only place figures are written.

Each benchmark in ``benchmarks/`` prints one JSON document, and the stored run of each is kept
in ``data/results/``. This script turns every such file into a Markdown page: the benchmark's
own description (its module docstring), the targets it checks and whether they were met, and
its figures as tables. The prose of the docs links here instead of quoting numbers, so a new run
of a benchmark updates its page and nothing else can go stale.

Run by the mkdocs hook (``docs/hooks.py``) on every build; ``python docs/gen_results.py OUT``
writes the pages into ``OUT`` to read them without mkdocs.
"""

from __future__ import annotations

import ast
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "data" / "results"
BENCHMARKS = ROOT / "benchmarks"

#: list rows shown in one table at most (the JSON file has them all)
MAX_ROWS = 120


def fmt(v: Any) -> str:
    """A value for a table cell: 3 significant digits, thousands separated, yes/no."""
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    if v is None:
        return "–"
    s = str(v).replace("|", "\\|").replace("\n", " ")
    return s


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _scalar_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_scalar(x) for x in v)


def _joined(values: list[Any], most: int = 20) -> str:
    """A list of scalars in one cell: the first ``most``, then an ellipsis."""
    return ", ".join(fmt(x) for x in values[:most]) + ("…" if len(values) > most else "")


def _flat_record(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(_scalar(x) for x in v.values())


def table(header: list[str], rows: Iterable[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def records_table(records: dict[str, dict[str, Any]] | list[dict[str, Any]], key: str) -> str:
    """A table of flat records: one row each, the union of their fields as columns."""
    items = list(records.items()) if isinstance(records, dict) else list(enumerate(records))
    cols: list[str] = []
    for _, r in items:
        cols += [c for c in r if c not in cols]
    shown = items[:MAX_ROWS]
    rows = [[k, *(r.get(c) for c in cols)] for k, r in shown]
    note = (
        f"\n*{len(items) - len(shown)} more rows in the JSON file.*\n"
        if len(items) > len(shown)
        else ""
    )
    return table([key, *cols], rows) + note


def render(obj: Any, path: str, depth: int = 0) -> list[str]:
    """Markdown blocks for one JSON value: scalars as a metric/value table, dicts of flat
    records and lists of them as tables, anything deeper as sub-sections."""
    blocks: list[str] = []
    if isinstance(obj, list):
        if obj and all(_flat_record(x) for x in obj):
            return [records_table(obj, "#")]
        if all(_scalar(x) for x in obj):
            return [_joined(obj) + "\n"]
        obj = dict(enumerate(obj))
    if not isinstance(obj, dict):
        return [fmt(obj) + "\n"]
    scalars = [[k, v] for k, v in obj.items() if _scalar(v)]
    scalars += [[k, _joined(v)] for k, v in obj.items() if _scalar_list(v)]
    if scalars:
        blocks.append(table(["metric", "value"], scalars))
    rest = {k: v for k, v in obj.items() if not _scalar(v) and not _scalar_list(v)}
    for k, v in rest.items():
        sub = f"{path}.{k}" if path else str(k)
        head = "#" * min(3 + depth, 6) + f" `{sub}`\n"
        if isinstance(v, dict) and len(v) > 1 and all(_flat_record(x) for x in v.values()):
            blocks += [head, records_table(v, str(k))]
        elif isinstance(v, dict) and not v:
            continue
        else:
            blocks += [head, *render(v, sub, depth + 1)]
    return blocks


def checks(doc: dict[str, Any]) -> str:
    """The targets the benchmark checks (its ``passed`` entry) as a table, or nothing."""
    passed = doc.get("passed")
    if isinstance(passed, dict):
        return "Targets checked by this run:\n\n" + table(
            ["check", "met"], [[k, v] for k, v in passed.items()]
        )
    if isinstance(passed, bool):
        return f"Every target checked by this run met: {fmt(passed)}.\n"
    return ""


def concurrency_cells(doc: dict[str, Any]) -> str:
    """``bench_concurrency``'s matrix: one row per backend x mix x agents."""
    rows = []
    for name, cell in doc.get("cells", {}).items():
        cfg = cell.get("configs", {})
        miss = cell.get("miss_vs_no_cache", {}).get("get_episode", {})
        qmiss = [
            v.get("miss_p50_ratio")
            for k, v in cell.get("miss_vs_no_cache", {}).items()
            if k.startswith("query") and v.get("miss_p50_ratio") is not None
        ]
        rows.append(
            [
                name,
                *(cfg.get(c, {}).get("ops_per_s") for c in ("off", "pool", "cache+pool", "all")),
                cell.get("cache_pool_vs_pool"),
                cell.get("all_vs_pool_compression"),
                cfg.get("cache+pool", {}).get("hit_ratio"),
                cell.get("perfect_cache_bound"),
                miss.get("miss_p50_ratio"),
                miss.get("miss_p99_ratio"),
                max(qmiss) if qmiss else None,
                ", ".join(k for k, ok in cell.get("checks", {}).items() if not ok) or "–",
            ]
        )
    return table(
        [
            "cell",
            "off ops/s",
            "pool ops/s",
            "cache+pool ops/s",
            "all ops/s",
            "cache+pool / pool",
            "all / pool+compression",
            "hit ratio",
            "perfect-cache bound",
            "get_episode miss p50 vs no cache",
            "get_episode miss p99 vs no cache",
            "worst query miss p50 vs no cache",
            "checks not met",
        ],
        rows,
    )


SPECIAL = {"bench_concurrency": {"cells": concurrency_cells, "failed": None}}


def description(name: str) -> str:
    """The benchmark script's module docstring (what it measures and how)."""
    script = BENCHMARKS / f"{name}.py"
    if not script.exists():
        return ""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    return doc.strip() + "\n"


def page(path: Path) -> str:
    name = path.stem
    doc = json.loads(path.read_text())
    parts = [f"# {name}\n", description(name)]
    parts.append(
        f"Figures from `data/results/{path.name}` (the stored run; "
        f"`python benchmarks/{name}.py > data/results/{path.name}` measures again).\n"
    )
    parts.append(checks(doc))
    special = SPECIAL.get(name, {})
    for key, fn in special.items():
        if fn is not None and key in doc:
            parts += [f"## `{key}`\n", fn(doc)]
    body = {k: v for k, v in doc.items() if k not in special and k != "passed"}
    parts += ["## Figures\n", *render(body, "")]
    return "\n".join(p for p in parts if p)


def pages(results: Path = RESULTS) -> dict[str, str]:
    """``results/<bench>.md`` -> Markdown for every stored benchmark run, plus an index."""
    out: dict[str, str] = {}
    lines = [
        "# Benchmark results\n",
        "Every figure in these docs comes from a stored benchmark run in `data/results/`, "
        "rendered by `docs/gen_results.py` when the site is built.\n",
        table(
            ["benchmark", "what it measures", "targets met"],
            [
                [
                    f"[{p.stem}]({p.stem}.md)",
                    (description(p.stem).split("\n\n")[0].replace("\n", " ") or "–"),
                    _met(json.loads(p.read_text())),
                ]
                for p in sorted(results.glob("*.json"))
                if p.stem.startswith("bench_")
            ],
        ),
    ]
    out["results/index.md"] = "\n".join(lines)
    for p in sorted(results.glob("bench_*.json")):
        out[f"results/{p.stem}.md"] = page(p)
    return out


def _met(doc: dict[str, Any]) -> str:
    passed = doc.get("passed")
    if isinstance(passed, dict):
        return f"{sum(bool(v) for v in passed.values())} of {len(passed)}"
    if isinstance(passed, bool):
        return "all" if passed else "not all"
    return "–"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python docs/gen_results.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    for rel, text in pages().items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
