"""Ops that move data without changing it: reshape, transpose, concat, slice, identity.

These accept any dtype (e.g. integer labels can be reshaped or sliced) and
keep it. Their VJPs move the cotangent back::

    reshape    x_bar = g reshaped to x's shape
    transpose  x_bar = g transposed by the inverse permutation
    concat     xs_bar[i] = the i-th piece of g along axis
    slice      x_bar = zeros of x's shape with g written into the slice
    identity   x_bar = g

Slices are written one axis at a time, e.g.
``{"axis": 1, "start": 0, "stop": 2}`` selects ``x[:, 0:2]``. Indices that fall
outside the axis are an error (numpy would silently clip them).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from graphengine.errors import ShapeError
from graphengine.ops import NoAttrs, Sample, TensorSpec, common_dtype, defop, format_shape, identity_vjp

__all__ = ["OPS", "ReshapeAttrs", "TransposeAttrs", "ConcatAttrs", "SliceAttrs"]

Array = np.ndarray


def _check_axis(name: str, axis: int, shape: tuple[int | None, ...]) -> int:
    """``axis`` as a non-negative integer; ShapeError when out of range for ``shape``."""
    if not -len(shape) <= axis < len(shape):
        raise ShapeError(f"{name}: axis {axis} is out of range for an input of shape {format_shape(shape)}")
    return axis % len(shape)


# --- reshape -----------------------------------------------------------------------------


class ReshapeAttrs(BaseModel):
    """Attributes of reshape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: list[StrictInt] = Field(
        description=(
            "The new shape, e.g. [2, 6]. One entry may be -1: that dimension is inferred from the number "
            "of elements (and stays free, like a batch dimension, when the input has a free dimension)."
        )
    )

    @field_validator("shape")
    @classmethod
    def _one_minus_one(cls, shape: list[int]) -> list[int]:
        if any(d < -1 for d in shape):
            raise ValueError(f"shape {shape}: dimensions must be non-negative, or -1 for one inferred dimension")
        if shape.count(-1) > 1:
            raise ValueError(f"shape {shape}: only one dimension may be -1")
        return shape

    copy_zeros: StrictBool = Field(
        False,
        description=(
            "If true, a 0 in shape copies the input's dimension at that position (ONNX Reshape's default, "
            "allowzero=0); if false, 0 is a dimension of size 0."
        ),
    )


def _target(attrs: ReshapeAttrs, shape: tuple[int | None, ...]) -> list[int | None]:
    """attrs.shape with each 0 replaced by the input's dimension when copy_zeros is set."""
    if not attrs.copy_zeros:
        return list(attrs.shape)
    if any(d == 0 and i >= len(shape) for i, d in enumerate(attrs.shape)):
        raise ShapeError(f"reshape: shape {attrs.shape} copies a dimension the input {format_shape(shape)} lacks")
    return [shape[i] if d == 0 else d for i, d in enumerate(attrs.shape)]


