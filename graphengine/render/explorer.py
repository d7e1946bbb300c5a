"""The explorer: one self-contained HTML page that plays the forward and backward pass step by step.

:func:`explore` lays the graph out with Graphviz (the SVG from ``dot``, with
stable element ids), records the backward pass, and writes the layout, the
trace, the values and a small player in plain JavaScript into one file. The
page loads nothing from the network (its Content-Security-Policy forbids it)
and runs no code taken from the graph file: every string from the file is
JSON data, shown with ``textContent``.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import networkx as nx
import numpy as np

from ..errors import RenderError

if TYPE_CHECKING:
    from ..engine import GradResult, Plan
    from ..graph import Graph

from .api import _unit_count, missing_inputs
from .collapse import collapsed_picture, layer_box_id, layer_names, layout_key, layout_states
from .dot import _draw, _pipe
from .numbers import _inline, _number, _term
from .picture import _node_picture, _Picture, _small, _tag_fan_in, _unit_picture
from .player import _page
from .safe import clean, dot_id
from .style import UNIT_LIMIT
from .texts import grad_label, sigma_texts

#: Tensors with more elements than this are embedded as shape and statistics only.
PAGE_ELEMENTS = 4096

#: A page's layout wider than this many times its height is redone top to bottom.
STRIP_ASPECT = 3.0

#: Graphs with more boxes than this open with every labelled layer collapsed.
COLLAPSE_AFTER = 80


class Explorer:
    """An explorer page: ``.html`` (the whole file), ``.data`` (what it embeds), ``.save(path)``.

    In Jupyter it shows itself inline (in a sandboxed ``iframe``).
    """

    def __init__(self, page: str, data: dict[str, Any]) -> None:
        self.html, self.data = page, data

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path``; raises :class:`RenderError` when it cannot."""
        path = Path(path)
        try:
            path.write_text(self.html, encoding="utf-8")
        except OSError as exc:
            raise RenderError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        return path

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
            'style="width:100%;height:720px;border:1px solid #e5e7eb"></iframe>'
        )


def explore(
    source: "Graph | Plan",
    feeds: Mapping[str, Any] | None = None,
    *,
    wrt: Sequence[str] | None = None,
    output: str | None = None,
    units: bool | None = None,
    rankdir: str | None = None,
    title: str | None = None,
) -> Explorer:
    """Build the explorer page of a graph: its layout, forward values and recorded backward pass.

    Parameters
    ----------
    source : Graph or Plan
    feeds : mapping, optional
        As :meth:`Plan.run`. When an input has neither a feed nor a default,
        the page shows structure only (ids, ops, shapes) and no pass.
    wrt, output : optional
        As :meth:`Plan.value_and_grad`; default: every parameter, the loss
        (or the only output).
    units, rankdir, title : optional
        As :func:`to_dot`; ``units`` is chosen the same way.

    Returns
    -------
    Explorer

    Raises
    ------
    FeedError, ExecutionError, RenderError

    Examples
    --------
    >>> import graphengine
    >>> from graphengine.render import explore
    >>> page = explore(graphengine.load("examples/seed_network.json"))
    >>> page.data["units"], len(page.data["steps"])
    (True, 15)
    >>> "<script src" in page.html or "http://" in page.html.replace("http://www.w3.org", "")
    False
    """
    plan = source.compile() if hasattr(source, "compile") else source
    graph = plan.graph
    values: dict[str, Any] | None = None
    result: "GradResult | None" = None
    if not missing_inputs(graph, feeds):
        values = plan.run_all(feeds)
        if output is not None or graph.loss is not None or _scalar_output(graph, values):
            result = plan.value_and_grad(feeds, wrt, output=output, record=True)
    trace = result.trace if result is not None else None
    picture = _node_picture(graph, values, result.gradients if result else None, trace)
    grads = {name: box.grad for name, box in picture.boxes.items() if box.grad is not None}
    if units is None:
        units = values is not None and _small(graph, values)
    if units and (values is None or _unit_count(graph, values) > UNIT_LIMIT):
        units = False
    if units:
        assert values is not None
        picture = _unit_picture(graph, picture, values, trace)
    _tag_fan_in(picture)
    picture.live = True
    n_layers = len(layer_names(picture))
    layouts = {
        layout_key(state): _layout(graph, collapsed_picture(picture, state) if state else picture, rankdir, title)
        for state in layout_states(n_layers)
    }
    data = _page_data(graph, picture, values, result, title, grads)
    data["layouts"] = list(layouts)
    return Explorer(_page(layouts, data), data)


def _layout(graph: "Graph", picture: _Picture, rankdir: str | None, title: str | None) -> str:
    """The SVG of ``picture``; a layout that comes out as a strip is redone top to bottom."""
    svg = _clean_svg(_pipe(_draw(graph, picture, None, None, rankdir, title), "svg").decode())
    if rankdir is None and _aspect(svg) > STRIP_ASPECT:  # a strip cannot be read at any zoom: wrap it top to bottom
        svg = _clean_svg(_pipe(_draw(graph, picture, None, None, "TB", title), "svg").decode())
    return svg


