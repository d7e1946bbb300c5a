"""Schedules: which steps a request runs, in which order, and when each value can be dropped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..ops import OpDef

if TYPE_CHECKING:
    from .codegen import Program


@dataclass(frozen=True)
class BackwardStep:
    """One node's share of the reverse pass, fixed when the plan is compiled."""

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


@dataclass(frozen=True)
class Step:
    """One node of the forward pass."""

    node_id: str
    op: OpDef
    attrs: BaseModel
    ins: tuple[int, ...]
    out: int
    input_names: tuple[str, ...]


#: Schedules with more steps than this run through the step-by-step interpreter
#: instead of generated code: compiling the generated source costs about 10 µs per
#: line, which is not worth it for one-off runs of huge graphs.
CODEGEN_MAX_STEPS = 40_000


@dataclass
class _Schedule:
    forward: tuple[tuple[Step, tuple[int, ...]], ...]  # (step, slots to drop after it), for the interpreter
    outputs: tuple[int, ...]
    backward: tuple[BackwardStep, ...]
    grad_output: int
    wrt: tuple[int, ...] = ()
    bound: tuple[int, ...] = ()  # input/parameter/constant slots the pass reads
    required: frozenset[int] = frozenset()  # the same, as a set: inputs outside it need no value
    programs: dict[bool, Program] = field(default_factory=dict)  # generated code, by `record`
    verified: set[bool] = field(default_factory=set)  # `record` values that ran once on the fully checked interpreter
