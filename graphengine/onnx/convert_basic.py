"""Converters of elementwise, matrix and shape ops: one ONNX node to one or a few graphengine nodes.

A converter is ``convert(ctx, node, attrs)``; ``attrs`` holds the node's ONNX
attributes as Python values. Inputs that ONNX passes as tensors but that mean a
shape, axes or a bound (Reshape's shape, Slice's starts, Clip's min) must be
constant data, and become graphengine attributes.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .context import Context

__all__ = ["BASIC"]

Converter = Callable[[Context, Any, dict[str, Any]], None]
BIG = 2**62  # ONNX's "to the end" sentinels are INT64_MAX / INT_MAX; anything this large means it


def _unary(op: str, **fixed: Any) -> Converter:
    def convert(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
        x = node.input[0]
        ctx.emit(op, [ctx.float_ref(x)], dict(fixed), out=node.output[0], dtype=ctx.value(x).dtype)

    return convert


def _binary(op: str) -> Converter:
    def convert(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
        a, b = node.input[0], node.input[1]
        ctx.emit(op, [ctx.float_ref(a), ctx.float_ref(b)], out=node.output[0], dtype=ctx.value(a).dtype)

    return convert


def _variadic(op: str) -> Converter:
    def convert(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
        names = [ctx.float_ref(x) for x in node.input if x]
        ctx.emit(op, names, out=node.output[0], dtype=ctx.value(node.input[0]).dtype)

    return convert


def leaky_relu(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    x = node.input[0]
    ctx.emit("leaky_relu", [ctx.float_ref(x)], {"negative_slope": float(attrs.get("alpha", 0.01))}, out=node.output[0])


def gelu(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    form = attrs.get("approximate", "none")
    if form not in ("none", "tanh"):
        raise ctx.unsupported(f"approximate={form!r}; graphengine has gelu 'none' (erf) and 'tanh'")
    ctx.emit("gelu", [ctx.float_ref(node.input[0])], {"approximate": form}, out=node.output[0])


def identity(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    x = node.input[0]
    v = ctx.value(x)
    ctx.emit("identity", [ctx.ref(x)], out=node.output[0], dtype=v.dtype, shape=v.shape)


def dropout(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    training = ctx.optional_data(node.input, 2, "training_mode")
    if (training is not None and bool(training)) or attrs.get("is_test", 1) == 0:
        raise ctx.unsupported("training-mode dropout is random; graphengine imports dropout in inference mode only")
    if len(node.output) > 1 and node.output[1]:
        raise ctx.unsupported("the mask output of Dropout is not translated")
    ratio = ctx.optional_data(node.input, 1, "ratio")
    ratio_value = float(ratio) if ratio is not None else float(attrs.get("ratio", 0.5))
    ctx.emit("dropout", [ctx.float_ref(node.input[0])], {"ratio": ratio_value}, out=node.output[0])


def matmul(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    ctx.emit("matmul", [ctx.float_ref(node.input[0]), ctx.float_ref(node.input[1])], out=node.output[0])


def gemm(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    """Y = alpha op(A) op(B) + beta C; PyTorch's Linear (transB=1, alpha=beta=1) becomes one linear node."""
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
    a, b = ctx.float_ref(node.input[0]), ctx.float_ref(node.input[1])
    c = node.input[2] if len(node.input) > 2 and node.input[2] else None
    dtype = ctx.value(node.input[0]).dtype
    c_shape = ctx.value(c).shape if c else ()
    if trans_b and not trans_a and alpha == 1.0 and beta == 1.0 and c_shape is not None and len(c_shape) <= 1:
        bias = ctx.ref(c) if c else ctx.constant(np.zeros((), dtype), f"{node.output[0]}.bias")
        ctx.emit("linear", [a, b, bias], out=node.output[0])
        return
    if trans_a:
        a = ctx.emit("transpose", [a])
    if trans_b:
        b = ctx.emit("transpose", [b])
    last = c is None and alpha == 1.0
    y = ctx.emit("matmul", [a, b], out=node.output[0] if last else None)
    if alpha != 1.0:
        y = ctx.emit(
            "mul", [y, ctx.constant(np.array(alpha, dtype), "alpha")], out=node.output[0] if c is None else None
        )
    if c is not None:
        cc = ctx.float_ref(c)
        if beta != 1.0:
            cc = ctx.emit("mul", [cc, ctx.constant(np.array(beta, dtype), "beta")])
        ctx.emit("add", [y, cc], out=node.output[0])


def _ints(ctx: Context, node: Any, attrs: dict[str, Any], key: str, position: int, since: int) -> list[int] | None:
    """An int list given as an attribute before opset ``since`` and as constant input ``position`` from it on."""
    if ctx.opset < since:
        value = attrs.get(key)
        return None if value is None else [int(v) for v in value]
    data = ctx.optional_data(node.input, position, key)
    return None if data is None else [int(v) for v in np.asarray(data).reshape(-1)]


