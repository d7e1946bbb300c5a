"""The recorded backward pass: what each node received and sent, and where contributions met."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .schedule import BackwardStep


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


class Recorder:
    """Builds a :class:`Trace` from ``recorder(j, g, contributions)`` calls, made by the
    generated code and by the step interpreter alike."""

    def __init__(self, steps: Sequence[BackwardStep], names: Sequence[str], trace: Trace) -> None:
        self.steps, self.names, self.trace = steps, names, trace
        self.received: dict[int, list[tuple[str, np.ndarray]]] = {}

    def __call__(self, j: int, g: np.ndarray, contributions: tuple[np.ndarray, ...]) -> None:
        step = self.steps[j]
        sent = []
        for (position, slot, _), c in zip(step.grads, contributions):
            sent.append((self.names[slot], position, c))
            self.received.setdefault(slot, []).append((step.node_id, c))
        self.trace.steps.append(TraceStep(step.node_id, step.op_name, g, sent))

    def finish(self) -> Trace:
        """Add the fan-in records (values that received more than one contribution)."""
        for slot, parts in self.received.items():
            if len(parts) > 1:
                name = self.names[slot]
                self.trace.fan_in[name] = FanIn(name, parts, sum(p for _, p in parts[1:]) + parts[0][1])
        return self.trace
