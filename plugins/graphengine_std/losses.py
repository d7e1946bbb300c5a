"""Losses with a scalar output: squared_error and softmax_cross_entropy.

``squared_error(prediction, target)`` reduces ``(prediction - target)**2`` by
``"sum"``, ``"mean"`` or ``"half_sum"`` (half the sum, whose gradient is just
the difference). Prediction and target must have the same shape (a target of
shape ``(2, 1)`` against a prediction of ``(1, 1)`` is a mistake, not a
broadcast), unless ``broadcast: true`` asks for numpy broadcasting. Known shapes
are checked when the graph loads (ShapeError), free dimensions at run time.

``softmax_cross_entropy(logits, labels)`` is ``-sum(labels * log_softmax(logits))``
over the last axis (the classes), reduced over the examples by ``"sum"`` or
``"mean"``. Labels are either integer class indices (int32/int64, shape of
``logits`` without its last axis), or one-hot rows / probabilities (float,
shape and dtype of ``logits``). Labels get no gradient. An integer label
outside ``[0, C)``, or labels whose shape does not match, is an error at run
time (never wrapped around, never broadcast).

Both declare, as data (:class:`graphengine.ops.LossInfo`), which input is the
prediction and which the target, and how they reduce over the examples.

VJPs (``n`` = number of elements, or examples, averaged over by ``"mean"``)::

    squared_error          prediction_bar = g * 2 (prediction - target) [/ n]   (half_sum: without the 2)
                           target_bar = -prediction_bar
    softmax_cross_entropy  logits_bar = g * (softmax(logits) * sum(labels) - labels) [/ n]
                           (= g * (softmax(logits) - one_hot(labels)) for index labels)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from graphengine.errors import ShapeError
from graphengine.ops import LossInfo, Sample, TensorSpec, common_dtype, defop, elementwise_rule, format_shape

from .softmax import log_softmax_values

__all__ = ["OPS", "SquaredErrorAttrs", "CrossEntropyAttrs"]

Array = np.ndarray

INDEX_DTYPES = (np.dtype("int32"), np.dtype("int64"))

# The ufuncs' reductions called directly: np.sum / ndarray.min's Python wrappers cost more than a batch's reduction.
_add_reduce, _min_reduce, _max_reduce = np.add.reduce, np.minimum.reduce, np.maximum.reduce


# --- squared_error -----------------------------------------------------------------------


class SquaredErrorAttrs(BaseModel):
    """Attributes of squared_error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reduction: Literal["sum", "mean", "half_sum"] = Field(
        "mean",
        description=(
            'How the squared differences become one number: "sum", "mean" (over all elements), '
            'or "half_sum" (0.5 * sum, whose gradient is simply prediction - target).'
        ),
    )
    broadcast: StrictBool = Field(
        False,
        description=(
            "If true, prediction and target broadcast against each other (numpy rules) and the mean is over the "
            "broadcast shape. By default their shapes must be equal."
        ),
    )


def _check_same_shape(prediction: Array, target: Array, attrs: SquaredErrorAttrs) -> None:
    """Raise ValueError when the shapes differ and ``broadcast`` is off (the shape rule could not tell)."""
    if not attrs.broadcast and prediction.shape != target.shape:
        raise ValueError(
            f"squared_error: prediction of shape {format_shape(prediction.shape)} and target of shape "
            f"{format_shape(target.shape)} differ; set attrs broadcast: true to broadcast them"
        )


def squared_error_rule(prediction: TensorSpec, target: TensorSpec, *, attrs: SquaredErrorAttrs) -> TensorSpec:
    """A scalar; equal shapes (free dimensions are checked at run time) unless ``broadcast``."""
    if not attrs.broadcast and (
        prediction.ndim != target.ndim
        or any(p is not None and t is not None and p != t for p, t in zip(prediction.shape, target.shape))
    ):
        raise ShapeError(
            f"squared_error: prediction {format_shape(prediction.shape)} and target {format_shape(target.shape)} "
            "have different shapes; set attrs broadcast: true to broadcast them"
        )
    try:
        spec = elementwise_rule(prediction, target)
    except ShapeError as exc:
        raise ShapeError(f"squared_error: prediction and target: {exc.detail}") from None
    return TensorSpec((), spec.dtype)


def _scaled(diff: Array, g: Array, attrs: SquaredErrorAttrs) -> Array:
    """``diff`` (an array of our own, in the broadcast shape) times d loss / d diff per unit of ``g``, in place."""
    if attrs.reduction == "half_sum":
        diff *= g  # a 0-d diff is a numpy scalar: *= then makes a new one, which is as good
    elif attrs.reduction == "mean":
        diff *= 2 * g / diff.size
    else:
        diff *= 2 * g
    return diff


