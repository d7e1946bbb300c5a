"""The reverse-mode pass, and the trace it can record.

The pass walks a compiled schedule backwards. For each step it *pops* the
cotangent of the step's output, asks each differentiable input's VJP for a
contribution, reduces it to the input's shape (:func:`unbroadcast`, the only
place that happens) and *adds* it into that input's cotangent. Adding is what
makes fan-out right: a value read by several nodes receives one contribution
per reader, and its gradient is their sum.

Nothing here knows about particular ops; everything comes from the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import ExecutionError
from .ops import unbroadcast

__all__ = ["BackwardStep", "Trace", "TraceStep", "FanIn", "backward"]


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


@dataclass
class TraceStep:
    """What one node received and what it sent to each input."""

    node: str
    op: str
    cotangent: np.ndarray
    contributions: list[tuple[str, int, np.ndarray]]  # (input name, position, contribution)


@dataclass
class FanIn:
    """Contributions that met at one value, and their sum (its gradient)."""

    name: str
    contributions: list[tuple[str, np.ndarray]]  # (from node, contribution)
    total: np.ndarray


@dataclass
class Trace:
    """A recorded backward pass: plain data, see :meth:`to_json`."""

    output: str
    seed: np.ndarray
    steps: list[TraceStep] = field(default_factory=list)
    fan_in: dict[str, FanIn] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The trace as JSON-ready dicts and nested lists."""
        return {
            "output": self.output,
            "seed": self.seed.tolist(),
            "steps": [
                {
                    "node": s.node,
                    "op": s.op,
                    "cotangent": np.asarray(s.cotangent).tolist(),
                    "contributions": [
                        {"to": name, "position": pos, "value": np.asarray(c).tolist()}
                        for name, pos, c in s.contributions
                    ],
                }
                for s in self.steps
            ],
            "fan_in": {
                name: {
                    "contributions": [{"from": src, "value": np.asarray(c).tolist()} for src, c in f.contributions],
                    "total": np.asarray(f.total).tolist(),
                }
                for name, f in self.fan_in.items()
            },
        }


def backward(
    steps: Sequence[BackwardStep],
    values: list[Any],
    shapes: Sequence[Any],
    dtypes: Sequence[np.dtype],
    names: Sequence[str],
    seed_slot: int,
    seed: np.ndarray,
    trace: Trace | None = None,
) -> list[Any]:
    """Run the reverse pass; return the cotangent of every slot (None where none).

    ``values`` holds the forward values and is emptied as the pass goes, so
    memory falls as fast as it can. ``shapes`` holds each slot's run-time shape.
    """
    cotangents: list[Any] = [None] * len(values)
    owned = [False] * len(values)  # True once a cotangent is an array we allocated, safe to add into in place
    cotangents[seed_slot] = seed
    received: dict[int, list[tuple[str, np.ndarray]]] | None = {} if trace is not None else None
    for step in steps:
        g = cotangents[step.out]
        if not step.keep_cotangent:
            cotangents[step.out] = None  # read pops: the cotangent is consumed here
        if g is not None:
            out = values[step.out]
            args = [values[i] for i in step.ins]
            sent = [] if trace is not None else None
            for position, slot, vjp in step.grads:
                contribution = _contribution(step, position, slot, vjp, g, out, args, shapes[slot], dtypes[slot], names)
                if sent is not None and received is not None:
                    sent.append((names[slot], position, contribution))
                    received.setdefault(slot, []).append((step.node_id, contribution))
                previous = cotangents[slot]
                if previous is None:
                    cotangents[slot] = contribution
                elif owned[slot]:
                    np.add(previous, contribution, out=previous)
                else:
                    total = np.add(previous, contribution)
                    cotangents[slot] = total
                    owned[slot] = isinstance(total, np.ndarray)
            if trace is not None and sent is not None:
                trace.steps.append(TraceStep(step.node_id, step.op_name, g, sent))
        for slot in step.release:
            values[slot] = None
    if trace is not None and received is not None:
        for slot, parts in received.items():
            if len(parts) > 1:
                trace.fan_in[names[slot]] = FanIn(names[slot], parts, sum(p for _, p in parts[1:]) + parts[0][1])
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
