"""Shape inference: every op's shape rule, in topological order, with messages that name the node."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import networkx as nx
from pydantic import BaseModel

from ..errors import GraphFileError, ShapeError
from ..ops import OpDef, TensorSpec
from .graph import NodeInfo


def infer_specs(
    doc: Any,
    digraph: nx.DiGraph,
    resolved: list[tuple[str, OpDef, BaseModel, str]],
    order: list[str],
    error: Callable[..., GraphFileError],
    check_shape: Callable[[Sequence[int | None], str, str], int],
) -> dict[str, NodeInfo]:
    """Each node's output spec from its op's shape rule, in topological ``order``; records it on ``digraph``.

    A shape rule is a pure function of its input specs and attributes, so it runs
    once per distinct (op, attrs, input specs): most nodes of a large graph repeat
    one of a few such cases, and a repeat also repeats the same size check.
    """
    by_id = {r[0]: (i, r) for i, r in enumerate(resolved)}
    spec_of: dict[str, TensorSpec] = {name: data["spec"] for name, data in digraph.nodes(data=True) if "spec" in data}
    known: dict[tuple[Any, ...], TensorSpec] = {}  # keyed by id(op), id(attrs): both live as long as ``resolved``
    nodes: dict[str, NodeInfo] = {}
    for name in order:
        if name not in by_id:
            continue
        index, (node_id, op, attrs, path) = by_id[name]
        decl = doc.nodes[index]
        specs = [spec_of[src] for src in decl.inputs]
        key = (id(op), id(attrs), *specs)
        spec = known.get(key)  # type: ignore[assignment]
        if spec is None:
            spec = known[key] = _apply_rule(op, attrs, specs, decl.inputs, path, node_id, error, check_shape)
        spec_of[node_id] = spec
        digraph.nodes[node_id]["spec"] = spec
        nodes[node_id] = NodeInfo(node_id, op, tuple(decl.inputs), attrs, spec, path, decl.label)
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
