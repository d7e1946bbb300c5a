"""ONNX in: :func:`import_model` translates a ModelProto into a graphengine graph document.

Initializers become parameters (float) or constants (integers); graph inputs
that are not initializers become inputs, their ``dim_param`` dimensions named
dimensions. Nodes whose inputs are all constant data (shape arithmetic, Constant
nodes) are folded at import with ONNX's own reference implementation; the rest
go through one converter per op type (:mod:`.convert_basic`, :mod:`.convert_nn`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..format import atomic_write_bytes, npz_bytes
from ..graph import Graph, load_dict
from .context import Context, Value, numpy_dtype
from .convert_basic import BASIC
from .convert_nn import NN
from .errors import UnsupportedOnnxError
from .safety import read_model

__all__ = ["ImportedModel", "import_model", "CONVERTERS", "MIN_OPSET", "MAX_OPSET"]

CONVERTERS = {**BASIC, **NN}
#: The opsets of the default domain whose semantics the converters follow. The versions of the translated ops
#: after opset 23 (24, 25, 28) only add element types (float8e8m0, int2, float6 ...), which are refused by type.
MIN_OPSET, MAX_OPSET = 7, 28
#: Never folded: their value is random or they must stay visible.
_NO_FOLD = {
    "Dropout",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


@dataclass
class ImportedModel:
    """A translated model: the graph document, and the arrays too large to inline.

    Attributes
    ----------
    document : dict
        A ``graphengine/v1`` document. Large tensors name the file ``WEIGHTS``,
        which :meth:`save` replaces with the ``.npz`` written beside the graph.
    arrays : dict of str to numpy.ndarray
    names : dict of str to str
        ONNX value name to graphengine name, for every input, initializer and output.
    """

    document: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the graph JSON to ``path`` and, if needed, ``<stem>.npz`` beside it; return the JSON path."""
        path = Path(path)
        weights = path.with_suffix(".npz").name
        text = json.dumps(self.document, indent=1).replace('"file": "WEIGHTS"', f'"file": {json.dumps(weights)}')
        # The .npz first, then the JSON that names it, each atomically (a SaveError if it cannot be written).
        if self.arrays:
            atomic_write_bytes(path.with_suffix(".npz"), npz_bytes(self.arrays))
        atomic_write_bytes(path, (text + "\n").encode())
        return path

    def inline_document(self) -> dict[str, Any]:
        """The document with every tensor inline (no file beside it)."""
        doc = json.loads(json.dumps(self.document))
        for section in ("parameters", "constants"):
            for entry in doc[section]:
                if entry.get("file") == "WEIGHTS":
                    entry.pop("file"), entry.pop("shape")
                    entry["value"] = self.arrays[entry.pop("key")].tolist()
        return doc

    def graph(self, **load_options: Any) -> Graph:
        """Build the :class:`~graphengine.Graph` (tensors inline, nothing written).

        Non-finite constants are allowed (``allow_nonfinite=True`` by default): ONNX
        models hold -inf in attention masks and as reduction identities.
        """
        load_options.setdefault("allow_nonfinite", True)
        return load_dict(self.inline_document(), **load_options)


def import_model(
    model: Any, *, frozen: Mapping[str, Any] | None = None, file: str | None = None, name: str | None = None
) -> ImportedModel:
    """Translate an ONNX model into a graphengine graph.

    Parameters
    ----------
    model : str, PathLike or onnx.ModelProto
        A path is read with :func:`graphengine.onnx.safety.read_model` (bounded,
        external data only from the model's folder).
    frozen : mapping of str to array_like, optional
        Graph inputs to treat as constants with these values (e.g. a shape fed
        as an input, which graphengine needs as an attribute).
    file : str, optional
        The name used in messages; default: the path.
    name : str, optional
        The graph's name; default: the ONNX graph's.

    Returns
    -------
    ImportedModel

    Raises
    ------
    UnsupportedOnnxError
        One line naming the node, the op and why: an op, attribute, dtype or
        opset graphengine does not translate.
    OnnxError
        The model is malformed or unreadable.

    Examples
    --------
    >>> import onnx.helper as h
    >>> x = h.make_tensor_value_info("x", 1, ["batch", 3])
    >>> y = h.make_tensor_value_info("y", 1, ["batch", 3])
    >>> m = h.make_model(h.make_graph([h.make_node("Relu", ["x"], ["y"], name="act")], "g", [x], [y]),
    ...                  opset_imports=[h.make_opsetid("", 17)])
    >>> doc = import_model(m).document
    >>> doc["inputs"][0]["shape"], doc["nodes"][0]["id"], doc["nodes"][0]["op"]
    (['batch', 3], 'act', 'relu')
    """
    import onnx

    if isinstance(model, (str, os.PathLike)):
        file = file or str(model)
        model = read_model(model)
    opset = _opset(model, file)
    try:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a help, not a requirement: converters say when they need a shape
        pass
    ctx = Context(file, opset)
    _declare_values(ctx, model.graph, dict(frozen or {}))
    for node in model.graph.node:
        ctx.node = node
        _convert(ctx, node, opset)
    ctx.node = None
    outputs = [ctx.ref(o.name) for o in model.graph.output]
    names = {v.onnx_name: v.name for v in ctx.values.values() if v.name is not None}
    return ImportedModel(_document(ctx, model, outputs, name), ctx.arrays, names)


