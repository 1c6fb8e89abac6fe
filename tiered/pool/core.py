"""A keep-alive connection pool for every tiered backend.

Connections are lent one task at a time::

    async with pool.connection(timeout=2.0) as conn:
        await conn.execute(stmt, args)

The rules that decide who gets a connection and when one opens or closes (LIFO reuse, FIFO
queue, close above target, sizing by policy) are :class:`~tiered.pool.PoolState`'s, a pure object
the simulator drives too. This class does the I/O around them:

* **Health check on borrow**, skipped for a connection used or pinged in the last
  ``check_after`` seconds; a failed check closes that connection and the borrower moves on to the
  next (or a new one), so a dead socket never reaches the caller.
* **Keep-alive.** The maintenance task pings connections idle for ``keepalive`` seconds, so
  servers and proxies do not cut them (Hrana-over-HTTP streams on sqld expire after ~10 s idle;
  the default 5 s keeps well inside that).
* **Recycling.** A connection idle for ``max_idle`` seconds, or older than ``max_lifetime``
  (jittered down by up to ``lifetime_jitter``, so connections opened together do not all
  reconnect together), is closed at the next maintenance pass and replaced only as far as the
  sizing target asks.
* **Outages.** A failed connect puts the pool in an outage: borrowers that find no idle
  connection fail at once with :class:`DatabaseUnavailable` (the cause and how long it has
  lasted) instead of queueing on a dead server, and a background task reconnects with jittered
  exponential backoff (capped at ``backoff_max``) until ``reconnect_timeout``. The first success
  ends the outage and refills the pool. A connection that fails with
  :class:`DatabaseUnavailable` while lent is discarded, and idle ones are re-checked.
* **Cancellation-safe.** A task cancelled while waiting never takes a connection with it (a
  connection handed to it at that instant goes back); one cancelled while using a connection
  gives that connection up (closed, not reused: a request may still be in flight on it).
* **No reuse** (``reuse=False``): every borrow opens a new connection and every return closes
  it (the baseline that shows what pooling saves, ``tiered bench --layers``).

Every time reading goes through the injectable ``clock`` (monotonic seconds) and every pause
through ``sleep``, so tests drive :meth:`Pool.maintain` on a virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import polars as pl

from tiered.errors import (
    AuthError,
    DatabaseBusy,
    DatabaseUnavailable,
    PoolClosed,
    PoolExhausted,
    PoolTimeout,
    TieredError,
)
from tiered.metrics.histogram import Histogram
from tiered.pool.config import PoolConfig
from tiered.pool.sizing import Decision, Reactive, SizingPolicy
from tiered.pool.state import PoolState
from tiered.pool.stats import COUNTERS, PoolSample, series_frame

__all__ = ["Pool", "Poolable"]

log = logging.getLogger("tiered.pool")


class Poolable(Protocol):
    @property
    def closed(self) -> bool: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=Poolable)


class _Slot(Generic[C]):
    __slots__ = ("conn", "created", "expires", "gen", "last_checked", "last_used", "lent_at")

    def __init__(self, conn: C, now: float, expires: float, gen: int) -> None:
        self.conn = conn
        self.created = now
        self.expires = expires
        self.gen = gen
        self.last_used = now
        self.last_checked = now
        self.lent_at = now  # when its current borrower got it


class _Lease(Generic[C]):
    """``async with pool.connection()``: borrow on enter, give back (or discard) on exit."""

    __slots__ = ("_pool", "_slot", "_timeout")

    def __init__(self, pool: Pool[C], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._slot: _Slot[C] | None = None

    async def __aenter__(self) -> C:
        self._slot = await self._pool._acquire(self._timeout)
        return self._slot.conn

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            self._pool._release(slot, exc)


class Pool(Generic[C]):
    """Connections from ``factory`` (which opens one and proves it works), lent one at a time."""

    def __init__(
        self,
        factory: Callable[[], Awaitable[C]],
        config: PoolConfig | None = None,
        *,
        name: str = "pool",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        seed: int | None = None,
    ) -> None:
        """``config`` holds every setting (:class:`~tiered.pool.PoolConfig`), read from there
        while the pool runs; ``name`` labels its logs and errors; ``clock``/``sleep``/``seed``
        make it deterministic in tests."""
        cfg = config if config is not None else PoolConfig()
        self.config = cfg
        self.name = name
        #: the sizing policy in use (``config.sizing``, or reactive on this pool's clock)
        self.sizing: SizingPolicy = cfg.sizing if cfg.sizing is not None else Reactive(clock=clock)
        self._factory = factory
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)

        # the rules (who gets a connection, when to open or close one, the target) live in the
        # pure state object the simulator drives too; this class does the I/O around it
        self._state: PoolState[_Slot[C], asyncio.Future[_Slot[C]]] = PoolState(
            min_size=cfg.minimum,
            max_size=cfg.max_size,
            sizing=self.sizing,
            clock=clock,
            reuse=cfg.reuse,
        )
        self._idle = self._state.idle  # (the same list, set and deque: read-only aliases)
        self._lent = self._state.lent
        self._waiters = self._state.waiters
        self._gen = 0
        self._broken_at = -float("inf")
        self._closed = False
        self._opened = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: set[asyncio.Task[Any]] = set()
        self._maint_task: asyncio.Task[None] | None = None
        self._all_back: asyncio.Event | None = None  # set when the last lent one is back
        self._reconnect_task: asyncio.Task[None] | None = None
        # outage: (since, last error) while connects fail
        self._outage: tuple[float, TieredError] | None = None
        # stats
        self._stats = dict.fromkeys(COUNTERS, 0)
        self.wait_hist = Histogram()
        self.series: deque[PoolSample] = deque(maxlen=cfg.history)

    @property
    def last_decision(self) -> Decision:
        """The sizing policy's last decision (its target clamped to the pool's bounds)."""
        return self._state.last_decision

    @property
    def _target(self) -> int:
        return self._state.target

    # -- life cycle ------------------------------------------------------------------------------

    async def open(self, *, wait: bool = True, background: bool = True) -> None:
        """Open ``min_size`` connections (waiting for them with ``wait``) and start maintenance.

        With ``wait``, a failure to open the first connection raises (a wrong URL or token should
        fail at start-up, not at the first request).
        """
        if self._opened:
            return
        if self._closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        self._opened = True
        if wait and self.config.minimum:
            slots = await asyncio.gather(
                *(self._connect() for _ in range(self.config.minimum)), return_exceptions=True
            )
            errors = [s for s in slots if isinstance(s, BaseException)]
            for s in slots:
                if not isinstance(s, BaseException):
                    self._idle.append(s)
            if errors:
                await self.close()
                raise errors[0]
        if background:
            self._maint_task = asyncio.get_running_loop().create_task(
                self._maintenance_loop(), name=f"tiered-pool-{self.name}-maintenance"
            )
        self._consult()
        self._grow()

    async def close(self, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Refuse new requests, fail the queued ones, close idle connections, and close lent ones
        as they come back (or after ``timeout`` seconds). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(PoolClosed(f"pool {self.name!r} closed while waiting"))
        self._waiters.clear()
        tasks = [t for t in (self._maint_task, self._reconnect_task, *self._tasks) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        idle = self._idle[:]
        self._idle.clear()
        await self._close_all([s.conn for s in idle])
        if self._lent:
            self._all_back = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._all_back.wait()
        lent = list(self._lent)
        self._lent.clear()
        await self._close_all([s.conn for s in lent])
        if self._closing:  # connections discarded earlier, still closing
            await asyncio.wait(list(self._closing), timeout=timeout)

    async def drain(self) -> None:
        """Replace every connection: idle ones close now, lent ones when they come back, and the
        pool refills to its target with new connections (after a failover, a credential change,
        or a server upgrade)."""
        self._gen += 1
        self._state.account()
        idle = self._idle[:]
        self._idle.clear()
        await self._close_all([s.conn for s in idle])
        self._stats["connections_recycled"] += len(idle)
        self._grow()

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait(self) -> None:
        """Wait until the connections being opened (growth, warm-up) and closed are done."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> Pool[C]:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- borrowing -------------------------------------------------------------------------------

    def connection(self, timeout: float | None = None) -> _Lease[C]:
        """Borrow a connection for an ``async with`` block (``timeout``: the pool's default)."""
        return _Lease(self, timeout)

    acquire = connection

    async def _acquire(self, timeout: float | None) -> _Slot[C]:  # noqa: ASYNC109
        if self._closed:
            raise PoolClosed(f"pool {self.name!r} is closed")
        clock = self._clock
        t0 = clock()
        self._stats["requests_num"] += 1
        state = self._state
        slot = state.request()
        while slot is not None:
            now = clock()
            if (
                now - slot.last_checked > self.config.check_after
                or slot.last_checked < self._broken_at
            ) and not await self._check(slot):
                slot = state.take_idle()
                continue
            if self._closed:  # closed during the check
                state.forget(slot)
                self._idle.append(slot)
                raise PoolClosed(f"pool {self.name!r} is closed")
            self.wait_hist.record(now - t0)
            slot.lent_at = now
            return slot
        if self._outage is not None and not self._state.opening and not self._lent:
            # nothing can serve a queued request: fail now with the cause
            self._stats["requests_unavailable"] += 1
            since, err = self._outage
            self._ensure_reconnect()
            # yield once: a caller retrying in a tight loop must not starve the reconnect task
            await asyncio.sleep(0)
            raise DatabaseUnavailable(
                f"pool {self.name!r}: database unavailable for {clock() - since:.1f}s "
                f"(reconnecting): {err}",
                code=getattr(err, "code", "UNAVAILABLE"),
            ) from err
        if self.config.max_waiting and len(self._waiters) >= self.config.max_waiting:
            self._stats["requests_refused"] += 1
            raise PoolExhausted(
                f"pool {self.name!r}: {len(self._waiters)} requests already waiting "
                f"(max_waiting={self.config.max_waiting})",
                pool=self.name,
                code="POOL_MAX_WAITING",
            )
        return await self._wait(t0, self.config.timeout if timeout is None else timeout)

    async def _wait(self, t0: float, timeout: float) -> _Slot[C]:  # noqa: ASYNC109
        fut: asyncio.Future[_Slot[C]] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._stats["requests_queued"] += 1
        self._consult(sample=False)
        self._grow()
        try:
            async with asyncio.timeout(timeout):
                slot = await fut
        except BaseException as e:
            # timed out or cancelled: leave the queue, and hand back a connection that was given
            # to us at the same instant
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                slot = fut.result()
                slot.lent_at = self._clock()  # handed over, never used: held for no time
                self._release(slot, None)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            if isinstance(e, TimeoutError):
                self._stats["requests_timeouts"] += 1
                waited = self._clock() - t0
                self._record_wait(waited)
                raise PoolTimeout(
                    f"pool {self.name!r}: no connection free within {timeout:g}s "
                    f"(size {self.size}, in use {len(self._lent)}, "
                    f"waiting {len(self._waiters)}, max_size {self.config.max_size})",
                    pool=self.name,
                ) from None
            raise
        now = self._clock()
        self._record_wait(now - t0)
        slot.lent_at = now
        return slot

    def _record_wait(self, waited: float) -> None:
        self.wait_hist.record(waited)
        self._stats["requests_wait_ms"] += round(waited * 1000)
        self._state.waited(waited)

    def _release(self, slot: _Slot[C], exc: BaseException | None) -> None:
        now = self._clock()
        # the connection failed, or a cancelled request may still be in flight on it
        broken = exc is not None and not _connection_ok(exc)
        stale = slot.gen != self._gen or now >= slot.expires  # drained, or past its lifetime
        kept, fut = self._state.release(
            slot, not (broken or stale or self._closed), _waiting, now - slot.lent_at
        )
        if self._all_back is not None and not self._lent:
            self._all_back.set()
        self._stats["usage_ms"] += round((now - slot.last_used) * 1000)
        slot.last_used = slot.last_checked = now
        if kept:
            if fut is not None:
                fut.set_result(slot)
            return
        if broken:
            self._stats["connections_lost"] += 1
            if isinstance(exc, DatabaseUnavailable):
                self._broken_at = now
        elif stale and not self._closed:
            self._stats["connections_recycled"] += 1
        self._discard(slot)
        self._grow()

    def _put(self, slot: _Slot[C]) -> None:
        """Give a free connection to the first live waiter, or push it on the idle stack."""
        fut = self._state.put(slot, _waiting)
        if fut is not None:
            fut.set_result(slot)

    # -- connections ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections open or opening (idle + lent + opening)."""
        return self._state.size

    async def _connect(self, *, reserved: bool = False) -> _Slot[C]:
        """Open one connection (``reserved``: already counted as opening by the caller)."""
        t0 = self._clock()
        if not reserved:
            self._state.begin_open()
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                conn = await self._factory()
        except BaseException as e:
            self._state.opened()
            if isinstance(e, Exception):
                self._stats["connections_errors"] += 1
                err = (
                    e
                    if isinstance(e, TieredError)
                    else DatabaseUnavailable(f"{type(e).__name__}: {e}", code="UNAVAILABLE")
                )
                if isinstance(e, TimeoutError):
                    err = DatabaseUnavailable(
                        f"connect did not finish within {self.config.connect_timeout:g}s",
                        code="TIMEOUT",
                    )
                self._enter_outage(err)
                if err is not e:
                    raise err from e
            raise
        now = self._clock()
        self._state.opened()
        self._stats["connections_num"] += 1
        self._stats["connections_ms"] += round((now - t0) * 1000)
        if self._outage is not None:
            log.info(
                "pool %r: database reachable again after %.2fs", self.name, now - self._outage[0]
            )
            self._outage = None
        life = self.config.max_lifetime * (1 - self.config.lifetime_jitter * self._rng.random())
        return _Slot(conn, now, now + life, self._gen)

    def _enter_outage(self, err: TieredError) -> None:
        if isinstance(err, AuthError):
            # not an outage: the server answered. Queued requests fail with the same error.
            self._fail_waiters(err)
            return
        if self._outage is None:
            log.warning("pool %r: cannot connect: %s", self.name, err)
            self._outage = (self._clock(), err)
        else:
            self._outage = (self._outage[0], err)
        if not self._lent:
            # queued requests would wait on a dead server: fail them with the cause now
            self._fail_waiters(
                DatabaseUnavailable(
                    f"pool {self.name!r}: cannot connect: {err}",
                    code=getattr(err, "code", "UNAVAILABLE"),
                )
            )
        self._ensure_reconnect()

    def _fail_waiters(self, err: BaseException) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(err)

    def _ensure_reconnect(self) -> None:
        if self._closed or not self._opened:
            return
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(
                self._reconnect(), name=f"tiered-pool-{self.name}-reconnect"
            )

    async def _reconnect(self) -> None:
        """Retry with jittered exponential backoff until a connect succeeds or the deadline."""
        start = self._clock()
        attempt = 0
        while not self._closed and self._outage is not None:
            delay = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
            await self._sleep(delay * (0.5 + 0.5 * self._rng.random()))
            attempt += 1
            if self._closed or self._outage is None:
                return
            try:
                slot = await self._connect()
            except Exception:
                if self._clock() - start >= self.config.reconnect_timeout:
                    log.error(
                        "pool %r: giving up reconnecting after %.0fs; the next request retries",
                        self.name,
                        self._clock() - start,
                    )
                    return
                continue
            self._put(slot)
            self._grow()
            return

    async def _check(self, slot: _Slot[C]) -> bool:
        """Ping a lent connection (counted as busy while checked); one that fails is closed and
        no longer lent."""
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await slot.conn.ping()
        except Exception:
            self._state.forget(slot)
            self._stats["pings_failed"] += 1
            self._stats["connections_lost"] += 1
            self._discard(slot)
            return False
        except BaseException:
            self._state.forget(slot)
            self._discard(slot)
            raise
        self._stats["pings"] += 1
        slot.last_checked = self._clock()
        return True

    def _discard(self, slot: _Slot[C]) -> None:
        self._stats["connections_closed"] += 1
        self._spawn(_close_quietly(slot.conn), closing=True)

    async def _close_all(self, conns: list[C]) -> None:
        self._stats["connections_closed"] += len(conns)
        await asyncio.gather(*(_close_quietly(c) for c in conns))

    def _spawn(self, coro: Awaitable[Any], *, closing: bool = False) -> None:
        """Run ``coro`` in the background; ``closing`` tasks (a connection being closed) are
        awaited by :meth:`close`, the others cancelled."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        tasks = self._closing if closing else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _grow(self) -> None:
        """Open connections in the background up to the target (and the queue's needs)."""
        if self._closed or not self._opened or self._outage is not None:
            if self._outage is not None and self._waiters:
                self._ensure_reconnect()
            return
        # counted as opening now, so the next request sees them and does not re-open
        for _ in range(self._state.to_open()):
            self._spawn(self._open_one())

    async def _open_one(self) -> None:
        try:
            slot = await self._connect(reserved=True)
        except Exception:
            return  # counted, and the outage is in progress
        if self._closed:
            await _close_quietly(slot.conn)
            return
        self._put(slot)

    # -- maintenance -----------------------------------------------------------------------------

    def _consult(self, *, sample: bool = True) -> Decision:
        before = self._state.target
        load, d = self._state.consult()
        if d.target != before:
            self._stats["resizes"] += 1
            log.debug("pool %r: size %d -> %d (%s)", self.name, before, d.target, d.reason)
        if sample:
            self.series.append(
                PoolSample(
                    self._clock(),
                    load.size,
                    load.in_use,
                    load.idle,
                    load.waiting,
                    load.utilization,
                    d.target,
                )
            )
        return d

    async def maintain(self) -> None:
        """One maintenance pass: recycle, keep alive, resize. The background task calls this
        every ``maintenance_interval`` seconds; tests call it directly on a virtual clock."""
        if self._closed:
            return
        now = self._clock()
        # expired lifetimes and long-idle connections beyond min_size close
        # connections past their lifetime or idle for max_idle close; _grow below replaces them
        # as far as the target asks (so an idle pool above its target simply shrinks)
        keep: list[_Slot[C]] = []
        self._state.account()
        for slot in self._idle:
            if (
                now >= slot.expires
                or slot.gen != self._gen
                or now - slot.last_used >= self.config.max_idle
            ):
                self._stats["connections_recycled"] += 1
                self._discard(slot)
            else:
                keep.append(slot)
        self._idle[:] = keep
        self._consult()
        # shrink: close idle connections beyond the target, least recently used first
        for slot in self._state.shrink():
            self._discard(slot)
        self._grow()
        # keep-alive: ping connections idle for `keepalive`, off the stack while pinged
        if self.config.keepalive is not None:
            due = [s for s in self._idle if now - s.last_checked >= self.config.keepalive]
            if due:
                self._state.account()
                self._idle[:] = [
                    s for s in self._idle if now - s.last_checked < self.config.keepalive
                ]
                self._lent.update(due)  # busy while pinged
                ok = await asyncio.gather(*(self._check(s) for s in due))
                for slot, alive in zip(due, ok, strict=True):
                    if not alive:
                        continue
                    self._state.forget(slot)
                    if not self._closed:
                        self._put(slot)
                    else:
                        await _close_quietly(slot.conn)
                if not all(ok):
                    self._grow()

    async def _maintenance_loop(self) -> None:
        while not self._closed:
            await self._sleep(self.config.maintenance_interval)
            try:
                await self.maintain()
            except Exception:  # never let maintenance die; the next pass retries
                log.exception("pool %r: maintenance pass failed", self.name)

    # -- stats -----------------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Counters since the last :meth:`pop_stats`, gauges now, and wait-time quantiles (ms)."""
        s: dict[str, Any] = {
            "pool_min": self.config.minimum,
            "pool_max": self.config.max_size,
            "pool_size": self.size,
            "pool_target": self._target,
            "pool_available": len(self._idle),
            "pool_in_use": len(self._lent),
            "pool_opening": self._state.opening,
            "requests_waiting": len(self._waiters),
            "outage": self._outage is not None,
        }
        s.update(self._stats)
        h = self.wait_hist
        for q in (0.5, 0.9, 0.99):
            s[f"wait_p{round(q * 100)}_ms"] = h.quantile(q) * 1000 if h.count else 0.0
        return s

    def series_frame(self) -> pl.DataFrame:
        """The utilization series (one row per maintenance tick) as a polars frame:
        ``t, size, in_use, idle, waiting, utilization, target``."""
        return series_frame(self.series)

    def pop_stats(self) -> dict[str, Any]:
        """:meth:`get_stats`, then reset the counters and the wait histogram."""
        s = self.get_stats()
        self._stats = dict.fromkeys(COUNTERS, 0)
        self.wait_hist = Histogram()
        return s

    def __repr__(self) -> str:
        state = "closed" if self._closed else "outage" if self._outage else "open"
        return (
            f"<Pool {self.name!r} {state} size={self.size} (target {self._target}, "
            f"{self.config.minimum}..{self.config.max_size}) in_use={len(self._lent)} "
            f"idle={len(self._idle)} "
            f"waiting={len(self._waiters)} sizing={self.sizing!r}>"
        )


def _waiting(fut: asyncio.Future[Any]) -> bool:
    """A queued borrower still waiting (not cancelled or timed out)."""
    return not fut.done()


def _connection_ok(exc: BaseException) -> bool:
    """Whether a connection that raised ``exc`` can be lent again: SQL-level errors leave it
    usable (so does a locked database); transport failures, timeouts, cancellation and unknown
    errors do not."""
    return isinstance(exc, TieredError) and (
        not isinstance(exc, DatabaseUnavailable) or isinstance(exc, DatabaseBusy)
    )


async def _close_quietly(conn: Poolable) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
