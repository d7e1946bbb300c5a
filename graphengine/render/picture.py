"""The picture as data: boxes (values or their elements) and wires (what flows forward and back)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import networkx as nx
import numpy as np

from ..errors import FeedError, RenderError, did_you_mean
from ..ops.vjp import VJPSite, call_vjp

if TYPE_CHECKING:
    from ..engine import Trace
    from ..graph import Graph

from .numbers import _shape
from .style import SUBSCRIPTS, UNIT_MAX_ELEMENTS, UNIT_MAX_TOTAL


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
    fan_index: int = 0  # k of the tag c_k; 0 when src receives one contribution
    ident: str = ""  # SVG id stem of its arrows; default w-<index in the picture>


@dataclass
class _Picture:
    boxes: dict[str, _Box]
    wires: list[_Wire]
    clusters: dict[str, str]  # value name -> cluster caption (unit drawing only)
    output: str | None  # the value gradients are taken of
    units: bool
    live: bool = False  # the explorer rewrites the gradient and Σ rows: keep each on one line
    layer_names: list[str] = field(default_factory=list)  # fixes the frame ids layer-<k> when layers are left out


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


def _box(
    graph: "Graph",
    name: str,
    kind: str,
    formula: str,
    values: Mapping[str, Any],
    grads: Mapping[str, np.ndarray],
    layer_of: Mapping[str, str],
) -> _Box:
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
    return (
        len(sizes) == graph.digraph.number_of_nodes()
        and max(sizes, default=0) <= UNIT_MAX_ELEMENTS
        and sum(sizes) <= UNIT_MAX_TOTAL
    )


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
    site = VJPSite(op.name, position, node.inputs[position], node.id)
    rows = np.empty((out.size, x.size), dtype=x.dtype)
    for j in range(out.size):
        onehot = np.zeros(out.shape, dtype=out.dtype)
        onehot.reshape(-1)[j] = 1
        # The engine's one VJP call: its errors name the node, the op and the input.
        rows[j] = np.ravel(call_vjp(vjp, onehot, out, args, node.attrs, shape=x.shape, dtype=x.dtype, site=site))
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
            wire.tag, wire.fan_index = f"c{k}".translate(SUBSCRIPTS), k
        picture.boxes[src].fan_in = [(w.dst, w.contribution) for w in wires]  # type: ignore[misc]


def _highlight_set(graph: "Graph", picture: _Picture, name: str) -> set[tuple[str, str] | str]:
    if name not in graph.digraph:
        hint = did_you_mean(name, graph.digraph.nodes)
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
