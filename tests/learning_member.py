"""One fleet member for tests/test_learning_store.py, run as its own process:
``python -m tests.learning_member URL INSTANCE FIRST_HOUR HOURS {close,hang}``.

It opens a Store whose pool learns on a virtual clock, and for each of ``HOURS`` hours from
``FIRST_HOUR`` (hours after T0) borrows the pool a few times, runs a maintenance pass and a
learner pass (the hour before is written). Then ``close`` closes the Store (the rest of the hour
written); ``hang`` prints ``ready`` and waits to be killed."""

from __future__ import annotations

import asyncio
import sys

from tiered import PoolConfig, Store
from tiered.pool import Reactive
from tiered.pool.learning import Fleet, Learning

T0 = 1_767_225_600.0


async def main(url: str, instance: str, first: int, hours: int, end: str) -> None:
    t = [T0 + first * 3600.0 + 1]
    clock = lambda: t[0]  # noqa: E731
    sizing = Learning(reactive=Reactive(clock=clock), above=Reactive(clock=clock), clock=clock,
                      monotonic=clock, fleet=Fleet(instance=instance))  # fmt: skip
    store = await Store.open(url, pool=PoolConfig(sizing=sizing))
    assert store.traffic is not None
    for h in range(first, first + hours):
        t[0] = T0 + h * 3600.0 + 60
        for i in range(3 + h % 24):
            await store.get_episode(f"{instance}-{h}-{i}")
        await store.pool.maintain()
        await store.traffic.tick()
    if end == "close":
        await store.close()
        return
    print("ready", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    url, instance, first, hours, end = sys.argv[1:]
    asyncio.run(main(url, instance, int(first), int(hours), end))