def squared_error_vjp_prediction(g: Array, prediction: Array, target: Array, attrs: SquaredErrorAttrs) -> Array:
    """prediction_bar = g * 2 (prediction - target) [/ n], in the broadcast shape."""
    return _scaled(prediction - target, g, attrs)


def squared_error_vjp_target(g: Array, prediction: Array, target: Array, attrs: SquaredErrorAttrs) -> Array:
    """target_bar = -prediction_bar: ``target - prediction`` is exactly ``-(prediction - target)``."""
    return _scaled(target - prediction, g, attrs)


def squared_error_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((4, 3)), n((4, 3))], {}),
        ([n((4, 3)), n((4, 3))], {"reduction": "sum"}),
        ([n((4, 3)), n((4, 3))], {"reduction": "half_sum"}),
        ([n((5, 4, 3)), n((3,))], {"reduction": "mean", "broadcast": True}),  # broadcast target
        ([n((2, 1)), n(())], {"reduction": "half_sum", "broadcast": True}),  # scalar target
        ([n((2, 1)), n((1, 3))], {"reduction": "sum", "broadcast": True}),  # both broadcast
    ]


@defop(
    squared_error_vjp_prediction,
    squared_error_vjp_target,
    shape_rule=squared_error_rule, attrs=SquaredErrorAttrs, samples=squared_error_samples,
    loss=LossInfo("prediction", "target", reduction_attr="reduction", reductions={"half_sum": "sum"}),
    doc="(prediction - target)**2 reduced to a scalar by sum, mean or half_sum; shapes must match unless broadcast",
)  # fmt: skip
def squared_error(prediction: Array, target: Array, *, attrs: SquaredErrorAttrs) -> Array:
    if prediction.shape != target.shape:
        _check_same_shape(prediction, target, attrs)
    diff = prediction - target
    diff *= diff  # ours: square it in place
    total = np.add.reduce(diff, None)  # not np.sum, whose Python wrapper costs more than a small sum
    if attrs.reduction == "mean":
        return np.asarray(total / diff.size)
    if attrs.reduction == "half_sum":
        return np.asarray(0.5 * total)
    return np.asarray(total)


# --- softmax_cross_entropy ---------------------------------------------------------------


class CrossEntropyAttrs(BaseModel):
    """Attributes of softmax_cross_entropy (the classes are always the last axis of logits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reduction: Literal["sum", "mean", "none"] = Field(
        "mean",
        description=(
            'How the per-example losses become the output: "sum", "mean" over the examples (weighted: divided by the '
            'sum of the examples\' weights, as ONNX and PyTorch do), or "none" (one loss per example).'
        ),
    )
    class_weights: list[float] | None = Field(
        None, description="With class-index labels: a weight per class; each example's loss is scaled by its class's."
    )
    ignore_index: StrictInt | None = Field(
        None, description="With class-index labels: examples with this label count for nothing (weight 0)."
    )


def _weights(labels: Array, attrs: CrossEntropyAttrs, dtype: np.dtype) -> Array | None:
    """Each example's weight (class weight, 0 where ignored), or None when every example weighs 1."""
    if not _is_index(labels) or (attrs.class_weights is None and attrs.ignore_index is None):
        return None
    keep = labels != attrs.ignore_index if attrs.ignore_index is not None else np.ones(labels.shape, bool)
    safe = np.where(keep, labels, 0)
    per_class = np.asarray(attrs.class_weights, dtype=dtype) if attrs.class_weights is not None else None
    weight = per_class[safe] if per_class is not None else np.ones(labels.shape, dtype)
    return np.asarray(np.where(keep, weight, 0), dtype=dtype)


def _reduce(per_example: Array, weight: Array | None, attrs: CrossEntropyAttrs) -> Array:
    weighted = per_example if weight is None else per_example * weight
    if attrs.reduction == "none":
        return np.asarray(weighted)
    total = _add_reduce(weighted, None)  # np.sum's own reduction, without its Python wrapper (called per step)
    if attrs.reduction == "sum":
        return np.asarray(total)
    count = per_example.size if weight is None else _add_reduce(weight, None)
    return np.asarray(total / count)


def _is_index(labels: Array) -> bool:
    return labels.dtype.kind in "iu"


