"""Training: optimizers against their textbook formulas, the seed network against its published
10,000-step result, data checks, atomic saving, checkpoints, resume, Ctrl-C, NaN stops, CLI, digits."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, SEED, classifier_doc

import graphengine
import graphengine.cli
from graphengine.errors import DataError, DuplicateOpError, NonFiniteError, PluginImportError, SaveError, TrainingError
from graphengine.format import atomic_write
from graphengine.graph import save
from graphengine.training import read_checkpoint
from graphengine.training.data import load_data
from graphengine.training.optimizers import default_optimizers, make_optimizer

DIGITS = EXAMPLES / "digits"
QUIET: dict[str, Any] = {"progress": "none"}


def blobs(n: int = 90, seed: int = 3) -> dict[str, np.ndarray]:
    """Three Gaussian blobs in 4-D: separable, so accuracy should climb."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = np.array([[2, 0, 0, 1], [-2, 1, 0, 0], [0, -2, 2, 0]], dtype=float)
    return {"x": centers[y] + rng.normal(0, 0.7, (n, 4)), "y": y.astype(np.int64)}


@pytest.fixture
def classifier(write_graph: Any) -> Path:
    return write_graph(classifier_doc(), "clf.json")


@pytest.fixture
def blob_file(tmp_path: Path) -> Path:
    path = tmp_path / "blobs.npz"
    np.savez(path, **blobs())
    return path


# --- optimizers ------------------------------------------------------------------------------


def test_sgd_one_step_reproduces_the_published_seed_weights() -> None:
    g = graphengine.load(SEED)
    graphengine.train(g, steps=1, lr=0.5, freeze=["b_h", "b_o"], **QUIET)
    # Mazur (2015): w1..w4 and w5..w8 after one update with learning rate 0.5.
    np.testing.assert_allclose(g.parameters["W_h"], [[0.149780716, 0.19956143], [0.24975114, 0.29950229]], atol=1e-8)
    np.testing.assert_allclose(g.parameters["W_o"], [[0.35891648, 0.408666186], [0.511301270, 0.561370121]], atol=1e-8)


def test_seed_network_10000_steps_matches_the_published_error() -> None:
    """The classic worked example: after 10,000 rounds of SGD (lr 0.5, biases fixed) the error is 0.0000351085."""
    g = graphengine.load(SEED)
    biases = (g.parameters["b_h"].copy(), g.parameters["b_o"].copy())
    result = graphengine.train(g, steps=10_000, lr=0.5, freeze=["b_h", "b_o"], **QUIET)
    assert result.steps == 10_000 and result.status == "completed"
    # The error at the 10,000th round (forward pass of that round, before its update).
    assert result.history[-1]["loss"] == pytest.approx(0.0000351085, rel=2e-6)
    assert result.final["loss"] < result.history[-1]["loss"]  # one more update lowers it further
    assert float(g.parameters["b_h"]) == float(biases[0]) and float(g.parameters["b_o"]) == float(biases[1])
    y = g.run()["y"]
    np.testing.assert_allclose(y, [0.015912196, 0.984065734], atol=5e-6)  # published outputs


def test_momentum_follows_its_formula() -> None:
    params = {"w": np.array([1.0, -2.0])}
    opt = make_optimizer("momentum", {"lr": 0.1, "momentum": 0.5}, params)
    grads = [np.array([0.5, 1.0]), np.array([-1.0, 2.0]), np.array([0.25, 0.0])]
    w, v = np.array([1.0, -2.0]), np.zeros(2)
    for g in grads:
        opt.update(params, {"w": g})
        v = 0.5 * v + g
        w = w - 0.1 * v
    np.testing.assert_allclose(params["w"], w, rtol=1e-15)


