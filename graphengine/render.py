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
"""

from __future__ import annotations

import functools
import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import networkx as nx
import numpy as np

from .errors import ExecutionError, FeedError, RenderError
from .ops import unbroadcast

if TYPE_CHECKING:
    import argparse

    import graphviz

    from .backward import Trace
    from .graph import Graph
    from .plan import GradResult, Plan

__all__ = ["to_dot", "diagram", "write", "to_svg", "mimebundle", "FULL_ELEMENTS", "TOOLTIP_ELEMENTS", "FORMATS"]

#: Tensors with at most this many elements are printed in full.
FULL_ELEMENTS = 6
#: Tooltips hold the full value up to this many elements.
TOOLTIP_ELEMENTS = 10_000
#: Output formats, by file suffix.
FORMATS = ("dot", "gv", "svg", "png", "pdf")
#: Unit (per-element) drawing is chosen automatically below these sizes.
UNIT_MAX_ELEMENTS = 8
UNIT_MAX_TOTAL = 48
#: Graphs with more boxes than this are laid out top to bottom.
TALL_AFTER = 40

INSTALL_HINT = (
    "the Graphviz 'dot' program is needed for {fmt} output but was not found on PATH; install Graphviz "
    "(Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; conda: conda install graphviz) "
    "or write DOT instead (-o diagram.dot)"
)

# Colours: one meaning each, also explained in the legend.
FORWARD = "#4b5563"
BACKWARD = "#c0392b"
DIM = "#d1d5db"
DIM_TEXT = "#9ca3af"
WARN = "#f59e0b"
KIND_FILL = {"input": "#dbeafe", "parameter": "#fde68a", "constant": "#e5e7eb", "op": "#dcfce7"}
KIND_BORDER = {"input": "#1d4ed8", "parameter": "#b45309", "constant": "#6b7280", "op": "#15803d"}
LOSS_FILL, LOSS_BORDER = "#fecaca", "#b91c1c"
SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


# --- the picture as data ---------------------------------------------------------------------


@dataclass
class _Box:
    """One drawn value (a whole tensor, or one element of it)."""

    id: str
    name: str
    kind: str
    formula: str
    shape: tuple[int, ...] | None
    value: np.ndarray | None
    grad: np.ndarray | None
    value_name: str  # the tensor this box belongs to
    layer: str | None
    fan_in: list[tuple[str, np.ndarray]] = field(default_factory=list)
    spec: str = ""  # static type, shown when there is no value


@dataclass
class _Wire:
    """``src`` is read by ``dst``; ``contribution`` is what flows back along it."""

    src: str
    dst: str
    position: int  # which input of dst
    contribution: np.ndarray | None = None
    tag: str = ""  # c₁, c₂, ... when src has several


@dataclass
class _Picture:
    boxes: dict[str, _Box]
    wires: list[_Wire]
    clusters: dict[str, str]  # value name -> cluster caption (unit drawing only)
    output: str | None  # the value gradients are taken of
    units: bool


# --- public API ------------------------------------------------------------------------------


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
        ``UNIT_MAX_TOTAL`` in all. Needs ``values``.
    rankdir : {"LR", "TB"}, optional
        Default: left to right, top to bottom above ``TALL_AFTER`` boxes.
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
    if units:
        if values is None:
            raise RenderError("a per-unit diagram needs forward values")
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
        raise RenderError(f"write() takes a graphviz.Digraph, not {type(dot).__name__}; diagram() returns (dot, result)")
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
    from .plan import GradResult

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


# --- CLI -------------------------------------------------------------------------------------


def cmd_render(args: "argparse.Namespace") -> int:
    """``graphengine render``: see ``graphengine render --help``."""
    import json

    from .cli import _load, parse_feeds

    started = time.perf_counter()
    graph = _load(args)
    grad = args.grad or args.trace is not None or bool(args.wrt) or args.output is not None
    dot, result = diagram(
        graph,
        parse_feeds(args.feed),
        grad=grad,
        wrt=args.wrt or None,
        output=args.output,
        highlight=args.highlight,
        units=args.units,
        rankdir=args.rankdir,
    )
    if args.trace is not None and result is not None and result.trace is not None:
        try:
            Path(args.trace).write_text(json.dumps(result.trace.to_json(), indent=1) + "\n")
        except OSError as exc:
            raise RenderError(f"cannot write {args.trace!r}: {exc.strerror or exc}") from None
    if args.out is None or args.out == "-":
        print(dot.source)
        return 0
    write(dot, args.out)
    extra = f"; trace in {args.trace}" if args.trace else ""
    print(f"wrote {args.out} ({time.perf_counter() - started:.2f} s{extra})")
    return 0


def add_arguments(p: "argparse.ArgumentParser") -> None:
    """The options of ``graphengine render``."""
    import argparse

    p.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE", help="input value: inline JSON or a .npy file (repeatable)")
    p.add_argument("--grad", action="store_true", help="also run a recorded backward pass and draw it")
    p.add_argument("--wrt", action="append", metavar="NAME", help="differentiate with respect to NAME (repeatable; implies --grad); default: every parameter")
    p.add_argument("--output", metavar="NAME", help="value to differentiate (implies --grad); default: the graph's loss")
    p.add_argument("--highlight", metavar="NAME", help="draw every path from the output back to NAME bold, dim the rest")
    p.add_argument("--units", action=argparse.BooleanOptionalAction, default=None, help="one box per tensor element (default: only for small graphs)")
    p.add_argument("--rankdir", choices=["LR", "TB"], help="layout direction (default: LR, TB for large graphs)")
    p.add_argument("--trace", metavar="FILE.json", help="also write the recorded backward pass as JSON (implies --grad)")
    p.add_argument("-o", "--out", metavar="FILE", help="diagram file: .svg, .png, .pdf or .dot; default: DOT on stdout")


# --- building the picture --------------------------------------------------------------------


def _try_values(graph: "Graph") -> dict[str, np.ndarray] | None:
    try:  # inputs without defaults: draw structure only
        return graph.compile().run_all()
    except FeedError:
        return None


def _node_picture(
    graph: "Graph", values: Mapping[str, Any] | None, gradients: Mapping[str, Any] | None, trace: "Trace | None"
) -> _Picture:
    values = values or {}
    grads: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in (gradients or {}).items()}
    sent: dict[tuple[str, int], np.ndarray] = {}
    if trace is not None:
        grads[trace.output] = np.asarray(trace.seed)
        for step in trace.steps:
            grads[step.node] = np.asarray(step.cotangent)
            for _, position, contribution in step.contributions:
                sent[step.node, position] = np.asarray(contribution)
        for name, fan in trace.fan_in.items():
            grads[name] = np.asarray(fan.total)
    boxes: dict[str, _Box] = {}
    layer_of = _layers(graph)
    for kind, names in (("input", graph.inputs), ("parameter", graph.parameters), ("constant", graph.constants)):
        for name in names:
            boxes[name] = _box(graph, name, kind, "", values, grads, layer_of)
    wires = []
    for node in graph.nodes.values():
        formula = f"{node.op.name}({', '.join(node.inputs)})"
        boxes[node.id] = _box(graph, node.id, "op", formula, values, grads, layer_of)
        for position, src in enumerate(node.inputs):
            wires.append(_Wire(src, node.id, position, sent.get((node.id, position))))
    output = trace.output if trace is not None else graph.loss or (graph.outputs[0] if graph.outputs else None)
    return _Picture(boxes, wires, {}, output, units=False)


def _box(graph: "Graph", name: str, kind: str, formula: str, values: Mapping[str, Any], grads: Mapping[str, np.ndarray], layer_of: Mapping[str, str]) -> _Box:
    value = values.get(name)
    value = None if value is None else np.asarray(value)
    shape = value.shape if value is not None else None
    box = _Box(name, name, kind, formula, shape, value, grads.get(name), name, layer_of.get(name))
    box.spec = str(graph.spec(name))
    return box


def _layers(graph: "Graph") -> dict[str, str]:
    """Layer label of every node, and of every leaf that only one layer reads."""
    layer = {node.id: node.label for node in graph.nodes.values() if node.label}
    for name in (*graph.parameters, *graph.constants):
        readers = {layer.get(v) for v in graph.digraph.successors(name)}
        if len(readers) == 1 and None not in readers:
            layer[name] = readers.pop()  # type: ignore[assignment]
    return layer


def _small(graph: "Graph", values: Mapping[str, Any]) -> bool:
    sizes = [np.size(values[name]) for name in graph.digraph.nodes if name in values]
    return len(sizes) == graph.digraph.number_of_nodes() and max(sizes, default=0) <= UNIT_MAX_ELEMENTS and sum(sizes) <= UNIT_MAX_TOTAL


def _unit_ids(name: str, shape: tuple[int, ...]) -> list[str]:
    size = int(np.prod(shape, dtype=np.int64))
    if size == 1:
        return [name]
    return [f"{name}[{','.join(map(str, np.unravel_index(k, shape)))}]" for k in range(size)]


def _unit_picture(graph: "Graph", node_pic: _Picture, values: Mapping[str, Any], trace: "Trace | None") -> _Picture:
    """Split every tensor into its elements; arrows where an element's local derivative is non-zero."""
    cotangent = {step.node: np.asarray(step.cotangent) for step in trace.steps} if trace is not None else {}
    boxes: dict[str, _Box] = {}
    ids: dict[str, list[str]] = {}
    clusters: dict[str, str] = {}
    for name, box in node_pic.boxes.items():
        value = np.asarray(values[name])
        ids[name] = _unit_ids(name, value.shape)
        if len(ids[name]) > 1:
            head = f"{name} = {box.formula}" if box.formula else f"{name} ({box.kind})"
            clusters[name] = f"{head}   shape {_shape(value.shape)}"
        for k, uid in enumerate(ids[name]):
            grad = None if box.grad is None else np.asarray(box.grad).reshape(-1)[k]
            formula = box.formula if len(ids[name]) == 1 else ""
            boxes[uid] = _Box(uid, uid, box.kind, formula, (), value.reshape(-1)[k], grad, name, box.layer)
    wires: list[_Wire] = []
    for wire in node_pic.wires:
        node = graph.nodes[wire.dst]
        jac = _jacobian(node, wire.position, values)
        g = cotangent.get(node.id)
        src_ids, dst_ids = ids[wire.src], ids[wire.dst]
        for j, dst in enumerate(dst_ids):
            for i, src in enumerate(src_ids):
                if jac is not None and jac[j, i] == 0:
                    continue
                contribution = None
                if jac is not None and g is not None and wire.contribution is not None:
                    contribution = np.asarray(g.reshape(-1)[j] * jac[j, i])
                wires.append(_Wire(src, dst, wire.position, contribution))
    return _Picture(boxes, wires, clusters, node_pic.output, units=True)


