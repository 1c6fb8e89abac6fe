"""Scenario: see `tiered.scenarios.run_cache_sizes`. Writes data/results/*.parquet.

Run headless: `python simulations/cache_sizes.py` (or all of them through `tiered report`).
"""

from tiered.scenarios import run_cache_sizes

if __name__ == "__main__":
    print(run_cache_sizes())
