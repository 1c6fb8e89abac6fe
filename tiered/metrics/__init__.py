"""Metrics: latency histograms (more of the observability layer lands here)."""

from tiered.metrics.histogram import Histogram

__all__ = ["Histogram"]
