"""Building the DAG: names resolved, ops looked up, attributes validated, edges drawn, cycles refused."""

from __future__ import annotations

import json
from itertools import accumulate, chain, compress
from operator import not_
from pathlib import Path
from typing import Any, Callable, Sequence

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
from ..format.document import NodeTable, table_of
from ..ops import OpDef, TensorSpec
from ..registry import Registry
from .graph import Graph, NodeMap, SpecTable
from .shapes import infer_specs
from .topology import build_digraph, topological_order


class Builder:
    """One graph build; holds the context every error message needs.

    ``doc`` gives everything but the nodes, which are read from ``table``
    (default: ``doc``'s own); ``document`` is what ``Graph.document`` will be
    (default: ``doc``), or a function that makes it on demand.
    """

    def __init__(
        self,
        doc: GraphV1,
        registry: Registry,
        file: str | None,
        base_dir: Path | None,
        limits: Limits,
        allow_nonfinite: bool,
        table: NodeTable | None = None,
        document: GraphV1 | Callable[[], GraphV1] | None = None,
    ) -> None:
        self.doc, self.registry, self.file = doc, registry, file
        self.table = table if table is not None else table_of(doc)
        self.document = document if document is not None else doc
        self.base_dir, self.limits, self.allow_nonfinite = base_dir, limits, allow_nonfinite
        self.ids: dict[str, int] = {}  # name -> id: declared values first, then nodes, in file order
        self.tensors = TensorReader(doc, file, base_dir, limits, allow_nonfinite)
        self.no_attrs: dict[str, BaseModel] = {}  # op name -> its default attrs, when frozen
        self.same_attrs: dict[tuple[str, str], BaseModel] = {}  # (op name, attrs as JSON) -> frozen attrs

    def error(self, cls: type[GraphFileError], detail: str, path: str, node_id: str | None = None) -> GraphFileError:
        return cls(detail, file=self.file, json_path=path, node_id=node_id)

    def build(self) -> Graph:
        """The graph, or the first error in the order the checks always ran (schema errors first)."""
        try:
            return self._build()
        except (GraphFileError, TypeError):  # TypeError: a node input that is not even hashable
            self.table.check_inputs()  # a node input that is not a name is a schema error, which comes first
            raise

    def _build(self) -> Graph:
        doc = self.doc
        count = len(doc.inputs) + len(doc.parameters) + len(doc.constants) + len(self.table.ids)
        if count > self.limits.max_nodes:
            raise self.error(LimitError, f"{count} entries, over the limit max_nodes={self.limits.max_nodes}", "$")
        names = self._check_unique_names()
        inputs = {d.name: self.tensors.read_input(i, d) for i, d in enumerate(doc.inputs)}
        parameters = {d.name: self.tensors.read_tensor("parameters", i, d) for i, d in enumerate(doc.parameters)}
        constants = {d.name: self.tensors.read_tensor("constants", i, d) for i, d in enumerate(doc.constants)}
        specs: list[TensorSpec | None] = [info.spec for info in inputs.values()]
        specs += [TensorSpec(v.shape, v.dtype) for table in (parameters, constants) for v in table.values()]
        ops, attrs = self._resolve_nodes()
        sources, starts = self._wire()
        order = self._check_acyclic(sources, starts)
        for field, outs in (("outputs", doc.outputs), ("loss", [doc.loss] if doc.loss else [])):
            for i, name in enumerate(outs):
                if name not in self.ids:
                    path = f"$.outputs[{i}]" if field == "outputs" else "$.loss"
                    raise self.error(
                        DanglingReferenceError, f"{name!r} is not defined{self._did_you_mean(name)}", path, name
                    )
        specs += [None] * len(ops)
        infer_specs(self.table, ops, attrs, sources, starts, specs, order, self.error, self.tensors.check_shape)
        done: list[TensorSpec] = specs  # type: ignore[assignment]  # every entry is set by now
        loss = doc.loss or (doc.outputs[0] if len(doc.outputs) == 1 else None)
        return Graph(
            inputs=inputs,
            parameters=parameters,
            constants=constants,
            nodes=NodeMap(names, self.ids, order, ops, sources, starts, attrs, self.table.labels, done),
            outputs=list(doc.outputs),
            loss=loss,
            registry=self.registry,
            file=self.file,
            document=self.document,
            limits=self.limits,
            specs=SpecTable(self.ids, done),
            file_order=self.table.ids,
        )

    def _resolve_nodes(self) -> tuple[list[OpDef], list[BaseModel]]:
        """Every node's op and attribute model, as two columns in file order.

        Each distinct (op name, input count) is checked once, and nodes without
        attributes share their op's frozen default attributes; only nodes that
        give attributes are resolved one by one. When anything is wrong (an
        unknown op, a wrong count, defaults that are not shared), every node is
        resolved one by one by :meth:`_resolve_node`, which raises the first
        error in file order, as it always did.
        """
        table = self.table
        given = [*compress(range(len(table.attrs)), table.attrs)]  # nodes that give attributes
        used_bare = set(table.ops) if not given else set(compress(table.ops, map(not_, table.attrs)))
        by_name: dict[str, tuple[OpDef, BaseModel | None]] = {}
        for op_name, n in set(zip(table.ops, map(len, table.inputs))):
            op = self.registry[op_name] if op_name in self.registry else None
            low, high = op.arity if op is not None else (0, 0)
            if op is None or n < low or (high is not None and n > high):
                return self._resolve_one_by_one()
            if op_name not in by_name:
                bare = None
                if op_name in used_bare:
                    try:
                        self._attrs(op, {}, "$", op_name)
                    except GraphFileError:
                        return self._resolve_one_by_one()
                    bare = self.no_attrs.get(op.name)
                    if bare is None:  # attributes that are not frozen: each node gets its own
                        return self._resolve_one_by_one()
                by_name[op_name] = (op, bare)
        ops = [*map({name: entry[0] for name, entry in by_name.items()}.__getitem__, table.ops)]
        attrs: list[Any] = [*map({name: entry[1] for name, entry in by_name.items()}.__getitem__, table.ops)]
        for k in given:
            attrs[k] = self._resolve_node(k)[2]
        return ops, attrs

    def _resolve_one_by_one(self) -> tuple[list[OpDef], list[BaseModel]]:
        resolved = [self._resolve_node(k) for k in range(len(self.table.ids))]
        return [entry[1] for entry in resolved], [entry[2] for entry in resolved]

    def _wire(self) -> tuple[list[int], list[int]]:
        """The ids every node reads, flat (``sources``), node ``k``'s from ``starts[k]`` to ``starts[k + 1]``.

        An undefined source is reported after every node has resolved, as it always was.
        """
        inputs = self.table.inputs
        try:
            sources = [*map(self.ids.__getitem__, chain.from_iterable(inputs))]
        except KeyError:
            self._wires()  # raises, naming the first undefined source
            raise
        return sources, [*accumulate(map(len, inputs), initial=0)]

    def _wires(self) -> None:
        """DanglingReferenceError for the first undefined source."""
        ids = self.ids
        for index, sources in enumerate(self.table.inputs):
            if any(src not in ids for src in sources):
                position, src = next((p, s) for p, s in enumerate(sources) if s not in ids)
                raise self.error(
                    DanglingReferenceError,
                    f"input {position} refers to {src!r}, which is not defined{self._did_you_mean(src)}",
                    f"$.nodes[{index}].inputs[{position}]",
                    self.table.ids[index],
                )

    def _sections(self) -> list[tuple[str, list[str]]]:
        doc = self.doc
        return [
            ("inputs", [d.name for d in doc.inputs]),
            ("parameters", [d.name for d in doc.parameters]),
            ("constants", [d.name for d in doc.constants]),
            ("nodes", self.table.ids),
        ]

    def _check_unique_names(self) -> list[str]:
        """Every name in id order (declared values, then nodes); DuplicateIdError naming both places."""
        sections = self._sections()
        names = [*chain.from_iterable(section for _, section in sections)]
        self.ids = dict(zip(names, range(len(names))))
        if len(self.ids) != len(names):
            seen: dict[str, str] = {}
            for section, listed in sections:
                for i, name in enumerate(listed):
                    path = f"$.{section}[{i}]"
                    if name in seen:
                        raise self.error(DuplicateIdError, f"{name!r} is already defined at {seen[name]}", path, name)
                    seen[name] = path
        return names

    def _path_of(self, name: str) -> str:
        """The JSON path of ``name``'s declaration (names are unique by now)."""
        index = self.ids[name]
        for section, listed in self._sections():
            if index < len(listed):
                return f"$.{section}[{index}]"
            index -= len(listed)
        raise AssertionError(name)  # pragma: no cover

    def _did_you_mean(self, name: str) -> str:

        return did_you_mean(name, self.ids)

    def _resolve_node(self, index: int) -> tuple[str, OpDef, BaseModel, str]:
        table = self.table
        node_id, op_name, attrs_given = table.ids[index], table.ops[index], table.attrs[index] or {}
        path = f"$.nodes[{index}]"
        if op_name not in self.registry:
            hint = did_you_mean(
                op_name,
                self.registry.ops,
                otherwise="; if a plugin defines it, load the plugin (--plugin FILE_OR_MODULE, or plugins=[...]); `graphengine ops` lists the ops",
            )
            raise self.error(UnknownOpError, f"unknown op {_show(op_name)}{hint}", f"{path}.op", node_id)
        op = self.registry[op_name]
        low, high = op.arity
        n = len(table.inputs[index])
        if n < low or (high is not None and n > high):
            expected = f"{low}" if low == high else f"at least {low}"
            expected += " input" if low == 1 else " inputs"
            names = ", ".join(op.inputs) + (", ..." if op.variadic else "")
            raise self.error(
                ArityError, f"op {op.name!r} takes {expected} ({names}), got {n}", f"{path}.inputs", node_id
            )
        if not attrs_given and op.name in self.no_attrs:  # the common case, cheaply
            return node_id, op, self.no_attrs[op.name], path
        if attrs_given and not self.allow_nonfinite:
            bad = first_nonfinite(attrs_given)
            if bad is not None:
                raise self.error(
                    OpAttributeError,
                    f"op {op.name!r}: NaN or Infinity is not allowed",
                    f"{path}.attrs{json_path(bad)[1:]}",
                    node_id,
                )
        return node_id, op, self._attrs(op, attrs_given, path, node_id), path

    def _attrs(self, op: OpDef, given: dict[str, Any], path: str, node_id: str) -> BaseModel:
        """``given`` validated by the op's attribute model; frozen results are shared by equal attributes."""
        allowed = ", ".join(op.attrs.model_fields) or "none"
        try:
            # Attributes are JSON, so they are validated as JSON, strictly: true is not 1, "0.5" is not 0.5.
            if given:
                text = json.dumps(given)
                attrs = self.same_attrs.get((op.name, text))  # type: ignore[assignment]
                if attrs is None:
                    attrs = op.attrs.model_validate_json(text, strict=True)
                    if op.attrs.model_config.get("frozen"):  # safe to share between nodes
                        self.same_attrs[op.name, text] = attrs
            else:
                attrs = op.attrs.model_validate({})
                if op.attrs.model_config.get("frozen"):
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
                OpAttributeError, f"op {op.name!r}: {msg} (attributes: {allowed})", f"{path}.attrs{sub}", node_id
            ) from None
        except (TypeError, ValueError, RecursionError) as exc:  # attrs given from Python that are not JSON
            raise self.error(
                OpAttributeError,
                f"op {op.name!r}: attributes must be JSON values ({_clip(str(exc), 120)})",
                f"{path}.attrs",
                node_id,
            ) from None
        return attrs

    def _check_acyclic(self, sources: list[int], starts: list[int]) -> Sequence[int]:
        """A topological order of ids; CycleError naming the cycle when there is none."""
        first_node = len(self.ids) - len(self.table.ids)
        order = topological_order(first_node, sources, starts)
        if order is not None:
            return order
        # Only now is the networkx view worth building: find_cycle names the cycle as it always has.
        table = self.table
        digraph = build_digraph(
            ((name, "", None) for name in list(self.ids)[:first_node]),
            (
                (node_id, op_name, None, table.inputs[i])
                for i, (node_id, op_name) in enumerate(zip(table.ids, table.ops))
            ),
        )
        cycle = nx.find_cycle(digraph)
        names = [u for u, _ in cycle] + [cycle[0][0]]
        if len(names) > 21:  # keep the one-line message short on a huge cycle
            names = names[:10] + [f"... ({len(names) - 21} more) ..."] + names[-11:]
        first = names[0]
        raise self.error(CycleError, "the nodes form a cycle: " + " -> ".join(names), self._path_of(first), first)
