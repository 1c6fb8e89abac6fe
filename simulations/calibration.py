"""Scenario: see `tiered.scenarios.run_calibration`. Writes data/results/*.parquet.

Run headless: `python simulations/calibration.py` (or all of them through `tiered report`).
"""

from tiered.scenarios import run_calibration

if __name__ == "__main__":
    print(run_calibration())
