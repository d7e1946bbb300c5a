"""Ops that pick or rearrange elements: gather, expand, flatten, squeeze, unsqueeze.

They accept any dtype and keep it (except gather's indices, which are
integers and get no gradient). VJPs::

    gather     x_bar = zeros of x's shape, g added at the gathered positions (repeats add up)
    expand     x_bar = g (the engine sums it back to x's shape)
    flatten    x_bar = g reshaped to x's shape
    squeeze    x_bar = g reshaped to x's shape
    unsqueeze  x_bar = g reshaped to x's shape
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from graphengine.errors import ShapeError
from graphengine.ops import Sample, TensorSpec, broadcast_shapes, defop, format_shape, identity_vjp

__all__ = ["OPS", "GatherAttrs", "ExpandAttrs", "FlattenAttrs", "AxesAttrs"]

Array = np.ndarray


def _axis(name: str, axis: int, ndim: int, shape: tuple[int | None, ...]) -> int:
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{name}: axis {axis} is out of range for shape {format_shape(shape)}")
    return axis % ndim


# --- gather ------------------------------------------------------------------------------


class GatherAttrs(BaseModel):
    """Attributes of gather."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: StrictInt = Field(0, description="The axis indexed; negative counts from the end.")


def gather_rule(x: TensorSpec, indices: TensorSpec, *, attrs: GatherAttrs) -> TensorSpec:
    if indices.dtype.kind not in "iu":
        raise ShapeError(f"gather: indices must be integers, got {indices.dtype.name}{format_shape(indices.shape)}")
    axis = _axis("gather", attrs.axis, x.ndim, x.shape)
    return TensorSpec(x.shape[:axis] + indices.shape + x.shape[axis + 1 :], x.dtype)


def _checked(indices: Array, n: int) -> Array:
    if indices.size and (indices.min() < -n or indices.max() >= n):
        raise ValueError(
            f"gather: an index is out of range for an axis of length {n} (indices {indices.min()}..{indices.max()})"
        )
    return np.where(indices < 0, indices + n, indices)


def gather_vjp(g: Array, x: Array, indices: Array, attrs: GatherAttrs) -> Array:
    """x_bar = zeros like x; g added at the gathered positions (np.add.at, so repeated indices add up)."""
    axis = attrs.axis % x.ndim
    grad = np.zeros_like(x)
    moved = np.moveaxis(grad, axis, 0)  # a view: writing into it writes grad
    idx = _checked(indices, x.shape[axis]).reshape(-1)
    g_moved = np.moveaxis(g.reshape(x.shape[:axis] + (idx.size,) + x.shape[axis + 1 :]), axis, 0)
    np.add.at(moved, idx, g_moved)
    return grad


def gather_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((5, 3)), np.array([0, 2, 2, -1])], {}),
        ([n((2, 4, 3)), np.array([[1, 0], [3, -4]])], {"axis": 1}),
        ([n((4,)), np.array(2)], {}),
    ]


@defop(gather_vjp, None, shape_rule=gather_rule, attrs=GatherAttrs, samples=gather_samples,
       doc="x[..., indices, ...] along axis (ONNX Gather); negative indices count from the end")  # fmt: skip
def gather(x: Array, indices: Array, *, attrs: GatherAttrs) -> Array:
    axis = attrs.axis % x.ndim
    return np.take(x, _checked(indices, x.shape[axis]), axis=axis)


# --- expand ------------------------------------------------------------------------------


class ExpandAttrs(BaseModel):
    """Attributes of expand."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: list[StrictInt] = Field(description="Broadcast x with this shape (numpy rules; 1 keeps x's dimension).")


def expand_rule(x: TensorSpec, *, attrs: ExpandAttrs) -> TensorSpec:
    if any(d < 0 for d in attrs.shape):
        raise ShapeError(f"expand: shape {attrs.shape} has a negative dimension")
    return TensorSpec(broadcast_shapes(x.shape, tuple(attrs.shape)), x.dtype)


def expand_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [([n((3, 1))], {"shape": [2, 3, 4]}), ([n((3,))], {"shape": [2, 1]}), ([n(())], {"shape": [2]})]


@defop(identity_vjp, shape_rule=expand_rule, attrs=ExpandAttrs, samples=expand_samples,
       doc="x broadcast against shape (ONNX Expand)")  # fmt: skip
def expand(x: Array, *, attrs: ExpandAttrs) -> Array:
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(attrs.shape))).copy()


# --- flatten -----------------------------------------------------------------------------


class FlattenAttrs(BaseModel):
    """Attributes of flatten."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: StrictInt = Field(1, description="Axes before it become the rows, the rest the columns; may be ndim.")