def reshape_rule(x: TensorSpec, *, attrs: ReshapeAttrs) -> TensorSpec:
    """Infer the -1 when the input size is known; otherwise check what can be checked.

    With a free input dimension, a -1 in the target becomes a free output
    dimension; without a -1, the known input dimensions must divide the target
    size (the free dimension then has to make up the rest at run time).
    """
    copied = _target(attrs, x.shape)
    if None in copied:  # a copied free dimension: the sizes are checked at run time
        return TensorSpec(tuple(None if d == -1 else d for d in copied), x.dtype)
    target = [d for d in copied if d is not None]
    has_free_out = -1 in target
    out_known = math.prod(d for d in target if d != -1)
    in_known = math.prod(d for d in x.shape if d is not None)
    has_free_in = None in x.shape
    where = f"reshape: cannot reshape {format_shape(x.shape)} into {target}"
    if has_free_out and out_known == 0:
        raise ShapeError(f"{where}: a -1 next to a 0 dimension is ambiguous")
    if not has_free_in:
        if has_free_out:
            if in_known % out_known:
                raise ShapeError(f"{where}: {in_known} elements are not a multiple of {out_known}")
            return TensorSpec(tuple(in_known // out_known if d == -1 else d for d in target), x.dtype)
        if in_known != out_known:
            raise ShapeError(f"{where}: {in_known} elements do not fit {out_known}")
        return TensorSpec(tuple(target), x.dtype)
    if has_free_out:
        return TensorSpec(tuple(None if d == -1 else d for d in target), x.dtype)
    if (in_known == 0) != (out_known == 0) or (in_known and out_known % in_known):
        raise ShapeError(
            f"{where}: {out_known} elements are not a multiple of the {in_known} known elements per free dimension"
        )
    return TensorSpec(tuple(target), x.dtype)


def reshape_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((3, 4))], {"shape": [12]}),
        ([n((3, 4))], {"shape": [2, -1]}),
        ([n((2, 3, 4))], {"shape": [-1, 4]}),
        ([n((6,))], {"shape": [1, 2, 3]}),
        ([n((1,))], {"shape": []}),
        ([n((2, 3, 4))], {"shape": [0, -1], "copy_zeros": True}),
        ([n((2, 3, 4))], {"shape": [0, 0, 2, 2], "copy_zeros": True}),
    ]


@defop(lambda g, x: np.reshape(g, x.shape), shape_rule=reshape_rule, attrs=ReshapeAttrs, samples=reshape_samples,
       doc="same elements in a new shape; one dimension may be -1 (inferred)")  # fmt: skip
def reshape(x: Array, *, attrs: ReshapeAttrs) -> Array:
    # A real array's dimensions are all known: the target has no None here.
    target = [-1 if d is None else d for d in _target(attrs, x.shape)] if attrs.copy_zeros else attrs.shape
    return np.reshape(x, target)


# --- transpose ---------------------------------------------------------------------------


class TransposeAttrs(BaseModel):
    """Attributes of transpose."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axes: list[StrictInt] | None = Field(
        None,
        description=(
            "A permutation of the input's axes: output axis i is input axis axes[i], e.g. [0, 2, 1] swaps "
            "the last two of three. Negative axes count from the end. null reverses all axes."
        ),
    )


def _permutation(axes: list[int] | None, ndim: int) -> list[int] | None:
    """``axes`` normalised to non-negative integers, or None when it is not a permutation."""
    if axes is None:
        return list(range(ndim))[::-1]
    if len(axes) != ndim or any(not -ndim <= a < ndim for a in axes):
        return None
    normal = [a % ndim for a in axes]
    return normal if sorted(normal) == list(range(ndim)) else None


def transpose_rule(x: TensorSpec, *, attrs: TransposeAttrs) -> TensorSpec:
    perm = _permutation(attrs.axes, x.ndim)
    if perm is None:
        raise ShapeError(
            f"transpose: axes {attrs.axes} is not a permutation of the {x.ndim} axes of shape {format_shape(x.shape)}"
        )
    return TensorSpec(tuple(x.shape[a] for a in perm), x.dtype)


def transpose_vjp(g: Array, attrs: TransposeAttrs) -> Array:
    """x_bar = g transposed by the inverse permutation."""
    perm = _permutation(attrs.axes, g.ndim)
    assert perm is not None  # the shape rule accepted these axes at load time
    return np.transpose(g, np.argsort(perm))


def transpose_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((3, 4))], {}),
        ([n((2, 3, 4))], {}),
        ([n((2, 3, 4))], {"axes": [0, 2, 1]}),
        ([n((2, 3, 4))], {"axes": [-1, 0, 1]}),
    ]


@defop(transpose_vjp, shape_rule=transpose_rule, attrs=TransposeAttrs, samples=transpose_samples,
       doc="permute axes (reverse them by default)")  # fmt: skip
def transpose(x: Array, *, attrs: TransposeAttrs) -> Array:
    return np.transpose(x, attrs.axes)


# --- concat ------------------------------------------------------------------------------


class ConcatAttrs(BaseModel):
    """Attributes of concat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: StrictInt = Field(
        0,
        description=(
            "The axis along which the inputs are joined; all other dimensions must agree. Negative counts from the end."
        ),
    )


