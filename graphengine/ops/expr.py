"""Rules as data: a tiny tree of numpy ufunc calls, recorded by calling a rule on proxies.

An op declared ``inline`` (see :func:`graphengine.ops.defop`) gives its forward
and VJPs as *expressions*: leaves naming ``g``, ``out`` or an input, Python
number constants, and numpy ufuncs (or ``**``) applied to sub-expressions. The
code generator writes them out as plain ufunc calls, with no Python frame per
rule. :func:`trace` records one by calling the rule with :class:`Proxy`
arguments, which note every ufunc call (``__array_ufunc__``) and every Python
arithmetic operator; anything else the rule does to a value (read an
attribute, test it, index it, call ``np.where``, pass ``out=``) raises
:class:`TraceError` saying what it did.

Examples
--------
>>> import numpy as np
>>> e = trace(lambda g, out: g * (1 - out * out), ("g", "out"))
>>> e
multiply(g, subtract(1, multiply(out, out)))
>>> sorted(e.leaves())
['g', 'out']
>>> float(evaluate(e, {"g": np.array(2.0), "out": np.array(0.5)}))
1.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["Expr", "Leaf", "Const", "Apply", "Power", "TraceError", "trace", "evaluate"]


class TraceError(Exception):
    """A rule did something an expression cannot record; the message says what."""


class Expr:
    """A node of an expression: a :class:`Leaf`, a :class:`Const`, an :class:`Apply` or a :class:`Power`."""

    def children(self) -> tuple["Expr", ...]:
        """The node's operands, in order."""
        return ()

    def nodes(self) -> Iterator["Expr"]:
        """Every node once (a shared sub-expression once), operands before the nodes that use them."""
        seen: set[int] = set()
        stack: list[tuple["Expr", bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                yield node
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.children()))

    def leaves(self) -> set[str]:
        """The names of the values the expression reads."""
        return {node.name for node in self.nodes() if isinstance(node, Leaf)}


@dataclass(frozen=True, eq=False)
class Leaf(Expr):
    """A value the rule reads: ``g``, ``out`` or an input's name."""

    name: str

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Const(Expr):
    """A Python ``int`` or ``float`` the rule wrote (numpy treats it as a weak scalar, NEP 50)."""

    value: int | float

    def __repr__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, eq=False)
class Apply(Expr):
    """``ufunc(*args)``: a numpy ufunc with one output, called with positional arguments only."""

    ufunc: np.ufunc
    args: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def __repr__(self) -> str:
        return f"{self.ufunc.__name__}({', '.join(map(repr, self.args))})"


@dataclass(frozen=True, eq=False)
class Power(Expr):
    """``base ** exponent`` with Python's operator: numpy may take a fast path (``x ** 2`` is a square)."""

    base: Expr
    exponent: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.base, self.exponent)

    def __repr__(self) -> str:
        return f"({self.base!r} ** {self.exponent!r})"


_PY_NUMBERS = (int, float)


def _operand(value: Any, what: str) -> Expr:
    if isinstance(value, Proxy):
        return value._node
    if type(value) in _PY_NUMBERS:
        return Const(value)
    kind = type(value).__name__
    hint = ": write it as a Python number" if isinstance(value, (np.generic, bool)) else ""
    raise TraceError(f"passes a {kind} constant ({value!r}) to {what}{hint}; an expression takes only Python int and float constants")


def _apply(ufunc: np.ufunc, *operands: Any) -> "Proxy":
    return Proxy(Apply(ufunc, tuple(_operand(v, f"np.{ufunc.__name__}") for v in operands)))


def _binary(ufunc: np.ufunc, reflected: bool = False) -> Callable[..., Any]:
    if reflected:
        return lambda self, other: _apply(ufunc, other, self)
    return lambda self, other: _apply(ufunc, self, other)


def _power(self: "Proxy", other: Any) -> "Proxy":
    return Proxy(Power(self._node, _operand(other, "**")))


def _rpower(self: "Proxy", other: Any) -> "Proxy":
    return Proxy(Power(_operand(other, "**"), self._node))


def _refuse(what: str) -> Callable[..., Any]:
    def refused(self: "Proxy", *args: Any, **kwargs: Any) -> Any:
        raise TraceError(f"{what}: an expression records only numpy ufunc calls and arithmetic")

    return refused


