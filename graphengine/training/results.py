""":class:`TrainResult`: what :func:`train` returns."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..format import SavedGraph, atomic_write_bytes, format_document
from ..graph import Graph
from .checkpoint import TrainState
from .progress import fmt_metrics


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    graph : Graph
        The trained graph (its ``parameters`` hold the new values).
    history : list of dict
        One record per completed epoch: ``epoch``, ``step``, ``loss``,
        the metric, ``val_loss`` and ``val_<metric>`` when there is
        validation data, and ``seconds`` (wall time since the start).
    status : str
        ``"completed"``, ``"steps"`` (stopped by the step budget) or ``"interrupted"``.
    steps : int
        Optimizer steps taken in total (including those before a resume).
    final : dict
        Loss (and metric) over the training data, with the trained parameters.
    test : dict or None
        The same over the test data.
    seconds : float
        Wall time of this call.
    output, checkpoint : SavedGraph or None
    history_path, plot_path : Path or None
    """

    graph: Graph
    history: list[dict[str, Any]]
    status: str
    steps: int
    epochs: int
    final: dict[str, float]
    test: dict[str, float] | None
    seconds: float
    optimizer: dict[str, Any]
    output: SavedGraph | None = None
    checkpoint: SavedGraph | None = None
    history_path: Path | None = None
    plot_path: Path | None = None

    def summary(self) -> str:
        """A few lines for people: status, final and best losses and metrics, files written."""
        opt = ", ".join(f"{k}={v}" for k, v in self.optimizer.items() if k != "name")
        lines = [
            f"training {self.status}: {self.epochs} epoch(s), {self.steps} step(s) in {self.seconds:.2f}s; {self.optimizer['name']} ({opt})"
        ]
        lines.append("  final (trained parameters, training data): " + fmt_metrics(self.final))
        if self.history and "val_loss" in self.history[-1]:
            best = min(self.history, key=lambda r: r["val_loss"])
            lines.append(
                f"  best val_loss {best['val_loss']:.6g} at epoch {best['epoch']}; last: "
                + fmt_metrics({k[4:]: v for k, v in self.history[-1].items() if k.startswith("val_")})
            )
        if self.test is not None:
            lines.append("  test: " + fmt_metrics(self.test))
        for label, path in (
            ("trained graph", self.output and self.output.path),
            ("checkpoint", self.checkpoint and self.checkpoint.path),
            ("history", self.history_path),
            ("plot", self.plot_path),
        ):
            if path is not None:
                lines.append(f"  {label}: {path}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The history file's content."""
        return {
            "format": "graphengine/history-v1",
            "graph": self.graph.file,
            "status": self.status,
            "optimizer": self.optimizer,
            "steps": self.steps,
            "epochs": self.history,
            "final": self.final,
            "test": self.test,
            "seconds": self.seconds,
        }


def write_history(
    path: str | os.PathLike[str] | None,
    graph: Graph,
    state: TrainState,
    status: str,
    optimizer: dict[str, Any],
    seconds: float,
    result: TrainResult | None = None,
) -> Path | None:
    if path is None:
        return None
    content = (
        result.to_json()
        if result is not None
        else {
            "format": "graphengine/history-v1",
            "graph": graph.file,
            "status": status,
            "optimizer": optimizer,
            "steps": state.step,
            "epochs": state.history,
            "seconds": seconds,
        }
    )
    atomic_write_bytes(path, format_document(content).encode())  # one line per epoch
    return Path(path)
