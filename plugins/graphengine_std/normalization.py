"""Normalization layers: batch_normalization (inference) and layer_normalization.

``batch_normalization`` is ONNX's BatchNormalization in inference mode (PyTorch's
BatchNorm in ``eval()``): channel axis 1, stored running statistics::

    y = (x - mean) / sqrt(var + epsilon) * scale + bias

``layer_normalization`` is ONNX's LayerNormalization (PyTorch's LayerNorm):
statistics over the axes from ``axis`` to the end, biased variance::

    y = (x - mu) / sqrt(sigma2 + epsilon) * scale + bias

VJPs (inv = 1 / sqrt(var + epsilon), xhat the normalized input)::

    batch_normalization  x_bar = g scale inv      scale_bar = sum(g xhat)    bias_bar = sum(g)
                         mean_bar = -sum(g) scale inv   var_bar = -sum(g (x - mean)) scale inv**3 / 2
    layer_normalization  x_bar = inv (h - mean(h) - xhat mean(h xhat)), h = g scale
                         scale_bar = g xhat        bias_bar = g   (summed over the leading axes)
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from graphengine.errors import ShapeError
from graphengine.ops import Sample, TensorSpec, broadcast_shapes, common_dtype, defop, format_shape, identity_vjp

__all__ = ["OPS", "BatchNormAttrs", "LayerNormAttrs"]

Array = np.ndarray


class BatchNormAttrs(BaseModel):
    """Attributes of batch_normalization."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(1e-5, gt=0, description="Added to the variance before the square root.")


def _channel(v: Array, x: Array) -> Array:
    """A per-channel vector shaped to broadcast along axis 1 of x."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _others(x: Array) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def batch_norm_rule(x: TensorSpec, *params: TensorSpec, attrs: BatchNormAttrs) -> TensorSpec:
    dtype = common_dtype(x, *params)
    if x.ndim < 2:
        raise ShapeError(f"batch_normalization: input {format_shape(x.shape)} has no channel axis 1")
    for p in params:
        if p.ndim != 1 or (x.shape[1] is not None and p.shape[0] not in (x.shape[1], None)):
            raise ShapeError(
                f"batch_normalization: per-channel values of shape {format_shape(p.shape)} for input {format_shape(x.shape)}"
            )
    return TensorSpec(x.shape, dtype)


def _inv(var: Array, x: Array, attrs: BatchNormAttrs) -> Array:
    return _channel(1.0 / np.sqrt(var + attrs.epsilon), x)


def bn_vjp_var(g: Array, x: Array, scale: Array, mean: Array, var: Array, attrs: BatchNormAttrs) -> Array:
    inv = _inv(var, x, attrs)
    centred = x - _channel(mean, x)
    return np.asarray(-0.5 * np.sum(g * centred * inv**3, axis=_others(x)) * scale)


def batch_norm_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal

    def params(c: int) -> list[Array]:
        return [n(c), n(c), n(c), rng.uniform(0.5, 2.0, c)]

    return [
        ([n((4, 3)), *params(3)], {}),
        ([n((2, 3, 4, 5)), *params(3)], {"epsilon": 1e-3}),
        ([n((2, 2, 5)), *params(2)], {}),
    ]


@defop(
    lambda g, x, scale, var, attrs: g * _channel(scale, x) * _inv(var, x, attrs),
    lambda g, x, mean, var, attrs: np.sum(g * (x - _channel(mean, x)) * _inv(var, x, attrs), axis=_others(x)),
    lambda g, x: np.sum(g, axis=_others(x)),
    lambda g, x, scale, var, attrs: -np.sum(g, axis=_others(x)) * scale * _inv(var, x, attrs).reshape(-1),
    bn_vjp_var,
    shape_rule=batch_norm_rule,
    attrs=BatchNormAttrs,
    samples=batch_norm_samples,
    doc="inference batch norm over channel axis 1 with stored mean and var (ONNX BatchNormalization)",
)
def batch_normalization(
    x: Array, scale: Array, bias: Array, mean: Array, var: Array, *, attrs: BatchNormAttrs
) -> Array:
    xhat = (x - _channel(mean, x)) * _inv(var, x, attrs)
    return np.asarray(xhat * _channel(scale, x) + _channel(bias, x), dtype=x.dtype)


# --- layer_normalization -----------------------------------------------------------------


class LayerNormAttrs(BaseModel):
    """Attributes of layer_normalization."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axis: StrictInt = Field(-1, description="First normalized axis; the statistics cover it and every later axis.")
    epsilon: float = Field(1e-5, gt=0, description="Added to the variance before the square root.")


def _norm_axes(x: Array | TensorSpec, attrs: LayerNormAttrs) -> tuple[int, ...]:
    ndim = x.ndim
    return tuple(range(attrs.axis % ndim, ndim))


def layer_norm_rule(x: TensorSpec, scale: TensorSpec, bias: TensorSpec, *, attrs: LayerNormAttrs) -> TensorSpec:
    dtype = common_dtype(x, scale, bias)
    if not -x.ndim <= attrs.axis < x.ndim:
        raise ShapeError(f"layer_normalization: axis {attrs.axis} is out of range for {format_shape(x.shape)}")
    tail = x.shape[attrs.axis % x.ndim :]
    for p in (scale, bias):
        if p.ndim > len(tail) or broadcast_shapes(tail, p.shape) != tail:
            raise ShapeError(
                f"layer_normalization: scale or bias {format_shape(p.shape)} does not fit the normalized axes {format_shape(tail)}"
            )
    return TensorSpec(x.shape, dtype)


def _normalized(x: Array, attrs: LayerNormAttrs) -> tuple[Array, Array]:
    axes = _norm_axes(x, attrs)
    centred = x - np.mean(x, axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(np.mean(centred * centred, axis=axes, keepdims=True) + attrs.epsilon)
    return centred * inv, inv


def layer_norm_vjp_x(g: Array, x: Array, scale: Array, attrs: LayerNormAttrs) -> Array:
    axes = _norm_axes(x, attrs)
    xhat, inv = _normalized(x, attrs)
    h = g * scale
    return np.asarray(
        inv * (h - np.mean(h, axis=axes, keepdims=True) - xhat * np.mean(h * xhat, axis=axes, keepdims=True))
    )


def layer_norm_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((4, 5)), n(5), n(5)], {}),
        ([n((2, 3, 4)), n((3, 4)), n(4)], {"axis": 1}),
        ([n((2, 3, 4)), n(4), n(())], {"epsilon": 1e-3}),
    ]


@defop(layer_norm_vjp_x, lambda g, x, attrs: g * _normalized(x, attrs)[0], identity_vjp, shape_rule=layer_norm_rule,
       attrs=LayerNormAttrs, samples=layer_norm_samples,
       doc="normalize over the axes from axis on, then scale and shift (ONNX LayerNormalization)")  # fmt: skip
def layer_normalization(x: Array, scale: Array, bias: Array, *, attrs: LayerNormAttrs) -> Array:
    return np.asarray(_normalized(x, attrs)[0] * scale + bias, dtype=x.dtype)


OPS = [batch_normalization, layer_normalization]
