"""Inline expression ops written out by the code generator: plain ufunc calls, no frame, no needless check.

An op's ``forward_expr`` and ``vjp_exprs`` (see :mod:`graphengine.ops.expr`)
become one line per ufunc call. Each interior node goes into a fresh
temporary or, by position (``np.multiply(a, t, t)``), into a temporary the
same expression made with the node's shape and dtype. Float constants become
read-only 0-d arrays of their operand's dtype, hoisted to globals: under
numpy 2's NEP 50 a Python number meeting a float32/float64 array is converted
to that dtype first, so the bits are the same, and numpy skips converting it
on every call.

What the generator knows (a :class:`Facts`): a value is *certain* when it is,
on every call, an exact ndarray of its slot's static shape and dtype: a bound
value with at least one axis (verified on each call it is a new object,
:func:`bound_check`), a checked or seeded cotangent, or the result of an
expression whose leaves are all certain, with static shapes and at least one
axis (a 0-d ufunc result is a numpy scalar). Only a certain result of the
right shape and dtype goes without the result check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ExecutionError
from ..ops.expr import Apply, Const, Expr, Leaf, Power
from .schedule import Schedule

Shape = tuple[int, ...]
#: Per leaf: the local that holds it, its static shape (None: free), its dtype, whether it is certain.
LeafInfo = tuple[str, "Shape | None", np.dtype, bool]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_EXACT_INT = 2**53  # a Python int at most this large is exact in a double, so one rounding to float32 as numpy's


@dataclass
class Facts:
    """What the generated code's values are known to be (see the module docstring)."""

    certain: set[int] = field(default_factory=set)  # slots whose value is certain
    certain_g: set[int] = field(default_factory=set)  # slots whose cotangent is certain
    fresh: set[int] = field(default_factory=set)  # cotangents that are arrays of this program's own, named nowhere else
    constants: dict[tuple[Any, ...], str] = field(default_factory=dict)
    temps: int = 0
    #: emit_expr's lines by form (expression, and what is known of each leaf), with the locals left as fields
    written: dict[tuple[Any, ...], tuple[list[str], "Result"]] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """What the generator knows of an expression's result."""

    shape: Shape | None
    dtype: np.dtype | None
    certain: bool

    def fits(self, shape: Shape | None, dtype: np.dtype) -> bool:
        """Certain, and of exactly this static shape and dtype: no result check needed."""
        return self.certain and shape is not None and self.shape == tuple(shape) and self.dtype == dtype


def bound_to_verify(schedule: Schedule, shapes: Sequence[Shape | None], live: Sequence[int]) -> list[int]:
    """The bound slots an expression reads that can be certain: static shapes with at least one axis."""
    wanted = {b for b in schedule.bound if shapes[b] is not None and len(shapes[b]) >= 1}  # type: ignore[arg-type]
    read: set[int] = set()
    for step, _ in schedule.forward:  # a parameter is most often read early on: stop once all are found
        if step.op.forward_expr is not None and step.op.forward_saving is None:
            read.update(step.ins)
            if wanted <= read:
                return [b for b in schedule.bound if b in wanted]
    if schedule.grad_output >= 0:
        ops = {step.out: step.op for step, _ in schedule.forward}
        inline: dict[int, bool] = {}  # by op: whether any of its VJPs is an expression
        for j in live:
            back = schedule.backward[j]
            op = ops.get(back.out)
            if op is None:
                continue
            has = inline.get(id(op))
            if has is None:
                has = inline[id(op)] = any(op.vjp_expr(p) is not None for p in range(len(op.vjps)))
            if has and any(op.vjp_expr(p) is not None for p, _, _ in back.grads):
                read.update(back.ins)
                read.add(back.out)
    return [b for b in schedule.bound if b in wanted and b in read]


def bound_check(names: Sequence[str], shapes: Sequence[Shape | None], dtypes: Sequence[np.dtype]) -> tuple[list[Any], Callable[[Any, int], None]]:
    """``(known, check)``: ``check(value, slot)`` verifies a bound value and remembers it in ``known[slot]``.

    The generated code calls it only when a slot holds another object than on
    the last call (``if s3 is not _known[3]``): parameters and constants are read
    from the graph's dicts, which a caller may update, and the binder does not
    check them. A value that does not fit its declaration raises, naming it.
    """
    known: list[Any] = [None] * len(names)

    def check(value: Any, slot: int) -> None:
        shape, dtype = tuple(shapes[slot]), dtypes[slot]  # type: ignore[arg-type]
        if value.__class__ is not np.ndarray or value.shape != shape or value.dtype != dtype:
            got = (
                f"a {value.dtype} array of shape {value.shape}"
                if isinstance(value, np.ndarray)
                else f"a {type(value).__name__}"
            )
            raise ExecutionError(
                f"value {names[slot]!r}: the graph declares {dtype} of shape {shape}, but it holds {got}; "
                "a parameter or constant replaced in the graph must keep its declared shape and dtype"
            )
        known[slot] = value

    return known, check


def emit_expr(
    writer: Any, facts: Facts, expr: Expr, leaves: dict[str, LeafInfo], target: str, info: Any
) -> Result:
    """Write ``target = expr`` as ufunc lines; return what is known of the result.

    ``leaves`` maps each name the expression reads to its local and what is known of it.
    Every line carries ``info``: an exception there is explained as the rule raising.
    An op's expression meets the same facts at most of its nodes: the lines are worked out once per
    form, with the locals left as format fields (a tenth of the cost of working them out).
    """
    key = (id(expr), *[(name, known[1:]) for name, known in leaves.items()])
    form = facts.written.get(key)
    if form is None:
        fields = {name: (f"{{{k}}}", *known[1:]) for k, (name, known) in enumerate(leaves.items())}
        form = facts.written[key] = _expr_lines(writer, facts, expr, fields, "{t}")
    lines, result = form
    locals_ = [known[0] for known in leaves.values()]
    for line in lines:
        writer.emit(line.format(*locals_, t=target), info)
    return result


