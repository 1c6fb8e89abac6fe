"""Calibration: the simulator against the real stack, on the same plans.

:func:`measure_service` runs a workload on the real stack (``tiered bench``, with every operation's
phases kept) and builds the simulator's :class:`~tiered.sim.service.ServiceModel` from it.
:func:`calibrate` measures a service model on one seed, runs the real stack on another seed and
the simulator (:func:`tiered.sim.replay.replay`) on that same plan, and compares latency
quantiles and hit ratio. This module sits above both the bench and the simulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import numpy as np
import polars as pl

from tiered.bench import run_bench
from tiered.errors import ConfigError
from tiered.sim.replay import replay
from tiered.sim.service import ServiceModel
from tiered.workload.plans import Layers, Link, Workload

__all__ = ["Calibration", "calibrate", "compare", "measure_service"]


def measure_service(
    workload: Workload,
    *,
    layers: Layers | None = None,
    link: Link | None = None,
    sqld: bool = True,
    progress: bool = True,
) -> tuple[ServiceModel, pl.DataFrame]:
    """Run ``workload`` once on the real stack with every layer on (or ``layers``) and return
    the service model and the measured requests (one row each)."""
    cfg = layers or Layers(cache=True, pool=True, compression=True)
    link = link or Link()
    result = asyncio.run(
        run_bench(None, [cfg], workload, link=link, sqld=sqld, progress=progress, record=True)
    )
    assert result.samples is not None
    info = {
        "backend": "sqld (ws, loopback)" if sqld or link.active else "embedded file",
        "rtt_ms": link.rtt_ms,
        "mbps": link.mbps,
        "layers": cfg.name,
        "workload": result.info["workload"],
        "stats": result.info["stats"][cfg.name],
    }
    # the harness's own start lag (open loop), drawn by the simulator for every request
    lag = result.requests.select(
        op=pl.lit("dispatch"), total_s=pl.col("lag_s").clip(lower_bound=0.0)
    )
    samples = pl.concat([result.samples.drop("config"), lag], how="diagonal").fill_null(0.0)
    return ServiceModel(samples, info), result.requests


@dataclass
class Calibration:
    """Measured vs simulated, side by side (``table``: one row per operation and quantile)."""

    table: pl.DataFrame
    measured: pl.DataFrame
    simulated: pl.DataFrame
    model: ServiceModel


QUANTILES = (0.5, 0.95, 0.99)


def compare(
    measured: pl.DataFrame, simulated: pl.DataFrame, hit: tuple[float, float]
) -> pl.DataFrame:
    """Latency quantiles (ms) per operation and overall, and the hit ratio, side by side."""
    rows: list[tuple[str, str, float, float]] = []
    for op in ["all", *sorted(set(measured["op"]))]:
        m = measured if op == "all" else measured.filter(pl.col("op") == op)
        s = simulated if op == "all" else simulated.filter(pl.col("op") == op)
        for q in QUANTILES:
            rows.append((op, f"p{round(q * 100)}_ms",
                         float(np.quantile(m["latency_s"].to_numpy(), q) * 1000),
                         float(np.quantile(s["latency_s"].to_numpy(), q) * 1000)))  # fmt: skip
    rows.append(("all", "hit_ratio", hit[0], hit[1]))
    return pl.DataFrame(
        rows, schema=["op", "stat", "measured", "simulated"], orient="row"
    ).with_columns(rel_error=(pl.col("simulated") - pl.col("measured")) / pl.col("measured"))


def calibrate(
    workload: Workload,
    *,
    link: Link | None = None,
    layers: Layers | None = None,
    progress: bool = True,
) -> Calibration:
    """Measure a service model on seed ``workload.seed + 100``, then run ``workload`` on the
    real stack (a local sqld behind ``link``) and in the simulator, and compare."""
    if workload.rate is None:
        raise ConfigError("calibrate needs an open-loop workload (Workload(rate=...))")
    layers = layers or Layers()
    other = dataclasses.replace(workload, seed=workload.seed + 100)
    model, _ = measure_service(other, layers=layers, link=link, progress=progress)
    truth, measured = measure_service(workload, layers=layers, link=link, progress=progress)
    sim = replay(workload, model, layers=layers)
    hit = (float(truth.info["stats"]["cache_hit_ratio"]), sim.hit_ratio)
    table = compare(measured.filter(pl.col("ok")), sim.requests, hit)
    return Calibration(table, measured, sim.requests, model)
