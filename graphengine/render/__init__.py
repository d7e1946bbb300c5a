"""Gradient-annotated diagrams: the chain rule, drawn.

:func:`to_dot` turns a graph, plus optional forward values and a recorded
backward pass (:class:`~graphengine.backward.Trace`), into a
:class:`graphviz.Digraph`. :func:`write` renders it to DOT, SVG, PNG or PDF.

How a diagram reads
-------------------
- Each value is a box: a coloured header with its name and how it is computed
  (``h = sigmoid(h_pre)``), then its shape, its forward value and, in red, its
  gradient ``∂loss/∂h``. Header colours tell kinds apart: inputs blue,
  parameters yellow (thick border), constants grey, op results green. The loss
  has a thick red border and a ``LOSS`` tag.
- Solid grey arrows are the forward data flow. Dashed red arrows run the other
  way, from consumer back to input, labelled with the contribution that input
  receives (already unbroadcast to its shape).
- A value read by several consumers gets one dashed arrow per consumer,
  labelled ``c₁``, ``c₂``, ..., and a row ``Σ = c₁ + c₂ = total``: its gradient
  is the sum.
- Small graphs are drawn per *unit* (one box per tensor element, grouped by
  value) so that, in a 2-2-2 network, the two paths from the two outputs
  visibly meet at each hidden unit. The per-element contributions come from
  the recorded cotangents and the ops' own VJPs (a VJP is linear in its
  cotangent, so one-hot cotangents split it exactly); they add up to the
  recorded per-tensor contributions.
- Nodes that carry a ``label`` in the file (a layer name) are drawn inside one
  cluster per label, with the parameters only that layer uses, which keeps a
  deep network legible. Large graphs are laid out top to bottom.
- Tensors with at most :data:`FULL_ELEMENTS` elements are printed in full;
  larger ones as shape, mean, std, min and max, with NaN/Inf counted in a
  warning colour. In SVG every box and arrow has a tooltip with the full value
  (up to :data:`TOOLTIP_ELEMENTS` elements; export the trace for more).

See ``docs/diagrams.md`` for pictures and the CLI.

Layer: above :mod:`graphengine.engine`, beside :mod:`graphengine.training`;
it uses the engine's public API only. It registers itself as the Jupyter
display of graphs and results (:mod:`graphengine.hooks`), so the engine never
imports it.
"""

from .. import hooks
from .api import RenderWarning, diagram, mimebundle, missing_inputs, to_dot, to_svg, write
from .explorer import Explorer, explore
from .style import FORMATS, FULL_ELEMENTS, TOOLTIP_ELEMENTS, UNIT_LIMIT

__all__ = [
    "to_dot",
    "diagram",
    "write",
    "to_svg",
    "mimebundle",
    "missing_inputs",
    "explore",
    "Explorer",
    "RenderWarning",
    "FULL_ELEMENTS",
    "TOOLTIP_ELEMENTS",
    "UNIT_LIMIT",
    "FORMATS",
]

hooks.set_display(mimebundle)