def _opset(model: Any, file: str | None) -> int:
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    opset = versions.get("ai.onnx")
    if opset is None:
        raise UnsupportedOnnxError("the model imports no opset of the default ONNX domain", file=file)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedOnnxError(
            f"opset {opset}; graphengine translates opsets {MIN_OPSET} to {MAX_OPSET}", file=file
        )
    return int(opset)


def _shape(type_proto: Any) -> tuple[int | str | None, ...] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for d in type_proto.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else d.dim_param if d.HasField("dim_param") else None)
    return tuple(dims)


def _declare_values(ctx: Context, graph: Any, frozen: dict[str, Any]) -> None:
    from onnx import numpy_helper

    for info in [*graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type in (1, 6, 7, 9, 11):
            ctx.values[info.name] = Value(
                info.name, numpy_dtype(info.type.tensor_type.elem_type, info.name), _shape(info.type)
            )
    for init in graph.initializer:
        data = numpy_helper.to_array(init)
        dtype = numpy_dtype(init.data_type, f"initializer {init.name!r}")
        kind = "parameter" if dtype.kind == "f" else "constant"
        ctx.values[init.name] = Value(init.name, dtype, data.shape, np.asarray(data), kind)
    for inp in graph.input:
        if inp.name in ctx.values and ctx.values[inp.name].data is not None:
            continue  # an initializer also listed as an input (IR < 4): a parameter
        if not inp.type.HasField("tensor_type"):
            raise UnsupportedOnnxError(
                f"input {inp.name!r} is not a tensor (sequence, map or optional types)", file=ctx.file
            )
        dtype = numpy_dtype(inp.type.tensor_type.elem_type, f"input {inp.name!r}")
        if inp.name in frozen:
            ctx.values[inp.name] = Value(inp.name, dtype, None, np.asarray(frozen[inp.name], dtype), "constant")
            continue
        shape = _shape(inp.type)
        gname = ctx.fresh(inp.name)
        stored = "int64" if dtype == np.bool_ else dtype.name
        entry: dict[str, Any] = {"name": gname, "shape": list(shape) if shape is not None else [], "dtype": stored}
        if shape is None:
            raise UnsupportedOnnxError(
                f"input {inp.name!r} has no shape; graphengine inputs have a rank", file=ctx.file
            )
        entry["shape"] = [d if not isinstance(d, str) or d.isidentifier() else None for d in shape]
        if gname != inp.name or dtype == np.bool_:
            entry["description"] = f"ONNX {inp.name!r}" + (" (bool, held as int64 0/1)" if dtype == np.bool_ else "")
        ctx.inputs.append(entry)
        ctx.values[inp.name] = Value(inp.name, dtype, shape, kind="input", name=gname)


def _convert(ctx: Context, node: Any, opset: int) -> None:
    if node.domain not in ("", "ai.onnx"):
        raise ctx.unsupported(f"domain {node.domain!r}; graphengine translates the default ONNX domain only")
    inputs = [ctx.value(i) for i in node.input if i]
    if node.op_type not in _NO_FOLD and all(v.data is not None and v.kind != "parameter" for v in inputs):
        _fold(ctx, node, opset, inputs)
        return
    converter = CONVERTERS.get(node.op_type)
    if converter is None:
        raise ctx.unsupported(f"op {node.op_type} has no graphengine translation")
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    converter(ctx, node, attrs)


def _fold(ctx: Context, node: Any, opset: int, inputs: list[Value]) -> None:
    """Evaluate a node on constant data with ONNX's reference implementation (no model code runs)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    given = [i for i in node.input if i]
    feeds = {i: ctx.data(i, "a folded input") for i in given}
    infos = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(feeds[i].dtype), None) for i in given]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "fold", infos, outs)
    try:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception as exc:
        if node.op_type in ("If", "Loop", "Scan"):
            raise ctx.unsupported("control flow (If, Loop, Scan) is not translated") from None
        raise ctx.error(f"cannot fold this node on its constant inputs: {type(exc).__name__}: {exc}") from None
    for name, data in zip([o for o in node.output if o], results):
        array = np.asarray(data)
        ctx.values[name] = Value(name, array.dtype, array.shape, array, "constant")


def _document(ctx: Context, model: Any, outputs: list[str], name: str | None) -> dict[str, Any]:
    floats = [e["dtype"] for e in [*ctx.inputs, *ctx.parameters] if e["dtype"].startswith("float")]
    doc: dict[str, Any] = {"format": "graphengine/v1", "name": name or model.graph.name or "onnx_model"}
    doc["description"] = f"Imported from ONNX ({model.producer_name or 'unknown producer'}, opset {ctx.opset})."
    doc["dtype"] = floats[0] if floats else "float32"
    doc.update(inputs=ctx.inputs, parameters=ctx.parameters, constants=ctx.constants, nodes=ctx.nodes)
    doc["outputs"] = list(dict.fromkeys(outputs))
    return doc
