"""Scenarios and calibration: the top floor, above the bench (real stack) and the simulator.

What ``simulations/*.py`` run, ``tiered report`` runs and the notebooks plot (results in
``data/results/``): :mod:`tiered.scenarios.runs`; the simulator against the real stack:
:mod:`tiered.scenarios.calibration`.
"""

from tiered.scenarios.calibration import Calibration, calibrate, compare, measure_service
from tiered.scenarios.runs import (
    RESULTS,
    PolicyComparison,
    cache_sizes,
    layer_breakdown,
    load_service,
    pool_policies,
    run_breakdown,
    run_cache_sizes,
    run_calibration,
    run_pool_policies,
    scaled_rate,
    validate_fluid,
)

__all__ = [
    "RESULTS",
    "Calibration",
    "PolicyComparison",
    "cache_sizes",
    "calibrate",
    "compare",
    "layer_breakdown",
    "load_service",
    "measure_service",
    "pool_policies",
    "run_breakdown",
    "run_cache_sizes",
    "run_calibration",
    "run_pool_policies",
    "scaled_rate",
    "validate_fluid",
]
