"""The op plugin API: an op is data.

An op is an :class:`OpDef`: a name, a forward function, one VJP per input (or
``None`` for "not differentiable"), a shape/dtype rule, and a pydantic model of
its attributes. The engine learns everything about an op from this record; the
built-in ops in ``graphengine_std`` use nothing else.

Signatures (``attrs`` is always the validated attribute model, keyword-only):

``forward(*inputs, attrs) -> ndarray``
    Compute the output from numpy arrays.

``vjp(g, out, *inputs, attrs) -> ndarray``
    Given the cotangent ``g`` of the output (same shape as ``out``), return the
    cotangent of *one* input. It may return it in the broadcast shape (the
    shape of ``out``); the engine reduces it to the input's shape in one place,
    :func:`unbroadcast`. It must keep the input's dtype. Inputs that the op
    declared it does not need (see ``vjp_needs``) may be passed as ``None``.
    For a ``variadic`` op the single VJP also receives ``argnum=i``.

``shape_rule(*specs, attrs) -> TensorSpec``
    Given :class:`TensorSpec` of the inputs (a dimension may be ``None``: free,
    e.g. the batch), return the output's spec or raise :class:`ShapeError` with
    a message that names the shapes involved.

Examples
--------
>>> import numpy as np
>>> from graphengine.ops import OpDef, elementwise_rule
>>> def square(x, *, attrs):
...     return x * x
>>> def square_vjp(g, out, x, *, attrs):
...     return 2 * x * g
>>> SQUARE = OpDef("square", square, (square_vjp,), elementwise_rule, inputs=("x",))
>>> SQUARE.arity
(1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from .errors import ShapeError

__all__ = [
    "Shape",
    "TensorSpec",
    "NoAttrs",
    "OpDef",
    "Sample",
    "broadcast_shapes",
    "common_dtype",
    "elementwise_rule",
    "unbroadcast",
    "FLOAT_DTYPES",
]

#: A shape whose dimensions may be ``None`` (free until run time).
Shape = tuple["int | None", ...]

FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))


@dataclass(frozen=True)
class TensorSpec:
    """The static type of a value: shape (``None`` = free dimension) and dtype."""

    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype.name}[{dims}]"


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

    def __post_init__(self) -> None:
        if len(self.vjps) != len(self.inputs):
            raise ValueError(
                f"op {self.name!r}: {len(self.vjps)} VJPs for {len(self.inputs)} inputs {self.inputs}"
            )
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


# --- shape helpers shared by shape rules -------------------------------------------------


def broadcast_shapes(*shapes: Sequence[int | None]) -> tuple[int | None, ...]:
    """Numpy broadcasting for shapes whose dimensions may be ``None``.

    Raises
    ------
    ShapeError
        When two known dimensions differ and neither is 1; names all shapes.

    Examples
    --------
    >>> broadcast_shapes((None, 3), (3,))
    (None, 3)
    >>> broadcast_shapes((2, 1), (1, 4))
    (2, 4)
    """
    ndim = max((len(s) for s in shapes), default=0)
    result: list[int | None] = []
    for axis in range(-ndim, 0):
        dims = [s[axis] for s in shapes if len(s) >= -axis]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            shown = " and ".join(_fmt_shape(s) for s in shapes)
            raise ShapeError(f"shapes {shown} do not broadcast (axis {axis})")
        if known:
            result.append(known.pop())
        elif any(d is None for d in dims):
            result.append(None)
        else:
            result.append(1)
    return tuple(result)


def common_dtype(*specs: TensorSpec, float_only: bool = True) -> np.dtype:
    """The one dtype shared by ``specs``; graphengine never promotes silently.

    Raises
    ------
    ShapeError
        When the dtypes differ, or (``float_only``) one is not float32/float64.
    """
    dtypes = [s.dtype for s in specs]
    if float_only:
        for s in specs:
            if s.dtype not in FLOAT_DTYPES:
                raise ShapeError(f"expected float32 or float64, got {s.dtype.name} (shape {_fmt_shape(s.shape)})")
    if len(set(dtypes)) > 1:
        shown = " and ".join(f"{s.dtype.name}{_fmt_shape(s.shape)}" for s in specs)
        raise ShapeError(f"dtypes differ: {shown}; cast one explicitly (graphengine does not promote)")
    return dtypes[0]


def elementwise_rule(*specs: TensorSpec, attrs: Any = None) -> TensorSpec:
    """Shape rule of elementwise ops: broadcast shapes, one float dtype."""
    return TensorSpec(broadcast_shapes(*(s.shape for s in specs)), common_dtype(*specs))


def _fmt_shape(shape: Iterable[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(tuple(shape)) == 1 else "") + ")"


def format_shape(shape: Iterable[int | None]) -> str:
    """``(None, 3)`` as ``(?, 3)``, for messages."""
    return _fmt_shape(tuple(shape))


# --- the one place where broadcasting is undone -------------------------------------------


def unbroadcast(cotangent: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``cotangent`` over the axes that broadcasting added or stretched.

    Every VJP may return its cotangent in the broadcast (output) shape; the
    engine calls this once per contribution so no op has to.

    Raises
    ------
    ValueError
        When ``cotangent`` could not have come from broadcasting ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> unbroadcast(np.ones((4, 3)), (3,))
    array([4., 4., 4.])
    >>> unbroadcast(np.ones((4, 3)), (4, 1)).shape
    (4, 1)
    """
    if cotangent.shape == shape:
        return cotangent
    lead = cotangent.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"cotangent shape {cotangent.shape} has fewer dimensions than input shape {shape}")
    axes = list(range(lead))
    stretched = False
    for i, n in enumerate(shape):
        m = cotangent.shape[lead + i]
        if n == 1 and m != 1:
            axes.append(lead + i)
            stretched = True
        elif n != m:
            raise ValueError(f"cotangent shape {cotangent.shape} does not broadcast from input shape {shape}")
    # np.add.reduce directly: ndarray.sum's Python wrappers cost more than the sum of a small array.
    reduced = np.add.reduce(cotangent, axis=tuple(axes))
    return np.reshape(reduced, shape) if stretched else np.asarray(reduced)  # a full reduction gives a scalar
