"""``defop(..., inline=...)``: a terse op's rules traced into expressions at declaration.

``inline=True`` traces the forward and every VJP given (not None, not
``identity_vjp``); ``inline="vjps"`` traces only the VJPs, for an op whose
forward is not a plain expression (sigmoid's overflow-safe forward). The
expressions become :attr:`OpDef.forward_expr` and :attr:`OpDef.vjp_exprs`; the
generated code writes them out as ufunc calls. See docs/plugins.md, "Inline ops".

A VJP decorated with :func:`inline_as` is traced from the plain expression it
names instead of from itself: the VJP may then be written for the runners that
call it (in place, with 0-d constants), and the expression for generated code.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from ..errors import PluginError
from .expr import Apply, Expr, Leaf, TraceError, trace

#: What ``inline`` may be: off, everything, or the VJPs only.
INLINE_CHOICES = (False, True, "vjps")

_ARRAYS_ONLY = ("attrs", "argnum", "saved")  # what an expression cannot read: it computes from arrays only


def inline_as(expression: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a VJP with the plain expression that ``defop(..., inline=...)`` traces in its place.

    A VJP called by the step interpreter and the table pays for every Python number it
    writes: numpy converts ``1`` in ``1 - out`` on each call (about 0.3 us on a
    (16,) array). The decorated VJP may avoid that (a 0-d constant of the right
    dtype, work in place) while the generated code writes out ``expression``.
    Both must give the same bits; the engine's tests hold the standard library's to it.

    Parameters
    ----------
    expression : callable
        The same rule as a plain expression, with the VJP's own parameter names.

    Returns
    -------
    callable
        A decorator that returns the VJP itself, marked.

    Examples
    --------
    >>> import numpy as np
    >>> from graphengine.ops import defop, inline_as
    >>> @inline_as(lambda g, out: g * (1 - out * out))
    ... def tanh_vjp(g, out):
    ...     slope = out * out
    ...     np.subtract(np.ones((), out.dtype), slope, out=slope)
    ...     slope *= g
    ...     return slope
    >>> @defop(tanh_vjp, inline=True, name="my_tanh")
    ... def my_tanh(x):
    ...     return np.tanh(x)
    >>> my_tanh.vjp_exprs
    (multiply(g, subtract(1, multiply(out, out))),)
    """

    def mark(vjp: Callable[..., Any]) -> Callable[..., Any]:
        vjp.__ge_inline__ = expression  # type: ignore[attr-defined]
        return vjp

    return mark


def inline_exprs(
    inline: Any,
    forward: Callable[..., Any],
    takes_attrs: bool,
    inputs: tuple[str, ...],
    variadic: bool,
    vjps: Sequence[Callable[..., Any] | None],
    reads: Sequence[list[tuple[str, Any]] | None],
    identity: set[int],
    saving: bool,
    fail: Callable[[str], PluginError],
) -> tuple[Expr | None, tuple[Expr | None, ...]]:
    """``(forward_expr, vjp_exprs)`` for a terse declaration; both empty unless ``inline`` asks.

    ``reads`` holds, per VJP, its parameters as ``(name, kind)`` (None where the VJP is None).
    A rule that cannot be traced raises ``fail(...)`` naming the rule and what it did.
    """
    if inline is False:
        return None, ()
    if not any(inline is choice for choice in INLINE_CHOICES):
        raise fail(f"inline must be True, 'vjps' or False, got {inline!r}")
    if variadic:
        raise fail("inline: a variadic op cannot be inline (its inputs arrive as a tuple)")
    if saving:
        raise fail("inline: an op with saving= cannot be inline (its VJPs read what the forward saved)")
    forward_expr = None
    if inline is True:
        if takes_attrs:
            raise fail("inline=True, but the forward reads attrs; an expression reads arrays only (inline='vjps' traces only the VJPs)")
        forward_expr = _traced(forward, list(inputs), [], "the forward", fail)
    exprs: list[Expr | None] = []
    for position, vjp in enumerate(vjps):
        its_reads = reads[position]
        if vjp is None or position in identity or its_reads is None:
            exprs.append(None)
            continue
        rule = f"the VJP of input {inputs[position]!r}"
        bad = [name for name, _ in its_reads if name in _ARRAYS_ONLY]
        if bad:
            raise fail(f"inline: {rule} reads {bad[0]}; an expression reads only g, out and the inputs")
        positional = [name for name, kind in its_reads if kind is not inspect.Parameter.KEYWORD_ONLY]
        keywords = [name for name, kind in its_reads if kind is inspect.Parameter.KEYWORD_ONLY]
        expression = getattr(vjp, "__ge_inline__", vjp)
        theirs, mine = _parameters(expression), _parameters(vjp)
        if expression is not vjp and theirs is not None and mine is not None and theirs != mine:
            raise fail(
                f"inline_as: {rule} takes ({', '.join(mine)}), but its expression takes "
                f"({', '.join(theirs)}); give them the same parameters"
            )
        exprs.append(_traced(expression, positional, keywords, rule, fail))
    return forward_expr, tuple(exprs)


def call_ufuncs_directly(
    forward: Callable[..., Any],
    vjps: Sequence[Callable[..., Any] | None],
    inputs: tuple[str, ...],
    forward_expr: Expr | None,
    vjp_exprs: Sequence[Expr | None],
) -> None:
    """Where a rule's expression is one ufunc of the rule's own parameters, in order (``a * b``, ``np.exp(x)``,
    ``g * out``), let the table and generated code call that ufunc: ``__ge_direct__`` names it in place of the
    rule, which saves a Python frame per call (40-60 ns of a 200-300 ns table step). The same arithmetic: the
    expression was traced from the rule, or promised by ``inline_as``. The interpreter still calls the rule."""
    rules = [(forward, forward_expr)] + [(vjp, expr) for vjp, expr in zip(vjps, vjp_exprs)]
    for adapter, expr in rules:
        direct = getattr(adapter, "__ge_direct__", None)
        if direct is None or not isinstance(expr, Apply) or not all(isinstance(a, Leaf) for a in expr.args):
            continue
        spec = direct[1]
        params = [what if what in ("g", "out") else inputs[what] if isinstance(what, int) else None for _, what in spec]
        if all(keyword is None for keyword, _ in spec) and params == [a.name for a in expr.args]:  # type: ignore[attr-defined]
            adapter.__ge_direct__ = (expr.ufunc, spec)  # type: ignore[union-attr]


def _parameters(fn: Callable[..., Any]) -> list[str] | None:
    """A Python function's parameter names; None for anything else (a ufunc's are numpy's own): tracing decides."""
    return list(inspect.signature(fn).parameters) if inspect.isfunction(fn) else None


def _traced(
    fn: Callable[..., Any], names: list[str], keywords: list[str], rule: str, fail: Callable[[str], PluginError]
) -> Expr:
    try:
        return trace(fn, names, keywords)
    except TraceError as exc:
        raise fail(f"inline: {rule} is not an expression: it {exc}") from None
