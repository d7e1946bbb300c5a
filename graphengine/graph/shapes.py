"""Shape inference: every op's shape rule, in topological order, with messages that name the node."""

from __future__ import annotations

from typing import Callable, Sequence

from pydantic import BaseModel

from ..errors import GraphFileError, ShapeError
from ..format.document import NodeTable
from ..ops import OpDef, TensorSpec


def infer_specs(
    table: NodeTable,
    ops: list[OpDef],
    attrs: list[BaseModel],
    sources: list[int],
    starts: list[int],
    specs: list[TensorSpec | None],
    order: Sequence[int],
    error: Callable[..., GraphFileError],
    check_shape: Callable[[Sequence[int | None], str, str], int],
) -> None:
    """Each node's output spec from its op's shape rule, in topological ``order`` of ids; stored in ``specs``.

    Node ``k`` reads the ids ``sources[starts[k]:starts[k + 1]]``; ``specs`` holds one entry per id (declared
    values first, then the nodes, still None). A shape rule is a pure function of its input
    specs and attributes, so it runs once per distinct (op, attrs, input specs):
    most nodes of a large graph repeat one of a few such cases, and a repeat also
    repeats the same size check. The key holds object ids: ops, attribute models
    and specs all stay alive (in ``attrs`` and ``specs``) until this returns.
    """
    first_node = len(specs) - len(ops)
    known: dict[tuple[int, ...], TensorSpec] = {}
    # Equal specs made one object, so that the key can hold ids (a spec's own hash is slow).
    same: dict[TensorSpec, TensorSpec] = {}
    for i in range(first_node):
        specs[i] = same.setdefault(specs[i], specs[i])  # type: ignore[arg-type]
    if isinstance(order, range) and starts == [*range(len(ops) + 1)]:  # a chain-like file: one input each, in order
        for index, (attrs_of, source) in enumerate(zip(attrs, sources)):
            key: tuple[int, ...] = (id(attrs_of), id(specs[source]))
            spec = known.get(key)
            if spec is None:
                spec = _rule(table, ops, attrs_of, [specs[source]], index, error, check_shape)  # type: ignore[list-item]
                spec = known[key] = same.setdefault(spec, spec)
            specs[first_node + index] = spec
        return
    # Nodes by file position, in execution order (the first generation starts with every declared value).
    positions = range(len(ops)) if isinstance(order, range) else [i - first_node for i in order[first_node:]]
    for index in positions:
        attrs_of = attrs[index]
        start, stop = starts[index], starts[index + 1]
        # An attribute object belongs to one op, so it and the input specs' ids make the key.
        if stop - start == 1:  # most nodes have one or two inputs: no slice, no comprehension (a call in 3.11)
            key = (id(attrs_of), id(specs[sources[start]]))
        elif stop - start == 2:
            key = (id(attrs_of), id(specs[sources[start]]), id(specs[sources[start + 1]]))
        else:
            key = (id(attrs_of), *[id(specs[src]) for src in sources[start:stop]])
        spec = known.get(key)
        if spec is None:
            args = [specs[src] for src in sources[start:stop]]
            spec = _rule(table, ops, attrs_of, args, index, error, check_shape)  # type: ignore[arg-type]
            spec = known[key] = same.setdefault(spec, spec)
        specs[first_node + index] = spec


def _rule(
    table: NodeTable,
    ops: list[OpDef],
    attrs: BaseModel,
    specs: list[TensorSpec],
    index: int,
    error: Callable[..., GraphFileError],
    check_shape: Callable[[Sequence[int | None], str, str], int],
) -> TensorSpec:
    """Node ``index``'s shape rule applied to ``specs``, named by its id and JSON path."""
    path = f"$.nodes[{index}]"
    return _apply_rule(ops[index], attrs, specs, table.inputs[index], path, table.ids[index], error, check_shape)


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
