"""Loading, validating and building graphs.

:func:`load` turns a graph file into a :class:`Graph`: a checked description
plus a :class:`networkx.DiGraph` whose nodes are the file's names. Everything
that can be checked without data is checked here, before any value is fed:
schema, duplicate names, unknown ops, arity, attributes, dangling references,
cycles, file paths, and every op's shape/dtype rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import networkx as nx
import numpy as np
from pydantic import BaseModel, ValidationError

from .errors import (
    ArityError,
    CycleError,
    DanglingReferenceError,
    DuplicateIdError,
    GraphFileError,
    LimitError,
    OpAttributeError,
    SchemaError,
    ShapeError,
    UnknownOpError,
    UnsafePathError,
)
from .ops import OpDef, TensorSpec, format_shape
from .registry import Registry, default_registry
from .schema import FORMAT_V1, GraphV1, TensorDecl

if TYPE_CHECKING:
    from .plan import GradResult, Plan

__all__ = ["Graph", "NodeInfo", "InputInfo", "Limits", "load", "load_dict"]


@dataclass(frozen=True)
class Limits:
    """Bounds checked while loading, before anything large is allocated.

    Attributes
    ----------
    max_nodes : int
        Inputs, parameters, constants and nodes together.
    max_elements : int
        Elements of any one declared or stored tensor.
    max_total_bytes : int
        Bytes of all parameters and constants together.
    max_ndim : int
        Dimensions of any one tensor.
    max_file_bytes : int
        Size of the graph file itself.
    """

    max_nodes: int = 1_000_000
    max_elements: int = 100_000_000
    max_total_bytes: int = 2 * 1024**3
    max_ndim: int = 32
    max_file_bytes: int = 512 * 1024**2


@dataclass(frozen=True)
class InputInfo:
    """A run-time input: its spec and optional default value."""

    spec: TensorSpec
    default: np.ndarray | None
    json_path: str


@dataclass(frozen=True)
class NodeInfo:
    """A validated node: its op, input names, attribute model and output spec."""

    id: str
    op: OpDef
    inputs: tuple[str, ...]
    attrs: BaseModel
    spec: TensorSpec
    json_path: str
    label: str | None = None


class Graph:
    """A loaded and validated graph.

    Attributes
    ----------
    digraph : networkx.DiGraph
        One node per name (inputs, parameters, constants, op nodes), with
        attributes ``kind`` (``"input"``, ``"parameter"``, ``"constant"`` or
        ``"op"``), ``spec`` and, for op nodes, ``op``. An edge ``u -> v`` means v
        reads u; its ``positions`` attribute lists the input positions.
    inputs : dict of str to InputInfo
    parameters : dict of str to numpy.ndarray
        Trainable values. Replace entries to change them; call
        :meth:`compile` again afterwards.
    constants : dict of str to numpy.ndarray
    nodes : dict of str to NodeInfo
        In a valid execution (topological) order.
    outputs : list of str
    loss : str or None
        The default output of :meth:`grad`.
    file : str or None
    registry : Registry
    """

    def __init__(
        self,
        *,
        inputs: dict[str, InputInfo],
        parameters: dict[str, np.ndarray],
        constants: dict[str, np.ndarray],
        nodes: dict[str, NodeInfo],
        outputs: list[str],
        loss: str | None,
        digraph: nx.DiGraph,
        registry: Registry,
        file: str | None,
        document: GraphV1,
    ) -> None:
        self.inputs = inputs
        self.parameters = parameters
        self.constants = constants
        self.nodes = nodes
        self.outputs = outputs
        self.loss = loss
        self.digraph = digraph
        self.registry = registry
        self.file = file
        self.document = document
        self._plan: "Plan | None" = None

    @property
    def parameter_names(self) -> list[str]:
        return list(self.parameters)

    def spec(self, name: str) -> TensorSpec:
        """The static shape and dtype of any named value."""
        return self.digraph.nodes[name]["spec"]  # type: ignore[no-any-return]

    def compile(self) -> "Plan":
        """Compile into a flat execution plan (once; later calls return the same plan).

        The plan reads :attr:`parameters` on every call, so updating them (as
        training does) needs no recompilation.

        Examples
        --------
        >>> import graphengine
        >>> g = graphengine.load("examples/seed_network.json")
        >>> plan = g.compile()
        >>> round(float(plan.run()["loss"]), 9)
        0.298371109
        """
        from .plan import Plan

        if self._plan is None:
            self._plan = Plan(self)
        return self._plan

    def run(self, feeds: Mapping[str, Any] | None = None, *, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Shorthand for ``self.compile().run(...)``."""
        return self.compile().run(feeds, outputs=outputs)

    def grad(self, feeds: Mapping[str, Any] | None = None, wrt: Sequence[str] | None = None, **kwargs: Any) -> dict[str, np.ndarray]:
        """Shorthand for ``self.compile().grad(...)``."""
        return self.compile().grad(feeds, wrt, **kwargs)

    def value_and_grad(self, feeds: Mapping[str, Any] | None = None, wrt: Sequence[str] | None = None, **kwargs: Any) -> "GradResult":
        """Shorthand for ``self.compile().value_and_grad(...)``."""
        return self.compile().value_and_grad(feeds, wrt, **kwargs)

    def __repr__(self) -> str:
        return (
            f"<Graph {self.file or '<dict>'}: {len(self.inputs)} inputs, {len(self.parameters)} parameters, "
            f"{len(self.nodes)} nodes, outputs {self.outputs}>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        from .render import mimebundle  # lazy: graphviz only when displayed

        return mimebundle(self)

    def _repr_svg_(self) -> str | None:
        return self._repr_mimebundle_().get("image/svg+xml")


# --- loading -------------------------------------------------------------------------------


def load(
    path: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    plugins: Sequence[str] = (),
    limits: Limits | None = None,
    allow_nonfinite: bool = False,
) -> Graph:
    """Load, validate and build a graph file.

    Parameters
    ----------
    path : str or PathLike
        The JSON graph file. Weight files it names must sit in its folder.
    registry : Registry, optional
        Ops to resolve names against; default: installed plugins plus ``plugins``.
    plugins : sequence of str
        Extra plugins (file paths or module names), as ``--plugin`` on the CLI.
    limits : Limits, optional
    allow_nonfinite : bool
        Accept ``NaN`` and ``Infinity`` literals in the JSON (rejected by default).

    Returns
    -------
    Graph

    Raises
    ------
    GraphFileError
        A subclass naming the file, the JSON path and the node: SchemaError,
        DuplicateIdError, DanglingReferenceError, CycleError, UnknownOpError,
        ArityError, OpAttributeError, ShapeError, UnsafePathError, LimitError.
    PluginError
        When one of ``plugins`` cannot be loaded.

    Examples
    --------
    >>> import graphengine
    >>> g = graphengine.load("examples/seed_network.json")
    >>> sorted(g.parameters)
    ['W_h', 'W_o', 'b_h', 'b_o']
    >>> g.digraph.has_edge("W_h", "h_pre")
    True
    """
    limits = limits or Limits()
    file = str(path)
    try:
        size = os.stat(path).st_size
        if size > limits.max_file_bytes:
            raise LimitError(f"file is {size} bytes, over the limit max_file_bytes={limits.max_file_bytes}", file=file)
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise SchemaError(f"cannot read graph file: {exc.strerror or exc}", file=file) from None
    data = parse_json(raw, file=file, allow_nonfinite=allow_nonfinite)
    return load_dict(
        data,
        base_dir=Path(path).parent,
        file=file,
        registry=registry,
        plugins=plugins,
        limits=limits,
        allow_nonfinite=allow_nonfinite,
    )


def parse_json(raw: bytes | str, *, file: str | None, allow_nonfinite: bool = False) -> Any:
    """Parse JSON text, rejecting NaN/Infinity unless allowed.

    Raises
    ------
    SchemaError
        On malformed JSON (with line and column), non-finite literals, or
        nesting too deep to parse.
    """

    def reject_constant(name: str) -> float:
        raise SchemaError(
            f"JSON literal {name} is not allowed (load with allow_nonfinite=True / --allow-nonfinite to accept it)",
            file=file,
        )

    try:
        if allow_nonfinite:
            return json.loads(raw)
        return json.loads(raw, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=file) from None
    except UnicodeDecodeError as exc:
        raise SchemaError(f"file is not UTF-8 text: {exc.reason}", file=file) from None
    except RecursionError:
        raise SchemaError("JSON is nested too deeply to parse", file=file) from None


def load_dict(
    data: Any,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    file: str | None = None,
    registry: Registry | None = None,
    plugins: Sequence[str] = (),
    limits: Limits | None = None,
    allow_nonfinite: bool = False,
) -> Graph:
    """Validate and build a graph from an already-parsed JSON document.

    ``base_dir`` is the folder weight files are read from; without it, a
    graph that refers to files is rejected. See :func:`load` for the rest.
    """
    limits = limits or Limits()
    registry = registry or default_registry(plugins)
    doc = _validate_document(data, file)
    return _Builder(doc, data, registry, file, Path(base_dir) if base_dir is not None else None, limits, allow_nonfinite).build()


def _validate_document(data: Any, file: str | None) -> GraphV1:
    if not isinstance(data, dict):
        raise SchemaError(f"a graph file holds a JSON object, not {type(data).__name__}", file=file)
    version = data.get("format")
    if version != FORMAT_V1:
        raise SchemaError(
            f"unsupported format {version!r}; this version of graphengine reads {FORMAT_V1!r}",
            file=file,
            json_path="$.format",
        )
    try:
        return GraphV1.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc, data, file) from None
    except RecursionError:
        raise SchemaError("document is nested too deeply", file=file) from None


