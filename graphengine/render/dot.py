"""The picture drawn as Graphviz DOT: HTML-like tables, arrows, clusters, the legend and tooltips."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import RenderError

if TYPE_CHECKING:
    import graphviz

    from ..graph import Graph

from .numbers import _esc, _heatmap, _html_value, _inline, _nonfinite, _shape
from .picture import _Box, _Picture, _Wire
from .safe import dot_id, dot_multiline, dot_text
from .style import (
    BACKWARD,
    DIM,
    DIM_TEXT,
    FORWARD,
    FULL_ELEMENTS,
    INSTALL_HINT,
    KIND_BORDER,
    KIND_FILL,
    LONG_AFTER,
    LOSS_BORDER,
    LOSS_FILL,
    STRIP_ASPECT,
    TALL_AFTER,
    TOOLTIP_ELEMENTS,
    WARN,
)
from .texts import grad_label, sigma_texts, tag


def _draw(
    graph: "Graph",
    picture: _Picture,
    on_path: set[Any] | None,
    highlight: str | None,
    rankdir: str | None,
    title: str | None,
) -> "graphviz.Digraph":
    name = title or graph.document.name or (Path(graph.file).stem if graph.file else "graph")
    chosen = rankdir or _choose_rankdir(picture)
    dot = _new_digraph(
        name, chosen, _legend(name, picture, any(b.grad is not None for b in picture.boxes.values()), highlight)
    )
    _draw_boxes(dot, picture, on_path, lr=chosen == "LR")
    _draw_wires(dot, picture, on_path, set(_pins(picture)))
    if rankdir is None and chosen == "LR" and _aspect(dot) > STRIP_ASPECT:  # wide boxes in a row: wrap it
        return _draw(graph, picture, on_path, highlight, "TB", title)
    return dot


def _aspect(dot: "graphviz.Digraph") -> float:
    """Width over height of the layout ``dot`` makes; 1 when the program is not installed (DOT output only)."""
    import subprocess

    try:
        plain = subprocess.run(["dot", "-Tplain"], input=dot.source.encode(), capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 1.0
    first = plain.split(b"\n", 1)[0].split()  # graph <scale> <width> <height>
    return float(first[2]) / max(float(first[3]), 1e-9) if len(first) >= 4 else 1.0


def _choose_rankdir(picture: _Picture) -> str:
    """Left to right for short, wide graphs; top to bottom for big ones and for long chains, which would be a strip."""
    import networkx as nx

    if len(picture.boxes) > TALL_AFTER:
        return "TB"
    flow = nx.DiGraph((w.src, w.dst) for w in picture.wires)
    flow.add_nodes_from(picture.boxes)
    return "TB" if nx.dag_longest_path_length(flow) + 1 > LONG_AFTER else "LR"


def _new_digraph(name: str, rankdir: str, legend: str) -> "graphviz.Digraph":
    import graphviz

    dot = graphviz.Digraph(name=dot_text(name), engine="dot")
    dot.attr(
        rankdir=rankdir,
        newrank="true",
        remincross="false",  # the last pass over all clusters ignores the element order (mirrors TB gradient views)
        forcelabels="true",
        nodesep="0.25",
        ranksep="0.55",
        fontname="Helvetica",
        fontsize="11",
        tooltip=dot_text(name),
        label=legend,
        labelloc="b",
        labeljust="l",
    )
    dot.attr("node", shape="plain", fontname="Helvetica", fontsize="10")
    dot.attr("edge", fontname="Helvetica", fontsize="9")
    return dot


def _pins(picture: _Picture) -> dict[str, str]:
    """A layer's weights, each pinned beside the one node that reads it.

    Without this, a layer's weights take the rank of the previous layer's output, so layer frames
    cannot stack and a deep network drifts into a staircase.
    """
    readers: dict[str, set[str]] = {}
    for wire in picture.wires:
        readers.setdefault(wire.src, set()).add(wire.dst)
    return {
        name: next(iter(readers[name]))
        for name, box in picture.boxes.items()
        if not picture.units and box.kind in ("parameter", "constant") and box.layer and len(readers.get(name, ())) == 1
    }


def _draw_boxes(dot: "graphviz.Digraph", picture: _Picture, on_path: set[Any] | None, *, lr: bool) -> None:
    """Boxes inside their clusters: a layer's frame, then (unit drawing) one frame per tensor."""
    layers: dict[str | None, dict[str | None, list[_Box]]] = {}
    for box in picture.boxes.values():
        group = box.value_name if box.value_name in picture.clusters else None
        layers.setdefault(box.layer, {}).setdefault(group, []).append(box)
    names = picture.layer_names or [name for name in layers if name]
    numbered = {layer: k for k, layer in enumerate(names)}
    pins = _pins(picture)
    for layer, groups in layers.items():
        outer = dot.subgraph(name=f"cluster_layer{numbered[layer]}") if layer else contextlib.nullcontext(dot)
        with outer as lg:
            if layer:
                lg.attr(
                    id=f"layer-{numbered[layer]}",
                    label=dot_text(layer),
                    tooltip=dot_text(f"layer {layer}" + (": click its name to collapse it" if picture.live else "")),
                    style="rounded,filled",
                    fillcolor="#f8fafc",
                    color="#cbd5e1",
                    fontcolor="#475569",
                    fontsize="11",
                    labeljust="l",
                )
            for k, (group, boxes) in enumerate(groups.items()):
                inner = (
                    lg.subgraph(name=f"cluster_v{numbered[layer] + 1 if layer else 0}_{k}")
                    if group
                    else contextlib.nullcontext(lg)
                )
                with inner as vg:
                    if group:  # else it inherits the layer's id and tooltip (the explorer's click would collapse it)
                        vg.attr(id=f"frame-{numbered[layer] + 1 if layer else 0}-{k}", tooltip=dot_text(group))
                    _draw_group(vg, picture, group, boxes, layer, pins, on_path, lr=lr)


