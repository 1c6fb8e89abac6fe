"""mkdocs hook: add the benchmark pages generated from ``data/results/*.json`` to the build."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_spec = importlib.util.spec_from_file_location(
    "gen_results", Path(__file__).with_name("gen_results.py")
)
assert _spec is not None and _spec.loader is not None
gen_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_results)


def on_files(files: Files, config: Any) -> Files:
    for rel, text in gen_results.pages().items():
        files.append(File.generated(config, rel, content=text))
    return files
