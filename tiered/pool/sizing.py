"""Pool sizing policies: pure objects that look at the pool's load and return a target size.

A policy never sleeps and never touches a connection. The pool calls :meth:`decide` at every
maintenance tick and whenever a request has to wait, clamps the answer to ``[min_size,
max_size]`` and applies it (opening connections in the background, closing idle ones). Policies
that depend on time read their own injectable ``clock``, so tests and the simulator drive them on
a virtual clock.

* :class:`Fixed` — a constant size.
* :class:`Reactive` — grows one connection at a time while requests wait (or utilization is above
  ``high``), shrinks one at a time after ``down_cooldown`` seconds below ``low``. The gap between
  ``low`` and ``high`` is the hysteresis that keeps it from flapping; the two cooldowns bound how
  fast it moves.
* :class:`Predictive` — follows a :class:`Schedule` of target sizes (produced by
  :mod:`tiered.forecast` from a traffic model), reaching each rise ``lead_time`` seconds early so
  the new connections are opened and pinged (warm) before the traffic arrives; it lowers the size
  only when the schedule does.
* :class:`Hybrid` — the predictive schedule as a floor and a reactive policy on top, as cloud
  predictive autoscalers combine forecast and reaction.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol, runtime_checkable

from tiered.errors import ConfigError

__all__ = [
    "Decision",
    "Fixed",
    "Hybrid",
    "PoolLoad",
    "Predictive",
    "Reactive",
    "Schedule",
    "SizingPolicy",
]


class PoolLoad(NamedTuple):
    """What a policy sees: the pool's gauges now and its load since the previous decision.

    utilization: time-weighted mean of ``in_use / size`` since the previous decision (0..1).
    waited / wait_mean: requests that had to queue since the previous decision, and their mean
    wait in seconds.
    busy_s: connection-seconds in use since the previous decision (the integral of
    ``in_use``): with ``requests``, the hold time a capacity plan needs.
    hold_sq_s: the sum of the squared hold times (s^2) of the borrows given back since the
    previous decision: with ``busy_s`` and ``requests``, the holds' spread (a queue model's
    waits grow with it).

    A named tuple (immutable, and cheap to make: the simulator makes one every tick of weeks).
    """

    size: int
    in_use: int
    idle: int
    waiting: int
    utilization: float
    requests: int
    waited: int
    wait_mean: float
    min_size: int
    max_size: int
    busy_s: float = 0.0
    hold_sq_s: float = 0.0


class Decision(NamedTuple):
    """A target size and why (shown in stats and logs)."""

    target: int
    reason: str


@runtime_checkable
class SizingPolicy(Protocol):
    def decide(self, load: PoolLoad) -> Decision: ...


class Fixed:
    """Always ``size`` (``None``: the pool's ``max_size``)."""

    def __init__(self, size: int | None = None) -> None:
        if size is not None and size < 1:
            raise ConfigError(f"Fixed size must be >= 1, got {size}")
        self.size = size

    def decide(self, load: PoolLoad) -> Decision:
        return Decision(load.max_size if self.size is None else self.size, "fixed")

    def __repr__(self) -> str:
        return f"Fixed({self.size})"


class Reactive:
    """Utilization- and wait-driven sizing with hysteresis and cooldowns.

    Grow by one when requests are queued now, or requests waited on average more than
    ``max_wait`` seconds since the last decision, or utilization exceeded ``high`` — at most once
    per ``up_cooldown``. Shrink by one when utilization stayed below ``low`` with nobody waiting
    and nothing changed for ``down_cooldown`` seconds.
    """

    def __init__(
        self,
        *,
        low: float = 0.3,
        high: float = 0.75,
        max_wait: float = 0.002,
        up_cooldown: float = 0.5,
        down_cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= low < high <= 1.0:
            raise ConfigError(f"Reactive needs 0 <= low < high <= 1, got low={low} high={high}")
        if max_wait < 0 or up_cooldown < 0 or down_cooldown < 0:
            raise ConfigError("Reactive max_wait and cooldowns must be >= 0")
        self.low, self.high = low, high
        self.max_wait = max_wait
        self.up_cooldown, self.down_cooldown = up_cooldown, down_cooldown
        self.clock = clock
        self._last_up = -float("inf")
        self._last_change = clock()

    def decide(self, load: PoolLoad) -> Decision:
        now = self.clock()
        size = load.size
        pressure = (
            "waiters"
            if load.waiting
            else "slow acquires"
            if load.waited and load.wait_mean > self.max_wait
            else "utilization"
            if load.utilization > self.high
            else None
        )
        if pressure:
            self._last_change = now
            if size >= load.max_size:
                return Decision(size, f"{pressure}, at max_size")
            if now - self._last_up < self.up_cooldown:
                return Decision(size, f"{pressure}, cooling down")
            self._last_up = now
            return Decision(size + 1, pressure)
        if load.utilization < self.low and size > load.min_size:
            if now - self._last_change >= self.down_cooldown:
                self._last_change = now
                return Decision(size - 1, "low utilization")
            return Decision(size, "low utilization, cooling down")
        if load.utilization >= self.low:
            self._last_change = now
        return Decision(size, "steady")

    def __repr__(self) -> str:
        return f"Reactive(low={self.low}, high={self.high}, max_wait={self.max_wait})"


class Schedule:
    """Target sizes over time: ``steps`` of ``(start_time, size)``, each holding until the next.

    Times are in the clock of the policy that uses it (``time.time`` seconds for a forecast).
    Before the first step the first size applies; after the last, the last size.
    """

    def __init__(self, steps: Iterable[tuple[float, int]]) -> None:
        pts = [(float(t), int(n)) for t, n in steps]
        if not pts:
            raise ConfigError("a Schedule needs at least one (time, size) step")
        for i, (t, n) in enumerate(pts):
            if n < 0:
                raise ConfigError(f"Schedule step {i}: size must be >= 0, got {n}")
            if i and t <= pts[i - 1][0]:
                raise ConfigError(
                    f"Schedule step {i}: times must increase ({t} after {pts[i - 1][0]})"
                )
        self.times = [t for t, _ in pts]
        self.sizes = [n for _, n in pts]

    def at(self, t: float) -> int:
        i = bisect.bisect_right(self.times, t) - 1
        return self.sizes[max(i, 0)]

    def peak(self, t0: float, t1: float) -> int:
        """The largest size scheduled at any time within ``[t0, t1]``."""
        i = max(bisect.bisect_right(self.times, t0) - 1, 0)
        j = bisect.bisect_right(self.times, t1)
        return max(self.sizes[i : max(j, i + 1)])

    def __len__(self) -> int:
        return len(self.times)

    def __repr__(self) -> str:
        return f"Schedule({len(self)} steps, sizes {min(self.sizes)}..{max(self.sizes)})"


class Predictive:
    """Follow ``schedule``, reaching each scheduled rise ``lead_time`` seconds ahead of it."""

    def __init__(
        self,
        schedule: Schedule,
        *,
        lead_time: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lead_time < 0:
            raise ConfigError(f"lead_time must be >= 0, got {lead_time}")
        self.schedule = schedule
        self.lead_time = lead_time
        self.clock = clock
        # the decision holds from _since until the next step enters [now, now + lead_time]
        # or now passes a step (the simulator consults every tick of weeks)
        self._since, self._until = math.inf, -math.inf
        self._last = Decision(0, "schedule")

    def decide(self, load: PoolLoad) -> Decision:
        now = self.clock()
        if self._since <= now < self._until:
            return self._last
        times, lead = self.schedule.times, self.lead_time
        target = self.schedule.peak(now, now + lead)
        now_size = self.schedule.at(now)
        reason = "schedule" if target == now_size else f"pre-scaling {lead:g}s ahead"
        i = bisect.bisect_right(times, now)
        j = bisect.bisect_right(times, now + lead)
        self._since = now
        self._until = min(times[i] if i < len(times) else math.inf,
                          times[j] - lead if j < len(times) else math.inf)  # fmt: skip
        self._last = Decision(target, reason)
        return self._last

    def __repr__(self) -> str:
        return f"Predictive({self.schedule!r}, lead_time={self.lead_time})"


class Hybrid:
    """The predictive target as a floor, with a reactive policy free to go above it."""

    def __init__(self, predictive: Predictive, reactive: Reactive | None = None) -> None:
        self.predictive = predictive
        self.reactive = reactive or Reactive()

    def decide(self, load: PoolLoad) -> Decision:
        p = self.predictive.decide(load)
        r = self.reactive.decide(load)
        if r.target > p.target:
            return Decision(r.target, prefixed_reason("reactive: ", r.reason))
        return Decision(p.target, prefixed_reason("predictive: ", p.reason))

    def __repr__(self) -> str:
        return f"Hybrid({self.predictive!r}, {self.reactive!r})"


_PREFIXED: dict[tuple[str, str], str] = {}


def prefixed_reason(prefix: str, reason: str) -> str:
    """``prefix + reason``, made once per pair (a policy's reasons are a handful of strings,
    and the simulator asks for one every tick of weeks)."""
    key = (prefix, reason)
    got = _PREFIXED.get(key)
    if got is None:
        if len(_PREFIXED) > 4096:
            _PREFIXED.clear()
        got = _PREFIXED[key] = prefix + reason
    return got
