"""How the Store reads: from a node that has its writes, and coherent with other processes.

A read goes to a node that has this Store's writes and everything the cache's change feed has
seen (the router's rule; the primary without replicas). Before the cache serves anything, the
change log is polled if the staleness bound says so. A read whose poll is due and whose answer
is not cached sends the poll and the read in one request (:meth:`Reads.coherent`): a miss over a
network then costs one round trip, not two. The read comes after the poll in that request, so
it is at least as new as what the poll saw; a hit still polls first (it has no read to ride).
A folded read of a record (or query) that the poll itself shows changed is returned but not
cached, as any read that races an invalidation (the cache's versioned fills); the next read
caches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TypeVar

from tiered.cache.layer import CacheLayer
from tiered.db import statements as q
from tiered.db.database import Database
from tiered.db.driver import Row, Statement, Value, as_int
from tiered.errors import DatabaseUnavailable

__all__ = ["Reads"]

T = TypeVar("T")
BeforeHit = Callable[[], Awaitable[None]]

#: set while a read whose change-log poll is due runs: a miss sends the poll with its read
_FOLD: ContextVar[bool] = ContextVar("tiered_fold_poll", default=False)


class Reads:
    def __init__(self, db: Database, cache: CacheLayer) -> None:
        self._db = db
        self._cache = cache

    async def rows(
        self, stmt: Statement, args: Sequence[Value], *, primary: bool = False
    ) -> list[Row]:
        """Rows of a read, from a node that has this store's writes and everything the cache's
        change feed has seen (or from the primary); with a due poll folded in (see above)."""
        cache = self._cache
        if _FOLD.get() and not primary and cache.poll_due():
            started = cache.timer()
            changes, rows = await self._db.read_many(
                [(q.CHANGES_SINCE, (cache.last_change, 1000)), (stmt, args)]
            )
            if not cache.apply_changes(changes, started, folded=True):
                await self.sync()  # more than a page of changes: the regular poll reads on
            return rows
        return await self._db.read(stmt, args, primary=primary, need=cache.last_change)

    async def changes(self, since: int) -> list[Row]:
        # the feed reads the primary: it is the floor replicas are measured against
        try:
            rows = await self.rows(q.CHANGES_SINCE, (since, 1000), primary=True)
        except DatabaseUnavailable:
            # the primary is down: with an embedded replica, its feed is as new as every read
            # it serves, so the cache stays coherent with them (bounded by its last sync)
            local = await self._db.read_local(q.CHANGES_SINCE, (since, 1000))
            if local is None:
                raise
            return local
        if rows:
            self._db.note_primary(as_int(rows[-1][0]))
        return rows

    async def sync(self) -> None:
        """Poll the change log now if the staleness bound says so."""
        self._db.check_open()
        await self._cache.sync(self.changes)

    async def coherent(
        self, read: Callable[[Callable[[], Awaitable[None]] | None], Awaitable[T]]
    ) -> T:
        """One cached read, ``read(before_hit)``, kept coherent: the poll runs first if due;
        or (one node serving both, the poll due) a miss folds it into its read and a hit
        awaits ``before_hit`` first. (The hit path: one clock reading, no poll, no context.)"""
        db = self._db
        db.check_open()
        if db.router is not None:
            await self._cache.sync(self.changes)
            return await read(None)
        if not self._cache.poll_due():
            return await read(None)
        token = _FOLD.set(True)
        try:
            return await read(self.sync)
        finally:
            _FOLD.reset(token)
