"""Matrix products: matmul and linear (a dense layer).

``matmul`` follows ``numpy.matmul``: the last two axes are matrices, leading
axes are a batch and broadcast; a 1-D first operand is a row vector and a 1-D
second operand a column vector, and that axis is dropped from the result.

``linear`` is PyTorch's ``Linear``: ``out = x @ W.T + b`` with ``W`` of shape
``(out_features, in_features)``, ``x`` of shape ``(..., in_features)`` and
``b`` of shape ``(out_features,)``, ``(1,)`` or ``()`` (one bias shared by
every unit).

VJPs (for matrices; vectors are promoted to matrices and back)::

    out = a @ b          a_bar = g @ b.T       b_bar = a.T @ g
    out = x @ W.T + b    x_bar = g @ W         W_bar = g.T @ x (summed over the batch)
                         b_bar = g             (summed over the batch by the engine)
"""

from __future__ import annotations

import numpy as np

from graphengine.errors import ShapeError
from graphengine.ops import (
    NoAttrs,
    Sample,
    TensorSpec,
    broadcast_shapes,
    common_dtype,
    defop,
    format_shape,
    identity_vjp,
)

__all__ = ["OPS"]

Array = np.ndarray


def _dims_differ(m: int | None, n: int | None) -> bool:
    return m is not None and n is not None and m != n


# --- matmul ------------------------------------------------------------------------------


def matmul_rule(a: TensorSpec, b: TensorSpec, *, attrs: NoAttrs) -> TensorSpec:
    """Shape rule of ``numpy.matmul`` with free dimensions."""
    shown = f"a {format_shape(a.shape)} and b {format_shape(b.shape)}"
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must have at least 1 dimension, got {shown}; use mul for scalars")
    dtype = common_dtype(a, b)
    a_shape = (1,) + a.shape if a.ndim == 1 else a.shape
    b_shape = b.shape + (1,) if b.ndim == 1 else b.shape
    if _dims_differ(a_shape[-1], b_shape[-2]):
        raise ShapeError(f"matmul: inner dimensions differ: {shown}")
    try:
        batch = broadcast_shapes(a_shape[:-2], b_shape[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: batch dimensions do not broadcast: {shown}") from None
    rows = (a_shape[-2],) if a.ndim >= 2 else ()
    cols = (b_shape[-1],) if b.ndim >= 2 else ()
    return TensorSpec(batch + rows + cols, dtype)


def _as_matrices(g: Array, a: Array, b: Array) -> tuple[Array, Array, Array]:
    """Promote 1-D operands (and the matching axes of ``g``) to matrices."""
    if b.ndim == 1:
        b = b[:, None]
        g = g[..., None]
    if a.ndim == 1:
        a = a[None, :]
        g = g[..., None, :]
    return g, a, b


def matmul_vjp_a(g: Array, a: Array, b: Array) -> Array:
    """a_bar = g @ b.T (batch axes left for the engine to sum)."""
    g2, _, b2 = _as_matrices(g, a, b)
    grad = np.matmul(g2, np.swapaxes(b2, -1, -2))
    return grad[..., 0, :] if a.ndim == 1 else grad


def matmul_vjp_b(g: Array, a: Array, b: Array) -> Array:
    """b_bar = a.T @ g (batch axes left for the engine to sum)."""
    g2, a2, _ = _as_matrices(g, a, b)
    grad = np.matmul(np.swapaxes(a2, -1, -2), g2)
    return grad[..., 0] if b.ndim == 1 else grad


def matmul_samples(rng: np.random.Generator) -> list[Sample]:
    shapes = [
        ((2, 3), (3, 4)),
        ((5, 2, 3), (3, 4)),  # batch of matrices times one matrix
        ((1, 2, 3), (4, 3, 2)),  # broadcast batch axes
        ((3,), (3, 4)),  # row vector
        ((2, 3), (3,)),  # column vector
        ((3,), (3,)),  # dot product
        ((3,), (5, 3, 2)),  # vector times a batch of matrices
    ]
    return [([rng.standard_normal(sa), rng.standard_normal(sb)], {}) for sa, sb in shapes]


@defop(matmul_vjp_a, matmul_vjp_b, shape_rule=matmul_rule, samples=matmul_samples,
       doc="matrix product a @ b (numpy.matmul: batched, 1-D operands as vectors)")  # fmt: skip
def matmul(a: Array, b: Array) -> Array:
    return np.matmul(a, b)


# --- linear ------------------------------------------------------------------------------


def linear_rule(x: TensorSpec, W: TensorSpec, b: TensorSpec, *, attrs: NoAttrs) -> TensorSpec:
    """``(..., in) x (out, in) + (out,) -> (..., out)``; the bias may also be ``()`` or ``(1,)``."""
    shown = f"x {format_shape(x.shape)}, W {format_shape(W.shape)} and b {format_shape(b.shape)}"
    dtype = common_dtype(x, W, b)
    if W.ndim != 2:
        raise ShapeError(f"linear: W must be (out_features, in_features), got {shown}")
    if x.ndim == 0:
        raise ShapeError(f"linear: x must be (..., in_features), got {shown}")
    out_features, in_features = W.shape
    if _dims_differ(x.shape[-1], in_features):
        raise ShapeError(f"linear: x's last dimension must equal W's second (in_features): {shown}")
    if b.ndim > 1 or (b.ndim == 1 and b.shape[0] != 1 and _dims_differ(b.shape[0], out_features)):
        raise ShapeError(f"linear: b must be (out_features,), (1,) or () to match W's first dimension: {shown}")
    return TensorSpec(x.shape[:-1] + (out_features,), dtype)


def linear_vjp_W(g: Array, x: Array) -> Array:
    """W_bar = sum over the batch of outer(g, x) = g.T @ x with the batch flattened."""
    if g.ndim == 1:  # a single example: the outer product itself, without two reshapes and a matmul
        return np.multiply.outer(g, x)
    if g.ndim == 2:
        return np.matmul(g.T, x)
    g2 = g.reshape(-1, g.shape[-1])
    x2 = x.reshape(-1, x.shape[-1])
    return np.matmul(g2.T, x2)


def linear_vjp_x(g: Array, W: Array) -> Array:
    """x_bar = g @ W (np.dot for a single example, as in the forward)."""
    return np.dot(g, W) if g.ndim == 1 else np.matmul(g, W)


def linear_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((4, 3)), n((2, 3)), n((2,))], {}),
        ([n((5, 4, 3)), n((2, 3)), np.array(0.35)], {}),  # batched x, shared scalar bias
        ([n((3,)), n((2, 3)), n((2,))], {}),  # a single example
        ([n((4, 3)), n((2, 3)), n((1,))], {}),
    ]


@defop(linear_vjp_x, linear_vjp_W, identity_vjp, shape_rule=linear_rule, samples=linear_samples,
       doc="dense layer x @ W.T + b; W is (out_features, in_features), b is (out_features,) or ()")  # fmt: skip
def linear(x: Array, W: Array, b: Array) -> Array:
    # A single example is W @ x: np.dot's matrix-vector call costs two thirds of matmul's on a small W.
    out = np.dot(W, x) if x.ndim == 1 else np.matmul(x, W.T)
    out += b  # out is ours, at least 1-D and of the output's shape: b broadcasts into it
    return out


OPS = [matmul, linear]
