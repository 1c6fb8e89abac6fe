"""The learning pool's parts: what the pool counts per interval, the policy's rules (reactive
until a plan, the plan as a floor reached early, reactive again when it runs out), and the
planner's choices and refusals on series built for each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiered.forecast.planner import MIN_DAYS, hourly_series, plan_from_history
from tiered.forecast.series import synthetic_trace
from tiered.pool import PoolLoad, Reactive, Schedule
from tiered.pool.learning import Interval, Learning, LearntPlan, TrafficLog
from tiered.pool.state import PoolState

H = 3600.0
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC, an hour boundary


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def load(requests: int = 0, busy_s: float = 0.0, *, size: int = 1, waiting: int = 0) -> PoolLoad:
    return PoolLoad(size=size, in_use=0, idle=size, waiting=waiting, utilization=0.5,
                    requests=requests, waited=0, wait_mean=0.0, min_size=1, max_size=50,
                    busy_s=busy_s)  # fmt: skip


def test_the_pool_state_reports_busy_connection_seconds() -> None:
    clock = Clock(0.0)
    state: PoolState[object, object] = PoolState(
        min_size=1, max_size=4, sizing=Reactive(clock=clock), clock=clock
    )
    a, b = object(), object()
    state.account()
    state.lent.update((a, b))  # two connections lent for 3 s, then one for 1 s more
    clock.t = 3.0
    state.account()
    state.lent.discard(b)
    clock.t = 4.0
    got = state.load()
    assert got.busy_s == pytest.approx(7.0)
    assert state.load().busy_s == 0.0  # a new period


async def test_the_pool_counts_the_squared_hold_time_of_every_borrow(tmp_path: Path) -> None:
    """From the moment a borrower has the connection to its return, on the pool's clock: one
    held 0.3 s while another queued, which then held it 0.1 s."""
    import asyncio

    from tiered.db.driver import connect
    from tiered.pool import Decision, Fixed, Pool, PoolConfig

    class Seen(Fixed):
        def __init__(self) -> None:
            super().__init__(1)
            self.loads: list[PoolLoad] = []

        def decide(self, load: PoolLoad) -> Decision:
            self.loads.append(load)
            return super().decide(load)

    clock, seen = Clock(100.0), Seen()
    pool = Pool(lambda: connect(f"file:{tmp_path / 'p.db'}"),
                PoolConfig(min_size=1, max_size=1, sizing=seen), clock=clock)  # fmt: skip
    await pool.open(background=False)
    await pool.maintain()
    seen.loads.clear()

    async def second() -> None:
        async with pool.connection():
            clock.t += 0.1

    async with pool.connection():
        waiter = asyncio.create_task(second())
        await asyncio.sleep(0)  # queued behind the first borrower
        clock.t += 0.3
    await waiter
    await pool.maintain()
    assert sum(x.hold_sq_s for x in seen.loads) == pytest.approx(0.3**2 + 0.1**2)
    assert sum(x.requests for x in seen.loads) == 2
    await pool.close()


def test_the_log_counts_per_interval_and_a_gap_is_missing_not_zero() -> None:
    log = TrafficLog(H)
    assert log.add(T0 + 10, 5, 0.5) is None
    assert log.add(T0 + 3000, 7, 0.7) is None
    done = log.add(T0 + H + 1, 1, 0.1)
    assert done == Interval(T0, 12, pytest.approx(1.2))  # type: ignore[arg-type]
    log.add(T0 + 4 * H + 1, 2, 0.2)  # hours 2 and 3 saw no load: the process was down
    got = log.pop_completed()
    assert [iv.start for iv in got] == [T0, T0 + H]
    assert log.pop_completed() == []
    start, req, busy, filled = hourly_series([*got, Interval(T0 + 4 * H, 2, 0.2)])
    assert busy.tolist() == pytest.approx([1.2, 0.1, 0, 0, 0.2])
    assert start == T0 and req.tolist() == [12, 1, 0, 0, 2] and filled == 2


def test_cold_start_is_reactive_and_says_so() -> None:
    clock = Clock()
    p = Learning(reactive=Reactive(clock=clock), clock=clock)
    d = p.decide(load(waiting=1))
    assert d.target == 2 and "cold start" in d.reason
    assert p.get_stats()["mode"] == "reactive"


def test_a_plan_is_a_floor_reached_early_and_reactive_goes_above_it() -> None:
    clock = Clock()
    p = Learning(reactive=Reactive(clock=clock, down_cooldown=1e9), clock=clock)
    sched = Schedule([(T0, 2), (T0 + H, 9), (T0 + 2 * H, 3)])
    p.install(LearntPlan(sched, T0 + 3 * H, "test plan", lead_time=60.0, model="m"))
    assert p.decide(load(size=2)).target == 2
    clock.t = T0 + H - 59  # within the lead time of the rise: pre-scaled
    d = p.decide(load(size=2))
    assert d.target == 9 and "learnt plan" in d.reason
    clock.t = T0 + H + 10
    assert p.decide(load(size=9, waiting=3)).target == 10  # what the forecast missed
    assert p.get_stats()["mode"] == "planned" and p.get_stats()["model"] == "m"


def test_a_plan_that_runs_out_falls_back_to_reactive() -> None:
    clock = Clock()
    p = Learning(reactive=Reactive(clock=clock, down_cooldown=1e9), clock=clock)
    p.install(LearntPlan(Schedule([(T0, 8)]), T0 + H, "short plan"))
    assert p.decide(load(size=1)).target == 8
    clock.t = T0 + H
    d = p.decide(load(size=8))
    assert d.target == 8 and "ran out" in d.reason
    assert p.get_stats()["mode"] == "reactive"


def test_a_plan_is_set_aside_when_the_traffic_leaves_its_band_for_hours() -> None:
    """Three completed hours in a row far below (or above) the forecast band (three times its
    reach from the median): reactive alone, and it says why; hours back inside in between
    start the count again; hours just outside the band do not count; the partial hour the plan
    was installed in is not judged."""
    from tiered.pool.learning import BAND_HOURS, BAND_REACH

    def run(per_hour: list[float]) -> Learning:
        clock = Clock(T0 + 1800)  # installed mid-hour
        p = Learning(reactive=Reactive(clock=clock), clock=clock)
        # requests/s, hour by hour from T0: median 15, band 12..18, far below 6 or above 24
        band = ((12.0,) * 12, (18.0,) * 12)
        plan = LearntPlan(Schedule([(T0, 4)]), T0 + 12 * H, "plan", rates=(15.0,) * 12,
                          band=band)  # fmt: skip
        p.install(plan)
        for h, rate in enumerate(per_hour):
            for k in range(4):  # four consultations an hour, each with a quarter's requests
                clock.t = T0 + h * H + k * 900 + (1800 if h == 0 else 0) * (k < 2)
                p.decide(load(requests=int(rate * 900)))
        clock.t = T0 + len(per_hour) * H
        p.decide(load())
        return p

    assert (BAND_HOURS, BAND_REACH) == (3, 3.0)
    assert run([15, 10, 10, 10, 20, 20, 20]).mode == "planned"  # outside the band, not far
    # the first (partial) hour is far below: not judged; then two low, one inside, two low
    assert run([0.1, 2, 2, 15, 2, 2]).mode == "planned"
    low = run([15, 2, 2, 2])
    assert low.mode == "reactive" and "3 hours in a row below" in str(low.get_stats()["why"])
    assert "left the forecast band" in low.decide(load()).reason
    high = run([15, 30, 40, 50, 15])
    assert high.mode == "reactive" and "above" in str(high.get_stats()["why"])
    assert run([15, 2, 30, 2, 30, 2]).mode == "planned"  # not on one side


def test_above_a_plan_too_low_connections_go_back_at_the_reactive_pace() -> None:
    """Above the plan the reactive part gives connections back after ABOVE_PLAN's short
    cooldown; after an hour far above the plan's band (the plan is too low: a level shift it
    has not seen), at the reactive policy's own pace, so the pool does not shrink under the
    traffic the plan missed (the series built to break it: late 1.06x reactive without this)."""
    from tiered.pool.learning import ABOVE_PLAN

    def shrink_after(rate: float, wait_s: float) -> int:
        clock = Clock(T0 + 1800)
        p = Learning(
            reactive=Reactive(clock=clock, down_cooldown=30.0), clock=clock, monotonic=clock
        )
        plan = LearntPlan(Schedule([(T0, 4)]), T0 + 12 * H, "plan", rates=(15.0,) * 12,
                          band=((12.0,) * 12, (18.0,) * 12))  # fmt: skip
        p.install(plan)
        for h in range(2):  # the partial hour 0, then hour 1 at ``rate``
            for k in range(4):
                clock.t = T0 + h * H + 1800 * (h == 0) + k * (450 if h == 0 else 900)
                p.decide(load(requests=int(rate * 900), size=10))
        clock.t = T0 + 2 * H + 1  # hour 1 completes: judged against the band
        p.decide(load(size=10))
        assert p.mode == "planned"
        clock.t += wait_s  # then the pool is idle, above the plan's floor of 4
        quiet = PoolLoad(size=10, in_use=0, idle=10, waiting=0, utilization=0.0, requests=0,
                         waited=0, wait_mean=0.0, min_size=1, max_size=50, busy_s=0.0)  # fmt: skip
        return p.decide(quiet).target

    wait = ABOVE_PLAN[1] + 1.0
    assert shrink_after(15.0, wait) == 9  # inside the band: given back quickly
    assert shrink_after(18.0 + 1.0, wait) == 9  # just above it: still the plan's pace
    assert shrink_after(40.0, wait) == 10  # far above: not before the reactive's 30 s
    assert shrink_after(40.0, 31.0) == 9


def test_a_refused_plan_keeps_reactive_with_its_reason() -> None:
    clock = Clock()
    p = Learning(reactive=Reactive(clock=clock), clock=clock)
    p.install(LearntPlan(None, T0, "no daily or weekly pattern"))
    assert "no daily or weekly pattern" in p.decide(load()).reason


def intervals(rates: np.ndarray, hold_s: float = 0.02) -> list[Interval]:
    return [Interval(T0 + i * H, int(r), float(r) * hold_s) for i, r in enumerate(rates)]


def test_too_little_history_is_refused() -> None:
    y = synthetic_trace(days=MIN_DAYS - 1, seed=1)["requests"].to_numpy()
    plan = plan_from_history(intervals(y), now=T0 + y.size * H)
    assert plan.schedule is None and f"needs {MIN_DAYS}" in plan.reason
    assert plan_from_history([], now=T0).reason.startswith("cold start")


def test_a_daily_pattern_gives_a_plan_that_follows_it() -> None:
    y = synthetic_trace(days=21, seed=2, base=200_000.0)["requests"].to_numpy()
    now = T0 + y.size * H
    plan = plan_from_history(intervals(y), now=now, horizon_h=48)
    assert plan.schedule is not None, plan.reason
    assert plan.model in ("snaive_daily", "snaive_weekly") and plan.until == now + 48 * H
    sizes = [plan.schedule.at(now + h * H) for h in range(48)]
    # the plan follows the traffic: its biggest hours are the days' busy hours
    expect = y[-168 : -168 + 48] if plan.model == "snaive_weekly" else np.tile(y[-24:], 2)
    assert np.corrcoef(sizes, expect)[0, 1] > 0.8


def test_traffic_without_a_pattern_is_left_to_reactive() -> None:
    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(0, 2000, 24 * 21)) + 200_000  # a random walk: no season
    plan = plan_from_history(intervals(np.clip(y, 0, None)), now=T0 + y.size * H)
    assert plan.schedule is None and "no daily or weekly pattern" in plan.reason


def test_a_history_with_many_gaps_is_refused() -> None:
    y = synthetic_trace(days=21, seed=4, base=50_000.0)["requests"].to_numpy()
    ivs = [iv for i, iv in enumerate(intervals(y)) if i < 24 * 14 or i % 3]
    plan = plan_from_history(ivs, now=T0 + y.size * H)
    assert plan.schedule is None and "missing" in plan.reason


def test_the_plan_is_aligned_with_the_hours_it_forecasts() -> None:
    y = synthetic_trace(days=21, seed=5, base=200_000.0)["requests"].to_numpy()
    ivs = intervals(y)
    later = plan_from_history(ivs, now=T0 + (y.size + 3) * H + 60, horizon_h=48)
    # now's hour already counted (a member whose clock is behind the fleet's last hour): the
    # plan starts after the last counted hour, so its rates sit on their own hours
    behind = plan_from_history(ivs, now=T0 + (y.size - 1) * H + 60, horizon_h=48)
    assert later.schedule is not None and behind.schedule is not None
    assert behind.schedule.times[0] == T0 + y.size * H
    assert later.schedule.times[0] == T0 + (y.size + 3) * H
    for h in range(3, 40):  # same hours, same sizes, whichever moment planned them
        t = T0 + (y.size + h) * H + 1
        assert later.schedule.at(t) == behind.schedule.at(t)


def test_the_hold_time_counts_only_the_hours_counted() -> None:
    """A filled-in hour brings requests but no busy seconds; with gaps the plan is sized with
    the hold time of the counted hours, not one diluted by the filled ones."""
    y = synthetic_trace(days=21, seed=6, base=200_000.0)["requests"].to_numpy()
    ivs = intervals(y, hold_s=0.05)
    gappy = [iv for i, iv in enumerate(ivs) if not (24 * 15 <= i < 24 * 15 + 30)]
    now = T0 + y.size * H
    whole = plan_from_history(ivs, now=now, horizon_h=24)
    holes = plan_from_history(gappy, now=now, horizon_h=24)
    assert whole.schedule is not None and holes.schedule is not None, holes.reason
    assert whole.hold_s == pytest.approx(0.05) and holes.hold_s == pytest.approx(0.05)


def test_the_plan_is_sized_with_the_measured_spread_of_the_holds() -> None:
    """Holds of one length (no spread) wait less than exponential ones at the same mean
    (Allen-Cunneen): the plan sizes fewer connections where the queue model says so, never
    more; hours without squared holds (rows of an older tiered) are left out of the spread,
    and with none the plan is M/M/c's."""
    from tiered.forecast.planner import hold_spread

    y = synthetic_trace(days=21, seed=2, base=400_000.0)["requests"].to_numpy()
    now, hold = T0 + y.size * H, 0.05
    plain = intervals(y, hold_s=hold)
    even = [Interval(iv.start, iv.requests, iv.busy_s, iv.requests * hold**2) for iv in plain]
    expo = [Interval(iv.start, iv.requests, iv.busy_s, 2 * iv.requests * hold**2) for iv in plain]
    assert hold_spread(plain) is None
    assert hold_spread(even) == pytest.approx(0.0, abs=1e-6)
    assert hold_spread(expo) == pytest.approx(1.0)
    assert hold_spread(plain[:100] + even[100:]) == pytest.approx(0.0, abs=1e-6)
    plans = [plan_from_history(h, now=now, horizon_h=24) for h in (plain, even, expo)]
    assert all(p.schedule is not None for p in plans), [p.reason for p in plans]
    assert [p.hold_cv for p in plans] == [None, pytest.approx(0.0, abs=1e-6), pytest.approx(1.0)]
    sizes = [[p.schedule.at(now + h * H + 1) for h in range(24)] for p in plans]  # type: ignore[union-attr]
    assert sizes[2] == sizes[0]  # exponential holds: what M/M/c assumed
    assert all(a <= b for a, b in zip(sizes[1], sizes[0], strict=True))
    assert sum(sizes[1]) < sum(sizes[0])


