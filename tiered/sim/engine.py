"""A small discrete-event engine: a virtual clock and a heap of timed callbacks.

Why not SimPy: the models here are callbacks on a heap (arrivals, completions, connection opens,
policy ticks), with no process that needs to block mid-function; a heap of ``(time, seq, fn,
args)`` is all that needs, runs about three times faster than SimPy's generator processes, and
is deterministic by construction: events at the same instant run in the order they were
scheduled (``seq`` breaks every tie), so a seed fixes the whole run.

The clock is :meth:`Simulator.now`; pass it as the ``clock`` of any policy object (the library's
:class:`~tiered.pool.Reactive`, :class:`~tiered.pool.Predictive`,
:class:`~tiered.cache.AdaptiveTTLCache` ...) and those objects run on simulated time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from tiered.errors import ConfigError

__all__ = ["Simulator"]


class Simulator:
    """Virtual time in seconds, starting at ``start``."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0
        self.events = 0

    def now(self) -> float:
        return self._now

    def at(self, t: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at time ``t`` (not before now)."""
        if t < self._now:
            raise ConfigError(f"cannot schedule at {t} before the current time {self._now}")
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self._now + delay, fn, *args)

    def every(self, interval: float, fn: Callable[[], Any], *, until: float) -> None:
        """Run ``fn()`` every ``interval`` seconds from now + interval up to ``until``."""
        if interval <= 0:
            raise ConfigError(f"interval must be > 0, got {interval}")

        def tick() -> None:
            fn()
            if self._now + interval <= until:
                self.after(interval, tick)

        if self._now + interval <= until:
            self.after(interval, tick)

    def run(self, until: float | None = None) -> None:
        """Process events in time order up to ``until`` (inclusive; None: until none are left);
        the clock then reads ``until``."""
        heap, pop = self._heap, heapq.heappop
        while heap and (until is None or heap[0][0] <= until):
            t, _, fn, args = pop(heap)
            self._now = t
            self.events += 1
            fn(*args)
        if until is not None and until > self._now:
            self._now = until

    def __len__(self) -> int:
        return len(self._heap)
