"""The terse form of an op declaration: :func:`defop`, which builds a plain :class:`OpDef`.

In the spirit of HIPS autograd's ``defvjp`` and tinygrad's one-line rules, a
VJP names only what it reads::

    @defop(lambda g, b: g * b, lambda g, a: g * a, doc="a * b, elementwise with broadcasting")
    def mul(a, b):
        return a * b

- The forward's parameters are the op's inputs (``*xs`` makes the op
  variadic); it takes ``attrs`` only if it reads them.
- Each VJP (one per input, ``None`` for no gradient) names any of ``g`` (the
  output's cotangent), ``out``, the inputs, ``attrs``, and ``argnum`` (the
  input's position). A variadic input arrives as a tuple, or spread if the VJP
  writes ``*xs``. ``vjp_needs`` is the union of the input names and ``out``
  over the VJPs: the engine passes ``None`` for the rest, and no VJP sees it.
- Without a ``shape_rule`` the op is elementwise: :func:`elementwise_rule`,
  and samples from :func:`~graphengine.ops.samples.elementwise_samples` (``domain`` chooses their values).

The result is an ordinary :class:`OpDef`: the engine knows one kind of op. Its
``forward`` and ``vjps`` are small generated functions with the long form's
signatures that call yours (``__wrapped__``); a forward that already takes
``attrs`` is used as it is. A malformed declaration raises
:class:`~graphengine.errors.PluginError` naming the op and the module that
declares it.
"""

from __future__ import annotations

import inspect
import sys
from types import FrameType
from typing import Any, Callable, Mapping, Sequence

from pydantic import BaseModel

from ..errors import PluginError, did_you_mean
from .adapters import _forward_adapter, _vjp_adapter
from .inline import call_ufuncs_directly, inline_exprs
from .opdef import LossInfo, NoAttrs, OpDef, ShapeRule, declaration_error
from .samples import DOMAINS, Domain, SamplesFn, default_samples, elementwise_samples
from .spec import elementwise_rule

__all__ = ["defop", "identity_vjp", "elementwise_samples", "DOMAINS"]

_RESERVED = ("g", "out", "attrs", "argnum")


def identity_vjp(g: Any) -> Any:
    """The VJP ``x_bar = g`` (as ``add``'s), declared as such: give it to :func:`defop` in an input's place.

    ``defop`` records the input in :attr:`OpDef.identity_vjps`, so the generated
    code writes the cotangent through with no call; everything else calls this.

    Examples
    --------
    >>> import numpy as np
    >>> @defop(identity_vjp, identity_vjp, doc="a + b")
    ... def add(a, b):
    ...     return a + b
    >>> sorted(add.identity_vjps), add.vjp_is_identity(1), add.vjp_needs
    ([0, 1], True, frozenset())
    """
    return g


def defop(
    *vjps: Callable[..., Any] | None,
    name: str | None = None,
    shape_rule: ShapeRule | None = None,
    attrs: type[BaseModel] = NoAttrs,
    samples: SamplesFn | None = None,
    domain: Domain | Mapping[str, Domain] | None = None,
    sample_attrs: Sequence[Mapping[str, Any]] | None = None,
    doc: str | None = None,
    loss: LossInfo | None = None,
    saving: Callable[..., Any] | None = None,
    inline: bool | str = False,
) -> Callable[[Callable[..., Any]], OpDef]:
    """Declare an op from its forward function and one short VJP per input; returns a decorator.

    Parameters
    ----------
    *vjps : callable or None
        One per input of the forward, in order; ``None`` for an input without a
        gradient. Each names only what it reads: ``g``, ``out``, input names,
        ``attrs``, ``argnum`` (and ``saved``, with ``saving``). :func:`identity_vjp`
        for ``x_bar = g`` declares it (:attr:`OpDef.identity_vjps`).
    name : str, optional
        The op's name; default: the forward's name without a trailing ``_``.
    shape_rule : callable, optional
        ``shape_rule(*specs, attrs) -> TensorSpec``; default :func:`elementwise_rule`.
    attrs : type of pydantic.BaseModel
        Model of the node's attributes.
    samples : callable, optional
        ``samples(rng) -> list[Sample]``; default for an elementwise op:
        :func:`elementwise_samples` over ``domain`` and ``sample_attrs``.
    domain : str, callable or mapping, optional
        Values of the default samples: one domain for every input (``"real"``,
        ``"positive"``, ``"nonzero"`` or ``domain(rng, shape)``), or a mapping
        from input names to domains (the others are ``"real"``).
    sample_attrs : sequence of mapping, optional
        Attribute sets for the default samples (default: only the defaults).
    doc : str, optional
        One line for ``graphengine ops``; default: the forward docstring's first line.
    loss : LossInfo, optional
        For a loss op: its prediction, target and reduction.
    saving : callable, optional
        ``saving(*inputs[, attrs]) -> (out, saved)``, with the forward's inputs: the
        forward that also returns an intermediate for the VJPs, which may then name
        ``saved`` (None when the engine ran the plain forward: recompute it then).
        It becomes ``OpDef.forward_saving``.
    inline : bool or "vjps"
        Trace the forward and the VJPs (``True``), or the VJPs only (``"vjps"``),
        into expressions of numpy ufuncs (``OpDef.forward_expr``, ``vjp_exprs``) that
        the generated code writes out as lines; a rule that is not one is refused.
        See docs/plugins.md, "Inline ops".

    Returns
    -------
    callable
        A decorator that takes the forward, ``forward(*inputs[, attrs])``, and
        returns the :class:`OpDef`.

    Raises
    ------
    PluginError
        When the declaration is malformed; the message names the op and the
        module that declares it.

    Examples
    --------
    >>> import numpy as np
    >>> @defop(lambda g, b: g * b, lambda g, a: g * a, doc="a * b")
    ... def mul(a, b):
    ...     return a * b
    >>> mul.name, mul.inputs, sorted(mul.vjp_needs)
    ('mul', ('a', 'b'), ['a', 'b'])
    >>> float(mul.vjps[0](np.array(1.0), None, None, np.array(3.0), attrs=mul.attrs()))
    3.0

    A VJP that reads the output, an op that needs positive inputs:

    >>> @defop(lambda g, out: g / (2 * out), domain="positive")
    ... def sqrt(x):
    ...     "square root of x (x >= 0)"
    ...     return np.sqrt(x)
    >>> sqrt.vjp_needs, sqrt.doc
    (frozenset({'out'}), 'square root of x (x >= 0)')

    A mistake names the op and its module:

    >>> defop(lambda g, c: g * c, name="twice")(lambda x: x)
    Traceback (most recent call last):
    ...
    graphengine.errors.PluginError: op 'twice' (declared in graphengine.ops.terse): the VJP of input 'x' names 'c', which it cannot read; a VJP may name g, out, x, attrs, argnum
    """

    def declare(forward: Callable[..., Any]) -> OpDef:
        return _build(
            forward, vjps, name=name, shape_rule=shape_rule, attrs=attrs, samples=samples, domain=domain,
            sample_attrs=sample_attrs, doc=doc, loss=loss, saving=saving, inline=inline,
        )  # fmt: skip

    return declare