def concat_rule(*xs: TensorSpec, attrs: ConcatAttrs) -> TensorSpec:
    shown = ", ".join(format_shape(x.shape) for x in xs)
    ndims = {x.ndim for x in xs}
    if len(ndims) > 1:
        raise ShapeError(f"concat: inputs have different numbers of dimensions: {shown}")
    if 0 in ndims:
        raise ShapeError(f"concat: inputs must have at least 1 dimension, got {shown}")
    dtype = common_dtype(*xs, float_only=False)
    axis = _check_axis("concat", attrs.axis, xs[0].shape)
    shape: list[int | None] = []
    for i in range(xs[0].ndim):
        dims = [x.shape[i] for x in xs]
        if i == axis:
            known_sizes = [d for d in dims if d is not None]
            shape.append(sum(known_sizes) if len(known_sizes) == len(dims) else None)
            continue
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            raise ShapeError(f"concat: inputs differ in dimension {i} (only axis {axis} may differ): {shown}")
        shape.append(known.pop() if known else None)
    return TensorSpec(tuple(shape), dtype)


def concat_vjp(g: Array, xs: tuple[Array, ...], attrs: ConcatAttrs, argnum: int) -> Array:
    """xs_bar[argnum] = the argnum-th piece of g along axis (xs read for their sizes)."""
    axis = attrs.axis % g.ndim
    sizes = [x.shape[axis] for x in xs]
    start = sum(sizes[:argnum])
    index = [slice(None)] * g.ndim
    index[axis] = slice(start, start + sizes[argnum])
    return g[tuple(index)]


def concat_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((2, 3)), n((4, 3))], {}),
        ([n((2, 3)), n((2, 1)), n((2, 2))], {"axis": 1}),
        ([n((2, 3, 4)), n((2, 3, 1))], {"axis": -1}),
        ([n((5,))], {}),
    ]


@defop(concat_vjp, shape_rule=concat_rule, attrs=ConcatAttrs, samples=concat_samples,
       doc="join one or more inputs along axis")  # fmt: skip
def concat(*xs: Array, attrs: ConcatAttrs) -> Array:
    return np.concatenate(xs, axis=attrs.axis)


# --- slice -------------------------------------------------------------------------------