def _draw_group(
    vg: "graphviz.Digraph",
    picture: _Picture,
    group: str | None,
    boxes: list[_Box],
    layer: str | None,
    pins: dict[str, str],
    on_path: set[Any] | None,
    *,
    lr: bool,
) -> None:
    if group:
        dim = on_path is not None and not any(b.id in on_path for b in boxes)
        vg.attr(
            label=dot_text(picture.clusters[group]),
            style="rounded,dashed",
            color=DIM if dim else "#94a3b8",
            fontcolor=DIM_TEXT if dim else "#334155",
            fontsize="10",
            labeljust="l",
        )
    ids = {b.id for b in boxes}
    for leaf, reader in pins.items():
        if leaf in ids and picture.boxes[reader].layer == layer:
            with vg.subgraph() as same:
                same.attr(rank="same")
                same.node(dot_id(leaf))
                same.node(dot_id(reader))
    for box in reversed(boxes) if lr and group else boxes:  # LR stacks a frame bottom-up: keep x[0] on top
        dim = on_path is not None and box.id not in on_path
        bold = on_path is not None and not dim
        vg.node(
            dot_id(box.id),
            label=_table(box, picture, dim, bold),
            # the explorer's panel shows full values: its tooltips just name the box
            tooltip=dot_text(box.name) if picture.live else dot_multiline(_box_tooltip(box, picture.output)),
            id=dot_id(box.id),
            **({"class": "highlight"} if bold else {"class": "dimmed"} if dim else {}),
            **({"class": "ge-layer-box"} if box.kind == "layer" else {}),
        )
    if group and len(boxes) > 1:
        _fix_element_order(vg, boxes, lr=lr)


def _fix_element_order(vg: "graphviz.Digraph", boxes: list[_Box], *, lr: bool) -> None:
    """Keep a tensor's elements in index order, the same in every view.

    dot orders a rank to cross few arrows, so the backward arrows of the gradient view could swap
    h[0] and h[1]. Invisible arrows between consecutive elements of one rank fix their order.
    """
    ordered = list(reversed(boxes)) if lr else boxes  # LR turns a rank's left-to-right into bottom-to-top
    with vg.subgraph() as same:
        same.attr(rank="same")
        for a, b in zip(ordered, ordered[1:]):
            same.edge(dot_id(a.id), dot_id(b.id), style="invis")


