"""The adapters of the terse form: small generated functions with the long form's signatures that call yours.

:func:`graphengine.ops.defop` wraps each forward and VJP in one, so that the
engine knows one kind of op; each carries ``__ge_direct__``, how to call your
function without it, which the generated code and the table use.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import types
from typing import Any, Callable

#: Adapter code objects by (parameters, call): the source depends only on the names, so ops of one
#: form share one compile() (the standard library's 90 adapters are 39 forms).
_ADAPTER_CODE: dict[tuple[str, str], Any] = {}


def _compile(
    fn: Callable[..., Any], params: str, call: str, label: str, direct: tuple[Any, ...] | None = None
) -> Callable[..., Any]:
    """``def <name>(<params>): return fn(<call>)``, with its source in linecache for tracebacks.

    ``direct`` (stored as ``__ge_direct__``) says how to call ``fn`` without the adapter: per
    argument, ``(keyword or None, what)`` with ``what`` one of ``"g"``, ``"out"``, ``"attrs"``,
    an input position (int) or ``("argnum", position)``; the generated code binds ``fn`` itself.
    """
    source = f"def adapter({params}):\n    return __ge_fn({call})\n"
    filename = f"<defop {label}>"
    code = _ADAPTER_CODE.get((params, call))
    if code is None:
        module = compile(source, "<defop>", "exec")
        (code,) = [c for c in module.co_consts if isinstance(c, types.CodeType)]
        _ADAPTER_CODE[(params, call)] = code
    adapter = types.FunctionType(code.replace(co_filename=filename), {"__ge_fn": fn}, "adapter")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    functools.update_wrapper(adapter, fn)  # its name, module and doc; __wrapped__ is fn
    # None: inspect.signature reads the adapter's own parameters (the long form's), when asked, not fn's.
    adapter.__signature__ = None  # type: ignore[attr-defined]
    adapter.__ge_direct__ = None if direct is None else (fn, direct)  # type: ignore[attr-defined]
    return adapter


def _inputs_params(inputs: tuple[str, ...], variadic: bool) -> str:
    names = [*inputs[:-1], "*" + inputs[-1]] if variadic else list(inputs)
    return ", ".join(names)


def _vjp_adapter(
    vjp: Callable[..., Any],
    reads: list[tuple[str, Any]],
    inputs: tuple[str, ...],
    variadic: bool,
    last: bool,
    position: int,
    label: str,
    saving: bool = False,
) -> Callable[..., Any]:
    """A function with the long form's VJP signature that passes ``vjp`` what it names."""
    params = f"g, out, {_inputs_params(inputs, variadic)}"
    params += ", attrs, argnum" if last else (", attrs" if variadic else ", *, attrs")
    params += ", saved=None" if saving else ""
    P = inspect.Parameter
    args = []
    # No direct call for an op with saving=: its VJPs are called through this adapter, which defaults saved to None.
    direct: list[tuple[str | None, Any]] | None = None if variadic or saving else []
    for read, kind in reads:
        value = "argnum" if read == "argnum" and last else str(position) if read == "argnum" else read
        if kind is P.VAR_POSITIONAL:
            args.append(f"*{value}")
        elif kind is P.KEYWORD_ONLY:
            args.append(f"{read}={value}")
        else:
            args.append(value)
        if direct is not None:
            what = inputs.index(read) if read in inputs else ("argnum", position) if read == "argnum" else read
            direct.append((read if kind is P.KEYWORD_ONLY else None, what))
    adapter = _compile(vjp, params, ", ".join(args), label, None if direct is None else tuple(direct))
    if saving:  # a compiled code object has no defaults of its own: saved is None unless the engine passes it
        adapter.__kwdefaults__ = {"saved": None}
    return adapter


def _forward_adapter(
    forward: Callable[..., Any], inputs: tuple[str, ...], variadic: bool, label: str
) -> Callable[..., Any]:
    """``forward`` with the long form's signature: it also takes (and ignores) ``attrs``."""
    params = _inputs_params(inputs, variadic)
    direct = None if variadic else tuple((None, k) for k in range(len(inputs)))
    return _compile(forward, params + (", attrs" if variadic else ", *, attrs"), params, label, direct)
