"""The step interpreter: the reference semantics of a schedule, with every check on."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ExecutionError
from ..ops import format_shape, unbroadcast
from .schedule import BackwardStep
from .trace import Recorder


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
                contribution = _contribution(step, position, slot, vjp, g, out, args, shapes[slot], dtypes[slot], names)
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


def _contribution(
    step: BackwardStep,
    position: int,
    slot: int,
    vjp: Any,
    g: np.ndarray,
    out: Any,
    args: list[Any],
    shape: tuple[int, ...],
    dtype: np.dtype,
    names: Sequence[str],
) -> np.ndarray:
    where = f"node {step.node_id!r} (op {step.op_name!r}), input {position} ({names[slot]!r})"
    try:
        raw = vjp(g, out, *args, attrs=step.attrs)
    except Exception as exc:
        raise ExecutionError(f"{where}: VJP raised {type(exc).__name__}: {exc}") from exc
    contribution = np.asarray(raw)
    try:
        contribution = unbroadcast(contribution, shape)
    except ValueError:
        raise ExecutionError(
            f"{where}: VJP returned shape {contribution.shape}, which does not reduce to the input's shape {shape}"
        ) from None
    if contribution.dtype != dtype:
        raise ExecutionError(f"{where}: VJP returned {contribution.dtype.name} for a {dtype.name} input")
    return contribution


def check_forward_output(value: Any, spec: Any, node_id: str, op_name: str) -> None:
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