def test_nesterov_follows_its_formula() -> None:
    params = {"w": np.array([1.0])}
    opt = make_optimizer("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, params)
    opt.update(params, {"w": np.array([2.0])})
    opt.update(params, {"w": np.array([1.0])})
    v1 = 2.0
    w1 = 1.0 - 0.1 * (2.0 + 0.9 * v1)
    v2 = 0.9 * v1 + 1.0
    assert params["w"][0] == pytest.approx(w1 - 0.1 * (1.0 + 0.9 * v2), rel=1e-15)


def test_adam_follows_kingma_and_ba() -> None:
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2))}
    w = params["w"].copy()
    opt = make_optimizer("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}, params)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(1, 6):
        g = rng.normal(size=w.shape)
        opt.update(params, {"w": g})
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        m_hat, v_hat = m / (1 - 0.8**t), v / (1 - 0.99**t)
        w = w - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-6)
    np.testing.assert_allclose(params["w"], w, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_optimizers_train_and_keep_the_dtype(name: str, dtype: str) -> None:
    g = graphengine.load_dict(classifier_doc(dtype))
    before = graphengine.evaluate(g, blobs(), metric="accuracy")
    lr = {"sgd": 0.5, "momentum": 0.1, "adam": 0.05}[name]
    result = graphengine.train(g, blobs(), epochs=15, batch_size=10, optimizer=name, lr=lr, metric="accuracy", **QUIET)
    assert result.final["loss"] < before["loss"] / 3
    assert result.final["accuracy"] >= 0.95
    assert all(p.dtype == np.dtype(dtype) for p in g.parameters.values())


def test_optimizer_errors_are_clear() -> None:
    params = {"w": np.zeros(2)}
    with pytest.raises(TrainingError, match=r"unknown optimizer 'adma'.*did you mean 'adam'"):
        make_optimizer("adma", {}, params)
    with pytest.raises(TrainingError, match=r"optimizer 'adam': unknown hyper-parameter 'momentum' \(hyper-parameters: lr, beta1"):
        make_optimizer("adam", {"momentum": 0.9}, params)
    with pytest.raises(TrainingError, match=r"optimizer 'sgd': lr: Input should be greater than 0"):
        make_optimizer("sgd", {"lr": -1}, params)


PLUGIN = '''
import numpy as np
from graphengine.training.optimizers import Optimizer
from pydantic import BaseModel, ConfigDict

class SignSGD(Optimizer):
    name = "signsgd"
    class Hyper(BaseModel):
        model_config = ConfigDict(extra="forbid")
        lr: float = 0.01
    def update(self, params, grads):
        self.t += 1
        for k, g in grads.items():
            params[k] -= self.hyper.lr * np.sign(g)

OPTIMIZERS = [SignSGD]
'''


def test_plugins_add_optimizers_like_ops(tmp_path: Path, classifier: Path, blob_file: Path) -> None:
    plugin = tmp_path / "signsgd.py"
    plugin.write_text(PLUGIN)
    registry = default_optimizers([str(plugin)])
    assert "signsgd" in registry and "adam" in registry
    params = {"w": np.array([1.0, 1.0])}
    opt = make_optimizer("signsgd", {"lr": 0.25}, params, registry)
    opt.update(params, {"w": np.array([-3.0, 0.5])})
    assert params["w"].tolist() == [1.25, 0.75]
    # From the CLI, through --plugin.
    out = tmp_path / "clf.out.json"
    code = graphengine.cli.main(["train", str(classifier), "--plugin", str(plugin), "--data", str(blob_file), "--optimizer", "signsgd", "--lr", "0.01", "--epochs", "2", "-o", str(out), "--quiet"])
    assert code == 0 and out.exists()
    # A second plugin defining the same name is an error naming both.
    twin = tmp_path / "twin.py"
    twin.write_text(PLUGIN)
    with pytest.raises(DuplicateOpError, match="optimizer 'signsgd' is defined twice"):
        default_optimizers([str(plugin), str(twin)])
    bad = tmp_path / "bad.py"
    bad.write_text("OPTIMIZERS = [42]\n")
    with pytest.raises(PluginImportError, match="not an Optimizer subclass"):
        default_optimizers([str(bad)])


# --- determinism, validation, metrics --------------------------------------------------------


def test_training_is_deterministic_given_a_seed(classifier: Path) -> None:
    def run(seed: int) -> dict[str, np.ndarray]:
        g = graphengine.load(classifier)
        graphengine.train(g, blobs(), epochs=3, batch_size=8, optimizer="adam", lr=0.01, seed=seed, validation_split=0.2, **QUIET)
        return g.parameters

    a, b, c = run(1), run(1), run(2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_validation_split_and_history(classifier: Path, tmp_path: Path) -> None:
    g = graphengine.load(classifier)
    result = graphengine.train(
        g, blobs(), epochs=4, batch_size=16, optimizer="adam", lr=0.02, validation_split=0.25, metric="accuracy",
        history_path=tmp_path / "h.json", **QUIET,
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["step"] == 4 * 5  # 68 training examples in batches of 16
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(result.history[0])
    saved = json.loads((tmp_path / "h.json").read_text())
    assert saved["status"] == "completed" and saved["epochs"] == result.history and saved["final"] == result.final


def test_accuracy_is_counted_not_assumed(classifier: Path) -> None:
    g = graphengine.load(classifier)
    data = blobs()
    logits = g.run({"x": data["x"], "y": data["y"]})["logits"]
    expected = float(np.mean(np.argmax(logits, axis=1) == data["y"]))
    assert graphengine.evaluate(g, data, metric="accuracy")["accuracy"] == pytest.approx(expected)


# --- saving ----------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["inline", "npz"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_saved_graph_loads_and_runs_the_same(tmp_path: Path, weights: str, dtype: str) -> None:
    g = graphengine.load_dict(classifier_doc(dtype))
    graphengine.train(g, blobs(), epochs=2, lr=0.3, **QUIET)
    saved = save(g, tmp_path / "out.json", weights=weights)  # type: ignore[arg-type]
    assert (saved.npz is not None) == (weights == "npz")
    again = graphengine.load(saved.path)
    for name, value in g.parameters.items():
        assert again.parameters[name].dtype == value.dtype
        np.testing.assert_array_equal(again.parameters[name], value)  # exact, not approximately
    feeds = {"x": blobs()["x"], "y": blobs()["y"]}
    np.testing.assert_array_equal(again.run(feeds)["logits"], g.run(feeds)["logits"])


def test_save_never_replaces_the_input_or_an_existing_file_unless_asked(tmp_path: Path) -> None:
    source = tmp_path / "seed.json"
    source.write_bytes(SEED.read_bytes())
    g = graphengine.load(source)
    g.parameters["W_h"] = g.parameters["W_h"] * 2
    with pytest.raises(SaveError, match="is the input graph file; it is only replaced when asked"):
        save(g, source, overwrite=True)
    assert source.read_bytes() == SEED.read_bytes()
    other = tmp_path / "other.json"
    other.write_text("keep me")
    with pytest.raises(SaveError, match="exists; pass --overwrite"):
        save(g, other)
    assert other.read_text() == "keep me"
    save(g, source, overwrite_input=True)
    np.testing.assert_array_equal(graphengine.load(source).parameters["W_h"], g.parameters["W_h"])


def test_a_failing_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.json"
    target.write_text("old contents")

    def half_then_crash(f: Any) -> None:
        f.write(b"{\"format\": \"graph")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]  # no temp file left behind

    g = graphengine.load(SEED)

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(SaveError, match="No space left on device"):
        save(g, target, overwrite=True)
    assert target.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".npz") == ["model.json"]


def test_npz_weights_are_content_addressed_and_stale_ones_removed(tmp_path: Path) -> None:
    g = graphengine.load(SEED)
    first = save(g, tmp_path / "m.json", weights="npz")
    g.parameters["W_o"] = g.parameters["W_o"] + 1
    second = save(g, tmp_path / "m.json", weights="npz", overwrite=True)
    assert first.npz != second.npz and second.npz is not None and second.npz.exists() and not first.npz.exists()  # type: ignore[union-attr]
    assert graphengine.load(second.path).parameters["W_o"][0, 0] == pytest.approx(1.40)


def test_save_refuses_nonfinite_values(tmp_path: Path) -> None:
    g = graphengine.load(SEED)
    g.parameters["W_h"] = np.full((2, 2), np.nan)
    with pytest.raises(SaveError, match="'W_h' holds NaN or Inf"):
        save(g, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


# --- checkpoints, resume, interruption -------------------------------------------------------


def test_interrupt_saves_a_checkpoint_that_loads_and_resumes_exactly(classifier: Path, tmp_path: Path) -> None:
    options = dict(epochs=4, batch_size=8, optimizer="adam", lr=0.01, seed=5, metric="accuracy", **QUIET)
    reference = graphengine.load(classifier)
    full = graphengine.train(reference, blobs(), **options)

    def stop_at_17(info: dict[str, Any]) -> None:
        if info["step"] == 17:  # inside epoch 2 (12 batches per epoch)
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.ckpt.json"
    g = graphengine.load(classifier)
    stopped = graphengine.train(g, blobs(), checkpoint=ckpt, on_step=stop_at_17, **options)
    assert stopped.status == "interrupted" and stopped.steps == 17 and stopped.checkpoint is not None
    loaded = graphengine.load(ckpt)  # a checkpoint is a graph file like any other
    for name, value in g.parameters.items():
        np.testing.assert_array_equal(loaded.parameters[name], value)
    _, opt_state, state = read_checkpoint(ckpt, loaded)
    assert state["step"] == 17 and state["epoch"] == 1 and state["batch"] == 5 and int(opt_state["t"]) == 17

    resumed_graph = graphengine.load(classifier)
    resumed = graphengine.train(resumed_graph, blobs(), resume=ckpt, **options)
    assert resumed.status == "completed" and resumed.steps == full.steps
    for name, value in reference.parameters.items():
        np.testing.assert_array_equal(resumed_graph.parameters[name], value)  # bit for bit
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]


def test_resume_continues_to_more_epochs_and_checks_compatibility(classifier: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt.json"
    g = graphengine.load(classifier)
    graphengine.train(g, blobs(), epochs=2, batch_size=30, checkpoint=ckpt, checkpoint_every=1, optimizer="momentum", lr=0.05, **QUIET)
    more = graphengine.train(graphengine.load(classifier), blobs(), epochs=5, batch_size=30, resume=ckpt, optimizer="momentum", lr=0.05, **QUIET)
    assert [r["epoch"] for r in more.history] == [1, 2, 3, 4, 5] and more.steps == 15
    with pytest.raises(TrainingError, match="was made with optimizer 'momentum', not 'adam'"):
        graphengine.train(graphengine.load(classifier), blobs(), epochs=5, resume=ckpt, optimizer="adam", **QUIET)
    with pytest.raises(TrainingError, match="does not fit the graph: parameter 'W_h'"):
        graphengine.train(graphengine.load(SEED), epochs=5, resume=ckpt, **QUIET)
    plain = save(graphengine.load(classifier), tmp_path / "plain.json", weights="npz")
    with pytest.raises(TrainingError, match="not a checkpoint"):
        graphengine.train(graphengine.load(classifier), blobs(), resume=plain.path, **QUIET)


def test_sigint_stops_the_cli_after_a_step_and_writes_a_checkpoint(tmp_path: Path) -> None:
    source = tmp_path / "seed.json"
    source.write_bytes(SEED.read_bytes())
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphengine", "train", str(source), "--lr", "0.5", "--steps", "100000000", "--log-format", "json", "--log-every", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert json.loads(first)["event"] == "epoch"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    events = [json.loads(line) for line in (first + out).splitlines()]
    assert any(e["event"] == "note" and "interrupted at step" in e["message"] for e in events)
    ckpt = tmp_path / "seed.trained.ckpt.json"
    loaded = graphengine.load(ckpt)
    _, _, state = read_checkpoint(ckpt, loaded)
    assert state["step"] >= 1
    assert loaded.run()["loss"] < 0.298371109  # trained, not the initial loss
    assert not (tmp_path / "seed.trained.json").exists()  # an interrupted run writes a checkpoint, not a result
    assert not list(tmp_path.glob(".*tmp"))


def regression_doc() -> dict[str, Any]:
    return {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None, 1]}, {"name": "t", "shape": [None, 1]}],
        "parameters": [{"name": "W", "value": [[0.5]]}, {"name": "b", "value": [0.0]}],
        "nodes": [
            {"id": "y", "op": "linear", "inputs": ["x", "W", "b"]},
            {"id": "loss", "op": "squared_error", "inputs": ["y", "t"], "attrs": {"reduction": "sum"}},
        ],
        "outputs": ["loss"],
    }