def _jacobian(node: Any, position: int, values: Mapping[str, Any]) -> np.ndarray | None:
    """Rows: output elements; columns: elements of input ``position``. None when the input has no VJP."""
    op = node.op
    vjp = op.vjp_for(position)
    x = np.asarray(values[node.inputs[position]])
    if vjp is None or x.dtype.kind != "f":
        return None
    if op.variadic and position >= len(op.inputs) - 1:
        vjp = functools.partial(vjp, argnum=position)
    out = np.asarray(values[node.id])
    args = [values[name] for name in node.inputs]
    rows = np.empty((out.size, x.size), dtype=x.dtype)
    for j in range(out.size):
        onehot = np.zeros(out.shape, dtype=out.dtype)
        onehot.reshape(-1)[j] = 1
        try:
            rows[j] = np.ravel(unbroadcast(np.asarray(vjp(onehot, out, *args, attrs=node.attrs)), x.shape))
        except Exception as exc:
            raise ExecutionError(f"node {node.id!r} (op {op.name!r}), input {position}: VJP failed while drawing: {exc}") from exc
    return rows


def _tag_fan_in(picture: _Picture) -> None:
    """Number the contributions that meet at one value: c₁, c₂, ...; record them for its Σ row."""
    by_src: dict[str, list[_Wire]] = {}
    for wire in picture.wires:
        if wire.contribution is not None:
            by_src.setdefault(wire.src, []).append(wire)
    for src, wires in by_src.items():
        if len(wires) < 2:
            continue
        for k, wire in enumerate(wires, 1):
            wire.tag = f"c{k}".translate(SUBSCRIPTS)
        picture.boxes[src].fan_in = [(w.dst, w.contribution) for w in wires]  # type: ignore[misc]


