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
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import networkx as nx
import numpy as np
from pydantic import BaseModel, ValidationError

from .errors import clip as _clip
from .errors import show as _show
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
from .weights import NPY_HEADER_ROOM, npy_header, npz_member, read_data_file

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
        Elements of any one tensor: declared, stored, or produced by a node
        (free dimensions count as 1).
    max_total_bytes : int
        Bytes of all parameters, constants and input defaults together,
        counted before each is allocated (also bounds what a weight file
        may hold, or a .npz member may unpack to).
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
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        raise SchemaError(f"invalid JSON: {_clip(str(exc), 120)}", file=file) from None
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
    doc = _validate_document(data, file, limits)
    return _Builder(doc, data, registry, file, Path(base_dir) if base_dir is not None else None, limits, allow_nonfinite).build()


def _validate_document(data: Any, file: str | None, limits: Limits) -> GraphV1:
    if not isinstance(data, dict):
        raise SchemaError(f"a graph file holds a JSON object, not {type(data).__name__}", file=file)
    version = data.get("format")
    if version != FORMAT_V1:
        raise SchemaError(
            f"unsupported format {_show(version)}; this version of graphengine reads {FORMAT_V1!r}",
            file=file,
            json_path="$.format",
        )
    # Count entries before pydantic builds a model for each of them.
    count = sum(len(v) for k in _SECTIONS if isinstance(v := data.get(k), list))
    if count > limits.max_nodes:
        raise LimitError(f"{count} entries, over the limit max_nodes={limits.max_nodes}", file=file)
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
        msg = f"unknown field {_show(loc[-1])}"
    elif first["type"] == "missing":
        msg = f"missing field {_show(loc[-1])}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return SchemaError(msg + more, file=file, json_path=json_path(loc), node_id=node_id)


