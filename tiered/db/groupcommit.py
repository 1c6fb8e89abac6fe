"""Group commit: concurrent write transactions of one process merged into one.

SQLite admits one writer at a time. Writers that a client sends concurrently only queue inside
the server, each holding a connection that reads could use, and on sqld 0.24 that queue itself
misbehaves (a waiter that gives up its turn beside a checkpoint leaves a stale entry, and the
write lock then idles until the transaction timeout: every writer stalls for seconds). One
writer at a time avoids both, but alone it caps write throughput at one transaction per round
trip.

Group commit restores the throughput: writers queue here, and whoever gets the write gate next
(the *leader*) commits every queued transaction in one database transaction, one round trip.
Each writer's transaction stays all-or-nothing (a group is a superset of it in one
transaction), and writers are acknowledged only after the group's commit.

- Consecutive members that declare the same statement ``order`` and touch disjoint ``keys``
  (writes of one record kind: the Store declares both) are merged statement by statement: all
  their first statements, then all their second, ... Statements on different records commute,
  and each member's own steps keep their order, so the result equals running the members one
  after the other; on the embedded backend each statement's rows are then bound in one
  ``executemany``, as in a bulk write.
- If a group fails for a reason of its own statements (a constraint, a trigger's ``RAISE``), its
  members are committed again one by one, so only the faulty one fails.
- If the group's outcome is unknown (the connection dropped, a timeout:
  :class:`~tiered.errors.DatabaseUnavailable`), every member gets that error, exactly as it would
  have writing alone.
- A writer cancelled while queued is dropped from the queue; one cancelled while its group is in
  flight stops waiting, and the group (run in its own task) still commits or fails as a whole.
  Cancelling the leader does not cancel its group either.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Generic, TypeVar

from tiered.db.driver import Statement, Step, args_size, consume_result
from tiered.errors import DatabaseUnavailable, StoreClosed

R = TypeVar("R")

__all__ = ["GroupCommit", "WriteOrder", "merged"]


class WriteOrder:
    """Writes join the write queue in the order they were called, whatever each does first.

    A write prepares its steps before it joins the queue (encoding, which yields to the loop
    between slices of a large batch; registering an embedding model, a read) and may give up
    its turn meanwhile; a later write of the same record that prepared faster would otherwise
    join first and be overwritten by the older value. :meth:`take` (no await, as the call
    begins) draws a place; :meth:`turn` waits until every earlier write has joined (or given
    up); :meth:`joined` passes the turn on (call it, then join the queue before any await:
    the next write runs only when this one next suspends). A write that gives up passes the
    turn on only once its own predecessor has, so it never lets a later write overtake an
    earlier one."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: asyncio.Future[None] | None = None

    def take(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """(the previous write's place, this write's place)."""
        prev = self._last
        self._last = mine = asyncio.get_running_loop().create_future()
        return (None if prev is None or prev.done() else prev), mine

    async def behind(self) -> None:
        """For a write with nothing to prepare: wait until every earlier write has joined; the
        caller then joins (the write gate) before any await."""
        prev, mine = self.take()
        try:
            await self.turn(prev)
        finally:
            self.joined(prev, mine)

    @staticmethod
    async def turn(prev: asyncio.Future[None] | None) -> None:
        if prev is not None and not prev.done():
            await asyncio.wait((prev,))  # (a cancelled waiter does not cancel prev)

    @staticmethod
    def joined(prev: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        """Pass the turn on (after joining the queue, or when the write gives up)."""
        if mine.done():
            return
        if prev is None or prev.done():
            mine.set_result(None)
        else:  # gave up before its turn: the next one waits for the previous one still

            def passed_on(_: asyncio.Future[None]) -> None:
                if not mine.done():
                    mine.set_result(None)

            prev.add_done_callback(passed_on)


@dataclass(slots=True, eq=False)
class _Pending(Generic[R]):
    steps: Sequence[Step]
    size: int
    done: asyncio.Future[R]
    queued_at: float
    order: tuple[Statement, ...] = ()
    keys: frozenset[str] = frozenset()
    started_at: float | None = None  # when its group began committing
    abandoned: bool = False


@dataclass(slots=True)
class GroupStats:
    groups: int = 0
    transactions: int = 0
    largest: int = 0
    split: int = 0  # groups that failed and were committed again member by member

    def as_dict(self) -> dict[str, float]:
        return {
            "groups": self.groups,
            "transactions": self.transactions,
            "largest_group": self.largest,
            "mean_group": self.transactions / self.groups if self.groups else 0.0,
            "groups_split": self.split,
        }


@dataclass(slots=True)
class Committed(Generic[R]):
    """What a writer learns: its wait before its group started, and the group's result."""

    waited: float
    result: R


@dataclass
class GroupCommit(Generic[R]):
    """Merge concurrent write transactions; at most ``gate``'s value of groups run at once.

    ``commit(steps)`` runs one transaction on the database and returns a value every member of
    the group receives (the Store returns the group's phase times). ``max_bytes`` bounds a
    group's argument bytes (a single larger transaction still runs, alone); ``max_group`` its
    number of transactions (1: no grouping, each transaction commits alone).
    """

    commit: Callable[[list[Step]], Awaitable[R]]
    gate: asyncio.Semaphore
    max_bytes: int
    max_group: int | None = None
    counters: GroupStats = field(default_factory=GroupStats)
    _queue: deque[_Pending[R]] = field(default_factory=deque)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def submit(
        self,
        steps: Sequence[Step],
        order: tuple[Statement, ...] = (),
        keys: frozenset[str] = frozenset(),
    ) -> Committed[R]:
        """Commit ``steps`` as one transaction (possibly inside a larger group; ``order`` and
        ``keys``: see the module docstring)."""
        loop = asyncio.get_running_loop()
        size = sum(args_size(a) for _, a in steps)
        entry: _Pending[R] = _Pending(
            steps, size, loop.create_future(), perf_counter(), order, keys
        )
        self._queue.append(entry)
        try:
            while not entry.done.done():
                if entry.started_at is not None:
                    # in a group that is committing: wait for it (not for the gate)
                    await asyncio.shield(entry.done)
                    break
                await self.gate.acquire()
                if entry.started_at is not None or entry.done.done():
                    self.gate.release()  # another leader took this entry meanwhile
                    continue
                # the leader: commit the next group (its own entry is in it unless older ones
                # fill the group; then it loops and leads again). The group runs in a task of
                # its own, which releases the gate, so cancelling the leader cannot cancel it.
                task = asyncio.create_task(self._run(self._take()))
                self._tasks.add(task)
                task.add_done_callback(self._finished)
                await asyncio.wait([task])
        except asyncio.CancelledError:
            if entry.started_at is None:
                entry.abandoned = True
            raise
        assert entry.started_at is not None
        return Committed(entry.started_at - entry.queued_at, entry.done.result())

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.gate.release()

    def _take(self) -> list[_Pending[R]]:
        """The queued transactions of the next group, oldest first, within ``max_bytes``."""
        group: list[_Pending[R]] = []
        size = 0
        now = perf_counter()
        queue = self._queue
        while queue:
            e = queue[0]
            if e.abandoned:
                queue.popleft()
                continue
            if group and (size + e.size > self.max_bytes or len(group) == self.max_group):
                break
            queue.popleft()
            e.started_at = now
            group.append(e)
            size += e.size
        return group

    async def _run(self, group: list[_Pending[R]]) -> None:
        if not group:  # nothing to commit (defensive: a leader takes at least one)
            return
        self.counters.groups += 1
        self.counters.transactions += len(group)
        self.counters.largest = max(self.counters.largest, len(group))
        try:
            result = await self.commit(merged(group))
        except DatabaseUnavailable as e:
            _fail(group, e)  # outcome unknown: each member learns it as it would alone
        except asyncio.CancelledError:
            _fail(group, DatabaseUnavailable("the store closed while a write was committing"))
            raise
        except Exception as e:
            if len(group) == 1:
                _fail(group, e)
                return
            self.counters.split += 1
            for member in group:
                try:
                    _settle(member, await self.commit(list(member.steps)))
                except asyncio.CancelledError:
                    _fail([member], DatabaseUnavailable("the store closed during a write"))
                    raise
                except Exception as err:
                    _fail([member], err)
        else:
            for member in group:
                _settle(member, result)

    async def close(self) -> None:
        """Fail queued transactions (:class:`StoreClosed`: nothing was sent) and cancel groups in
        flight (:class:`DatabaseUnavailable`: they may have committed). The Store is closing."""
        while self._queue:
            e = self._queue.popleft()
            if not e.done.done():
                e.started_at = perf_counter()
                e.done.set_exception(StoreClosed("the store closed before this write was sent"))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def merged(group: Sequence[_Pending[Any]]) -> list[Step]:
    """The steps of a group's transaction: its members in order, each run of consecutive
    members with one declared ``order`` and pairwise disjoint ``keys`` merged statement by
    statement (a member whose steps do not follow its ``order`` is never merged)."""
    if len(group) == 1:
        return list(group[0].steps)
    out: list[Step] = []
    i, n = 0, len(group)
    while i < n:
        first = group[i]
        j = i + 1
        if first.order and _follows(first):
            seen = set(first.keys)
            while j < n:
                e = group[j]
                if e.order != first.order or not seen.isdisjoint(e.keys) or not _follows(e):
                    break
                seen |= e.keys
                j += 1
        if j - i == 1:
            out.extend(first.steps)
        else:
            rank = {stmt: k for k, stmt in enumerate(first.order)}
            run = [s for e in group[i:j] for s in e.steps]
            run.sort(key=lambda s: rank[s[0]])  # stable: within a statement, members in order
            out.extend(run)
        i = j
    return out


def _follows(e: _Pending[Any]) -> bool:
    """Whether ``e``'s steps use only its declared statements, in their declared order."""
    rank = {stmt: k for k, stmt in enumerate(e.order)}
    last = 0
    for stmt, _ in e.steps:
        k = rank.get(stmt)
        if k is None or k < last:
            return False
        last = k
    return True


def _settle(entry: _Pending[R], result: R) -> None:
    if not entry.done.done():
        entry.done.set_result(result)


def _fail(group: list[_Pending[R]], error: BaseException) -> None:
    for e in group:
        if not e.done.done():
            e.done.set_exception(error)
            # a member that stopped waiting (cancelled) never retrieves it
            e.done.add_done_callback(consume_result)
