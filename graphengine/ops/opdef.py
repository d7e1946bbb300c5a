"""The long form of an op declaration: :class:`OpDef`, a record of plain data and functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..errors import PluginError, counted
from .expr import Expr
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
    forward_saving : callable or None
        ``forward_saving(*inputs, attrs) -> (out, saved)``: the forward that also
        returns an intermediate its VJPs may reuse (a loss's softmax). When it is
        given, every VJP takes a keyword ``saved``: what this returned beside ``out``
        on the same call, or None where the engine ran ``forward`` (the VJP then
        computes it again, to the same bits). The generated code runs it for the
        nodes it differentiates; everything else runs ``forward``.
    identity_vjps : frozenset of int
        Indices into ``vjps`` of the VJPs that return ``g`` itself, unchanged
        (``lambda g: g``, as ``add``'s): a promise, as data, that lets the generated
        code write ``x_bar = g`` (or the shared unbroadcast) with no call. The VJP
        must still be given and must keep the promise: the step interpreter calls
        it, and the generated code must give the interpreter's bits.
    forward_expr : Expr or None
        The forward as an expression of the inputs (see :mod:`graphengine.ops.expr`):
        the generated code writes its ufunc calls out instead of calling ``forward``.
        A promise: it computes the same bits as ``forward``, which the other runners call.
    vjp_exprs : tuple of (Expr or None)
        Empty, or one per VJP: that VJP as an expression of ``g``, ``out`` and the
        inputs it needs (``vjp_needs``), or None where the generated code calls it.
        The same promise. ``defop(..., inline=True)`` traces both from the rules.
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
    forward_saving: ForwardFn | None = field(default=None, compare=False)
    identity_vjps: frozenset[int] = frozenset()
    forward_expr: Expr | None = field(default=None, compare=False)
    vjp_exprs: tuple[Expr | None, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.vjps, list):
            object.__setattr__(self, "vjps", tuple(self.vjps))
        if isinstance(self.inputs, list):
            object.__setattr__(self, "inputs", tuple(self.inputs))
        if isinstance(self.vjp_exprs, list):
            object.__setattr__(self, "vjp_exprs", tuple(self.vjp_exprs))
        problem = self._problem()
        if problem:
            raise declaration_error(self.name, self.forward, problem)

    def _problem(self) -> str | None:
        """What is wrong with this declaration, or None."""
        if not isinstance(self.name, str) or not self.name:
            return f"the name must be a non-empty string, got {self.name!r}"
        if not callable(self.forward):
            return f"forward must be callable, got {type(self.forward).__name__}"
        if not callable(self.shape_rule):
            return f"shape_rule must be callable, got {type(self.shape_rule).__name__}"
        if not (isinstance(self.attrs, type) and issubclass(self.attrs, BaseModel)):
            return f"attrs must be a pydantic model class (a subclass of BaseModel), got {self.attrs!r}"
        if (
            not isinstance(self.inputs, tuple)
            or not self.inputs
            or not all(isinstance(n, str) and n for n in self.inputs)
        ):
            return f"inputs must be a non-empty tuple of names, got {self.inputs!r}"
        repeated = sorted({n for n in self.inputs if self.inputs.count(n) > 1})
        if repeated:
            return f"input names repeat: {', '.join(map(repr, repeated))} in {self.inputs}"
        if "out" in self.inputs:
            return "no input may be named 'out' (vjp_needs uses it for the output)"
        if not isinstance(self.vjps, tuple) or len(self.vjps) != len(self.inputs):
            count = len(self.vjps) if isinstance(self.vjps, tuple) else type(self.vjps).__name__
            return f"{counted(count, 'VJP')} for {counted(len(self.inputs), 'input')} {self.inputs}; give one per input (None: no gradient)"
        for i, vjp in enumerate(self.vjps):
            if vjp is not None and not callable(vjp):
                return f"the VJP of input {self.inputs[i]!r} must be callable or None, got {type(vjp).__name__}"
        if self.vjp_needs is not None:
            unknown = set(self.vjp_needs) - set(self.inputs) - {"out"}
            if unknown:
                return f"vjp_needs names unknown values {sorted(unknown)}; it may name {[*self.inputs, 'out']}"
        if not isinstance(self.identity_vjps, frozenset) or not all(
            isinstance(i, int) and 0 <= i < len(self.vjps) and self.vjps[i] is not None for i in self.identity_vjps
        ):
            return f"identity_vjps must be a frozenset of indices of given VJPs (0 to {len(self.vjps) - 1}), got {self.identity_vjps!r}"
        if self.forward_saving is not None and not callable(self.forward_saving):
            return f"forward_saving must be callable or None, got {type(self.forward_saving).__name__}"
        if self.samples is not None and not callable(self.samples):
            return f"samples must be callable (rng -> list of samples) or None, got {type(self.samples).__name__}"
        if self.forward_expr is not None or self.vjp_exprs:
            problem = self._expr_problem()
            if problem:
                return problem
        if self.loss is not None:
            return self._loss_problem(self.loss)
        return None

    def _expr_problem(self) -> str | None:
        """What is wrong with ``forward_expr`` and ``vjp_exprs``: each may name only what its rule may read."""
        if self.variadic:
            return "a variadic op cannot give expressions (forward_expr, vjp_exprs): its inputs arrive as a tuple"
        if self.forward_expr is not None:
            if not isinstance(self.forward_expr, Expr):
                return f"forward_expr must be an expression (graphengine.ops.expr) or None, got {type(self.forward_expr).__name__}"
            if self.forward_saving is not None:
                return "forward_expr and forward_saving exclude each other: the generated code runs forward_saving"
            unknown = sorted(self.forward_expr.leaves() - set(self.inputs))
            if unknown:
                return f"forward_expr reads {unknown}; the forward may read only the inputs {list(self.inputs)}"
        if not self.vjp_exprs:
            return None
        if not isinstance(self.vjp_exprs, tuple) or len(self.vjp_exprs) != len(self.vjps):
            count = len(self.vjp_exprs) if isinstance(self.vjp_exprs, tuple) else type(self.vjp_exprs).__name__
            return f"vjp_exprs has {count} entries for {counted(len(self.vjps), 'VJP')}; give one per VJP (None: called)"
        readable = {"g", "out", *self.inputs} if self.vjp_needs is None else {"g", *self.vjp_needs}
        for i, expr in enumerate(self.vjp_exprs):
            if expr is None:
                continue
            what = f"the VJP expression of input {self.inputs[i]!r}"
            if not isinstance(expr, Expr):
                return f"{what} must be an expression (graphengine.ops.expr) or None, got {type(expr).__name__}"
            if self.vjps[i] is None or i in self.identity_vjps:
                return f"{what} is given, but that input's VJP is {'None' if self.vjps[i] is None else 'identity_vjp'}"
            unknown = sorted(expr.leaves() - readable)
            if unknown:
                return f"{what} reads {unknown}; it may read {sorted(readable)} (g and vjp_needs)"
        return None

    def _loss_problem(self, loss: LossInfo) -> str | None:
        if not isinstance(loss, LossInfo):
            return f"loss must be a LossInfo, got {type(loss).__name__}"
        for role in ("prediction", "target"):
            value = getattr(loss, role)
            if value not in self.inputs:
                return f"loss.{role} {value!r} is not one of the inputs {self.inputs}"
        if loss.prediction == loss.target:
            return f"loss.prediction and loss.target are both {loss.target!r}"
        reductions = {"mean", "sum", "none"}
        bad = sorted({loss.reduction, *loss.reductions.values()} - reductions)
        if bad:
            return f"loss reduction {bad[0]!r} is not one of {sorted(reductions)}"
        if loss.reduction_attr is not None and loss.reduction_attr not in self.attrs.model_fields:
            return f"loss.reduction_attr {loss.reduction_attr!r} is not an attribute of {self.attrs.__name__}"
        return None

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

    def vjp_is_identity(self, position: int) -> bool:
        """Whether the VJP of the input at ``position`` is declared to return ``g`` itself (``identity_vjps``)."""
        return min(position, len(self.vjps) - 1) in self.identity_vjps

    def vjp_expr(self, position: int) -> Expr | None:
        """The expression of the VJP of the input at ``position`` (``vjp_exprs``), or None."""
        return self.vjp_exprs[position] if self.vjp_exprs and not self.variadic else None

    def needs_output(self) -> bool:
        """Whether any VJP reads the forward output."""
        return self.vjp_needs is None or "out" in self.vjp_needs

    def needs_input(self, position: int) -> bool:
        """Whether any VJP reads the input at ``position``."""
        name = self.inputs[min(position, len(self.inputs) - 1)]
        return self.vjp_needs is None or name in self.vjp_needs


def plugin_of(fn: Any) -> str:
    """The module that declares ``fn`` (a plugin's forward function), for messages."""
    module = getattr(fn, "__module__", None) if callable(fn) else None
    return module if isinstance(module, str) and module else "an unknown module"


def declaration_error(name: Any, forward: Any, detail: str) -> PluginError:
    """A :class:`PluginError` about one op declaration, naming the op and its plugin.

    Examples
    --------
    >>> def mul(a, b):
    ...     return a * b
    >>> print(declaration_error("mul", mul, "2 VJPs for 1 input"))
    op 'mul' (declared in graphengine.ops.opdef): 2 VJPs for 1 input
    """
    shown = repr(name) if isinstance(name, str) and name else "without a name"
    return PluginError(f"op {shown} (declared in {plugin_of(forward)}): {detail}")