def _schema_error(exc: ValidationError, data: Any, file: str | None) -> SchemaError:
    errors = exc.errors()
    first = errors[0]
    loc = first["loc"]
    node_id = None
    if len(loc) >= 2 and loc[0] in ("nodes", "inputs", "parameters", "constants") and isinstance(loc[1], int):
        try:
            entry = data[loc[0]][loc[1]]
            node_id = entry.get("id", entry.get("name")) if isinstance(entry, dict) else None
            node_id = node_id if isinstance(node_id, str) else None
        except (IndexError, KeyError, TypeError):
            pass
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown field {loc[-1]!r}"
    elif first["type"] == "missing":
        msg = f"missing field {loc[-1]!r}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return SchemaError(msg + more, file=file, json_path=json_path(loc), node_id=node_id)


def json_path(loc: Iterable[Any]) -> str:
    """``("nodes", 2, "attrs")`` as ``$.nodes[2].attrs``."""
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_DTYPES = {name: np.dtype(name) for name in ("float32", "float64", "int32", "int64")}


class _Builder:
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
        self.total_bytes = 0

    def error(self, cls: type[GraphFileError], detail: str, path: str, node_id: str | None = None) -> GraphFileError:
        return cls(detail, file=self.file, json_path=path, node_id=node_id)

    def build(self) -> Graph:
        doc = self.doc
        count = len(doc.inputs) + len(doc.parameters) + len(doc.constants) + len(doc.nodes)
        if count > self.limits.max_nodes:
            raise self.error(LimitError, f"{count} entries, over the limit max_nodes={self.limits.max_nodes}", "$")
        self._check_unique_names()
        inputs = {d.name: self._input(i, d) for i, d in enumerate(doc.inputs)}
        parameters = {d.name: self._tensor("parameters", i, d) for i, d in enumerate(doc.parameters)}
        constants = {d.name: self._tensor("constants", i, d) for i, d in enumerate(doc.constants)}
        digraph = nx.DiGraph()
        for name, info in inputs.items():
            digraph.add_node(name, kind="input", spec=info.spec)
        for kind, table in (("parameter", parameters), ("constant", constants)):
            for name, value in table.items():
                digraph.add_node(name, kind=kind, spec=TensorSpec(value.shape, value.dtype))
        resolved = [self._resolve_node(i) for i in range(len(doc.nodes))]
        for node_id, op, attrs, path in resolved:
            digraph.add_node(node_id, kind="op", op=op.name)
        for index, (node_id, _, _, path) in enumerate(resolved):
            for position, src in enumerate(doc.nodes[index].inputs):
                if src not in digraph:
                    raise self.error(
                        DanglingReferenceError,
                        f"input {position} refers to {src!r}, which is not defined{self._did_you_mean(src)}",
                        f"{path}.inputs[{position}]",
                        node_id,
                    )
                if digraph.has_edge(src, node_id):
                    digraph.edges[src, node_id]["positions"].append(position)
                else:
                    digraph.add_edge(src, node_id, positions=[position])
        self._check_acyclic(digraph)
        for field, names in (("outputs", doc.outputs), ("loss", [doc.loss] if doc.loss else [])):
            for i, name in enumerate(names):
                if name not in digraph:
                    path = f"$.outputs[{i}]" if field == "outputs" else "$.loss"
                    raise self.error(
                        DanglingReferenceError, f"{name!r} is not defined{self._did_you_mean(name)}", path, name
                    )
        nodes = self._infer_specs(digraph, resolved)
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
        )

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
                    raise self.error(
                        DuplicateIdError, f"{name!r} is already defined at {self.where[name]}", path, name
                    )
                self.where[name] = path

    def _did_you_mean(self, name: str) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(self.where), n=3, cutoff=0.6)
        return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""

    def _dtype(self, name: str | None) -> np.dtype:
        return _DTYPES[name or self.doc.dtype]

    def _check_shape(self, shape: Sequence[int | None], path: str, name: str) -> None:
        if len(shape) > self.limits.max_ndim:
            raise self.error(LimitError, f"{len(shape)} dimensions, over the limit max_ndim={self.limits.max_ndim}", path, name)
        elements = 1
        for d in shape:
            elements *= d or 1  # Python ints: no overflow, so a huge product is caught, not wrapped
        if elements > self.limits.max_elements:
            raise self.error(
                LimitError,
                f"shape {format_shape(shape)} has {elements} elements, over the limit max_elements={self.limits.max_elements}",
                path,
                name,
            )

    def _literal(self, value: Any, dtype: np.dtype, path: str, name: str) -> np.ndarray:
        try:
            array = np.array(value, dtype=dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise self.error(
                SchemaError, f"not a rectangular array of numbers ({exc})".replace("\n", " "), path, name
            ) from None
        except RecursionError:
            raise self.error(SchemaError, "value is nested too deeply", path, name) from None
        if dtype.kind == "i" and np.array(value).dtype.kind not in "iub":
            raise self.error(SchemaError, f"{dtype.name} value holds non-integers", path, name)
        if not self.allow_nonfinite and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise self.error(SchemaError, "value holds NaN or Infinity", path, name)
        if _has_bool(value):
            raise self.error(SchemaError, "value holds true/false; use numbers", path, name)
        self._check_shape(array.shape, path, name)
        return array

    def _input(self, index: int, decl: Any) -> InputInfo:
        path = f"$.inputs[{index}]"
        self._check_shape(decl.shape, f"{path}.shape", decl.name)
        spec = TensorSpec(tuple(decl.shape), self._dtype(decl.dtype))
        default = None
        if decl.default is not None:
            default = self._literal(decl.default, spec.dtype, f"{path}.default", decl.name)
            if not _fits(default.shape, spec.shape):
                raise self.error(
                    ShapeError,
                    f"default has shape {format_shape(default.shape)} but the input is declared {format_shape(spec.shape)}",
                    f"{path}.default",
                    decl.name,
                )
        return InputInfo(spec, default, path)

    def _tensor(self, section: str, index: int, decl: TensorDecl) -> np.ndarray:
        path = f"$.{section}[{index}]"
        dtype = self._dtype(decl.dtype)
        if decl.shape is not None:
            self._check_shape(decl.shape, f"{path}.shape", decl.name)
        if decl.file is not None:
            array = self._read_array_file(decl, dtype, path)
        else:
            array = self._literal(decl.value, dtype, f"{path}.value", decl.name)
        if decl.shape is not None and tuple(decl.shape) != array.shape:
            raise self.error(
                ShapeError,
                f"value has shape {format_shape(array.shape)} but shape {format_shape(decl.shape)} is declared",
                path,
                decl.name,
            )
        self.total_bytes += array.nbytes
        if self.total_bytes > self.limits.max_total_bytes:
            raise self.error(
                LimitError, f"parameters and constants exceed max_total_bytes={self.limits.max_total_bytes}", path, decl.name
            )
        return array

    def _read_array_file(self, decl: TensorDecl, dtype: np.dtype, path: str) -> np.ndarray:
        assert decl.file is not None
        file_path = safe_data_path(self.base_dir, decl.file, error=lambda d: self.error(UnsafePathError, d, f"{path}.file", decl.name))
        try:
            data = file_path.read_bytes()
        except OSError as exc:
            raise self.error(SchemaError, f"cannot read {decl.file!r}: {exc.strerror or exc}", f"{path}.file", decl.name) from None
        if decl.sha256 is not None and hashlib.sha256(data).hexdigest() != decl.sha256.lower():
            raise self.error(SchemaError, f"{decl.file!r} does not match its sha256", f"{path}.sha256", decl.name)
        import io

        try:
            loaded = np.load(io.BytesIO(data), allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                key = decl.key or decl.name
                if key not in loaded.files:
                    raise self.error(
                        SchemaError,
                        f"{decl.file!r} has no array {key!r} (it has {', '.join(loaded.files) or 'none'})",
                        f"{path}.key",
                        decl.name,
                    )
                array = loaded[key]
            else:
                if decl.key is not None:
                    raise self.error(SchemaError, "'key' only applies to .npz files", f"{path}.key", decl.name)
                array = loaded
        except GraphFileError:
            raise
        except Exception as exc:  # numpy raises several types for corrupt files
            raise self.error(SchemaError, f"cannot read {decl.file!r} as .npy/.npz: {exc}", f"{path}.file", decl.name) from None
        if array.dtype.kind not in "fiu" or (dtype.kind == "i" and array.dtype.kind == "f"):
            raise self.error(SchemaError, f"{decl.file!r} holds {array.dtype}, not numbers", f"{path}.file", decl.name)
        self._check_shape(array.shape, f"{path}.file", decl.name)
        if not self.allow_nonfinite and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise self.error(SchemaError, f"{decl.file!r} holds NaN or Infinity", f"{path}.file", decl.name)
        return np.ascontiguousarray(array, dtype=dtype)

    def _resolve_node(self, index: int) -> tuple[str, OpDef, BaseModel, str]:
        decl = self.doc.nodes[index]
        path = f"$.nodes[{index}]"
        if decl.op not in self.registry:
            close = self.registry.suggest(decl.op)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "; see `graphengine ops`"
            raise self.error(UnknownOpError, f"unknown op {decl.op!r}{hint}", f"{path}.op", decl.id)
        op = self.registry[decl.op]
        low, high = op.arity
        n = len(decl.inputs)
        if n < low or (high is not None and n > high):
            expected = f"{low}" if low == high else f"at least {low}"
            names = ", ".join(op.inputs) + (", ..." if op.variadic else "")
            raise self.error(
                ArityError, f"op {op.name!r} takes {expected} inputs ({names}), got {n}", f"{path}.inputs", decl.id
            )
        try:
            attrs = op.attrs.model_validate(decl.attrs)
        except ValidationError as exc:
            first = exc.errors()[0]
            sub = json_path(first["loc"])[1:]
            msg = f"unknown attribute {first['loc'][-1]!r}" if first["type"] == "extra_forbidden" else first["msg"]
            allowed = ", ".join(op.attrs.model_fields) or "none"
            raise self.error(
                OpAttributeError, f"op {op.name!r}: {msg} (attributes: {allowed})", f"{path}.attrs{sub}", decl.id
            ) from None
        return decl.id, op, attrs, path

    def _check_acyclic(self, digraph: nx.DiGraph) -> None:
        try:
            cycle = nx.find_cycle(digraph)
        except nx.NetworkXNoCycle:
            return
        names = [u for u, _ in cycle] + [cycle[0][0]]
        first = names[0]
        raise self.error(CycleError, "the nodes form a cycle: " + " -> ".join(names), self.where[first], first)

    def _infer_specs(self, digraph: nx.DiGraph, resolved: list[tuple[str, OpDef, BaseModel, str]]) -> dict[str, NodeInfo]:
        by_id = {r[0]: (i, r) for i, r in enumerate(resolved)}
        nodes: dict[str, NodeInfo] = {}
        for name in nx.topological_sort(digraph):
            if name not in by_id:
                continue
            index, (node_id, op, attrs, path) = by_id[name]
            decl = self.doc.nodes[index]
            specs = [digraph.nodes[src]["spec"] for src in decl.inputs]
            try:
                spec = op.shape_rule(*specs, attrs=attrs)
            except ShapeError as exc:
                shown = ", ".join(f"{op.input_name(i)}={src} {s}" for i, (src, s) in enumerate(zip(decl.inputs, specs)))
                raise self.error(ShapeError, f"op {op.name!r} ({shown}): {exc.detail}", path, node_id) from None
            except Exception as exc:  # a plugin's shape rule is code we do not trust to be tidy
                raise self.error(
                    ShapeError, f"shape rule of op {op.name!r} failed: {type(exc).__name__}: {exc}", path, node_id
                ) from None
            digraph.nodes[node_id]["spec"] = spec
            nodes[node_id] = NodeInfo(node_id, op, tuple(decl.inputs), attrs, spec, path, decl.label)
        return nodes


def _fits(shape: Sequence[int], declared: Sequence[int | None]) -> bool:
    return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared))


