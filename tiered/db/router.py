"""Read/write splitting over a primary and read replicas, with read-your-writes.

A :class:`Router` holds one connection pool per node. Writes always go to the primary; the
:class:`~tiered.db.database.Database` sends reads here with the *position* they need, and the
router serves them from a replica that has it, or from the primary.

Position
    sqld replicates whole database pages, so a replica is a consistent snapshot of the primary
    at some point of its history. The Store's ``change_log`` (one row per write, appended by
    triggers in the writing transaction, ``seq`` strictly increasing) numbers those points: a
    node's *position* is its ``max(seq)``. After a write the Store reads the primary's position on
    the same connection; that is the position every later read of the Store needs
    (read-your-writes). The cache's change feed adds its own floor: a read that fills the cache
    must come from a node at least as new as the feed, or a change the feed already passed could
    be cached stale.

Checked reads
    A replica read is one round trip that runs ``SELECT max(seq) FROM change_log`` *before* the
    query. A replica only moves forward, so if that position is high enough the query's snapshot
    is too; if not, the answer is thrown away and the read goes to the primary (counted as
    ``stale``). Routing therefore never trusts a guess: positions learned by reads and by the
    health poll only decide which node to *try*.

Choice
    Among healthy replicas whose last known position is high enough (or whose knowledge is older
    than ``probe_after``), the one with the fewest outstanding reads, ties broken round-robin.
    None eligible: the primary.

Health and lag
    A replica read that fails with :class:`~tiered.errors.DatabaseUnavailable` (refused, reset,
    timed out after ``read_timeout``) marks the replica down and the read is retried on the
    primary at once, so a dead replica costs the caller one failed attempt, not an error. A down
    replica is probed again after ``retry_after`` seconds (doubling per failure up to
    ``max_retry_after``). The health poll (every ``health_interval`` seconds) reads every node's
    position; a replica's *lag* is how long ago the primary first had a position the replica
    still lacks, and a replica lagging more than ``max_lag`` gets no reads until it catches up.

Every time reading goes through the injectable ``timer`` (monotonic seconds).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tiered.db.driver import Connection, Result, Statement, Value
from tiered.db.statements import LAST_CHANGE
from tiered.errors import (
    ConfigError,
    DatabaseBusy,
    DatabaseError,
    DatabaseUnavailable,
    PoolClosed,
)
from tiered.metrics.phases import add_phase
from tiered.pool import Pool

__all__ = ["Node", "Router", "RouterConfig"]

log = logging.getLogger("tiered.router")

Phase = Callable[[str, float], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterConfig:
    """How reads are spread over replicas (see :mod:`tiered.db.router`).

    max_lag: seconds a replica may trail the primary and still serve reads.
    read_timeout: a replica read slower than this is abandoned and served by the primary.
    retry_after / max_retry_after: back-off before a failed replica is tried again.
    probe_after: a replica whose position was learned longer ago than this may be tried even if
        that position was too old (the checked read tells).
    health_interval: seconds between background position/health polls (``None``: no background
        task; call :meth:`Router.poll`).
    """

    max_lag: float = 1.0
    read_timeout: float = 2.0
    retry_after: float = 0.5
    max_retry_after: float = 10.0
    probe_after: float = 0.05
    health_interval: float | None = 0.25

    def __post_init__(self) -> None:
        for name in ("max_lag", "read_timeout", "retry_after", "max_retry_after"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"RouterConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.probe_after < 0:
            raise ConfigError(f"RouterConfig.probe_after must be >= 0, got {self.probe_after}")
        if self.health_interval is not None and not self.health_interval > 0:
            raise ConfigError("RouterConfig.health_interval must be > 0 or None")
        if self.max_retry_after < self.retry_after:
            raise ConfigError("RouterConfig.max_retry_after must be >= retry_after")


class Node:
    """One database node (the primary or a replica), its pool and what the router knows of it."""

    def __init__(self, name: str, pool: Pool[Connection], *, local: bool = False) -> None:
        self.name = name
        self.pool = pool
        self.local = local  # a local file (an embedded replica): any failure of it is its own
        self.position = 0  # highest change_log seq seen on this node
        self.seen_at = -float("inf")  # when position was last read (timer seconds)
        self.healthy = True
        self.down_until = -float("inf")
        self.failures = 0  # consecutive failures (back-off exponent)
        self.outstanding = 0
        self.lag = 0.0
        # counters
        self.reads = 0  # reads served
        self.stale = 0  # checked reads whose position was too old (served by the primary)
        self.errors = 0  # failed attempts (served by the primary)
        self.downs = 0  # times marked down
        self.last_error = ""  # type and code of the last failure (never a message: no secrets)

    def __repr__(self) -> str:
        state = "up" if self.healthy else "down"
        return (
            f"<Node {self.name} {state} position={self.position} lag={self.lag:.3f}s "
            f"outstanding={self.outstanding}>"
        )

    def get_stats(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "position": self.position,
            "lag_s": self.lag,
            "outstanding": self.outstanding,
            "reads": self.reads,
            "stale": self.stale,
            "errors": self.errors,
            "downs": self.downs,
            "last_error": self.last_error,
        }


class Router:
    """Routes the reads of one Store over ``replicas``; writes and fallbacks use ``primary``."""

    def __init__(
        self,
        primary: Pool[Connection],
        replicas: Sequence[tuple[str, Pool[Connection]]],
        *,
        config: RouterConfig | None = None,
        timer: Callable[[], float] = time.monotonic,
        phase: Phase = add_phase,
        local: Sequence[str] = (),
    ) -> None:
        """``local``: names of replicas that are local files (embedded replicas): a read of one
        that fails for any reason (a missing or corrupt file, not only a dropped link) marks it
        down and goes to the primary."""
        self.config = config or RouterConfig()
        self.primary = Node("primary", primary)
        self.replicas = [Node(name, pool, local=name in local) for name, pool in replicas]
        self._timer = timer
        self._phase = phase  # the running operation's phase context
        self._rr = 0
        # when the primary first reached each position we saw: (seq, timer) ascending
        self._history: deque[tuple[int, float]] = deque(maxlen=4096)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.primary_reads = 0  # reads served by the primary (no replica eligible, or fallback)
        self.fallbacks = 0  # reads a replica failed or was too stale for

    def __repr__(self) -> str:
        return f"<Router replicas={len(self.replicas)} primary_position={self.primary.position}>"

    # -- positions and lag ---------------------------------------------------------------------

    def note_primary(self, position: int) -> None:
        """The primary has reached ``position`` (after a write, a feed poll or a health poll)."""
        node = self.primary
        now = self._timer()
        if position > node.position:
            node.position = position
            self._history.append((position, now))
        node.seen_at = now

    def lag_of(self, position: int) -> float:
        """Seconds since the primary first had a position above ``position`` (0 if none)."""
        if position >= self.primary.position or not self._history:
            return 0.0
        i = bisect.bisect_right(self._history, position, key=lambda e: e[0])
        t = self._history[i][1] if i < len(self._history) else self._timer()
        return max(0.0, self._timer() - t)

    def _observe(self, node: Node, position: int) -> None:
        now = self._timer()
        node.position = max(node.position, position)
        node.seen_at = now
        node.lag = self.lag_of(node.position)
        if not node.healthy:
            log.info("replica %s is back (position %d)", node.name, node.position)
        node.healthy, node.failures = True, 0

    def _mark_down(self, node: Node, exc: BaseException) -> None:
        now = self._timer()
        node.errors += 1
        node.last_error = f"{type(exc).__name__}:{getattr(exc, 'code', '')}"
        node.failures += 1
        c = self.config
        node.down_until = now + min(c.max_retry_after, c.retry_after * 2 ** (node.failures - 1))
        if node.healthy:
            node.downs += 1
            log.warning(
                "replica %s marked down (%s); reads go to the primary", node.name, node.last_error
            )
        node.healthy = False

    # -- choosing ------------------------------------------------------------------------------

    def choose(self, need: int) -> Node | None:
        """The replica to try for a read needing ``need``, or ``None`` (use the primary)."""
        now = self._timer()
        c = self.config
        best: Node | None = None
        n = len(self.replicas)
        for k in range(n):
            node = self.replicas[(self._rr + k) % n]
            if not node.healthy and now < node.down_until:
                continue
            if node.healthy and node.lag > c.max_lag and node.position < self.primary.position:
                continue
            if node.position < need and now - node.seen_at < c.probe_after:
                continue
            if best is None or node.outstanding < best.outstanding:
                best = node
        if best is not None:
            self._rr = (self.replicas.index(best) + 1) % n
        return best

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, stmt: Statement, args: Sequence[Value], need: int) -> list[Any] | None:
        """Rows of ``stmt`` from a replica at position >= ``need``, or ``None`` when the caller
        must read from the primary (none eligible, the replica failed or was too stale)."""
        node = self.choose(need)
        if node is None:
            self.primary_reads += 1
            return None
        node.outstanding += 1
        t0 = time.perf_counter()
        t1 = t0
        try:
            async with asyncio.timeout(self.config.read_timeout):
                async with node.pool.connection() as conn:
                    t1 = time.perf_counter()
                    position_rows, result = await conn.execute_many(
                        [(LAST_CHANGE, ()), (stmt, args)]
                    )
        except DatabaseBusy:
            self.fallbacks += 1  # a locked replica is not a dead one
            self.primary_reads += 1
            return None
        except (DatabaseUnavailable, TimeoutError) as e:
            self._mark_down(node, e)
            self.fallbacks += 1
            self.primary_reads += 1
            return None
        except PoolClosed:
            raise
        except DatabaseError as e:
            if not node.local:
                raise
            self._mark_down(node, e)  # the local file is unusable: the primary serves
            self.fallbacks += 1
            self.primary_reads += 1
            return None
        finally:
            node.outstanding -= 1
            t2 = time.perf_counter()
            self._phase("acquire", t1 - t0)
            self._phase("round_trip", t2 - t1)
        position = int(position_rows.rows[0][0] or 0)
        self._observe(node, position)
        if position < need:
            node.stale += 1
            self.fallbacks += 1
            self.primary_reads += 1
            return None
        node.reads += 1
        return result.rows

    # -- health --------------------------------------------------------------------------------

    async def poll(self) -> None:
        """Read every node's position now (replicas down for their back-off are skipped)."""
        now = self._timer()
        await asyncio.gather(
            self._poll_primary(),
            *(self._poll(n) for n in self.replicas if n.healthy or now >= n.down_until),
        )

    async def refresh(self, name: str) -> None:
        """Read the position of the replica ``name`` now (after it synced: it may serve reads
        it could not a moment ago). Nothing once the router is closed (a sync that finishes
        while the Store closes)."""
        if self._closed:
            return
        await self._poll(next(n for n in self.replicas if n.name == name))

    async def _position(self, node: Node) -> int:
        async with asyncio.timeout(self.config.read_timeout):
            async with node.pool.connection() as conn:
                res: Result = await conn.execute(LAST_CHANGE)
        return int(res.rows[0][0] or 0)

    async def _poll_primary(self) -> None:
        with contextlib.suppress(DatabaseUnavailable, TimeoutError):
            self.note_primary(await self._position(self.primary))

    async def _poll(self, node: Node) -> None:
        try:
            position = await self._position(node)
        except (DatabaseUnavailable, TimeoutError) as e:
            self._mark_down(node, e)
            return
        self._observe(node, position)

    def start(self) -> None:
        """Start the background health poll (if ``health_interval`` is set)."""
        interval = self.config.health_interval
        if interval is not None and self._task is None and self.replicas:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(interval), name="tiered-router-health"
            )

    async def _loop(self, interval: float) -> None:
        while not self._closed:
            try:
                await self.poll()
            except PoolClosed:
                return
            except Exception:  # keep polling: one bad pass must not stop health checks
                log.exception("router health poll failed")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Stop the health poll and close the replicas' pools (the Store closes the primary's)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(n.pool.close() for n in self.replicas))

    def get_stats(self) -> dict[str, Any]:
        """Per-node stats and the router's counters."""
        return {
            "primary_position": self.primary.position,
            "primary_reads": self.primary_reads,
            "fallbacks": self.fallbacks,
            "replicas": {n.name: n.get_stats() for n in self.replicas},
        }
