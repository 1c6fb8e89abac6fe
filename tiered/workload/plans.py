"""Request plans: what a workload sends, decided up front from a seed.

A :class:`Workload` describes an agent-memory service's traffic (the operation mix, key skew,
batch size, closed-loop concurrency or open-loop arrival rate shaped by a trace); a
:class:`Corpus` holds the records it refers to; :func:`plan_requests` turns both into the seeded
list of ``(operation, arguments)`` and :func:`arrival_times` gives open-loop start times. The
real stack (:mod:`tiered.bench`) and the simulator (:mod:`tiered.sim.replay`) run the same
plans. :class:`Layers` names which optimization layers are on, :class:`Link` a network link
between the Store and its server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiered.errors import ConfigError
from tiered.model import Episode
from tiered.workload.keys import zipf_trace
from tiered.workload.records import DOMAINS, LANGUAGES, generate_episodes

__all__ = [
    "DEFAULT_MIX",
    "LAYER_NAMES",
    "Corpus",
    "Layers",
    "Link",
    "Request",
    "Workload",
    "arrival_times",
    "make_corpus",
    "plan_requests",
]

LAYER_NAMES = ("cache", "pool", "compression")

#: share of each operation in the default mix (reads dominate; 10 % of requests append a batch)
DEFAULT_MIX: Mapping[str, float] = {
    "get_episode": 0.62,
    "get_episodes": 0.05,
    "query_episodes_since": 0.05,
    "query_episodes_by_metadata": 0.05,
    "query_episodes": 0.04,
    "search_patterns": 0.04,
    "store_episodes": 0.15,
}


@dataclass(frozen=True, slots=True)
class Layers:
    """Which optimization layers are on."""

    cache: bool = True
    pool: bool = True
    compression: bool = True

    @property
    def name(self) -> str:
        on = [n for n in LAYER_NAMES if getattr(self, n)]
        return "all" if len(on) == len(LAYER_NAMES) else "+".join(on) if on else "off"

    @classmethod
    def parse(cls, spec: str) -> list[Layers]:
        """``"all"``, ``"off"``, ``"cache+pool"``, comma-separated lists of those, or
        ``"compare"`` (off, each layer alone, all: what each layer removes on its own)."""
        if spec.strip() == "compare":
            spec = "off,cache,pool,compression,all"
        out: list[Layers] = []
        for item in (s.strip() for s in spec.split(",")):
            if item == "all":
                out.append(cls())
            elif item in ("off", "none"):
                out.append(cls(False, False, False))
            else:
                names = set(item.split("+"))
                unknown = names - set(LAYER_NAMES)
                if not item or unknown:
                    raise ConfigError(
                        f"--layers: unknown layer {sorted(unknown) or [item]!r}; use all, off, "
                        f"compare, or names from {', '.join(LAYER_NAMES)} joined by '+'"
                    )
                out.append(cls(*(n in names for n in LAYER_NAMES)))
        return out


@dataclass(frozen=True, slots=True)
class Workload:
    """What the bench sends (see the module docstring).

    ops: requests per configuration. concurrency: closed-loop workers (ignored when ``rate`` is
    set). records: episodes written before the run (the key space of reads). zipf: skew of the
    keys read. batch: episodes per ``store_episodes``. rate: open-loop arrivals per second.
    trace: relative request rate per ``trace_step`` seconds (e.g. an hourly series compressed
    in time), scaling ``rate``.
    """

    ops: int = 2000
    concurrency: int = 4
    records: int = 2000
    zipf: float = 1.0
    batch: int = 10
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    rate: float | None = None
    trace: Sequence[float] | None = None
    trace_step: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ops", "concurrency", "records", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Workload.{name} must be >= 1, got {getattr(self, name)}")
        if self.zipf < 0:
            raise ConfigError(f"Workload.zipf must be >= 0, got {self.zipf}")
        unknown = set(self.mix) - set(DEFAULT_MIX)
        if unknown or not self.mix or any(v < 0 for v in self.mix.values()):
            raise ConfigError(
                f"Workload.mix: shares must be >= 0 for operations among {sorted(DEFAULT_MIX)}"
            )
        if sum(self.mix.values()) <= 0:
            raise ConfigError("Workload.mix: shares must not all be 0")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"Workload.rate must be > 0 requests/s, got {self.rate}")
        if self.trace is not None:
            if self.rate is None:
                raise ConfigError("Workload.trace needs a rate (the mean request rate)")
            t = np.asarray(self.trace, dtype=float)
            if t.size == 0 or not np.isfinite(t).all() or (t < 0).any() or t.sum() <= 0:
                raise ConfigError("Workload.trace must be finite, >= 0 and not all 0")
            if not self.trace_step > 0:
                raise ConfigError("Workload.trace_step must be > 0 seconds")


@dataclass(frozen=True, slots=True)
class Link:
    """A simulated network link between the Store and sqld: round-trip time (ms) and bandwidth
    (Mbit/s each way, None = unlimited), put in place by a loopback :class:`TcpProxy`."""

    rtt_ms: float = 0.0
    mbps: float | None = None

    @property
    def active(self) -> bool:
        return self.rtt_ms > 0 or self.mbps is not None

    def __str__(self) -> str:
        if not self.active:
            return "loopback"
        bw = f", {self.mbps:g} Mbit/s" if self.mbps else ""
        return f"{self.rtt_ms:g} ms RTT{bw} (delay proxy on 127.0.0.1)"


Request = tuple[str, tuple[Any, ...]]


@dataclass(slots=True)
class Corpus:
    """Everything a plan refers to: the preloaded records and the episodes appended later."""

    episodes: list[Episode]
    appends: list[Episode]


def make_corpus(w: Workload, prefix: str) -> Corpus:
    eps = generate_episodes(w.records, seed=w.seed, id_prefix=f"{prefix}e")
    n_writes = math.ceil(w.ops * w.mix.get("store_episodes", 0) / sum(w.mix.values()) * 1.5) + 1
    appends = generate_episodes(
        n_writes * w.batch,
        seed=w.seed + 1,
        id_prefix=f"{prefix}n",
        start_time=eps[-1].start_time + 1,
    )
    return Corpus(eps, appends)


def plan_requests(w: Workload, corpus: Corpus) -> list[Request]:
    """The seeded list of requests: ``(operation, arguments)``."""
    rng = np.random.default_rng(w.seed)
    ops = sorted(w.mix)
    p = np.array([w.mix[o] for o in ops], dtype=float)
    choice = rng.choice(len(ops), size=w.ops, p=p / p.sum())
    keys = zipf_trace(w.ops * 10 + 10, len(corpus.episodes), w.zipf, seed=w.seed).tolist()
    ids = [e.id for e in corpus.episodes]
    key_it = iter(keys)
    # "since" points: recent history, a few distinct values (agents ask about the last N tasks)
    recent = [corpus.episodes[max(0, len(ids) - 50 * k)].start_time for k in range(1, 11)]
    langs = sorted(LANGUAGES)
    appended = 0
    out: list[Request] = []
    for i in choice:
        op = ops[i]
        args: tuple[Any, ...]
        if op == "get_episode":
            args = (ids[next(key_it)],)
        elif op == "get_episodes":
            args = ([ids[next(key_it)] for _ in range(10)],)
        elif op == "query_episodes_since":
            args = (recent[int(rng.integers(len(recent)))], 50)
        elif op == "query_episodes_by_metadata":
            args = ("agent", ("planner", "coder", "reviewer")[int(rng.integers(3))], 50)
        elif op == "query_episodes":
            args = (DOMAINS[int(rng.integers(len(DOMAINS)))], langs[int(rng.integers(len(langs)))])
        elif op == "search_patterns":
            args = (round(0.5 + 0.1 * int(rng.integers(5)), 1),)
        else:
            batch = corpus.appends[appended : appended + w.batch]
            if len(batch) < w.batch:  # more writes drawn than planned for: reuse from the start
                appended = 0
                batch = corpus.appends[: w.batch]
            appended += w.batch
            args = (batch,)
        out.append((op, args))
    return out


def arrival_times(w: Workload) -> np.ndarray | None:
    """Scheduled start of each request in seconds (open loop), or None (closed loop)."""
    if w.rate is None:
        return None
    rng = np.random.default_rng(w.seed + 7)
    if w.trace is None:
        return np.cumsum(rng.exponential(1.0 / w.rate, size=w.ops))
    # piecewise-constant rate: the trace, normalised to mean 1, times `rate`; repeated as needed
    shape = np.asarray(w.trace, dtype=float)
    shape = shape / shape.mean()
    times: list[np.ndarray] = []
    total, step = 0, 0
    while total < w.ops:
        lam = w.rate * shape[step % shape.size] * w.trace_step
        n = int(rng.poisson(lam))
        times.append(np.sort(rng.uniform(step, step + 1, size=n)) * w.trace_step)
        total += n
        step += 1
    return np.concatenate(times)[: w.ops]
