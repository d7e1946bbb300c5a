"""Reductions over some axes: sum, mean, max.

Over an empty axis (size 0), sum gives 0 and max gives -inf, their
identities (as ONNX does); mean has none, and its shape rule refuses it.

``axis`` is ``None`` (every axis), one axis, or a list of axes; negative axes
count from the end. With ``keepdims`` the reduced axes stay as size 1.

VJPs put the reduced axes back and spread ``g`` over them::

    sum    x_bar = g                       (broadcast to x's shape)
    mean   x_bar = g / (number of elements reduced)
    max    x_bar = g at the positions equal to the maximum, 0 elsewhere;
           when several positions tie for the maximum, g is split evenly
           among them (a valid subgradient, and the gradient of the
           average of the tied entries).

The VJPs read ``x`` for its shape (and, for max, its values); see ``vjp_needs``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from graphengine.errors import ShapeError
from graphengine.ops import Sample, TensorSpec, common_dtype, defop, format_shape

__all__ = ["OPS", "ReduceAttrs"]

Array = np.ndarray


class ReduceAttrs(BaseModel):
    """Attributes of sum, mean and max."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: StrictInt | list[StrictInt] | None = Field(
        None,
        description=(
            "Axes to reduce: null for all of them, an integer for one, or a list of integers. "
            "Negative axes count from the end (-1 is the last)."
        ),
    )
    keepdims: StrictBool = Field(
        False, description="If true, the reduced axes stay in the result with size 1, so it broadcasts against x."
    )


def _axes(name: str, axis: int | list[int] | None, shape: tuple[int | None, ...]) -> tuple[int, ...]:
    """The reduced axes as sorted non-negative integers.

    Raises
    ------
    ShapeError
        When an axis is out of range for ``shape`` or repeated.
    """
    ndim = len(shape)
    if axis is None:
        return tuple(range(ndim))
    wanted = [axis] if isinstance(axis, int) else list(axis)
    bad = [a for a in wanted if not -ndim <= a < ndim]
    if bad:
        raise ShapeError(f"{name}: axis {bad[0]} is out of range for an input of shape {format_shape(shape)}")
    normal = [a % ndim for a in wanted]
    if len(set(normal)) != len(normal):
        raise ShapeError(f"{name}: axis {wanted} repeats an axis of the input of shape {format_shape(shape)}")
    return tuple(sorted(normal))


def _reduce_rule(name: str, x: TensorSpec, attrs: ReduceAttrs) -> TensorSpec:
    dtype = common_dtype(x)
    axes = _axes(name, attrs.axis, x.shape)
    if attrs.keepdims:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return TensorSpec(shape, dtype)


def sum_rule(x: TensorSpec, *, attrs: ReduceAttrs) -> TensorSpec:
    return _reduce_rule("sum", x, attrs)


def mean_rule(x: TensorSpec, *, attrs: ReduceAttrs) -> TensorSpec:
    empty = [a for a in _axes("mean", attrs.axis, x.shape) if x.shape[a] == 0]
    if empty:  # the mean of nothing has no value (sum gives 0 and max -inf, their identities)
        raise ShapeError(f"mean: axis {empty[0]} of the input of shape {format_shape(x.shape)} is empty")
    return _reduce_rule("mean", x, attrs)


def max_rule(x: TensorSpec, *, attrs: ReduceAttrs) -> TensorSpec:
    return _reduce_rule("max", x, attrs)


def _keep(v: Array, axes: tuple[int, ...], attrs: ReduceAttrs) -> Array:
    """``v`` (a reduced value) with the reduced axes present as size 1."""
    return v if attrs.keepdims else np.expand_dims(v, axes)


# --- samples -----------------------------------------------------------------------------

_CASES: list[tuple[tuple[int, ...], dict[str, object]]] = [
    ((4, 3), {}),
    ((4, 3), {"axis": 0}),
    ((4, 3), {"axis": -1, "keepdims": True}),
    ((2, 3, 4), {"axis": [0, 2]}),
    ((2, 3, 4), {"axis": [2, -3], "keepdims": True}),
    ((5,), {"axis": 0}),
    ((), {}),
]


def reduce_samples(rng: np.random.Generator) -> list[Sample]:
    return [([rng.standard_normal(shape)], dict(attrs)) for shape, attrs in _CASES]


def max_samples(rng: np.random.Generator) -> list[Sample]:
    """Distinct values 1 apart, so a finite-difference step never changes the argmax."""
    cases: list[Sample] = []
    for shape, attrs in _CASES:
        size = math.prod(shape)
        x = rng.permutation(size).reshape(shape) + rng.uniform(0.0, 0.5, size=shape)
        cases.append(([x], dict(attrs)))
    return cases


# --- sum ---------------------------------------------------------------------------------


def sum_vjp(g: Array, x: Array, attrs: ReduceAttrs) -> Array:
    """x_bar = g broadcast back over the reduced axes."""
    axes = _axes("sum", attrs.axis, x.shape)
    return np.broadcast_to(_keep(g, axes, attrs), x.shape)


@defop(sum_vjp, shape_rule=sum_rule, attrs=ReduceAttrs, samples=reduce_samples, doc="sum over axes (all by default)")
def sum_(x: Array, *, attrs: ReduceAttrs) -> Array:
    # np.add.reduce is what np.sum calls for an array, without its Python wrapper.
    axes = _axes("sum", attrs.axis, x.shape)
    return np.asarray(np.add.reduce(x, axis=axes, keepdims=attrs.keepdims))  # type: ignore[call-overload]


# --- mean --------------------------------------------------------------------------------


def mean_vjp(g: Array, x: Array, attrs: ReduceAttrs) -> Array:
    """x_bar = g / n broadcast back over the reduced axes, n = number of elements averaged."""
    axes = _axes("mean", attrs.axis, x.shape)
    count = math.prod(x.shape[a] for a in axes)
    return np.broadcast_to(_keep(g, axes, attrs) / count, x.shape)


@defop(mean_vjp, shape_rule=mean_rule, attrs=ReduceAttrs, samples=reduce_samples, doc="mean over axes (all by default)")
def mean(x: Array, *, attrs: ReduceAttrs) -> Array:
    return np.asarray(np.mean(x, axis=_axes("mean", attrs.axis, x.shape), keepdims=attrs.keepdims))


# --- max ---------------------------------------------------------------------------------


def max_vjp(g: Array, out: Array, x: Array, attrs: ReduceAttrs) -> Array:
    """x_bar = g at the argmax positions, split evenly among ties, 0 elsewhere."""
    axes = _axes("max", attrs.axis, x.shape)
    is_max = x == _keep(out, axes, attrs)
    ties = np.maximum(np.sum(is_max, axis=axes, keepdims=True, dtype=x.dtype), 1)  # 1: an empty axis has none
    return is_max * (_keep(g, axes, attrs) / ties)


@defop(max_vjp, shape_rule=max_rule, attrs=ReduceAttrs, samples=max_samples,
       doc="maximum over axes (all by default); gradient split evenly among ties")  # fmt: skip
def max_(x: Array, *, attrs: ReduceAttrs) -> Array:
    # initial=-inf: the maximum over an empty axis is max's identity, as in ONNX ReduceMax.
    return np.asarray(np.max(x, axis=_axes("max", attrs.axis, x.shape), keepdims=attrs.keepdims, initial=-np.inf))


OPS = [sum_, mean, max_]
