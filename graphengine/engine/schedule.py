"""Schedules: which steps a request runs, in which order, and when each value can be dropped.

Everything here is a pure function of the plan's steps and slot specs; a
:class:`Schedule` is computed once per request and cached by the plan.
Slots are numbered sources first (inputs, parameters, constants), then one
per node, so a slot is computed by a step exactly when it is ``>= n_sources``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from pydantic import BaseModel

from ..ops import OpDef, TensorSpec


class BackwardStep(NamedTuple):
    """One node's share of the reverse pass, fixed when the plan is compiled.

    A named tuple, not a frozen dataclass: a 10k-node graph makes 10,000 of them per request, and a
    frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost 5x a tuple's.
    """

    node_id: str
    op_name: str
    attrs: Any
    out: int  # slot of the node's output
    ins: tuple[int, ...]  # slots of all its inputs, in order
    grads: tuple[tuple[int, int, Any], ...]  # (position, input slot, vjp) for inputs that need a gradient
    keep_cotangent: bool  # the output is itself asked for (in wrt)
    release: tuple[int, ...]  # forward slots no later step reads
    reads: tuple[bool, ...] = ()  # per input: does any VJP read its value (else None is passed)
    reads_out: bool = True  # does any VJP read the forward output


class Step(NamedTuple):
    """One node of the forward pass (a named tuple, like :class:`BackwardStep`, for the same reason)."""

    node_id: str
    op: OpDef
    attrs: BaseModel
    ins: tuple[int, ...]
    out: int
    input_names: tuple[str, ...]


#: Kept for callers that imported it; nothing reads it any more. A schedule of any size runs the same
#: way (see :meth:`graphengine.engine.plan.Plan._runner`): there is no size past which calls slow down.
CODEGEN_MAX_STEPS = 40_000


@dataclass
class Schedule:
    """What one request runs; also caches its generated code."""

    forward: tuple[tuple[Step, tuple[int, ...]], ...]  # (step, slots to drop after it), for the interpreter
    outputs: tuple[int, ...]
    backward: tuple[BackwardStep, ...]
    grad_output: int  # -1: forward only
    wrt: tuple[int, ...] = ()
    bound: tuple[int, ...] = ()  # input/parameter/constant slots the pass reads
    required: frozenset[int] = frozenset()  # the same, as a set: inputs outside it need no value
    # Generated code (codegen.Program), by `record`: cached here, typed loosely so schedules need not know codegen.
    programs: dict[bool, Callable[..., Any]] = field(default_factory=dict)
    ran: set[bool] = field(default_factory=set)  # `record` values whose first call has run
    table: Any = None  # its table.Table, built on its first call
    generation: Any = None  # codegen.generation() under way, a slice per call (see Plan._runner)
    budget: float = 0.0  # seconds the current call may spend on it
    _live: list[int] | None = None

    @property
    def live(self) -> list[int]:
        """:func:`live_backward` of this schedule, computed once."""
        if self._live is None:
            self._live = live_backward(self.backward, self.grad_output) if self.grad_output >= 0 else []
        return self._live

    @property
    def size(self) -> int:
        return len(self.forward) + len(self.backward)


def build_schedule(
    steps: Sequence[Step],
    specs: Sequence[TensorSpec],
    n_sources: int,
    outputs: tuple[int, ...],
    wrt: tuple[int, ...] | None,
    grad_output: int | None,
) -> Schedule:
    """The schedule of one request: ``outputs`` forward, and reverse mode from ``grad_output`` to ``wrt``.

    Parameters
    ----------
    steps : sequence of Step
        Every node, in topological order.
    specs : sequence of TensorSpec
        Per slot (only the dtype's kind is read: non-float values get no gradient).
    n_sources : int
        Number of source slots (inputs, parameters, constants), numbered first.
    outputs : tuple of int
        Slots to return.
    wrt : tuple of int or None
        Slots to differentiate with respect to; None: forward only.
    grad_output : int or None
        The slot to differentiate; None: forward only.

    Examples
    --------
    >>> import graphengine
    >>> plan = graphengine.load("examples/seed_network.json").compile()
    >>> plan.names[:6]  # the sources; then one slot per node
    ['x', 'target', 'W_h', 'b_h', 'W_o', 'b_o']
    >>> loss, w_o = plan.slot["loss"], plan.slot["W_o"]
    >>> s = build_schedule(plan.steps, plan.specs, 6, (loss,), (w_o,), loss)
    >>> [step.node_id for step, _ in s.forward], [step.node_id for step in s.backward]
    (['h_pre', 'h', 'y_pre', 'y', 'loss'], ['loss', 'y', 'y_pre'])
    """
    wrt_slots = list(wrt) if wrt is not None else []
    roots = list(outputs) + ([grad_output] if grad_output is not None else []) + wrt_slots
    needed = _ancestors(steps, len(specs), roots)
    forward_steps = [step for step in steps if needed[step.out]]
    backward: list[BackwardStep] = []
    kept_for_backward: set[int] = set()
    live = None
    if grad_output is not None and wrt is not None:
        backward, kept_for_backward, live = _reverse_pass(steps, specs, n_sources, wrt, grad_output)
    # Drop each forward value after its last forward reader, unless a VJP or the caller needs it.
    drops = _last_readers([step.ins for step in forward_steps], set(outputs) | kept_for_backward, n_sources)
    sources = tuple(s for s in range(n_sources) if needed[s])
    return Schedule(
        tuple(zip(forward_steps, drops)),
        tuple(outputs),
        tuple(backward),
        grad_output if grad_output is not None else -1,
        tuple(wrt_slots),
        sources,
        frozenset(sources),
        _live=live,
    )


def _ancestors(steps: Sequence[Step], n: int, roots: Sequence[int]) -> list[bool]:
    """Per slot: is it one of ``roots`` or read, directly or not, by one? One reverse sweep."""
    needed = [False] * n
    for s in roots:
        needed[s] = True
    for step in reversed(steps):
        if needed[step.out]:
            for i in step.ins:
                needed[i] = True
    return needed


def _last_readers(reads: Sequence[Sequence[int]], keep: set[int], n_sources: int) -> list[tuple[int, ...]]:
    """Per step (given the slots each reads): the computed slots outside ``keep`` no later step reads."""
    last_reader: dict[int, int] = {}
    for k, slots in enumerate(reads):
        for i in slots:
            last_reader[i] = k
    drops: list[tuple[int, ...]] = [()] * len(reads)  # most steps drop one slot or none: no list per step
    for slot, k in last_reader.items():
        if slot >= n_sources and slot not in keep:
            drops[k] += (slot,)
    return drops


def _reverse_pass(
    steps: Sequence[Step], specs: Sequence[TensorSpec], n_sources: int, wrt: Sequence[int], output: int
) -> tuple[list[BackwardStep], set[int], list[int]]:
    """The reverse pass from ``output`` to ``wrt``, the forward slots it reads, and :func:`live_backward`
    of it, in one forward and one reverse sweep.

    Only nodes on a path from a ``wrt`` slot to ``output`` take part, in reverse topological order; each
    releases the forward values no later backward step reads.

    What an op's VJPs read and which of its inputs have one is worked out once per (op, input count);
    each step then only filters its inputs (does it depend on ``wrt``, is it a float).
    """
    n = len(specs)
    wrt_slots = set(wrt)
    # A slot needs a cotangent if it depends on a wrt value and the output depends on it.
    depends = [False] * n
    for s in wrt_slots:
        depends[s] = True
    for _, _, _, ins, out, _ in steps:  # unpacked: a named tuple's fields by name cost a lookup each
        for i in ins:
            if depends[i]:
                depends[out] = True
                break
    differentiable = [d and spec.dtype.kind == "f" for d, spec in zip(depends, specs)]
    reaches = [False] * n  # the output depends on it: filled as the reverse sweep goes (readers come first)
    reaches[output] = True
    has_g = [False] * n  # receives a cotangent (live_backward's set)
    has_g[output] = True
    forms: dict[tuple[int, int], tuple[tuple[bool, ...], bool, tuple[tuple[int, Any], ...], tuple[int, ...]]] = {}
    rows: list[list[Any]] = []  # BackwardStep fields, release filled in once every read is known
    live: list[int] = []
    last_reader: dict[int, int] = {}  # forward slot -> the last backward step that reads it
    for node_id, op, attrs, ins, out, _ in reversed(steps):
        if not reaches[out]:
            continue
        for i in ins:
            reaches[i] = True
        if not depends[out]:
            continue
        form = forms.get((id(op), len(ins)))  # ops live as long as the plan: their ids are stable meanwhile
        if form is None:
            form = forms[(id(op), len(ins))] = _form(op, len(ins))
        flags, reads_out, candidates, read_positions = form
        grads: tuple[tuple[int, int, Any], ...] = ()
        for p, vjp in candidates:
            if differentiable[ins[p]]:
                grads += ((p, ins[p], vjp),)
        k = len(rows)
        if has_g[out]:
            live.append(k)
            for _, slot, _ in grads:
                has_g[slot] = True
        for p in read_positions:
            last_reader[ins[p]] = k
        if reads_out:
            last_reader[out] = k
        rows.append([node_id, op.name, attrs, out, ins, grads, out in wrt_slots, (), flags, reads_out])
    for slot, k in last_reader.items():
        if slot >= n_sources:
            rows[k][7] += (slot,)  # release: no later backward step reads it
    new = tuple.__new__  # a named tuple's own __new__ is Python code, paid once per step
    return [new(BackwardStep, row) for row in rows], set(last_reader), live


def _form(op: OpDef, n_inputs: int) -> tuple[tuple[bool, ...], bool, tuple[tuple[int, Any], ...], tuple[int, ...]]:
    """Of an op with ``n_inputs`` inputs: which inputs its VJPs read, whether they read the output,
    (position, vjp) of every input that has a VJP (a variadic input's with its ``argnum`` bound), and
    the positions read."""
    flags = tuple(op.needs_input(p) for p in range(n_inputs))
    read_positions = tuple(p for p in range(n_inputs) if flags[p])
    candidates = []
    for position in range(n_inputs):
        vjp = op.vjp_for(position)
        if vjp is None:
            continue
        if op.variadic and position >= len(op.inputs) - 1:
            vjp = functools.partial(vjp, argnum=position)
        candidates.append((position, vjp))
    return flags, op.needs_output(), tuple(candidates), read_positions


def live_backward(steps: Sequence[BackwardStep], seed_slot: int) -> list[int]:
    """Indices of the backward steps whose output receives a cotangent, starting from ``seed_slot``.

    The interpreter skips the others as it goes (their cotangent is None); the
    generated code leaves them out.
    """
    has_g = {seed_slot}
    live = []
    for j, step in enumerate(steps):
        if step.out in has_g:
            live.append(j)
            has_g.update(slot for _, slot, _ in step.grads)
    return live
