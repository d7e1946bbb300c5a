"""Elementwise ops from ONNX: erf, clip, where, maximum, minimum, cast_like, dropout (inference).

VJPs::

    erf       x_bar = g * 2/sqrt(pi) * exp(-x**2)
    clip      x_bar = g where min <= x <= max, else 0
    where     a_bar = g where cond, b_bar = g where not cond   (cond: no gradient)
    maximum   xs_bar[i] = g where xs[i] is the maximum, split evenly among ties
    minimum   the same for the minimum
    cast_like x_bar = g cast back to x's dtype     (like: read for its dtype only)
    dropout   x_bar = g                                         (inference: the identity)

``where`` takes its condition as an integer tensor (nonzero is true): the file
format has no bool dtype, and the ONNX importer stores bool masks as int64.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from graphengine.errors import ShapeError
from graphengine.ops import Sample, TensorSpec, broadcast_shapes, common_dtype, defop, format_shape, identity_vjp

__all__ = ["OPS", "ClipAttrs", "DropoutAttrs"]

Array = np.ndarray

_erf = np.frompyfunc(math.erf, 1, 1)


def erf_values(x: Array) -> Array:
    """The error function, elementwise, correctly rounded (``math.erf``) in ``x``'s dtype."""
    return np.asarray(_erf(x), dtype=x.dtype).reshape(x.shape)


@defop(lambda g, x: g * (2 / math.sqrt(math.pi)) * np.exp(-x * x), doc="the error function erf(x)")
def erf(x: Array) -> Array:
    return erf_values(x)


# --- clip --------------------------------------------------------------------------------


