"""A sizing policy that learns its own traffic: :class:`Learning`.

The pool already counts what a capacity plan needs: every consultation of the sizing policy
brings the requests since the previous one, the connection-seconds they held and the sum of
their squared hold times (:class:`~tiered.pool.sizing.PoolLoad`'s ``requests``, ``busy_s`` and
``hold_sq_s``: the holds' mean and spread, which a queue model needs). :class:`Learning` adds
them up per interval of its wall clock (an hour by default) in a :class:`TrafficLog`, so
learning costs a request nothing beyond what the pool counts anyway, and hands completed
intervals to whoever persists them (:meth:`TrafficLog.pop_completed`).

A plan (:class:`LearntPlan`: a :class:`~tiered.pool.sizing.Schedule`, the lead time to reach
each rise early, and until when it holds) is made elsewhere -- fitting traffic models is CPU
work for a worker thread, not for a maintenance tick -- and installed with
:meth:`Learning.install`. With a plan, the policy is :class:`~tiered.pool.sizing.Hybrid`'s rule
(the plan as a floor, reached ``lead_time`` early, the reactive policy free to go above it,
giving connections back after :data:`ABOVE_PLAN`'s short cooldown -- or at the reactive
policy's own pace after an interval far above the plan's band, where the plan is too low);
without one, once the plan has run out, or once the traffic has left the plan's forecast band
far enough (:data:`BAND_REACH`) for :data:`BAND_HOURS` completed intervals in a row (a holiday
it did not know, a level shift since it was made), it is the reactive policy alone until the
next plan. Either way it says which it is using and why (:meth:`Learning.get_stats`, and
every decision's reason), so a cold start, too little history or a plan the planner refused
reads as such.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tiered.errors import ConfigError
from tiered.pool.sizing import Decision, PoolLoad, Predictive, Reactive, Schedule, prefixed_reason

__all__ = [
    "ABOVE_PLAN",
    "BAND_HOURS",
    "BAND_REACH",
    "Fleet",
    "Interval",
    "Learning",
    "LearntPlan",
    "TrafficLog",
]


@dataclass(frozen=True, slots=True)
class Interval:
    """One completed interval of a pool's traffic: its start (wall-clock seconds, a multiple of
    the interval), the requests lent a connection, the connection-seconds they held and the sum
    of their squared hold times (s^2; 0 where not counted, as in rows written before it was)."""

    start: float
    requests: int
    busy_s: float
    hold_sq_s: float = 0.0

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
        self._busy = self._hold_sq = 0.0

    def add(
        self, now: float, requests: int, busy_s: float, hold_sq_s: float = 0.0
    ) -> Interval | None:
        """Count a load seen at ``now``; the interval it completed, if it did."""
        start = math.floor(now / self.interval_s) * self.interval_s
        done = None
        if self._start is None:
            self._start = start
        elif start != self._start:
            done = Interval(self._start, self._requests, self._busy, self._hold_sq)
            self.completed.append(done)
            self._start, self._requests, self._busy, self._hold_sq = start, 0, 0.0, 0.0
        self._requests += requests
        self._busy += busy_s
        self._hold_sq += hold_sq_s
        return done

    @property
    def current(self) -> Interval | None:
        """The interval being counted (incomplete)."""
        if self._start is None:
            return None
        return Interval(self._start, self._requests, self._busy, self._hold_sq)

    def take_current(self) -> Interval | None:
        """The interval being counted so far, and count it from zero again (what a pool that
        closes writes: the rest of its hour, if it reopens, adds to it)."""
        cur = self.current
        self._requests, self._busy, self._hold_sq = 0, 0.0, 0.0
        return cur

    def pop_completed(self) -> list[Interval]:
        """The completed intervals not taken yet, oldest first."""
        out = list(self.completed)
        self.completed.clear()
        return out


#: the grow and shrink cooldowns (s) of the reactive part above a plan. Tried on a simulated
#: fleet of four pools (tiered.scenarios.learning): slow growth (30 s; the cheapest hybrid of
#: the single-pool sweep) was late far beyond reactive wherever a plan was too low (a level
#: shift, plans on patternless traffic); Reactive's own 0.5 s / 30 s cost more than reactive
#: alone. Growing within 5 s and giving back after 2 s sits between. Except after a completed
#: interval far above the plan's band (BAND_REACH): the plan is too low there, and the reactive
#: policy's own pace keeps the pool from shrinking under the traffic it missed (tried on the
#: level shift built to break it, whose late share the quick pace had raised above reactive's;
#: the real series' plans cross that far hardly ever)
ABOVE_PLAN = (5.0, 2.0)
#: completed intervals in a row whose traffic fell far outside the plan's forecast band (the
#: same side each time) after which the plan is set aside, reactive alone until the next plan:
#: a holiday the plan did not know, a level shift since the last refit. "Far": farther from the
#: planned median than BAND_REACH times the band's own reach on that side (median to q0.1, or
#: to q0.9). Tried on the simulated fleets (tiered.scenarios.learning): the band itself set
#: good plans aside on ordinary days (it is meant to miss some hours); three times its reach,
#: for three hours in a row, was crossed in the holiday and the level shift built to break the
#: plan, and hardly ever on the real series' planned days
BAND_HOURS = 3
BAND_REACH = 3.0


@dataclass(frozen=True, slots=True)
class Fleet:
    """How a learning pool shares what it learns with the other instances of its application,
    through the database its Store uses (:mod:`tiered.store.traffic`).

    instance: this process's name in the traffic table (default: host, process id and a random
        suffix, so a restarted process is a new instance and the old one's heartbeat expires).
    server_limit: connections the server accepts from the whole fleet; each live instance's
        plan is capped at its equal share (``None``: no limit but the pool's ``max_size``).
    heartbeat_s: how often completed hours and a heartbeat are written (and the live
        instances counted); an instance not seen for ``live_after_s`` is not live.
    refit_every_s: how often the plan is made again (and at start, when history exists).
    history_days / horizon_h: the history a plan is made from, and how far ahead it plans.
    """

    instance: str | None = None
    server_limit: int | None = None
    heartbeat_s: float = 60.0
    live_after_s: float = 180.0
    refit_every_s: float = 86400.0
    history_days: int = 56
    horizon_h: int = 48

    def __post_init__(self) -> None:
        if self.server_limit is not None and self.server_limit < 1:
            raise ConfigError(f"Fleet.server_limit must be >= 1, got {self.server_limit}")
        if not (self.heartbeat_s > 0 and self.live_after_s > self.heartbeat_s):
            raise ConfigError("Fleet needs heartbeat_s > 0 and live_after_s > heartbeat_s")
        if not self.refit_every_s > 0 or self.history_days < 1 or self.horizon_h < 1:
            raise ConfigError("Fleet needs refit_every_s > 0, history_days >= 1, horizon_h >= 1")
        if self.instance is not None and not (0 < len(self.instance) <= 200):
            raise ConfigError("Fleet.instance must be 1 to 200 characters")


@dataclass(frozen=True, slots=True)
class LearntPlan:
    """What a planner made of the traffic history: ``schedule`` of pool sizes (wall-clock
    times), reached ``lead_time`` seconds before each rise, valid until ``until``; or no
    schedule, and ``reason`` says why (the policy stays reactive). ``model`` names the traffic
    model the plan follows, ``hold_s`` the measured seconds a request holds a connection that
    it was sized with (``hold_cv``: their measured coefficient of variation; ``None``: not
    counted, sized as if 1, the exponential holds of M/M/c), ``rates`` the arrival rate it
    planned for in each hour of the schedule (requests/s, this instance's) and ``band`` the
    forecast band's low and high ends beside it."""

    schedule: Schedule | None
    until: float
    reason: str
    lead_time: float = 60.0
    model: str | None = None
    hold_s: float | None = None
    hold_cv: float | None = None
    rates: tuple[float, ...] | None = None
    band: tuple[tuple[float, ...], tuple[float, ...]] | None = None


class Learning:
    """Sizing that learns its own traffic: reactive until a plan is installed, then the plan as
    a floor (reached ``lead_time`` early) with the reactive policy above it, until the plan runs
    out. See the module docstring.

    ``clock`` is wall-clock seconds (the plan's times and the intervals' starts);
    ``reactive``: the policy alone (cold start, no plan; default :class:`Reactive` on
    ``monotonic``); ``above``: the reactive part above a plan (default: :data:`ABOVE_PLAN`'s
    cooldowns); ``fleet``:
    how a Store whose pool uses this policy shares the traffic with other instances.
    """

    def __init__(
        self,
        *,
        reactive: Reactive | None = None,
        above: Reactive | None = None,
        fleet: Fleet | None = None,
        interval_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reactive = reactive or Reactive(clock=monotonic)
        up, down = ABOVE_PLAN
        self.above = above or Reactive(up_cooldown=up, down_cooldown=down, clock=monotonic)
        self.fleet = fleet or Fleet()
        self.log = TrafficLog(interval_s)
        self.clock = clock
        self._plan: LearntPlan | None = None
        self._predictive: Predictive | None = None
        self.why = "cold start: no traffic history yet"
        self.installed_at: float | None = None
        self._outside = (0, 0)  # (side: -1 below the band, 1 above; intervals in a row)

    def install(self, plan: LearntPlan) -> None:
        """Follow ``plan`` from now on (a plan without a schedule: reactive, for its reason)."""
        self._plan = plan
        self.installed_at = self.clock()
        self.why = plan.reason
        self._outside = (0, 0)
        self._predictive = (
            None
            if plan.schedule is None
            else Predictive(plan.schedule, lead_time=plan.lead_time, clock=self.clock)
        )

    @property
    def plan(self) -> LearntPlan | None:
        """The plan installed last (with or without a schedule), ``None`` before any."""
        return self._plan

    @property
    def mode(self) -> str:
        """``"planned"`` while a plan is followed, else ``"reactive"``."""
        return "reactive" if self._predictive is None else "planned"

    def decide(self, load: PoolLoad) -> Decision:
        now = self.clock()
        done = self.log.add(now, load.requests, load.busy_s, load.hold_sq_s)
        if done is not None and self._predictive is not None:
            self._check_band(done)
        p = self._predictive
        if p is not None and self._plan is not None and now >= self._plan.until:
            self._predictive = p = None
            self.why = "the plan ran out before a new one was made"
        if p is None:
            r = self.reactive.decide(load)
            return Decision(r.target, prefixed_reason(f"reactive ({self.why}): ", r.reason))
        # above the plan, the reactive part gives connections back quickly; after an interval
        # far above the plan's band (the plan is too low), at the reactive policy's own pace
        fast = self.above.decide(load)
        slow = self.reactive.decide(load)
        r = slow if self._outside[0] > 0 else fast  # the last interval judged: far above
        floor = p.decide(load)
        if r.target > floor.target:
            return Decision(r.target, prefixed_reason("reactive above the plan: ", r.reason))
        return Decision(floor.target, prefixed_reason("learnt plan: ", floor.reason))

    def _check_band(self, done: Interval) -> None:
        """Set the plan aside after :data:`BAND_HOURS` completed intervals in a row with traffic
        far outside its forecast band on one side (:data:`BAND_REACH`; an interval begun before
        the plan was installed, a process's partial first one, is not judged)."""
        plan = self._plan
        if (
            plan is None
            or plan.band is None
            or plan.rates is None
            or done.start < (self.installed_at or math.inf)
        ):
            return
        (low, high), mid = plan.band, plan.rates
        step = self.log.interval_s
        i = round((done.start - (plan.until - len(mid) * step)) / step)
        if not (0 <= i < len(mid) and i < len(low) and i < len(high)):
            return
        rate, m = done.requests / step, mid[i]
        side = (
            1 if rate > m + BAND_REACH * (high[i] - m)
            else -1 if rate < m - BAND_REACH * (m - low[i])
            else 0
        )  # fmt: skip
        n = self._outside[1] + 1 if side and self._outside[0] == side else int(side != 0)
        self._outside = (side, n)
        if n >= BAND_HOURS:
            self._predictive = None
            where = "above" if side > 0 else "below"
            self.why = f"the traffic left the forecast band: {n} hours in a row {where} it"

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
        return f"Learning({self.mode}: {self.why}; {self.reactive!r}, above {self.above!r})"
