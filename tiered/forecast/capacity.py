"""Capacity planning: how many connections a forecast needs, as a pool schedule.

A pool of ``c`` connections serving requests that arrive at rate ``lam`` (per second) and hold a
connection for a mean ``s`` seconds is modelled as an **M/M/c** queue (Erlang C): offered load
``a = lam * s`` erlangs, utilisation ``rho = a / c < 1``, and

    C(c, a) = (a^c / c!) / ((1 - rho) * sum_{k<c} a^k / k! + a^c / c!)

is the probability that a request waits for a connection. A request that waits, waits an
exponential time of rate ``c/s - lam``, so ``P(W > t) = C(c, a) * exp(-(c - a) * t / s)``, and
the wait quantile ``q`` is ``max(0, s * ln(C / (1 - q)) / (c - a))``. C is computed with the
numerically stable Erlang B recursion ``B(k) = a B(k-1) / (k + a B(k-1))``,
``C = c B / (c - a (1 - B))``.

The M/M/c assumptions (Poisson arrivals within an interval, exponential holding times) are
approximations: hold times measured by the metrics layer are usually less variable than
exponential, which makes these figures conservative (Allen-Cunneen: waits scale with
``(ca^2 + cs^2) / 2``; ``service_cv`` applies that correction).

:func:`plan_pool` turns a forecast quantile of the hourly arrival rate into pool sizes per hour
(the smallest ``c`` meeting a wait target), a :class:`~tiered.pool.Schedule` with a pre-scale
lead time for warm-up, and the plan's expected connection-hours and SLO violations.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tiered.errors import ConfigError
from tiered.pool.sizing import Hybrid, Predictive, Reactive, Schedule

log = logging.getLogger("tiered.forecast")

__all__ = [
    "CapacityPlan",
    "erlang_b",
    "erlang_c",
    "plan_pool",
    "servers_needed",
    "wait_probability",
    "wait_quantile",
]


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of ``c`` servers offered ``a`` erlangs (M/M/c/c)."""
    if c < 0 or a < 0:
        raise ConfigError("erlang_b needs c >= 0 and a >= 0")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits, M/M/c with ``a`` erlangs offered (1 if ``a >= c``)."""
    if a <= 0:
        return 0.0
    if c <= a:
        return 1.0
    b = erlang_b(c, a)
    return c * b / (c - a * (1 - b))


def _cv_factor(service_cv: float) -> float:
    # Allen-Cunneen: Poisson arrivals (ca = 1) and service coefficient of variation cs
    return (1 + service_cv**2) / 2


def wait_probability(
    c: int, rate: float, service_s: float, t: float = 0.0, *, service_cv: float = 1.0
) -> float:
    """``P(wait > t)`` for ``c`` connections, ``rate`` requests/s, mean hold ``service_s``."""
    a = rate * service_s
    pw = erlang_c(c, a)
    if t <= 0 or pw >= 1.0:
        return pw
    return pw * math.exp(-(c - a) * t / (service_s * _cv_factor(service_cv)))


def wait_quantile(
    c: int, rate: float, service_s: float, q: float, *, service_cv: float = 1.0
) -> float:
    """The ``q`` quantile of the wait for a connection (inf when ``c`` cannot keep up)."""
    a = rate * service_s
    if c <= a:
        return math.inf if a > 0 else 0.0
    pw = erlang_c(c, a)
    if pw <= 1 - q:
        return 0.0
    return service_s * _cv_factor(service_cv) * math.log(pw / (1 - q)) / (c - a)


def servers_needed(
    rate: float,
    service_s: float,
    *,
    max_wait_s: float = 0.010,
    quantile: float = 0.99,
    service_cv: float = 1.0,
    min_size: int = 1,
    max_size: int = 10_000,
) -> int:
    """The fewest connections whose ``quantile`` wait is at most ``max_wait_s``."""
    if rate < 0 or service_s <= 0:
        raise ConfigError("servers_needed needs rate >= 0 and service_s > 0")
    c = max(min_size, math.floor(rate * service_s) + 1)
    while c < max_size:
        if wait_quantile(c, rate, service_s, quantile, service_cv=service_cv) <= max_wait_s:
            return c
        c += 1
    return max_size


@dataclass(frozen=True)
class CapacityPlan:
    """Pool sizes per interval, and what they are expected to cost and deliver."""

    starts: np.ndarray  # interval starts (seconds, in the clock of the pool's policy)
    sizes: np.ndarray  # connections per interval
    planned_rate: np.ndarray  # the forecast quantile planned for (requests/s)
    interval_s: float
    lead_time_s: float
    service_s: float
    max_wait_s: float
    quantile: float
    service_cv: float = 1.0  # the variation of service times the plan was made with
    capped: int = 0  # intervals that needed more than max_size connections (sized at max_size)

    @property
    def schedule(self) -> Schedule:
        return Schedule(zip(self.starts.tolist(), self.sizes.tolist(), strict=True))

    def connection_hours(self) -> float:
        return float(self.sizes.sum() * self.interval_s / 3600)

    def policy(self, clock: object = None, *, reactive: Reactive | None = None) -> Hybrid:
        """A :class:`Hybrid` policy: this schedule (pre-scaled ``lead_time_s`` early) as a
        floor, a reactive policy above it for what the forecast missed."""
        kw = {} if clock is None else {"clock": clock}
        pred = Predictive(self.schedule, lead_time=self.lead_time_s, **kw)  # type: ignore[arg-type]
        return Hybrid(pred, reactive)

    def evaluate(
        self, actual_rate: Sequence[float], *, service_cv: float | None = None
    ) -> dict[str, float]:
        """Expected outcome if the true rates were ``actual_rate`` (requests/s per interval):
        the share of requests waiting more than ``max_wait_s``, intervals whose ``quantile``
        wait misses the target, and connection-hours. ``service_cv`` defaults to the one the
        plan was made with (the same assumptions for making and judging it)."""
        if service_cv is None:
            service_cv = self.service_cv
        actual = np.asarray(actual_rate, dtype=float)
        if actual.shape != self.sizes.shape:
            raise ConfigError("actual_rate must have one value per planned interval")
        late, missed = np.zeros(actual.size), np.zeros(actual.size, dtype=bool)
        for i, (c, r) in enumerate(zip(self.sizes.tolist(), actual.tolist(), strict=True)):
            kw = {"service_cv": service_cv}
            late[i] = wait_probability(c, r, self.service_s, self.max_wait_s, **kw)
            missed[i] = wait_quantile(c, r, self.service_s, self.quantile, **kw) > self.max_wait_s
        requests = actual * self.interval_s
        return {
            "requests": float(requests.sum()),
            "late_share": float((late * requests).sum() / requests.sum())
            if requests.sum()
            else 0.0,
            "intervals_missing_slo": int(missed.sum()),
            "connection_hours": self.connection_hours(),
        }


def plan_pool(
    rate: Sequence[float],
    *,
    service_s: float,
    start_s: float = 0.0,
    interval_s: float = 3600.0,
    max_wait_s: float = 0.010,
    quantile: float = 0.99,
    service_cv: float = 1.0,
    connect_s: float = 0.05,
    warmup_s: float = 60.0,
    min_size: int = 1,
    max_size: int = 100,
) -> CapacityPlan:
    """Size the pool for each interval's planned arrival ``rate`` (requests/s, e.g. the 90 %
    forecast quantile of hourly requests / 3600) so the ``quantile`` wait for a connection is
    at most ``max_wait_s``. The lead time, ``connect_s + warmup_s``, is how early
    :class:`Predictive` reaches each rise (new connections opened and pinged before the load)."""
    r = np.asarray(rate, dtype=float)
    if r.ndim != 1 or r.size == 0 or not np.isfinite(r).all() or (r < 0).any():
        raise ConfigError("plan_pool needs a non-empty 1-D series of rates >= 0")
    if service_s <= 0 or interval_s <= 0 or not 0 < quantile < 1 or max_wait_s < 0:
        raise ConfigError("plan_pool needs service_s > 0, interval_s > 0, 0 < quantile < 1")
    needed = np.array([
        servers_needed(x, service_s, max_wait_s=max_wait_s, quantile=quantile,
                       service_cv=service_cv, min_size=min_size, max_size=max_size + 1)
        for x in r
    ])  # fmt: skip
    capped = int((needed > max_size).sum())
    if capped:
        log.warning(
            "pool plan: %d of %d intervals need more than max_size=%d connections; sized at "
            "max_size (their waits will miss the target)", capped, r.size, max_size,
        )  # fmt: skip
    sizes = np.minimum(needed, max_size)
    starts = start_s + interval_s * np.arange(r.size)
    return CapacityPlan(starts, sizes, r, interval_s, connect_s + warmup_s, service_s,
                        max_wait_s, quantile, service_cv, capped)  # fmt: skip
