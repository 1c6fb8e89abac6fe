"""Scenarios and calibration: the top floor, above the bench (real stack) and the simulator.

What ``simulations/*.py`` run, ``tiered report`` runs and the notebooks plot (results in
``data/results/``): :mod:`tiered.scenarios.runs` (pool policies and their frontiers:
:mod:`tiered.scenarios.policies`); the simulator against the real stack:
:mod:`tiered.scenarios.fidelity`.
"""

from tiered.scenarios.fidelity import Calibration, calibrate, compare, measure_service
from tiered.scenarios.policies import (
    POLICIES,
    PolicyComparison,
    Setting,
    pool_policies,
    scaled_rate,
    sweep_settings,
)
from tiered.scenarios.runs import (
    RESULTS,
    SLO_LATE_SHARE,
    cache_sizes,
    layer_breakdown,
    load_service,
    run_breakdown,
    run_cache_sizes,
    run_calibration,
    run_pool_policies,
    validate_fluid,
)

__all__ = [
    "POLICIES",
    "RESULTS",
    "SLO_LATE_SHARE",
    "Calibration",
    "PolicyComparison",
    "Setting",
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
    "sweep_settings",
    "validate_fluid",
]
