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
    if grad_output is not None and wrt is not None:
        backward, kept_for_backward = backward_steps(steps, specs, n_sources, wrt, grad_output)
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
    drops: list[list[int]] = [[] for _ in reads]
    for slot, k in last_reader.items():
        if slot not in keep and slot >= n_sources:
            drops[k].append(slot)
    return [tuple(d) for d in drops]


def backward_steps(
    steps: Sequence[Step], specs: Sequence[TensorSpec], n_sources: int, wrt: Sequence[int], output: int
) -> tuple[list[BackwardStep], set[int]]:
    """The reverse pass from ``output`` to ``wrt``, and the forward slots it reads.

    Only nodes on a path from a ``wrt`` slot to ``output`` take part, in
    reverse topological order; each releases the forward values no later
    backward step reads.
    """
    wrt_slots = set(wrt)
    # A slot needs a cotangent if it depends on a wrt value and the output depends on it.
    depends_on_wrt = [False] * len(specs)
    for s in wrt_slots:
        depends_on_wrt[s] = True
    for step in steps:
        if any(depends_on_wrt[i] for i in step.ins):
            depends_on_wrt[step.out] = True
    reaches_output = _ancestors(steps, len(specs), [output])
    active = [step for step in reversed(steps) if depends_on_wrt[step.out] and reaches_output[step.out]]
    prepared = []
    kept: set[int] = set()
    reads_of = _ReadsByForm()
    for step in active:
        grads = _differentiated_inputs(step, specs, depends_on_wrt)
        flags, reads_out = reads_of(step.op, len(step.ins))
        reads = [i for i, needed in zip(step.ins, flags) if needed]
        if reads_out:
            reads.append(step.out)
        prepared.append((step, grads, reads, flags, reads_out))
        kept.update(reads)
    release_at = _last_readers([reads for _, _, reads, _, _ in prepared], set(), n_sources)
    result = [
        BackwardStep(
            step.node_id,
            step.op.name,
            step.attrs,
            step.out,
            step.ins,
            tuple(grads),
            step.out in wrt_slots,
            release_at[k],
            flags,
            reads_out,
        )
        for k, (step, grads, _, flags, reads_out) in enumerate(prepared)
    ]
    return result, kept


class _ReadsByForm:
    """Per (op, input count): which inputs and whether the output any VJP reads, computed once per form."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, int], tuple[tuple[bool, ...], bool]] = {}

    def __call__(self, op: OpDef, n_inputs: int) -> tuple[tuple[bool, ...], bool]:
        key = (id(op), n_inputs)  # ops live as long as the plan: their ids are stable while this runs
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = (tuple(op.needs_input(p) for p in range(n_inputs)), op.needs_output())
        return known


def _differentiated_inputs(
    step: Step, specs: Sequence[TensorSpec], depends_on_wrt: Sequence[bool]
) -> list[tuple[int, int, Any]]:
    """(position, slot, vjp) of the inputs of ``step`` that get a contribution."""
    op = step.op
    grads = []
    for position, slot in enumerate(step.ins):
        vjp = op.vjp_for(position)
        if vjp is None or not depends_on_wrt[slot] or specs[slot].dtype.kind != "f":
            continue
        if op.variadic and position >= len(op.inputs) - 1:
            vjp = functools.partial(vjp, argnum=position)
        grads.append((position, slot, vjp))
    return grads


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