def json_path(loc: Iterable[Any]) -> str:
    """``("nodes", 2, "attrs")`` as ``$.nodes[2].attrs``.

    Keys that are not plain identifiers are quoted and escaped (``$.attrs["a b"]``),
    so a hostile key cannot put a newline or a terminal escape into a message.
    """
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(_clip(str(part), 64))}]"  # ensure_ascii: escapes control characters
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}\Z")
_SECTIONS = ("inputs", "parameters", "constants", "nodes")


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
        self.no_attrs: dict[str, BaseModel] = {}  # op name -> its default attrs, when frozen

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
        order = self._check_acyclic(digraph)
        for field, names in (("outputs", doc.outputs), ("loss", [doc.loss] if doc.loss else [])):
            for i, name in enumerate(names):
                if name not in digraph:
                    path = f"$.outputs[{i}]" if field == "outputs" else "$.loss"
                    raise self.error(
                        DanglingReferenceError, f"{name!r} is not defined{self._did_you_mean(name)}", path, name
                    )
        nodes = self._infer_specs(digraph, resolved, order)
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

    def _check_shape(self, shape: Sequence[int | None], path: str, name: str) -> int:
        """Check ndim and element count (free dimensions count as 1); return the element count."""
        if len(shape) > self.limits.max_ndim:
            raise self.error(LimitError, f"{len(shape)} dimensions, over the limit max_ndim={self.limits.max_ndim}", path, name)
        elements = math.prod(d or 1 for d in shape)  # Python ints: a product past int64 is caught, not wrapped
        if elements > self.limits.max_elements:
            raise self.error(
                LimitError,
                f"shape {format_shape(shape)} has {elements} elements, over the limit max_elements={self.limits.max_elements}",
                path,
                name,
            )
        return elements

    def _reserve(self, nbytes: int, path: str, name: str) -> None:
        """Count ``nbytes`` against max_total_bytes, before they are allocated."""
        self.total_bytes += nbytes
        if self.total_bytes > self.limits.max_total_bytes:
            raise self.error(
                LimitError,
                f"{name!r} needs {nbytes} bytes, which takes parameters, constants and defaults to {self.total_bytes} bytes, "
                f"over the limit max_total_bytes={self.limits.max_total_bytes}",
                path,
                name,
            )

    def _literal(self, value: Any, dtype: np.dtype, path: str, name: str) -> np.ndarray:
        """An inline value as an array; every element is checked before numpy sees it."""
        problem = _check_numbers(value, dtype, self.limits)
        if problem is not None:
            where, detail = problem
            deep = "nested deeper" in detail  # the index path would be as long as the nesting
            cls = LimitError if "limit" in detail else SchemaError
            raise self.error(cls, detail, path if deep else path + _index_path(where[1:]), name)
        try:
            with np.errstate(over="ignore"):  # a value too big for float32 becomes inf: reported below, by index
                array = np.array(value, dtype=dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise self.error(
                SchemaError, f"not a rectangular array of numbers ({exc})".replace("\n", " "), path, name
            ) from None
        self._check_shape(array.shape, path, name)
        self._reserve(array.nbytes, path, name)
        if array.dtype.kind == "f":
            bad = np.argwhere(~np.isfinite(array))
            if len(bad):
                where = tuple(int(i) for i in bad[0])
                source = value
                for i in where:
                    source = source[i]
                if math.isfinite(source):  # finite in the file, infinite after conversion
                    raise self.error(SchemaError, f"element {_clip(str(source), 40)} does not fit {dtype.name}", path + _index_path(where), name)
                if not self.allow_nonfinite:
                    raise self.error(
                        SchemaError,
                        f"element is {source!r}; NaN and Infinity are not allowed (load with allow_nonfinite=True / --allow-nonfinite to accept them)",
                        path + _index_path(where),
                        name,
                    )
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
        return array

    def _read_array_file(self, decl: TensorDecl, dtype: np.dtype, path: str) -> np.ndarray:
        """Read a .npy/.npz weight file without numpy's loader: header first, limits, then data.

        Never unpickles (object arrays are refused), never trusts a header's
        shape or a zip member's size before checking them against the limits.
        """
        assert decl.file is not None
        shown = _show(decl.file)

        def fail(detail: str, suffix: str = ".file", cls: type[GraphFileError] = SchemaError) -> GraphFileError:
            return self.error(cls, detail, f"{path}{suffix}", decl.name)

        budget = self.limits.max_total_bytes - self.total_bytes
        data = read_data_file(
            self.base_dir,
            decl.file,
            max_bytes=budget + NPY_HEADER_ROOM,
            error=lambda d: fail(d, cls=UnsafePathError),
            limit_error=lambda d: fail(f"{d} (max_total_bytes={self.limits.max_total_bytes})", cls=LimitError),
            read_error=fail,
        )
        if decl.sha256 is not None:
            digest = hashlib.sha256(data).hexdigest()
            if digest != decl.sha256.lower():
                raise fail(f"{shown} has sha256 {digest}, but {decl.sha256.lower()} is declared", ".sha256")
        if data[:4] == b"PK\x03\x04":
            data = npz_member(data, decl, budget, self.limits.max_total_bytes, fail)
        elif decl.key is not None:
            raise fail("'key' only applies to .npz files", ".key")
        if data[:6] != b"\x93NUMPY":
            raise fail(f"{shown} is not a .npy or .npz file")
        try:
            shape, fortran, stored, offset = npy_header(data)
        except Exception as exc:  # numpy raises several types for corrupt headers
            raise fail(f"{shown} has a corrupt .npy header: {_clip(str(exc), 160)}") from None
        if stored.hasobject or stored.kind not in "fiu":
            raise fail(f"{shown} holds {stored} values, not numbers (object arrays are never unpickled)")
        if dtype.kind in "iu" and stored.kind == "f":
            raise fail(f"{shown} holds {stored} values for a {dtype.name} tensor")
        elements = self._check_shape(shape, f"{path}.file", decl.name)
        if len(data) != offset + elements * stored.itemsize:
            raise fail(f"{shown} is {len(data)} bytes, which does not fit its header's shape {format_shape(shape)} of {stored}")
        self._reserve(elements * dtype.itemsize, path, decl.name)
        flat = np.frombuffer(data, dtype=stored, count=elements, offset=offset)
        array = np.array(flat.reshape(shape, order="F" if fortran else "C"), dtype=dtype, order="C")
        if not self.allow_nonfinite and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise fail(f"{shown} holds NaN or Infinity (load with allow_nonfinite=True / --allow-nonfinite to accept it)")
        if dtype.kind in "iu" and stored != dtype and not np.array_equal(flat, array.reshape(-1, order="F" if fortran else "C")):
            raise fail(f"{shown} holds {stored} values that do not fit {dtype.name}")
        return array

    def _resolve_node(self, index: int) -> tuple[str, OpDef, BaseModel, str]:
        decl = self.doc.nodes[index]
        path = f"$.nodes[{index}]"
        if decl.op not in self.registry:
            close = self.registry.suggest(decl.op) if len(decl.op) <= 128 else []
            hint = (
                f"; did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else "; if a plugin defines it, load the plugin (--plugin FILE_OR_MODULE, or plugins=[...]); `graphengine ops` lists the ops"
            )
            raise self.error(UnknownOpError, f"unknown op {_show(decl.op)}{hint}", f"{path}.op", decl.id)
        op = self.registry[decl.op]
        low, high = op.arity
        n = len(decl.inputs)
        if n < low or (high is not None and n > high):
            expected = f"{low}" if low == high else f"at least {low}"
            names = ", ".join(op.inputs) + (", ..." if op.variadic else "")
            raise self.error(
                ArityError, f"op {op.name!r} takes {expected} inputs ({names}), got {n}", f"{path}.inputs", decl.id
            )
        allowed = ", ".join(op.attrs.model_fields) or "none"
        if not self.allow_nonfinite:
            bad = _first_nonfinite(decl.attrs)
            if bad is not None:
                raise self.error(
                    OpAttributeError, f"op {op.name!r}: NaN or Infinity is not allowed", f"{path}.attrs{json_path(bad)[1:]}", decl.id
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
                OpAttributeError, f"op {op.name!r}: attributes must be JSON values ({_clip(str(exc), 120)})", f"{path}.attrs", decl.id
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

    def _infer_specs(
        self, digraph: nx.DiGraph, resolved: list[tuple[str, OpDef, BaseModel, str]], order: list[str]
    ) -> dict[str, NodeInfo]:
        by_id = {r[0]: (i, r) for i, r in enumerate(resolved)}
        nodes: dict[str, NodeInfo] = {}
        for name in order:
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
            if not isinstance(spec, TensorSpec):
                raise self.error(ShapeError, f"shape rule of op {op.name!r} returned {type(spec).__name__}, not a TensorSpec", path, node_id)
            # An output is allocated when the graph runs: bound it now, as a declared tensor is.
            self._check_shape(spec.shape, path, node_id)
            digraph.nodes[node_id]["spec"] = spec
            nodes[node_id] = NodeInfo(node_id, op, tuple(decl.inputs), attrs, spec, path, decl.label)
        return nodes


def _fits(shape: Sequence[int], declared: Sequence[int | None]) -> bool:
    return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared))


