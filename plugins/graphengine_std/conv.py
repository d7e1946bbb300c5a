"""Convolution and pooling over 1 or 2 spatial axes, as ONNX defines them (NC + spatial layout).

``conv`` is ONNX's Conv (PyTorch's Conv1d/Conv2d): ``x`` of shape
``(N, C, *spatial)``, ``W`` of shape ``(M, C / groups, *kernel)``, ``b`` of
shape ``(M,)``. ``pads`` lists the padding at the start of each spatial axis,
then at the end (ONNX's order). Everything is vectorized: the windows are a
``sliding_window_view`` of the padded input, the products one ``einsum``; the
VJPs loop over kernel offsets (a handful), never over pixels::

    conv        x_bar = the windows' cotangents (g contracted with W) added back into place
                W_bar = g contracted with the windows     b_bar = g summed over N and space
    max_pool    x_bar = g at the first maximum of each window (as PyTorch and ONNX's indices)
    average_pool x_bar = g / count spread over each window
    global_average_pool  x_bar = g / (number of spatial positions)
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from graphengine.errors import ShapeError
from graphengine.ops import NoAttrs, Sample, TensorSpec, common_dtype, defop, format_shape

__all__ = ["OPS", "ConvAttrs", "PoolAttrs"]

Array = np.ndarray
_LETTERS = "hwd"


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strides: list[StrictInt] | None = Field(None, description="Step per spatial axis; default 1.")
    pads: list[StrictInt] | None = Field(
        None, description="Padding: starts of each spatial axis, then ends; default 0."
    )
    dilations: list[StrictInt] | None = Field(None, description="Spacing of kernel taps per spatial axis; default 1.")


class ConvAttrs(_Window):
    """Attributes of conv."""

    groups: StrictInt = Field(1, ge=1, description="Channel groups: C and M must both be multiples of it.")


class PoolAttrs(_Window):
    """Attributes of max_pool and average_pool."""

    kernel_shape: list[StrictInt] = Field(description="Window size per spatial axis.")
    count_include_pad: StrictBool = Field(False, description="average_pool: count padded positions in the divisor.")


def _geometry(attrs: _Window, spatial: int) -> tuple[list[int], list[int], list[int], list[int]]:
    strides = attrs.strides or [1] * spatial
    pads = attrs.pads or [0] * (2 * spatial)
    dil = attrs.dilations or [1] * spatial
    if len(strides) != spatial or len(pads) != 2 * spatial or len(dil) != spatial:
        raise ShapeError(f"strides, pads or dilations do not match {spatial} spatial axes: {strides}, {pads}, {dil}")
    if min(strides + dil) < 1 or min(pads) < 0:
        raise ShapeError(f"strides and dilations must be >= 1 and pads >= 0: {strides}, {pads}, {dil}")
    return strides, pads[:spatial], pads[spatial:], dil


def _out_size(n: int | None, k: int, stride: int, lo: int, hi: int, dil: int, name: str) -> int | None:
    if n is None:
        return None
    extent = dil * (k - 1) + 1
    if n + lo + hi < extent:
        raise ShapeError(f"{name}: the window ({extent}) is larger than the padded axis ({n + lo + hi})")
    return (n + lo + hi - extent) // stride + 1


def _spatial_rule(name: str, x: TensorSpec, kernel: list[int], attrs: _Window) -> tuple[int | None, ...]:
    spatial = x.ndim - 2
    if spatial not in (1, 2):
        raise ShapeError(f"{name}: input of shape {format_shape(x.shape)} is not (N, C, L) or (N, C, H, W)")
    if len(kernel) != spatial:
        raise ShapeError(f"{name}: a kernel of {len(kernel)} axes for {spatial} spatial axes")
    strides, lo, hi, dil = _geometry(attrs, spatial)
    return tuple(_out_size(x.shape[2 + i], kernel[i], strides[i], lo[i], hi[i], dil[i], name) for i in range(spatial))


def _windows(xp: Array, kernel: tuple[int, ...], strides: list[int], dil: list[int]) -> Array:
    """View of shape (N, C, *out, *kernel) of the padded input ``xp``."""
    spatial = len(kernel)
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dil))
    view = sliding_window_view(xp, extent, axis=tuple(range(2, 2 + spatial)))
    index = (slice(None), slice(None), *(slice(None, None, s) for s in strides), *(slice(None, None, d) for d in dil))
    return view[index]


def _pad(x: Array, lo: list[int], hi: list[int], value: float = 0.0) -> Array:
    if not any(lo) and not any(hi):
        return x
    return np.pad(x, [(0, 0), (0, 0), *zip(lo, hi)], constant_values=value)


def _scatter(
    gw: Array, x_shape: tuple[int, ...], strides: list[int], lo: list[int], hi: list[int], dil: list[int]
) -> Array:
    """Add window cotangents ``gw`` (N, C, *out, *kernel) back into an input of shape ``x_shape``."""
    spatial = len(strides)
    out, kernel = gw.shape[2 : 2 + spatial], gw.shape[2 + spatial :]
    padded = np.zeros(x_shape[:2] + tuple(n + a + b for n, a, b in zip(x_shape[2:], lo, hi)), dtype=gw.dtype)
    for offset in np.ndindex(*kernel):  # one step per kernel tap, not per pixel
        index = tuple(slice(k * d, k * d + s * (o - 1) + 1, s) for k, d, s, o in zip(offset, dil, strides, out))
        padded[(slice(None), slice(None), *index)] += gw[(Ellipsis, *offset)]
    crop = tuple(slice(a, a + n) for a, n in zip(lo, x_shape[2:]))
    return padded[(slice(None), slice(None), *crop)]


# --- conv --------------------------------------------------------------------------------


def conv_rule(x: TensorSpec, W: TensorSpec, b: TensorSpec, *, attrs: ConvAttrs) -> TensorSpec:
    dtype = common_dtype(x, W, b)
    if W.ndim != x.ndim or None in W.shape:
        raise ShapeError(f"conv: weight {format_shape(W.shape)} does not match input {format_shape(x.shape)}")
    out = _spatial_rule("conv", x, [d for d in W.shape[2:] if d is not None], attrs)
    m, cg = W.shape[0], W.shape[1]
    assert m is not None and cg is not None
    if m % attrs.groups or (x.shape[1] is not None and x.shape[1] != cg * attrs.groups):
        raise ShapeError(
            f"conv: input {format_shape(x.shape)} and weight {format_shape(W.shape)} do not fit groups={attrs.groups}"
        )
    if b.shape not in ((m,), (1,), ()):
        raise ShapeError(f"conv: bias {format_shape(b.shape)} is not ({m},)")
    return TensorSpec((x.shape[0], m, *out), dtype)


def _grouped(x: Array, W: Array, attrs: ConvAttrs) -> tuple[Array, Array, list[int], list[int], list[int], list[int]]:
    """Windows of x as (N, G, C/G, *out, *kernel) and W as (G, M/G, C/G, *kernel), with the geometry."""
    spatial = x.ndim - 2
    strides, lo, hi, dil = _geometry(attrs, spatial)
    win = _windows(_pad(x, lo, hi), W.shape[2:], strides, dil)
    groups = attrs.groups
    win = win.reshape(win.shape[0], groups, win.shape[1] // groups, *win.shape[2:])
    return win, W.reshape(groups, W.shape[0] // groups, *W.shape[1:]), strides, lo, hi, dil


def _subscripts(spatial: int) -> tuple[str, str]:
    out, ker = _LETTERS[:spatial], "klm"[:spatial]
    return f"ngc{out}{ker}", ker


def conv_vjp_x(g: Array, x: Array, W: Array, attrs: ConvAttrs) -> Array:
    spatial = x.ndim - 2
    win, Wg, strides, lo, hi, dil = _grouped(x, W, attrs)
    sw, ker = _subscripts(spatial)
    gg = g.reshape(g.shape[0], attrs.groups, -1, *g.shape[2:])
    gw = np.einsum(f"ngo{_LETTERS[:spatial]},goc{ker}->{sw}", gg, Wg, optimize=True)
    gw = gw.reshape(gw.shape[0], -1, *gw.shape[3:])
    return _scatter(gw, x.shape, strides, lo, hi, dil)


def conv_vjp_W(g: Array, x: Array, W: Array, attrs: ConvAttrs) -> Array:
    spatial = x.ndim - 2
    win, _, _, _, _, _ = _grouped(x, W, attrs)
    sw, ker = _subscripts(spatial)
    gg = g.reshape(g.shape[0], attrs.groups, -1, *g.shape[2:])
    gW = np.einsum(f"ngo{_LETTERS[:spatial]},{sw}->goc{ker}", gg, win, optimize=True)
    return gW.reshape(W.shape)


def conv_vjp_b(g: Array, b: Array) -> Array:
    total = np.sum(g, axis=(0, *range(2, g.ndim)))
    return total.reshape(b.shape) if b.size == total.size else np.sum(total).reshape(b.shape)


def conv_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((2, 3, 5, 4)), n((2, 3, 3, 2)), n(2)], {}),
        ([n((1, 2, 6, 5)), n((3, 2, 3, 3)), n(3)], {"strides": [2, 1], "pads": [1, 0, 1, 2], "dilations": [1, 2]}),
        ([n((2, 4, 5, 5)), n((6, 2, 2, 2)), n(6)], {"groups": 2, "pads": [1, 1, 0, 0]}),
        ([n((2, 2, 7)), n((3, 2, 3)), n(3)], {"strides": [2], "pads": [1, 1]}),
        ([n((1, 4, 6)), n((4, 1, 2)), n(4)], {"groups": 4, "dilations": [2]}),
    ]


@defop(conv_vjp_x, conv_vjp_W, conv_vjp_b, shape_rule=conv_rule, attrs=ConvAttrs, samples=conv_samples,
       doc="1-D or 2-D convolution (ONNX Conv): strides, pads, dilations, groups")  # fmt: skip
def conv(x: Array, W: Array, b: Array, *, attrs: ConvAttrs) -> Array:
    spatial = x.ndim - 2
    win, Wg, _, _, _, _ = _grouped(x, W, attrs)
    sw, ker = _subscripts(spatial)
    out = np.einsum(f"{sw},goc{ker}->ngo{_LETTERS[:spatial]}", win, Wg, optimize=True)
    out = out.reshape(out.shape[0], -1, *out.shape[3:])
    bias = b.reshape(-1, *([1] * spatial)) if b.ndim else b
    return np.asarray(out + bias, dtype=x.dtype)


# --- pooling -----------------------------------------------------------------------------


def pool_rule(x: TensorSpec, *, attrs: PoolAttrs) -> TensorSpec:
    dtype = common_dtype(x)
    return TensorSpec(x.shape[:2] + _spatial_rule("pool", x, attrs.kernel_shape, attrs), dtype)


def _pool_windows(x: Array, attrs: PoolAttrs, fill: float) -> tuple[Array, list[int], list[int], list[int], list[int]]:
    strides, lo, hi, dil = _geometry(attrs, x.ndim - 2)
    return _windows(_pad(x, lo, hi, fill), tuple(attrs.kernel_shape), strides, dil), strides, lo, hi, dil


def _flat_windows(win: Array, spatial: int) -> Array:
    return win.reshape(*win.shape[: 2 + spatial], -1)


def max_pool_vjp(g: Array, x: Array, attrs: PoolAttrs) -> Array:
    spatial = x.ndim - 2
    win, strides, lo, hi, dil = _pool_windows(x, attrs, -np.inf)
    flat = _flat_windows(win, spatial)
    first = np.argmax(flat, axis=-1)[..., None]
    gw = np.zeros(flat.shape, dtype=g.dtype)
    np.put_along_axis(gw, first, g[..., None], axis=-1)
    return _scatter(gw.reshape(win.shape), x.shape, strides, lo, hi, dil)


def pool_samples(rng: np.random.Generator) -> list[Sample]:
    def distinct(*shape: int) -> Array:  # entries 0.1 apart: a finite difference never moves a maximum
        return np.asarray(rng.permutation(math.prod(shape)).reshape(shape) * 0.1 - 1.0)

    return [
        ([distinct(2, 3, 4, 4)], {"kernel_shape": [2, 2], "strides": [2, 2]}),
        ([distinct(1, 2, 5, 6)], {"kernel_shape": [3, 2], "pads": [1, 0, 1, 1]}),
        ([distinct(1, 2, 7)], {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "count_include_pad": True}),
        ([distinct(1, 1, 6, 6)], {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    ]


@defop(max_pool_vjp, shape_rule=pool_rule, attrs=PoolAttrs, samples=pool_samples,
       doc="maximum over each window (ONNX MaxPool); gradient to the first maximum")  # fmt: skip
def max_pool(x: Array, *, attrs: PoolAttrs) -> Array:
    win, _, _, _, _ = _pool_windows(x, attrs, -np.inf)
    return np.asarray(np.max(_flat_windows(win, x.ndim - 2), axis=-1), dtype=x.dtype)


def _counts(x: Array, attrs: PoolAttrs) -> Array:
    """Number of positions each window averages over (with or without padding)."""
    if attrs.count_include_pad:
        return np.asarray(math.prod(attrs.kernel_shape), dtype=x.dtype)
    ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    win, _, _, _, _ = _pool_windows(ones, attrs, 0.0)
    return np.asarray(np.sum(_flat_windows(win, x.ndim - 2), axis=-1))


def average_pool_vjp(g: Array, x: Array, attrs: PoolAttrs) -> Array:
    spatial = x.ndim - 2
    win, strides, lo, hi, dil = _pool_windows(x, attrs, 0.0)
    share = g / _counts(x, attrs)
    gw = np.broadcast_to(share.reshape(*share.shape, *([1] * spatial)), win.shape)
    return _scatter(np.ascontiguousarray(gw), x.shape, strides, lo, hi, dil)


@defop(average_pool_vjp, shape_rule=pool_rule, attrs=PoolAttrs, samples=pool_samples,
       doc="mean over each window (ONNX AveragePool); padding excluded from the count by default")  # fmt: skip
def average_pool(x: Array, *, attrs: PoolAttrs) -> Array:
    win, _, _, _, _ = _pool_windows(x, attrs, 0.0)
    return np.asarray(np.sum(_flat_windows(win, x.ndim - 2), axis=-1) / _counts(x, attrs), dtype=x.dtype)


def global_pool_rule(x: TensorSpec, *, attrs: NoAttrs) -> TensorSpec:
    if x.ndim < 3:
        raise ShapeError(f"global_average_pool: input of shape {format_shape(x.shape)} has no spatial axes")
    return TensorSpec(x.shape[:2] + (1,) * (x.ndim - 2), common_dtype(x))


def global_pool_samples(rng: np.random.Generator) -> list[Sample]:
    return [([rng.standard_normal((2, 3, 4, 5))], {}), ([rng.standard_normal((1, 2, 3))], {})]


@defop(lambda g, x: np.broadcast_to(g / math.prod(x.shape[2:]), x.shape), shape_rule=global_pool_rule,
       samples=global_pool_samples, doc="mean over every spatial axis, kept as size 1 (ONNX GlobalAveragePool)")  # fmt: skip
def global_average_pool(x: Array) -> Array:
    return np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


OPS = [conv, max_pool, average_pool, global_average_pool]