def test_a_diverging_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(write_graph: Any, tmp_path: Path) -> None:
    g = graphengine.load(write_graph(regression_doc()))
    x = np.linspace(-3, 3, 20)[:, None]
    data = {"x": x, "t": 2 * x}
    ckpt = tmp_path / "r.ckpt.json"
    with pytest.raises(NonFiniteError, match=r"at step (\d+) \(epoch \1, batch 1/1\); training stopped before applying it") as info:
        graphengine.train(g, data, epochs=10_000, batch_size=20, lr=5.0, checkpoint=ckpt, checkpoint_every=10, history_path=tmp_path / "h.json", **QUIET)
    step = info.value.step
    assert 20 < step < 10_000 and info.value.checkpoint == str(ckpt)
    assert "the last good checkpoint" in str(info.value)
    assert all(np.isfinite(v).all() for v in g.parameters.values())  # the bad update was not applied
    loaded = graphengine.load(ckpt)
    _, _, state = read_checkpoint(ckpt, loaded)
    assert state["step"] == (step - 1) // 10 * 10  # the last one written before the loss blew up
    assert all(np.isfinite(v).all() for v in loaded.parameters.values())
    assert json.loads((tmp_path / "h.json").read_text())["status"] == "nonfinite"


# --- bad data --------------------------------------------------------------------------------


