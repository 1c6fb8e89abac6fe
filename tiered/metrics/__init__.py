"""Metrics: latency histograms, the per-operation registry with its phases, and exporters."""

from tiered.metrics.histogram import Histogram
from tiered.metrics.http import MetricsServer, serve_metrics
from tiered.metrics.registry import (
    PHASES,
    QUANTILES,
    Metrics,
    OperationSnapshot,
    PhaseSnapshot,
)

__all__ = [
    "PHASES",
    "QUANTILES",
    "Histogram",
    "Metrics",
    "MetricsServer",
    "OperationSnapshot",
    "PhaseSnapshot",
    "serve_metrics",
]
