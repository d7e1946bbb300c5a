"""``defop(..., inline=...)``: a terse op's rules traced into expressions at declaration.

``inline=True`` traces the forward and every VJP given (not None, not
``identity_vjp``); ``inline="vjps"`` traces only the VJPs, for an op whose
forward is not a plain expression (sigmoid's overflow-safe forward). The
expressions become :attr:`OpDef.forward_expr` and :attr:`OpDef.vjp_exprs`; the
generated code writes them out as ufunc calls. See docs/plugins.md, "Inline ops".
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from ..errors import PluginError
from .expr import Expr, TraceError, trace

#: What ``inline`` may be: off, everything, or the VJPs only.
INLINE_CHOICES = (False, True, "vjps")

_ARRAYS_ONLY = ("attrs", "argnum", "saved")  # what an expression cannot read: it computes from arrays only


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
        exprs.append(_traced(vjp, positional, keywords, rule, fail))
    return forward_expr, tuple(exprs)


def _traced(
    fn: Callable[..., Any], names: list[str], keywords: list[str], rule: str, fail: Callable[[str], PluginError]
) -> Expr:
    try:
        return trace(fn, names, keywords)
    except TraceError as exc:
        raise fail(f"inline: {rule} is not an expression: it {exc}") from None
