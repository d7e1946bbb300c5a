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
- :mod:`.elementwise`: erf, clip, where, maximum, minimum, cast_like, dropout
- :mod:`.indexing`: gather, expand, flatten, squeeze, unsqueeze
- :mod:`.conv`: conv, max_pool, average_pool, global_average_pool
- :mod:`.normalization`: batch_normalization, layer_normalization
"""

from __future__ import annotations

from graphengine.ops import OpDef

from . import (
    activations,
    arithmetic,
    conv,
    elementwise,
    indexing,
    linalg,
    losses,
    normalization,
    reductions,
    shape,
    softmax,
)

__all__ = ["OPS"]

OPS: list[OpDef] = [
    *arithmetic.OPS,
    *linalg.OPS,
    *activations.OPS,
    *softmax.OPS,
    *reductions.OPS,
    *shape.OPS,
    *losses.OPS,
    *elementwise.OPS,
    *indexing.OPS,
    *conv.OPS,
    *normalization.OPS,
]
