"""The documentation: the site builds offline with ``--strict``, every page is reachable from the
README, the README stays short, and measured figures live only in the pages generated from
``data/results/`` (not typed into docstrings, comments or notebook prose, where they go stale)."""

from __future__ import annotations

import ast
import html.parser
import io
import json
import re
import subprocess
import sys
import tokenize
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: a measured figure as the old prose typed them: "0.93x", "1.3-1.4x", "31-34 us at p99",
#: "measured: 550 -> 290 us"
FIGURE = re.compile(
    r"\b\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?x\b(?! ?(?:capacity|delay|that|the))"
    r"|\b\d+(?:\.\d+)? ?(?:us|µs|ms)\b(?: at)? p(?:50|99)"
    r"|measured[:,] \S*\d"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return out


class _Links(html.parser.HTMLParser):
    """The links in a page's content (``role="main"``): the theme's navigation, which links
    every page from every page, does not count."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self._depth = 0  # <div> nesting inside the content, 0 outside it

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "div" and (self._depth or ("role", "main") in attrs):
            self._depth += 1
        if tag == "a" and self._depth:
            self.hrefs += [v for k, v in attrs if k == "href" and v]

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._depth:
            self._depth -= 1


def _page(site: Path, url: str) -> Path | None:
    path = site / url.removeprefix(site.as_uri()).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    return path if path.suffix == ".html" and path.exists() else None


def test_the_site_builds_and_every_page_is_reachable_from_the_readme(site: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    starts = re.findall(r"\]\((docs/[^)#]+\.md)", readme)
    assert starts, "the README links no docs page"
    todo = []
    for rel in starts:
        name = rel.removeprefix("docs/").removesuffix(".md")
        page = site / (
            "index.html" if name == "index" else f"{name.removesuffix('/index')}/index.html"
        )
        assert page.exists(), rel
        todo.append(page)
    seen: set[Path] = set()
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        parser = _Links()
        parser.feed(page.read_text())
        base = page.as_uri()
        for href in parser.hrefs:
            url = urldefrag(urljoin(base, href)).url
            if url.startswith(site.as_uri()):
                target = _page(site, url)
                if target is not None:
                    todo.append(target)
    pages = {p for p in site.rglob("*.html") if p.name != "404.html"}
    assert pages - seen == set(), sorted(str(p.relative_to(site)) for p in pages - seen)
    # the generated benchmark pages and the API reference are among them
    assert (site / "results" / "bench_concurrency" / "index.html") in seen
    assert (site / "api" / "store" / "index.html") in seen


def test_every_stored_benchmark_run_has_a_page(site: Path) -> None:
    for run in (ROOT / "data" / "results").glob("bench_*.json"):
        page = site / "results" / run.stem / "index.html"
        assert page.exists(), run.name
        assert run.stem in page.read_text()


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text()) < 15_000


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment in a Python file."""
    source = path.read_text()
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc and node.body:
                out.append((node.body[0].lineno, doc))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string))
    return out


def test_no_measured_figure_is_typed_into_the_library() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {m.group(0)}"
        for path in sorted((ROOT / "tiered").rglob("*.py"))
        for line, text in _prose(path)
        for m in FIGURE.finditer(text.replace("\n#", " "))
    ]
    assert found == []


def test_no_measured_figure_is_typed_into_notebook_prose() -> None:
    found = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            text = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                found += [f"{nb.name}: {m.group(0)}" for m in FIGURE.finditer(text)]
                assert "(issue " not in text, nb.name
    assert found == []


def test_the_figure_pattern_catches_what_the_old_prose_typed() -> None:
    for typed in (
        "did 0.80-0.95x a bare TTLCache's gets/s",
        "with 16 that is 31-34 us at p99",
        "(measured: 550 -> 290 us for SELECT 1)",
        "~10x faster than building dicts",
    ):
        assert FIGURE.search(typed), typed
    for fine in ("a 4 x 1,024 sketch", "p99 wait <= 10 ms", "``2 x delay``"):
        assert not FIGURE.search(fine), fine
