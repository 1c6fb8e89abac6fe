"""How a script uses the blocking API; ``mypy --strict`` checks it in ``make test``
(``tests/test_sync_api.py``), so every blocking call is typed as its awaited twin."""

from __future__ import annotations

from tiered import CacheConfig, Episode, SyncStore, open_sync


def newest(store: SyncStore, domain: str) -> list[Episode]:
    return store.query_episodes(domain=domain, limit=10)


def main(url: str) -> int:
    with open_sync(url, cache=CacheConfig(staleness=None)) as store:
        ep: Episode | None = store.get_episode("e1")
        n: int = store.store_episodes([] if ep is None else [ep])
        found = store.get_episodes(["e1", "e2"])
        return n + len(found) + len(newest(store, "web")) + int(store.closed)
