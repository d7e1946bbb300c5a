"""The reverse pass of generated code: one VJP contribution after another, added into each input's cotangent.

Part of :mod:`graphengine.engine.codegen` (it writes the lines into its
``_Writer``). A contribution is a call of the plugin's VJP followed by the
inline result check; an identity VJP's cotangent passed on as a name; or an
inline expression (:mod:`graphengine.engine.inline`) written out as ufunc
calls, with no check where its result is certain to fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator, Sequence

import numpy as np

from ..ops.expr import Apply
from ..ops.vjp import VJPSite
from .inline import emit_expr
from .schedule import Schedule

if TYPE_CHECKING:
    from .codegen import _Writer


def saving_slots(schedule: Schedule) -> set[int]:
    """Output slots of the nodes whose op has ``forward_saving`` and whose VJPs this pass runs."""
    differentiated = {schedule.backward[j].out for j in schedule.live} if schedule.grad_output >= 0 else set()
    return {
        step.out for step, _ in schedule.forward if step.op.forward_saving is not None and step.out in differentiated
    }


def emit_backward(
    writer: _Writer,
    schedule: Schedule,
    live: Sequence[int],
    t_backward: int,
    names: Sequence[str],
    shapes: Sequence[tuple[int, ...] | None],
    dtypes: Sequence[np.dtype],
    record: bool,
    saving: set[int],
) -> Generator[None, None, set[int]]:
    """Emit the reverse pass; return the slots that received a cotangent (``saving``: :func:`saving_slots`)."""
    ns, emit, facts = writer.ns, writer.emit, writer.facts
    seed_slot = schedule.grad_output
    emit(f"g{seed_slot} = seed(s{seed_slot})", ("seed",))  # seed(out) checks the output and makes its cotangent
    if seed_slot in facts.certain:  # the seed has the output's shape and dtype, exactly
        facts.certain_g.add(seed_slot)
    writer.free(t_backward - 1)
    received: dict[int, int] = {}
    op_of = {}
    for k, (forward_step, _) in enumerate(schedule.forward):
        op_of[forward_step.out] = forward_step.op
        if k % 2000 == 1999:
            yield
    for k, j in enumerate(live):
        step = schedule.backward[j]
        op = op_of.get(step.out)
        ns[f"b{j}"] = step.attrs
        out_arg = f"s{step.out}" if step.reads_out else "None"
        saved = f"r{step.out}" if step.out in saving else None
        in_args = ", ".join(f"s{i}" if needed else "None" for i, needed in zip(step.ins, step.reads))
        names_c = []
        for n_grad, (position, slot, vjp) in enumerate(step.grads):
            site = VJPSite(step.op_name, position, names[slot], step.node_id)
            static = shapes[slot]
            shape = f"h{slot}" if static is None else repr(tuple(int(d) for d in static))  # a literal
            dt = writer.dtype_local(dtypes[slot])
            writer.fits.append((dtypes[slot], site))
            c = f"c{n_grad}" if record else "c"
            names_c.append(c)
            fit = len(writer.fits) - 1
            check = f"if {c}.__class__ is not nd or {c}.shape != {shape} or {c}.dtype is not {dt}: {c} = fix({c}, {shape}, {fit})"
            fits_as_is = static is not None and shapes[step.out] == static and dtypes[step.out] == dtypes[slot]
            checked = static is not None and len(static) >= 1  # after a check: an array of the static shape
            fresh = False  # the contribution is a new array of our own, named nowhere else
            expr = op.vjp_expr(position) if op is not None else None
            if op is not None and op.vjp_is_identity(position):
                facts.fresh.discard(step.out)  # passed on as it is: its array is now named twice
                # Declared x_bar = g: no plugin code runs, and g already fits the output (it was checked).
                if fits_as_is and not record:
                    c = f"g{step.out}"  # added in as it is: no line of its own
                elif fits_as_is:
                    emit(f"{c} = g{step.out}")
                elif static is not None:  # broadcast, or another dtype: unbroadcast it, or raise, as call_vjp
                    emit(f"{c} = fix(g{step.out}, {shape}, {fit})", ("check", site))
                else:  # a free dimension: the shape is known at run time only, so test it as a call's result
                    emit(f"{c} = g{step.out}")
                    emit(check, ("check", site))
                certain = step.out in facts.certain_g if fits_as_is else checked
            elif expr is not None:  # written out as ufunc calls: no frame; no check where the result must fit
                leaves = _vjp_leaves(expr.leaves(), op, step, shapes, dtypes, facts)
                result = emit_expr(writer, facts, expr, leaves, c, ("vjp", site))
                if result.fits(static, dtypes[slot]):
                    fresh = isinstance(expr, Apply) and not record
                elif result.certain and static is not None and result.dtype == dtypes[slot]:
                    emit(f"{c} = fix({c}, {shape}, {fit})", ("check", site))  # broadcast: the shared unbroadcast
                else:
                    emit(check, ("check", site))
                certain = result.fits(static, dtypes[slot]) or checked
            else:
                facts.fresh.discard(step.out)  # the plugin may return g itself, or keep it
                direct = getattr(vjp, "__ge_direct__", None)  # a terse VJP: call the user's function itself
                ns[f"v{j}_{n_grad}"] = vjp if direct is None else direct[0]
                if direct is None:
                    call = f"g{step.out}, {out_arg}, {in_args}, attrs=b{j}" + (f", saved={saved}" if saved else "")
                else:
                    call = direct_call(direct[1], step, f"b{j}", f"g{step.out}", position)
                emit(f"{c} = v{j}_{n_grad}({call})", ("vjp", site))
                # Every call, cheaply: an exact ndarray of the input's shape and dtype passes as it is, as
                # through fit_cotangent; anything else (to unbroadcast, or wrong) goes through it.
                emit(check, ("check", site))
                certain = checked
            n = received[slot] = received.get(slot, 0) + 1
            _add_in(writer, slot, c, n, fresh, checked, record)
            if n == 1 and certain:
                facts.certain_g.add(slot)
            elif not certain:
                facts.certain_g.discard(slot)
            if n > 1 and c == "c":
                emit(f"del {c}")
        if record:
            emit(f"recorder({j}, g{step.out}, ({''.join(c + ', ' for c in names_c)}))")
            if names_c:
                emit(f"del {', '.join(names_c)}")
        if saved:
            emit(f"del {saved}")
        if not step.keep_cotangent:
            emit(f"del g{step.out}")
        writer.free(t_backward + k)
        if k % 5 == 4:
            yield
    return {seed_slot, *received}


def _add_in(writer: _Writer, slot: int, c: str, n: int, fresh: bool, static: bool, record: bool) -> None:
    """Add contribution ``c`` (the ``n``-th) into ``g<slot>``, in the table's arithmetic."""
    g, facts = f"g{slot}", writer.facts
    if n == 1:
        writer.emit(f"{g} = {c}")
        if fresh:
            facts.fresh.add(slot)
        return
    writer.ns["_u_add"] = np.add
    if slot in facts.fresh and not record:  # our own array: add into it (positional out=: cheaper than +=)
        writer.emit(f"{g} = _u_add({g}, {c}, {g})")
    elif n == 2:
        facts.fresh.discard(slot)
        writer.emit(f"{g} = {g} + {c}")  # a new array: ours to add into from now on
    elif static:
        writer.emit(f"{g} = _u_add({g}, {c}, {g})")  # as += does, with out= by position
    else:
        writer.emit(f"{g} += {c}")