def _check_numbers(value: Any, dtype: np.dtype, limits: Limits) -> tuple[tuple[int, ...], str] | None:
    """Walk a nested-list literal (iteratively: it may be deep) before numpy converts it.

    Returns ``(index, problem)`` for the first bad element, or None. Catches
    what ``np.array`` would accept silently: strings ("1.5" -> 1.5), null
    (-> NaN), true/false (-> 1/0), floats in an integer tensor, integers out of
    its range, and more elements or nesting than the limits allow. Lists are
    checked a whole row at a time, so a big literal costs little.
    """
    integer = dtype.kind in "iu"
    allowed = (int,) if integer else (int, float)
    count = 0
    stack: list[tuple[Any, tuple[int, ...]]] = [([value], ())]  # a one-row wrapper: the value itself is element ()
    while stack:
        row, where = stack.pop()
        if len(where) > limits.max_ndim:
            return where, f"nested deeper than the limit max_ndim={limits.max_ndim}"
        if any(type(x) is list for x in row):
            stack.extend((x, where + (i,)) for i, x in enumerate(row) if type(x) is list)
            continue  # a row mixing lists and numbers is ragged: numpy says so
        count += len(row)
        if count > limits.max_elements:
            return where, f"more than {limits.max_elements} elements, over the limit max_elements={limits.max_elements}"
        if not all(type(x) in allowed for x in row):
            i, x = next((i, x) for i, x in enumerate(row) if type(x) not in allowed)
            kind = {bool: "true/false", str: "a string", type(None): "null", dict: "an object", float: f"{x!r}"}.get(type(x), type(x).__name__)
            need = f"integers ({dtype.name})" if integer else "numbers"
            return where + (i,), f"element is {kind}; values are {need} or nested lists of them"
        if integer and row:
            info = np.iinfo(dtype)
            if min(row) < info.min or max(row) > info.max:
                i, x = next((i, x) for i, x in enumerate(row) if not info.min <= x <= info.max)
                return where + (i,), f"element {_clip(str(x), 40)} does not fit {dtype.name}"
    return None


def _index_path(where: tuple[int, ...]) -> str:
    return "".join(f"[{i}]" for i in where)


def _first_nonfinite(value: Any) -> tuple[Any, ...] | None:
    """The location of the first NaN/Infinity float in nested JSON values, or None."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            stack.extend((v, where + (k,)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, where + (i,)) for i, v in enumerate(item))
    return None
