"""ONNX out: :func:`export_model` writes a graph whose ops all have ONNX equivalents as a ModelProto.

Inputs become graph inputs (named dimensions become ``dim_param``), parameters
initializers, constants Constant nodes (so they stay untrainable on import), nodes one or a few ONNX nodes each. The result is
checked with ``onnx.checker`` before it is returned. Opset 18 (20 when a gelu
is present, the first with Gelu).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..format import atomic_write_bytes
from ..graph import Graph
from ..graph.graph import NodeInfo
from .errors import OnnxError, UnsupportedOnnxError

__all__ = ["export_model", "save_model"]

_ELEM = {"float32": 1, "float64": 11, "int32": 6, "int64": 7}
_UNARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "neg": "Neg", "exp": "Exp",
          "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh",
          "erf": "Erf", "softplus": "Softplus", "matmul": "MatMul", "identity": "Identity", "dropout": "Identity",
          "maximum": "Max", "minimum": "Min", "cast_like": "CastLike", "global_average_pool": "GlobalAveragePool",
          "concat": "Concat", "gather": "Gather", "flatten": "Flatten", "softmax": "Softmax",
          "log_softmax": "LogSoftmax"}  # fmt: skip
INT64_MAX = 2**63 - 1


class _Out:
    """The ONNX graph being written."""

    def __init__(self, graph: Graph) -> None:
        self.graph, self.nodes, self.initializers = graph, [], []  # type: ignore[var-annotated]
        self.count = 0

    def const(self, data: Any, dtype: Any, hint: str) -> str:
        from onnx import numpy_helper

        self.count += 1
        name = f"{hint}.c{self.count}"
        self.initializers.append(numpy_helper.from_array(np.asarray(data, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


def _attrs(info: NodeInfo) -> dict[str, Any]:
    return info.attrs.model_dump()


def _window(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] for k in ("strides", "pads", "dilations") if a.get(k) is not None}


def _export_node(out: _Out, info: NodeInfo) -> None:
    op, a, ins, nid = info.op.name, _attrs(info), list(info.inputs), info.id
    if op in _UNARY:
        extra: dict[str, Any] = {}
        if op in ("concat", "gather", "flatten"):
            extra["axis"] = a["axis"]
        if op in ("softmax", "log_softmax"):
            extra["axis"] = a["axis"]
        out.node(_UNARY[op], ins, nid, nid, **extra)
    elif op == "leaky_relu":
        out.node("LeakyRelu", ins, nid, nid, alpha=a["negative_slope"])
    elif op == "gelu":
        out.node("Gelu", ins, nid, nid, approximate=a["approximate"])
    elif op == "linear":
        wt = out.node("Transpose", [ins[1]], f"{nid}.Wt", f"{nid}.Wt")
        mm = out.node("MatMul", [ins[0], wt], f"{nid}.xWt", f"{nid}.xWt")
        out.node("Add", [mm, ins[2]], nid, nid)
    elif op in ("sum", "mean", "max"):
        onnx_op = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"}[op]
        axes = a["axis"]
        extra_in = [] if axes is None else [out.const([axes] if isinstance(axes, int) else axes, np.int64, nid)]
        out.node(onnx_op, ins + extra_in, nid, nid, keepdims=int(a["keepdims"]))
    elif op == "reshape":
        out.node(
            "Reshape", [ins[0], out.const(a["shape"], np.int64, nid)], nid, nid, allowzero=0 if a["copy_zeros"] else 1
        )
    elif op == "transpose":
        out.node("Transpose", ins, nid, nid, **({"perm": a["axes"]} if a["axes"] is not None else {}))
    elif op == "slice":
        stop = a["stop"] if a["stop"] is not None else (INT64_MAX if a["step"] > 0 else -INT64_MAX)
        data = [out.const([v], np.int64, nid) for v in (a["start"], stop, a["axis"], a["step"])]
        out.node("Slice", ins + data, nid, nid)
    elif op in ("squeeze", "unsqueeze"):
        extra_in = [] if a["axes"] is None else [out.const(a["axes"], np.int64, nid)]
        out.node(op.capitalize(), ins + extra_in, nid, nid)
    elif op == "expand":
        out.node("Expand", [ins[0], out.const(a["shape"], np.int64, nid)], nid, nid)
    elif op == "clip":
        dtype = out.graph.spec(ins[0]).dtype
        bounds = [out.const(a[k], dtype, nid) if a[k] is not None else "" for k in ("min", "max")]
        out.node("Clip", [ins[0], *bounds], nid, nid)
    elif op == "where":
        cond = out.node("Cast", [ins[0]], f"{nid}.cond", f"{nid}.cond", to=9)
        out.node("Where", [cond, ins[1], ins[2]], nid, nid)
    elif op == "conv":
        out.node("Conv", ins, nid, nid, group=a["groups"], **_window(a))
    elif op in ("max_pool", "average_pool"):
        extra = {"count_include_pad": int(a["count_include_pad"])} if op == "average_pool" else {}
        onnx_op = "MaxPool" if op == "max_pool" else "AveragePool"
        out.node(onnx_op, ins, nid, nid, kernel_shape=a["kernel_shape"], **_window(a), **extra)
    elif op == "batch_normalization":
        out.node("BatchNormalization", ins, nid, nid, epsilon=a["epsilon"])
    elif op == "layer_normalization":
        out.node("LayerNormalization", ins, nid, nid, axis=a["axis"], epsilon=a["epsilon"])
    else:
        raise UnsupportedOnnxError(
            f"op {op} has no ONNX translation in graphengine's exporter", file=out.graph.file, node=nid, op=op
        )


def _value_info(name: str, dtype: np.dtype, dims: Any) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, _ELEM[dtype.name], [d if d is not None else None for d in dims])


def export_model(graph: Graph, *, opset: int | None = None) -> Any:
    """The ONNX ``ModelProto`` of ``graph``, accepted by ``onnx.checker``.

    Raises
    ------
    UnsupportedOnnxError
        Names the node and op without an ONNX equivalent (e.g. the losses).

    Examples
    --------
    >>> import graphengine
    >>> doc = {"format": "graphengine/v1", "inputs": [{"name": "x", "shape": ["batch", 2]}],
    ...        "nodes": [{"id": "y", "op": "tanh", "inputs": ["x"]}], "outputs": ["y"]}
    >>> model = export_model(graphengine.load_dict(doc))
    >>> [n.op_type for n in model.graph.node], model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    (['Tanh'], 'batch')
    """
    import onnx
    from onnx import helper, numpy_helper

    out = _Out(graph)
    for name, value in graph.constants.items():  # Constant nodes, so an importer keeps them untrainable
        out.node("Constant", [], name, name, value=numpy_helper.from_array(np.asarray(value), name))
    for info in graph.nodes.values():
        _export_node(out, info)
    if opset is None:
        opset = 20 if any(n.op.name == "gelu" for n in graph.nodes.values()) else 18
    inputs = [_value_info(n, i.spec.dtype, i.dims or i.spec.shape) for n, i in graph.inputs.items()]
    out.initializers.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in graph.parameters.items())
    outputs = [_value_info(n, graph.spec(n).dtype, graph.spec(n).shape) for n in graph.outputs]
    onnx_graph = helper.make_graph(out.nodes, graph.document.name or "graphengine", inputs, outputs, out.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="graphengine")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise OnnxError(f"onnx.checker refused the exported model: {exc}", file=graph.file) from None
    return model


def save_model(graph: Graph, path: str | os.PathLike[str], *, opset: int | None = None) -> None:
    """Export ``graph`` and write it to ``path`` atomically; a :class:`~graphengine.errors.SaveError` if it cannot be."""
    atomic_write_bytes(path, export_model(graph, opset=opset).SerializeToString())
