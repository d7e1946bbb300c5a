"""The table's kernels for the common forms of call, written out: no ``compile()`` when a table is built.

A :class:`~graphengine.engine.table.Table` entry is a tuple run as
``entry[0](v, c, h, entry)``. Until round six every kernel was generated and
compiled once per form of call and process (``table._source``); a fresh
process paid 120-180 us of ``compile()`` per form, 1.0-1.4 ms of a 1k-node
graph's first gradient (docs/performance-calls.md, "Round six"). The kernels
here are those forms written once, so they cost nothing at run time:

- every forward call: ``(kernel, step, out, f, attrs, record_shape, drops, *input slots)``,
  one kernel per input count (1, 2, 3, any other) and per binding (``f(*inputs)``
  for a terse op's own function, ``f(*inputs, attrs=attrs)`` for the long form);
- VJP calls of the form ``f(g, <up to 3 values>[, <one constant>])``, all positional, into a slot
  of static shape (every VJP of the standard library but the four long-form ones and
  those that read four values): ``(kernel, step, position, names, f, out, to, shape,
  dtype, contribution number, pop, drops, *slots read[, constant])``.

Each does what the generated kernel of its form does (``table._source``), tail
included (the check, the fan-in sum, the slots freed), written out in each:
a shared tail function cost one more frame per call. Any other form is still
generated. ``tests/test_table_kernels.py`` holds the two to the same bits.
"""

from __future__ import annotations

from typing import Any, Callable

from numpy import ndarray as nd
from numpy import shape as shape_of

from ..ops.vjp import VJPSite as Site
from ..ops.vjp import fit_cotangent as fit
from ..ops.vjp import vjp_raised
from .interpreter import forward_failed

Kernel = Callable[[list[Any], list[Any], list[Any], tuple[Any, ...]], None]


