"""The pool's rules, with no I/O: who gets a connection, when to open or close one, what size to
aim for. :class:`~tiered.pool.Pool` drives this object with real connections and asyncio
futures; the simulator (:mod:`tiered.sim.poolmodel`) drives the very same object on a virtual clock
with tokens, so the two cannot drift apart.

The rules:

* **Lend LIFO.** A free connection goes to the first waiter, else on top of the idle stack; a
  borrower takes the top of the stack (a few hot connections serve a light load, the rest age
  out).
* **Queue FIFO.** A borrower that finds nothing idle waits; a queued request makes the pool
  consult its policy at once (not only at the next tick) and open what the target asks -- at
  least one connection while anyone waits.
* **Close above target.** A returned connection is closed instead of kept when the pool is
  above ``max(target, min_size)`` plus the queue's needs; at a maintenance tick, idle
  connections beyond the target close, least recently used first.
* **Size by policy.** :meth:`consult` gives the policy a :class:`~tiered.pool.sizing.PoolLoad`
  (time-weighted utilization since the last consultation, requests, waits) and clamps its
  target to ``[min_size, max_size]``.

Methods that change the counts integrate utilization first (:meth:`account`), reading the
injected ``clock`` once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from tiered.pool.sizing import Decision, PoolLoad, SizingPolicy

__all__ = ["PoolState", "clamp_target"]

S = TypeVar("S", bound=Hashable)  # a connection (slot), as the driver of the state knows it
W = TypeVar("W")  # a waiting request


def clamp_target(policy: SizingPolicy, load: PoolLoad, min_size: int, max_size: int) -> Decision:
    """The policy's decision for ``load``, its target clamped to ``[min_size, max_size]``."""
    d = policy.decide(load)
    target = min(max_size, max(min_size, d.target))
    return d if target == d.target else Decision(target, d.reason)


