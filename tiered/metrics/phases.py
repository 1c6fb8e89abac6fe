"""Where an operation's time goes: the phase context of the operation running in a task.

:func:`measured` wraps an async method of an object that has ``metrics``
(:class:`~tiered.metrics.Metrics`): it times the call, and for one call in
``metrics.phase_every`` it opens a phase context that the layers below fill with
:func:`add_phase` (``acquire``, ``encode``, ``round_trip``, ``decode``) and
:func:`cache_mark`/:func:`cache_done` (``cache``: its time minus the loads nested in it). The
layers never see the metrics object: they add to whatever context the running task has, or to
none. A task spawned for work shared by several operations (a group commit) opens its own
context with :func:`phase_scope` and hands its phases to its members.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from tiered.metrics.registry import Metrics

__all__ = [
    "add_phase",
    "cache_done",
    "cache_mark",
    "measure_all",
    "measured",
    "phase_scope",
]

perf_counter = time.perf_counter

#: the phase times of the operation running in this task (None: not measured)
_PHASES: ContextVar[dict[str, float] | None] = ContextVar("tiered_phases", default=None)

CacheMark = tuple[dict[str, float], float, float]


def add_phase(name: str, seconds: float) -> None:
    """Add time to a phase of the measured operation running in this task (if any)."""
    acc = _PHASES.get()
    if acc is not None:
        acc[name] = acc.get(name, 0.0) + seconds


def cache_mark() -> CacheMark | None:
    """Start timing the cache phase: the phases so far and the time, or None when unmeasured."""
    acc = _PHASES.get()
    return None if acc is None else (acc, sum(acc.values()), perf_counter())


def cache_done(mark: CacheMark) -> None:
    """End the cache phase: its time minus the phases nested in it (the loads it ran)."""
    acc, before, t0 = mark
    nested = sum(acc.values()) - before
    acc["cache"] = acc.get("cache", 0.0) + (perf_counter() - t0 - nested)


@contextmanager
def phase_scope() -> Iterator[dict[str, float]]:
    """A fresh phase context for this task's work from here on; yields its phases."""
    phases: dict[str, float] = {}
    token = _PHASES.set(phases)
    try:
        yield phases
    finally:
        _PHASES.reset(token)


class HasMetrics(Protocol):
    metrics: Metrics
    _op_seq: int
    _phase_dicts: list[dict[str, float]]


S = TypeVar("S", bound=HasMetrics)
P = ParamSpec("P")
T = TypeVar("T")


def measured(
    name: str,
) -> Callable[
    [Callable[Concatenate[S, P], Awaitable[T]]], Callable[Concatenate[S, P], Awaitable[T]]
]:
    """Decorate an async method: time it, collect its phases, count its errors under ``name``.

    An operation called from inside another (``store_episode`` -> ``store_episodes``) is part
    of the outer one and is not recorded twice. The object keeps a sequence number
    (``_op_seq``) and a free list of phase dicts (``_phase_dicts``): a fresh dict per
    operation made the garbage collector run often enough to show in the p99 of cached reads.
    """

    def wrap(
        fn: Callable[Concatenate[S, P], Awaitable[T]],
    ) -> Callable[Concatenate[S, P], Awaitable[T]]:
        @functools.wraps(fn)
        async def op(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
            if _PHASES.get() is not None:
                return await fn(self, *args, **kwargs)
            metrics = self.metrics
            self._op_seq += 1
            if self._op_seq % metrics.phase_every:
                # not sampled for phases: time and errors only
                t0 = perf_counter()
                try:
                    result = await fn(self, *args, **kwargs)
                except BaseException as e:
                    metrics.observe(name, perf_counter() - t0, None, type(e).__name__)
                    raise
                metrics.observe(name, perf_counter() - t0)
                return result
            free = self._phase_dicts
            acc: dict[str, float] = free.pop() if free else {}
            token = _PHASES.set(acc)
            t0 = perf_counter()
            try:
                result = await fn(self, *args, **kwargs)
            except BaseException as e:
                metrics.observe(name, perf_counter() - t0, acc, type(e).__name__)
                acc.clear()
                free.append(acc)
                raise
            finally:
                _PHASES.reset(token)
            metrics.observe(name, perf_counter() - t0, acc)
            acc.clear()
            free.append(acc)
            return result

        return cast("Callable[Concatenate[S, P], Awaitable[T]]", op)

    return wrap


def measure_all(cls: type[Any], names: tuple[str, ...]) -> None:
    """Wrap each of ``cls``'s methods ``names`` with :func:`measured` under its own name."""
    for n in names:
        setattr(cls, n, measured(n)(getattr(cls, n)))
