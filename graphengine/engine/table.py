"""A flat table of pre-bound calls: a schedule run as a list of small closures, one per op or VJP call.

:class:`Table` is called like the step interpreter and like generated code
(``table(values, seed, recorder) -> (outputs, gradients)``) and computes the
same bits: the same calls, in the same order, with the same arithmetic
(``g = c`` for a slot's first contribution, ``g = g + c`` for its second,
``g += c`` after that, as :mod:`graphengine.engine.codegen` writes it). What
it saves over the interpreter is everything decided once: each closure holds
its function (a terse op's own, as generated code binds it), its slots, its
attributes, and the input's shape and dtype for the inline VJP result test;
an exact ndarray of that shape and dtype passes, anything else goes through
:func:`graphengine.ops.vjp.fit_cotangent`, which unbroadcasts it or raises
naming the node.

Each closure comes from a *factory* compiled once per form of call (say "a
terse VJP reading ``g`` and its first input, second contribution to its
slot"), not once per step: a graph of 100,000 nodes costs a few dozen small
``compile()`` calls, then one closure per call. Building the table costs
about one steady call, so a schedule's second call is never a code-generation
cliff.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ExecutionError, FeedError
from ..ops import TensorSpec
from ..ops.vjp import VJPSite, fit_cotangent, vjp_raised
from .interpreter import check_forward_output, forward_failed
from .schedule import Schedule

#: Kernel factories by form (see :func:`_source`): ``make(*values) -> kernel(v, c, h)``.
_FACTORIES: dict[tuple[Any, ...], Callable[..., Any]] = {}
_GLOBALS: dict[str, Any] = {
    "nd": np.ndarray,
    "shape_of": np.shape,
    "fit": fit_cotangent,
    "vjp_raised": vjp_raised,
    "forward_failed": forward_failed,
}

Kernel = Callable[[list[Any], list[Any], list[Any]], None]


def _kernel(key: tuple[Any, ...], values: Sequence[Any]) -> Kernel:
    """The closure of ``values`` from the factory of ``key`` (its form), compiled on first use."""
    make = _FACTORIES.get(key)
    if make is None:
        source = _source(key)
        namespace = dict(_GLOBALS)
        exec(compile(source, "<graphengine table>", "exec"), namespace)
        make = _FACTORIES[key] = namespace["make"]
    return make(*values)  # type: ignore[no-any-return]


def _source(key: tuple[Any, ...]) -> str:
    """A factory's source; its parameters come in the order the ``*_values`` functions list them."""
    if key[0] == "F":
        _, direct, n_in, record_shape, n_drop = key
        params = ["f", *([] if direct else ["a"]), "o", "info", *[f"i{k}" for k in range(n_in)]]
        args = [f"v[i{k}]" for k in range(n_in)] + ([] if direct else ["attrs=a"])
        lines = ["try:", f"    v[o] = f({', '.join(args)})", "except Exception as exc:"]
        lines += ["    raise forward_failed(*info, exc) from exc"]
        if record_shape:
            lines.append("h[o] = shape_of(v[o])")
    else:
        _, argspec, static, mode, pop, n_drop = key
        params = ["f", "o", "site", "to", "shape", "dt"]
        args = []
        for k, (keyword, kind) in enumerate(argspec):
            if kind in ("in", "attrs", "argnum"):
                params.append(f"p{k}")
            expr = {"g": "c[o]", "out": "v[o]", "none": "None", "in": f"v[p{k}]"}.get(kind, f"p{k}")
            args.append(expr if keyword is None else f"{keyword}={expr}")
        shape = "shape" if static else "h[shape]"
        lines = ["try:", f"    r = f({', '.join(args)})", "except Exception as exc:"]
        lines += ["    raise vjp_raised(site, exc) from exc"]
        lines.append(
            f"if r.__class__ is not nd or r.shape != {shape} or r.dtype is not dt: r = fit(r, {shape}, dt, site)"
        )
        lines.append({1: "c[to] = r", 2: "c[to] = c[to] + r"}.get(mode, "c[to] += r"))
        if pop:
            lines.append("c[o] = None")
    drops = [f"d{k}" for k in range(n_drop)]
    if drops:
        lines.append(" = ".join(f"v[{d}]" for d in drops) + " = None")
    body = "\n".join("        " + line for line in lines) if lines else "        pass"
    return f"def make({', '.join(params + drops)}):\n    def kernel(v, c, h):\n{body}\n    return kernel\n"


