"""What keeps concurrent reads and writes of one key straight: versions (a read that started
before a write never installs its stale value) and single-flight loads (concurrent misses of one
key share one load)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight", "Versions"]

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


class SingleFlight(Generic[T]):
    """Concurrent callers of one key share one load.

    The first caller runs the load itself, in its own task: no task is made and nothing is
    scheduled for a caller that is alone, so a miss waits for nothing but its load. Callers that
    come while it runs wait on a future the first caller completes. If the first caller is
    cancelled, its load is cancelled with it and the others do not see that: the first of them
    to wake runs the load again, and the rest join it."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, tuple[int, asyncio.Future[T]]] = {}
        self.loads = 0
        self.joined = 0

    async def run(
        self,
        key: Hashable,
        token: int,
        usable: Callable[[int], bool],
        load: Callable[[], Awaitable[T]],
    ) -> T:
        while True:
            flight = self._flights.get(key)
            if flight is None or not usable(flight[0]):
                break
            self.joined += 1
            joined = flight[1]
            try:
                return await asyncio.shield(joined)
            except asyncio.CancelledError:
                if not joined.cancelled():
                    raise  # this caller was cancelled
                # the first caller was cancelled (and its load): load again, or join who does
        self.loads += 1
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._flights[key] = (token, future)
        try:
            value = await load()
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(e)
                future.exception()  # retrieved: a failure nobody joined is not "never retrieved"
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if self._flights.get(key, (0, None))[1] is future:
                del self._flights[key]
