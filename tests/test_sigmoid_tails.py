"""sigmoid's forward (e / (e + 1), e = exp(clip(x))): accurate against long double, no overflow, dtype kept."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from graphengine_std.activations import _stable_sigmoid


def test_sigmoid_within_two_ulps_of_long_double_over_the_float64_range() -> None:
    x = np.linspace(-700.0, 700.0, 20001)
    exact = 1 / (1 + np.exp(-x.astype(np.longdouble)))
    got = _stable_sigmoid(x)
    ulps = np.abs((got - exact) / np.spacing(exact.astype(np.float64))).astype(np.float64)
    assert got.dtype == np.float64
    assert ulps.max() <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_tails_do_not_overflow_and_keep_the_dtype(dtype: type) -> None:
    x = np.array([-1e4, -800.0, -100.0, 0.0, 100.0, 800.0, 1e4], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would warn
        with np.errstate(all="raise"):
            y = _stable_sigmoid(x)
    assert y.dtype == dtype
    assert np.all(y >= 0) and np.all(y <= 1)
    assert y[3] == 0.5 and y[-1] == 1.0 and y[0] < 1e-37


def test_sigmoid_of_a_0d_array_is_a_0d_array_of_its_dtype() -> None:
    for dtype in (np.float32, np.float64):
        y = _stable_sigmoid(np.array(0.25, dtype=dtype))
        assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == dtype
        assert abs(float(y) - 1 / (1 + np.exp(-0.25))) < 1e-6
