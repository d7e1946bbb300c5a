"""The op plugin API: an op is data.

An op is an :class:`OpDef`: a name, a forward function, one VJP per input (or
``None`` for "not differentiable"), a shape/dtype rule, and a pydantic model of
its attributes. The engine learns everything about an op from this record; the
built-in ops in ``graphengine_std`` use nothing else.

Signatures (``attrs`` is always the validated attribute model, keyword-only):

``forward(*inputs, attrs) -> ndarray``
    Compute the output from numpy arrays.

``vjp(g, out, *inputs, attrs) -> ndarray``
    Given the cotangent ``g`` of the output (same shape as ``out``), return the
    cotangent of *one* input. It may return it in the broadcast shape (the
    shape of ``out``); the engine reduces it to the input's shape in one place,
    :func:`unbroadcast`. It must keep the input's dtype. Inputs that the op
    declared it does not need (see ``vjp_needs``) may be passed as ``None``.
    For a ``variadic`` op the single VJP also receives ``argnum=i``.

``shape_rule(*specs, attrs) -> TensorSpec``
    Given :class:`TensorSpec` of the inputs (a dimension may be ``None``: free,
    e.g. the batch), return the output's spec or raise :class:`ShapeError` with
    a message that names the shapes involved.

Examples
--------
>>> import numpy as np
>>> from graphengine.ops import OpDef, elementwise_rule
>>> def square(x, *, attrs):
...     return x * x
>>> def square_vjp(g, out, x, *, attrs):
...     return 2 * x * g
>>> SQUARE = OpDef("square", square, (square_vjp,), elementwise_rule, inputs=("x",))
>>> SQUARE.arity
(1, 1)

The terse form, :func:`defop`, builds the same record from a forward whose
parameters are the inputs and one short VJP per input that names only what it
reads (``g``, ``out``, inputs, ``attrs``):

>>> from graphengine.ops import defop
>>> @defop(lambda g, x: 2 * x * g, doc="x squared")
... def square(x):
...     return x * x
>>> square.arity, square.vjp_needs
((1, 1), frozenset({'x'}))

Layer: the bottom, beside :mod:`graphengine.errors`. It imports nothing else
of graphengine, so a plugin can depend on it alone.
"""

from .inline import inline_as
from .opdef import LossInfo, NoAttrs, OpDef, Sample
from .spec import (
    FLOAT_DTYPES,
    TensorSpec,
    broadcast_shapes,
    common_dtype,
    elementwise_rule,
    format_shape,
)
from .terse import DOMAINS, defop, elementwise_samples, identity_vjp
from .vjp import unbroadcast

__all__ = [
    "TensorSpec",
    "NoAttrs",
    "OpDef",
    "defop",
    "identity_vjp",
    "inline_as",
    "elementwise_samples",
    "DOMAINS",
    "LossInfo",
    "Sample",
    "broadcast_shapes",
    "common_dtype",
    "elementwise_rule",
    "format_shape",
    "unbroadcast",
    "FLOAT_DTYPES",
]