def _has_bool(value: Any) -> bool:
    stack = [value]
    while stack:  # iterative: literals may be deep
        item = stack.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, list):
            stack.extend(item)
    return False


def safe_data_path(base_dir: Path | None, relative: str, *, error: Any) -> Path:
    """Resolve ``relative`` inside ``base_dir``, refusing anything that could leave it.

    Checked before any ``open()``: absolute paths, drive letters, backslashes,
    NUL bytes, ``..`` components, symlinks anywhere on the way, and hard links.
    ``error(detail)`` builds the exception to raise.
    """
    if base_dir is None:
        raise error(f"file {relative!r} cannot be read: the graph was not loaded from a file")
    if "\x00" in relative:
        raise error("path contains a NUL byte")
    if "\\" in relative or (len(relative) >= 2 and relative[1] == ":"):
        raise error(f"path {relative!r} must use '/' and be relative to the graph's folder")
    parts = relative.split("/")
    if relative.startswith("/") or any(p in ("..", "") for p in parts):
        raise error(f"path {relative!r} must stay inside the graph's folder (no absolute paths, '..' or empty parts)")
    base = base_dir.resolve()
    current = base
    for part in parts:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError:
            raise error(f"file {relative!r} does not exist in {str(base_dir)!r}") from None
        if stat.S_ISLNK(info.st_mode):
            raise error(f"path {relative!r} goes through a symlink ({part!r}); symlinks are not followed")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{relative!r} is not a regular file")
    if info.st_nlink > 1:
        raise error(f"{relative!r} is a hard link; copy the file instead")
    return current