class Table:
    """A schedule as a flat list of pre-bound calls; see the module docstring.

    Parameters
    ----------
    schedule : Schedule
    names : sequence of str
        Per slot, for messages.
    shapes : sequence of tuple or None
        Static shape per slot, or None where a dimension is free (read at run time).
    dtypes : sequence of numpy.dtype

    Examples
    --------
    >>> import graphengine
    >>> plan = graphengine.load("examples/seed_network.json").compile()
    >>> schedule, _, _ = plan._grad_schedule(["W_o"], None)
    >>> table = Table(schedule, plan.names, [s.shape for s in plan.specs], [s.dtype for s in plan.specs])
    >>> len(table.forward), len(table.backward)  # one kernel per op call, one per VJP call on the way to W_o
    (5, 3)
    """

    def __init__(
        self,
        schedule: Schedule,
        names: Sequence[str],
        shapes: Sequence[tuple[int | None, ...] | None],
        dtypes: Sequence[np.dtype],
    ) -> None:
        static: list[tuple[int, ...] | None] = [None if s is None or None in s else s for s in shapes]  # type: ignore[misc]
        seeded = schedule.grad_output >= 0
        live = schedule.live
        receivers = {slot for j in live for _, slot, _ in schedule.backward[j].grads}
        self.need_shape = sorted(s for s in receivers | set(schedule.wrt) if static[s] is None)
        wanted = set(self.need_shape)
        self.n_slots = len(names)
        self.outputs, self.grad_output, self.wrt = schedule.outputs, schedule.grad_output, schedule.wrt
        self.bound_shapes = [s for s in schedule.bound if s in wanted]
        self.forward = [_forward_kernel(step, drop, step.out in wanted) for step, drop in schedule.forward]
        self.checks = [(step.out, step.node_id, step.op.name) for step, _ in schedule.forward]
        self.backward: list[Kernel] = []
        received: dict[int, int] = {}
        live_set = set(live)
        for j, back in enumerate(schedule.backward):
            if j in live_set:
                self.backward += _backward_kernels(back, names, static, dtypes, received)
            elif back.release:  # a step no cotangent reaches still lets go of what it would have read
                self.backward.append(_clear(back.release, None))
        has_g = {schedule.grad_output, *received} if seeded else set()
        self.zeros = [
            None if s in has_g else (static[s], dtypes[s]) for s in self.wrt
        ]  # wrt slots no cotangent reaches: zeros

    def __call__(
        self,
        values: list[Any],
        seed: Callable[[Any], Any] | None = None,
        recorder: Any = None,
        *,
        check: Sequence[TensorSpec] | None = None,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """Run it: ``(outputs, gradients)``; ``check`` (specs per slot): test each op's output against it."""
        v, c, h = values, [None] * self.n_slots, [None] * self.n_slots
        for s in self.bound_shapes:
            h[s] = np.shape(v[s])
        if check is None:
            for kernel in self.forward:
                kernel(v, c, h)
        else:  # the first call: every output against its shape rule, right after the op returns
            for kernel, (out, node_id, op_name) in zip(self.forward, self.checks):
                kernel(v, c, h)
                check_forward_output(v[out], check[out], node_id, op_name)
        outputs = tuple(v[s] for s in self.outputs)
        if seed is None:
            return outputs, ()
        c[self.grad_output] = seed(v[self.grad_output])
        try:
            for kernel in self.backward:
                kernel(v, c, h)
        except (ExecutionError, FeedError):
            raise
        except Exception as exc:  # not an op or a VJP (they are named where they fail)
            raise ExecutionError(f"graph execution failed: {type(exc).__name__}: {exc}") from exc
        grads = tuple(
            c[s] if z is None else np.zeros(h[s] if z[0] is None else z[0], dtype=z[1])  # type: ignore[type-var]
            for s, z in zip(self.wrt, self.zeros)
        )
        return outputs, grads


def _forward_kernel(step: Any, drop: Sequence[int], record_shape: bool) -> Kernel:
    fn = step.op.forward
    direct = getattr(fn, "__ge_direct__", None)  # a terse op's own forward: no adapter call
    head = [direct[0]] if direct is not None else [fn, step.attrs]
    key = ("F", direct is not None, len(step.ins), record_shape, len(drop))
    return _kernel(key, [*head, step.out, (step.node_id, step.op.name), *step.ins, *drop])


def _backward_kernels(
    step: Any,
    names: Sequence[str],
    static: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    received: dict[int, int],
) -> list[Kernel]:
    """One kernel per VJP call of a live backward step; the last also drops what the step used up."""
    kernels = []
    last = len(step.grads) - 1
    pop = not step.keep_cotangent
    for n_grad, (position, slot, vjp) in enumerate(step.grads):
        fn, argspec, picks = _call_form(vjp, step.reads, step.reads_out, position)
        arg_values = [
            step.ins[what] if kind == "in" else step.attrs if kind == "attrs" else what for kind, what in picks
        ]
        site = VJPSite(step.op_name, position, names[slot], step.node_id)
        n = received[slot] = received.get(slot, 0) + 1
        shape = static[slot]
        drop = step.release if n_grad == last else ()
        key = ("B", argspec, shape is not None, min(n, 3), pop and n_grad == last, len(drop))
        values = [fn, step.out, site, slot, slot if shape is None else shape, dtypes[slot], *arg_values, *drop]
        kernels.append(_kernel(key, values))
    if not step.grads:  # nothing to send (no float input): still pop and release
        kernels.append(_clear(step.release, step.out if pop else None))
    return kernels


#: (id(vjp), reads, reads_out, position) -> (function to call, argspec, what to bind): the same for every
#: step of one op's form, so worked out once (a 10k chain's 10,000 VJPs are 3 or 4 forms). The vjp is kept
#: alongside, so that its id cannot be reused while the entry lives.
_FORMS: dict[tuple[Any, ...], tuple[Any, tuple[Any, ...], tuple[tuple[str, Any], ...], Any]] = {}


def _call_form(
    vjp: Any, reads: tuple[bool, ...], reads_out: bool, position: int
) -> tuple[Any, tuple[Any, ...], tuple[tuple[str, Any], ...]]:
    """How a kernel calls ``vjp``: the function, its argspec (a factory key part) and what each bound value is."""
    key = (id(vjp), reads, reads_out, position)
    known = _FORMS.get(key)
    if known is None or known[3] is not vjp:
        direct = getattr(vjp, "__ge_direct__", None)  # a terse VJP: call the user's function itself
        picks: list[tuple[str, Any]] = []
        if direct is not None:
            fn, spec = direct
            argspec = []
            for keyword, what in spec:
                kind = "in" if isinstance(what, int) else "argnum" if isinstance(what, tuple) else what
                argspec.append((keyword, kind))
                if kind in ("in", "attrs", "argnum"):
                    picks.append((kind, what if kind == "in" else position if kind == "argnum" else None))
        else:  # the long form: vjp(g, out, *inputs, attrs=attrs), None where unread
            fn = vjp
            argspec = [(None, "g"), (None, "out" if reads_out else "none")]
            argspec += [(None, "in" if needed else "none") for needed in reads] + [("attrs", "attrs")]
            picks = [("in", i) for i, needed in enumerate(reads) if needed] + [("attrs", None)]
        known = (fn, tuple(argspec), tuple(picks), vjp)
        if not isinstance(vjp, functools.partial):  # a variadic input's partial is made per step: not kept
            _FORMS[key] = known
    return known[0], known[1], known[2]


def _clear(slots: Sequence[int], cotangent: int | None) -> Kernel:
    def kernel(v: list[Any], c: list[Any], h: list[Any]) -> None:
        for s in slots:
            v[s] = None
        if cotangent is not None:
            c[cotangent] = None

    return kernel
