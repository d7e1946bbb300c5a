"""softmax_cross_entropy's common case (class indices, 2-D logits, no weights) against its general path.

The common case skips the general path's helpers for speed (it runs every training step). The
general path is reached with class weights of one, which weigh nothing, so the two must agree: the
loss and the logits' VJP, every reduction, both dtypes; and the VJP matches central differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from graphengine_std.losses import CrossEntropyAttrs, softmax_cross_entropy, softmax_cross_entropy_vjp_logits


def _loss(logits: np.ndarray, labels: np.ndarray, attrs: CrossEntropyAttrs) -> np.ndarray:
    return softmax_cross_entropy.forward(logits, labels, attrs=attrs)  # the op's forward, as the engine calls it


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_common_case_agrees_with_the_general_path(reduction: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((9, 5)).astype(dtype)
    labels = rng.integers(0, 5, 9)
    g = np.asarray(rng.standard_normal(9) if reduction == "none" else 0.7, dtype=dtype)
    plain = CrossEntropyAttrs(reduction=reduction)
    general = CrossEntropyAttrs(reduction=reduction, class_weights=[1.0] * 5)
    tol = 1e-14 if dtype == "float64" else 1e-6
    loss_p, loss_g = _loss(logits, labels, plain), _loss(logits, labels, general)
    np.testing.assert_allclose(loss_p, loss_g, rtol=tol, atol=tol)
    assert np.asarray(loss_p).dtype == np.dtype(dtype)
    vjp_p = softmax_cross_entropy_vjp_logits(g, logits, labels, plain)
    vjp_g = softmax_cross_entropy_vjp_logits(g, logits, labels, general)
    np.testing.assert_allclose(vjp_p, vjp_g, rtol=tol, atol=tol)
    assert vjp_p.dtype == np.dtype(dtype) and vjp_p.shape == logits.shape


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_common_case_matches_central_differences(reduction: str) -> None:
    rng = np.random.default_rng(4)
    logits, labels = rng.standard_normal((9, 5)), rng.integers(0, 5, 9)
    attrs = CrossEntropyAttrs(reduction=reduction)
    g = rng.standard_normal(9) if reduction == "none" else np.asarray(1.3)
    got = softmax_cross_entropy_vjp_logits(g, logits, labels, attrs)
    want, h = np.zeros_like(logits), 1e-6
    for index in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[index] += h
        down[index] -= h
        diff = _loss(up, labels, attrs) - _loss(down, labels, attrs)
        want[index] = np.sum(g * diff) / (2 * h)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