def test_missing_array_names_the_input(classifier: Path, tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 4)))
    with pytest.raises(DataError, match=r"d.npz'?: no array 'y' for input 'y' \(\?,\), which has no default \(the data has: x\)"):
        graphengine.train(classifier, path, **QUIET)


def test_wrong_shape_names_the_input_and_both_shapes(classifier: Path) -> None:
    with pytest.raises(DataError, match=r"array 'x' has shape \(5, 3\) but input 'x' is declared \(\?, 4\), so the data must be \(N, 4\)"):
        graphengine.train(classifier, {"x": np.zeros((5, 3)), "y": np.zeros(5, dtype=np.int64)}, **QUIET)
    with pytest.raises(DataError, match=r"array 'y' has 4 examples but 'x' has 5"):
        graphengine.train(classifier, {"x": np.zeros((5, 4)), "y": np.zeros(4, dtype=np.int64)}, **QUIET)
    with pytest.raises(DataError, match=r"array 'x' has shape \(2,\) but input 'x' is declared \(2,\), so the data must be \(N, 2\), one example per row"):
        graphengine.train(SEED, {"x": [0.05, 0.1]}, **QUIET)


def test_nan_in_data_is_refused(classifier: Path) -> None:
    x = np.zeros((5, 4))
    x[3, 1] = np.nan
    with pytest.raises(DataError, match=r"array 'x' holds NaN \(1 value\(s\); first in example 3\)"):
        graphengine.train(classifier, {"x": x, "y": np.zeros(5, dtype=np.int64)}, **QUIET)


