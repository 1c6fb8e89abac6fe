"""Cache-trace loaders: every format of ``../shared/traces/cache/`` gives the keys it holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zstandard

from tiered.workload.keys import load_cache_trace

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces" / "cache"


def test_arc_lines_expand_to_their_runs_of_keys(tmp_path: Path) -> None:
    arc = tmp_path / "arc"
    arc.mkdir()
    path = arc / "T.lis.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"10 3 0 0\n5 2 0 1\n7 1 0 2\n"))
    assert load_cache_trace(path).tolist() == [10, 11, 12, 5, 6, 7]
    assert load_cache_trace(path, limit=4).tolist() == [10, 11, 12, 5]
    (arc / "bad.lis").write_bytes(b"10 0 0 0\n")
    with pytest.raises(ValueError, match="fewer than one key"):
        load_cache_trace(arc / "bad.lis")


@pytest.mark.skipif(not (SHARED / "arc" / "P3.lis.zst").exists(), reason="shared traces absent")
def test_the_arc_papers_p3_has_the_size_the_paper_gives() -> None:
    keys = load_cache_trace(SHARED / "arc" / "P3.lis.zst")
    assert len(keys) == 3_912_296 and len(np.unique(keys)) == 762_543  # the paper's Table III
