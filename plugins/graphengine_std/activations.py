"""Activation functions: sigmoid, tanh, relu, leaky_relu, softplus, gelu.

All are elementwise, keep the input's shape and float dtype, and are written to
avoid overflow for large ``|x|``.

VJPs::

    sigmoid     x_bar = g * out * (1 - out)
    tanh        x_bar = g * (1 - out**2)
    relu        x_bar = g * (out > 0)                 (0 at the kink x == 0)
    leaky_relu  x_bar = g if x > 0 else slope * g
    softplus    x_bar = g * sigmoid(x)
    gelu        x_bar = g * d/dx [x/2 (1 + tanh(c (x + 0.044715 x**3)))]
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from graphengine.ops import NoAttrs, OpDef, Sample, elementwise_rule

__all__ = ["OPS", "LeakyReluAttrs"]

Array = np.ndarray


def _stable_sigmoid(x: Array) -> Array:
    """1 / (1 + exp(-x)) without overflow.

    The plain formula is accurate everywhere; it only overflows in ``exp`` where
    ``x`` is below about -709 (-88 in float32), where the answer is already
    below the smallest normal number. Clamping ``x`` there keeps ``exp`` finite
    at the cost of one cheap ufunc, where the textbook ``where(x >= 0, ...)``
    costs five: this op is on the hot path of every small network.
    """
    floor = -88.0 if x.dtype == np.float32 else -708.0
    return 1.0 / (1.0 + np.exp(-np.maximum(x, floor)))


def smooth_samples(rng: np.random.Generator) -> list[Sample]:
    """Any real inputs, including fairly large ones, a batch and a scalar."""
    return [
        ([rng.standard_normal(5) * 3], {}),
        ([rng.standard_normal((4, 3))], {}),
        ([np.array([-30.0, -5.0, 0.0, 5.0, 30.0])], {}),  # tails must not overflow
        ([rng.standard_normal(())], {}),
    ]


def kink_samples(rng: np.random.Generator) -> list[Sample]:
    """Inputs of both signs, away from the kink at 0."""
    shapes = [(6,), (4, 3)]
    return [([rng.uniform(0.2, 2.0, s) * rng.choice([-1.0, 1.0], s)], {}) for s in shapes]


# --- sigmoid, tanh -----------------------------------------------------------------------


def sigmoid(x: Array, *, attrs: NoAttrs) -> Array:
    return _stable_sigmoid(x)


def sigmoid_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g * out * (1 - out)."""
    return g * out * (1 - out)


def tanh(x: Array, *, attrs: NoAttrs) -> Array:
    return np.tanh(x)


def tanh_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g * (1 - out**2)."""
    return g * (1 - out * out)


# --- relu, leaky_relu --------------------------------------------------------------------


def relu(x: Array, *, attrs: NoAttrs) -> Array:
    return np.maximum(x, 0)


def relu_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g where x > 0 (equivalently out > 0), else 0."""
    return g * (out > 0)


class LeakyReluAttrs(BaseModel):
    """Attributes of leaky_relu."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    negative_slope: StrictFloat = Field(
        0.01,
        allow_inf_nan=False,
        description="Slope for negative inputs: out = x if x > 0 else negative_slope * x. A number, e.g. 0.01.",
    )


def leaky_relu(x: Array, *, attrs: LeakyReluAttrs) -> Array:
    return np.where(x > 0, x, attrs.negative_slope * x)


def leaky_relu_vjp(g: Array, out: Array, x: Array, *, attrs: LeakyReluAttrs) -> Array:
    """x_bar = g where x > 0, else negative_slope * g."""
    return np.where(x > 0, g, attrs.negative_slope * g)


def leaky_relu_samples(rng: np.random.Generator) -> list[Sample]:
    cases = kink_samples(rng)
    return cases + [(inputs, {"negative_slope": 0.2}) for inputs, _ in cases]


# --- softplus ----------------------------------------------------------------------------


def softplus(x: Array, *, attrs: NoAttrs) -> Array:
    return np.logaddexp(0, x)


def softplus_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g * sigmoid(x)."""
    return g * _stable_sigmoid(x)


# --- gelu --------------------------------------------------------------------------------

_GELU_C = math.sqrt(2 / math.pi)
_GELU_K = 0.044715


def gelu(x: Array, *, attrs: NoAttrs) -> Array:
    return 0.5 * x * (1 + np.tanh(_GELU_C * (x + _GELU_K * x**3)))


def gelu_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g * (0.5 (1 + t) + 0.5 x (1 - t**2) c (1 + 3k x**2)), t = tanh(c (x + k x**3))."""
    t = np.tanh(_GELU_C * (x + _GELU_K * x**3))
    slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * _GELU_K * x * x)
    return g * slope


OPS = [
    OpDef("sigmoid", sigmoid, (sigmoid_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"out"}), samples=smooth_samples, doc="logistic function 1 / (1 + exp(-x))"),
    OpDef("tanh", tanh, (tanh_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"out"}), samples=smooth_samples, doc="hyperbolic tangent"),
    OpDef("relu", relu, (relu_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"out"}), samples=kink_samples, doc="max(x, 0); gradient 0 at x == 0"),
    OpDef("leaky_relu", leaky_relu, (leaky_relu_vjp,), elementwise_rule, attrs=LeakyReluAttrs, inputs=("x",),
          vjp_needs=frozenset({"x"}), samples=leaky_relu_samples,
          doc="x if x > 0 else negative_slope * x"),
    OpDef("softplus", softplus, (softplus_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"x"}), samples=smooth_samples, doc="log(1 + exp(x)), computed stably"),
    OpDef("gelu", gelu, (gelu_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"x"}), samples=smooth_samples,
          doc="GELU, tanh approximation: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"),
]
