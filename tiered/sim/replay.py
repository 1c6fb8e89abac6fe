"""Replay a ``tiered bench`` workload in the simulator, and calibrate against the real stack.

:func:`replay` takes the same seeded plan and open-loop arrival times as ``tiered bench`` and
runs it on the virtual clock through

* the library's **real** cache layer objects (:class:`~tiered.cache.CacheLayer`: the adaptive
  W-TinyLFU record caches and the query-result cache, with the Store's own query predicates from
  :mod:`tiered.cache.predicates` and its write-through/invalidation rule), on the simulated
  clock; single-flight: a miss on a key already being loaded waits for that load;
* the request-level pool model (:class:`~tiered.sim.poolmodel.RequestPool`) with the Store's default
  sizing policy (:class:`~tiered.pool.Reactive`) or a given one;
* a :class:`~tiered.sim.service.ServiceModel` measured on the real stack: a cache hit costs a
  measured hit time; a database call holds a connection for a measured round trip and costs a
  measured time around it.

* the Store's one-writer gate with group commit (:mod:`tiered.db.groupcommit`): a write that
  arrives while another commits waits, and every write waiting then commits with the next
  group; a group holds one connection for the longest measured round trip of its members (one
  batch, one round trip).

Not modelled: the change-log poll as its own call (its cost is inside the measured database
samples, as it happened during the measurement), and CPU contention between requests on the
event loop beyond what the measurement saw.

:func:`tiered.scenarios.calibrate` compares it with the real stack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from tiered.cache import predicates
from tiered.cache.config import CacheConfig
from tiered.cache.layer import CacheLayer, hit_ratio
from tiered.cache.queries import QueryEntry
from tiered.errors import ConfigError
from tiered.pool.sizing import Reactive
from tiered.sim.engine import Simulator
from tiered.sim.poolmodel import PolicyFactory, PoolScenario, RequestPool
from tiered.sim.service import ServiceModel
from tiered.store.records import approx_size
from tiered.workload.plans import Layers, Workload, arrival_times, make_corpus, plan_requests

__all__ = ["ReplayResult", "replay"]

_READS = {"get_episode", "get_episodes", "query_episodes_since", "query_episodes_by_metadata",
          "query_episodes", "search_patterns"}  # fmt: skip


@dataclass
class ReplayResult:
    requests: pl.DataFrame  # op, start_s, latency_s, path (hit / db / joined)
    hit_ratio: float
    pool: dict[str, float]
    pool_series: pl.DataFrame


def _query(op: str, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...], Callable[[Any], bool]]:
    """The table, cache key and predicate of a planned query (as the Store builds them)."""
    if op == "query_episodes_since":
        return "episodes", (op, *args), predicates.episodes_since(args[0])
    if op == "query_episodes_by_metadata":
        return "episodes", (op, *args), predicates.episodes_by_metadata(args[0], args[1])
    if op == "query_episodes":
        return "episodes", (op, *args), predicates.episodes_matching(None, args[0], args[1])
    if op == "search_patterns":
        return "patterns", (op, *args), predicates.patterns_matching(None, None, args[0])
    raise ConfigError(f"not a query: {op!r}")


def replay(
    workload: Workload,
    model: ServiceModel,
    *,
    layers: Layers | None = None,
    cache: CacheConfig | None = None,
    sizing: PolicyFactory | None = None,
    min_size: int = 1,
    max_size: int = 10,
    seed: int = 0,
) -> ReplayResult:
    """Simulate ``workload`` (open loop: ``workload.rate`` must be set) with ``model``."""
    if workload.rate is None:
        raise ConfigError("replay needs an open-loop workload (Workload(rate=...))")
    layers = layers or Layers()
    cfg = dataclasses.replace(cache or CacheConfig(), enabled=layers.cache)
    arrivals = arrival_times(workload)
    assert arrivals is not None
    corpus = make_corpus(workload, "b")
    plan = plan_requests(workload, corpus)
    corpus_by_id = {e.id: e for e in corpus.episodes}
    sim = Simulator()
    rng = np.random.default_rng(seed)
    duration = float(arrivals[-1]) + 60.0
    opens = model.connect_times()
    scenario = PoolScenario(
        rate=np.array([workload.rate]),
        hold=model.hold_times(),
        connect_s=float(np.median(opens)),
        interval_s=duration,
        min_size=min_size,
        max_size=max_size,
    )
    pool = RequestPool(scenario, sizing or (lambda clock: Reactive(clock=clock)), sim)
    pool.start()
    layer = CacheLayer(cfg, timer=sim.now, getsizeof=approx_size)  # sized as the Store does
    episodes = layer.records["episodes"]
    queries = layer.queries
    n = len(plan)
    latency = np.zeros(n)
    path = [""] * n
    flights: dict[Hashable, list[int]] = {}
    write_through = cfg.write_through

    def finish(i: int, at: float, how: str) -> None:
        latency[i] = at - float(arrivals[i])
        path[i] = how

    def hit(i: int, op: str) -> None:
        rest, _ = model.draw(rng, op, "hit")
        finish(i, sim.now() + rest, "hit")

    def db(i: int, op: str, then: Callable[[], None] | None = None, key: Hashable = None) -> None:
        rest, rt = model.draw(rng, op, "db")

        def done() -> None:
            end = sim.now()
            if then is not None:
                then()
            finish(i, end + rest, "db")
            for j in flights.pop(key, []) if key is not None else []:
                jrest = model.draw(rng, plan[j][0], "hit")[0] if model.has(plan[j][0], "hit") else 0
                finish(j, end + rest + jrest, "joined")

        if key is not None:
            flights[key] = []
        hold(rt, done)

    def hold(rt: float, done: Callable[[], None]) -> None:
        """A connection for ``rt`` seconds, then ``done``."""
        if layers.pool:
            pool.request(rt, done)
        else:  # a new connection per call: open it, then the round trip
            sim.after(float(rng.choice(opens)) + rt, done)

    writing = False  # a group is committing
    queued: list[tuple[int, str, Callable[[], None]]] = []

    def write(i: int, op: str, then: Callable[[], None]) -> None:
        queued.append((i, op, then))
        if not writing:
            commit_group()

    def commit_group() -> None:
        nonlocal writing
        group = queued[:]
        queued.clear()
        writing = True
        draws = [model.draw(rng, op, "db") for _, op, _ in group]

        def done() -> None:
            nonlocal writing
            end = sim.now()
            for (j, _, then), (rest, _) in zip(group, draws, strict=True):
                then()
                finish(j, end + rest, "db")
            writing = False
            if queued:
                commit_group()

        hold(max(r for _, r in draws), done)

    def handle(i: int) -> None:
        op, args = plan[i]
        if op == "store_episodes":
            batch = args[0]

            def written() -> None:
                if episodes is not None and len(batch) <= write_through:
                    for e in batch:
                        episodes.set(e.id, e)
                if queries is not None:
                    queries.invalidate("episodes", batch, [])

            write(i, op, written)
            return
        if op not in _READS:
            raise ConfigError(f"replay does not model {op!r}")
        if op == "get_episode" and episodes is not None:
            (eid,) = args
            if episodes.get(eid) is not None:
                return hit(i, op)
            key: Hashable = ("episodes", eid)
            if key in flights:
                flights[key].append(i)
                return None

            def fill() -> None:
                episodes.set(eid, corpus_by_id[eid])

            return db(i, op, fill, key)
        if op == "get_episodes" and episodes is not None:
            missing = [k for k in dict.fromkeys(args[0]) if episodes.get(k) is None]
            if not missing:
                return hit(i, op)

            def fill() -> None:
                for k in missing:
                    episodes.set(k, corpus_by_id[k])

            return db(i, op, fill)
        if op.startswith(("query_", "search_")) and queries is not None:
            table, qkey, pred = _query(op, args)
            if queries.get(qkey) is not None:
                return hit(i, op)
            if qkey in flights:
                flights[qkey].append(i)
                return None
            entry = QueryEntry(table, (), frozenset(), pred)
            return db(i, op, lambda: queries.put(qkey, entry), qkey)
        return db(i, op)

    for i, t in enumerate(arrivals.tolist()):
        sim.at(t + model.draw_lag(rng), handle, i)
    sim.run(until=duration)
    if any(not p for p in path):
        raise ConfigError("replay ended with requests still in flight (raise the duration)")
    frame = pl.DataFrame(
        {
            "op": [op for op, _ in plan],
            "start_s": arrivals,
            "latency_s": latency,
            "path": path,
        }
    )
    run = pool.result()
    return ReplayResult(frame, hit_ratio(layer.get_stats()), run.summary, run.series)
