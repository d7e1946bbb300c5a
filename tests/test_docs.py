"""The docstring examples are tests too (they run from the repository root)."""

from __future__ import annotations

import doctest
import importlib

import pytest
from conftest import ROOT


def _all_modules() -> list[str]:
    """Every module of the package and of the standard op library: all their doctests run."""
    import pkgutil

    import graphengine_std

    import graphengine

    names = ["graphengine", "graphengine_std"]
    for package in (graphengine, graphengine_std):
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".") if not m.name.endswith("__main__")]
    return sorted(names)


MODULES = _all_modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
