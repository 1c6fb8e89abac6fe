"""Scenario: see `tiered.scenarios.run_breakdown`. Writes data/results/*.parquet.

Run headless: `python simulations/breakdown.py` (or all of them through `tiered report`).
"""

from tiered.scenarios import run_breakdown

if __name__ == "__main__":
    print(run_breakdown())