@lru_cache(maxsize=64)
def _rows(n: int) -> Array:
    """``arange(n)``, made once per batch size and shared (read-only): the row index of ``(examples, classes)``."""
    rows = np.arange(n)
    rows.flags.writeable = False
    return rows


def _plain(labels: Array, attrs: CrossEntropyAttrs, ndim: int) -> bool:
    """The common case: class-index labels of ``(examples, classes)`` logits, every example weighing 1.

    The forward and the VJP take it without the general path's helpers (called per step).
    """
    return labels.dtype.kind in "iu" and ndim == 2 and attrs.class_weights is None and attrs.ignore_index is None


def _check_labels(logits: Array, labels: Array, ignore_index: int | None = None) -> None:
    """Raise ValueError for labels of the wrong shape, or class indices outside [0, C) (ignore_index aside)."""
    if labels.dtype.kind in "iu":
        if labels.shape != logits.shape[:-1]:
            raise ValueError(
                f"softmax_cross_entropy: class-index labels of shape {format_shape(labels.shape)} do not match "
                f"logits of shape {format_shape(logits.shape)} (expected {format_shape(logits.shape[:-1])})"
            )
        classes = logits.shape[-1]
        if labels.size == 0 or (_min_reduce(labels, None) >= 0 and _max_reduce(labels, None) < classes):
            return  # every label is a class (the common case, checked in two reductions without ndarray.min's wrapper)
        bad = np.flatnonzero(((labels < 0) | (labels >= classes)) & (labels != ignore_index))
        if bad.size:
            where = tuple(int(i) for i in np.unravel_index(bad[0], labels.shape))
            value = labels[where]
            raise ValueError(
                f"softmax_cross_entropy: label {value} at index {where} is out of range [0, {classes}) "
                f"({bad.size} label(s) out of range)"
            )
    elif labels.shape != logits.shape:
        raise ValueError(
            f"softmax_cross_entropy: probability labels of shape {format_shape(labels.shape)} do not match "
            f"logits of shape {format_shape(logits.shape)}"
        )


def softmax_cross_entropy_rule(logits: TensorSpec, labels: TensorSpec, *, attrs: CrossEntropyAttrs) -> TensorSpec:
    shown = (
        f"logits {logits.dtype.name}{format_shape(logits.shape)} "
        f"and labels {labels.dtype.name}{format_shape(labels.shape)}"
    )
    if logits.ndim == 0:
        raise ShapeError(f"softmax_cross_entropy: logits need a class axis (the last), got {shown}")
    dtype = common_dtype(logits)
    if labels.dtype in INDEX_DTYPES:
        expected = logits.shape[:-1]
    elif labels.dtype.kind == "f":
        if labels.dtype != dtype:
            raise ShapeError(f"softmax_cross_entropy: probability labels must have the logits' dtype: {shown}")
        expected = logits.shape
    else:
        raise ShapeError(
            f"softmax_cross_entropy: labels must be int32/int64 class indices or float probabilities: {shown}"
        )
    if labels.ndim != len(expected) or any(
        a is not None and b is not None and a != b for a, b in zip(labels.shape, expected)
    ):
        raise ShapeError(
            f"softmax_cross_entropy: labels must have shape {format_shape(expected)} to match the logits: {shown}"
        )
    if attrs.class_weights is not None and logits.shape[-1] not in (None, len(attrs.class_weights)):
        raise ShapeError(f"softmax_cross_entropy: {len(attrs.class_weights)} class weights for {shown}")
    if (attrs.class_weights is not None or attrs.ignore_index is not None) and labels.dtype not in INDEX_DTYPES:
        raise ShapeError(f"softmax_cross_entropy: class_weights and ignore_index need class-index labels: {shown}")
    return TensorSpec(logits.shape[:-1] if attrs.reduction == "none" else (), dtype)


