"""What a learning pool counts, kept in the database and shared by a fleet: :class:`TrafficLearner`.

A Store whose pool sizes itself with :class:`~tiered.pool.learning.Learning` runs one of these:

* every ``heartbeat_s`` (a background task, never a request): the hours the pool completed are
  written to ``pool_traffic`` (one row per instance and hour) and this instance's heartbeat to
  ``pool_instances``, in one transaction; a process killed before it loses at most the hours
  not yet written (the current one, and those completed since the last heartbeat);
* at start, when the table holds history, and then every ``refit_every_s``: the fleet's history
  (every instance's hours, summed per hour) and the count of live instances are read, and the
  plan is made on a worker thread (:func:`~tiered.forecast.planner.plan_from_history`: model
  selection, calibration and Erlang C are CPU work) and installed in the policy;
* at close: the rest of the current hour is written and the heartbeat removed, so the fleet
  counts this instance out at once.

A read-only Store (``StoreConfig(read_only=True)`` or a read-only token) reads the history and
plans from it, and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from tiered.db import statements as q
from tiered.db.database import Database
from tiered.db.driver import as_int
from tiered.errors import ConfigError, DatabaseError, TieredError
from tiered.pool.learning import Interval, Learning, LearntPlan

__all__ = ["TrafficLearner", "attach", "default_instance"]

log = logging.getLogger(__name__)


def default_instance() -> str:
    """Host, process id and a random suffix: a restarted process is a new instance."""
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{secrets.token_hex(3)}"


async def attach(db: Database) -> TrafficLearner | None:
    """The learner of ``db``'s pool, started, when its sizing is :class:`Learning`; else
    ``None``. Raises :class:`ConfigError` when the planner's extra is not installed."""
    policy = db.pool.sizing
    if not isinstance(policy, Learning):
        return None
    if importlib.util.find_spec("scipy") is None:  # tiered.forecast's models
        raise ConfigError(
            "a Learning pool plans with tiered.forecast: pip install 'tiered[analysis]'"
        )
    learner = TrafficLearner(
        db, policy, writable=db.read_only is None, max_size=db.pool.config.max_size
    )
    await learner.start()
    return learner


class TrafficLearner:
    """Persists a :class:`Learning` pool's hours and heartbeats; refits its plan from the
    fleet's history. See the module docstring. :meth:`tick` is one pass (the background task
    calls it every ``heartbeat_s``; tests call it on a virtual clock)."""

    def __init__(
        self,
        db: Database,
        policy: Learning,
        *,
        writable: bool,
        max_size: int,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.policy = policy
        self.fleet = policy.fleet
        self.instance = self.fleet.instance or default_instance()
        self.writable = writable
        self.max_size = max_size
        self._sleep = sleep
        self.clock = policy.clock
        self.started = self.clock()
        self.next_refit = self.started
        self.written_hours = 0
        self.refits = 0
        self.live = 1
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The first heartbeat, a plan from the history if there is one, and the task."""
        await self.tick()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self._sleep(self.fleet.heartbeat_s)
            try:
                await self.tick()
            except TieredError as e:  # the database is down: the next pass retries
                self.errors += 1
                log.warning("traffic learner %s: %s", self.instance, e)

    async def tick(self) -> None:
        """Write what was completed and the heartbeat; refit when it is due."""
        now = self.clock()
        if self.writable:
            await self._write(self.policy.log.pop_completed(), now)
        if now >= self.next_refit:
            await self.refit(now)

    async def _write(self, hours: list[Interval], now: float, *, leaving: bool = False) -> None:
        steps: list[tuple[Any, list[Any]]] = [
            (q.TRAFFIC_ADD, [self.instance, int(iv.start), iv.requests, iv.busy_s, iv.hold_sq_s])
            for iv in hours  # a quiet hour too: zero is not "missing" (down)
        ]
        if leaving:
            steps.append((q.INSTANCE_GONE, [self.instance]))
        else:
            steps.append((q.HEARTBEAT, [self.instance, int(self.started), int(now)]))
        try:
            await self.db.write(steps)  # type: ignore[arg-type]
        except BaseException:
            # not written: counted again at the next pass (the log keeps no copy, so put back)
            self.policy.log.completed.extendleft(reversed(hours))
            raise
        self.written_hours += len(steps) - 1

    async def history(self, now: float) -> tuple[list[Interval], int]:
        """The fleet's hours of the last ``history_days`` and the live instances (this one
        counted even when it writes no heartbeat)."""
        since = int(now - self.fleet.history_days * 86400)
        stmt = q.TRAFFIC_SINCE
        while True:
            try:  # both in one request to the primary
                rows, live_rows = await self.db.read_many([
                    (stmt, [since]),
                    (q.LIVE_INSTANCES, [int(now - self.fleet.live_after_s)]),
                ])  # fmt: skip
                break
            except DatabaseError as e:
                # a read-only store on an older schema: no table yet, or no squared holds
                if "no such table" in str(e).lower():
                    return [], 1
                if "no such column" not in str(e).lower() or stmt is q.TRAFFIC_SINCE_V3:
                    raise
                stmt = q.TRAFFIC_SINCE_V3
        live = {str(r[0]) for r in live_rows} | {self.instance}
        hours = [
            Interval(float(as_int(r[1])), as_int(r[2]), float(r[3]), float(r[4] or 0.0))  # type: ignore[arg-type]
            for r in rows
        ]
        return hours, len(live)

    async def refit(self, now: float | None = None) -> LearntPlan:
        """Read the fleet's history, make the plan on a worker thread, install it."""
        from tiered.forecast.planner import plan_from_history  # numpy, polars, scipy

        now = self.clock() if now is None else now
        hours, self.live = await self.history(now)
        stats = self.db.pool.get_stats()
        connect_s = (
            stats["connections_ms"] / stats["connections_num"] / 1000
            if stats.get("connections_num")
            else 0.05
        )
        try:
            plan = await asyncio.to_thread(
                plan_from_history,
                hours,
                now=now,
                connect_s=connect_s,
                instances=self.live,
                server_limit=self.fleet.server_limit,
                horizon_h=self.fleet.horizon_h,
                max_size=self.max_size,
            )
        except Exception as e:  # a planner defect must never take the pool down: reactive
            self.errors += 1
            log.exception("traffic learner %s: planning failed", self.instance)
            plan = LearntPlan(None, now, f"the planner failed ({type(e).__name__}: {e})")
        self.policy.install(plan)
        self.refits += 1
        self.next_refit = now + self.fleet.refit_every_s
        return plan

    async def close(self) -> None:
        """Stop the task; write the rest of the hour and leave the fleet (if writable)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self.writable:
            return
        log_ = self.policy.log
        rest = log_.pop_completed()
        cur = log_.take_current()
        if cur is not None:
            rest.append(cur)
        try:
            await self._write(rest, self.clock(), leaving=True)
        except TieredError as e:
            log.warning("traffic learner %s: the last hours were not written: %s", self.instance, e)

    def get_stats(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "writable": self.writable,
            "live_instances": self.live,
            "hours_written": self.written_hours,
            "refits": self.refits,
            "next_refit": self.next_refit,
            "errors": self.errors,
            **self.policy.get_stats(),
        }