def _f1(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    _, step, o, f, _a, rs, dr, i0 = e
    try:
        v[o] = f(v[i0])
    except Exception as exc:
        raise forward_failed(step.node_id, step.op.name, exc) from exc
    if rs:
        h[o] = shape_of(v[o])
    for s in dr:
        v[s] = None


def _f2(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    _, step, o, f, _a, rs, dr, i0, i1 = e
    try:
        v[o] = f(v[i0], v[i1])
    except Exception as exc:
        raise forward_failed(step.node_id, step.op.name, exc) from exc
    if rs:
        h[o] = shape_of(v[o])
    for s in dr:
        v[s] = None


def _f3(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    _, step, o, f, _a, rs, dr, i0, i1, i2 = e
    try:
        v[o] = f(v[i0], v[i1], v[i2])
    except Exception as exc:
        raise forward_failed(step.node_id, step.op.name, exc) from exc
    if rs:
        h[o] = shape_of(v[o])
    for s in dr:
        v[s] = None


def _fn(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    step, o, f, rs, dr = e[1], e[2], e[3], e[5], e[6]
    try:
        v[o] = f(*[v[i] for i in e[7:]])
    except Exception as exc:
        raise forward_failed(step.node_id, step.op.name, exc) from exc
    if rs:
        h[o] = shape_of(v[o])
    for s in dr:
        v[s] = None


def _f1a(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    _, step, o, f, a, rs, dr, i0 = e
    try:
        v[o] = f(v[i0], attrs=a)
    except Exception as exc:
        raise forward_failed(step.node_id, step.op.name, exc) from exc
    if rs:
        h[o] = shape_of(v[o])
    for s in dr:
        v[s] = None


def _f2a(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    _, step, o, f, a, rs, dr, i0, i1 = e
    try:
        v[o] = f(v[i0], v[i1], attrs=a)
    except Exception as exc:
        raise forward_failed(step.node_id, step.op.name, exc) from exc
    if rs:
        h[o] = shape_of(v[o])
    for s in dr:
        v[s] = None


def _f3a(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    _, step, o, f, a, rs, dr, i0, i1, i2 = e
    try:
        v[o] = f(v[i0], v[i1], v[i2], attrs=a)
    except Exception as exc:
        raise forward_failed(step.node_id, step.op.name, exc) from exc
    if rs:
        h[o] = shape_of(v[o])
    for s in dr:
        v[s] = None


def _fna(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    step, o, f, a, rs, dr = e[1], e[2], e[3], e[4], e[5], e[6]
    try:
        v[o] = f(*[v[i] for i in e[7:]], attrs=a)
    except Exception as exc:
        raise forward_failed(step.node_id, step.op.name, exc) from exc
    if rs:
        h[o] = shape_of(v[o])
    for s in dr:
        v[s] = None


#: Forward kernels by (a terse op's own function, input count); other counts take the last two.
FORWARD: dict[tuple[bool, int], Kernel] = {
    (True, 1): _f1,
    (True, 2): _f2,
    (True, 3): _f3,
    (False, 1): _f1a,
    (False, 2): _f2a,
    (False, 3): _f3a,
}
FORWARD_ANY = {True: _fn, False: _fna}


def _site(e: tuple[Any, ...]) -> Site:
    """Which VJP an entry runs: its op, input position and node, the input's slot named."""
    b = e[1]
    return Site(b.op_name, e[2], e[3][e[6]], b.node_id)


# The two commonest VJP kernels (``f(g)``, ``f(g, value)``: every std VJP but a handful) unpack their entry
# in one step and write the tail out (the result checked, or fitted and named; the fan-in sum; the slots
# freed): a shared tail function cost about 2.5% of a 100k-node table's run, one more frame and a dozen
# subscripts per call (docs/performance-calls.md, "Round seven"). The rarer forms share :func:`_land`.
def _b0(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    _, _b, _p, _nm, f, o, to, shape, dt, m, pop, dr = e
    try:
        r = f(c[o])
    except Exception as exc:
        raise vjp_raised(_site(e), exc) from exc
    if r.__class__ is not nd or r.shape != shape or r.dtype is not dt:
        r = fit(r, shape, dt, _site(e))
    if m == 1:
        c[to] = r
    elif m == 2:
        c[to] = c[to] + r
    else:
        c[to] += r
    if pop:
        c[o] = None
    for s in dr:
        v[s] = None


def _b1(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    _, _b, _p, _nm, f, o, to, shape, dt, m, pop, dr, p0 = e
    try:
        r = f(c[o], v[p0])
    except Exception as exc:
        raise vjp_raised(_site(e), exc) from exc
    if r.__class__ is not nd or r.shape != shape or r.dtype is not dt:
        r = fit(r, shape, dt, _site(e))
    if m == 1:
        c[to] = r
    elif m == 2:
        c[to] = c[to] + r
    else:
        c[to] += r
    if pop:
        c[o] = None
    for s in dr:
        v[s] = None


def _land(v: list[Any], c: list[Any], e: tuple[Any, ...], r: Any) -> None:
    """The tail the rarer VJP kernels share: what ``_b0`` and ``_b1`` write out."""
    to, shape, dt, m = e[6], e[7], e[8], e[9]
    if r.__class__ is not nd or r.shape != shape or r.dtype is not dt:
        r = fit(r, shape, dt, _site(e))
    if m == 1:
        c[to] = r
    elif m == 2:
        c[to] = c[to] + r
    else:
        c[to] += r
    if e[10]:
        c[e[5]] = None
    for s in e[11]:
        v[s] = None


def _b0k(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    try:
        r = e[4](c[e[5]], e[12])
    except Exception as exc:
        raise vjp_raised(_site(e), exc) from exc
    _land(v, c, e, r)


def _b1k(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    try:
        r = e[4](c[e[5]], v[e[12]], e[13])
    except Exception as exc:
        raise vjp_raised(_site(e), exc) from exc
    _land(v, c, e, r)


def _b2(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    try:
        r = e[4](c[e[5]], v[e[12]], v[e[13]])
    except Exception as exc:
        raise vjp_raised(_site(e), exc) from exc
    _land(v, c, e, r)


def _b2k(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    try:
        r = e[4](c[e[5]], v[e[12]], v[e[13]], e[14])
    except Exception as exc:
        raise vjp_raised(_site(e), exc) from exc
    _land(v, c, e, r)


def _b3(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    try:
        r = e[4](c[e[5]], v[e[12]], v[e[13]], v[e[14]])
    except Exception as exc:
        raise vjp_raised(_site(e), exc) from exc
    _land(v, c, e, r)


def _b3k(v: list[Any], c: list[Any], h: list[Any], e: tuple[Any, ...]) -> None:
    try:
        r = e[4](c[e[5]], v[e[12]], v[e[13]], v[e[14]], e[15])
    except Exception as exc:
        raise vjp_raised(_site(e), exc) from exc
    _land(v, c, e, r)


#: VJP kernels by (values read, whether a constant follows them).
VJP: dict[tuple[int, bool], Kernel] = {
    (0, False): _b0,
    (1, False): _b1,
    (2, False): _b2,
    (3, False): _b3,
    (0, True): _b0k,
    (1, True): _b1k,
    (2, True): _b2k,
    (3, True): _b3k,
}


def vjp_form(spec: Any) -> tuple[Kernel, tuple[int, ...], str | None] | None:
    """The written-out kernel of a terse VJP's ``__ge_direct__`` spec, the positions it reads in
    ``(out, *inputs)``, and its constant (``"attrs"``, ``"argnum"`` or None); None for any other form."""
    if not spec or spec[0] != (None, "g"):
        return None
    wheres: list[int] = []
    constant = None
    for keyword, what in spec[1:]:
        if keyword is not None or constant is not None:  # a keyword, or anything after the constant
            return None
        if what == "out":
            wheres.append(0)
        elif isinstance(what, int) and not isinstance(what, bool):
            wheres.append(what + 1)
        elif what == "attrs" or isinstance(what, tuple):
            constant = "attrs" if what == "attrs" else "argnum"
        else:
            return None
    kernel = VJP.get((len(wheres), constant is not None))
    return None if kernel is None else (kernel, tuple(wheres), constant)
