"""The service model: what one operation costs, measured on the real stack by the metrics layer.

:func:`tiered.scenarios.measure_service` runs the ``tiered bench`` workload on the real stack
(the embedded default, or a local sqld with an optional delay/bandwidth link in front of it) with
:meth:`tiered.metrics.Metrics.keep_samples` on, so every operation's total time and its phases
(acquire, encode, round trip, decode, cache) are kept, and times fresh connection opens.

A :class:`ServiceModel` holds those rows. The simulator draws whole rows (so the phases of one
draw belong together): an operation answered by the cache (no round trip) costs its total time;
one that reached the database holds a connection for its round-trip time and costs the rest of
its time around it; waiting for a connection is the simulator's business, so the measured
acquire time beyond its median (queueing during the measurement) is left out.

Connection opens through the loopback proxy skip the TCP and TLS handshakes a remote server
would need (the proxy completes them locally; sqld here speaks plain WebSocket), so
:meth:`ServiceModel.connect_times` adds ``handshake_rtts`` round trips of the link (2 by
default: TCP, then TLS 1.3) to each measured open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl

from tiered.errors import ConfigError
from tiered.sim.poolmodel import HoldTimes
from tiered.workload.plans import Link

__all__ = ["ServiceModel"]


@dataclass
class ServiceModel:
    """Measured operation samples (``samples``: one row per operation; ``op == "connect"`` rows
    are connection opens, ``"dispatch"`` rows the harness's start lag) and how they were
    measured (``info``)."""

    samples: pl.DataFrame
    info: dict[str, Any] = field(default_factory=dict)
    _groups: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    _lag: np.ndarray = field(default_factory=lambda: np.zeros(1), repr=False)

    def __post_init__(self) -> None:
        need = {"op", "total_s", "acquire_s", "round_trip_s"}
        if not need <= set(self.samples.columns):
            raise ConfigError(f"a service model needs the columns {sorted(need)}")
        ops = self.samples.filter(~pl.col("op").is_in(["connect", "dispatch"]))
        lag = self.samples.filter(pl.col("op") == "dispatch")["total_s"].to_numpy()
        self._lag = lag if lag.size else np.zeros(1)
        # queueing seen during the measurement is not service: cap acquire at its median
        acq = float(cast(float, ops["acquire_s"].filter(ops["round_trip_s"] > 0).median() or 0.0))
        ops = ops.with_columns(
            path=pl.when(pl.col("round_trip_s") > 0).then(pl.lit("db")).otherwise(pl.lit("hit")),
            rest_s=pl.col("total_s")
            - pl.col("round_trip_s")
            - pl.col("acquire_s")
            + pl.col("acquire_s").clip(upper_bound=acq),
        )
        for (op, path), g in ops.group_by(["op", "path"], maintain_order=True):
            self._groups[(str(op), str(path))] = g.select("rest_s", "round_trip_s").to_numpy()
        for path in ("hit", "db"):
            pooled = [g for (_, p), g in self._groups.items() if p == path]
            if pooled:
                self._groups[("*", path)] = np.concatenate(pooled)

    @property
    def link(self) -> Link:
        return Link(self.info.get("rtt_ms", 0.0), self.info.get("mbps"))

    def ops(self) -> list[str]:
        return sorted({op for op, _ in self._groups if op != "*"})

    def has(self, op: str, path: str) -> bool:
        return (op, path) in self._groups

    def draw(self, rng: np.random.Generator, op: str, path: str) -> tuple[float, float]:
        """One measured ``(time outside the connection, round-trip time)`` of ``op`` answered
        from the cache (``path="hit"``: round trip 0) or by the database (``"db"``)."""
        g = self._groups.get((op, path))
        if g is None:  # not seen for this operation: any operation's samples of that path
            g = self._groups.get(("*", path))
        if g is None:
            raise ConfigError(f"the service model has no {path!r} samples of {op!r}")
        rest, rt = g[int(rng.integers(len(g)))]
        return max(0.0, float(rest)), float(rt)

    def draw_lag(self, rng: np.random.Generator) -> float:
        """How late the measuring harness started a request after its scheduled arrival."""
        return float(self._lag[int(rng.integers(self._lag.size))])

    def hold_times(self, ops: list[str] | None = None) -> HoldTimes:
        """Round-trip times of the operations that reached the database (all, or ``ops``)."""
        rows = [g[:, 1] for (op, path), g in self._groups.items()
                if path == "db" and op != "*" and (ops is None or op in ops)]  # fmt: skip
        if not rows:
            raise ConfigError("the service model has no database samples")
        return HoldTimes(np.concatenate(rows))

    def connect_times(self, handshake_rtts: int = 2) -> np.ndarray:
        """Seconds to open a connection: measured, plus the handshakes the proxy skips."""
        c = self.samples.filter(pl.col("op") == "connect")["total_s"].to_numpy()
        if c.size == 0:
            raise ConfigError("the service model has no connection-open samples")
        out: np.ndarray = c + handshake_rtts * self.info.get("rtt_ms", 0.0) / 1000
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.samples.write_parquet(path)
        path.with_suffix(".json").write_text(json.dumps(self.info, indent=2, default=str) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ServiceModel:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"no service model at {path} (run simulations/measure_service.py)")
        meta = path.with_suffix(".json")
        info = json.loads(meta.read_text()) if meta.exists() else {}
        return cls(pl.read_parquet(path), info)
