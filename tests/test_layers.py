"""The house's floors: every import points down (or sideways within a floor), never up, and no
module imports another's private names. Read from the source (every import statement, also the
ones inside functions), so a lazy import cannot hide an arrow back up.

The floors, lowest first (the module table in docs/index.md names them the same way):
0. foundations: errors, progress bars, the loopback proxy, the dev server, chart helpers
1. the domain: validation rules and records, the original system's encodings
2. layers that know nothing of the database: compression, metrics, pool, cache, workloads
3. the database (drivers, schema, statements, group commit, router, Database) and forecasting
4. the Store
5. what drives the Store or its parts: the bench (real stack), the simulator, the store demo
6. scenarios and calibration (above both the bench and the simulator)
7. the front doors: the report, the command line, the package itself
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tiered"

FLOORS: dict[str, int] = {
    "tiered.errors": 0,
    "tiered.progress": 0,
    "tiered.netproxy": 0,
    "tiered.devserver": 0,
    "tiered.testing": 0,
    "tiered.charts": 0,
    "tiered.validation": 1,
    "tiered.model": 1,
    "tiered.original": 1,
    "tiered.compression": 2,
    "tiered.metrics": 2,
    "tiered.pool": 2,
    "tiered.cache": 2,
    "tiered.workload": 2,
    "tiered.db": 3,
    "tiered.forecast": 3,
    "tiered.store": 4,
    "tiered.bench": 5,
    "tiered.sim": 5,
    "tiered.demo": 5,
    "tiered.scenarios": 6,
    "tiered.analysis": 6,
    "tiered.importer": 6,
    "tiered.compare": 6,
    "tiered.report": 7,
    "tiered.cli": 7,
    "tiered.__main__": 7,
    "tiered": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[best]


def imports() -> list[tuple[str, str, list[str]]]:
    """(module, imported module, names imported from it) for every import in tiered/."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        mod = module_name(path)
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, target] if target else base)
                if target == "tiered" or target.startswith("tiered."):
                    out.append((mod, target, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                out += [(mod, a.name, []) for a in node.names if a.name.startswith("tiered")]
    return out


def test_every_module_has_a_floor() -> None:
    for path in ROOT.rglob("*.py"):
        floor(module_name(path))  # raises ValueError (max of nothing) for an unplaced module


def test_no_import_points_up() -> None:
    up = [
        f"{mod} (floor {floor(mod)}) imports {target} (floor {floor(target)})"
        for mod, target, _ in imports()
        if floor(target) > floor(mod)
    ]
    assert not up, "\n".join(up)


def test_the_bench_and_the_simulator_do_not_import_each_other() -> None:
    pairs = [
        (mod, target)
        for mod, target, _ in imports()
        if (mod.startswith("tiered.bench") and target.startswith("tiered.sim"))
        or (mod.startswith("tiered.sim") and target.startswith("tiered.bench"))
    ]
    assert not pairs


def test_no_private_name_crosses_a_module() -> None:
    private = [
        f"{mod} imports {name} from {target}"
        for mod, target, names in imports()
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private, "\n".join(private)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for mod, target, names in imports():
        # "from tiered.store import records" imports the submodule
        targets = {target} | {f"{target}.{n}" for n in names}
        graph.setdefault(mod, set()).update(t for t in targets if t != mod)
    known = set(graph) | {module_name(p) for p in ROOT.rglob("*.py")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in known or nxt.startswith(node + "."):
                continue  # a package importing its own submodules (re-exports) is not a cycle
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(known):
        if node not in state:
            visit(node, [])


def test_no_module_is_over_700_lines_and_the_store_class_is_under_500() -> None:
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 700
    }
    assert not long, long
    tree = ast.parse((ROOT / "store" / "core.py").read_text())
    store = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Store")
    assert store.end_lineno is not None and store.end_lineno - store.lineno + 1 < 500
