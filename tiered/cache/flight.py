"""What keeps concurrent reads and writes of one key straight: versions (a read that started
before a write never installs its stale value) and single-flight loads (concurrent misses of one
key share one load)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Flight", "SingleFlight", "Versions"]

T = TypeVar("T")


class Versions:
    """Per-key write versions, bounded to ``max_tracked`` keys (see the module docstring)."""

    def __init__(self, max_tracked: int = 100_000) -> None:
        self.seq = 0
        self.floor = 0
        self.max_tracked = max_tracked
        self._last: OrderedDict[Hashable, int] = OrderedDict()

    def token(self) -> int:
        return self.seq

    def bump(self, key: Hashable) -> int:
        self.seq += 1
        self._last[key] = self.seq
        self._last.move_to_end(key)
        if len(self._last) > self.max_tracked:
            _, old = self._last.popitem(last=False)
            self.floor = max(self.floor, old)
        return self.seq

    def valid(self, key: Hashable, token: int) -> bool:
        """True if ``key`` has not been written since ``token`` was taken."""
        last = self._last.get(key)
        return (self.floor if last is None else last) <= token


class Flight(Generic[T]):
    """One load in flight: the version it started at, and the future its joiners wait on
    (made by the first joiner: a load nobody joins makes none)."""

    __slots__ = ("future", "token")

    def __init__(self, token: int) -> None:
        self.token = token
        self.future: asyncio.Future[T] | None = None


class SingleFlight(Generic[T]):
    """Concurrent callers of one key share one load.

    The first caller runs the load itself, in its own task: no task, no future and nothing
    scheduled for a caller that is alone, so a miss waits for nothing but its load. Callers that
    come while it runs wait on a future (made by the first of them) that the first caller
    completes. If the first caller is cancelled, its load is cancelled with it and the others do
    not see that: the first of them to wake runs the load again, and the rest join it.

    :meth:`run` does all of it; a caller with its own fast path leads inline instead: it takes
    :meth:`joinable` (``None``: lead), :meth:`lead` before its load and :meth:`land` after."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, Flight[T]] = {}
        self.loads = 0
        self.joined = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._flights

    def joinable(self, key: Hashable, usable: Callable[[int], bool]) -> Flight[T] | None:
        """The flight of ``key`` a caller whose version check is ``usable`` may join."""
        flight = self._flights.get(key)
        return flight if flight is not None and usable(flight.token) else None

    def lead(self, key: Hashable, token: int) -> Flight[T]:
        """Start the load of ``key`` (version ``token``) in the caller; :meth:`land` ends it."""
        self.loads += 1
        flight: Flight[T] = Flight(token)
        self._flights[key] = flight
        return flight

    def land(
        self, key: Hashable, flight: Flight[T], value: T | None, error: BaseException | None
    ) -> None:
        """End a load led with :meth:`lead`: its joiners get ``value``, or ``error`` (a cancelled
        load cancels their future: they load again)."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        future = flight.future
        if future is None:
            return
        if error is None:
            future.set_result(value)  # type: ignore[arg-type]  # T when the load succeeded
        elif isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)
            future.exception()  # retrieved: a failure nobody waits for is not "never retrieved"

    async def run(
        self,
        key: Hashable,
        token: int,
        usable: Callable[[int], bool],
        load: Callable[[], Awaitable[T]],
    ) -> T:
        while True:
            flight = self.joinable(key, usable)
            if flight is None:
                break
            self.joined += 1
            joined = flight.future
            if joined is None:
                joined = flight.future = asyncio.get_running_loop().create_future()
            try:
                return await asyncio.shield(joined)
            except asyncio.CancelledError:
                if not joined.cancelled():
                    raise  # this caller was cancelled
                # the first caller was cancelled (and its load): load again, or join who does
        mine = self.lead(key, token)
        try:
            value = await load()
        except BaseException as e:
            self.land(key, mine, None, e)
            raise
        self.land(key, mine, value, None)
        return value