class Proxy:
    """What a traced rule gets for each value it reads: it records ufuncs and arithmetic into a tree."""

    __slots__ = ("_node",)
    __array_priority__ = 1000  # numpy defers binary operators to us, so that ``array * proxy`` reaches a ufunc

    def __init__(self, node: Expr) -> None:
        self._node = node

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> "Proxy":
        name = f"np.{ufunc.__name__}"
        if method != "__call__":
            raise TraceError(f"calls {name}.{method}; an expression records only plain ufunc calls")
        if kwargs:
            raise TraceError(f"passes {', '.join(f'{k}=' for k in sorted(kwargs))} to {name}; an expression takes no keyword arguments")
        if ufunc.nout != 1:
            raise TraceError(f"calls {name}, which has {ufunc.nout} outputs; an expression records ufuncs with one")
        return _apply(ufunc, *inputs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise TraceError(f"calls np.{getattr(func, '__name__', func)}, which is not a ufunc")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TraceError("turns a value into an array (np.asarray, np.array, ...)")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # numpy and Python probing for protocols: say "not here"
            raise AttributeError(name)
        raise TraceError(f"reads the attribute .{name} of a value")

    def __bool__(self) -> bool:
        raise TraceError("tests a value (if, and, or, not, bool(), a chained comparison)")

    def __repr__(self) -> str:
        return f"Proxy({self._node!r})"

    __add__, __radd__ = _binary(np.add), _binary(np.add, True)
    __sub__, __rsub__ = _binary(np.subtract), _binary(np.subtract, True)
    __mul__, __rmul__ = _binary(np.multiply), _binary(np.multiply, True)
    __truediv__, __rtruediv__ = _binary(np.true_divide), _binary(np.true_divide, True)
    __pow__, __rpow__ = _power, _rpower
    __lt__, __le__ = _binary(np.less), _binary(np.less_equal)
    __gt__, __ge__ = _binary(np.greater), _binary(np.greater_equal)
    __eq__, __ne__ = _binary(np.equal), _binary(np.not_equal)  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]

    def __neg__(self) -> "Proxy":
        return _apply(np.negative, self)

    def __pos__(self) -> "Proxy":
        return _apply(np.positive, self)

    def __abs__(self) -> "Proxy":
        return _apply(np.absolute, self)

    __getitem__ = _refuse("indexes a value")
    __setitem__ = _refuse("assigns into a value")
    __len__ = _refuse("takes the len() of a value")
    __iter__ = _refuse("iterates over a value")
    __float__ = _refuse("turns a value into a Python float")
    __int__ = _refuse("turns a value into a Python int")
    __index__ = _refuse("uses a value as an index")
    __matmul__ = __rmatmul__ = _refuse("uses @ (matmul is not elementwise)")
    __floordiv__ = __rfloordiv__ = _refuse("uses //")
    __mod__ = __rmod__ = _refuse("uses %")
    __iadd__ = __isub__ = __imul__ = __itruediv__ = _refuse("updates a value in place (+=, *=, ...)")
    __call__ = _refuse("calls a value")


def trace(fn: Callable[..., Any], names: Sequence[str], keywords: Sequence[str] = ()) -> Expr:
    """The expression ``fn`` computes: call it with a proxy per name and read back what it recorded.

    Parameters
    ----------
    fn : callable
        The rule: a forward or a VJP that uses only numpy ufuncs and arithmetic.
    names : sequence of str
        The values it takes by position, in order.
    keywords : sequence of str
        The values it takes by keyword.

    Raises
    ------
    TraceError
        The rule did something else (the message says what), raised something,
        returned something other than an expression, or returned an argument itself.

    Examples
    --------
    >>> trace(lambda x: np.maximum(x, 0), ["x"])
    maximum(x, 0)
    >>> trace(lambda x: np.where(x > 0, x, 0), ["x"])
    Traceback (most recent call last):
    ...
    graphengine.ops.expr.TraceError: calls np.where, which is not a ufunc
    """
    args = [Proxy(Leaf(n)) for n in names]
    kwargs = {n: Proxy(Leaf(n)) for n in keywords}
    try:
        with np.errstate(all="ignore"):
            result = fn(*args, **kwargs)
    except TraceError:
        raise
    except Exception as exc:
        raise TraceError(f"raised {type(exc).__name__} when traced: {exc}") from None
    if not isinstance(result, Proxy):
        raise TraceError(f"returns a {type(result).__name__}, not an expression of its arguments")
    if isinstance(result._node, Leaf):
        raise TraceError(f"returns its argument {result._node.name!r} itself; declare identity_vjp for x_bar = g")
    return result._node


def evaluate(expr: Expr, env: Mapping[str, Any]) -> Any:
    """Compute ``expr`` with numpy, each leaf read from ``env`` (for tests and for checking a declaration).

    Examples
    --------
    >>> evaluate(trace(lambda a, b: -a / b, ["a", "b"]), {"a": np.array([1.0]), "b": np.array([4.0])})
    array([-0.25])
    """
    done: dict[int, Any] = {}
    for node in expr.nodes():
        if isinstance(node, Leaf):
            value = env[node.name]
        elif isinstance(node, Const):
            value = node.value
        elif isinstance(node, Power):
            value = done[id(node.base)] ** done[id(node.exponent)]
        elif isinstance(node, Apply):
            value = node.ufunc(*(done[id(a)] for a in node.args))
        done[id(node)] = value
    return done[id(expr)]
