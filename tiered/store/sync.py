"""The blocking API: :class:`SyncStore` runs a :class:`~tiered.store.Store` on a private event
loop in a daemon thread, for scripts and notebooks (it works where no loop runs and inside
Jupyter's running loop alike). Every coroutine method is forwarded, never re-implemented."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from tiered.errors import StoreClosed
from tiered.store.core import Store

__all__ = ["SyncStore", "open_store", "open_sync"]

T = TypeVar("T")


class SyncStore:
    """Blocking facade over :class:`Store` for scripts and notebooks.

    The store lives on a private event loop in a daemon thread, so this works both where no loop
    runs and inside Jupyter's running loop. Every coroutine method of :class:`Store` is exposed
    with the same name and arguments (forwarded, not re-implemented); attributes such as
    ``config`` and ``stats()`` pass through.
    """

    def __init__(self, url: str = "file:tiered.db", **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tiered-sync", daemon=True
        )
        self._thread.start()
        try:
            self._store: Store = self._run(Store.open(url, **kwargs))
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop closed under us (close() from another thread)
            coro.close()
            raise StoreClosed("the store is closed; open a new one with open_sync()") from None
        return fut.result()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if asyncio.iscoroutinefunction(attr):

            def call(*args: Any, **kwargs: Any) -> Any:
                return self._run(attr(*args, **kwargs))

            call.__name__ = name
            call.__doc__ = attr.__doc__
            return call
        return attr

    def close(self) -> None:
        """Close the store and stop its loop thread. Idempotent."""
        if not self._loop.is_closed():
            try:
                self._run(self._store.close())
            finally:
                self._stop()

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncStore of {self._store!r}>"


async def open_store(url: str = "file:tiered.db", **kwargs: Any) -> Store:
    """Shorthand for :meth:`Store.open`."""
    return await Store.open(url, **kwargs)


def open_sync(url: str = "file:tiered.db", **kwargs: Any) -> SyncStore:
    """Open a :class:`SyncStore` (blocking API) on ``url``; arguments as for :meth:`Store.open`."""
    return SyncStore(url, **kwargs)