def test_hours_of_no_traffic_forecast_as_none_are_not_below_the_band() -> None:
    """A business's traffic: nothing at night and at weekends. After a weekend the latest day
    judged is all zeros, as forecast -- at the band's low end, not below it; the plan for the
    Monday is made (it was refused: "100% of the last day's hours were below the band")."""
    day = synthetic_trace(days=21, seed=3, base=300_000.0)["requests"].to_numpy()
    y = day.copy()
    for d in range(21):
        y[d * 24 : d * 24 + 8] = 0  # nights
        if d % 7 in (5, 6):
            y[d * 24 : d * 24 + 24] = 0  # weekends
    plan = plan_from_history(intervals(y), now=T0 + y.size * H, horizon_h=24)
    assert plan.schedule is not None, plan.reason


def test_a_fleet_started_cold_plans_after_two_weeks_and_shares_one_history() -> None:
    from tiered.scenarios.learning import adversarial_series, fleet_run
    from tiered.sim.poolmodel import HoldTimes

    y = synthetic_trace(days=21, seed=9, base=150_000.0)["requests"].to_numpy() / 3600
    hold = HoldTimes(np.array([0.02, 0.03, 0.04]))
    kw = {"hold": hold, "connect_s": 0.05, "instances": 3, "maintenance_interval": 30.0}
    run = fleet_run(y, "learning", **kw)  # type: ignore[arg-type]
    days = {d["day"]: d for d in run.days}
    assert not any(d["planned"] for day, d in days.items() if day < 14)
    assert days[14]["planned"] or days[15]["planned"], days[15]["why"]
    # the members counted the connection-seconds their requests held (the offered load: the
    # fluid steps once rounded it to whole connections, and the plans came out far too small)
    holds = [d["hold_s"] for d in run.days if d["planned"]]
    assert holds and all(h == pytest.approx(hold.mean, rel=0.1) for h in holds)
    # and the squared holds: the plans were sized with the holds' spread, not M/M/c's
    cvs = [d["hold_cv"] for d in run.days if d["planned"]]
    assert all(c == pytest.approx(hold.cv, rel=0.1) for c in cvs)
    assert run.summary["instances"] == 3 and run.summary["simulated"] == 3
    # the judged week only, every member's requests added up
    judged = y[14 * 24 :].sum() * 3600
    assert run.summary["requests"] == pytest.approx(judged, rel=0.02)
    one = fleet_run(y, "reactive", simulated=1, **kw)  # type: ignore[arg-type]
    assert one.summary["requests"] == pytest.approx(judged, rel=0.05)
    offline = fleet_run(y, "offline", **kw)  # type: ignore[arg-type]
    assert len(offline.days) == 1 and offline.days[0]["day"] >= 14
    planned = [h for h in run.hours if h["planned_size"] > 0]
    assert planned and all(h["band_lo"] <= h["planned_rate"] <= h["band_hi"] for h in planned)
    shuffled = adversarial_series(y, "no_season")
    assert sorted(shuffled) == sorted(y) and not np.array_equal(shuffled, y)


