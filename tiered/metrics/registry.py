"""Per-operation metrics: latency histograms, a phase breakdown, errors, and exporters.

Every public Store operation records its wall time in a :class:`~tiered.metrics.Histogram` per
operation name, and the time it spent in each **phase**:

* ``cache`` — in the cache layer (lookups, fills, invalidation), excluding the database work it
  triggered;
* ``acquire`` — waiting for a pool connection;
* ``encode`` — serialize + compress payloads;
* ``round_trip`` — a database call, network and server included;
* ``decode`` — decompress + deserialize + rebuild records;
* ``other`` — the rest (validation, bookkeeping, the event loop), so phases sum to the total.

A phase is recorded only for operations that spent time in it, so the cache phase of a hit is not
diluted by misses. Phases are collected for one operation in ``phase_every`` (default 4: a
systematic sample, as tracers sample), latency and errors for every one; this keeps the
instrumentation under 1 µs per operation (``benchmarks/bench_metrics.py``). ``phased_sum_s`` is
the total time of the sampled operations, which their phases add up to.

Exporters: :meth:`Metrics.get_stats` (typed), :meth:`Metrics.to_polars` (tidy: one row per
operation, phase and statistic) and :meth:`Metrics.to_prometheus` (text exposition format 0.0.4,
summaries with quantiles, plus the layers' gauges and counters from ``sources``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tiered.metrics.histogram import Histogram

if TYPE_CHECKING:
    import polars as pl

__all__ = ["PHASES", "QUANTILES", "Metrics", "OperationSnapshot", "PhaseSnapshot"]

PHASES = ("cache", "acquire", "encode", "round_trip", "decode", "other")
QUANTILES = (0.5, 0.9, 0.99, 0.999)


class _Op:
    # values are appended to plain lists on the hot path and folded into the histograms
    # (vectorized) every _FLUSH_EVERY observations and before any read
    __slots__ = ("errors", "latency", "pending", "pending_phases", "phased_sum", "phases")

    def __init__(self) -> None:
        self.latency = Histogram()
        self.phases: dict[str, Histogram] = {}
        self.errors: dict[str, int] = {}
        self.pending: list[float] = []
        self.pending_phases: dict[str, list[float]] = {}
        self.phased_sum = 0.0

    def flush(self) -> None:
        if self.pending:
            self.latency.record_many(self.pending)
            self.pending = []
        for name, values in self.pending_phases.items():
            if values:
                h = self.phases.get(name)
                if h is None:
                    h = self.phases[name] = Histogram()
                h.record_many(values)
        self.pending_phases = {}


_FLUSH_EVERY = 4096


@dataclass(frozen=True, slots=True)
class PhaseSnapshot:
    phase: str
    count: int
    sum_s: float
    quantiles_s: dict[float, float]


@dataclass(frozen=True, slots=True)
class OperationSnapshot:
    op: str
    count: int
    sum_s: float
    quantiles_s: dict[float, float]
    errors: dict[str, int]
    phases: dict[str, PhaseSnapshot] = field(default_factory=dict)
    phased_sum_s: float = 0.0


class Metrics:
    """A registry of operation metrics. Used from one event loop (not thread-safe by design:
    a Store and its SyncStore run every operation on one loop thread)."""

    def __init__(
        self,
        sources: dict[str, Callable[[], dict[str, Any]]] | None = None,
        *,
        phase_every: int = 4,
    ) -> None:
        if phase_every < 1:
            raise ValueError(f"phase_every must be >= 1, got {phase_every}")
        #: collect the phase breakdown of one operation in this many
        self.phase_every = phase_every
        self._ops: dict[str, _Op] = {}
        self._unflushed = 0
        #: named callables returning nested dicts of numbers (layer stats) for the exporters
        self.sources = dict(sources or {})
        #: when a list, every phased observation is also kept raw, as ``(op, seconds, phases)``
        #: (see :meth:`keep_samples`; the simulator's service model is built from these)
        self.samples: list[tuple[str, float, dict[str, float]]] | None = None
        self._max_samples = 0

    def keep_samples(self, limit: int = 1_000_000) -> None:
        """Keep the raw time and phases of every operation (up to ``limit``), and measure the
        phases of every operation instead of one in ``phase_every``."""
        self.samples = []
        self._max_samples = limit
        self.phase_every = 1

    def observe(
        self,
        op: str,
        seconds: float,
        phases: dict[str, float] | None = None,
        error: str | None = None,
    ) -> None:
        """Record one operation: its time, its phases (seconds; ``other`` is derived), its error."""
        o = self._ops.get(op)
        if o is None:
            o = self._ops[op] = _Op()
        o.pending.append(seconds)
        if error is not None:
            o.errors[error] = o.errors.get(error, 0) + 1
        if phases is not None:
            if self.samples is not None and len(self.samples) < self._max_samples:
                self.samples.append((op, seconds, dict(phases)))
            o.phased_sum += seconds
            rest = seconds
            pp = o.pending_phases
            for name, t in phases.items():
                if t > 0:
                    values = pp.get(name)
                    if values is None:
                        values = pp[name] = []
                    values.append(t)
                    rest -= t
            values = pp.get("other")
            if values is None:
                values = pp["other"] = []
            values.append(rest if rest > 0 else 0.0)
        self._unflushed += 1
        if self._unflushed >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Fold buffered observations into the histograms (reads do it themselves)."""
        self._unflushed = 0
        for o in self._ops.values():
            o.flush()

    def merge(self, other: Metrics) -> None:
        """Add another registry's histograms and counts (e.g. from another process)."""
        self.flush()
        other.flush()
        for name, src in other._ops.items():
            o = self._ops.get(name)
            if o is None:
                o = self._ops[name] = _Op()
            o.latency.merge(src.latency)
            o.phased_sum += src.phased_sum
            for k, n in src.errors.items():
                o.errors[k] = o.errors.get(k, 0) + n
            for p, h in src.phases.items():
                o.phases.setdefault(p, Histogram()).merge(h)

    def reset(self) -> None:
        self._ops.clear()

    def histogram(self, op: str, phase: str | None = None) -> Histogram:
        self.flush()
        o = self._ops[op]
        return o.latency if phase is None else o.phases[phase]

    def get_stats(self, quantiles: Iterable[float] = QUANTILES) -> list[OperationSnapshot]:
        qs = tuple(quantiles)
        self.flush()
        out = []
        for name in sorted(self._ops):
            o = self._ops[name]
            phases = {
                p: PhaseSnapshot(p, h.count, h.sum, h.quantiles(qs))
                for p, h in sorted(o.phases.items(), key=lambda kv: _phase_order(kv[0]))
            }
            out.append(
                OperationSnapshot(
                    name, o.latency.count, o.latency.sum, o.latency.quantiles(qs),
                    dict(o.errors), phases, o.phased_sum,
                )
            )  # fmt: skip
        return out

    def to_polars(self, quantiles: Iterable[float] = QUANTILES) -> pl.DataFrame:
        """Tidy frame: ``op, phase, stat, value`` (``phase`` is ``total`` for the whole
        operation; ``stat`` is ``count``, ``sum_s``, ``mean_s`` or ``p50``/``p90``/...)."""
        import polars as pl

        rows: list[tuple[str, str, str, float]] = []
        for snap in self.get_stats(quantiles):
            parts = [("total", snap.count, snap.sum_s, snap.quantiles_s)] + [
                (p.phase, p.count, p.sum_s, p.quantiles_s) for p in snap.phases.values()
            ]
            for phase, count, total, qs in parts:
                rows.append((snap.op, phase, "count", float(count)))
                rows.append((snap.op, phase, "sum_s", total))
                rows.append((snap.op, phase, "mean_s", total / count if count else math.nan))
                rows += [(snap.op, phase, _qname(q), v) for q, v in qs.items()]
            for err, n in snap.errors.items():
                rows.append((snap.op, "total", f"errors:{err}", float(n)))
        return pl.DataFrame(
            rows, schema={"op": pl.Utf8, "phase": pl.Utf8, "stat": pl.Utf8, "value": pl.Float64},
            orient="row",
        )  # fmt: skip

    def to_prometheus(self, prefix: str = "tiered") -> str:
        """The Prometheus text exposition of every metric and every source's numbers."""
        lines: list[str] = []
        snaps = self.get_stats()
        name = f"{prefix}_operation_seconds"
        lines += [f"# HELP {name} Store operation latency.", f"# TYPE {name} summary"]
        for s in snaps:
            lab = f'op="{_esc(s.op)}"'
            lines += [f'{name}{{{lab},quantile="{q}"}} {_num(v)}' for q, v in s.quantiles_s.items()]
            lines += [f"{name}_sum{{{lab}}} {_num(s.sum_s)}", f"{name}_count{{{lab}}} {s.count}"]
        name = f"{prefix}_phase_seconds"
        lines += [f"# HELP {name} Time per operation phase.", f"# TYPE {name} summary"]
        for s in snaps:
            for p in s.phases.values():
                lab = f'op="{_esc(s.op)}",phase="{p.phase}"'
                lines += [
                    f'{name}{{{lab},quantile="{q}"}} {_num(v)}' for q, v in p.quantiles_s.items()
                ]
                lines += [
                    f"{name}_sum{{{lab}}} {_num(p.sum_s)}",
                    f"{name}_count{{{lab}}} {p.count}",
                ]
        name = f"{prefix}_operation_errors_total"
        lines += [f"# HELP {name} Store operations that raised, by type.", f"# TYPE {name} counter"]
        for s in snaps:
            for err, n in sorted(s.errors.items()):
                lines.append(f'{name}{{op="{_esc(s.op)}",type="{_esc(err)}"}} {n}')
        for source, fn in sorted(self.sources.items()):
            flat = sorted(_flatten(fn()))
            gname = f"{prefix}_{_metric_name(source)}"
            lines += [f"# HELP {gname} Layer statistics of {source}.", f"# TYPE {gname} gauge"]
            lines += [f'{gname}{{key="{_esc(k)}"}} {_num(v)}' for k, v in flat]
        return "\n".join(lines) + "\n"


def _phase_order(p: str) -> int:
    return PHASES.index(p) if p in PHASES else len(PHASES)


def _qname(q: float) -> str:
    return "p" + f"{q * 100:g}".replace(".", "")


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _metric_name(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)


def _flatten(d: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    """Numeric leaves of nested dicts as ``("a.b.c", value)`` (booleans as 0/1)."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, int | float):  # bool is an int: 0 or 1
        yield prefix, float(d)
