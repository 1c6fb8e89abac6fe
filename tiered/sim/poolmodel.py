"""Simulate a connection pool under a traffic series, driving a real sizing policy.

The request-level model drives :class:`tiered.pool.PoolState` -- the very object that holds the
live :class:`tiered.pool.Pool`'s rules (LIFO reuse, FIFO queue, consult the policy when a request
queues and open what the target asks, close a returned connection above the target, shrink and
grow at every ``maintenance_interval`` tick) -- with integer tokens for connections; only time is
modelled: a new connection is ready ``connect_s`` later (open + ping: warm), and a request holds
its connection for a drawn hold time. The policy is the library's own object
(:class:`~tiered.pool.Reactive`, :class:`~tiered.pool.Predictive`, :class:`~tiered.pool.Hybrid`,
:class:`~tiered.pool.Fixed`), built on the simulator's clock.

Arrivals are a non-homogeneous Poisson process: ``rate[i]`` requests/s, constant within interval
``i`` (an hourly series gives Poisson arrivals within each hour). Hold times are drawn from a
measured sample (:class:`HoldTimes`, e.g. the round-trip phase of the Store's metrics).

Two modes:

* ``"requests"``: every request is an event (:class:`~tiered.sim.engine.Simulator`); exact for
  the model, a few µs per request, so a week at hundreds of requests/s is too slow.
* ``"fluid"``: steps of ``maintenance_interval``; within a step the pool is an M/G/c queue in
  steady state (Erlang C with the Allen-Cunneen correction for the measured hold-time variation)
  while it keeps up, and a fluid queue (backlog grows at ``lam - c/s``, drains at ``c/s - lam``)
  while it does not. Arrivals per step are Poisson draws, made (with the step's uniforms) before
  the pool runs, so every policy simulated on one scenario sees the same arrivals; the policy
  sees a PoolLoad built from those figures (``waiting`` is drawn from the probability that the
  queue is not empty; how many of a step's arrivals waited, from a Binomial by inversion). Validated
  against ``"requests"`` on a day of traffic (``simulations/pool_policies.py``, notebook 03).

``mode="auto"`` takes ``"requests"`` when the series has at most ``max_requests`` expected
arrivals, and ``"fluid"`` above.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from tiered.errors import ConfigError
from tiered.forecast.capacity import erlang_c
from tiered.pool.sizing import PoolLoad, SizingPolicy
from tiered.pool.state import PoolState
from tiered.sim.engine import Simulator

__all__ = ["FluidPool", "HoldTimes", "PoolRun", "PoolScenario", "RequestPool", "simulate_pool"]

Clock = Callable[[], float]
PolicyFactory = Callable[[Clock], SizingPolicy]
Mode = Literal["auto", "requests", "fluid"]
#: a queued request: (arrival time, hold time or None = draw one, callback when done)
_Waiter = tuple[float, float | None, Callable[[], None] | None]


@dataclass(frozen=True)
class HoldTimes:
    """A measured sample of how long a request holds a connection (seconds)."""

    samples: np.ndarray

    def __post_init__(self) -> None:
        s = np.asarray(self.samples, dtype=float)
        if s.ndim != 1 or s.size == 0 or not np.isfinite(s).all() or (s <= 0).any():
            raise ConfigError("HoldTimes needs a non-empty sample of positive, finite seconds")
        object.__setattr__(self, "samples", s)

    @property
    def mean(self) -> float:
        return float(self.samples.mean())

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean)."""
        return float(self.samples.std() / self.samples.mean())

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(self.samples, size=n)

    def scaled(self, factor: float) -> HoldTimes:
        return HoldTimes(self.samples * factor)


@dataclass(frozen=True)
class PoolScenario:
    """Traffic, service and pool bounds of one simulated run (times in seconds)."""

    rate: np.ndarray  # requests/s per interval
    hold: HoldTimes
    connect_s: float
    interval_s: float = 3600.0
    min_size: int = 1
    max_size: int = 100
    maintenance_interval: float = 0.5
    late_s: float = 0.010  # a request waiting longer than this for a connection is "late"
    seed: int = 0

    def __post_init__(self) -> None:
        r = np.asarray(self.rate, dtype=float)
        if r.ndim != 1 or r.size == 0 or not np.isfinite(r).all() or (r < 0).any():
            raise ConfigError("PoolScenario.rate must be a non-empty 1-D series of rates >= 0")
        object.__setattr__(self, "rate", r)
        if self.connect_s < 0 or self.interval_s <= 0 or self.maintenance_interval <= 0:
            raise ConfigError("PoolScenario needs connect_s >= 0 and positive intervals")
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            raise ConfigError("PoolScenario needs 0 <= min_size <= max_size, max_size >= 1")

    @property
    def duration(self) -> float:
        return self.rate.size * self.interval_s

    @property
    def expected_requests(self) -> float:
        return float(self.rate.sum() * self.interval_s)


