"""The step interpreter: the reference semantics of a schedule, with every check on.

:class:`Interpreter` is called exactly like a generated
:class:`~graphengine.engine.codegen.Program`, so a plan runs either one the
same way. It checks every op's output against its shape rule, and every VJP
result through :func:`graphengine.ops.vjp.call_vjp`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ExecutionError
from ..ops import TensorSpec, format_shape
from ..ops.vjp import VJPSite, call_vjp
from .schedule import BackwardStep, Schedule, Step
from .trace import Recorder


class Interpreter:
    """A schedule run step by step: ``interpreter(values, seed, recorder) -> (outputs, gradients)``.

    Parameters
    ----------
    schedule : Schedule
    specs : sequence of TensorSpec
        Per slot, in the plan's dtype.
    names : sequence of str
        Per slot, for messages.

    Notes
    -----
    ``values`` holds one value per slot (None where unbound) and is emptied as
    the pass goes. ``seed(out)`` returns the cotangent of the differentiated
    value; without it only the forward pass runs and the gradients are ``()``.
    ``recorder(j, g, contributions)`` is told each backward step's work.
    """

    def __init__(self, schedule: Schedule, specs: Sequence[TensorSpec], names: Sequence[str]) -> None:
        self.schedule, self.specs, self.names = schedule, specs, names
        self.dtypes = [spec.dtype for spec in specs]

    def __call__(
        self, values: list[Any], seed: Callable[[Any], np.ndarray] | None = None, recorder: Recorder | None = None
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        schedule = self.schedule
        shapes: list[Any] | None = None if seed is None else [None] * len(values)
        forward(schedule.forward, values, self.specs, shapes)
        outputs = tuple(values[s] for s in schedule.outputs)
        if seed is None or shapes is None:
            return outputs, ()
        g = seed(values[schedule.grad_output])
        cotangents = backward(
            schedule.backward, values, shapes, self.dtypes, self.names, schedule.grad_output, g, recorder
        )
        grads = tuple(
            cotangents[s] if cotangents[s] is not None else np.zeros(shapes[s], dtype=self.dtypes[s])  # not on a path
            for s in schedule.wrt
        )
        return outputs, grads


def forward_failed(node_id: str, op_name: str, exc: BaseException) -> ExecutionError:
    """The error for an op's forward that raised ``exc`` (the caller chains it)."""
    return ExecutionError(f"node {node_id!r} (op {op_name!r}) failed: {type(exc).__name__}: {exc}")


def forward(
    steps: Sequence[tuple[Step, tuple[int, ...]]],
    values: list[Any],
    specs: Sequence[TensorSpec],
    shapes: list[Any] | None,
) -> None:
    """Run ``(step, slots to drop after it)`` in order, filling ``values`` (and ``shapes`` if given)."""
    if shapes is not None:
        for slot, value in enumerate(values):
            if value is not None:
                shapes[slot] = value.shape
    for step, drop in steps:
        try:
            out = step.op.forward(*[values[i] for i in step.ins], attrs=step.attrs)
        except Exception as exc:
            raise forward_failed(step.node_id, step.op.name, exc) from exc
        check_forward_output(out, specs[step.out], step.node_id, step.op.name)
        values[step.out] = out
        if shapes is not None:
            shapes[step.out] = np.shape(out)
        for slot in drop:
            values[slot] = None


def backward(
    steps: Sequence[BackwardStep],
    values: list[Any],
    shapes: Sequence[Any],
    dtypes: Sequence[np.dtype],
    names: Sequence[str],
    seed_slot: int,
    seed: np.ndarray,
    recorder: "Recorder | None" = None,
) -> list[Any]:
    """Run the reverse pass; return the cotangent of every slot (None where none).

    ``values`` holds the forward values and is emptied as the pass goes, so
    memory falls as fast as it can. ``shapes`` holds each slot's run-time shape.
    ``recorder`` is told each step's cotangent and contributions, as the
    generated code tells it.
    """
    cotangents: list[Any] = [None] * len(values)
    owned = [False] * len(values)  # True once a cotangent is an array we allocated, safe to add into in place
    cotangents[seed_slot] = seed
    for j, step in enumerate(steps):
        g = cotangents[step.out]
        if not step.keep_cotangent:
            cotangents[step.out] = None  # read pops: the cotangent is consumed here
        if g is not None:
            out = values[step.out]
            args = [values[i] for i in step.ins]
            sent = []
            for position, slot, vjp in step.grads:
                site = VJPSite(step.op_name, position, names[slot], step.node_id)
                contribution = call_vjp(
                    vjp, g, out, args, step.attrs, shape=shapes[slot], dtype=dtypes[slot], site=site
                )
                sent.append(contribution)
                previous = cotangents[slot]
                if previous is None:
                    cotangents[slot] = contribution
                elif owned[slot]:
                    np.add(previous, contribution, out=previous)
                else:
                    total = np.add(previous, contribution)
                    cotangents[slot] = total
                    owned[slot] = isinstance(total, np.ndarray)
            if recorder is not None:
                recorder(j, g, tuple(sent))
        for slot in step.release:
            values[slot] = None
    return cotangents


def check_forward_output(value: Any, spec: TensorSpec, node_id: str, op_name: str) -> None:
    """Raise, naming the node, when ``value`` breaks the op's shape rule (``spec``)."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    fits = (
        shape is not None
        and dtype == spec.dtype
        and len(shape) == len(spec.shape)
        and all(d is None or d == n for n, d in zip(shape, spec.shape))
    )
    if not fits:
        promised = f"{spec.dtype.name} {format_shape(spec.shape)}"
        where = f"node {node_id!r} (op {op_name!r})"
        if shape is None:
            raise ExecutionError(
                f"{where} did not return a numpy array (got a {type(value).__name__}); its shape rule promised {promised}"
            )
        raise ExecutionError(f"{where} returned {dtype} {format_shape(shape)}, but its shape rule promised {promised}")