def _vjp_leaves(
    names: set[str], op: Any, step: Any, shapes: Sequence[tuple[int, ...] | None], dtypes: Sequence[np.dtype], facts: Any
) -> dict[str, tuple[str, tuple[int, ...] | None, np.dtype, bool]]:
    """Each name a VJP expression reads: its local, static shape, dtype and whether it is certain."""
    leaves = {}
    for name in names:
        if name == "g":
            leaves[name] = (f"g{step.out}", shapes[step.out], dtypes[step.out], step.out in facts.certain_g)
            continue
        slot = step.out if name == "out" else step.ins[op.inputs.index(name)]
        leaves[name] = (f"s{slot}", shapes[slot], dtypes[slot], slot in facts.certain)
    return leaves


def direct_call(arguments: Sequence[tuple[str | None, Any]], step: Any, attrs: str, g: str, position: int) -> str:
    """The arguments of a direct call (see ``graphengine.ops.terse``): what the function names, nothing else."""
    parts = []
    for keyword, what in arguments:
        if isinstance(what, int):
            expr = f"s{step.ins[what]}"
        elif isinstance(what, tuple):  # ("argnum", position)
            expr = str(position)
        else:
            expr = {"g": g, "out": f"s{step.out}", "attrs": attrs}[what]
        parts.append(expr if keyword is None else f"{keyword}={expr}")
    return ", ".join(parts)