@dataclass
class PoolRun:
    """What one run produced: a summary, the pool's series (one row per maintenance tick, or
    per step in fluid mode) and, in request mode, the wait of every request and when it
    arrived (in the order the requests were lent a connection)."""

    mode: str
    summary: dict[str, float]
    series: pl.DataFrame
    waits: np.ndarray | None = field(default=None, repr=False)
    arrived: np.ndarray | None = field(default=None, repr=False)


def simulate_pool(
    scenario: PoolScenario,
    policy: PolicyFactory,
    *,
    mode: Mode = "auto",
    max_requests: float = 2_000_000,
    series: bool = True,
) -> PoolRun:
    """Run ``scenario`` with the sizing policy ``policy(clock)`` built on the simulated clock.

    ``series=False`` leaves the fluid mode's per-step series empty (a sweep needs only the
    summary; a week is 1.2 million steps)."""
    if mode == "auto":
        mode = "requests" if scenario.expected_requests <= max_requests else "fluid"
    if mode == "requests":
        return RequestPool(scenario, policy).run()
    if mode == "fluid":
        return FluidPool(scenario, policy, record=series).run()
    raise ConfigError(f"mode must be 'auto', 'requests' or 'fluid', got {mode!r}")


_SERIES = ("t", "size", "in_use", "waiting", "utilization", "target", "rate")


