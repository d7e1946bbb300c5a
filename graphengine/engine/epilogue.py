"""The end of a generated call: every gradient made the caller's own, then the return.

What :meth:`Plan._fresh <graphengine.engine.plan.Plan._fresh>` does on the
other runners, written out for one schedule: the generator knows which bound
values and earlier gradients each gradient could be (the same dtype and a
compatible shape), so most identity tests are decided before the call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Collection, Sequence

import numpy as np

from .schedule import Schedule

if TYPE_CHECKING:
    from .codegen import _Writer


#: Past this many ``is`` tests for one gradient, the ownership check uses one set of ids instead: with many
#: parameters of one shape (a 200-branch fan-out), inline tests would grow as wrt x bound, in source and in time.
INLINE_ALIAS_TESTS = 4


def owned_gradients(
    writer: _Writer,
    schedule: Schedule,
    has_g: set[int],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    fresh: Collection[int] = (),
) -> list[str]:
    """Emit what makes every gradient the caller's own; return each ``wrt`` position's expression.

    As ``Plan._fresh`` does on the other runners: a gradient that is not an
    exact, writeable ndarray owning its data, or is a bound value (user data, a
    parameter) or an earlier position's gradient, is copied. Which objects it
    can be is known here: a gradient has passed its check (its shape and
    dtype), so only a bound value or an earlier gradient of the same dtype and
    a compatible shape can be the same object; zeros made here are fresh.
    Where that leaves more than ``INLINE_ALIAS_TESTS`` candidates for some
    gradient, identity is tested against one set of ids, as ``Plan._fresh`` does.
    A gradient in ``fresh`` is an array the program made and named nowhere else
    (an inline expression's result, or a sum into one; see
    :mod:`graphengine.engine.backward`): it is the caller's already, and no other
    gradient can be it, so it gets no test.
    """
    writer.ns["_copy"] = np.array
    exprs: list[str] = []
    seen: set[int] = set()  # gradient slots already made owned
    objects = _SameIndex(shapes, dtypes)  # what each gradient could be: the bound values, then earlier gradients
    for b in schedule.bound:
        objects.add(b, f"values[{b}]")
    by_set = _many_candidates(schedule, has_g, shapes, dtypes, fresh)
    if by_set:
        writer.emit("taken = {" + "".join(f"id(values[{b}]), " for b in schedule.bound) + "}")
    for s in schedule.wrt:
        if s not in has_g:
            writer.ns[f"D{s}"] = dtypes[s]
            if shapes[s] is not None:
                writer.ns[f"S{s}"] = tuple(shapes[s])  # type: ignore[arg-type]
            exprs.append(f"_zeros({'h' if shapes[s] is None else 'S'}{s}, D{s})")
            continue
        dt = writer.dtype_local(dtypes[s])
        if s in seen:  # the same value under a second name: always a second array
            exprs.append(f"_copy(g{s}, dtype={dt})")
            continue
        if s in fresh:
            seen.add(s)
            exprs.append(f"g{s}")
            continue
        tests = [f"g{s}.__class__ is not nd", f"g{s}.base is not None", f"not g{s}.flags.writeable"]
        if by_set:
            tests.append(f"id(g{s}) in taken")
        else:
            tests += [f"g{s} is {name}" for name in objects.candidates(s)]
        writer.emit(f"if {' or '.join(tests)}: g{s} = _copy(g{s}, dtype={dt})")
        if by_set:
            writer.emit(f"taken.add(id(g{s}))")
        objects.add(s, f"g{s}")
        seen.add(s)
        exprs.append(f"g{s}")
    return exprs


class _SameIndex:
    """Objects by (dtype, shape), so that the ones a slot could be the same as are found without a scan.

    Two slots can hold the same array when their dtypes are equal and their
    shapes are equal or either is free (None).
    """

    def __init__(self, shapes: Sequence[tuple[int, ...] | None], dtypes: Sequence[np.dtype]) -> None:
        self.shapes, self.dtypes = shapes, dtypes
        self.exact: dict[tuple[np.dtype, tuple[int, ...] | None], list[str]] = {}
        self.by_dtype: dict[np.dtype, list[str]] = {}

    def add(self, slot: int, name: str) -> None:
        self.exact.setdefault((self.dtypes[slot], self.shapes[slot]), []).append(name)
        self.by_dtype.setdefault(self.dtypes[slot], []).append(name)

    def candidates(self, slot: int) -> list[str]:
        dtype, shape = self.dtypes[slot], self.shapes[slot]
        if shape is None:
            return self.by_dtype.get(dtype, [])
        return self.exact.get((dtype, shape), []) + self.exact.get((dtype, None), [])

    def count(self, slot: int) -> int:
        dtype, shape = self.dtypes[slot], self.shapes[slot]
        if shape is None:
            return len(self.by_dtype.get(dtype, ()))
        return len(self.exact.get((dtype, shape), ())) + len(self.exact.get((dtype, None), ()))


def _many_candidates(
    schedule: Schedule,
    has_g: set[int],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    fresh: Collection[int],
) -> bool:
    """Whether some gradient could be the same object as more than ``INLINE_ALIAS_TESTS`` others."""
    objects = _SameIndex(shapes, dtypes)
    for b in schedule.bound:
        objects.add(b, "")
    made: set[int] = set()
    for s in schedule.wrt:
        if s in has_g and s not in made and s not in fresh:
            if objects.count(s) > INLINE_ALIAS_TESTS:
                return True
            objects.add(s, "")
            made.add(s)
    return False


def emit_return(writer: _Writer, schedule: Schedule, names: Sequence[str], grads: Sequence[str]) -> None:
    """Return the outputs and gradients: as tuples, or with ``keyed`` as the dicts a GradResult holds.

    The dicts' keys are globals (``n<k>``), not literals: names never go into the source.
    """
    wrt = schedule.wrt[: len(grads)]
    keys = []
    for k, s in enumerate((*schedule.outputs, *wrt)):
        writer.ns[f"n{k}"] = names[s]
        keys.append(f"n{k}")
    outs = [f"s{s}" for s in schedule.outputs]
    out_keys, grad_keys = keys[: len(outs)], keys[len(outs) :]
    out_dict = ", ".join(f"{k}: {v}" for k, v in zip(out_keys, outs))
    grad_dict = ", ".join(f"{k}: {v}" for k, v in zip(grad_keys, grads))
    tuples = f"({''.join(o + ', ' for o in outs)}), ({''.join(g + ', ' for g in grads)})"
    # One line, so that it is in the last chunk whatever the chunk size.
    writer.emit(f"return ({{{out_dict}}}, {{{grad_dict}}}) if keyed else ({tuples})")
