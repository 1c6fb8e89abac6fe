"""A learning pool over weeks of traffic, started cold, as a fleet: :func:`fleet_run`.

``instances`` application instances share a traffic series evenly (a load balancer), each with
its own pool (the simulator's fluid pool, :class:`~tiered.sim.poolmodel.FluidPool`) and its own
sizing policy -- the library's objects on the simulator's clock:

* **learning**: :class:`~tiered.pool.learning.Learning`. Every simulated hour each member's
  completed hours go to a shared history (what the Store's traffic table holds); every day at
  01:00 (the day's last hour complete) the fleet's plan is made from it
  (:func:`~tiered.forecast.planner.plan_from_history`, with the live members and the server
  limit) and installed in every member. Reactive until the planner accepts a plan.
* **offline**: the same, but one plan made once at the start of the judged weeks for all of
  them, and never refitted (what a plan made by hand and pasted into the config does).
* **reactive**: :class:`~tiered.pool.Reactive` with a setting of the sweep (and learning's own
  setting without a plan, which the series built to break it compare with).
* **oracle**: :class:`~tiered.pool.Predictive` on the plan made from the actual rates with the
  planner's own queue model (an unreachable reference: it differs from learning only in the
  forecast).

The weeks before ``judge_from_week`` are run (learning needs them) but not counted; the
non-learning policies, which carry nothing from week to week, are run on the judged weeks only,
and (in :func:`pool_learning`) on one member whose figures stand for all: the split is even, so
the members are alike, and nothing passes between them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tiered.errors import ConfigError
from tiered.forecast.capacity import plan_pool
from tiered.forecast.planner import MIN_COVERAGE, plan_from_history
from tiered.pool.learning import ABOVE_PLAN, Interval, Learning, LearntPlan
from tiered.pool.sizing import Decision, PoolLoad, Predictive, Reactive, SizingPolicy
from tiered.sim.poolmodel import FluidPool, HoldTimes, PoolScenario

__all__ = [
    "FLEET_POLICIES",
    "T0",
    "FleetRun",
    "adversarial_series",
    "describe_learning",
    "fleet_run",
    "peak_onset_waits",
    "pool_learning",
]

#: the wall-clock time of the series' first hour (an hour boundary)
T0 = 1_767_225_600.0
HOUR = 3600.0
FLEET_POLICIES = ("learning", "offline", "reactive", "oracle")
Clock = Callable[[], float]


@dataclasses.dataclass
class FleetRun:
    """One policy on one series: ``summary`` over the judged weeks (every member added up:
    requests, late, late_share, connection_hours; wait_p99_ms the worst member's), ``days``
    (learning/offline: per day, the plan's model or why there is none) and ``hours`` (the first
    member's planned size, target and planned rate per hour, for charts)."""

    policy: str
    summary: dict[str, float]
    days: list[dict[str, Any]]
    hours: list[dict[str, float]]


class _Recorded:
    """A policy whose largest target per hour is kept (the first member's, for charts)."""

    def __init__(self, policy: SizingPolicy, clock: Clock) -> None:
        self.policy, self.clock = policy, clock
        self.targets: dict[int, int] = {}

    def decide(self, load: PoolLoad) -> Decision:
        d = self.policy.decide(load)
        h = int(self.clock() // HOUR)
        if d.target > self.targets.get(h, 0):
            self.targets[h] = d.target
        return d


def fleet_run(
    rate: np.ndarray,
    policy: str,
    *,
    hold: HoldTimes,
    connect_s: float,
    instances: int = 4,
    judge_from_week: int = 2,
    reactive: tuple[float, float, float, float] = (0.3, 0.75, 0.5, 30.0),
    above: tuple[float, float] = ABOVE_PLAN,
    plan_quantile: float = 0.5,
    min_coverage: float = MIN_COVERAGE,
    server_limit: int | None = None,
    max_wait_s: float = 0.010,
    slo_quantile: float = 0.999,
    warmup_s: float = 30.0,
    maintenance_interval: float = 0.5,
    simulated: int | None = None,
    seed: int = 0,
) -> FleetRun:
    """Run ``policy`` (one of :data:`FLEET_POLICIES`) on the fleet's hourly ``rate``
    (requests/s, the whole fleet's); ``reactive``: the reactive setting (low, high, grow and
    shrink cooldowns) of reactive, and of learning without a plan. See the module docstring.

    ``simulated``: how many members are simulated (default all); the figures of the others
    are taken to be theirs (the members are alike: an even split of the traffic). Only for
    policies that learn nothing from each other."""
    if policy not in FLEET_POLICIES:
        raise ConfigError(f"unknown fleet policy {policy!r}; one of {FLEET_POLICIES}")
    if instances < 1:
        raise ConfigError(f"fleet_run needs instances >= 1, got {instances}")
    judged = judge_from_week * 168
    if rate.size <= judged:
        raise ConfigError(f"the series has {rate.size} h; the judged weeks start at {judged}")
    learns = policy in ("learning", "offline")
    simulated = instances if simulated is None else simulated
    if not 1 <= simulated <= instances or (learns and simulated != instances):
        raise ConfigError("simulated must be within [1, instances], and all of them to learn")
    first = 0 if learns else judged  # the others carry nothing over: judged weeks only
    member_rate = np.asarray(rate[first:], dtype=float) / instances
    low, high, up, down = reactive
    max_size = 100 if server_limit is None else max(1, server_limit // instances)
    oracle = None
    if policy == "oracle":
        # the planner's own queue model (the holds' mean and spread, as the pools count them),
        # fed with the actual rates: the oracle differs from learning in the forecast alone
        oracle = plan_pool(member_rate.tolist(), service_s=hold.mean, service_cv=hold.cv,
                           connect_s=connect_s, warmup_s=warmup_s, max_wait_s=max_wait_s,
                           quantile=slo_quantile, max_size=max_size)  # fmt: skip
    learners: list[Learning] = []
    recorder: list[_Recorded] = []

    def make(i: int) -> Callable[[Clock], SizingPolicy]:
        def build(c: Clock) -> SizingPolicy:
            r = Reactive(low=low, high=high, up_cooldown=up, down_cooldown=down, clock=c)
            p: SizingPolicy = r
            if learns:
                a = Reactive(up_cooldown=above[0], down_cooldown=above[1], clock=c)
                p = Learning(reactive=r, above=a, clock=lambda: T0 + c(), monotonic=c)
                learners.append(p)
            elif oracle is not None:
                p = Predictive(oracle.schedule, lead_time=oracle.lead_time_s, clock=c)
            if i == 0:
                recorder.append(_Recorded(p, c))
                return recorder[0]
            return p

        return build

    pools = [
        FluidPool(
            PoolScenario(
                member_rate,
                hold,
                connect_s,
                max_size=max_size,
                late_s=max_wait_s,
                maintenance_interval=maintenance_interval,
                seed=seed + i,
            ),
            make(i),
            record=False,
        )
        for i in range(simulated)
    ]
    per_hour = round(HOUR / maintenance_interval)
    count_from = round((judged - first) * HOUR / maintenance_interval)
    runs = [p.iterate(every=per_hour, count_from=count_from) for p in pools]
    history: list[Interval] = []
    days: list[dict[str, Any]] = []
    planned: dict[int, tuple[float, ...]] = {}  # hour -> the first member's plan
    late_h: dict[int, tuple[float, float]] = {}  # hour -> the first member's late, requests
    seen = (0.0, 0.0)
    offline_done = False
    while True:
        ks = [next(r, None) for r in runs]  # the members run in step: all end together
        if ks[0] is None:
            break
        k, late, requests = ks[0]
        hour = k // per_hour + first  # the hour about to start
        late_h[hour - 1] = (late - seen[0], requests - seen[1])
        seen = (0.0, 0.0) if k == count_from else (late, requests)
        for p in learners:
            history.extend(p.log.pop_completed())
        if not learns or hour % 24 != 1 or (policy == "offline" and offline_done):
            continue
        if policy == "offline" and hour < judged:
            continue
        now = T0 + hour * HOUR
        horizon = 48 if policy == "learning" else rate.size - hour + 1
        plan = plan_from_history(
            history, now=now, connect_s=connect_s, instances=instances,
            server_limit=server_limit, horizon_h=horizon, max_wait_s=max_wait_s,
            wait_quantile=slo_quantile, warmup_s=warmup_s, max_size=max_size,
            plan_quantile=plan_quantile, min_coverage=min_coverage,
        )  # fmt: skip
        offline_done = policy == "offline"
        # the offline plan is a schedule made once and pasted: nothing watches its band
        given = dataclasses.replace(plan, band=None) if offline_done else plan
        for p in learners:
            p.install(given)
        days.append({"day": hour // 24, "planned": plan.schedule is not None,
                     "model": plan.model, "why": plan.reason, "hold_s": plan.hold_s,
                     "hold_cv": plan.hold_cv})  # fmt: skip
        _note_plan(planned, plan)
    results = [p.result for p in pools]
    assert all(r is not None for r in results)
    scale = instances / simulated
    sums = {
        k: scale * sum(r.summary[k] for r in results if r)
        for k in ("requests", "late", "connection_hours")
    }
    summary = {
        **sums,
        "late_share": sums["late"] / sums["requests"] if sums["requests"] else 0.0,
        "wait_p99_ms": max(r.summary["wait_p99_ms"] for r in results if r),
        "instances": float(instances),
        "simulated": float(simulated),
    }
    hours = []
    targets = recorder[0].targets if recorder else {}
    nan = math.nan
    for h in range(judged - 24 * 7 if learns else judged, rate.size):
        size, prate, lo, hi = planned.get(h, (0.0, nan, nan, nan))
        late, requests = late_h.get(h, (nan, nan))
        hours.append({
            "hour": float(h), "rate": float(rate[h]), "planned_rate": prate * instances,
            "band_lo": lo * instances, "band_hi": hi * instances, "planned_size": size,
            "target": float(targets.get(h - first, 0)), "late": late, "requests": requests,
        })  # fmt: skip
    return FleetRun(policy, summary, days, hours)


def _note_plan(planned: dict[int, tuple[float, ...]], plan: LearntPlan) -> None:
    """Keep one member's planned size, planned rate and forecast band per hour (rates per
    member: the fleet's is ``instances`` times)."""
    if plan.schedule is None or plan.rates is None or plan.band is None:
        return
    start = round((plan.schedule.times[0] - T0) / HOUR)
    for j, (r, lo, hi) in enumerate(zip(plan.rates, *plan.band, strict=True)):
        t = T0 + (start + j) * HOUR
        planned[start + j] = (float(plan.schedule.at(t + 1)), r, lo, hi)


def adversarial_series(base: np.ndarray, kind: str, *, seed: int = 0) -> np.ndarray:
    """Series built to break a learning pool, from ``base`` (requests/s per hour):

    * ``"no_season"``: the same mean and spread, hours shuffled (no daily or weekly pattern);
    * ``"level_shift"``: the base, doubled from the middle of the third week on;
    * ``"holiday"``: the base with its third week at a fifth of its level (and the fourth, the
      week after, copied by a weekly model from the holiday).
    """
    y = np.asarray(base, dtype=float).copy()
    if kind == "no_season":
        return np.random.default_rng(seed).permutation(y)
    if kind == "level_shift":
        y[int(2.5 * 168) :] *= 2.0
        return y
    if kind == "holiday":
        y[2 * 168 : 3 * 168] *= 0.2
        return y
    raise ConfigError(f"unknown adversarial series {kind!r}")


def oracle_share(reactive_hours: float, policy_hours: float, oracle_hours: float) -> float | None:
    """The share of the oracle's connection-hour saving over reactive that ``policy`` gets
    (``None`` if the oracle saves nothing)."""
    saving = reactive_hours - oracle_hours
    if saving <= 0:
        return None
    return (reactive_hours - policy_hours) / saving


def cheapest_meeting(runs: Sequence[FleetRun], slo_late_share: float) -> FleetRun | None:
    """The run with the fewest connection-hours among those meeting the SLO."""
    ok = [r for r in runs if r.summary["late_share"] <= slo_late_share]
    return min(ok, key=lambda r: r.summary["connection_hours"]) if ok else None


#: what the judged weeks are compared on: 4 members, five weeks from cold, the last three judged
WEEKS = 5
ADVERSARIAL = ("no_season", "level_shift", "holiday")


def _task(
    series: str, rate: np.ndarray, policy: str, reactive: tuple[float, float, float, float],
    *, hold: HoldTimes, connect_s: float, instances: int,
) -> tuple[str, str, tuple[float, float, float, float], FleetRun]:  # fmt: skip
    """One run (a worker's task: module-level, picklable arguments)."""
    run = fleet_run(rate, policy, hold=hold, connect_s=connect_s, instances=instances,
                    reactive=reactive, simulated=None if policy in ("learning", "offline")
                    else 1)  # fmt: skip
    return series, policy, reactive, run


def pool_learning(
    rates: dict[str, np.ndarray],
    adversarial: dict[str, np.ndarray],
    *,
    hold: HoldTimes,
    connect_s: float,
    reactive_grid: Sequence[tuple[float, float, float, float]],
    learning_reactive: tuple[float, float, float, float] = (0.3, 0.75, 0.5, 30.0),
    instances: int = 4,
    slo_late_share: float = 0.001,
    executor: Any = None,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The learning fleet on each series of ``rates`` against the reactive sweep, the offline
    plan and the oracle; on each of ``adversarial`` against reactive with the learning policy's
    own reactive setting. Returns the results (``pool_learning.json``'s body) and the first
    member's hours of every learning run (for charts)."""
    from tiered.progress import Progress

    Job = tuple[str, np.ndarray, str, tuple[float, float, float, float]]
    # first the policies that learn nothing (the sweep, the oracle, reactive on the series
    # built to break it), then learning and the offline plan, each series' with the cheapest
    # reactive setting of its sweep that meets the SLO as the reactive policy it falls back to
    # (as a user who tuned reactive would configure Learning): a plan must then beat it
    first: list[Job] = []
    for name, r in rates.items():
        first += [(name, r, "oracle", learning_reactive)]
        first += [(name, r, "reactive", g) for g in reactive_grid]
    for name, r in adversarial.items():
        first += [(name, r, "reactive", learning_reactive)]
    bar = Progress(len(first) + 2 * len(rates) + len(adversarial), "learning fleets",
                   enabled=progress)  # fmt: skip

    def run_all(jobs: list[Job]) -> list[tuple[str, str, tuple[float, float, float, float],
                                               FleetRun]]:  # fmt: skip
        got = []
        if executor is None:
            for j in jobs:
                got.append(_task(*j, hold=hold, connect_s=connect_s, instances=instances))
                bar.advance()
            return got
        futures = [
            executor.submit(_task, *j, hold=hold, connect_s=connect_s, instances=instances)
            for j in jobs
        ]
        for f in futures:
            got.append(f.result())
            bar.advance()
        return got

    done = run_all(first)
    second: list[Job] = []
    fallback: dict[str, tuple[float, float, float, float]] = {}
    for name, r in rates.items():
        swept = [(g, run) for s_, p_, g, run in done if s_ == name and p_ == "reactive"]
        best = cheapest_meeting([run for _, run in swept], slo_late_share)
        fallback[name] = next((g for g, run in swept if run is best), learning_reactive)
        second += [(name, r, p, fallback[name]) for p in ("learning", "offline")]
    for name, r in adversarial.items():
        second += [(name, r, "learning", learning_reactive)]
    done += run_all(second)
    out: dict[str, Any] = {"series": {}, "adversarial": {}}
    hours: list[dict[str, Any]] = []

    def figures(run: FleetRun) -> dict[str, float]:
        s = run.summary
        return {"connection_hours": s["connection_hours"], "late_share": s["late_share"],
                "meets_slo": s["late_share"] <= slo_late_share}  # fmt: skip

    def days_planned(run: FleetRun) -> dict[str, Any]:
        judged = [d for d in run.days if d["day"] >= 14]
        return {"days_planned": sum(d["planned"] for d in judged), "days_judged": len(judged),
                "last_reason": run.days[-1]["why"] if run.days else None}  # fmt: skip

    for name in rates:
        mine = [(p, g, r) for s, p, g, r in done if s == name]
        learning = next(r for p, _, r in mine if p == "learning")
        offline = next(r for p, _, r in mine if p == "offline")
        oracle = next(r for p, _, r in mine if p == "oracle")
        sweep = [r for p, _, r in mine if p == "reactive"]
        cheapest = cheapest_meeting(sweep, slo_late_share)
        ref = cheapest.summary["connection_hours"] if cheapest else math.nan
        setting = next((g for p, g, r in mine if r is cheapest), None)
        out["series"][name] = {
            "fallback_reactive": list(fallback[name]),
            "oracle_share": oracle_share(ref, learning.summary["connection_hours"],
                                         oracle.summary["connection_hours"]),
            "offline_oracle_share": oracle_share(ref, offline.summary["connection_hours"],
                                                 oracle.summary["connection_hours"]),
            **figures(learning), **days_planned(learning),
            "reactive_cheapest": {**figures(cheapest), "setting": setting} if cheapest else None,
            "offline": figures(offline), "oracle": figures(oracle),
            "reactive_sweep": [figures(r) for r in sweep],
        }  # fmt: skip
        hours += [{"series": name, **h} for h in learning.hours]
    for name in adversarial:
        runs = {p: r for s, p, _, r in done if s == name}
        learning, reactive = runs["learning"], runs["reactive"]
        ls, rs = learning.summary, reactive.summary
        out["adversarial"][name] = {
            "conn_hours_vs_reactive": ls["connection_hours"] / rs["connection_hours"],
            "late_vs_reactive": ls["late_share"] / rs["late_share"] if rs["late_share"] else None,
            "late_share": ls["late_share"], "reactive_late_share": rs["late_share"],
            **days_planned(learning),
        }  # fmt: skip
        hours += [{"series": name, **h} for h in learning.hours]
    return out, hours


def describe_learning(result: dict[str, Any]) -> str:
    """Markdown sentences of ``pool_learning.json``'s figures (for notebook 03)."""
    lines = []
    for name, s in result["series"].items():
        share = s["oracle_share"]
        got = "no saving to share (the oracle saves nothing)" if share is None else (
            f"{share:.0%} of the oracle's connection-hour saving over the cheapest reactive "
            "setting that meets the SLO" if share >= 0 else "no saving: it costs more than the "
            f"cheapest reactive setting that meets the SLO ({share:.0%} of the oracle's saving)"
        )  # fmt: skip
        slo = "meets" if s["meets_slo"] else "**misses**"
        lines.append(
            f"- **{name}**: the learning fleet {slo} the SLO (late share "
            f"{s['late_share']:.5f}) and gets {got}; it followed a plan on "
            f"{s['days_planned']} of the {s['days_judged']} judged days."
        )
    for name, a in result["adversarial"].items():
        late = a["late_vs_reactive"]
        late_txt = "n/a (reactive had no late request)" if late is None else f"{late:.2f}x"
        lines.append(
            f"- *{name}* (built to break it): {a['conn_hours_vs_reactive']:.3f}x reactive's "
            f"connection-hours, late share {late_txt} reactive's; a plan on "
            f"{a['days_planned']} of {a['days_judged']} judged days (last: {a['last_reason']})."
        )
    return "\n".join(lines)


def peak_onset_waits(
    rate: np.ndarray,
    hold: HoldTimes,
    connect_s: float,
    *,
    warm_up: bool = True,
    interval_s: float = 600.0,
    first: int = 20,
    warmup_s: float = 30.0,
    seed: int = 0,
) -> dict[str, float]:
    """Do the first requests of a predicted rise wait longer than requests in steady state?

    The request-level engine (every request an event) with :class:`~tiered.pool.Predictive`
    following the plan made from ``rate`` (requests/s per ``interval_s``), reaching each rise
    the plan's lead (connect + warm-up) early, or (``warm_up=False``) at the rise. Returns the
    p99 wait (ms) of the first ``first`` requests after every rise, and of the requests that
    arrived in the second half of an interval (steady state), and the rises counted."""
    from tiered.sim.poolmodel import RequestPool

    plan = plan_pool(np.asarray(rate).tolist(), service_s=hold.mean, connect_s=connect_s,
                     warmup_s=warmup_s, interval_s=interval_s)  # fmt: skip
    sc = PoolScenario(np.asarray(rate, dtype=float), hold, connect_s, interval_s=interval_s,
                      seed=seed)  # fmt: skip
    lead = plan.lead_time_s if warm_up else 0.0
    run = RequestPool(sc, lambda c: Predictive(plan.schedule, lead_time=lead, clock=c)).run()
    assert run.waits is not None and run.arrived is not None
    order = np.argsort(run.arrived, kind="stable")
    arrived, waits = run.arrived[order], run.waits[order]
    sizes = plan.sizes
    rises = [i * interval_s for i in range(1, len(sizes)) if sizes[i] > sizes[i - 1]]
    onset = np.concatenate([
        waits[np.searchsorted(arrived, t) :][:first] for t in rises
    ]) if rises else np.zeros(0)  # fmt: skip
    steady = waits[(arrived % interval_s) >= interval_s / 2]
    return {
        "onset_p99_ms": float(np.quantile(onset, 0.99) * 1000) if onset.size else 0.0,
        "steady_p99_ms": float(np.quantile(steady, 0.99) * 1000) if steady.size else 0.0,
        "rises": float(len(rises)),
    }
