"""The 2-2-2 network of the founding question, against published values.

Reference: Matt Mazur, "A Step by Step Backpropagation Example" (2015). It
reports the forward values, the total error, and the weights after one SGD step
with learning rate 0.5, from which each gradient is (old - new) / 0.5.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SEED

import graphengine

LR = 0.5
# Published weights after one step: w1..w4 are W_h row-major, w5..w8 are W_o row-major.
PUBLISHED_NEW_W_H = np.array([[0.149780716, 0.19956143], [0.24975114, 0.29950229]])
PUBLISHED_NEW_W_O = np.array([[0.35891648, 0.408666186], [0.511301270, 0.561370121]])


@pytest.fixture(scope="module")
def graph() -> graphengine.Graph:
    return graphengine.load(SEED)


def test_forward_matches_published_values(graph: graphengine.Graph) -> None:
    values = graph.compile().run_all()
    np.testing.assert_allclose(values["h"], [0.593269992, 0.596884378], atol=1e-9)
    np.testing.assert_allclose(values["y"], [0.75136507, 0.772928465], atol=1e-8)
    assert float(values["loss"]) == pytest.approx(0.298371109, abs=1e-9)


def test_one_sgd_step_matches_published_weights(graph: graphengine.Graph) -> None:
    grads = graph.grad()
    W_h, W_o = graph.parameters["W_h"], graph.parameters["W_o"]
    np.testing.assert_allclose(W_o - LR * grads["W_o"], PUBLISHED_NEW_W_O, atol=1e-8)
    np.testing.assert_allclose(W_h - LR * grads["W_h"], PUBLISHED_NEW_W_H, atol=1e-8)
    assert grads["W_o"][0, 0] == pytest.approx(0.082167041, abs=1e-9)
    assert grads["W_h"][0, 0] == pytest.approx(0.000438568, abs=1e-9)


def test_every_gradient_agrees_with_finite_differences(graph: graphengine.Graph) -> None:
    results = graphengine.gradcheck(graph.compile())
    assert set(results) == {"W_h", "W_o", "b_h", "b_o"}


def test_hidden_gradient_is_the_sum_of_both_output_branches(graph: graphengine.Graph) -> None:
    """dE/dh_j = sum over outputs k of delta_k * W_o[k, j]: the transposed weight matrix, no branching logic."""
    values = graph.compile().run_all()
    y, target = values["y"], values["target"]
    delta_o = (y - target) * y * (1 - y)  # dE/dy_pre
    result = graph.value_and_grad(wrt=["h"], record=True)
    np.testing.assert_allclose(result.gradients["h"], graph.parameters["W_o"].T @ delta_o, rtol=1e-12)
    # Each hidden unit's gradient has one term per output unit.
    per_branch = delta_o[:, None] * graph.parameters["W_o"]  # [k, j]: branch through output k to hidden j
    np.testing.assert_allclose(per_branch.sum(axis=0), result.gradients["h"], rtol=1e-12)


def test_shared_bias_gradient_sums_over_units(graph: graphengine.Graph) -> None:
    """b_o is one number added to both output units, so its gradient sums both units' deltas."""
    values = graph.compile().run_all()
    y, target = values["y"], values["target"]
    delta_o = (y - target) * y * (1 - y)
    assert graph.grad()["b_o"] == pytest.approx(delta_o.sum(), rel=1e-12)


def test_float32_end_to_end(graph: graphengine.Graph) -> None:
    plan32 = graph.compile().with_dtype(np.dtype("float32"))
    result = plan32.value_and_grad()
    assert result.outputs["loss"].dtype == np.float32
    for name, g in result.gradients.items():
        assert g.dtype == np.float32, name
    reference = graph.grad()
    for name in reference:
        np.testing.assert_allclose(result.gradients[name], reference[name], rtol=1e-4, atol=1e-7)


def test_batched_feed_gives_per_example_sum(graph: graphengine.Graph, tmp_path) -> None:
    import json

    doc = json.loads(SEED.read_text())
    doc["inputs"][0]["shape"] = [None, 2]
    doc["inputs"][1]["shape"] = [None, 2]
    doc["inputs"][0]["default"] = [[0.05, 0.10], [0.05, 0.10]]
    doc["inputs"][1]["default"] = [[0.01, 0.99], [0.01, 0.99]]
    path = tmp_path / "batched.json"
    path.write_text(json.dumps(doc))
    batched = graphengine.load(path)
    single = graph.grad()
    double = batched.grad()
    for name in single:
        np.testing.assert_allclose(double[name], 2 * single[name], rtol=1e-12)