def test_labels_out_of_range_are_refused(classifier: Path) -> None:
    y = np.array([0, 1, 2, 3, 1])
    with pytest.raises(DataError, match=r"label 3 in 'y' \(example 3\) is out of range \[0, 3\) for node 'loss'"):
        graphengine.train(classifier, {"x": np.zeros((5, 4)), "y": y}, **QUIET)
    with pytest.raises(DataError, match=r"holds non-integer values but input 'y' is int64"):
        graphengine.train(classifier, {"x": np.zeros((5, 4)), "y": y.astype(float)}, **QUIET)


def test_unknown_arrays_get_did_you_mean(classifier: Path) -> None:
    with pytest.raises(DataError, match=r"array 'xx' matches no input of the graph \(inputs: x, y\); did you mean 'x'"):
        graphengine.train(classifier, {"xx": np.zeros((5, 4)), "y": np.zeros(5, dtype=np.int64)}, **QUIET)


def test_per_example_inputs_need_batch_size_one() -> None:
    data = {"x": [[0.05, 0.1], [0.1, 0.05]], "target": [[0.01, 0.99], [0.99, 0.01]]}
    with pytest.raises(TrainingError, match=r"input 'x' is declared \(2,\) with no free first dimension, so it takes one example per step"):
        graphengine.train(SEED, data, batch_size=4, **QUIET)
    result = graphengine.train(SEED, data, epochs=2, **QUIET)
    assert result.steps == 4


