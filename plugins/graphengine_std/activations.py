"""Activation functions: sigmoid, tanh, relu, leaky_relu, softplus, gelu.

All are elementwise, keep the input's shape and float dtype, and are written to
avoid overflow for large ``|x|``.

VJPs::

    sigmoid     x_bar = g * out * (1 - out)
    tanh        x_bar = g * (1 - out**2)
    relu        x_bar = g * (out > 0)                 (0 at the kink x == 0)
    leaky_relu  x_bar = g if x > 0 else slope * g
    softplus    x_bar = g * sigmoid(x)
    gelu        x_bar = g * d/dx [x/2 (1 + tanh(c (x + 0.044715 x**3)))]   (approximate: tanh, the default)
                x_bar = g * (Phi(x) + x phi(x))                            (approximate: none, erf form)
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from graphengine.ops import Sample, defop, inline_as

from .elementwise import erf_values

__all__ = ["OPS", "LeakyReluAttrs", "GeluAttrs"]

Array = np.ndarray


def _stable_sigmoid(x: Array) -> Array:
    """1 / (1 + exp(-x)) without overflow, as ``e / (e + 1)`` with ``e = exp(clip(x, -c, c))``.

    Clipping at ``c`` = 708 (88 in float32) keeps ``exp`` finite and away
    from 0; beyond it the answer is within rounding of 1, or below the
    smallest normal number, as before. Four ufuncs (clip, exp, add, divide),
    one fewer than negating then clamping: this op is on the hot path of every
    small network, where a ufunc call costs the same whatever it computes. It
    works in one array of its own (``out=``) plus the sum. Both halves are a
    few ulps from the true value: ``e`` is exp of an exact argument, and
    ``e / (e + 1)`` is ``e`` to within rounding in the left tail.
    """
    c = 88.0 if x.dtype == _F32 else 708.0
    e = _clip(x, -c, c)
    if e.__class__ is not np.ndarray:  # 0-d: numpy gave a scalar, which has no out=
        e = np.exp(e)
        return np.asarray(e / (e + 1.0), dtype=x.dtype)
    np.exp(e, out=e)
    return np.divide(e, e + 1.0, out=e)  # type: ignore[no-any-return]


try:  # the clip ufunc itself: ``np.clip`` is a Python wrapper around it (half again its cost on a small array)
    from numpy._core.umath import clip as _clip  # type: ignore[attr-defined]  # not in numpy's stubs
except ImportError:  # numpy 1.x keeps it elsewhere: the wrapper does the same
    _clip = np.clip

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_ONE32, _ONE64 = np.ones((), _F32), np.ones((), _F64)
_ONE32.flags.writeable = _ONE64.flags.writeable = False


def smooth_samples(rng: np.random.Generator) -> list[Sample]:
    """Any real inputs, including fairly large ones, a batch and a scalar."""
    return [
        ([rng.standard_normal(5) * 3], {}),
        ([rng.standard_normal((4, 3))], {}),
        ([np.array([-30.0, -5.0, 0.0, 5.0, 30.0])], {}),  # tails must not overflow
        ([rng.standard_normal(())], {}),
    ]


# --- sigmoid, tanh -----------------------------------------------------------------------


def _one_like(dtype: np.dtype) -> Array | int:
    """1 as a read-only 0-d array of ``dtype`` (float32, float64), else the Python 1.

    The same arithmetic either way (a Python 1 is cast to the array's dtype), but
    numpy converts a Python number on every ufunc call: ``1 - y`` on a (1000,)
    float64 array costs about 2.7k instructions more than with the 0-d array.
    """
    return _ONE64 if dtype is _F64 else _ONE32 if dtype is _F32 else 1


# Both VJPs are declared inline through their plain expressions (inline_as): the generated code writes
# those out as ufunc calls, with 0-d constants. The interpreter and the table call the functions, which
# do the same arithmetic in one array of their own with a 0-d 1: a Python 1 costs a conversion per call,
# 3-10% of a 100k-node table's run (docs/performance-calls.md, "Round seven").


@inline_as(lambda g, out: (1 - out) * out * g)
def sigmoid_vjp(g: Array, out: Array) -> Array:
    """x_bar = (1 - out) * out * g, in one array of our own (``g`` and ``out`` are the engine's)."""
    slope = np.subtract(_one_like(out.dtype), out)
    slope *= out  # a 0-d slope is a numpy scalar: *= then makes a new one, which is as good
    slope *= g
    return slope


@inline_as(lambda g, out: g * (1 - out * out))
def tanh_vjp(g: Array, out: Array) -> Array:
    """x_bar = g * (1 - out**2), in one array of our own."""
    slope = out * out
    if slope.__class__ is not np.ndarray:  # 0-d: numpy gave a scalar, which has no out=
        return g * (1 - slope)  # type: ignore[no-any-return]
    np.subtract(_one_like(slope.dtype), slope, slope)  # in place (out= by position: cheaper to parse)
    slope *= g
    return slope


# The forward is overflow-safe (a clip and out=), not one expression: only the VJP is inline.
@defop(sigmoid_vjp, samples=smooth_samples, inline="vjps", doc="logistic function 1 / (1 + exp(-x))")
def sigmoid(x: Array) -> Array:
    return _stable_sigmoid(x)


@defop(tanh_vjp, samples=smooth_samples, inline=True, doc="hyperbolic tangent")
def tanh(x: Array) -> Array:
    return np.tanh(x)


# --- relu, leaky_relu --------------------------------------------------------------------


@defop(lambda g, out: g * (out > 0), domain="nonzero", inline=True, doc="max(x, 0); gradient 0 at x == 0")
def relu(x: Array) -> Array:
    return np.maximum(x, 0)


class LeakyReluAttrs(BaseModel):
    """Attributes of leaky_relu."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    negative_slope: StrictFloat = Field(
        0.01,
        allow_inf_nan=False,
        description="Slope for negative inputs: out = x if x > 0 else negative_slope * x. A number, e.g. 0.01.",
    )


@defop(lambda g, x, attrs: np.where(x > 0, g, attrs.negative_slope * g), attrs=LeakyReluAttrs, domain="nonzero",
       sample_attrs=[{}, {"negative_slope": 0.2}], doc="x if x > 0 else negative_slope * x")  # fmt: skip
def leaky_relu(x: Array, *, attrs: LeakyReluAttrs) -> Array:
    return np.where(x > 0, x, attrs.negative_slope * x)


# --- softplus, gelu ----------------------------------------------------------------------


@defop(lambda g, x: g * _stable_sigmoid(x), samples=smooth_samples, doc="log(1 + exp(x)), computed stably")
def softplus(x: Array) -> Array:
    return np.logaddexp(0, x)


def gelu_samples(rng: np.random.Generator) -> list[Sample]:
    """The smooth samples with both forms."""
    return [(xs, {"approximate": form}) for xs, _ in smooth_samples(rng) for form in ("tanh", "none")]


_GELU_C = math.sqrt(2 / math.pi)
_GELU_K = 0.044715


class GeluAttrs(BaseModel):
    """Attributes of gelu."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approximate: Literal["tanh", "none"] = Field(
        "tanh",
        description=(
            'Which GELU: "tanh" (the default) is x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); "none" is the exact '
            "x/2 (1 + erf(x / sqrt(2))), as ONNX Gelu and PyTorch's default. They differ by up to about 5e-4."
        ),
    )


def gelu_vjp(g: Array, x: Array, attrs: GeluAttrs) -> Array:
    """tanh: x_bar = g * (0.5 (1 + t) + 0.5 x (1 - t**2) c (1 + 3k x**2)), t = tanh(c (x + k x**3));
    none: x_bar = g * (Phi(x) + x phi(x))."""
    if attrs.approximate == "none":
        return g * (0.5 * (1 + erf_values(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
    t = np.tanh(_GELU_C * (x + _GELU_K * x**3))
    slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_C * (1 + 3 * _GELU_K * x * x)
    return g * slope


@defop(gelu_vjp, attrs=GeluAttrs, samples=gelu_samples,
       doc="GELU: tanh approximation by default, or the exact erf form (approximate: none)")  # fmt: skip
def gelu(x: Array, *, attrs: GeluAttrs) -> Array:
    if attrs.approximate == "none":
        return np.asarray(0.5 * x * (1 + erf_values(x / math.sqrt(2))), dtype=x.dtype)
    return 0.5 * x * (1 + np.tanh(_GELU_C * (x + _GELU_K * x**3)))


OPS = [sigmoid, tanh, relu, leaky_relu, softplus, gelu]
