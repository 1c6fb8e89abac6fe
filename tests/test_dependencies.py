"""``pip install tiered`` (no extras) runs the README's quick start: everything it imports comes
from the runtime dependencies (and theirs), and nothing of the analysis extra is loaded."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ANALYSIS_ONLY = {"statsmodels", "altair", "holidays", "lz4", "cachetools", "scipy", "pandas"}


def quick_start() -> str:
    """The first Python block of the README."""
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


def closure(names: set[str]) -> set[str]:
    """The distributions ``names`` need, theirs included (no extras)."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(r.name))
    return seen


def test_the_quick_start_runs_on_the_runtime_dependencies_alone(tmp_path: Path) -> None:
    modules = (
        "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )

    def loaded_by(script: str) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return set(json.loads(out.stdout.strip().splitlines()[-1]))

    # what the quick start loads beyond what the interpreter loads by itself (site hooks)
    loaded = loaded_by(quick_start() + modules) - loaded_by(modules)
    assert not loaded & ANALYSIS_ONLY, loaded & ANALYSIS_ONLY
    runtime = {
        Requirement(r).name
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    allowed = closure(runtime) | {"tiered"}
    dists = md.packages_distributions()
    used = {canonicalize_name(d) for m in loaded for d in dists.get(m, [])}
    assert used <= allowed, used - allowed


def test_the_analysis_extra_is_not_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert not runtime & ANALYSIS_ONLY
    extra = project["optional-dependencies"]["analysis"]
    analysis = {canonicalize_name(Requirement(r).name) for r in extra}
    assert {"statsmodels", "altair", "holidays", "lz4"} <= analysis