def softmax_cross_entropy_vjp_logits(
    g: Array, logits: Array, labels: Array, attrs: CrossEntropyAttrs, saved: Array | None = None
) -> Array:
    """logits_bar = g * w * (softmax(logits) * sum(labels) - labels); / n (or / sum(w)) for mean; per example for none.

    ``saved`` is the forward's log-softmax of these logits (labels checked), when the engine kept it.
    """
    if saved is None:
        _check_labels(logits, labels, attrs.ignore_index)
        saved = log_softmax_values(logits, -1)
    grad = np.exp(saved)  # a new array: saved is only read
    if _plain(labels, attrs, grad.ndim):  # the general path's arithmetic, without its branches and helpers
        n = grad.shape[0]
        grad[_rows(n), labels] -= 1
        if attrs.reduction == "none":
            return grad * g[..., None]
        grad *= g / n if attrs.reduction == "mean" else g
        return grad
    weight = _weights(labels, attrs, logits.dtype)
    if _is_index(labels):
        index = (
            np.where(labels == attrs.ignore_index, 0, labels)[..., None]
            if attrs.ignore_index is not None
            else labels[..., None]
        )
        if grad.ndim == 2:  # (examples, classes): plain indexing, cheaper than the *_along_axis helpers
            grad[np.arange(grad.shape[0]), index[:, 0]] -= 1
        else:
            np.put_along_axis(grad, index, np.take_along_axis(grad, index, axis=-1) - 1, axis=-1)
    else:
        grad = grad * np.sum(labels, axis=-1, keepdims=True) - labels
    if weight is not None:
        grad = grad * weight[..., None]
    if attrs.reduction == "none":
        return grad * g[..., None]
    if attrs.reduction == "mean":
        count = grad.size // grad.shape[-1] if weight is None else _add_reduce(weight, None)
        grad *= g / count  # grad is ours: scaled in place (the same products as grad * (g / count))
        return grad
    grad *= g
    return grad


def softmax_cross_entropy_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        ([n((4, 3)), rng.integers(0, 3, size=4)], {}),
        ([n((4, 3)), rng.integers(0, 3, size=4).astype(np.int32)], {"reduction": "sum"}),
        ([n((2, 3, 5)), rng.integers(0, 5, size=(2, 3))], {}),  # batch of sequences
        ([n((3,)), np.array(2)], {}),  # one example
        ([n((4, 3)), rng.dirichlet(np.ones(3), size=4)], {}),  # probabilities
        ([n((4, 3)), np.eye(3)[[0, 2, 1, 1]]], {"reduction": "sum"}),  # one-hot rows
        ([n((5, 3)), np.array([0, 2, 1, 2, 0])], {"class_weights": [0.5, 2.0, 1.5]}),  # weighted mean
        ([n((5, 3)), np.array([0, -100, 1, 2, -100])], {"ignore_index": -100, "reduction": "sum"}),
        (
            [n((4, 3)), np.array([1, 0, 2, 1])],
            {"reduction": "none", "class_weights": [1.0, 2.0, 3.0], "ignore_index": 2},
        ),
    ]


def softmax_cross_entropy_saving(logits: Array, labels: Array, *, attrs: CrossEntropyAttrs) -> tuple[Array, Array]:
    """The loss, and the log-softmax its VJP reuses (the engine's generated code keeps it between the passes)."""
    _check_labels(logits, labels, attrs.ignore_index)
    logp = log_softmax_values(logits, -1)
    return _loss_of(logp, labels, attrs), logp


@defop(softmax_cross_entropy_vjp_logits, None, shape_rule=softmax_cross_entropy_rule, attrs=CrossEntropyAttrs,
       samples=softmax_cross_entropy_samples, loss=LossInfo("logits", "labels", class_labels=True, reduction_attr="reduction"),
       saving=softmax_cross_entropy_saving,
       doc="cross-entropy of softmax(logits) with class-index or probability labels, reduced to a scalar")  # fmt: skip
def softmax_cross_entropy(logits: Array, labels: Array, *, attrs: CrossEntropyAttrs) -> Array:
    _check_labels(logits, labels, attrs.ignore_index)
    return _loss_of(log_softmax_values(logits, -1), labels, attrs)


def _loss_of(logp: Array, labels: Array, attrs: CrossEntropyAttrs) -> Array:
    """The reduced loss from the log-softmax (labels already checked)."""
    if _plain(labels, attrs, logp.ndim) and attrs.reduction != "none" and labels.size:
        # -sum(picked) is sum(-picked) bit for bit (rounding is symmetric): one negation of a number, not of an array.
        total = -_add_reduce(logp[_rows(logp.shape[0]), labels], None)
        return np.asarray(total / labels.size if attrs.reduction == "mean" else total)
    if _is_index(labels):
        safe = np.where(labels == attrs.ignore_index, 0, labels) if attrs.ignore_index is not None else labels
        if logp.ndim == 2:  # (examples, classes): plain indexing, cheaper than take_along_axis
            per_example = -logp[np.arange(logp.shape[0]), safe]
        else:
            per_example = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    else:
        per_example = -np.sum(labels * logp, axis=-1)
    return _reduce(per_example, _weights(labels, attrs, logp.dtype), attrs)


OPS = [squared_error, softmax_cross_entropy]