def test_a_constant_series_is_refused_not_a_crash() -> None:
    """Last hour's value forecasts a constant series perfectly (MASE 0): the comparison with
    it must not divide by zero (it did, in a fleet member's first refit)."""
    plan = plan_from_history(intervals(np.full(24 * 21, 500.0)), now=T0 + 24 * 21 * H)
    assert plan.schedule is None and "no daily or weekly pattern" in plan.reason


def test_the_first_requests_of_a_predicted_rise_wait_no_longer_than_steady_state() -> None:
    """Request-level simulation: with the plan's lead (connect + warm-up) the connections for a
    rise are open before it; reached at the rise itself, the first requests wait for connects."""
    from tiered.scenarios.learning import peak_onset_waits
    from tiered.sim.poolmodel import HoldTimes

    hold = HoldTimes(np.array([0.02, 0.025, 0.03, 0.04]))
    rate = np.array([2, 2, 40, 40, 5, 5, 60, 60, 10, 3, 50, 50], dtype=float)
    on = peak_onset_waits(rate, hold, 0.1, warm_up=True)
    off = peak_onset_waits(rate, hold, 0.1, warm_up=False)
    assert on["rises"] == off["rises"] == 3
    assert on["onset_p99_ms"] <= on["steady_p99_ms"] + 1.0
    assert off["onset_p99_ms"] > 10.0  # the check can fail: without warm-up they are late


