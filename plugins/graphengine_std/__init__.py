"""graphengine's standard op library.

Registered like any third-party plugin, through the entry point
``graphengine.ops: std = "graphengine_std:OPS"``. Each submodule declares its
ops with the public plugin API and nothing else, most of them in the terse form
(:func:`graphengine.ops.defop`, which builds plain :class:`graphengine.ops.OpDef`
records):

- :mod:`.arithmetic`: add, sub, mul, div, neg, pow, exp, log, sqrt, abs
- :mod:`.linalg`: matmul, linear
- :mod:`.activations`: sigmoid, tanh, relu, leaky_relu, softplus, gelu
- :mod:`.softmax`: softmax, log_softmax
- :mod:`.reductions`: sum, mean, max
- :mod:`.shape`: reshape, transpose, concat, slice, identity
- :mod:`.losses`: squared_error, softmax_cross_entropy
"""

from __future__ import annotations

from graphengine.ops import OpDef

from . import activations, arithmetic, linalg, losses, reductions, shape, softmax

__all__ = ["OPS"]

OPS: list[OpDef] = [
    *arithmetic.OPS,
    *linalg.OPS,
    *activations.OPS,
    *softmax.OPS,
    *reductions.OPS,
    *shape.OPS,
    *losses.OPS,
]
