"""The blocking API is the Store's, typed: generated from it, checked against it, and checked
by mypy like the async one."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tests import gen_sync
from tiered import Store, SyncStore, open_sync

HERE = Path(__file__).resolve().parent


def test_every_coroutine_method_of_the_store_is_a_typed_blocking_method() -> None:
    for name in gen_sync.forwarded():
        a, s = getattr(Store, name), getattr(SyncStore, name, None)
        assert s is not None, f"SyncStore has no {name}: run python tests/gen_sync.py"
        sa, ss = inspect.signature(a), inspect.signature(s)
        assert list(ss.parameters.values()) == list(sa.parameters.values()), name
        assert ss.return_annotation == sa.return_annotation, name
        assert inspect.getdoc(s) == inspect.getdoc(a), name
    # and nothing else public that is not the Store's (or the facade's own few)
    own = {"close", "closed", "config", "metrics", "get_stats", "store"}
    extra = {n for n in dir(SyncStore) if not n.startswith("_")} - own
    assert extra == set(gen_sync.forwarded())
    # the generated block is what the generator writes (modulo formatting): same names
    assert gen_sync.current().count("    def ") == len(gen_sync.forwarded())


def test_open_sync_takes_what_store_open_takes() -> None:
    opened = list(inspect.signature(Store.open).parameters.values())
    for fn in (open_sync, SyncStore.__init__):
        params = list(inspect.signature(fn).parameters.values())
        params = [p for p in params if p.name != "self"]
        assert params == opened, fn


def test_a_drifted_signature_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a Store method with a new parameter is not SyncStore's."""

    async def get_episode(self: Store, episode_id: str, fresh: bool = False) -> None: ...

    monkeypatch.setattr(Store, "get_episode", get_episode)
    with pytest.raises(AssertionError):
        test_every_coroutine_method_of_the_store_is_a_typed_blocking_method()


def test_mypy_checks_blocking_calls(tmp_path: Path) -> None:
    mypy = pytest.importorskip("mypy.api")
    usage = HERE / "typing" / "sync_usage.py"
    out, err, code = mypy.run(["--strict", "--no-incremental", str(usage)])
    assert code == 0, out + err
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from tiered import open_sync\n"
        "s = open_sync('file:x.db')\n"
        "s.get_episode(123)\n"
        "n: str = s.store_episodes([])\n"
    )
    out, _, code = mypy.run(["--strict", "--no-incremental", str(wrong)])
    assert code == 1
    assert 'Argument 1 to "get_episode" of "SyncStore" has incompatible type "int"' in out
    assert 'Incompatible types in assignment (expression has type "int"' in out
