"""The state of one import: what each ONNX value became, and the graph document being written."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import OnnxError, UnsupportedOnnxError

__all__ = ["Value", "Context", "numpy_dtype"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}\Z")

#: ONNX element types graphengine holds. bool becomes int64 (0/1): the file format has no bool dtype.
_DTYPES = {1: "float32", 11: "float64", 6: "int32", 7: "int64", 9: "bool"}
_NAMES = {0: "undefined", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 8: "string", 10: "float16", 12: "uint32",
          13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
          19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1"}  # fmt: skip


def numpy_dtype(elem_type: int, what: str) -> np.dtype:
    """The numpy dtype of an ONNX element type; UnsupportedOnnxError naming it otherwise."""
    name = _DTYPES.get(elem_type)
    if name is None:
        raise UnsupportedOnnxError(
            f"{what} has element type {_NAMES.get(elem_type, elem_type)}, which graphengine does not hold"
        )
    return np.dtype(name)


def stored(array: np.ndarray) -> np.ndarray:
    """An array as the file format holds it: bool as int64."""
    return array.astype(np.int64) if array.dtype == np.bool_ else array


@dataclass
class Value:
    """One ONNX value: its graphengine name once emitted, static shape and dtype, and its data if known."""

    onnx_name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...] | None
    data: np.ndarray | None = None
    kind: str = "node"  # input, parameter, constant or node
    name: str | None = None  # set when the graph refers to it


@dataclass
class Context:
    """One import in progress. Converters read values through it and emit graphengine nodes into it."""

    file: str | None
    opset: int
    values: dict[str, Value] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    constants: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    node: Any = None  # the ONNX node being converted

    # --- names ---------------------------------------------------------------------------

    def fresh(self, wanted: str) -> str:
        """A valid, unused graphengine name close to ``wanted`` (stable: it depends only on the model)."""
        name = wanted if _NAME.match(wanted) else re.sub(r"[^A-Za-z0-9_.\-]", "_", wanted).strip("_.-") or "v"
        if not re.match(r"[A-Za-z_]", name):
            name = "v_" + name
        name = name[:120]
        base, k = name, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    # --- errors --------------------------------------------------------------------------

    def unsupported(self, reason: str) -> UnsupportedOnnxError:
        node = self.node
        return UnsupportedOnnxError(reason, file=self.file, node=_node_name(node), op=node.op_type if node else None)

    def error(self, reason: str) -> OnnxError:
        node = self.node
        return OnnxError(reason, file=self.file, node=_node_name(node), op=node.op_type if node else None)

    # --- reading values ------------------------------------------------------------------

    def value(self, onnx_name: str) -> Value:
        if onnx_name not in self.values:
            raise self.error(f"input {onnx_name!r} is not produced by any earlier node, input or initializer")
        return self.values[onnx_name]

    def data(self, onnx_name: str, what: str) -> np.ndarray:
        """The known data of a value that the op reads as an attribute (a shape, axes, a bound)."""
        v = self.value(onnx_name)
        if v.data is None:
            raise self.unsupported(f"{what} ({onnx_name!r}) must be constant data (an initializer or a Constant)")
        return v.data

    def optional_data(self, inputs: Sequence[str], i: int, what: str) -> np.ndarray | None:
        return self.data(inputs[i], what) if len(inputs) > i and inputs[i] else None

    def rank(self, onnx_name: str) -> int:
        shape = self.value(onnx_name).shape
        if shape is None:
            raise self.unsupported(f"the rank of {onnx_name!r} is unknown (run onnx shape inference on the model)")
        return len(shape)

    def ref(self, onnx_name: str) -> str:
        """The graphengine name of a value, emitting a constant for folded data on first use."""
        v = self.value(onnx_name)
        if v.name is None:
            if v.data is None:
                raise self.error(f"input {onnx_name!r} is read before any node produces it")
            v.name = self.fresh(onnx_name)
            self.declare_tensor(self.constants if v.kind != "parameter" else self.parameters, v.name, v.data, onnx_name)
        return v.name

    def float_ref(self, onnx_name: str) -> str:
        v = self.value(onnx_name)
        if v.dtype.kind != "f":
            raise self.unsupported(
                f"input {onnx_name!r} is {v.dtype.name}; this op is translated for float tensors only"
            )
        return self.ref(onnx_name)

    # --- writing the document ------------------------------------------------------------

    def declare_tensor(self, section: list[dict[str, Any]], name: str, data: np.ndarray, onnx_name: str) -> None:
        data = stored(np.asarray(data))
        entry: dict[str, Any] = {"name": name, "dtype": data.dtype.name}
        if data.size <= 64:
            entry["value"] = data.tolist()
        else:
            self.arrays[name] = data
            entry.update(file="WEIGHTS", key=name, shape=list(data.shape))
        if onnx_name != name:
            entry["description"] = f"ONNX {onnx_name!r}"
        section.append(entry)

    def constant(self, data: np.ndarray, hint: str) -> str:
        """A new constant holding ``data``."""
        name = self.fresh(hint)
        self.declare_tensor(self.constants, name, data, name)
        return name

    def emit(self, op: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None, *, out: str | None = None,
             dtype: np.dtype | None = None, shape: tuple[int | str | None, ...] | None = None) -> str:  # fmt: skip
        """Append a graphengine node; with ``out`` it becomes the value of that ONNX output."""
        node = self.node
        label = (node.name or node.op_type) if node is not None else op
        if out is not None:
            wanted = (
                node.name
                if node is not None and node.name and _NAME.match(node.name)
                else _stable_id(node.op_type, out)
            )
            gname = self.fresh(wanted)
        else:
            gname = self.fresh(f"{label}.{op}")
        entry: dict[str, Any] = {"id": gname, "op": op, "inputs": list(inputs), "label": label}
        if attrs:
            entry["attrs"] = attrs
        if node is not None:
            entry["description"] = f"ONNX {node.op_type} {node.name!r}" + (f" -> {out!r}" if out else "")
        self.nodes.append(entry)
        if out is not None:
            known = self.values.get(out)
            self.values[out] = Value(out, dtype if dtype is not None else known.dtype if known else np.dtype("float32"),
                                     shape if shape is not None else known.shape if known else None, name=gname)  # fmt: skip
        return gname


def _stable_id(op_type: str, output: str) -> str:
    """An id from the op type and the output name: ``/conv/Conv_output_0`` gives ``conv.Conv``, ``y`` ``Gemm_y``."""
    cleaned = re.sub(r"_output_\d+$", "", output).strip("/").replace("/", ".").replace("::", ".")
    return cleaned if op_type in cleaned.split(".")[-1] else f"{op_type}_{cleaned}"


def _node_name(node: Any) -> str | None:
    if node is None:
        return None
    return node.name or (node.output[0] if node.output else None)
