"""The package is typed throughout (it ships py.typed): mypy must find no errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

pytest.importorskip("mypy", reason="mypy is not installed (it is in the 'test' extra)")


def test_mypy_finds_no_errors(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--cache-dir", str(tmp_path / "cache"),
         str(ROOT / "graphengine"), str(ROOT / "plugins" / "graphengine_std")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
