"""The reliability suite: faults, load and bad input against real sqld processes on loopback.

Each test records one row of the fault table (fault, operations attempted, acknowledged writes
lost, recovery time, load held) with :func:`record`; the table is printed at the end of the run
(before pytest's summary line) and, when ``TIERED_RELIABILITY_OUT`` names a file, written there
as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tiered import TieredError

ROWS: list[dict[str, Any]] = []

COLUMNS = ("fault", "operations", "errors_to_caller", "acked_lost", "recovery_s", "load")


def record(**row: Any) -> None:
    """Add a row to the fault table (keys: :data:`COLUMNS`)."""
    ROWS.append({c: row.get(c, "") for c in COLUMNS})


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Wait (bounded) for ``cond`` while other tasks run: a real event, not a span of time."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - conditions span counters of several objects
            await asyncio.sleep(0.005)


async def timed(op: Awaitable[object]) -> tuple[float, TieredError | None]:
    """Seconds ``op`` took, and the tiered error it raised (any other exception propagates)."""
    t0 = time.monotonic()
    try:
        await op
    except TieredError as e:
        return time.monotonic() - t0, e
    return time.monotonic() - t0, None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    tr = terminalreporter
    tr.section("reliability: faults injected")
    widths = [max(len(c), *(len(str(r[c])) for r in ROWS)) for c in COLUMNS]
    tr.write_line("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for r in ROWS:
        tr.write_line("  ".join(str(r[c]).ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    out = os.environ.get("TIERED_RELIABILITY_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(ROWS, f, indent=1)