def _build(
    forward: Callable[..., Any],
    vjps: tuple[Callable[..., Any] | None, ...],
    *,
    name: str | None,
    shape_rule: ShapeRule | None,
    attrs: type[BaseModel],
    samples: SamplesFn | None,
    domain: Domain | Mapping[str, Domain] | None,
    sample_attrs: Sequence[Mapping[str, Any]] | None,
    doc: str | None,
    loss: LossInfo | None,
    saving: Callable[..., Any] | None = None,
    inline: bool | str = False,
) -> OpDef:
    # The plugin is the forward's module; for a builtin or a callable object, the module that calls defop.
    owner = forward if inspect.isfunction(forward) else _Caller()
    if name is None and callable(forward):
        fn_name = getattr(forward, "__name__", "")
        name = fn_name.rstrip("_") if fn_name.isidentifier() else None

    def fail(detail: str) -> PluginError:
        return declaration_error(name, owner, detail)

    if not callable(forward):
        raise fail(f"forward must be callable, got {type(forward).__name__}")
    if not name:
        raise fail("give it a name= (the forward is not a named function)")
    if not (isinstance(attrs, type) and issubclass(attrs, BaseModel)):
        raise fail(f"attrs must be a pydantic model class (a subclass of BaseModel), got {attrs!r}")
    inputs, variadic, takes_attrs = _forward_signature(forward, fail)
    if saving is not None and "saved" in inputs:
        raise fail("an input may not be named 'saved' when the op has saving=: VJPs use that name for what it saves")
    if len(vjps) != len(inputs):
        raise fail(
            f"{len(vjps)} VJP{'s' if len(vjps) != 1 else ''} for {len(inputs)} input{'s' if len(inputs) != 1 else ''} "
            f"({', '.join(inputs)}); give one per input, None for an input without a gradient"
        )
    adapted: list[Callable[..., Any] | None] = []
    all_reads: list[list[tuple[str, Any]] | None] = []
    needs: set[str] = set()
    identity: set[int] = set()
    for position, vjp in enumerate(vjps):
        if vjp is None:
            adapted.append(None)
            all_reads.append(None)
            continue
        if vjp is identity_vjp:
            identity.add(position)
        reads = _vjp_reads(vjp, inputs, variadic, inputs[position], fail, saving is not None)
        all_reads.append(reads)
        needs.update(r for r, _ in reads if r in inputs or r == "out")
        last = variadic and position == len(inputs) - 1
        label = f"{name}.vjp[{inputs[position]}]"
        adapted.append(_vjp_adapter(vjp, reads, inputs, variadic, last, position, label, saving is not None))
    if shape_rule is None:
        shape_rule = elementwise_rule
    if samples is None and shape_rule is elementwise_rule:
        samples = default_samples(inputs, variadic, domain, sample_attrs, fail)
    elif domain is not None or sample_attrs is not None:
        what = "samples are given" if samples is not None else "a shape_rule is given"
        raise fail(f"domain and sample_attrs only shape the default samples of an elementwise op, but {what}")
    if doc is None:
        doc = (inspect.getdoc(forward) or "").strip().split("\n")[0]
    fwd = forward if takes_attrs else _forward_adapter(forward, inputs, variadic, f"{name}.forward")
    forward_expr, vjp_exprs = inline_exprs(
        inline, forward, takes_attrs, inputs, variadic, vjps, all_reads, identity, saving is not None, fail
    )
    if inline is not False:
        call_ufuncs_directly(fwd, adapted, inputs, forward_expr, vjp_exprs)
    return OpDef(
        name, fwd, tuple(adapted), shape_rule, attrs=attrs, inputs=inputs, variadic=variadic,
        vjp_needs=frozenset(needs), samples=samples, doc=doc, loss=loss,
        forward_saving=_saving_forward(saving, inputs, variadic, name, fail) if saving is not None else None,
        identity_vjps=frozenset(identity), forward_expr=forward_expr, vjp_exprs=vjp_exprs,
    )  # fmt: skip