def _highlight_set(graph: "Graph", picture: _Picture, name: str) -> set[tuple[str, str] | str]:
    if name not in graph.digraph:
        import difflib

        close = difflib.get_close_matches(name, list(graph.digraph.nodes), n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise RenderError(f"--highlight {name!r}: no such value in the graph{hint}")
    flow = nx.DiGraph()
    flow.add_nodes_from(picture.boxes)
    flow.add_edges_from((w.src, w.dst) for w in picture.wires)
    sources = {b.id for b in picture.boxes.values() if b.value_name == name}
    targets = {b.id for b in picture.boxes.values() if b.value_name == picture.output}
    below: set[str] = set(sources)
    for s in sources:
        below |= nx.descendants(flow, s)
    above: set[str] = set(targets)
    for t in targets:
        above |= nx.ancestors(flow, t)
    nodes = below & above
    if not nodes & targets:
        raise RenderError(f"--highlight {name!r}: no path from {picture.output!r} back to {name!r}")
    edges = {(w.src, w.dst) for w in picture.wires if w.src in nodes and w.dst in nodes}
    return {*nodes, *edges}


# --- drawing ---------------------------------------------------------------------------------


def _draw(graph: "Graph", picture: _Picture, on_path: set[Any] | None, highlight: str | None, rankdir: str | None, title: str | None) -> "graphviz.Digraph":
    import graphviz

    name = title or graph.document.name or (Path(graph.file).stem if graph.file else "graph")
    has_grad = any(b.grad is not None for b in picture.boxes.values())
    dot = graphviz.Digraph(name=name, engine="dot")
    rankdir = rankdir or ("TB" if len(picture.boxes) > TALL_AFTER else "LR")
    lr = rankdir == "LR"
    dot.attr(
        rankdir=rankdir,
        newrank="true",
        nodesep="0.25",
        ranksep="0.55",
        fontname="Helvetica",
        fontsize="11",
        tooltip=name,
        label=_legend(name, picture, has_grad, highlight),
        labelloc="b",
        labeljust="l",
    )
    dot.attr("node", shape="plain", fontname="Helvetica", fontsize="10")
    dot.attr("edge", fontname="Helvetica", fontsize="9")

    # Clusters: layer label, then (unit drawing) one per tensor.
    layers: dict[str | None, dict[str | None, list[_Box]]] = {}
    for box in picture.boxes.values():
        group = box.value_name if box.value_name in picture.clusters else None
        layers.setdefault(box.layer, {}).setdefault(group, []).append(box)
    numbered = {layer: k for k, layer in enumerate(name for name in layers if name)}
    # Without this, a layer's weights take the rank of the previous layer's output, so layer frames
    # cannot stack and a deep network drifts into a staircase.
    readers: dict[str, set[str]] = {}
    for wire in picture.wires:
        readers.setdefault(wire.src, set()).add(wire.dst)
    pins = {
        name: next(iter(readers[name]))
        for name, box in picture.boxes.items()
        if not picture.units and box.kind in ("parameter", "constant") and box.layer and len(readers.get(name, ())) == 1
    }
    for layer, groups in layers.items():
        outer = dot.subgraph(name=f"cluster_layer{numbered[layer]}") if layer else _Same(dot)
        with outer as lg:
            if layer:
                lg.attr(label=layer, style="rounded,filled", fillcolor="#f8fafc", color="#cbd5e1", fontcolor="#475569", fontsize="11", labeljust="l")
            for group, boxes in groups.items():
                inner = lg.subgraph(name=f"cluster_v_{group}") if group else _Same(lg)
                with inner as vg:
                    if group:
                        dim = on_path is not None and not any(b.id in on_path for b in boxes)
                        vg.attr(label=picture.clusters[group], style="rounded,dashed", color=DIM if dim else "#94a3b8", fontcolor=DIM_TEXT if dim else "#334155", fontsize="10", labeljust="l")
                    for leaf, reader in pins.items():  # a layer's weights beside the node that reads them
                        if picture.boxes[reader].layer == layer and picture.boxes[leaf] in boxes:
                            with vg.subgraph() as same:
                                same.attr(rank="same")
                                same.node(leaf)
                                same.node(reader)
                    for box in reversed(boxes) if lr and group else boxes:  # LR stacks a frame bottom-up: keep x[0] on top
                        dim = on_path is not None and box.id not in on_path
                        bold = on_path is not None and not dim
                        vg.node(box.id, label=_table(box, picture, dim, bold), tooltip=_box_tooltip(box, picture.output), **({"class": "highlight"} if bold else {"class": "dimmed"} if dim else {}))

    for wire in picture.wires:
        dim = on_path is not None and (wire.src, wire.dst) not in on_path
        bold = on_path is not None and not dim
        css = {"class": "highlight"} if bold else {"class": "dimmed"} if dim else {}
        dot.edge(
            wire.src,
            wire.dst,
            weight="8" if picture.boxes[wire.src].kind == "op" else "1",  # keep the op chain straight; leaves hang off it
            color=DIM if dim else FORWARD,
            penwidth="2.2" if bold else "1.2",
            arrowsize="0.7",
            tooltip=f"forward: {wire.src} is read by {wire.dst}",
            **css,
        )
        if wire.contribution is not None:
            label = f"{wire.tag} = " if wire.tag else ""
            label += _inline(wire.contribution)
            dot.edge(
                wire.src,
                wire.dst,
                dir="back",
                style="dashed",
                color=DIM if dim else BACKWARD,
                fontcolor=DIM_TEXT if dim else BACKWARD,
                penwidth="3" if bold else "1.2",
                arrowsize="0.7",
                label=label,
                tooltip=_tooltip(f"backward: contribution {wire.dst} sends to {wire.src}", wire.contribution),
                **css,
            )
    return dot


class _Same:
    """Stands in for a subgraph context when there is no cluster."""

    def __init__(self, dot: Any) -> None:
        self.dot = dot

    def __enter__(self) -> Any:
        return self.dot

    def __exit__(self, *exc: Any) -> None:
        return None


def _table(box: _Box, picture: _Picture, dim: bool, bold: bool) -> str:
    is_loss = box.value_name == picture.output
    fill = LOSS_FILL if is_loss else KIND_FILL[box.kind]
    border = LOSS_BORDER if is_loss else KIND_BORDER[box.kind]
    text, grad_colour = "#111827", BACKWARD
    if dim:
        fill, border, text, grad_colour = "#f9fafb", DIM, DIM_TEXT, DIM_TEXT
    width = 3 if is_loss or bold else 2 if box.kind == "parameter" else 1
    style = ' STYLE="ROUNDED"' if box.kind == "op" else ""
    head = f"<B>{_esc(box.name)}</B>"
    if box.formula:
        head += f" = {_esc(box.formula)}"
    elif not picture.units or box.id == box.value_name:
        head += f" <I>({box.kind})</I>"
    if is_loss and box.id == box.value_name:
        head = "<B>LOSS</B> · " + head if picture.output == (box.value_name) else head
    rows = [f'<TR><TD BGCOLOR="{fill}"><FONT COLOR="{text}">{head}</FONT></TD></TR>']
    if box.value is not None:
        shape = f"shape {_shape(box.shape or ())}   " if not picture.units else ""
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT COLOR="{text}">{shape}value {_html_value(box.value)}</FONT></TD></TR>')
        warning = _nonfinite(box.value)
        if warning:
            rows.append(f'<TR><TD BGCOLOR="{"#f9fafb" if dim else WARN}"><FONT COLOR="{text}">⚠ {warning}</FONT></TD></TR>')
    elif box.spec:
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT COLOR="{text}">{_esc(box.spec)}</FONT></TD></TR>')
    if box.grad is not None:
        label = f"∂{_esc(picture.output or 'out')}/∂{_esc(box.name)}"
        if box.id == picture.output:
            label += " (seed)"
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT COLOR="{grad_colour}">{label} = {_html_value(box.grad)}</FONT></TD></TR>')
        warning = _nonfinite(box.grad)
        if warning:
            rows.append(f'<TR><TD BGCOLOR="{"#f9fafb" if dim else WARN}"><FONT COLOR="{text}">⚠ gradient: {warning}</FONT></TD></TR>')
    if box.fan_in:
        tags = " + ".join(f"c{k}".translate(SUBSCRIPTS) for k in range(1, len(box.fan_in) + 1))
        if all(np.size(c) <= 1 for _, c in box.fan_in) and box.grad is not None:
            numbers = " + ".join(_term(float(np.asarray(c).reshape(-1)[0])) for _, c in box.fan_in)
            total = _number(float(np.asarray(box.grad).reshape(-1)[0]))
            sigma = f"Σ = {tags} = {numbers} = {total}"
        else:
            sigma = f"Σ = {tags} = the gradient above"
        sources = ", ".join(f"c{k}".translate(SUBSCRIPTS) + f" from {_esc(dst)}" for k, (dst, _) in enumerate(box.fan_in, 1))
        rows.append(f'<TR><TD ALIGN="LEFT" BGCOLOR="{"#f9fafb" if dim else "#fdecea"}"><FONT COLOR="{grad_colour}"><B>{sigma}</B><BR/><FONT POINT-SIZE="8">{sources}</FONT></FONT></TD></TR>')
    return f'<<TABLE BORDER="{width}" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" COLOR="{border}"{style}>{"".join(rows)}</TABLE>>'


def _legend(name: str, picture: _Picture, has_grad: bool, highlight: str | None) -> str:
    kinds = {b.kind for b in picture.boxes.values()}
    swatches = "".join(
        f'<TD BGCOLOR="{KIND_FILL[k]}" BORDER="1" COLOR="{KIND_BORDER[k]}"> {k if k != "op" else "op result"} </TD>'
        for k in ("input", "parameter", "constant", "op")
        if k in kinds
    )
    if picture.output in picture.boxes or picture.output in picture.clusters:
        swatches += f'<TD BGCOLOR="{LOSS_FILL}" BORDER="3" COLOR="{LOSS_BORDER}"> {_esc(picture.output or "")} (differentiated) </TD>'
    swatches = f'<TABLE BORDER="0" CELLSPACING="4"><TR>{swatches}</TR></TABLE>'
    lines = [f'<FONT COLOR="{FORWARD}">──▶ solid: forward, the value flows to the op that reads it</FONT>']
    if has_grad:
        out = _esc(picture.output or "out")
        lines.append(f'<FONT COLOR="{BACKWARD}">◀- - dashed red: backward, the contribution to ∂{out}/∂(input) sent back along the arrow</FONT>')
        lines.append(f'<FONT COLOR="{BACKWARD}">Σ = c₁ + c₂ + …: a value read several times gets one contribution per reader; its gradient is their sum</FONT>')
    if picture.clusters:
        lines.append("one box per tensor element; dashed frames group a tensor's elements")
    if highlight:
        lines.append(f"bold: every path from {_esc(picture.output or 'the output')} back to {_esc(highlight)}; the rest is dimmed")
    body = "".join(f'<TR><TD ALIGN="LEFT">{line}</TD></TR>' for line in lines)
    return f'<<TABLE BORDER="0" CELLSPACING="3" CELLPADDING="2"><TR><TD ALIGN="LEFT"><B>{_esc(name)}</B></TD></TR><TR><TD ALIGN="LEFT">{swatches}</TD></TR>{body}</TABLE>>'


# --- numbers ---------------------------------------------------------------------------------


def _number(v: float) -> str:
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    text = f"{v:.4g}"
    return "0" if text == "-0" else text


def _term(v: float) -> str:
    """A number as a term of a sum: negatives in parentheses."""
    text = _number(v)
    return f"({text})" if text.startswith("-") else text


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _flat_text(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _number(float(a)) if a.dtype.kind in "fc" else str(a.item())
    text = np.array2string(a, separator=", ", max_line_width=10**6, threshold=10**6, formatter={"float_kind": _number})  # type: ignore[arg-type]
    return text.replace("\n", "")


def _summary(a: np.ndarray) -> str:
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if finite.size == 0:
        return f"{_shape(a.shape)} no finite elements"
    return (
        f"{_shape(a.shape)} mean {_number(float(finite.mean()))} std {_number(float(finite.std()))} "
        f"min {_number(float(finite.min()))} max {_number(float(finite.max()))}"
    )


def _inline(value: Any) -> str:
    """One-line text: the full value when small, else a summary."""
    a = np.asarray(value)
    return _flat_text(a) if a.size <= FULL_ELEMENTS else _summary(a)


def _html_value(value: Any) -> str:
    a = np.asarray(value)
    if a.size <= FULL_ELEMENTS and a.ndim == 2 and a.shape[0] > 1:
        return "<BR ALIGN=\"LEFT\"/>".join(_esc(_flat_text(row)) for row in a)
    return _esc(_inline(a))


def _nonfinite(value: Any) -> str:
    a = np.asarray(value)
    if a.dtype.kind != "f":
        return ""
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    parts = [f"{nan} NaN"] if nan else []
    parts += [f"{inf} Inf"] if inf else []
    return ", ".join(parts)


def _tooltip(title: str, value: Any) -> str:
    a = np.asarray(value)
    if a.size > TOOLTIP_ELEMENTS:
        text = np.array2string(a.reshape(-1)[:TOOLTIP_ELEMENTS], precision=8, threshold=TOOLTIP_ELEMENTS + 1, max_line_width=120)
        text += f" ... (first {TOOLTIP_ELEMENTS} of {a.size}; --trace FILE.json has all)"
    else:
        text = np.array2string(a, precision=8, threshold=TOOLTIP_ELEMENTS + 1, max_line_width=120)
    return f"{title}\n{text}".replace("\\", "\\\\").replace("\n", "\\n")


def _box_tooltip(box: _Box, output: str | None) -> str:
    parts = []
    if box.value is not None:
        parts.append(_tooltip(f"{box.name}{' = ' + box.formula if box.formula else ''} ({box.kind}) value", box.value))
    if box.grad is not None:
        parts.append(_tooltip(f"gradient d{output}/d{box.name}", box.grad))
    for k, (dst, c) in enumerate(box.fan_in, 1):
        parts.append(_tooltip(f"c{k} from {dst}", c))
    return "\\n".join(parts) or box.name


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _pipe(dot: "graphviz.Digraph", fmt: str) -> bytes:
    import subprocess

    import graphviz

    try:
        return dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RenderError(INSTALL_HINT.format(fmt=fmt.upper())) from None
    except (graphviz.CalledProcessError, subprocess.CalledProcessError) as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        raise RenderError(f"Graphviz 'dot' failed to render {fmt.upper()}: {' '.join(stderr.split()) or exc}") from None
