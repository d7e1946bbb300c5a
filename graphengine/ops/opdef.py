"""The long form of an op declaration: :class:`OpDef`, a record of plain data and functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from .spec import TensorSpec


class NoAttrs(BaseModel):
    """Attribute model of an op that takes no attributes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# The three signatures, documented in the module docstring. They are plain
# callables: a VJP's positional inputs vary by op, which a Protocol cannot say.
ForwardFn = Callable[..., np.ndarray]  # forward(*inputs, attrs) -> out


VjpFn = Callable[..., np.ndarray]  # vjp(g, out, *inputs, attrs[, argnum]) -> cotangent


ShapeRule = Callable[..., "TensorSpec"]  # shape_rule(*specs, attrs) -> spec


#: One gradcheck case: input arrays and attribute dict.
Sample = tuple[Sequence[np.ndarray], dict[str, Any]]


@dataclass(frozen=True)
class LossInfo:
    """What training and data-parallel runs need to know of a loss op, declared as data.

    The engine has no list of op names: it learns from this record which input
    holds the prediction, which the target, whether the target holds class
    labels, and how the loss combines examples.

    Parameters
    ----------
    prediction : str
        Name of the input that holds the prediction (e.g. the logits).
    target : str
        Name of the input that holds the target.
    class_labels : bool
        The target holds class labels over the prediction's last axis: integer
        indices in ``[0, classes)`` (checked in training data), or one-hot rows.
        Such a loss supports the ``accuracy`` metric.
    reduction : {"mean", "sum", "none"}
        How the loss combines the examples (along the first axis), when no
        attribute says otherwise. A mean over shards must weight each shard by
        its size; a sum need not.
    reduction_attr : str or None
        Name of the attribute that chooses the reduction, if any. Its values map
        to a reduction through ``reductions`` (default: the value itself).
    reductions : mapping of str to str
        Attribute value -> reduction, e.g. ``{"half_sum": "sum"}``.
    batch_axis : int
        Axis of the prediction and target that indexes the examples (0).

    Examples
    --------
    >>> info = LossInfo("prediction", "target", reduction_attr="reduction", reductions={"half_sum": "sum"})
    >>> info.reduction_of({"reduction": "half_sum"}), info.reduction_of({"reduction": "mean"})
    ('sum', 'mean')
    """

    prediction: str
    target: str
    class_labels: bool = False
    reduction: str = "mean"
    reduction_attr: str | None = None
    reductions: Mapping[str, str] = field(default_factory=dict)
    batch_axis: int = 0

    def reduction_of(self, attrs: Any) -> str:
        """The reduction of a node with these attributes (a model or a dict): "mean", "sum" or "none"."""
        if self.reduction_attr is None:
            return self.reduction
        value = (
            attrs.get(self.reduction_attr) if isinstance(attrs, Mapping) else getattr(attrs, self.reduction_attr, None)
        )
        if value is None:
            return self.reduction
        return self.reductions.get(value, value)


@dataclass(frozen=True)
class OpDef:
    """Declaration of one op.

    Parameters
    ----------
    name : str
        The name graph files use in ``"op"``.
    forward : callable
        ``forward(*inputs, attrs) -> ndarray``.
    vjps : tuple of callable or None
        One VJP per input, aligned with ``inputs``; ``None`` marks an input
        that has no gradient (e.g. integer labels). A variadic op gives one.
    shape_rule : callable
        ``shape_rule(*specs, attrs) -> TensorSpec``; raises :class:`ShapeError`.
    attrs : type of pydantic.BaseModel
        Model of the node's ``attrs``; use ``extra="forbid"``.
    inputs : tuple of str
        Input names, for messages and documentation.
    variadic : bool
        The last input may repeat (one or more times), e.g. ``concat``.
    vjp_needs : frozenset of str or None
        Which of the input names and ``"out"`` any VJP reads. The engine frees
        other forward values early and passes ``None`` for them. ``None`` means
        "all of them", which is always safe.
    samples : callable or None
        ``samples(rng) -> list[Sample]``: inputs on which ``check_op`` tests the
        VJPs, broadcasting cases included.
    doc : str
        One line shown by ``graphengine ops``.
    loss : LossInfo or None
        For a loss op: which inputs are the prediction and the target, and how
        it reduces over examples (training and data-parallel runs read it).
    """

    name: str
    forward: ForwardFn
    vjps: tuple[VjpFn | None, ...]
    shape_rule: ShapeRule
    attrs: type[BaseModel] = NoAttrs
    inputs: tuple[str, ...] = ("x",)
    variadic: bool = False
    vjp_needs: frozenset[str] | None = None
    samples: Callable[[np.random.Generator], list[Sample]] | None = field(default=None, compare=False)
    doc: str = ""
    loss: LossInfo | None = None

    def __post_init__(self) -> None:
        if len(self.vjps) != len(self.inputs):
            raise ValueError(f"op {self.name!r}: {len(self.vjps)} VJPs for {len(self.inputs)} inputs {self.inputs}")
        if self.vjp_needs is not None:
            unknown = set(self.vjp_needs) - set(self.inputs) - {"out"}
            if unknown:
                raise ValueError(f"op {self.name!r}: vjp_needs names unknown values {sorted(unknown)}")

    @property
    def arity(self) -> tuple[int, int | None]:
        """(minimum, maximum) number of inputs; maximum is None when variadic."""
        n = len(self.inputs)
        return (n, None) if self.variadic else (n, n)

    def input_name(self, position: int) -> str:
        """Name of the input at ``position`` (variadic inputs are numbered)."""
        if position < len(self.inputs) - 1 or not self.variadic:
            return self.inputs[position]
        return f"{self.inputs[-1]}[{position - len(self.inputs) + 1}]"

    def vjp_for(self, position: int) -> VjpFn | None:
        """The VJP of the input at ``position``."""
        return self.vjps[min(position, len(self.vjps) - 1)]

    def needs_output(self) -> bool:
        """Whether any VJP reads the forward output."""
        return self.vjp_needs is None or "out" in self.vjp_needs

    def needs_input(self, position: int) -> bool:
        """Whether any VJP reads the input at ``position``."""
        name = self.inputs[min(position, len(self.inputs) - 1)]
        return self.vjp_needs is None or name in self.vjp_needs
