"""Elementwise arithmetic: add, sub, mul, div, neg, pow, exp, log, sqrt, abs.

Binary ops follow numpy broadcasting and require both inputs to have the same
float dtype (graphengine never promotes). Their VJPs return the cotangent in
the broadcast shape; the engine sums it back to each input's shape
(:func:`graphengine.ops.unbroadcast`).

Each VJP is the local rule written out, e.g. for ``out = a * b``:
``a_bar = g * b`` and ``b_bar = g * a``.
"""

from __future__ import annotations

import numpy as np

from graphengine.ops import NoAttrs, OpDef, Sample, elementwise_rule

Array = np.ndarray

__all__ = ["OPS"]


def _pos(rng: np.random.Generator, *shape: int) -> Array:
    """Values in [0.5, 2): away from 0, where log/sqrt/div/pow misbehave."""
    return rng.uniform(0.5, 2.0, size=shape)


def _away_from_zero(rng: np.random.Generator, *shape: int) -> Array:
    """Values in ±[0.3, 2): away from the kink of abs."""
    return rng.uniform(0.3, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


#: Pairs of shapes every binary op is checked on.
BINARY_SHAPES = [
    ((4, 3), (4, 3)),
    ((4, 3), (3,)),  # row vector broadcast
    ((2, 1), (1, 4)),  # outer broadcast
    ((5, 2, 3), (2, 3)),  # leading batch dimension
    ((), (3,)),  # scalar with vector
]


def _binary_samples(rng: np.random.Generator) -> list[Sample]:
    return [([rng.standard_normal(sa), rng.standard_normal(sb)], {}) for sa, sb in BINARY_SHAPES]


# --- add ---------------------------------------------------------------------------------


def add(a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    return a + b


def add_vjp_a(g: Array, out: Array, a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    """a_bar = g."""
    return g


def add_vjp_b(g: Array, out: Array, a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    """b_bar = g."""
    return g


def add_samples(rng: np.random.Generator) -> list[Sample]:
    return _binary_samples(rng)


# --- sub ---------------------------------------------------------------------------------


def sub(a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    return a - b


def sub_vjp_a(g: Array, out: Array, a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    """a_bar = g."""
    return g


def sub_vjp_b(g: Array, out: Array, a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    """b_bar = -g."""
    return -g


def sub_samples(rng: np.random.Generator) -> list[Sample]:
    return _binary_samples(rng)


# --- mul ---------------------------------------------------------------------------------


def mul(a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    return a * b


def mul_vjp_a(g: Array, out: Array, a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    """a_bar = g * b."""
    return g * b


def mul_vjp_b(g: Array, out: Array, a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    """b_bar = g * a."""
    return g * a


def mul_samples(rng: np.random.Generator) -> list[Sample]:
    return _binary_samples(rng)


# --- div ---------------------------------------------------------------------------------


def div(a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    return a / b


def div_vjp_a(g: Array, out: Array, a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    """a_bar = g / b."""
    return g / b


def div_vjp_b(g: Array, out: Array, a: Array, b: Array, *, attrs: NoAttrs) -> Array:
    """b_bar = -g * a / b**2."""
    return -g * a / (b * b)


def div_samples(rng: np.random.Generator) -> list[Sample]:
    # Numerators of either sign; denominators of either sign but away from 0.
    return [([rng.standard_normal(sa), _away_from_zero(rng, *sb)], {}) for sa, sb in BINARY_SHAPES]


# --- neg ---------------------------------------------------------------------------------


def neg(x: Array, *, attrs: NoAttrs) -> Array:
    return -x


def neg_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = -g."""
    return -g


def unary_samples(rng: np.random.Generator) -> list[Sample]:
    """Any real inputs: a vector, a batch, and a scalar."""
    return [([rng.standard_normal(5)], {}), ([rng.standard_normal((3, 4))], {}), ([rng.standard_normal(())], {})]


# --- pow ---------------------------------------------------------------------------------


def pow_(base: Array, exponent: Array, *, attrs: NoAttrs) -> Array:
    return np.power(base, exponent)


def pow_vjp_base(g: Array, out: Array, base: Array, exponent: Array, *, attrs: NoAttrs) -> Array:
    """base_bar = g * exponent * base**(exponent - 1)."""
    return g * exponent * np.power(base, exponent - 1)


def pow_vjp_exponent(g: Array, out: Array, base: Array, exponent: Array, *, attrs: NoAttrs) -> Array:
    """exponent_bar = g * out * log(base); defined for base > 0 (0 where base == 0, nan where base < 0)."""
    # d/dy 0**y = 0 for y > 0: take log(1) = 0 there instead of -inf * 0 = nan.
    safe = np.where(base == 0, np.ones_like(base), base)
    with np.errstate(invalid="ignore"):
        return g * out * np.log(safe)


def pow_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        ([_pos(rng, 4, 3), rng.uniform(-2, 3, size=(4, 3))], {}),
        ([_pos(rng, 4, 3), rng.uniform(-2, 3, size=(3,))], {}),
        ([_pos(rng, 2, 1), rng.uniform(-2, 3, size=(1, 4))], {}),
        ([_pos(rng, 5, 2, 3), np.array(2.0)], {}),  # square of a batch
        ([_pos(rng, 3), np.array(0.5)], {}),  # sqrt as a power
    ]


# --- exp, log, sqrt, abs -----------------------------------------------------------------


def exp(x: Array, *, attrs: NoAttrs) -> Array:
    return np.exp(x)


def exp_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g * exp(x) = g * out."""
    return g * out


def log(x: Array, *, attrs: NoAttrs) -> Array:
    return np.log(x)


def log_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g / x."""
    return g / x


def sqrt(x: Array, *, attrs: NoAttrs) -> Array:
    return np.sqrt(x)


def sqrt_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g / (2 sqrt(x)) = g / (2 out)."""
    return g / (2 * out)


def positive_samples(rng: np.random.Generator) -> list[Sample]:
    """Positive inputs away from 0, for log and sqrt."""
    return [([_pos(rng, 5)], {}), ([_pos(rng, 3, 4)], {}), ([_pos(rng)], {})]


def abs_(x: Array, *, attrs: NoAttrs) -> Array:
    return np.abs(x)


def abs_vjp(g: Array, out: Array, x: Array, *, attrs: NoAttrs) -> Array:
    """x_bar = g * sign(x) (0 at x == 0, a subgradient)."""
    return g * np.sign(x)


def abs_samples(rng: np.random.Generator) -> list[Sample]:
    return [([_away_from_zero(rng, 5)], {}), ([_away_from_zero(rng, 3, 4)], {})]


OPS = [
    OpDef("add", add, (add_vjp_a, add_vjp_b), elementwise_rule, inputs=("a", "b"),
          vjp_needs=frozenset(), samples=add_samples, doc="a + b, elementwise with broadcasting"),
    OpDef("sub", sub, (sub_vjp_a, sub_vjp_b), elementwise_rule, inputs=("a", "b"),
          vjp_needs=frozenset(), samples=sub_samples, doc="a - b, elementwise with broadcasting"),
    OpDef("mul", mul, (mul_vjp_a, mul_vjp_b), elementwise_rule, inputs=("a", "b"),
          vjp_needs=frozenset({"a", "b"}), samples=mul_samples, doc="a * b, elementwise with broadcasting"),
    OpDef("div", div, (div_vjp_a, div_vjp_b), elementwise_rule, inputs=("a", "b"),
          vjp_needs=frozenset({"a", "b"}), samples=div_samples, doc="a / b, elementwise with broadcasting"),
    OpDef("neg", neg, (neg_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset(), samples=unary_samples, doc="-x"),
    OpDef("pow", pow_, (pow_vjp_base, pow_vjp_exponent), elementwise_rule, inputs=("base", "exponent"),
          vjp_needs=frozenset({"base", "exponent", "out"}), samples=pow_samples,
          doc="base ** exponent with broadcasting; the exponent's gradient needs base > 0"),
    OpDef("exp", exp, (exp_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"out"}), samples=unary_samples, doc="e ** x"),
    OpDef("log", log, (log_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"x"}), samples=positive_samples, doc="natural logarithm of x (x > 0)"),
    OpDef("sqrt", sqrt, (sqrt_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"out"}), samples=positive_samples, doc="square root of x (x >= 0)"),
    OpDef("abs", abs_, (abs_vjp,), elementwise_rule, inputs=("x",),
          vjp_needs=frozenset({"x"}), samples=abs_samples, doc="|x|; gradient sign(x), 0 at x == 0"),
]