def _draw_wires(dot: "graphviz.Digraph", picture: _Picture, on_path: set[Any] | None, pinned: set[str]) -> None:
    """A solid forward arrow per wire, and a dashed one back carrying its contribution (see _label_at_arrowhead)."""
    for k, wire in enumerate(picture.wires):
        ident = wire.ident or f"w-{k}"
        dim = on_path is not None and (wire.src, wire.dst) not in on_path
        bold = on_path is not None and not dim
        css = {"class": "highlight"} if bold else {"class": "dimmed"} if dim else {}
        dot.edge(
            dot_id(wire.src),
            dot_id(wire.dst),
            weight="8"
            if picture.boxes[wire.src].kind == "op"
            else "1",  # keep the op chain straight; leaves hang off it
            color=DIM if dim else FORWARD,
            penwidth="2.2" if bold else "1.2",
            arrowsize="0.7",
            tooltip=dot_text(f"forward: {wire.src} is read by {wire.dst}"),
            id=f"{ident}-f",
            **css,
        )
        if wire.contribution is not None:
            label = f"{wire.tag} = " if wire.tag else ""
            label += _inline(wire.contribution)
            if wire.src in pinned and not wire.tag and np.size(wire.contribution) > FULL_ELEMENTS:
                # its reader's rank leaves no room for a summary beside a short arrow, and the leaf's box shows it
                label = f"{grad_label(picture.output, wire.src)} {_shape(np.shape(wire.contribution))}"
            dot.edge(
                dot_id(wire.src),
                dot_id(wire.dst),
                dir="back",
                style="dashed",
                color=DIM if dim else BACKWARD,
                fontcolor=DIM_TEXT if dim else BACKWARD,
                penwidth="3" if bold else "1.2",
                arrowsize="0.7",
                **_back_label(dot_text(label), wire, pinned, units=picture.units),
                id=f"{ident}-b",
                tooltip=dot_text(f"backward: {wire.dst} sends to {wire.src}")
                if picture.live
                else dot_multiline(
                    _tooltip(f"backward: contribution {wire.dst} sends to {wire.src}", wire.contribution)
                ),
                **css,
            )


