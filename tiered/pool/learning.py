"""A sizing policy that learns its own traffic: :class:`Learning`.

The pool already counts what a capacity plan needs: every consultation of the sizing policy
brings the requests since the previous one and the connection-seconds they held
(:class:`~tiered.pool.sizing.PoolLoad`'s ``requests`` and ``busy_s``). :class:`Learning` adds
them up per interval of its wall clock (an hour by default) in a :class:`TrafficLog`, so
learning costs a request nothing beyond what the pool counts anyway, and hands completed
intervals to whoever persists them (:meth:`TrafficLog.pop_completed`).

A plan (:class:`LearntPlan`: a :class:`~tiered.pool.sizing.Schedule`, the lead time to reach
each rise early, and until when it holds) is made elsewhere -- fitting traffic models is CPU
work for a worker thread, not for a maintenance tick -- and installed with
:meth:`Learning.install`. With a plan, the policy is :class:`~tiered.pool.sizing.Hybrid`'s rule
(the plan as a floor, reached ``lead_time`` early, the reactive policy free to go above it);
without one, or once the plan has run out, it is the reactive policy alone. Either way it says
which it is using and why (:meth:`Learning.get_stats`, and every decision's reason), so a cold
start, too little history or a plan the planner refused reads as such.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tiered.errors import ConfigError
from tiered.pool.sizing import Decision, PoolLoad, Predictive, Reactive, Schedule

__all__ = ["Interval", "Learning", "LearntPlan", "TrafficLog"]


@dataclass(frozen=True, slots=True)
class Interval:
    """One completed interval of a pool's traffic: its start (wall-clock seconds, a multiple of
    the interval), the requests lent a connection and the connection-seconds they held."""

    start: float
    requests: int
    busy_s: float

    @property
    def hold_s(self) -> float | None:
        """Mean seconds a request held its connection (``None`` without requests)."""
        return self.busy_s / self.requests if self.requests else None


class TrafficLog:
    """Requests and busy connection-seconds per interval, from the loads a policy sees.

    A load is counted in the interval of the moment it is seen (consultations are a fraction of
    a second apart, so at most one tick's worth lands in the next interval). An interval with no
    consultation at all (the process was down) is missing, not zero: a planner must not learn
    "no traffic" from a restart. Completed intervals wait in :attr:`completed` (bounded) until
    :meth:`pop_completed` takes them.
    """

    def __init__(self, interval_s: float = 3600.0, *, keep: int = 24 * 7 * 8) -> None:
        if not interval_s > 0:
            raise ConfigError(f"TrafficLog interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.completed: deque[Interval] = deque(maxlen=keep)
        self._start: float | None = None
        self._requests = 0
        self._busy = 0.0

    def add(self, now: float, requests: int, busy_s: float) -> Interval | None:
        """Count a load seen at ``now``; the interval it completed, if it did."""
        start = math.floor(now / self.interval_s) * self.interval_s
        done = None
        if self._start is None:
            self._start = start
        elif start != self._start:
            done = Interval(self._start, self._requests, self._busy)
            self.completed.append(done)
            self._start, self._requests, self._busy = start, 0, 0.0
        self._requests += requests
        self._busy += busy_s
        return done

    @property
    def current(self) -> Interval | None:
        """The interval being counted (incomplete)."""
        if self._start is None:
            return None
        return Interval(self._start, self._requests, self._busy)

    def pop_completed(self) -> list[Interval]:
        """The completed intervals not taken yet, oldest first."""
        out = list(self.completed)
        self.completed.clear()
        return out


@dataclass(frozen=True, slots=True)
class LearntPlan:
    """What a planner made of the traffic history: ``schedule`` of pool sizes (wall-clock
    times), reached ``lead_time`` seconds before each rise, valid until ``until``; or no
    schedule, and ``reason`` says why (the policy stays reactive). ``model`` names the traffic
    model the plan follows, ``hold_s`` the measured seconds a request holds a connection that
    it was sized with."""

    schedule: Schedule | None
    until: float
    reason: str
    lead_time: float = 60.0
    model: str | None = None
    hold_s: float | None = None


class Learning:
    """Sizing that learns its own traffic: reactive until a plan is installed, then the plan as
    a floor (reached ``lead_time`` early) with the reactive policy above it, until the plan runs
    out. See the module docstring.

    ``clock`` is wall-clock seconds (the plan's times and the intervals' starts);
    ``reactive`` defaults to :class:`Reactive` on ``monotonic`` (its cooldowns).
    """

    def __init__(
        self,
        *,
        reactive: Reactive | None = None,
        interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reactive = reactive or Reactive(clock=monotonic)
        self.log = TrafficLog(interval_s)
        self.clock = clock
        self._plan: LearntPlan | None = None
        self._predictive: Predictive | None = None
        self.why = "cold start: no traffic history yet"
        self.installed_at: float | None = None

    def install(self, plan: LearntPlan) -> None:
        """Follow ``plan`` from now on (a plan without a schedule: reactive, for its reason)."""
        self._plan = plan
        self.installed_at = self.clock()
        self.why = plan.reason
        self._predictive = (
            None
            if plan.schedule is None
            else Predictive(plan.schedule, lead_time=plan.lead_time, clock=self.clock)
        )

    @property
    def mode(self) -> str:
        """``"planned"`` while a plan is followed, else ``"reactive"``."""
        return "reactive" if self._predictive is None else "planned"

    def decide(self, load: PoolLoad) -> Decision:
        now = self.clock()
        self.log.add(now, load.requests, load.busy_s)
        r = self.reactive.decide(load)
        p = self._predictive
        if p is not None and self._plan is not None and now >= self._plan.until:
            self._predictive = p = None
            self.why = "the plan ran out before a new one was made"
        if p is None:
            return Decision(r.target, f"reactive ({self.why}): {r.reason}")
        floor = p.decide(load)
        if r.target > floor.target:
            return Decision(r.target, f"reactive above the plan: {r.reason}")
        return Decision(floor.target, f"learnt plan: {floor.reason}")

    def get_stats(self) -> dict[str, object]:
        """Which rule is in use and why, the plan's model and validity, and what was learnt."""
        plan = self._plan
        cur = self.log.current
        return {
            "mode": self.mode,
            "why": self.why,
            "model": plan.model if plan is not None else None,
            "plan_until": plan.until if plan is not None and plan.schedule is not None else None,
            "installed_at": self.installed_at,
            "intervals_pending": len(self.log.completed),
            "current_requests": cur.requests if cur is not None else 0,
        }

    def __repr__(self) -> str:
        return f"Learning({self.mode}: {self.why}; {self.reactive!r})"
