"""A dependency-free progress display for long commands (``tiered bench``, ``tiered report``)."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A one-line progress bar on a terminal; plain milestone lines otherwise (CI logs)."""

    def __init__(
        self, total: int, label: str, out: TextIO | None = None, *, enabled: bool = True
    ) -> None:
        self.total, self.label, self.enabled = max(total, 1), label, enabled
        self.out = out if out is not None else sys.stderr
        self.done = 0
        self.tty = self.out.isatty()
        self._last_pct = -1

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        pct = min(100, self.done * 100 // self.total)
        if pct == self._last_pct and self.done < self.total:
            return
        if self.tty:
            bar = "#" * (pct // 4) + "." * (25 - pct // 4)
            self.out.write(f"\r  {self.label:<24} [{bar}] {pct:3d}%")
            if self.done >= self.total:
                self.out.write("\n")
            self.out.flush()
        elif pct // 25 != self._last_pct // 25 or self.done >= self.total:
            self.out.write(f"  {self.label}: {pct}%\n")
            self.out.flush()
        self._last_pct = pct
