"""Scenario: see `tiered.scenarios.run_pool_policies`. Writes data/results/*.parquet.

Run headless: `python simulations/pool_policies.py` (or all of them through `tiered report`).
"""

from tiered.scenarios import run_pool_policies

if __name__ == "__main__":
    print(run_pool_policies())