def _expr_lines(
    writer: Any, facts: Facts, expr: Expr, leaves: dict[str, LeafInfo], target: str
) -> tuple[list[str], Result]:
    """The lines of ``target = expr`` (see :func:`emit_expr`) and what is known of the result."""
    nodes = list(expr.nodes())
    uses: dict[int, int] = {}
    for node in nodes:
        for child in node.children():
            uses[id(child)] = uses.get(id(child), 0) + 1
    known: dict[int, Result] = {}
    into: dict[int, int] = {}  # interior node -> the interior child whose array it writes into
    for node in nodes:
        known[id(node)] = _result(node, leaves, known)
        if isinstance(node, Apply):
            mine = known[id(node)]
            for child in node.args:
                have = known[id(child)]
                if (
                    isinstance(child, Apply)  # a ufunc's result is a new array; ``x ** 1`` might not be
                    and uses[id(child)] == 1
                    and id(child) not in into.values()
                    and have.certain
                    and have == mine
                ):
                    into[id(node)] = id(child)
                    break
    group: dict[int, int] = {}  # interior node -> the node whose array holds it
    for node in nodes:
        if isinstance(node, (Apply, Power)):
            group[id(node)] = group[into[id(node)]] if id(node) in into else id(node)
    name_of = {group[id(expr)]: target}
    for node in nodes:
        g = group.get(id(node))
        if g is not None and g not in name_of:
            name_of[g] = f"t{len(name_of) - 1}"
    temps = sorted(set(name_of.values()) - {target})

    def ref(node: Expr) -> str:
        if isinstance(node, Leaf):
            return leaves[node.name][0]
        if isinstance(node, Const):
            return _constant(writer, facts, node.value, None)
        return name_of[group[id(node)]]

    lines = []
    for node in nodes:
        if isinstance(node, Power):
            lines.append(f"{name_of[group[id(node)]]} = {ref(node.base)} ** {ref(node.exponent)}")
        elif isinstance(node, Apply):
            ufunc = _ufunc_name(writer, node.ufunc)
            dtype = _operand_dtype(node, known)
            args = [
                _constant(writer, facts, a.value, dtype) if isinstance(a, Const) else ref(a) for a in node.args
            ]
            if id(node) in into:
                args.append(name_of[group[id(node)]])
            lines.append(f"{name_of[group[id(node)]]} = {ufunc}({', '.join(args)})")
    if temps:
        lines.append(f"del {', '.join(temps)}")
    return lines, known[id(expr)]


def _result(node: Expr, leaves: dict[str, LeafInfo], known: dict[int, Result]) -> Result:
    if isinstance(node, Leaf):
        _, static, its_dtype, sure = leaves[node.name]
        return Result(None if static is None else tuple(static), its_dtype, sure)
    if isinstance(node, Const):
        return Result((), None, True)
    children = [known[id(c)] for c in node.children()]
    shape: Shape | None = None
    shapes = [c.shape for c in children]
    if all(s is not None for s in shapes):
        try:
            shape = tuple(np.broadcast_shapes(*shapes))  # type: ignore[arg-type]
        except ValueError:
            shape = None
    dtype = _result_dtype(node, children)
    certain = all(c.certain for c in children) and shape is not None and len(shape) >= 1 and dtype is not None
    return Result(shape, dtype, certain)


def _result_dtype(node: Expr, children: list[Result]) -> np.dtype | None:
    """The result's dtype, as numpy computes it: the operation on one-element arrays of the operands' dtypes."""
    operands: list[Any] = []
    for child, have in zip(node.children(), children):
        if isinstance(child, Const):
            operands.append(child.value)  # a weak Python scalar, as in the rule
        elif have.dtype is None:
            return None
        else:
            operands.append(np.ones((1,), have.dtype))
    try:
        with np.errstate(all="ignore"):
            value = operands[0] ** operands[1] if isinstance(node, Power) else node.ufunc(*operands)  # type: ignore[attr-defined]
    except Exception:
        return None
    return value.dtype if isinstance(value, np.ndarray) else None


def _operand_dtype(node: Apply, known: dict[int, Result]) -> np.dtype | None:
    """The one float dtype of the node's array operands, which its constants take; None if not one."""
    dtypes = {known[id(a)].dtype for a in node.args if not isinstance(a, Const)}
    if len(dtypes) == 1:
        (dtype,) = dtypes
        if dtype in _FLOATS:
            return dtype
    return None


def _constant(writer: Any, facts: Facts, value: int | float, dtype: np.dtype | None) -> str:
    """A hoisted global: a read-only 0-d array of ``dtype`` where that is exact, else the Python number."""
    as_array = dtype is not None and (type(value) is float or abs(value) <= _EXACT_INT)
    key = (type(value).__name__, value.hex() if type(value) is float else value, dtype.str if as_array else None)  # type: ignore[union-attr]
    name = facts.constants.get(key)
    if name is None:
        name = facts.constants[key] = f"_k{len(facts.constants)}"
        if as_array:
            array = np.asarray(value, dtype=dtype)  # a double (or an exact int) rounded once to dtype, as numpy does
            array.flags.writeable = False
            writer.ns[name] = array
        else:
            writer.ns[name] = value
    return name


def _ufunc_name(writer: Any, ufunc: np.ufunc) -> str:
    name = f"_u_{ufunc.__name__}"
    while writer.ns.get(name, ufunc) is not ufunc:  # two ufuncs of one name (from two libraries)
        name += "_"
    writer.ns[name] = ufunc
    return name