def _saving_forward(
    saving: Callable[..., Any], inputs: tuple[str, ...], variadic: bool, name: str, fail: Callable[[str], PluginError]
) -> Callable[..., Any]:
    """``saving`` with the long form's signature; its inputs must be the forward's."""
    if not callable(saving):
        raise fail(f"saving must be callable, got {type(saving).__name__}")
    its_inputs, its_variadic, takes_attrs = _forward_signature(saving, fail)
    if its_inputs != inputs or its_variadic != variadic:
        raise fail(f"saving takes ({', '.join(its_inputs)}), not the forward's inputs ({', '.join(inputs)})")
    return saving if takes_attrs else _forward_adapter(saving, inputs, variadic, f"{name}.saving")


class _Caller:
    """Stands in for a forward that is not a function: the declaring module is the caller's."""

    def __init__(self) -> None:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__") == __name__:
            frame = frame.f_back
        self.__module__ = str(frame.f_globals.get("__name__", "")) if frame is not None else ""

    def __call__(self) -> None:  # pragma: no cover - only its module is read
        pass


def _signature(fn: Callable[..., Any], role: str, fail: Callable[[str], PluginError]) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        raise fail(
            f"cannot read the parameters of the {role} {fn!r}; wrap it in a function, e.g. lambda x: np.sin(x)"
        ) from None


def _forward_signature(
    forward: Callable[..., Any], fail: Callable[[str], PluginError]
) -> tuple[tuple[str, ...], bool, bool]:
    """(input names, variadic, takes attrs) from the forward's parameters."""
    inputs: list[str] = []
    variadic = takes_attrs = False
    P = inspect.Parameter
    for p in _signature(forward, "forward", fail).parameters.values():
        if p.name == "attrs" and p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            takes_attrs = True
        elif p.kind is P.VAR_KEYWORD or p.kind is P.KEYWORD_ONLY:
            raise fail(f"forward parameter {p.name!r}: inputs are positional and the only keyword is attrs")
        elif takes_attrs and p.kind is not P.VAR_POSITIONAL:
            raise fail(f"forward parameter {p.name!r} comes after attrs; attrs must follow the inputs")
        elif p.name in _RESERVED:
            raise fail(f"an input may not be named {p.name!r}: VJPs use that name for {_meaning(p.name)}")
        elif p.default is not P.empty:
            raise fail(f"forward parameter {p.name!r} has a default; an input is always given (use attrs for options)")
        else:
            inputs.append(p.name)
            variadic = p.kind is P.VAR_POSITIONAL
    if not inputs:
        raise fail("the forward takes no inputs")
    return tuple(inputs), variadic, takes_attrs


def _meaning(reserved: str) -> str:
    return {"g": "the output's cotangent", "out": "the output", "attrs": "the attributes", "argnum": "the position"}[
        reserved
    ]


def _vjp_reads(
    vjp: Callable[..., Any],
    inputs: tuple[str, ...],
    variadic: bool,
    input_name: str,
    fail: Callable[[str], PluginError],
    saving: bool = False,
) -> list[tuple[str, Any]]:
    """The VJP's parameters as (name, kind), each checked against what it may read."""
    if not callable(vjp):
        raise fail(f"the VJP of input {input_name!r} must be callable or None, got {type(vjp).__name__}")
    allowed = ["g", "out", *inputs, "attrs", "argnum"] + (["saved"] if saving else [])
    reads = []
    P = inspect.Parameter
    for p in _signature(vjp, f"VJP of input {input_name!r}", fail).parameters.values():
        if p.name not in allowed:
            raise fail(
                f"the VJP of input {input_name!r} names {p.name!r}, which it cannot read"
                f"{did_you_mean(p.name, allowed, otherwise='')}; a VJP may name {', '.join(allowed)}"
            )
        if p.kind is P.VAR_KEYWORD or (p.kind is P.VAR_POSITIONAL and not (variadic and p.name == inputs[-1])):
            raise fail(f"the VJP of input {input_name!r} takes {p}; name the values it reads instead")
        reads.append((p.name, p.kind))
    return reads