class PoolState(Generic[S, W]):
    """Counts, idle stack, lent set, queue and target of one pool (see the module docstring).

    ``reuse=False``: every borrow opens a new connection and every return closes it, under the
    same ``max_size`` bound (the no-pooling baseline).
    """

    def __init__(
        self,
        *,
        min_size: int,
        max_size: int,
        sizing: SizingPolicy,
        clock: Callable[[], float],
        reuse: bool = True,
    ) -> None:
        self.min_size, self.max_size = min_size, max_size
        self.sizing = sizing
        self.reuse = reuse
        self._clock = clock
        self.idle: list[S] = []  # a stack: the most recently returned on top
        self.lent: set[S] = set()
        self.opening = 0
        self.waiters: deque[W] = deque()
        self.target = max(min_size, 1) if min_size else 0
        self.resizes = 0
        self.last_decision = Decision(self.target, "initial")
        # utilization between consultations: integrals of in-use and size over time
        self._acc_t = clock()
        self._acc_busy = self._acc_size = 0.0
        #: connection-seconds since the start (the integral of size)
        self.conn_seconds = 0.0
        self._tick_requests = self._tick_waited = 0
        self._tick_wait_sum = 0.0
        self._tick_hold_sq = 0.0

    @property
    def size(self) -> int:
        """Connections open or opening (idle + lent + opening)."""
        return len(self.idle) + len(self.lent) + self.opening

    # -- accounting ------------------------------------------------------------------------------

    def account(self) -> None:
        """Integrate in-use and size up to now (call before any count changes)."""
        now = self._clock()
        dt = now - self._acc_t
        if dt > 0:
            size = self.size
            self._acc_busy += len(self.lent) * dt
            self._acc_size += size * dt
            self.conn_seconds += size * dt
            self._acc_t = now

    def waited(self, seconds: float) -> None:
        """A borrower that queued got a connection (or gave up) after ``seconds``."""
        self._tick_waited += 1
        self._tick_wait_sum += seconds

    def load(self) -> PoolLoad:
        """The load since the previous call (what a sizing policy sees); starts a new period."""
        self.account()
        util = (
            self._acc_busy / self._acc_size if self._acc_size > 0 else (1.0 if self.lent else 0.0)
        )
        load = PoolLoad(
            size=self.size,
            in_use=len(self.lent),
            idle=len(self.idle),
            waiting=len(self.waiters),
            utilization=min(1.0, util),
            requests=self._tick_requests,
            waited=self._tick_waited,
            wait_mean=self._tick_wait_sum / self._tick_waited if self._tick_waited else 0.0,
            min_size=self.min_size,
            max_size=self.max_size,
            busy_s=self._acc_busy,
            hold_sq_s=self._tick_hold_sq,
        )
        self._acc_busy = self._acc_size = 0.0
        self._tick_requests = self._tick_waited = 0
        self._tick_wait_sum = self._tick_hold_sq = 0.0
        return load

    def consult(self) -> tuple[PoolLoad, Decision]:
        """Ask the policy for a target with the load since the last consultation."""
        load = self.load()
        d = clamp_target(self.sizing, load, self.min_size, self.max_size)
        if d.target != self.target:
            self.resizes += 1
        self.target = d.target
        self.last_decision = d
        return load, d

    # -- lending ---------------------------------------------------------------------------------

    def request(self) -> S | None:
        """A borrow is asked for: the top of the idle stack, now lent (``None``: nothing idle;
        queue the borrower in :attr:`waiters`)."""
        self._tick_requests += 1
        return self.take_idle()

    def take_idle(self) -> S | None:
        """The top of the idle stack, now counted as lent (``None``: nothing idle)."""
        if not self.idle:
            return None
        self.account()
        slot = self.idle.pop()
        self.lent.add(slot)
        return slot

    def put(self, slot: S, alive: Callable[[W], bool] = lambda w: True) -> W | None:
        """A free connection: to the first waiter still ``alive`` (returned, with the slot now
        lent to it), else onto the idle stack (``None``)."""
        self.account()
        while self.waiters:
            w = self.waiters.popleft()
            if alive(w):
                self.lent.add(slot)
                return w
        self.idle.append(slot)
        return None

    def release(
        self,
        slot: S,
        reusable: bool,
        alive: Callable[[W], bool] = lambda w: True,
        held: float = 0.0,
    ) -> tuple[bool, W | None]:
        """A lent connection came back (``reusable``: not broken, not stale) after its
        borrower ``held`` it that many seconds. Returns whether it is kept and, if kept, the
        waiter it went to (``None``: onto the idle stack); a connection not kept is for the
        caller to close (the pool is above its target and the queue's needs, or does not
        reuse). One accounting for the whole hand-over: this is the hot path of every call."""
        self.account()
        self._tick_hold_sq += held * held
        lent = self.lent
        lent.discard(slot)
        if not (
            reusable
            and self.reuse
            and len(self.idle) + len(lent) + self.opening
            <= max(self.target, self.min_size) + len(self.waiters)
        ):
            return False, None
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if alive(w):
                lent.add(slot)
                return True, w
        self.idle.append(slot)
        return True, None

    def forget(self, slot: S) -> None:
        """A lent connection is gone (failed, or closed by its borrower)."""
        self.account()
        self.lent.discard(slot)

    # -- opening and closing ---------------------------------------------------------------------

    def to_open(self) -> int:
        """How many connections to open now to reach the target (at least one while anyone
        waits; without reuse, one per waiter not yet served), counted as opening."""
        if self.reuse:
            want = max(self.target, self.min_size, 1 if self.waiters else 0)
            missing = want - self.size
        else:
            missing = min(len(self.waiters) - self.opening, self.max_size - self.size)
        if missing <= 0:
            return 0
        self.account()
        self.opening += missing
        return missing

    def begin_open(self) -> None:
        """One connection starts opening outside :meth:`to_open` (a reconnect, a warm-up)."""
        self.account()
        self.opening += 1

    def opened(self) -> None:
        """A connection counted as opening finished opening (then :meth:`put` it) or failed."""
        self.account()
        self.opening -= 1

    def shrink(self) -> list[S]:
        """Idle connections beyond the target, least recently used first, taken off the stack
        (the caller closes them)."""
        out: list[S] = []
        self.account()
        while self.size > self.target and self.idle:
            out.append(self.idle.pop(0))
        return out
