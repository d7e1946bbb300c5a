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
    """Each node's output spec from its op's shape rule, in topological ``order``; records it on ``digraph``."""
    by_id = {r[0]: (i, r) for i, r in enumerate(resolved)}
    nodes: dict[str, NodeInfo] = {}
    for name in order:
        if name not in by_id:
            continue
        index, (node_id, op, attrs, path) = by_id[name]
        decl = doc.nodes[index]
        specs = [digraph.nodes[src]["spec"] for src in decl.inputs]
        try:
            spec = op.shape_rule(*specs, attrs=attrs)
        except ShapeError as exc:
            shown = ", ".join(f"{op.input_name(i)}={src} {s}" for i, (src, s) in enumerate(zip(decl.inputs, specs)))
            raise error(ShapeError, f"op {op.name!r} ({shown}): {exc.detail}", path, node_id) from None
        except Exception as exc:  # a plugin's shape rule is code we do not trust to be tidy
            raise error(
                ShapeError, f"shape rule of op {op.name!r} failed: {type(exc).__name__}: {exc}", path, node_id
            ) from None
        if not isinstance(spec, TensorSpec):
            raise error(
                ShapeError,
                f"shape rule of op {op.name!r} returned {type(spec).__name__}, not a TensorSpec",
                path,
                node_id,
            )
        # An output is allocated when the graph runs: bound it now, as a declared tensor is.
        check_shape(spec.shape, path, node_id)
        digraph.nodes[node_id]["spec"] = spec
        nodes[node_id] = NodeInfo(node_id, op, tuple(decl.inputs), attrs, spec, path, decl.label)
    return nodes
