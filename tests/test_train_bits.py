"""Training's results: the digits MLP trained 3 epochs with Adam ends where an independent numpy loop does, and
the steady path (bound feeds, generated code, flat Adam) gives the bits of the interpreter's path.

The data are random images of the digits' shape (no scikit-learn needed), with a short last batch.
``python -m benchmarks.training_step --bits`` checks the real digits against an earlier commit's bits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import graphengine
from graphengine.engine.plan import _interpreted

DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits" / "mlp.json"
HYPER = {"lr": 0.003, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
EPOCHS, BATCH, EXAMPLES = 3, 32, 330  # 11 batches an epoch, the last of 10 examples


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.integers(0, 17, (EXAMPLES, 64)) / 16.0, rng.integers(0, 10, EXAMPLES)


def _train(dtype: str, interpreted: bool = False) -> dict[str, np.ndarray]:
    doc = json.loads(DIGITS.read_text())
    doc["dtype"] = dtype
    graph = graphengine.load_dict(doc)
    x, labels = _data()
    plan = graph.compile()
    gradient_fn: Any = (lambda feeds, wrt: _interpreted(plan, feeds, wrt)) if interpreted else None
    result = graphengine.train(
        graph, {"x": x.astype(dtype), "label": labels}, epochs=EPOCHS, batch_size=BATCH, optimizer="adam",
        hyper=HYPER, metric="accuracy", progress="none", gradient_fn=gradient_fn,
    )  # fmt: skip
    assert result.steps == EPOCHS * 11
    return {name: np.array(value) for name, value in graph.parameters.items()}


def _numpy_reference() -> dict[str, np.ndarray]:
    """The same training by hand in float64: forward, backward, PyTorch's Adam, the same shuffled batches."""
    doc = json.loads(DIGITS.read_text())
    p = {entry["name"]: np.array(entry["value"], dtype=np.float64) for entry in doc["parameters"]}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    x, labels = _data()
    t = 0
    for epoch in range(1, EPOCHS + 1):
        order = np.random.default_rng([0, 0, epoch]).permutation(EXAMPLES)
        for start in range(0, EXAMPLES, BATCH):
            index = order[start : start + BATCH]
            xb, yb, n = x[index], labels[index], len(index)
            h_pre = xb @ p["W1"].T + p["b1"]
            h = np.maximum(h_pre, 0)
            logits = h @ p["W2"].T + p["b2"]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            d_logits = e / e.sum(axis=1, keepdims=True)
            d_logits[np.arange(n), yb] -= 1
            d_logits /= n
            d_h = (d_logits @ p["W2"]) * (h_pre > 0)
            grads = {"W1": d_h.T @ xb, "b1": d_h.sum(0), "W2": d_logits.T @ h, "b2": d_logits.sum(0)}
            t += 1
            for k, g in grads.items():
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                p[k] = p[k] - 0.003 * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
    return p


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return _numpy_reference()


@pytest.mark.parametrize("dtype,atol", [("float64", 1e-12), ("float32", 2e-6)])
def test_three_epochs_of_adam_end_at_the_numpy_loops_parameters(
    dtype: str, atol: float, reference: dict[str, np.ndarray]
) -> None:
    params = _train(dtype)
    initial = {e["name"]: np.array(e["value"]) for e in json.loads(DIGITS.read_text())["parameters"]}
    assert all(np.max(np.abs(params[k] - initial[k])) > 1e-3 for k in params)  # they moved: 33 steps of lr 0.003
    for name, value in params.items():
        assert value.dtype == np.dtype(dtype)
        assert np.max(np.abs(value - reference[name])) < atol, name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_steady_path_trains_to_the_interpreters_bits(dtype: str) -> None:
    steady, interpreted = _train(dtype), _train(dtype, interpreted=True)
    assert steady.keys() == interpreted.keys()
    for name in steady:
        assert np.array_equal(steady[name], interpreted[name]), name