def _aspect(svg: str) -> float:
    """Width over height of a graphviz SVG."""
    size = re.search(r'<svg width="([0-9.]+)pt"\s+height="([0-9.]+)pt"', svg)
    return float(size.group(1)) / max(float(size.group(2)), 1.0) if size else 1.0


def _scalar_output(graph: "Graph", values: Mapping[str, Any]) -> bool:
    return len(graph.outputs) == 1 and np.size(values[graph.outputs[0]]) == 1


def _clean_svg(svg: str) -> str:
    """The SVG element alone: no XML prolog, doctype or comments (graphviz writes names into comments)."""
    svg = svg[svg.index("<svg") :]
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


def _array(value: Any) -> dict[str, Any] | None:
    """A tensor as JSON: shape, statistics, and the elements (flat, row-major) when there are few enough."""
    if value is None:
        return None
    a = np.asarray(value)
    out: dict[str, Any] = {"shape": list(a.shape), "text": _inline(a)}
    if a.dtype.kind in "fiub" and a.size:
        f = a.astype(float)
        finite = f[np.isfinite(f)]
        if finite.size:
            out["stats"] = {
                k: _number(float(g(finite)))
                for k, g in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max))
            }
        out["nonfinite"] = int(f.size - finite.size)
        if a.size <= PAGE_ELEMENTS:
            out["flat"] = [v if math.isfinite(v) else None for v in f.reshape(-1).tolist()]
            out["shown"] = [_number(v) for v in f.reshape(-1).tolist()]
    return out


def _page_data(
    graph: "Graph",
    picture: _Picture,
    values: Mapping[str, Any] | None,
    result: "GradResult | None",
    title: str | None,
    grads: Mapping[str, Any],
) -> dict[str, Any]:
    trace = result.trace if result is not None else None
    boxes = {box_id: _box_data(picture, box_id) for box_id in picture.boxes}
    wires = [_wire_data(picture, k) for k in range(len(picture.wires))]
    tensors = {
        name: {
            "value": _array(values.get(name)) if values else None,
            "grad": _array(grads.get(name)),
            "spec": clean(graph.spec(name)),
        }
        for name in graph.digraph.nodes
    }
    return {
        "title": clean(title or graph.document.name or (Path(graph.file).stem if graph.file else "graph")),
        "description": clean(graph.document.description or ""),
        "output": clean(picture.output or ""),
        "units": picture.units,
        "has_values": values is not None,
        "has_trace": trace is not None,
        "boxes": boxes,
        "wires": wires,
        "tensors": tensors,
        "steps": _forward_steps(graph, picture, values) + (_backward_steps(picture, trace) if trace else []),
        "layers": _layer_data(picture),
        "highlight": _highlight_data(graph, picture) if trace else {},
        "collapsed": len(picture.boxes) > COLLAPSE_AFTER,
        "gradients": {k: np.asarray(v).tolist() for k, v in result.gradients.items()} if result else {},
    }


def _box_data(picture: _Picture, box_id: str) -> dict[str, Any]:
    box = picture.boxes[box_id]
    item: dict[str, Any] = {
        "id": dot_id(box.id),
        "name": clean(box.name),
        "tensor": clean(box.value_name),
        "kind": box.kind,
        "formula": clean(box.formula),
        "layer": clean(box.layer) if box.layer else None,
        "value": _inline(box.value) if box.value is not None else None,
    }
    if box.grad is not None:
        label = grad_label(picture.output, box.name) + (" (seed)" if box.id == picture.output else "")
        item["grad_row"] = clean(f"{label} = {_inline(box.grad)}")
        item["grad_pending"] = clean(f"{label} = ?")
        item["grad"] = _inline(box.grad)
    if box.fan_in and box.grad is not None:
        item["sigma"] = [clean(t) for t in sigma_texts([c for _, c in box.fan_in], box.grad)]
        item["sources"] = [clean(dst) for dst, _ in box.fan_in]
    return item


def _wire_data(picture: _Picture, k: int) -> dict[str, Any]:
    wire = picture.wires[k]
    item: dict[str, Any] = {"src": clean(wire.src), "dst": clean(wire.dst), "fwd": f"w-{k}-f", "tag": wire.tag}
    if wire.contribution is not None:
        item["back"] = f"w-{k}-b"
        item["contribution"] = _inline(wire.contribution)
        item["array"] = _array(wire.contribution)
    return item


