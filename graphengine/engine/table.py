"""A flat table of pre-bound calls: a schedule run as a list of plain tuples, one per op or VJP call.

:class:`Table` is called like the step interpreter and like generated code
(``table(values, seed, recorder) -> (outputs, gradients)``) and computes the
same bits: the same calls, in the same order, with the same arithmetic
(``g = c`` for a slot's first contribution, ``g = g + c`` for its second,
``g += c`` after that, as :mod:`graphengine.engine.codegen` writes it). What
it saves over the interpreter is everything decided once: each entry holds
its kernel, its function (a terse op's own, as generated code binds it), its
slots, its attributes, and the input's shape and dtype for the inline VJP
result test; an exact ndarray of that shape and dtype passes, anything else
goes through :func:`graphengine.ops.vjp.fit_cotangent`, which unbroadcasts
it or raises naming the node.

An entry is a tuple ``(kernel, ...)``, run as ``entry[0](v, c, h, entry)``.
Every forward call, and the VJP calls of the common forms ("``f(g, <values>[,
<constant>])``" into a slot of static shape), run kernels written out in
:mod:`~graphengine.engine.kernels`: building a table then compiles nothing
(round six; a fresh process paid 120-180 us of ``compile()`` per form). Any
other VJP form gets an *entry maker* generated and compiled once per form
(:func:`_source`, say "a long-form VJP reading ``g`` and its first input") and
shared by every table of the process. What varies between calls of one form
(which contribution to its slot, what it drops) is data in the entry: one
tuple per call, no closure, no cells, no message object (a VJP's
:class:`~graphengine.ops.vjp.VJPSite` is made only when a message needs it).
Building the table costs less than one steady call; see
docs/performance-calls.md.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ExecutionError, FeedError
from ..ops import TensorSpec
from ..ops.vjp import VJPSite, fit_cotangent, vjp_raised
from . import kernels
from .interpreter import check_forward_output
from .schedule import Schedule

#: Entry makers by form (see :func:`_source`): ``maker(fn) -> entry(...) -> (kernel, ...)``, compiled once.
_MAKERS: dict[tuple[Any, ...], Callable[..., Any]] = {}
_GLOBALS: dict[str, Any] = {
    "nd": np.ndarray,
    "shape_of": np.shape,
    "fit": fit_cotangent,
    "vjp_raised": vjp_raised,
    "Site": VJPSite,
}

#: A table entry: a tuple whose first item is its kernel, called as ``entry[0](v, c, h, entry)``.
Entry = tuple[Any, ...]


def _maker(key: tuple[Any, ...]) -> Callable[..., Any]:
    """The entry maker of ``key`` (a form of call), compiled on first use and shared by every table."""
    maker = _MAKERS.get(key)
    if maker is None:
        namespace = dict(_GLOBALS)
        exec(compile(_source(key), "<graphengine table>", "exec"), namespace)
        maker = _MAKERS[key] = namespace["maker"]
    return maker


def _source(key: tuple[Any, ...]) -> str:
    """The source of one VJP form's kernel and entry maker (the forms :mod:`.kernels` does not write out).

    The kernel unpacks its entry in one step: ``(kernel, step, position, names, f, g slot, to, shape,
    dtype, contribution number (1, 2, 3 for later), pop, drops, picks...)``; the site for a message is
    made from the first ones.
    """
    _, argspec, picks, static = key
    fields = ["b", "pos", "nm", "f", "o", "to", "shape", "dt", "m", "pop", "dr"]
    built = ["b", "pos", "nm", "f", "b.out", "to", "shape", "dt", "m", "pop", "dr"]
    args = []
    bound = iter(picks)
    for k, (keyword, kind) in enumerate(argspec):
        if kind in ("in", "attrs", "argnum"):
            fields.append(f"p{k}")
            what = next(bound)[1]
            built.append(f"b.ins[{what}]" if kind == "in" else "b.attrs" if kind == "attrs" else "pos")
        expr = {"g": "c[o]", "out": "v[o]", "none": "None", "in": f"v[p{k}]"}.get(kind, f"p{k}")
        args.append(expr if keyword is None else f"{keyword}={expr}")
    shape = "shape" if static else "h[shape]"
    site = "Site(b.op_name, pos, nm[to], b.node_id)"
    lines = ["try:", f"    r = f({', '.join(args)})", "except Exception as exc:"]
    lines += [f"    raise vjp_raised({site}, exc) from exc"]
    lines.append(
        f"if r.__class__ is not nd or r.shape != {shape} or r.dtype is not dt: r = fit(r, {shape}, dt, {site})"
    )
    lines += ["if m == 1:", "    c[to] = r", "elif m == 2:", "    c[to] = c[to] + r", "else:", "    c[to] += r"]
    lines += ["if pop:", "    c[o] = None"]
    make = "def entry(b, pos, nm, to, shape, dt, m, pop, dr):\n"
    lines += ["for s in dr:", "    v[s] = None"]
    body = "\n".join("    " + line for line in lines)
    return (
        f"def kernel(v, c, h, e):\n    _, {', '.join(fields)} = e\n{body}\n"
        f"def maker(f):\n    {make}        return (kernel, {', '.join(built)})\n    return entry\n"
    )


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
        self.n_slots = n = len(names)
        self.outputs, self.grad_output, self.wrt = schedule.outputs, schedule.grad_output, schedule.wrt
        received = [0] * n  # contributions each slot has had so far: picks = c / c + c / +=
        wanted = {s for s in schedule.wrt if static[s] is None}  # slots whose shape is read at run time
        self.backward = _backward_entries(schedule, names, static, dtypes, received, wanted)
        self.need_shape = sorted(wanted)
        self.bound_shapes = [s for s in schedule.bound if s in wanted]
        self.forward = _forward_entries(schedule, wanted)
        seeded, seed_slot = schedule.grad_output >= 0, schedule.grad_output
        self.zeros = [  # wrt slots no cotangent reaches: zeros
            None if seeded and (s == seed_slot or received[s]) else (static[s], dtypes[s]) for s in self.wrt
        ]

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
            for e in self.forward:
                e[0](v, c, h, e)
        else:  # the first call: every output against its shape rule, right after the op returns
            nd = np.ndarray
            for e in self.forward:
                e[0](v, c, h, e)
                x, spec = v[e[2]], check[e[2]]
                if x.__class__ is not nd or x.shape != spec.shape or x.dtype is not spec.dtype:  # else it fits
                    check_forward_output(x, spec, e[1].node_id, e[1].op.name)
        outputs = tuple(v[s] for s in self.outputs)
        if seed is None:
            return outputs, ()
        c[self.grad_output] = seed(v[self.grad_output])
        try:
            for e in self.backward:
                e[0](v, c, h, e)
        except (ExecutionError, FeedError):
            raise
        except Exception as exc:  # not an op or a VJP (they are named where they fail)
            raise ExecutionError(f"graph execution failed: {type(exc).__name__}: {exc}") from exc
        grads = tuple(
            c[s] if z is None else np.zeros(h[s] if z[0] is None else z[0], dtype=z[1])  # type: ignore[type-var]
            for s, z in zip(self.wrt, self.zeros)
        )
        return outputs, grads


def _forward_entries(schedule: Schedule, wanted: set[int]) -> list[Entry]:
    """One entry per forward step: ``(kernel, step, out, f, attrs, record_shape, drops, *input slots)``,
    its kernel written out in :mod:`~graphengine.engine.kernels` (looked up once per op and input count)."""
    forms: dict[int, tuple[Callable[..., None], Any, int]] = {}  # by op: (kernel, f, input count)
    entries: list[Entry] = []
    append = entries.append
    for step, drop in schedule.forward:
        op, ins, out = step.op, step.ins, step.out  # fields, not unpacking: a named tuple unpacks slowly
        n = len(ins)
        form = forms.get(id(op))  # the op lives while this runs: its id is stable
        if form is None or form[2] != n:  # (a variadic op's count varies)
            fn = op.forward
            direct = getattr(fn, "__ge_direct__", None)  # a terse op's own forward: no adapter call
            terse = direct is not None
            kernel = kernels.FORWARD.get((terse, n)) or kernels.FORWARD_ANY[terse]
            form = forms[id(op)] = (kernel, fn if direct is None else direct[0], n)
        kernel, fn, _ = form
        if n == 1:  # a tuple display of fixed size: cheaper than one with *ins
            append((kernel, step, out, fn, step.attrs, out in wanted, drop, ins[0]))
        elif n == 2:
            append((kernel, step, out, fn, step.attrs, out in wanted, drop, ins[0], ins[1]))
        else:
            append((kernel, step, out, fn, step.attrs, out in wanted, drop, *ins))
    return entries


def _backward_entries(
    schedule: Schedule,
    names: Sequence[str],
    static: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    received: list[int],
    wanted: set[int],
) -> list[Entry]:
    """One entry per VJP call of a live backward step; the last also drops what the step used up.

    Counts each slot's contributions in ``received`` and adds to ``wanted`` the receivers whose shape is
    only known at run time. A step no cotangent reaches still lets go of what it would have read.
    """
    live = [False] * len(schedule.backward)
    for j in schedule.live:
        live[j] = True
    forms: dict[int, Any] = {}  # by vjp, for static shapes: its written-out kernel's form, or () for none
    makers: dict[tuple[Any, ...], Callable[..., Entry]] = {}  # the generated entry makers of the others
    entries: list[Entry] = []
    append = entries.append
    for back, is_live in zip(schedule.backward, live):
        grads = back.grads
        if not is_live or not grads:  # nothing to send (no float input, or no cotangent): still pop and release
            cotangent = back.out if is_live and not back.keep_cotangent else None
            if back.release or cotangent is not None:
                append((_clear, back.release, cotangent))
            continue
        last = len(grads) - 1
        pop = not back.keep_cotangent
        o = back.out
        for n_grad, (position, slot, vjp) in enumerate(grads):
            n = received[slot] = received[slot] + 1
            shape = static[slot]
            written: Any = ()
            if shape is None:
                wanted.add(slot)
            else:
                written = forms.get(id(vjp))  # the vjp lives while this runs: its id is stable
                if written is None:
                    written = forms[id(vjp)] = _written_form(vjp) or ()
            final = n_grad == last
            m, drops = n if n < 3 else 3, back.release if final else ()
            if written:
                kernel, fn, wheres, constant = written
                p, dt = pop and final, dtypes[slot]
                n_reads = len(wheres)  # one flat tuple display per count: no head tuple, no unpacking
                entry: Entry
                if n_reads == 1:  # the commonest: the slot read straight from (out, *inputs)
                    w = wheres[0]
                    entry = (kernel, back, position, names, fn, o, slot, shape, dt, m, p, drops, o if w == 0 else back.ins[w - 1])
                elif n_reads == 0:
                    entry = (kernel, back, position, names, fn, o, slot, shape, dt, m, p, drops)
                else:
                    reads = (o, *back.ins)
                    entry = (kernel, back, position, names, fn, o, slot, shape, dt, m, p, drops, *[reads[w] for w in wheres])
                if constant is not None:  # the constant goes last: the common forms' entries are one item shorter
                    entry += (back.attrs if constant == "attrs" else position,)
                append(entry)
                continue
            key = (id(vjp), position, back.reads, back.reads_out, shape is None)
            maker = makers.get(key)
            if maker is None:
                fn, argspec, picks = _call_form(vjp, back.reads, back.reads_out, position)
                maker = makers[key] = _maker(("B", argspec, picks, shape is not None))(fn)
            append(
                maker(
                    back, position, names, slot, slot if shape is None else shape, dtypes[slot], m, pop and final, drops
                )
            )
    return entries


def _written_form(vjp: Any) -> tuple[Any, Any, tuple[int, ...], str | None] | None:
    """``(kernel, f, positions read in (out, *inputs), constant)`` when ``vjp``'s calls into a slot of
    static shape run a kernel written out in :mod:`~graphengine.engine.kernels`; None when they need a
    generated one."""
    direct = getattr(vjp, "__ge_direct__", None)
    written = kernels.vjp_form(direct[1]) if direct is not None else None
    if written is None or direct is None:
        return None
    kernel, wheres, constant = written
    return (kernel, direct[0], wheres, constant)


def _call_form(
    vjp: Any, reads: tuple[bool, ...], reads_out: bool, position: int
) -> tuple[Any, tuple[Any, ...], tuple[tuple[str, Any], ...]]:
    """How a kernel calls ``vjp``: the function, its argspec and what each bound value is (both are part
    of the source's form)."""
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
    return fn, tuple(argspec), tuple(picks)


def _clear(v: list[Any], c: list[Any], h: list[Any], e: Entry) -> None:
    """The kernel of a step that sends nothing: let go of its forward values and its cotangent."""
    for s in e[1]:
        v[s] = None
    if e[2] is not None:
        c[e[2]] = None
