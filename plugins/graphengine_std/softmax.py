"""softmax and log_softmax along one axis, computed stably.

Both subtract the maximum along the axis before exponentiating, so large
inputs do not overflow. VJPs (sums along ``axis``, keeping it)::

    softmax       x_bar = out * (g - sum(g * out))
    log_softmax   x_bar = g - exp(out) * sum(g)
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from graphengine.errors import ShapeError
from graphengine.ops import Sample, TensorSpec, common_dtype, defop, format_shape

__all__ = ["OPS", "SoftmaxAttrs", "log_softmax_values"]

Array = np.ndarray


class SoftmaxAttrs(BaseModel):
    """Attributes of softmax and log_softmax."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: StrictInt = Field(
        -1, description="The axis that sums to 1 (softmax); negative counts from the end, -1 is the last axis."
    )


def log_softmax_values(x: Array, axis: int) -> Array:
    """``log(softmax(x))`` along ``axis``, stably (shared with the cross-entropy loss)."""
    # The ufuncs' reductions: what np.max/np.sum and the array methods call, without their Python wrappers
    # (a loss calls this per step). The exponentials are ours, so they are summed where they are.
    shifted = x - np.maximum.reduce(x, axis, keepdims=True)
    total = np.add.reduce(np.exp(shifted), axis, keepdims=True)
    shifted -= np.log(total)  # shifted is ours too: the result is written into it
    return shifted


def _axis_rule(name: str, x: TensorSpec, axis: int) -> TensorSpec:
    dtype = common_dtype(x)
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"{name}: axis {axis} is out of range for an input of shape {format_shape(x.shape)}")
    return TensorSpec(x.shape, dtype)


def softmax_rule(x: TensorSpec, *, attrs: SoftmaxAttrs) -> TensorSpec:
    return _axis_rule("softmax", x, attrs.axis)


def log_softmax_rule(x: TensorSpec, *, attrs: SoftmaxAttrs) -> TensorSpec:
    return _axis_rule("log_softmax", x, attrs.axis)


def softmax_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        ([rng.standard_normal(5)], {}),
        ([rng.standard_normal((4, 3))], {}),
        ([rng.standard_normal((4, 3))], {"axis": 0}),
        ([rng.standard_normal((2, 3, 4))], {"axis": 1}),
        ([rng.standard_normal((2, 3)) + 500.0], {}),  # would overflow without the shift
    ]


@defop(lambda g, out, attrs: out * (g - np.sum(g * out, axis=attrs.axis, keepdims=True)), shape_rule=softmax_rule,
       attrs=SoftmaxAttrs, samples=softmax_samples, doc="exp(x) / sum(exp(x)) along axis (stable)")  # fmt: skip
def softmax(x: Array, *, attrs: SoftmaxAttrs) -> Array:
    shifted = x - np.max(x, axis=attrs.axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=attrs.axis, keepdims=True)


@defop(lambda g, out, attrs: g - np.exp(out) * np.sum(g, axis=attrs.axis, keepdims=True), shape_rule=log_softmax_rule,
       attrs=SoftmaxAttrs, samples=softmax_samples, doc="x - log(sum(exp(x))) along axis (stable)")  # fmt: skip
def log_softmax(x: Array, *, attrs: SoftmaxAttrs) -> Array:
    return log_softmax_values(x, attrs.axis)


OPS = [softmax, log_softmax]
