"""Converters of layers, reductions, softmax and slices, which depend on the opset or on static shapes."""

from __future__ import annotations

from typing import Any

import numpy as np

from .context import Context
from .convert_basic import BIG, Converter, _ints

__all__ = ["NN"]


def _softmax(op: str) -> Converter:
    def convert(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
        """From opset 13 softmax is along one axis (default -1); before, over the axes from ``axis`` (default 1) on."""
        x = node.input[0]
        xref = ctx.float_ref(x)
        if ctx.opset >= 13:
            ctx.emit(op, [xref], {"axis": int(attrs.get("axis", -1))}, out=node.output[0])
            return
        rank = ctx.rank(x)
        axis = int(attrs.get("axis", 1)) % rank
        if axis == rank - 1:
            ctx.emit(op, [xref], {"axis": -1}, out=node.output[0])
            return
        shape = ctx.value(x).shape
        if shape is None or not all(isinstance(d, int) for d in shape):
            raise ctx.unsupported(f"{node.op_type} before opset 13 over axes {axis}.. needs a static input shape")
        flat = ctx.emit("flatten", [xref], {"axis": axis})
        soft = ctx.emit(op, [flat], {"axis": -1})
        ctx.emit("reshape", [soft], {"shape": list(shape)}, out=node.output[0])

    return convert


def _reduce(op: str, since: int, negate: bool = False) -> Converter:
    def convert(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
        """Axes as an attribute before opset ``since``, then as an optional input (noop_with_empty_axes)."""
        x = node.input[0]
        axes = _ints(ctx, node, attrs, "axes", 1, since)
        keep = bool(attrs.get("keepdims", 1))
        if not axes and attrs.get("noop_with_empty_axes", 0) and ctx.opset >= since:
            ctx.emit("identity", [ctx.float_ref(x)], out=node.output[0])
            return
        reduce_attrs: dict[str, Any] = {"axis": axes if axes else None, "keepdims": keep}
        xref = ctx.float_ref(x)
        if negate:  # min(x) = -max(-x)
            neg = ctx.emit("max", [ctx.emit("neg", [xref])], reduce_attrs)
            ctx.emit("neg", [neg], out=node.output[0])
        else:
            ctx.emit(op, [xref], reduce_attrs, out=node.output[0])

    return convert


def _slice_bounds(start: int, end: int, step: int, n: int | None) -> tuple[int, int | None] | None:
    """ONNX's clamped (start, stop) for an axis of length n as graphengine's slice wants them; None if empty."""
    if n is None:  # a free axis: only what needs no clamping
        stop: int | None = None if (end >= BIG // 2 if step > 0 else end <= -BIG // 2) else end
        return start, stop
    if start < 0:
        start += n
    if end < 0:
        end += n
    if step > 0:
        start, end = min(max(start, 0), n), min(max(end, 0), n)
        return (start, end) if start < end else None
    start, end = min(max(start, 0), n - 1), min(max(end, -1), n - 1)
    if start <= end:
        return None
    return start, None if end == -1 else end


def slice_(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    x = node.input[0]
    if ctx.opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = _ints(ctx, node, attrs, "starts", 1, 10), _ints(ctx, node, attrs, "ends", 2, 10)
        axes, steps = _ints(ctx, node, attrs, "axes", 3, 10), _ints(ctx, node, attrs, "steps", 4, 10)
    assert starts is not None and ends is not None
    rank = ctx.rank(x)
    axes = list(axes) if axes is not None else list(range(len(starts)))
    steps = list(steps) if steps is not None else [1] * len(starts)
    shape = ctx.value(x).shape or (None,) * rank
    current = ctx.ref(x)
    pieces = []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        n = shape[axis % rank]
        bounds = _slice_bounds(int(start), int(end), int(step), n if isinstance(n, int) else None)
        if bounds is None:
            raise ctx.unsupported(f"the slice of axis {axis} selects nothing; graphengine has no empty slices")
        pieces.append({"axis": int(axis), "start": bounds[0], "stop": bounds[1], "step": int(step)})
    if not pieces:
        ctx.emit("identity", [current], out=node.output[0])
        return
    for i, piece in enumerate(pieces):
        current = ctx.emit("slice", [current], piece, out=node.output[0] if i == len(pieces) - 1 else None,
                           dtype=ctx.value(x).dtype)  # fmt: skip


def _auto_pads(ctx: Context, node: Any, attrs: dict[str, Any], kernel: list[int]) -> list[int] | None:
    auto = attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        return [int(p) for p in attrs["pads"]] if "pads" in attrs else None
    if auto == "VALID":
        return [0] * (2 * len(kernel))
    shape = ctx.value(node.input[0]).shape
    if shape is None or not all(isinstance(d, int) for d in shape[2:]):
        raise ctx.unsupported(f"auto_pad={auto} needs static spatial dimensions")
    strides = attrs.get("strides") or [1] * len(kernel)
    dil = attrs.get("dilations") or [1] * len(kernel)
    lo, hi = [], []
    for n, k, s, d in zip(shape[2:], kernel, strides, dil):
        assert isinstance(n, int)
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small, big = total // 2, total - total // 2
        lo.append(small if auto == "SAME_UPPER" else big)
        hi.append(big if auto == "SAME_UPPER" else small)
    return lo + hi


def _window_attrs(ctx: Context, node: Any, attrs: dict[str, Any], kernel: list[int]) -> dict[str, Any]:
    if attrs.get("ceil_mode", 0):
        raise ctx.unsupported("ceil_mode=1 is not translated (graphengine's windows floor the output size)")
    if attrs.get("storage_order", 0):
        raise ctx.unsupported("storage_order=1 (column-major indices) is not translated")
    out: dict[str, Any] = {}
    pads = _auto_pads(ctx, node, attrs, kernel)
    if pads is not None:
        out["pads"] = pads
    for key in ("strides", "dilations"):
        if key in attrs:
            out[key] = [int(v) for v in attrs[key]]
    return out


def conv(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    x, w = node.input[0], node.input[1]
    w_shape = ctx.value(w).shape
    if w_shape is None or not all(isinstance(d, int) for d in w_shape):
        raise ctx.unsupported("the weight's shape must be static")
    kernel = [int(d) for d in attrs.get("kernel_shape", w_shape[2:])]  # type: ignore[arg-type]
    if len(kernel) not in (1, 2):
        raise ctx.unsupported(f"a {len(kernel)}-D convolution; graphengine's conv is 1-D or 2-D")
    conv_attrs = _window_attrs(ctx, node, attrs, kernel)
    if attrs.get("group", 1) != 1:
        conv_attrs["groups"] = int(attrs["group"])
    has_bias = len(node.input) > 2 and node.input[2]
    out_channels = w_shape[0]
    assert isinstance(out_channels, int)  # checked static above
    bias = (
        ctx.float_ref(node.input[2]) if has_bias else ctx.constant(np.zeros(out_channels, ctx.value(w).dtype), "bias")
    )
    ctx.emit("conv", [ctx.float_ref(x), ctx.float_ref(w), bias], conv_attrs, out=node.output[0])


def _pool(op: str) -> Converter:
    def convert(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise ctx.unsupported("the Indices output of MaxPool is not translated")
        kernel = [int(k) for k in attrs["kernel_shape"]]
        if len(kernel) not in (1, 2):
            raise ctx.unsupported(f"{len(kernel)}-D pooling; graphengine pools over 1 or 2 axes")
        pool_attrs = {"kernel_shape": kernel, **_window_attrs(ctx, node, attrs, kernel)}
        if op == "average_pool" and attrs.get("count_include_pad", 0):
            pool_attrs["count_include_pad"] = True
        ctx.emit(op, [ctx.float_ref(node.input[0])], pool_attrs, out=node.output[0])

    return convert


def global_average_pool(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    ctx.emit("global_average_pool", [ctx.float_ref(node.input[0])], out=node.output[0])


def batch_normalization(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    if attrs.get("training_mode", 0) or any(node.output[1:]):
        raise ctx.unsupported("training-mode BatchNormalization (batch statistics) is not translated; export in eval()")
    names = [ctx.float_ref(v) for v in node.input[:5]]
    ctx.emit("batch_normalization", names, {"epsilon": float(attrs.get("epsilon", 1e-5))}, out=node.output[0])


def _layer_norm_statistics(ctx: Context, node: Any, x: str, axis: int, epsilon: float) -> None:
    """LayerNormalization's optional Mean and InvStdDev outputs, as nodes of their own (kept axes of size 1)."""
    rank = ctx.rank(node.input[0])
    dtype = ctx.value(node.input[0]).dtype
    stats = {"axis": list(range(axis % rank, rank)), "keepdims": True}
    mean = ctx.emit("mean", [x], stats, out=node.output[1] or None)
    if len(node.output) > 2 and node.output[2]:
        centred = ctx.emit("sub", [x, mean])
        var = ctx.emit("mean", [ctx.emit("mul", [centred, centred])], stats)
        std = ctx.emit("sqrt", [ctx.emit("add", [var, ctx.constant(np.array(epsilon, dtype), "epsilon")])])
        ctx.emit("div", [ctx.constant(np.array(1.0, dtype), "one"), std], out=node.output[2])


def layer_normalization(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    x = node.input[0]
    dtype = ctx.value(x).dtype
    has_bias = len(node.input) > 2 and node.input[2]
    bias = ctx.float_ref(node.input[2]) if has_bias else ctx.constant(np.zeros((), dtype), "bias")
    axis, epsilon = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
    xref = ctx.float_ref(x)
    ln_attrs = {"axis": axis, "epsilon": epsilon}
    ctx.emit("layer_normalization", [xref, ctx.float_ref(node.input[1]), bias], ln_attrs, out=node.output[0])
    if any(node.output[1:]):
        _layer_norm_statistics(ctx, node, xref, axis, epsilon)


def softmax_cross_entropy_loss(ctx: Context, node: Any, attrs: dict[str, Any]) -> None:
    """ONNX SoftmaxCrossEntropyLoss: classes on axis 1 (moved last for graphengine), weights as constant data."""
    scores, labels = node.input[0], node.input[1]
    if len(node.output) > 1 and node.output[1]:  # log_prob: log_softmax over the class axis
        ctx.emit("log_softmax", [ctx.float_ref(scores)], {"axis": 1}, out=node.output[1])
    rank = ctx.rank(scores)
    loss_attrs: dict[str, Any] = {"reduction": attrs.get("reduction", "mean")}
    weights = ctx.optional_data(node.input, 2, "weights")
    if weights is not None:
        loss_attrs["class_weights"] = [float(w) for w in weights.reshape(-1)]
    if "ignore_index" in attrs:
        loss_attrs["ignore_index"] = int(attrs["ignore_index"])
    logits = ctx.float_ref(scores)
    if rank > 2:
        logits = ctx.emit("transpose", [logits], {"axes": [0, *range(2, rank), 1]})
    ctx.emit("softmax_cross_entropy", [logits, ctx.ref(labels)], loss_attrs, out=node.output[0])


NN: dict[str, Converter] = {
    "Softmax": _softmax("softmax"), "LogSoftmax": _softmax("log_softmax"),
    "ReduceSum": _reduce("sum", 13), "ReduceMean": _reduce("mean", 18), "ReduceMax": _reduce("max", 18),
    "ReduceMin": _reduce("max", 18, negate=True), "Slice": slice_, "Conv": conv,
    "MaxPool": _pool("max_pool"), "AveragePool": _pool("average_pool"), "GlobalAveragePool": global_average_pool,
    "SoftmaxCrossEntropyLoss": softmax_cross_entropy_loss, "BatchNormalization": batch_normalization, "LayerNormalization": layer_normalization,
}  # fmt: skip
