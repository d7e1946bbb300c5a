"""The drawing API: :func:`to_dot`, :func:`diagram`, :func:`write`, :func:`to_svg` and the Jupyter :func:`mimebundle`.

How a diagram reads is described in :mod:`graphengine.render`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import RenderError

if TYPE_CHECKING:
    import graphviz

    from ..engine import GradResult, Plan, Trace
    from ..graph import Graph

from .dot import _draw, _pipe
from .picture import (
    _highlight_set,
    _node_picture,
    _small,
    _tag_fan_in,
    _try_values,
    _unit_picture,
)
from .style import FORMATS, UNIT_LIMIT


class RenderWarning(UserWarning):
    """A diagram was drawn differently from what was asked, e.g. ``units=True`` past :data:`UNIT_LIMIT`."""


def _unit_count(graph: "Graph", values: Mapping[str, Any]) -> int:
    return sum(int(np.size(values[name])) for name in graph.digraph.nodes if name in values)


def missing_inputs(graph: "Graph", feeds: Mapping[str, Any] | None = None) -> list[str]:
    """The inputs of ``graph`` that have neither a feed nor a default.

    When there are any, :func:`diagram` and :func:`explore` draw the structure only
    (ids, ops, static types) and run no pass.

    Parameters
    ----------
    graph : Graph
    feeds : mapping of str to array_like, optional

    Returns
    -------
    list of str
        In the graph's order of inputs.

    Examples
    --------
    >>> import graphengine
    >>> from graphengine.render import missing_inputs
    >>> missing_inputs(graphengine.load("examples/digits/mlp.json"))
    ['x', 'label']
    >>> missing_inputs(graphengine.load("examples/digits/mlp.json"), {"x": [[0.0] * 64], "label": [0]})
    []
    """
    return [name for name, info in graph.inputs.items() if info.default is None and name not in (feeds or {})]


def to_dot(
    graph: "Graph",
    *,
    values: Mapping[str, Any] | None = None,
    gradients: Mapping[str, Any] | None = None,
    trace: "Trace | None" = None,
    highlight: str | None = None,
    units: bool | None = None,
    rankdir: str | None = None,
    title: str | None = None,
) -> "graphviz.Digraph":
    """Build the diagram of ``graph`` as a :class:`graphviz.Digraph`.

    Parameters
    ----------
    graph : Graph
    values : mapping of str to array_like, optional
        Forward values by name, e.g. ``plan.run_all(feeds)``.
    gradients : mapping of str to array_like, optional
        Gradients by name (``GradResult.gradients``); shown on leaves.
    trace : Trace, optional
        A recorded backward pass (``value_and_grad(..., record=True).trace``):
        every node's gradient, the contribution on every arrow, and the sums
        where several contributions meet.
    highlight : str, optional
        A value name: every path from the output (the trace's, else the loss)
        back to it is drawn bold, the rest dimmed.
    units : bool, optional
        Draw one box per tensor element. Default: only when every tensor has at
        most ``UNIT_MAX_ELEMENTS`` elements and there are at most
        ``UNIT_MAX_TOTAL`` in all. Needs ``values``. Past ``UNIT_LIMIT``
        elements, ``True`` falls back to one box per tensor with a
        :class:`RenderWarning`.
    rankdir : {"LR", "TB"}, optional
        Default: left to right; top to bottom above ``TALL_AFTER`` boxes or
        when the longest chain has more than ``LONG_AFTER`` boxes.
    title : str, optional
        Caption; default: the graph's name or file.

    Returns
    -------
    graphviz.Digraph
        Node ids are the graph's names (``name[i, j]`` for units).

    Raises
    ------
    RenderError
        ``highlight`` names nothing, or nothing that reaches the output.
    ExecutionError
        An op's VJP failed while splitting contributions per unit.

    Examples
    --------
    >>> import graphengine
    >>> from graphengine.render import to_dot
    >>> g = graphengine.load("examples/seed_network.json")
    >>> result = g.value_and_grad(record=True)
    >>> dot = to_dot(g, values=g.compile().run_all(), gradients=result.gradients, trace=result.trace)
    >>> "Σ = c₁ + c₂" in dot.source
    True
    """
    picture = _node_picture(graph, values, gradients, trace)
    if units is None:
        units = values is not None and _small(graph, values)
    if units and values is not None and _unit_count(graph, values) > UNIT_LIMIT:
        warnings.warn(
            f"--units: {_unit_count(graph, values)} element boxes is past the readable limit of {UNIT_LIMIT}; "
            "drawing one box per tensor instead",
            RenderWarning,
            stacklevel=2,
        )
        units = False
    if units and values is None:
        warnings.warn(
            "--units needs forward values; drawing the structure, one box per tensor", RenderWarning, stacklevel=2
        )
        units = False
    if units:
        assert values is not None
        picture = _unit_picture(graph, picture, values, trace)
    _tag_fan_in(picture)
    on_path = _highlight_set(graph, picture, highlight) if highlight else None
    return _draw(graph, picture, on_path, highlight, rankdir, title)


def diagram(
    source: "Graph | Plan",
    feeds: Mapping[str, Any] | None = None,
    *,
    grad: bool = False,
    wrt: Sequence[str] | None = None,
    output: str | None = None,
    highlight: str | None = None,
    units: bool | None = None,
    rankdir: str | None = None,
) -> "tuple[graphviz.Digraph, GradResult | None]":
    """Run forward (and with ``grad``, a recorded backward pass), then :func:`to_dot`.

    Parameters
    ----------
    source : Graph or Plan
    feeds : mapping, optional
        As :meth:`Plan.run`.
    grad : bool
        Also differentiate ``output`` (default: the loss) with respect to
        ``wrt`` (default: every parameter) and draw the backward pass.
        When an input has neither a feed nor a default, the diagram shows
        structure only (ids, ops, shapes) and no pass is run.
    wrt, output, highlight, units, rankdir
        As :meth:`Plan.value_and_grad` and :func:`to_dot`.

    Returns
    -------
    (graphviz.Digraph, GradResult or None)
        The diagram, and the gradient result (with its trace) when ``grad``.

    Raises
    ------
    FeedError, ExecutionError, RenderError

    Examples
    --------
    >>> import graphengine
    >>> from graphengine.render import diagram
    >>> dot, result = diagram(graphengine.load("examples/seed_network.json"), grad=True, highlight="W_h")
    >>> sorted(result.gradients)
    ['W_h', 'W_o', 'b_h', 'b_o']
    """
    plan = source.compile() if hasattr(source, "compile") else source
    if missing_inputs(plan.graph, feeds):  # draw ids, ops and shapes: any valid file can be drawn
        values, result = None, None
    else:
        values = plan.run_all(feeds)
        result = plan.value_and_grad(feeds, wrt, output=output, record=True) if grad else None
    dot = to_dot(
        plan.graph,
        values=values,
        gradients=result.gradients if result else None,
        trace=result.trace if result else None,
        highlight=highlight,
        units=units,
        rankdir=rankdir,
    )
    return dot, result


def write(dot: "graphviz.Digraph", path: str | Path, fmt: str | None = None) -> Path:
    """Write ``dot`` to ``path`` as DOT text, or rendered as SVG, PNG or PDF.

    Parameters
    ----------
    dot : graphviz.Digraph
    path : str or Path
    fmt : str, optional
        One of :data:`FORMATS`; default: from the suffix of ``path``.

    Returns
    -------
    Path

    Raises
    ------
    RenderError
        Not a diagram, unknown format, no ``dot`` program (one line saying
        how to install Graphviz), ``dot`` failing, or the file not writable.
    """
    if not hasattr(dot, "source"):  # e.g. the (dot, result) pair that diagram() returns
        raise RenderError(
            f"write() takes a graphviz.Digraph, not {type(dot).__name__}; diagram() returns (dot, result)"
        )
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise RenderError(f"cannot tell the format of {str(path)!r}: use a .svg, .png, .pdf or .dot file name")
    data: bytes = dot.source.encode() if fmt in ("dot", "gv") else _pipe(dot, fmt)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise RenderError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    return path


def to_svg(dot: "graphviz.Digraph") -> str:
    """Render ``dot`` as SVG text; raises :class:`RenderError` without Graphviz."""
    return _pipe(dot, "svg").decode()


def mimebundle(obj: "Graph | GradResult") -> dict[str, str]:
    """Jupyter display of a graph or a gradient result: SVG when Graphviz is installed."""
    from ..engine import GradResult

    text = repr(obj)
    try:
        if isinstance(obj, GradResult):
            if obj.plan is None:
                return {"text/plain": text}
            plan = obj.plan
            dot = to_dot(
                plan.graph,
                values=plan.run_all(obj.feeds),
                gradients=obj.gradients,
                trace=obj.trace,
            )
        else:
            dot = to_dot(obj, values=_try_values(obj))
        return {"image/svg+xml": to_svg(dot), "text/plain": text}
    except RenderError:
        return {"text/plain": text}
