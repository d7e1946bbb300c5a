"""Building the DAG: names resolved, ops looked up, attributes validated, edges drawn, cycles refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import networkx as nx
from pydantic import BaseModel, ValidationError

from ..errors import (
    ArityError,
    CycleError,
    DanglingReferenceError,
    DuplicateIdError,
    GraphFileError,
    LimitError,
    OpAttributeError,
    UnknownOpError,
    did_you_mean,
)
from ..errors import clip as _clip
from ..errors import show as _show
from ..format import GraphV1, Limits, TensorReader, first_nonfinite, json_path
from ..ops import OpDef, TensorSpec
from ..registry import Registry
from .graph import Graph
from .shapes import infer_specs


class Builder:
    """One graph build; holds the context every error message needs."""

    def __init__(
        self,
        doc: GraphV1,
        raw: Mapping[str, Any],
        registry: Registry,
        file: str | None,
        base_dir: Path | None,
        limits: Limits,
        allow_nonfinite: bool,
    ) -> None:
        self.doc, self.raw, self.registry, self.file = doc, raw, registry, file
        self.base_dir, self.limits, self.allow_nonfinite = base_dir, limits, allow_nonfinite
        self.where: dict[str, str] = {}  # name -> JSON path of its declaration
        self.tensors = TensorReader(doc, file, base_dir, limits, allow_nonfinite)
        self.no_attrs: dict[str, BaseModel] = {}  # op name -> its default attrs, when frozen

    def error(self, cls: type[GraphFileError], detail: str, path: str, node_id: str | None = None) -> GraphFileError:
        return cls(detail, file=self.file, json_path=path, node_id=node_id)

    def build(self) -> Graph:
        doc = self.doc
        count = len(doc.inputs) + len(doc.parameters) + len(doc.constants) + len(doc.nodes)
        if count > self.limits.max_nodes:
            raise self.error(LimitError, f"{count} entries, over the limit max_nodes={self.limits.max_nodes}", "$")
        self._check_unique_names()
        inputs = {d.name: self.tensors.read_input(i, d) for i, d in enumerate(doc.inputs)}
        parameters = {d.name: self.tensors.read_tensor("parameters", i, d) for i, d in enumerate(doc.parameters)}
        constants = {d.name: self.tensors.read_tensor("constants", i, d) for i, d in enumerate(doc.constants)}
        digraph = nx.DiGraph()
        # Nodes and edges in bulk: networkx's add_nodes_from / add_edges_from cost a fraction of one call per item.
        digraph.add_nodes_from((name, {"kind": "input", "spec": info.spec}) for name, info in inputs.items())
        for kind, table in (("parameter", parameters), ("constant", constants)):
            digraph.add_nodes_from(
                (name, {"kind": kind, "spec": TensorSpec(value.shape, value.dtype)}) for name, value in table.items()
            )
        resolved = [self._resolve_node(i) for i in range(len(doc.nodes))]
        digraph.add_nodes_from((node_id, {"kind": "op", "op": op.name}) for node_id, op, _, _ in resolved)
        digraph.add_edges_from(self._edges(resolved, digraph))
        order = self._check_acyclic(digraph)
        for field, names in (("outputs", doc.outputs), ("loss", [doc.loss] if doc.loss else [])):
            for i, name in enumerate(names):
                if name not in digraph:
                    path = f"$.outputs[{i}]" if field == "outputs" else "$.loss"
                    raise self.error(
                        DanglingReferenceError, f"{name!r} is not defined{self._did_you_mean(name)}", path, name
                    )
        nodes = infer_specs(self.doc, digraph, resolved, order, self.error, self.tensors.check_shape)
        loss = doc.loss or (doc.outputs[0] if len(doc.outputs) == 1 else None)
        return Graph(
            inputs=inputs,
            parameters=parameters,
            constants=constants,
            nodes=nodes,
            outputs=list(doc.outputs),
            loss=loss,
            digraph=digraph,
            registry=self.registry,
            file=self.file,
            document=doc,
            limits=self.limits,
        )

    def _edges(self, resolved: list[tuple[str, OpDef, BaseModel, str]], digraph: nx.DiGraph) -> list[Any]:
        """``(src, node, {"positions": [...]})`` per wire; DanglingReferenceError for an undefined source."""
        wires: dict[tuple[str, str], list[int]] = {}
        known = digraph.nodes
        for index, (node_id, _, _, path) in enumerate(resolved):
            for position, src in enumerate(self.doc.nodes[index].inputs):
                if src not in known:
                    raise self.error(
                        DanglingReferenceError,
                        f"input {position} refers to {src!r}, which is not defined{self._did_you_mean(src)}",
                        f"{path}.inputs[{position}]",
                        node_id,
                    )
                wires.setdefault((src, node_id), []).append(position)
        return [(src, dst, {"positions": positions}) for (src, dst), positions in wires.items()]

    def _check_unique_names(self) -> None:
        doc = self.doc
        sections: list[tuple[str, list[str]]] = [
            ("inputs", [d.name for d in doc.inputs]),
            ("parameters", [d.name for d in doc.parameters]),
            ("constants", [d.name for d in doc.constants]),
            ("nodes", [d.id for d in doc.nodes]),
        ]
        for section, names in sections:
            for i, name in enumerate(names):
                path = f"$.{section}[{i}]"
                if name in self.where:
                    raise self.error(DuplicateIdError, f"{name!r} is already defined at {self.where[name]}", path, name)
                self.where[name] = path

    def _did_you_mean(self, name: str) -> str:

        return did_you_mean(name, self.where)

    def _resolve_node(self, index: int) -> tuple[str, OpDef, BaseModel, str]:
        decl = self.doc.nodes[index]
        path = f"$.nodes[{index}]"
        if decl.op not in self.registry:
            hint = did_you_mean(
                decl.op,
                self.registry.ops,
                otherwise="; if a plugin defines it, load the plugin (--plugin FILE_OR_MODULE, or plugins=[...]); `graphengine ops` lists the ops",
            )
            raise self.error(UnknownOpError, f"unknown op {_show(decl.op)}{hint}", f"{path}.op", decl.id)
        op = self.registry[decl.op]
        low, high = op.arity
        n = len(decl.inputs)
        if n < low or (high is not None and n > high):
            expected = f"{low}" if low == high else f"at least {low}"
            expected += " input" if low == 1 else " inputs"
            names = ", ".join(op.inputs) + (", ..." if op.variadic else "")
            raise self.error(
                ArityError, f"op {op.name!r} takes {expected} ({names}), got {n}", f"{path}.inputs", decl.id
            )
        allowed = ", ".join(op.attrs.model_fields) or "none"
        if not self.allow_nonfinite:
            bad = first_nonfinite(decl.attrs)
            if bad is not None:
                raise self.error(
                    OpAttributeError,
                    f"op {op.name!r}: NaN or Infinity is not allowed",
                    f"{path}.attrs{json_path(bad)[1:]}",
                    decl.id,
                )
        try:
            # Attributes are JSON, so they are validated as JSON, strictly: true is not 1, "0.5" is not 0.5.
            if decl.attrs:
                attrs = op.attrs.model_validate_json(json.dumps(decl.attrs), strict=True)
            elif op.name in self.no_attrs:
                attrs = self.no_attrs[op.name]
            else:
                attrs = op.attrs.model_validate({})
                if op.attrs.model_config.get("frozen"):  # safe to share between nodes
                    self.no_attrs[op.name] = attrs
        except ValidationError as exc:
            first = exc.errors()[0]
            sub = json_path(first["loc"])[1:]
            msg = first["msg"]
            if first["type"] == "extra_forbidden":
                msg = f"unknown attribute {_show(first['loc'][-1])}"
            elif first["type"] == "json_invalid":  # pydantic's JSON parser stops at ~200 levels
                msg = "attributes are nested too deeply"
            raise self.error(
                OpAttributeError, f"op {op.name!r}: {msg} (attributes: {allowed})", f"{path}.attrs{sub}", decl.id
            ) from None
        except (TypeError, ValueError, RecursionError) as exc:  # attrs given from Python that are not JSON
            raise self.error(
                OpAttributeError,
                f"op {op.name!r}: attributes must be JSON values ({_clip(str(exc), 120)})",
                f"{path}.attrs",
                decl.id,
            ) from None
        return decl.id, op, attrs, path

    def _check_acyclic(self, digraph: nx.DiGraph) -> list[str]:
        """A topological order; CycleError naming the cycle when there is none."""
        try:
            return list(nx.topological_sort(digraph))  # Kahn's algorithm: iterative, and cheaper than find_cycle
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(digraph)
        names = [u for u, _ in cycle] + [cycle[0][0]]
        if len(names) > 21:  # keep the one-line message short on a huge cycle
            names = names[:10] + [f"... ({len(names) - 21} more) ..."] + names[-11:]
        first = names[0]
        raise self.error(CycleError, "the nodes form a cycle: " + " -> ".join(names), self.where[first], first)