def test_the_policies_say_what_they_are() -> None:
    """Their reprs show in the pool's repr and logs (Hybrid's once went missing when a helper
    was added after its decide)."""
    from tiered.pool import Hybrid, Predictive

    h = Hybrid(Predictive(Schedule([(0.0, 2)])), Reactive())
    assert repr(h).startswith("Hybrid(Predictive(Schedule(1 steps")
    assert repr(Learning()).startswith("Learning(reactive: cold start")


async def test_on_the_real_pool_the_first_requests_of_a_learnt_rise_find_open_connections(
    tmp_path: Path,
) -> None:
    """The real pool, a learnt plan and a virtual clock on which a connect costs 100 ms: at
    each rise of the plan, as many requests at once as the plan sizes for. With the plan's lead
    (connect + warm-up) their connections were opened and proved before the rise, and the
    first requests wait no longer than the same requests half an hour later (steady state);
    with the plan reached at the rise itself, some wait for a connect."""
    import asyncio
    import dataclasses

    from tiered.db.driver import Connection, connect
    from tiered.pool import Pool, PoolConfig

    connect_s = 0.1
    y = synthetic_trace(days=21, seed=2, base=200_000.0)["requests"].to_numpy()
    now = T0 + y.size * H
    plan = plan_from_history(intervals(y), now=now, connect_s=connect_s, horizon_h=24)
    assert plan.schedule is not None and plan.lead_time >= connect_s, plan.reason
    times, sizes = plan.schedule.times, plan.schedule.sizes
    rises = [t for i, t in enumerate(times) if i and sizes[i] > sizes[i - 1]]
    assert len(rises) >= 2

    async def waits(lead: float) -> tuple[list[float], list[float]]:
        clock = Clock(now)

        async def factory() -> Connection:
            clock.t += connect_s  # the connect's cost, on the virtual clock
            return await connect(f"file:{tmp_path / 'pool.db'}")

        sizing = Learning(reactive=Reactive(clock=clock), above=Reactive(clock=clock),
                          clock=clock, monotonic=clock)  # fmt: skip
        # (no band: this pool does not carry the traffic the plan was made for)
        sizing.install(dataclasses.replace(plan, lead_time=lead, band=None))
        pool: Pool[Connection] = Pool(
            factory, PoolConfig(min_size=1, max_size=20, sizing=sizing), clock=clock
        )
        await pool.open(background=False)

        async def burst(n: int) -> list[float]:
            held, got = asyncio.Event(), []

            async def one() -> None:
                t0 = clock()
                async with pool.connection():
                    got.append(clock() - t0)
                    if len(got) == n:
                        held.set()
                    await held.wait()  # all n hold a connection at once

            await asyncio.gather(*(one() for _ in range(n)))
            return got

        onset: list[float] = []
        steady: list[float] = []
        try:
            for rise in rises:
                for t in (rise - plan.lead_time - 60, rise - plan.lead_time, rise - 1):
                    clock.t = t
                    await pool.maintain()
                    await pool.wait()
                clock.t = rise
                onset += await burst(plan.schedule.at(rise))
                clock.t = rise + H / 2
                await pool.maintain()
                await pool.wait()
                steady += await burst(plan.schedule.at(rise))
        finally:
            await pool.close()
        return onset, steady

    onset, steady = await waits(plan.lead_time)
    assert max(onset) <= max(steady), (onset, steady)
    late, _ = await waits(0.0)  # reached at the rise: the check can fail
    assert max(late) > connect_s / 2, late  # (a connect, give or take float rounding)
