"""The `graphengine` command: same answers as the API, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SEED, SINE_PLUGIN

import graphengine
from graphengine.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate(capsys) -> None:
    code, out, _ = run_cli(capsys, "validate", str(SEED))
    assert code == 0 and "valid" in out and "4 parameters" in out


def test_run_json(capsys) -> None:
    code, out, _ = run_cli(capsys, "run", str(SEED), "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert data["outputs"]["loss"] == pytest.approx(0.298371109, abs=1e-9)


def test_run_with_inline_and_npy_feeds(capsys, tmp_path) -> None:
    target = tmp_path / "target.npy"
    np.save(target, np.array([0.5, 0.5]))
    code, out, _ = run_cli(capsys, "run", str(SEED), "--feed", "x=[1, 2]", "--feed", f"target={target}", "--format", "json")
    expected = graphengine.load(SEED).run({"x": [1.0, 2.0], "target": [0.5, 0.5]})
    assert code == 0
    assert json.loads(out)["outputs"]["loss"] == pytest.approx(float(expected["loss"]))


def test_grad_json_equals_the_api(capsys) -> None:
    code, out, _ = run_cli(capsys, "grad", str(SEED), "--format", "json")
    data = json.loads(out)
    api = graphengine.load(SEED).grad()
    assert code == 0 and set(data) == {"outputs", "gradients"}
    for name, value in api.items():
        np.testing.assert_allclose(data["gradients"][name], value, rtol=1e-15)


def test_grad_text_shows_loss_and_every_weight(capsys) -> None:
    code, out, _ = run_cli(capsys, "grad", str(SEED))
    assert code == 0
    assert "loss" in out and "0.298371109" in out
    for name in ("W_h", "W_o", "b_h", "b_o"):
        assert name in out
    assert "0.08216704" in out and "0.00043856773" in out


def test_grad_wrt_subset(capsys) -> None:
    code, out, _ = run_cli(capsys, "grad", str(SEED), "--wrt", "W_h", "--wrt", "x", "--format", "json")
    assert code == 0 and set(json.loads(out)["gradients"]) == {"W_h", "x"}


def test_ops_lists_sources_and_vjps(capsys) -> None:
    code, out, _ = run_cli(capsys, "ops", "--format", "json")
    ops = {row["op"]: row for row in json.loads(out)["ops"]}
    assert code == 0
    assert "entry point 'std'" in ops["linear"]["source"]
    assert ops["softmax_cross_entropy"]["inputs"] == ["logits", "labels (no grad)"]
    code, out, _ = run_cli(capsys, "ops", "--plugin", str(SINE_PLUGIN))
    assert "sin" in out and "sine.py" in out


def test_check_op(capsys) -> None:
    code, out, _ = run_cli(capsys, "check-op", "linear")
    assert code == 0 and "agrees" in out
    code, out, _ = run_cli(capsys, "check-op", "sin", "--plugin", str(SINE_PLUGIN))
    assert code == 0 and "sin: 2 samples" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["check-op", "sigmod"], "did you mean 'sigmoid'"),
        (["grad", "examples/nope.json"], "cannot read graph file"),
        (["run", str(SEED), "--feed", "x=[1, 2"], "neither JSON nor a .npy file"),
        (["run", str(SEED), "--feed", "xx=[1, 2]"], "did you mean 'x'"),
        (["run", str(SEED), "--feed", "x=[1, 2, 3]"], "does not match the declared (2,)"),
        (["grad", str(SEED), "--wrt", "W_x"], "did you mean"),
        (["ops", "--plugin", "no_such_plugin_module"], "failed to import"),
    ],
)
def test_errors_are_one_line_with_nonzero_status(capsys, argv, fragment) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith("graphengine: error: ") and err.count("\n") == 1
    assert fragment in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys) -> None:
    with pytest.raises(graphengine.FeedError):
        main(["--debug", "run", str(SEED), "--feed", "xx=1"])


def test_file_errors_name_file_path_and_node(capsys, tmp_path) -> None:
    doc = json.loads(SEED.read_text())
    doc["nodes"][1]["op"] = "sigmod"
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(doc))
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 1
    assert f"{path}: $.nodes[1].op (node 'h'): unknown op 'sigmod'; did you mean 'sigmoid'?" in err


def test_console_script_installed() -> None:
    # Beside the interpreter, as pip installs it: a venv's scripts need not be on PATH (it may not be activated).
    exe = shutil.which("graphengine", path=str(Path(sys.executable).parent))
    assert exe, f"the graphengine console script is not installed beside {sys.executable}"
    proc = subprocess.run([exe, "grad", str(SEED), "--format", "json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outputs"]["loss"] == pytest.approx(0.298371109, abs=1e-9)
    proc = subprocess.run([sys.executable, "-m", "graphengine", "validate", "missing.json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
