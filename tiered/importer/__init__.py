"""``tiered import``: the original system's databases onto tiered.

* :mod:`.mapping`: the pure mapping of the original's rows (its exact encoding) onto records;
* :mod:`.verify`: the comparison of imported records with their source rows, by a path that
  shares nothing with the mapping;
* :mod:`.run`: the import itself (survey, per-table import in checkpointed transactions, verify).
"""

from tiered.importer.mapping import map_embedding, map_episode, map_heuristic, map_pattern
from tiered.importer.run import ImportReport, Issue, import_database

__all__ = [
    "ImportReport",
    "Issue",
    "import_database",
    "map_embedding",
    "map_episode",
    "map_heuristic",
    "map_pattern",
]