def _forward_steps(graph: "Graph", picture: _Picture, values: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One step per op node, in execution order; the leaves are there from the start."""
    by_tensor: dict[str, list[str]] = {}
    for box in picture.boxes.values():
        by_tensor.setdefault(box.value_name, []).append(box.id)
    steps = []
    for node_id in graph.nodes:
        node = graph.nodes[node_id]
        shown = _inline(values[node_id]) if values is not None else clean(graph.spec(node_id))
        text = f"{node_id} = {node.op.name}({', '.join(node.inputs)}) = {shown}"
        steps.append(
            {"phase": "forward", "lit": by_tensor[node_id], "tensor": node_id, "text": clean(text), "sends": []}
        )
    return steps


def _backward_steps(picture: _Picture, trace: Any) -> list[dict[str, Any]]:
    """The seed, then one step per node the pass visits (per element in a unit drawing), each with what it sends."""
    out = picture.output or ""
    seed_boxes = [b.id for b in picture.boxes.values() if b.value_name == out]
    steps: list[dict[str, Any]] = [
        {
            "phase": "backward",
            "lit": seed_boxes,
            "tensor": out,
            "text": clean(f"the pass starts at {out}: ∂{out}/∂{out} = {_inline(trace.seed)} (the seed)"),
            "sends": [],
        }
    ]
    for step in trace.steps:
        members = [b.id for b in picture.boxes.values() if b.value_name == step.node]
        groups = [[m] for m in members] if picture.units and len(members) > 1 else [members]
        for lit in groups:
            sends = [k for k, w in enumerate(picture.wires) if w.dst in lit and w.contribution is not None]
            steps.append(
                {
                    "phase": "backward",
                    "lit": lit,
                    "tensor": step.node,
                    "text": _step_text(picture, lit, sends),
                    "sends": sends,
                }
            )
    return steps


def _step_text(picture: _Picture, lit: list[str], sends: list[int]) -> str:
    """What a learner reads at one backward step: what came in, then one line per input: the product it receives."""
    box = picture.boxes[lit[0]]
    name = box.id if len(lit) == 1 else box.value_name
    g = box.grad if len(lit) == 1 else _grad_of(picture, box.value_name)
    lines = [f"{name} received ∂{picture.output}/∂{name} = {_inline(g) if g is not None else '?'}"]
    sizes = [np.size(np.asarray(picture.wires[k].contribution)) for k in sends]  # sends carry a contribution
    products = 1 in sizes and g is not None and np.size(g) == 1
    # the local derivative is named once, so that each line below fits the panel: "→ h[0]: c₁ = 0.1385 × 0.4 = 0.0554"
    local = f" ∂{picture.output}/∂{name} × ∂{name}/∂(input):" if products else ":"
    lines.append(f"and sends back{local}" if sends else "and sends nothing back (no input needs a gradient)")
    for k in sends:
        wire = picture.wires[k]
        c = np.asarray(wire.contribution)
        named = f"{wire.tag} = " if wire.tag else ""
        g0 = float(np.asarray(g).reshape(-1)[0]) if g is not None and np.size(g) == 1 else 0.0
        if c.size == 1 and g0 != 0:
            slope = float(c.reshape(-1)[0]) / g0
            lines.append(f"  → {wire.src}: {named}{_number(g0)} × {_term(slope)} = {_inline(c)}")
        else:
            lines.append(f"  → {wire.src}: {named}{_inline(c)}")
    return clean("\n".join(lines))


def _grad_of(picture: _Picture, tensor: str) -> Any:
    return next((b.grad for b in picture.boxes.values() if b.value_name == tensor and b.grad is not None), None)


def _layer_data(picture: _Picture) -> list[dict[str, Any]]:
    out = []
    for k, name in enumerate(layer_names(picture)):
        members = [box.id for box in picture.boxes.values() if box.layer == name]
        item = {"name": clean(name), "id": f"layer-{k}", "box": dot_id(layer_box_id(k))}
        out.append(item | {"boxes": [dot_id(m) for m in members]})
    return out


def _highlight_data(graph: "Graph", picture: _Picture) -> dict[str, Any]:
    """For each parameter (and input) that gets a gradient: the boxes and wires on every path from the output to it.

    The same sets as ``to_dot(highlight=...)``, with the flow graph and the output's ancestors found once.
    """
    flow = nx.DiGraph()
    flow.add_nodes_from(picture.boxes)
    flow.add_edges_from((w.src, w.dst) for w in picture.wires)
    members: dict[str, list[str]] = {}
    for box in picture.boxes.values():
        members.setdefault(box.value_name, []).append(box.id)
    above: set[str] = set(members.get(picture.output or "", []))
    for target in list(above):
        above |= nx.ancestors(flow, target)
    out = {}
    for name in (*graph.parameters, *graph.inputs):
        if not any(picture.boxes[b].grad is not None for b in members.get(name, [])):
            continue
        below = set(members[name])
        for source in members[name]:
            below |= nx.descendants(flow, source)
        on_path = below & above
        if not on_path:
            continue
        wires = [k for k, w in enumerate(picture.wires) if w.src in on_path and w.dst in on_path]
        out[clean(name)] = {"boxes": [dot_id(b) for b in picture.boxes if b in on_path], "wires": wires}
    return out
