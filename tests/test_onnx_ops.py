"""The ops added for ONNX, against independent implementations (PyTorch) where they have options that matter."""

from __future__ import annotations

import graphengine_std
import numpy as np
import pytest

from graphengine.engine import check_op_samples

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
F = torch.nn.functional
OPS = {op.name: op for op in graphengine_std.OPS}


def forward(name, *xs, **attrs):
    op = OPS[name]
    return op.forward(*xs, attrs=op.attrs.model_validate(attrs))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_class_weights_and_ignore_index_equals_torch(reduction):
    rng = np.random.default_rng(3)
    logits, labels = rng.standard_normal((6, 4)), np.array([0, 3, -100, 1, 3, 2])
    weights = [0.5, 2.0, 1.0, 1.5]
    got = forward(
        "softmax_cross_entropy", logits, labels, class_weights=weights, ignore_index=-100, reduction=reduction
    )
    want = F.cross_entropy(torch.tensor(logits), torch.tensor(labels), weight=torch.tensor(weights, dtype=torch.float64),
                           ignore_index=-100, reduction=reduction)  # fmt: skip
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-13)


def test_conv_and_pools_equal_torch():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)
    got = forward("conv", x, w, b, strides=[2, 1], pads=[1, 0, 1, 0], dilations=[1, 2], groups=2)
    want = F.conv2d(
        torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2
    )
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)
    pooled = forward("max_pool", x, kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 0])
    np.testing.assert_allclose(pooled, F.max_pool2d(torch.tensor(x), (3, 2), (2, 2), padding=(1, 0)).numpy())
    avg = forward("average_pool", x, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=True)
    np.testing.assert_allclose(avg, F.avg_pool2d(torch.tensor(x), 3, 1, 1, count_include_pad=True).numpy(), rtol=1e-12)


def test_empty_axis_reductions_give_the_identity():
    x = np.zeros((2, 0, 3))
    np.testing.assert_array_equal(forward("sum", x, axis=1), np.zeros((2, 3)))
    np.testing.assert_array_equal(forward("max", x, axis=1, keepdims=True), np.full((2, 1, 3), -np.inf))


def test_slice_backwards_and_reshape_copying_zeros():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(forward("slice", x, axis=1, start=-1, step=-2), x[:, ::-2])
    np.testing.assert_array_equal(forward("slice", x, axis=0, start=2, stop=0, step=-1), x[2:0:-1])
    assert forward("reshape", np.zeros((2, 3, 4)), shape=[0, -1], copy_zeros=True).shape == (2, 12)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "conv", "max_pool", "gelu", "slice", "reshape"])
def test_changed_ops_still_pass_their_finite_difference_samples(name):
    assert check_op_samples(OPS[name], rng=np.random.default_rng(2)) >= 3
