"""A complete custom op plugin: ``sin``.

Use it from the command line::

    graphengine grad examples/custom_op/fanout.json --plugin examples/custom_op/sine.py
    graphengine check-op sin --plugin examples/custom_op/sine.py

or from Python::

    graphengine.load("examples/custom_op/fanout.json", plugins=["examples/custom_op/sine.py"])

A plugin is any module that exports ``OPS``, a list of :class:`graphengine.OpDef`.
"""

from __future__ import annotations

import numpy as np

from graphengine import NoAttrs, OpDef, elementwise_rule


def sin_forward(x: np.ndarray, *, attrs: NoAttrs) -> np.ndarray:
    return np.sin(x)


def sin_vjp(g: np.ndarray, out: np.ndarray, x: np.ndarray, *, attrs: NoAttrs) -> np.ndarray:
    # d sin(x) / dx = cos(x); the VJP multiplies the incoming cotangent elementwise.
    return g * np.cos(x)


def sin_samples(rng: np.random.Generator) -> list:
    return [((rng.standard_normal((3,)),), {}), ((rng.standard_normal((2, 4)),), {})]


SIN = OpDef(
    name="sin",
    forward=sin_forward,
    vjps=(sin_vjp,),
    shape_rule=elementwise_rule,
    inputs=("x",),
    vjp_needs=frozenset({"x"}),  # the VJP reads x, not the output: the engine may drop the output early
    samples=sin_samples,
    doc="elementwise sine",
)

OPS = [SIN]