def _back_label(label: str, wire: _Wire, pinned: set[str], *, units: bool) -> dict[str, str]:
    """Where a dashed arrow's number goes.

    Per unit, many arrows cross between two frames, and a label in the middle of one lands wherever
    dot finds room, often beside another box (b_o's c₁ sat next to W_o[1,1]): there it goes beside
    the arrowhead, at the box that receives it; arrows that meet at one box (c₁, c₂, ...) fan their
    labels out, odd tags on one side, even on the other, each pair further out. Per tensor, arrows are
    short and straight and a label at the arrowhead would sit on the next box: the middle reads best.
    A pinned leaf sits in its reader's rank: its short arrow has an ``xlabel``, placed after layout.
    """
    if wire.src in pinned:
        return {"xlabel": label}
    if not units:
        return {"label": label}
    k = wire.fan_index
    distance = 2.2 if not k else 4.6 + 1.5 * ((k - 1) // 2)
    angle = 25 if not k else 24 * (1 if k % 2 else -1)
    return {"taillabel": label, "labeldistance": f"{distance:g}", "labelangle": f"{angle:g}"}


def _table(box: _Box, picture: _Picture, dim: bool, bold: bool) -> str:
    is_loss = box.value_name == picture.output
    fill = LOSS_FILL if is_loss else KIND_FILL[box.kind]
    border = LOSS_BORDER if is_loss else KIND_BORDER[box.kind]
    text, grad_colour = "#111827", BACKWARD
    if dim:
        fill, border, text, grad_colour = "#f9fafb", DIM, DIM_TEXT, DIM_TEXT
    width = 3 if is_loss or bold else 2 if box.kind == "parameter" else 1
    style = ' STYLE="ROUNDED"' if box.kind in ("op", "layer") else ""
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
        heat = _heatmap(box.value)
        shown = "" if heat else " " + _html_value(box.value)
        if shape and shown.startswith(" " + _shape(box.shape or ())):  # a summary: its shape is said once already
            shown = shown[len(_shape(box.shape or ())) + 1 :]
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT COLOR="{text}">{shape}value{shown}</FONT></TD></TR>')
        if heat:
            rows.append(f'<TR><TD ALIGN="LEFT">{heat}</TD></TR>')
        warning = _nonfinite(box.value)
        if warning:
            rows.append(
                f'<TR><TD BGCOLOR="{"#f9fafb" if dim else WARN}"><FONT COLOR="{text}">⚠ {warning}</FONT></TD></TR>'
            )
    elif box.spec:
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT COLOR="{text}">{_esc(box.spec)}</FONT></TD></TR>')
    if box.grad is not None:
        label = _esc(grad_label(picture.output, box.name))
        grad_text = _esc(_inline(box.grad)) if picture.live else _html_value(box.grad)
        if box.id == picture.output:
            label += " (seed)"
        heat = None if picture.live else _heatmap(box.grad)
        if heat:
            rows.append(f'<TR><TD ALIGN="LEFT"><FONT COLOR="{grad_colour}">{label} =</FONT></TD></TR>')
            rows.append(f'<TR><TD ALIGN="LEFT">{heat}</TD></TR>')
        else:
            rows.append(f'<TR><TD ALIGN="LEFT"><FONT COLOR="{grad_colour}">{label} = {grad_text}</FONT></TD></TR>')
        warning = _nonfinite(box.grad)
        if warning:
            rows.append(
                f'<TR><TD BGCOLOR="{"#f9fafb" if dim else WARN}"><FONT COLOR="{text}">⚠ gradient: {warning}</FONT></TD></TR>'
            )
    if box.fan_in and box.grad is not None:
        sigma = _esc(sigma_texts([c for _, c in box.fan_in], box.grad)[-1])
        sources = ", ".join(tag(k) + f" from {_esc(dst)}" for k, (dst, _) in enumerate(box.fan_in, 1))
        bg = "#f9fafb" if dim else "#fdecea"
        sigma_row = f"<B>{sigma}</B>" if picture.live else f'<B>{sigma}</B><BR/><FONT POINT-SIZE="8">{sources}</FONT>'
        rows.append(f'<TR><TD ALIGN="LEFT" BGCOLOR="{bg}"><FONT COLOR="{grad_colour}">{sigma_row}</FONT></TD></TR>')
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
        lines.append(
            f'<FONT COLOR="{BACKWARD}">◀- - dashed red: backward, the contribution to ∂{out}/∂(input) sent back along the arrow</FONT>'
        )
        lines.append(
            f'<FONT COLOR="{BACKWARD}">Σ = c₁ + c₂ + …: a value read several times gets one contribution per reader; its gradient is their sum</FONT>'
        )
    if picture.clusters:
        lines.append("one box per tensor element; dashed frames group a tensor's elements")
    if highlight:
        lines.append(
            f"bold: every path from {_esc(picture.output or 'the output')} back to {_esc(highlight)}; the rest is dimmed"
        )
    body = "".join(f'<TR><TD ALIGN="LEFT">{line}</TD></TR>' for line in lines)
    return f'<<TABLE BORDER="0" CELLSPACING="3" CELLPADDING="2"><TR><TD ALIGN="LEFT"><B>{_esc(name)}</B></TD></TR><TR><TD ALIGN="LEFT">{swatches}</TD></TR>{body}</TABLE>>'


def _tooltip(title: str, value: Any) -> str:
    a = np.asarray(value)
    if a.size > TOOLTIP_ELEMENTS:
        text = np.array2string(
            a.reshape(-1)[:TOOLTIP_ELEMENTS], precision=8, threshold=TOOLTIP_ELEMENTS + 1, max_line_width=120
        )
        text += f" ... (first {TOOLTIP_ELEMENTS} of {a.size}; --trace FILE.json has all)"
    else:
        text = np.array2string(a, precision=8, threshold=TOOLTIP_ELEMENTS + 1, max_line_width=120)
    return f"{title}\n{text}"


def _box_tooltip(box: _Box, output: str | None) -> str:
    parts = []
    if box.value is not None:
        parts.append(_tooltip(f"{box.name}{' = ' + box.formula if box.formula else ''} ({box.kind}) value", box.value))
    if box.grad is not None:
        parts.append(_tooltip(f"gradient d{output}/d{box.name}", box.grad))
    for k, (dst, c) in enumerate(box.fan_in, 1):
        parts.append(_tooltip(f"c{k} from {dst}", c))
    return "\n".join(parts) or box.name


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