def test_csv_data(classifier: Path, tmp_path: Path) -> None:
    data = blobs(12)
    path = tmp_path / "d.csv"
    rows = ["x[0],x[1],x[2],x[3],y"] + [",".join([*(repr(float(v)) for v in row), str(label)]) for row, label in zip(data["x"], data["y"])]
    path.write_text("\n".join(rows) + "\n")
    g = graphengine.load(classifier)
    dataset = load_data(path, g)
    np.testing.assert_array_equal(dataset.arrays["x"], data["x"])
    assert dataset.arrays["y"].dtype == np.int64 and dataset.arrays["y"].tolist() == data["y"].tolist()
    path.write_text("x[0],x[1],x[2],y\n1,2,3,0\n")
    with pytest.raises(DataError, match=r"input 'x' is declared \(\?, 4\), so each row needs 4 column\(s\) x\[0\]..x\[3\]; the CSV has 3"):
        load_data(path, g)
    path.write_text("x[0],x[1],x[2],x[3],y\n1,2,oops,4,0\n")
    with pytest.raises(DataError, match=r"line 2, column 'x\[2\]': 'oops' is not a number"):
        load_data(path, g)
    path.write_text("x[0],x[1],x[2],x[3],y\n1,2,nan,4,0\n")
    with pytest.raises(DataError, match=r"array 'x' holds NaN"):
        load_data(path, g)