def _prod(dims: tuple[int | None, ...]) -> int | None:
    return None if None in dims else math.prod(d for d in dims if d is not None)


def flatten_rule(x: TensorSpec, *, attrs: FlattenAttrs) -> TensorSpec:
    if not -x.ndim <= attrs.axis <= x.ndim:
        raise ShapeError(f"flatten: axis {attrs.axis} is out of range for shape {format_shape(x.shape)}")
    axis = attrs.axis + x.ndim if attrs.axis < 0 else attrs.axis  # ONNX: -1 is the last axis
    return TensorSpec((_prod(x.shape[:axis]), _prod(x.shape[axis:])), x.dtype)


def flatten_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((2, 3, 4))
    return [([x], {}), ([x], {"axis": 0}), ([x], {"axis": 3}), ([x], {"axis": -1}), ([x], {"axis": -3})]


@defop(lambda g, x: np.reshape(g, x.shape), shape_rule=flatten_rule, attrs=FlattenAttrs, samples=flatten_samples,
       doc="x as a matrix: axes before axis become rows, the rest columns (ONNX Flatten)")  # fmt: skip
def flatten(x: Array, *, attrs: FlattenAttrs) -> Array:
    axis = attrs.axis + x.ndim if attrs.axis < 0 else attrs.axis  # ONNX: -1 is the last axis
    return np.reshape(
        x, (math.prod(x.shape[:axis]), -1) if x.size else (math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))
    )


# --- squeeze, unsqueeze ------------------------------------------------------------------


class AxesAttrs(BaseModel):
    """Attributes of squeeze and unsqueeze."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axes: list[StrictInt] | None = Field(
        None, description="Axes removed (squeeze: each of size 1; null: every size-1 axis) or inserted (unsqueeze)."
    )


def _squeezed_axes(shape: tuple[int | None, ...], axes: list[int] | None) -> tuple[int, ...]:
    if axes is None:
        if None in shape:
            raise ShapeError(f"squeeze: without axes, every dimension must be known, got {format_shape(shape)}")
        return tuple(i for i, d in enumerate(shape) if d == 1)
    normal = tuple(sorted({_axis("squeeze", a, len(shape), shape) for a in axes}))
    if len(normal) != len(axes):
        raise ShapeError(f"squeeze: axes {axes} repeat an axis")
    bad = [a for a in normal if shape[a] not in (1, None)]
    if bad:
        raise ShapeError(f"squeeze: axis {bad[0]} of shape {format_shape(shape)} has size {shape[bad[0]]}, not 1")
    return normal


def squeeze_rule(x: TensorSpec, *, attrs: AxesAttrs) -> TensorSpec:
    axes = _squeezed_axes(x.shape, attrs.axes)
    return TensorSpec(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)


def _unsqueezed(shape: tuple[int | None, ...], axes: list[int] | None) -> tuple[int | None, ...]:
    if not axes:
        raise ShapeError("unsqueeze: give the axes to insert")
    ndim = len(shape) + len(axes)
    normal = {_axis("unsqueeze", a, ndim, shape) for a in axes}
    if len(normal) != len(axes):
        raise ShapeError(f"unsqueeze: axes {axes} repeat an axis")
    rest = iter(shape)
    return tuple(1 if i in normal else next(rest) for i in range(ndim))


def unsqueeze_rule(x: TensorSpec, *, attrs: AxesAttrs) -> TensorSpec:
    return TensorSpec(_unsqueezed(x.shape, attrs.axes), x.dtype)


def squeeze_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((1, 3, 1, 2))
    return [([x], {}), ([x], {"axes": [0]}), ([x], {"axes": [-2, 0]})]


def unsqueeze_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((3, 2))
    return [([x], {"axes": [0]}), ([x], {"axes": [-1, 1]}), ([rng.standard_normal(())], {"axes": [0]})]


@defop(lambda g, x: np.reshape(g, x.shape), shape_rule=squeeze_rule, attrs=AxesAttrs, samples=squeeze_samples,
       doc="x without the given size-1 axes (all of them by default)")  # fmt: skip
def squeeze(x: Array, *, attrs: AxesAttrs) -> Array:
    axes = _squeezed_axes(x.shape, attrs.axes)
    return np.squeeze(x, axis=axes)


@defop(lambda g, x: np.reshape(g, x.shape), shape_rule=unsqueeze_rule, attrs=AxesAttrs, samples=unsqueeze_samples,
       doc="x with size-1 axes inserted at the given output positions")  # fmt: skip
def unsqueeze(x: Array, *, attrs: AxesAttrs) -> Array:
    return np.reshape(x, tuple(1 if d is None else d for d in _unsqueezed(x.shape, attrs.axes)))


OPS = [gather, expand, flatten, squeeze, unsqueeze]
