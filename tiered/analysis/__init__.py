"""Read-only analysis of a user's deployment: sources, analyses, recommendations
(``tiered analyze``). See :mod:`tiered.analysis.analyze`."""

from tiered.analysis.analyze import Analysis, Recommendation, analyze
from tiered.analysis.profile import CompressionProjection, decode_envelope
from tiered.analysis.sources import Target, TrafficSeries, detect_layout, open_target, traffic_file
from tiered.analysis.traffic import TrafficPlan, plan_traffic

__all__ = [
    "Analysis",
    "CompressionProjection",
    "Recommendation",
    "Target",
    "TrafficPlan",
    "TrafficSeries",
    "analyze",
    "decode_envelope",
    "detect_layout",
    "open_target",
    "plan_traffic",
    "traffic_file",
]