class SliceAttrs(BaseModel):
    """Attributes of slice: selects start, start + step, ... (before stop) along one axis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: StrictInt = Field(description="The axis to slice; negative counts from the end.")
    start: StrictInt = Field(0, description="First index taken. Negative counts from the end (-1 is the last element).")
    stop: StrictInt | None = Field(
        None,
        description=(
            "Index one past the last one taken; null means the end of the axis. Negative counts from the end. "
            "Must lie within the axis: out-of-range values are an error, not clipped."
        ),
    )
    step: StrictInt = Field(
        1,
        description=(
            "Distance between the indices taken; not 0. A negative step walks backwards from start, as in Python: "
            "then stop null means through the first element."
        ),
    )

    @field_validator("step")
    @classmethod
    def _nonzero(cls, step: int) -> int:
        if step == 0:
            raise ValueError("step must not be 0")
        return step


def _bounds(attrs: SliceAttrs, n: int) -> tuple[int, int | None] | str:
    """(start, stop) as non-negative indices for an axis of length ``n`` (stop None: past the first element
    of a backward slice), or what is wrong with them."""
    start = attrs.start + n if attrs.start < 0 else attrs.start
    if not 0 <= start < n:
        return f"start {attrs.start} is out of range for an axis of length {n}"
    if attrs.step < 0:
        if attrs.stop is None:
            return start, None
        stop = attrs.stop + n if attrs.stop < 0 else attrs.stop
        if not 0 <= stop < n:
            return f"stop {attrs.stop} is out of range for an axis of length {n}"
        if stop >= start:
            return f"start {attrs.start} and stop {attrs.stop} select nothing backwards from an axis of length {n}"
        return start, stop
    stop = n if attrs.stop is None else attrs.stop + n if attrs.stop < 0 else attrs.stop
    if not 0 <= stop <= n:
        return f"stop {attrs.stop} is out of range for an axis of length {n}"
    if stop <= start:
        return f"start {attrs.start} and stop {attrs.stop} select nothing from an axis of length {n}"
    return start, stop


def _index(attrs: SliceAttrs, shape: tuple[int, ...]) -> tuple[slice, ...]:
    axis = attrs.axis % len(shape)
    bounds = _bounds(attrs, shape[axis])
    if isinstance(bounds, str):
        raise ValueError(f"slice: {bounds} (input shape {format_shape(shape)}, axis {attrs.axis})")
    index = [slice(None)] * len(shape)
    index[axis] = slice(bounds[0], bounds[1], attrs.step)
    return tuple(index)


def slice_rule(x: TensorSpec, *, attrs: SliceAttrs) -> TensorSpec:
    axis = _check_axis("slice", attrs.axis, x.shape)
    n = x.shape[axis]
    length: int | None
    if n is not None:
        bounds = _bounds(attrs, n)
        if isinstance(bounds, str):
            raise ShapeError(f"slice: {bounds} (input shape {format_shape(x.shape)}, axis {attrs.axis})")
        length = len(range(bounds[0], -1 if bounds[1] is None else bounds[1], attrs.step))
    elif attrs.step > 0 and attrs.start >= 0 and attrs.stop is not None and attrs.stop >= 0:
        # A free axis: the length is known anyway; the range is checked at run time.
        if attrs.stop <= attrs.start:
            raise ShapeError(f"slice: start {attrs.start} and stop {attrs.stop} select nothing (axis {attrs.axis})")
        length = len(range(attrs.start, attrs.stop, attrs.step))
    else:
        length = None
    return TensorSpec(x.shape[:axis] + (length,) + x.shape[axis + 1 :], x.dtype)


def slice_vjp(g: Array, x: Array, attrs: SliceAttrs) -> Array:
    """x_bar = zeros like x with g in the sliced positions (x read for its shape and dtype)."""
    grad = np.zeros_like(x)
    grad[_index(attrs, x.shape)] = g
    return grad


def slice_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((4, 3))], {"axis": 1, "start": 0, "stop": 2}),
        ([n((6, 3))], {"axis": 0, "start": 1, "step": 2}),
        ([n((2, 5, 3))], {"axis": -2, "start": -3, "stop": -1}),
        ([n((5,))], {"axis": 0, "start": 4}),
        ([n((2, 6))], {"axis": 1, "start": -1, "step": -2}),
        ([n((6, 2))], {"axis": 0, "start": 4, "stop": 1, "step": -1}),
    ]


@defop(slice_vjp, shape_rule=slice_rule, attrs=SliceAttrs, samples=slice_samples,
       doc="x[start:stop:step] along one axis; out-of-range indices are an error")  # fmt: skip
def slice_(x: Array, *, attrs: SliceAttrs) -> Array:
    return x[_index(attrs, x.shape)]


# --- identity ----------------------------------------------------------------------------


def identity_rule(x: TensorSpec, *, attrs: NoAttrs) -> TensorSpec:
    return TensorSpec(x.shape, x.dtype)


def identity_samples(rng: np.random.Generator) -> list[Sample]:
    return [([rng.standard_normal((3, 4))], {}), ([rng.standard_normal(())], {})]


@defop(identity_vjp, shape_rule=identity_rule, samples=identity_samples, doc="returns x unchanged")
def identity(x: Array) -> Array:
    return x


OPS = [reshape, transpose, concat, slice_, identity]