def reshape(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    shape = _ints(ctx, node, attrs, "shape", 1, 5) or []
    x = node.input[0]
    copy = not attrs.get("allowzero", 0) and 0 in shape
    ctx.emit("reshape", [ctx.ref(x)], {"shape": shape, "copy_zeros": True} if copy else {"shape": shape},
             out=node.output[0], dtype=ctx.value(x).dtype)  # fmt: skip


def transpose(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    perm = attrs.get("perm")
    x = node.input[0]
    ctx.emit("transpose", [ctx.ref(x)], {"axes": [int(p) for p in perm]} if perm is not None else {},
             out=node.output[0], dtype=ctx.value(x).dtype)  # fmt: skip


def concat(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    names = [ctx.ref(x) for x in node.input if x]
    ctx.emit("concat", names, {"axis": int(attrs["axis"])}, out=node.output[0], dtype=ctx.value(node.input[0]).dtype)


def flatten(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    x = node.input[0]
    ctx.emit("flatten", [ctx.ref(x)], {"axis": int(attrs.get("axis", 1))}, out=node.output[0], dtype=ctx.value(x).dtype)


def squeeze(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    axes = _ints(ctx, node, attrs, "axes", 1, 13)
    x = node.input[0]
    ctx.emit("squeeze", [ctx.ref(x)], {"axes": axes} if axes is not None else {}, out=node.output[0],
             dtype=ctx.value(x).dtype)  # fmt: skip


def unsqueeze(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    axes = _ints(ctx, node, attrs, "axes", 1, 13)
    x = node.input[0]
    ctx.emit("unsqueeze", [ctx.ref(x)], {"axes": axes}, out=node.output[0], dtype=ctx.value(x).dtype)


def gather(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    x, indices = node.input[0], node.input[1]
    ctx.emit("gather", [ctx.ref(x), ctx.ref(indices)], {"axis": int(attrs.get("axis", 0))}, out=node.output[0],
             dtype=ctx.value(x).dtype)  # fmt: skip


def expand(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    shape = [int(d) for d in ctx.data(node.input[1], "shape").reshape(-1)]
    x = node.input[0]
    ctx.emit("expand", [ctx.ref(x)], {"shape": shape}, out=node.output[0], dtype=ctx.value(x).dtype)


def where(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    c, a, b = node.input
    ctx.emit("where", [ctx.ref(c), ctx.float_ref(a), ctx.float_ref(b)], out=node.output[0], dtype=ctx.value(a).dtype)


def clip(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    if ctx.opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo_data, hi_data = ctx.optional_data(node.input, 1, "min"), ctx.optional_data(node.input, 2, "max")
        lo = None if lo_data is None else float(lo_data)
        hi = None if hi_data is None else float(hi_data)
    bounds = {k: float(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
    ctx.emit("clip", [ctx.float_ref(node.input[0])], bounds, out=node.output[0])


def cast(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    from .context import numpy_dtype

    to = numpy_dtype(int(attrs["to"]), "the target of Cast")
    x = node.input[0]
    if to.kind != "f":
        raise ctx.unsupported(f"Cast to {to.name} of a computed tensor; graphengine casts to float types only")
    if ctx.value(x).dtype == to:
        ctx.emit("identity", [ctx.ref(x)], out=node.output[0], dtype=to)
        return
    ctx.emit("cast_like", [ctx.ref(x), ctx.constant(np.zeros((), to), to.name)], out=node.output[0], dtype=to)


def cast_like(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    x, like = node.input
    ctx.emit("cast_like", [ctx.ref(x), ctx.ref(like)], out=node.output[0], dtype=ctx.value(like).dtype)


def shape(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    """Shape and Size become constant data when the input's shape is static (then they fold what follows)."""
    dims = ctx.value(node.input[0]).shape
    if dims is None or not all(isinstance(d, int) for d in dims):
        raise ctx.unsupported(f"{node.op_type} of a tensor whose shape is not static ({dims})")
    from .context import Value

    full = np.array(dims, dtype=np.int64)
    if node.op_type == "Size":
        data = np.array(int(np.prod(full)), dtype=np.int64)
    else:
        data = full[slice(attrs.get("start", 0), attrs.get("end"))]
    ctx.values[node.output[0]] = Value(node.output[0], data.dtype, data.shape, data, "constant")


def sum_mean(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    """ONNX Sum and Mean (variadic, broadcasting) as a chain of adds, then a multiplication by 1/n."""
    names = [ctx.float_ref(x) for x in node.input if x]
    mean = node.op_type == "Mean" and len(names) > 1
    total = names[0]
    for i, other in enumerate(names[1:], 2):
        total = ctx.emit("add", [total, other], out=node.output[0] if i == len(names) and not mean else None)
    if len(names) == 1:
        ctx.emit("identity", [total], out=node.output[0])
    elif mean:
        inverse = ctx.constant(np.array(1.0 / len(names), ctx.value(node.input[0]).dtype), "inverse_count")
        ctx.emit("mul", [total, inverse], out=node.output[0])


BASIC: dict[str, Converter] = {
    "Relu": _unary("relu"), "Sigmoid": _unary("sigmoid"), "Tanh": _unary("tanh"), "Exp": _unary("exp"),
    "Log": _unary("log"), "Sqrt": _unary("sqrt"), "Abs": _unary("abs"), "Neg": _unary("neg"), "Erf": _unary("erf"),
    "Softplus": _unary("softplus"), "LeakyRelu": leaky_relu, "Gelu": gelu, "Identity": identity, "Dropout": dropout,
    "Add": _binary("add"), "Sub": _binary("sub"), "Mul": _binary("mul"), "Div": _binary("div"), "Pow": _binary("pow"),
    "Max": _variadic("maximum"), "Min": _variadic("minimum"), "MatMul": matmul, "Gemm": gemm,
    "Reshape": reshape, "Transpose": transpose, "Concat": concat, "Flatten": flatten, "Squeeze": squeeze,
    "Unsqueeze": unsqueeze, "Gather": gather, "Expand": expand, "Where": where, "Clip": clip, "Cast": cast,
    "CastLike": cast_like, "Shape": shape, "Size": shape, "Sum": sum_mean, "Mean": sum_mean,
}  # fmt: skip
