"""The docstring examples are tests too (they run from the repository root)."""

from __future__ import annotations

import doctest
import importlib

import pytest

from conftest import ROOT

MODULES = [
    "graphengine",
    "graphengine.ops",
    "graphengine.registry",
    "graphengine.graph",
    "graphengine.plan",
    "graphengine.gradcheck",
    "graphengine.schema",
    "graphengine.cli",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
