"""Elementwise arithmetic: add, sub, mul, div, neg, pow, exp, log, sqrt, abs.

Binary ops follow numpy broadcasting and require both inputs to have the same
float dtype (graphengine never promotes). Their VJPs return the cotangent in
the broadcast shape; the engine sums it back to each input's shape
(:func:`graphengine.ops.unbroadcast`).

Every op but pow is declared ``inline``: its forward and VJPs are plain ufunc
expressions, which the generated code writes out as lines (docs/plugins.md,
"Inline ops"). Each VJP is the local rule written out, e.g. for ``out = a * b``:
``a_bar = g * b`` and ``b_bar = g * a``. Every op here is elementwise, so
:func:`graphengine.ops.defop` gives it the elementwise shape rule and samples
with every kind of broadcasting; ``domain`` keeps them where the op is smooth.
"""

from __future__ import annotations

import numpy as np

from graphengine.ops import Sample, defop, identity_vjp

Array = np.ndarray

__all__ = ["OPS"]


@defop(identity_vjp, identity_vjp, inline=True, doc="a + b, elementwise with broadcasting")
def add(a: Array, b: Array) -> Array:
    return a + b


@defop(identity_vjp, lambda g: -g, inline=True, doc="a - b, elementwise with broadcasting")
def sub(a: Array, b: Array) -> Array:
    return a - b


@defop(lambda g, b: g * b, lambda g, a: g * a, inline=True, doc="a * b, elementwise with broadcasting")
def mul(a: Array, b: Array) -> Array:
    return a * b


@defop(lambda g, b: g / b, lambda g, a, b: -g * a / (b * b), domain={"b": "nonzero"}, inline=True,
       doc="a / b, elementwise with broadcasting")  # fmt: skip
def div(a: Array, b: Array) -> Array:
    return a / b


@defop(lambda g: -g, inline=True, doc="-x")
def neg(x: Array) -> Array:
    return -x


def pow_vjp_exponent(g: Array, out: Array, base: Array) -> Array:
    """exponent_bar = g * out * log(base); defined for base > 0 (0 where base == 0, nan where base < 0)."""
    # d/dy 0**y = 0 for y > 0: take log(1) = 0 there instead of -inf * 0 = nan.
    safe = np.where(base == 0, np.ones_like(base), base)
    with np.errstate(invalid="ignore"):
        return g * out * np.log(safe)


def pow_samples(rng: np.random.Generator) -> list[Sample]:
    def pos(*shape: int) -> Array:  # bases away from 0
        return rng.uniform(0.5, 2.0, size=shape)

    def exponent(*shape: int) -> Array:
        return rng.uniform(-2, 3, size=shape)

    return [
        ([pos(4, 3), exponent(4, 3)], {}),
        ([pos(4, 3), exponent(3)], {}),
        ([pos(2, 1), exponent(1, 4)], {}),
        ([pos(5, 2, 3), np.array(2.0)], {}),  # square of a batch
        ([pos(3), np.array(0.5)], {}),  # sqrt as a power
    ]


@defop(lambda g, base, exponent: g * exponent * np.power(base, exponent - 1), pow_vjp_exponent, samples=pow_samples,
       doc="base ** exponent with broadcasting; the exponent's gradient needs base > 0")  # fmt: skip
def pow_(base: Array, exponent: Array) -> Array:
    return np.power(base, exponent)


@defop(lambda g, out: g * out, inline=True, doc="e ** x")
def exp(x: Array) -> Array:
    return np.exp(x)


@defop(lambda g, x: g / x, domain="positive", inline=True, doc="natural logarithm of x (x > 0)")
def log(x: Array) -> Array:
    return np.log(x)


@defop(lambda g, out: g / (2 * out), domain="positive", inline=True, doc="square root of x (x >= 0)")
def sqrt(x: Array) -> Array:
    return np.sqrt(x)


@defop(lambda g, x: g * np.sign(x), domain="nonzero", inline=True, doc="|x|; gradient sign(x), 0 at x == 0")
def abs_(x: Array) -> Array:
    return np.abs(x)


OPS = [add, sub, mul, div, neg, pow_, exp, log, sqrt, abs_]
