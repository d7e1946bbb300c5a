"""Shape inference: every op's shape rule, in topological order, with messages that name the node."""

from __future__ import annotations

from typing import Callable, Sequence

from pydantic import BaseModel

from ..errors import GraphFileError, ShapeError
from ..format.document import NodeTable
from ..ops import OpDef, TensorSpec
from .graph import NodeInfo


def infer_specs(
    table: NodeTable,
    wires: list[list[int]],
    specs: list[TensorSpec | None],
    first_node: int,
    resolved: list[tuple[str, OpDef, BaseModel, str]],
    order: list[int],
    error: Callable[..., GraphFileError],
    check_shape: Callable[[Sequence[int | None], str, str], int],
) -> dict[str, NodeInfo]:
    """Each node's output spec from its op's shape rule, in topological ``order`` of ids; stored in ``specs``.

    ``wires[k]`` are the ids node ``first_node + k`` reads; ``specs`` holds one entry per id (declared values first, nodes from
    ``first_node`` on, still None). A shape rule is a pure function of its input
    specs and attributes, so it runs once per distinct (op, attrs, input specs):
    most nodes of a large graph repeat one of a few such cases, and a repeat also
    repeats the same size check. The key holds object ids: ops, attribute models
    and specs all stay alive (in ``resolved`` and ``specs``) until this returns.
    """
    known: dict[tuple[int, ...], TensorSpec] = {}
    # Equal specs made one object, so that the key can hold ids (a spec's own hash is slow).
    same: dict[TensorSpec, TensorSpec] = {}
    for i in range(first_node):
        specs[i] = same.setdefault(specs[i], specs[i])  # type: ignore[arg-type]
    nodes: dict[str, NodeInfo] = {}  # in execution order, as ``order`` gives it
    inputs, labels = table.inputs, table.labels
    make = tuple.__new__  # NodeInfo is a named tuple: made directly, without its Python-level __new__
    for position in order[first_node:]:  # the first generation starts with every declared value, in id order
        index = position - first_node
        node_id, op, attrs, path = resolved[index]
        sources = wires[index]
        # An attribute object belongs to one op, so it and the input specs' ids make the key.
        n = len(sources)
        if n == 1:  # most nodes have one or two inputs: no list, no map, no comprehension (a call in 3.11)
            first = specs[sources[0]]
            key: tuple[int, ...] = (id(attrs), id(first))
        elif n == 2:
            first, second = specs[sources[0]], specs[sources[1]]
            key = (id(attrs), id(first), id(second))
        else:
            key = (id(attrs), *[id(specs[src]) for src in sources])
        spec = known.get(key)
        if spec is None:
            args = [specs[src] for src in sources]
            spec = _apply_rule(op, attrs, args, inputs[index], path, node_id, error, check_shape)  # type: ignore[arg-type]
            spec = known[key] = same.setdefault(spec, spec)
        specs[position] = spec
        nodes[node_id] = make(NodeInfo, (node_id, op, tuple(inputs[index]), attrs, spec, path, labels[index]))
    return nodes


def _apply_rule(
    op: OpDef,
    attrs: BaseModel,
    specs: list[TensorSpec],
    sources: Sequence[str],
    path: str,
    node_id: str,
    error: Callable[..., GraphFileError],
    check_shape: Callable[[Sequence[int | None], str, str], int],
) -> TensorSpec:
    """One shape rule applied and checked, with messages that name the node."""
    try:
        spec = op.shape_rule(*specs, attrs=attrs)
    except ShapeError as exc:
        shown = ", ".join(f"{op.input_name(i)}={src} {s}" for i, (src, s) in enumerate(zip(sources, specs)))
        raise error(ShapeError, f"op {op.name!r} ({shown}): {exc.detail}", path, node_id) from None
    except Exception as exc:  # a plugin's shape rule is code we do not trust to be tidy
        raise error(
            ShapeError, f"shape rule of op {op.name!r} failed: {type(exc).__name__}: {exc}", path, node_id
        ) from None
    if not isinstance(spec, TensorSpec):
        raise error(
            ShapeError, f"shape rule of op {op.name!r} returned {type(spec).__name__}, not a TensorSpec", path, node_id
        )
    # An output is allocated when the graph runs: bound it now, as a declared tensor is.
    check_shape(spec.shape, path, node_id)
    return spec