def test_bad_files(classifier: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        graphengine.train(classifier, tmp_path / "missing.npz", **QUIET)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read as .npz"):
        graphengine.train(classifier, junk, **QUIET)


# --- command line ----------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process (slower; for exit codes and stderr of a real run)."""
    return subprocess.run([sys.executable, "-m", "graphengine", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    """The command in this process: (exit status, stdout, stderr)."""
    code = graphengine.cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_trains_writes_the_graph_history_and_refuses_to_overwrite(classifier: Path, blob_file: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "trained.json"
    args = ["train", str(classifier), "--data", str(blob_file), "--epochs", "3", "--optimizer", "adam", "--lr", "0.02", "--metric", "accuracy", "-o", str(out)]
    code, stdout, stderr = cli(capsys, *args)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("epoch 1/3  step 3  loss ") and "accuracy" in lines[0]  # not a terminal: plain lines
    assert any(line.startswith("training completed: 3 epoch(s), 9 step(s)") for line in lines)
    assert graphengine.load(out).parameters["W1"].shape == (6, 4)
    history = json.loads((tmp_path / "trained.history.json").read_text())
    assert len(history["epochs"]) == 3
    code, _, stderr = cli(capsys, *args)
    assert code == 1
    assert stderr.strip().count("\n") == 0 and stderr.startswith("graphengine: error: output")
    assert "exists; pass --overwrite" in stderr


def test_cli_bad_data_is_one_line(classifier: Path, tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 3)), y=np.zeros(5, dtype=np.int64))
    proc = run_cli("train", str(classifier), "--data", str(path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "input 'x' is declared (?, 4)" in proc.stderr and "(5, 3)" in proc.stderr


def test_cli_json_log_and_quiet(classifier: Path, blob_file: Path, tmp_path: Path, capsys: Any) -> None:
    _, stdout, _ = cli(capsys, "train", str(classifier), "--data", str(blob_file), "--epochs", "2", "--log-format", "json", "-o", str(tmp_path / "a.json"))
    events = [json.loads(line) for line in stdout.splitlines()]
    assert [e["event"] for e in events] == ["epoch", "epoch", "summary"] and events[-1]["status"] == "completed"
    _, stdout, _ = cli(capsys, "train", str(classifier), "--data", str(blob_file), "--epochs", "2", "--quiet", "-o", str(tmp_path / "b.json"))
    assert stdout.startswith("training completed") and "epoch 1/2" not in stdout


def test_in_place_is_explicit(tmp_path: Path, capsys: Any) -> None:
    source = tmp_path / "seed.json"
    source.write_bytes(SEED.read_bytes())
    code, _, stderr = cli(capsys, "train", str(source), "--lr", "0.5", "--steps", "3", "-o", str(source))
    assert code == 1 and "is the input graph file" in stderr
    assert source.read_bytes() == SEED.read_bytes()
    code, _, stderr = cli(capsys, "train", str(source), "--lr", "0.5", "--steps", "3", "--in-place", "--quiet")
    assert code == 0, stderr
    assert graphengine.load(source).run()["loss"] < 0.298371109


def test_plot_without_matplotlib_is_a_clear_error(classifier: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    code = graphengine.cli.main(["train", str(classifier), "--plot", str(tmp_path / "p.png"), "-o", str(tmp_path / "o.json")])
    assert code == 1
    assert "--plot needs matplotlib, which is not installed: pip install 'graphengine[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()  # refused before training, not after


def test_plot_draws_the_curves(classifier: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (optional extra 'plot')")
    out = tmp_path / "curves.png"
    result = graphengine.train(classifier, blobs(), epochs=3, metric="accuracy", validation_split=0.2, plot=out, **QUIET)
    assert result.plot_path == out and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_bar_on_a_terminal(classifier: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    graphengine.train(classifier, blobs(), epochs=2, stream=stream)
    text = stream.getvalue()
    assert "\repoch 1/2 [" in text and "] 3/3 loss" in text and "training completed" in text


# --- the digits example ----------------------------------------------------------------------


def test_digits_mlp_reaches_95_percent(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the digits example needs scikit-learn (optional extra 'digits')")
    sys.path.insert(0, str(DIGITS))
    try:
        from prepare_data import prepare
    finally:
        sys.path.remove(str(DIGITS))
    train_file, test_file = prepare(tmp_path)
    # The example's own settings (examples/digits/README.md): they take well under a second here.
    result = graphengine.train(
        DIGITS / "mlp.json", train_file, test_data=test_file, epochs=40, batch_size=32, optimizer="adam", lr=0.003,
        metric="accuracy", validation_split=0.1, output=tmp_path / "mlp.trained.json", **QUIET,
    )
    assert result.test is not None and result.test["accuracy"] >= 0.95, result.test
    trained = graphengine.load(tmp_path / "mlp.trained.json")
    assert graphengine.evaluate(trained, test_file, metric="accuracy") == result.test


# --- a third-party loss: what training needs comes from its LossInfo, not its name ----------

HINGE_PLUGIN = '''
import numpy as np
from graphengine import LossInfo, OpDef, TensorSpec

def _margins(labels, scores):
    rows = np.arange(scores.shape[0])
    margins = 1 + scores - scores[rows, labels][:, None]
    margins[rows, labels] = 0
    return rows, margins

def hinge(labels, scores, *, attrs):
    _, margins = _margins(labels, scores)
    return np.asarray(np.maximum(margins, 0).sum() / scores.shape[0], dtype=scores.dtype)

def hinge_vjp(g, out, labels, scores, *, attrs):
    rows, margins = _margins(labels, scores)
    active = (margins > 0).astype(scores.dtype)
    active[rows, labels] = -active.sum(axis=1)
    return g * active / scores.shape[0]

def rule(labels, scores, *, attrs):
    return TensorSpec((), scores.dtype)

# Inputs in the "wrong" order on purpose: positions come from the names LossInfo declares.
OPS = [OpDef("multiclass_hinge", hinge, (None, hinge_vjp), rule, inputs=("labels", "scores"),
             loss=LossInfo(prediction="scores", target="labels", class_labels=True, reduction="mean"))]
'''


@pytest.fixture
def hinge_plugin(tmp_path: Path) -> Path:
    path = tmp_path / "hinge.py"
    path.write_text(HINGE_PLUGIN)
    return path


def hinge_doc() -> dict[str, Any]:
    doc = classifier_doc()
    doc["nodes"][-1] = {"id": "loss", "op": "multiclass_hinge", "inputs": ["y", "logits"]}
    return doc


def test_a_third_party_loss_gets_label_checks_and_accuracy(hinge_plugin: Path, write_graph: Any, tmp_path: Path, capsys: Any) -> None:
    graph_file = write_graph(hinge_doc(), "hinge.json")
    g = graphengine.load(graph_file, plugins=[str(hinge_plugin)])
    # Label range checks, from LossInfo.class_labels and the prediction's last axis.
    y = np.array([0, 1, 2, 3, 1])
    with pytest.raises(DataError, match=r"label 3 in 'y' \(example 3\) is out of range \[0, 3\) for node 'loss' \(multiclass_hinge over 3 classes\)"):
        graphengine.train(g, {"x": np.zeros((5, 4)), "y": y}, **QUIET)
    # Accuracy reads the logits and labels the loss declares, and is counted, not assumed.
    data = blobs()
    logits = g.run(data)["logits"]
    expected = float(np.mean(np.argmax(logits, axis=1) == data["y"]))
    assert graphengine.evaluate(g, data, metric="accuracy")["accuracy"] == pytest.approx(expected)
    result = graphengine.train(g, data, epochs=15, batch_size=10, optimizer="adam", lr=0.05, metric="accuracy", **QUIET)
    assert result.final["accuracy"] >= 0.95 and "accuracy" in result.history[-1]
    # The same through the command line, with the plugin.
    npz = tmp_path / "blobs.npz"
    np.savez(npz, **data)
    code, _, err = cli(capsys, "train", str(graph_file), "--plugin", str(hinge_plugin), "--data", str(npz), "--epochs", "2", "--metric", "accuracy", "--quiet")
    assert code == 0, err


def test_accuracy_needs_a_loss_that_declares_class_labels(write_graph: Any) -> None:
    g = graphengine.load(write_graph(regression_doc()))
    with pytest.raises(TrainingError, match=r"metric 'accuracy' needs exactly one loss node over class labels .* \(found none\)"):
        graphengine.train(g, {"x": np.zeros((3, 1)), "t": np.zeros((3, 1))}, metric="accuracy", **QUIET)


def test_train_takes_a_config_or_keywords_alike(classifier: Path) -> None:
    options: dict[str, Any] = dict(epochs=2, batch_size=8, optimizer="adam", lr=0.01, seed=3, progress="none")
    a, b, c = graphengine.load(classifier), graphengine.load(classifier), graphengine.load(classifier)
    ra = graphengine.train(a, blobs(), **options)
    rb = graphengine.train(b, blobs(), config=graphengine.training.TrainConfig(**options))
    rc = graphengine.train(c, blobs(), config=graphengine.training.TrainConfig(**{**options, "lr": 0.5}), lr=0.01)
    for name, value in a.parameters.items():
        np.testing.assert_array_equal(b.parameters[name], value)
        np.testing.assert_array_equal(c.parameters[name], value)  # keywords override the config
    assert [r["loss"] for r in ra.history] == [r["loss"] for r in rb.history] == [r["loss"] for r in rc.history]
    assert rc.optimizer["lr"] == 0.01
    with pytest.raises(TrainingError, match=r"train\(\): unknown key 'epoch'; did you mean 'epochs'\?"):
        graphengine.train(graphengine.load(classifier), blobs(), epoch=3, **QUIET)