class RequestPool:
    """The request-level pool model on a :class:`Simulator` (``sim``: share one to put other
    models on the same clock, as :mod:`tiered.sim.replay` does).

    The pool's rules are :class:`tiered.pool.PoolState`'s -- the live pool's own object --
    driven here with integer tokens for connections and ``(arrival, hold, done)`` for waiters;
    only time is simulated: a connection opens ``connect_s`` after it is asked for, and a
    request holds its connection for a drawn (or given) hold time."""

    def __init__(
        self, sc: PoolScenario, policy: PolicyFactory, sim: Simulator | None = None
    ) -> None:
        self.sc = sc
        self.sim = sim if sim is not None else Simulator()
        self.policy = policy(self.sim.now)
        self.state: PoolState[int, _Waiter] = PoolState(
            min_size=sc.min_size, max_size=sc.max_size, sizing=self.policy, clock=self.sim.now
        )
        self.rng = np.random.default_rng(sc.seed)
        self._tokens = itertools.count()
        self.waits: list[float] = []
        self.arrived: list[float] = []
        self.series: list[tuple[float, ...]] = []
        self.opened = 0
        self.hold_buf = np.empty(0)
        self.hold_i = 0

    @property
    def size(self) -> int:
        return self.state.size

    def _hold(self) -> float:
        if self.hold_i >= self.hold_buf.size:
            self.hold_buf = self.sc.hold.draw(self.rng, 65536)
            self.hold_i = 0
        self.hold_i += 1
        return float(self.hold_buf[self.hold_i - 1])

    def _consult(self, sample: bool) -> None:
        load, d = self.state.consult()
        if sample:
            sc, now = self.sc, self.sim.now()
            rate = float(sc.rate[min(int(now // sc.interval_s), sc.rate.size - 1)])
            self.series.append(
                (now, load.size, load.in_use, load.waiting, load.utilization, d.target, rate)
            )

    def _grow(self) -> None:
        for _ in range(self.state.to_open()):
            self.opened += 1
            self.sim.after(self.sc.connect_s, self._opened)

    def _opened(self) -> None:
        self.state.opened()
        self._put(next(self._tokens))

    def _put(self, slot: int) -> None:
        self._handed(slot, self.state.put(slot))

    def _handed(self, slot: int, w: _Waiter | None) -> None:
        """``slot`` went to the queued request ``w`` (if any): it starts now."""
        if w is not None:
            arrived, hold, done = w
            waited = self.sim.now() - arrived
            self.state.waited(waited)
            self._start(slot, waited, hold, done)

    def _start(
        self, slot: int, waited: float, hold: float | None, done: Callable[[], None] | None
    ) -> None:
        self.waits.append(waited)
        self.arrived.append(self.sim.now() - waited)
        h = self._hold() if hold is None else hold
        self.sim.after(h, self._done, slot, done, h)

    def request(self, hold: float | None = None, done: Callable[[], None] | None = None) -> None:
        """A request arrives now: it holds a connection for ``hold`` seconds (None: drawn from
        the scenario's hold times) and ``done()`` runs when it gives the connection back."""
        state = self.state
        slot = state.request()
        if slot is not None:
            self._start(slot, 0.0, hold, done)
            return
        state.waiters.append((self.sim.now(), hold, done))
        self._consult(sample=False)
        self._grow()

    def _done(self, slot: int, done: Callable[[], None] | None, held: float) -> None:
        kept, w = self.state.release(slot, True, held=held)
        if kept:
            self._handed(slot, w)
        else:
            self._grow()  # the connection closes (the pool is above its target)
        if done is not None:
            done()

    def _maintain(self) -> None:
        self._consult(sample=True)
        self.state.shrink()  # idle connections above the target close
        self._grow()

    def _arrivals(self) -> None:
        """Schedule each interval's Poisson arrivals, chained (one pending event at a time)."""
        sc = self.sc
        rng = np.random.default_rng(sc.seed + 1)

        def interval(i: int) -> None:
            if i >= sc.rate.size:
                return
            n = int(rng.poisson(sc.rate[i] * sc.interval_s))
            times = np.sort(rng.uniform(0.0, sc.interval_s, size=n)) + i * sc.interval_s
            if i + 1 < sc.rate.size:
                self.sim.at((i + 1) * sc.interval_s, interval, i + 1)
            if n:
                chain(times.tolist(), 0)

        def chain(times: list[float], j: int) -> None:
            if j:
                self.request()
            if j < len(times):
                self.sim.at(times[j], chain, times, j + 1)

        self.sim.at(0.0, interval, 0)

    def start(self) -> None:
        """Open the initial connections and schedule the maintenance ticks."""
        self.sim.at(self.sim.now(), self._grow)
        self.sim.every(self.sc.maintenance_interval, self._maintain, until=self.sc.duration)

    def result(self) -> PoolRun:
        self.state.account()
        waits = np.asarray(self.waits)
        return PoolRun("requests", self._summary(waits), _series(self.series), waits,
                       np.asarray(self.arrived))  # fmt: skip

    def run(self) -> PoolRun:
        """Run the scenario's own arrivals to its end."""
        self.start()
        self._arrivals()
        self.sim.run(until=self.sc.duration)
        return self.result()

    def _summary(self, waits: np.ndarray) -> dict[str, float]:
        n = waits.size
        late = int((waits > self.sc.late_s).sum())
        return {
            "requests": float(n),
            "late": float(late),
            "late_share": late / n if n else 0.0,
            "waited_share": float((waits > 0).mean()) if n else 0.0,
            "wait_p99_ms": float(np.quantile(waits, 0.99) * 1000) if n else 0.0,
            "wait_mean_ms": float(waits.mean() * 1000) if n else 0.0,
            "connection_hours": self.state.conn_seconds / 3600,
            "max_size": float(max((r[1] for r in self.series), default=self.size)),
            "opened": float(self.opened),
            "resizes": float(self.state.resizes),
            "events": float(self.sim.events),
        }


def _series(rows: Sequence[tuple[float, ...]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=list(_SERIES), orient="row").cast(
        {"size": pl.Int32, "in_use": pl.Int32, "waiting": pl.Int32, "target": pl.Int32}
    )


class FluidPool:
    """The per-step queueing approximation (``mode="fluid"``; see the module docstring)."""

    def __init__(self, sc: PoolScenario, policy: PolicyFactory, *, record: bool = True) -> None:
        self.sc = sc
        self.record = record
        self.t = 0.0
        self.policy = policy(lambda: self.t)
        self.rng = np.random.default_rng(sc.seed)
        s = sc.hold.mean
        self.s = s
        self.f = (1 + sc.hold.cv**2) / 2  # Allen-Cunneen factor (Poisson arrivals)
        self.s2 = s * s * (1 + sc.hold.cv**2)  # the mean squared hold (s^2)
        self._states: dict[tuple[int, float], tuple[float, float, float, float, float, int]] = {}
        self.result: PoolRun | None = None

    def _steady(self, c: int, lam: float) -> tuple[float, float, float]:
        """(P(wait), P(wait > late), mean wait of those who wait) for c ready connections."""
        a = lam * self.s
        if c <= a:
            return (1.0, 1.0, math.inf)
        pw = erlang_c(c, a)
        # mean wait of those who wait: Allen-Cunneen. The tail beyond late_s: the Allen-Cunneen
        # decay rate halved the late count of the request-level engine on a day of traffic and
        # the M/M/c rate doubled it; the geometric mean of the two factors (an empirical
        # choice, checked by validate_fluid) sits between
        rate = (c - a) / (self.s * self.f)
        tail = (c - a) / (self.s * math.sqrt(self.f))
        return (pw, pw * math.exp(-tail * self.sc.late_s), 1.0 / rate)

    def _state(self, c: int, lam: float) -> tuple[float, float, float, float, float, int]:
        """What a step with ``c`` ready connections at ``lam`` requests/s (keeping up) looks
        like: P(wait), P(wait > late), mean wait of those who wait, P(a request is queued at
        the step's end), utilization and connections in use (cached per state)."""
        key = (c, lam)
        got = self._states.get(key)
        if got is None:
            p_wait, p_late, w_mean = self._steady(c, lam)
            a = lam * self.s
            if c:
                got = (p_wait, p_late, w_mean, p_wait * a / c, min(1.0, a / c), min(c, round(a)))
            else:
                got = (p_wait, p_late, w_mean, 0.0, 0.0, 0)
            self._states[key] = got
        return got

    def run(self) -> PoolRun:
        for _ in self.iterate():
            pass
        assert self.result is not None
        return self.result

    def iterate(self, every: int = 0, count_from: int = 0) -> Iterator[tuple[int, float, float]]:
        """Run step by step, yielding ``(step, late, requests)`` (counted so far) every
        ``every`` steps (0: never) so a driver can run several pools side by side and act
        between steps (a fleet sharing what it learnt); the summary counts from step
        ``count_from`` on (the steps before it warm up, and the counts restart there).
        :attr:`result` holds the run once the iterator is done."""
        sc, s = self.sc, self.s
        dt = sc.maintenance_interval
        steps = round(sc.duration / dt)
        pause = every if every > 0 else steps + 1
        # the traffic does not depend on the pool: the rate, the arrivals and the uniforms of
        # every step are drawn up front (one numpy call each, not three per step)
        idx = np.minimum((np.arange(steps) * dt // sc.interval_s).astype(np.int64),
                         sc.rate.size - 1)  # fmt: skip
        lams = sc.rate[idx]
        arrivals_all = self.rng.poisson(lams * dt).astype(float).tolist()
        u_wait = self.rng.random(steps).tolist()
        u_waited = self.rng.random(steps).tolist()
        lams_l = lams.tolist()
        target = max(sc.min_size, 1) if sc.min_size else 0
        ready = 0
        opening: deque[tuple[float, int]] = deque()  # (ready at, count)
        n_opening = 0
        backlog = 0.0
        conn_seconds = 0.0
        requests = late = waited_total = 0.0
        wait_sum = 0.0
        opened = resizes = 0
        max_size = 0
        # arrivals per steady state (ready, rate) and per overloaded step (with its wait), for
        # the p99 of the whole run
        steady_arrivals: dict[tuple[int, float], float] = {}
        over_n: list[float] = []
        over_w: list[float] = []
        rows: list[tuple[float, ...]] = []
        record = self.record
        decide, min_size, max_size_cfg = self.policy.decide, sc.min_size, sc.max_size
        s2 = self.s2
        late_s, connect_s = sc.late_s, sc.connect_s
        inf = math.inf
        if target:
            opening.append((connect_s, target))
            n_opening, opened = target, target
        for k in range(steps):
            if k % pause == 0 and k:
                yield k, late, requests
            if k == count_from and k:
                requests = late = waited_total = wait_sum = conn_seconds = 0.0
                opened = resizes = max_size = 0
                steady_arrivals, over_n, over_w = {}, [], []
            t0 = k * dt
            while opening and opening[0][0] <= t0:
                _, n = opening.popleft()
                n_opening -= n
                ready += n
            lam = lams_l[k]
            arrivals = arrivals_all[k]
            cap = ready / s  # completions per second at full use
            if backlog > 0 or lam >= cap:
                # overloaded: everyone waits for the backlog ahead to drain
                backlog = max(0.0, backlog + (lam - cap) * dt)
                w = (backlog / cap if cap > 0 else inf) + 0.5 * s
                p_late, w_mean = 1.0 if w > late_s else 0.0, w
                waiting = max(1, round(backlog))
                util = 1.0 if ready else 0.0
                in_use = min(ready, round(lam * s))
                over_n.append(arrivals)
                over_w.append(w)
                waited = arrivals
            else:
                key = (ready, lam)
                p_wait, p_late, w_mean, p_waiting, util, in_use = self._state(ready, lam)
                waiting = 1 if u_wait[k] < p_waiting else 0
                steady_arrivals[key] = steady_arrivals.get(key, 0.0) + arrivals
                waited = _binomial(int(arrivals), p_wait, u_waited[k])
            requests += arrivals
            late += arrivals * p_late
            waited_total += waited
            if waited and w_mean != inf:
                wait_sum += waited * w_mean
            size = ready + n_opening
            conn_seconds += size * dt
            if size > max_size:
                max_size = size
            # the policy decides at the end of the step, seeing the step's load
            self.t = t = t0 + dt
            load = PoolLoad(
                size, in_use, max(0, ready - in_use), waiting, util, int(arrivals), int(waited),
                w_mean if waited and w_mean != inf else 0.0, min_size, max_size_cfg,
                (ready if lam * s > ready else lam * s) * dt,  # busy: the offered load, unrounded
                lam * dt * s2,  # the squared holds of the step's requests, expected
            )  # fmt: skip
            new = decide(load).target  # clamped as clamp_target does, without its call
            new = max_size_cfg if new > max_size_cfg else min_size if new < min_size else new
            if waiting and new < 1:
                new = 1
            if new != target:
                resizes += 1
            target = new
            if record:
                rows.append((t, size, in_use, waiting, util, target, lam))
            if size > target:  # close idle connections above the target
                drop = min(size - target, max(0, ready - in_use))
                ready -= drop
            elif size < target:
                n = target - size
                opening.append((t + connect_s, n))
                n_opening += n
                opened += n
        tails: list[tuple[float, float, float]] = []
        for key, arrived in steady_arrivals.items():
            p_wait, _, w_mean, *_ = self._states[key]
            tails.append((arrived, p_wait, 1.0 / w_mean if w_mean > 0 else inf))
        tails += [(n, 1.0, -w) for n, w in zip(over_n, over_w, strict=True)]
        summary = {
            "requests": requests,
            "late": late,
            "late_share": late / requests if requests else 0.0,
            "waited_share": waited_total / requests if requests else 0.0,
            "wait_p99_ms": _mixture_quantile(tails, 0.99) * 1000,
            "wait_mean_ms": wait_sum / requests * 1000 if requests else 0.0,
            "connection_hours": conn_seconds / 3600,
            "max_size": float(max_size),
            "opened": float(opened),
            "resizes": float(resizes),
            "events": float(steps - count_from),
        }
        self.result = PoolRun("fluid", summary, _series(rows))


def _binomial(n: int, p: float, u: float) -> int:
    """A Binomial(n, p) draw by inversion of the uniform ``u`` (exact; a few steps while n*p
    is small, as it is for a pool that keeps up)."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    q = 1.0 - p
    pk = q**n
    cdf = pk
    k = 0
    ratio = p / q
    while u > cdf and k < n:
        pk *= (n - k) / (k + 1) * ratio
        k += 1
        cdf += pk
    return k


def _mixture_quantile(tails: list[tuple[float, float, float]], q: float) -> float:
    """The ``q`` quantile of the wait over all steps: each step (or group of steps in one
    state) is a point mass at 0 plus an exponential tail (``(arrivals, P(wait), rate)``), or a
    fixed wait (rate < 0: ``-wait``)."""
    if not tails:
        return 0.0
    arr = np.array(tails)
    n, pw, rate = arr[:, 0], arr[:, 1], arr[:, 2]
    total = n.sum()
    if total <= 0:
        return 0.0
    fixed = rate < 0

    def exceed(t: float) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            tail = np.where(fixed, (-rate > t).astype(float), pw * np.exp(-np.abs(rate) * t))
        return float((n * tail).sum() / total)

    if exceed(0.0) <= 1 - q:
        return 0.0
    lo, hi = 0.0, 1e-3
    while exceed(hi) > 1 - q and hi < 1e6:
        hi *= 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if exceed(mid) > 1 - q else (lo, mid)
    return hi
