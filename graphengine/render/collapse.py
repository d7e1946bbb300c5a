"""The explorer's collapsed layouts: each labelled layer drawn as one compact box, laid out again by ``dot``.

A layer's frame cannot shrink inside a finished layout, so the page carries one layout per
state: every subset of collapsed layers for up to :data:`EVERY_SUBSET_UP_TO` layers, else two
(all open, all collapsed).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Iterable

from .picture import _Box, _Picture, _Wire

#: Up to this many layers, the page holds a layout for every subset of collapsed layers (2**3 = 8).
EVERY_SUBSET_UP_TO = 3


def layer_names(picture: _Picture) -> list[str]:
    """The labelled layers in the order of their first box (the order of the frame ids ``layer-<k>``)."""
    return list(dict.fromkeys(box.layer for box in picture.boxes.values() if box.layer))


def layer_box_id(k: int) -> str:
    """The id of layer ``k``'s box when it is collapsed (a space: no value name has one)."""
    return f"layer box {k}"


def layout_key(collapsed: Iterable[int]) -> str:
    """``"0-2"``: the name of the layout in which layers 0 and 2 are collapsed; ``""`` for none.

    Examples
    --------
    >>> layout_key({2, 0}), layout_key(())
    ('0-2', '')
    """
    return "-".join(str(k) for k in sorted(collapsed))


def layout_states(n_layers: int) -> list[tuple[int, ...]]:
    """The sets of collapsed layers the page holds a layout for, the all-open one first.

    Examples
    --------
    >>> layout_states(2)
    [(), (0,), (1,), (0, 1)]
    >>> layout_states(5)
    [(), (0, 1, 2, 3, 4)]
    """
    if not n_layers:
        return [()]
    if n_layers > EVERY_SUBSET_UP_TO:
        return [(), tuple(range(n_layers))]
    layers = range(n_layers)
    return [c for r in range(n_layers + 1) for c in itertools.combinations(layers, r)]


def collapsed_picture(picture: _Picture, collapsed: Iterable[int]) -> _Picture:
    """``picture`` with each layer in ``collapsed`` replaced by one box; arrows between boxes that remain keep their ids.

    Arrows into or out of a collapsed layer merge into one forward arrow per pair of boxes
    (``lw-<n>``), with no number: what crosses is several tensors at once.
    """
    names = layer_names(picture)
    shut = {names[k]: k for k in collapsed}
    rep: dict[str, str] = {}
    boxes: dict[str, _Box] = {}
    for box in picture.boxes.values():
        if box.layer in shut:
            rep[box.id] = layer_box_id(shut[box.layer])
        else:
            rep[box.id] = box.id
            boxes[box.id] = box
    for name, k in shut.items():
        size = sum(1 for b in picture.boxes.values() if b.layer == name)
        box_id = layer_box_id(k)
        spec = f"▸ {size} {'box' if size == 1 else 'boxes'} inside: click to open"
        boxes[box_id] = _Box(box_id, name, "layer", "", None, None, None, box_id, None, spec=spec)
    wires: list[_Wire] = []
    merged: set[tuple[str, str]] = set()
    for k, wire in enumerate(picture.wires):
        src, dst = rep[wire.src], rep[wire.dst]
        if src == dst:
            continue
        if (src, dst) == (wire.src, wire.dst):
            wires.append(replace(wire, ident=wire.ident or f"w-{k}"))
        elif (src, dst) not in merged:
            merged.add((src, dst))
            wires.append(_Wire(src, dst, 0, ident=f"lw-{len(merged)}"))
    return replace(picture, boxes=boxes, wires=wires, layer_names=names)
