"""The old import paths of what moved into the task packages (issue 23) still work for one release:
each warns (DeprecationWarning, naming the new path) and gives the very same object."""

from __future__ import annotations

import importlib
import sys

import pytest

from tying._moved import MOVED_MODULES, MOVED_NAMES


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_an_old_module_path_warns_and_is_the_new_module(old: str, new: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(new)
    spec = module.__spec__
    monkeypatch.delitem(sys.modules, old, raising=False)  # imported afresh, as by a user's first import
    with pytest.warns(DeprecationWarning, match=rf"^{old} moved to {new}; the old path will be removed in tying 0\.3$"):
        assert importlib.import_module(old) is module
    assert module.__spec__ is spec and module.__name__ == new  # the module keeps its own identity


def test_from_import_of_an_old_submodule_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    import tying.data
    import tying.tasks.translation.subword as new

    monkeypatch.delitem(sys.modules, "tying.data.subword", raising=False)
    monkeypatch.delattr(tying.data, "subword", raising=False)
    with pytest.warns(DeprecationWarning, match=r"tying\.data\.subword moved to tying\.tasks\.translation\.subword"):
        from tying.data import subword
    assert subword is new


@pytest.mark.parametrize(("package", "name"), sorted(MOVED_NAMES))
def test_an_old_name_warns_and_is_the_same_object(package: str, name: str) -> None:
    new = MOVED_NAMES[package, name]
    old_package = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=rf"^{package}\.{name} moved to {new}\.{name}; the old path will be removed"):
        assert getattr(old_package, name) is getattr(importlib.import_module(new), name)


def test_other_names_are_still_attribute_errors() -> None:
    import tying.data

    with pytest.raises(AttributeError, match=r"module 'tying\.data' has no attribute 'nope'"):
        tying.data.nope  # noqa: B018
    assert not hasattr(tying.data, "also_nope")
