"""Scenario: see `tiered.scenarios.run_pool_learning`. Writes data/results/pool_learning.json
and pool_learning_hours.parquet (about a quarter of an hour on two cores; not part of
`tiered report`, whose notebook 03 reads the stored results).

Run headless: `python simulations/pool_learning.py`.
"""

import json

from tiered.scenarios.runs import run_pool_learning

if __name__ == "__main__":
    print(json.dumps(run_pool_learning()["checks"], indent=2))