class ClipAttrs(BaseModel):
    """Attributes of clip."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: StrictFloat | None = Field(None, allow_inf_nan=False, description="Lower bound; null for none.")
    max: StrictFloat | None = Field(None, allow_inf_nan=False, description="Upper bound; null for none.")


def _inside(x: Array, attrs: ClipAttrs) -> Array:
    keep = np.ones(x.shape, dtype=bool)
    if attrs.min is not None:
        keep &= x >= attrs.min
    if attrs.max is not None:
        keep &= x <= attrs.max
    return keep


def clip_domain(rng: np.random.Generator, shape: tuple[int, ...]) -> Array:
    """Values away from the bounds -0.5 and 0.5 of the samples, so finite differences do not cross them."""
    x = rng.uniform(0.1, 0.4, size=shape) + rng.integers(0, 3, size=shape) * 0.5
    return np.asarray(x * rng.choice([-1.0, 1.0], size=shape))


@defop(lambda g, x, attrs: g * _inside(x, attrs), attrs=ClipAttrs, domain=clip_domain,
       sample_attrs=[{"min": -0.5, "max": 0.5}, {"min": -0.5}, {"max": 0.5}, {}],
       doc="x limited to [min, max]; gradient 0 outside")  # fmt: skip
def clip(x: Array, *, attrs: ClipAttrs) -> Array:
    return np.clip(x, attrs.min, attrs.max) if (attrs.min, attrs.max) != (None, None) else x


# --- where -------------------------------------------------------------------------------


def where_rule(cond: TensorSpec, a: TensorSpec, b: TensorSpec, *, attrs: object) -> TensorSpec:
    if cond.dtype.kind not in "iub":
        raise ShapeError(f"where: the condition is an integer mask (nonzero is true), got {cond.dtype.name}")
    if a.dtype != b.dtype:
        raise ShapeError(f"where: a and b differ in dtype: {a.dtype.name} and {b.dtype.name}")
    return TensorSpec(broadcast_shapes(cond.shape, a.shape, b.shape), a.dtype)


def where_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([rng.integers(0, 2, (2, 3)), n((2, 3)), n((2, 3))], {}),
        ([rng.integers(0, 2, (3,)), n((2, 3)), n(())], {}),
        ([rng.integers(0, 2, (2, 1)), n((1, 3)), n((2, 3))], {}),
    ]


@defop(None, lambda g, cond: np.where(cond != 0, g, 0), lambda g, cond: np.where(cond != 0, 0, g),
       shape_rule=where_rule, samples=where_samples, doc="a where cond is nonzero, else b (cond: an integer mask)")  # fmt: skip
def where(cond: Array, a: Array, b: Array) -> Array:
    return np.where(cond != 0, a, b)


# --- maximum, minimum --------------------------------------------------------------------


def variadic_rule(*xs: TensorSpec, attrs: object) -> TensorSpec:
    return TensorSpec(broadcast_shapes(*(x.shape for x in xs)), common_dtype(*xs))


def _extreme_vjp(g: Array, out: Array, xs: tuple[Array, ...], argnum: int) -> Array:
    """g where xs[argnum] equals the extreme value, split evenly among the inputs that tie there."""
    ties = sum(np.asarray(x == out, dtype=g.dtype) for x in xs)
    return np.where(xs[argnum] == out, g / np.maximum(ties, 1), 0).astype(g.dtype)


def extreme_samples(rng: np.random.Generator) -> list[Sample]:
    """Inputs whose entries differ by at least 0.1, so a finite difference never changes which is largest."""

    def distinct(*shapes: tuple[int, ...]) -> list[Array]:
        shape = broadcast_shapes(*shapes)
        pool = rng.permutation(len(shapes) * math.prod(d or 1 for d in shape)) * 0.1
        out, at = [], 0
        for s in shapes:
            size = math.prod(s)
            out.append(pool[at : at + size].reshape(s))
            at += size
        return out

    return [([*distinct((3,))], {}), ([*distinct((2, 3), (2, 3))], {}), ([*distinct((2, 3), (3,), (1, 1))], {})]


@defop(_extreme_vjp, shape_rule=variadic_rule, samples=extreme_samples,
       doc="elementwise maximum of one or more inputs (ONNX Max); gradient split among ties")  # fmt: skip
def maximum(*xs: Array) -> Array:
    return np.asarray(np.maximum.reduce(np.broadcast_arrays(*xs))) if len(xs) > 1 else xs[0]


@defop(_extreme_vjp, shape_rule=variadic_rule, samples=extreme_samples,
       doc="elementwise minimum of one or more inputs (ONNX Min); gradient split among ties")  # fmt: skip
def minimum(*xs: Array) -> Array:
    return np.asarray(np.minimum.reduce(np.broadcast_arrays(*xs))) if len(xs) > 1 else xs[0]


# --- cast, dropout -----------------------------------------------------------------------


def cast_like_rule(x: TensorSpec, like: TensorSpec, *, attrs: object) -> TensorSpec:
    if x.dtype.kind not in "fiu" or like.dtype.kind != "f":
        raise ShapeError(f"cast_like: cannot cast {x.dtype.name}{format_shape(x.shape)} to {like.dtype.name}")
    return TensorSpec(x.shape, like.dtype)


def cast_like_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((2, 3))
    return [([x, np.zeros(())], {}), ([x, np.zeros(())], {})]


# The target dtype comes from a second value (ONNX CastLike), not an attribute: a plan run in float64
# (gradcheck) then casts the target along with everything else, and float32 stays float32.
@defop(lambda g, x: g.astype(x.dtype), None, shape_rule=cast_like_rule, samples=cast_like_samples,
       doc="x in the float dtype of like (ONNX CastLike; integers may be cast to floats)")  # fmt: skip
def cast_like(x: Array, like: Array) -> Array:
    return x.astype(like.dtype)


class DropoutAttrs(BaseModel):
    """Attributes of dropout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: float = Field(0.5, ge=0.0, lt=1.0, description="Drop probability in training; inference ignores it.")


@defop(identity_vjp, attrs=DropoutAttrs, sample_attrs=[{}, {"ratio": 0.1}],
       doc="dropout in inference mode: returns x unchanged (ratio is kept for the record)")  # fmt: skip
def dropout(x: Array) -> Array:
    return x


OPS = [erf, clip, where, maximum, minimum, cast_like, dropout]
