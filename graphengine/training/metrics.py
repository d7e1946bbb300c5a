"""Metrics reported beside the loss while training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import TrainingError
from ..graph import Graph
from .data import class_label_losses


@dataclass(frozen=True)
class Accuracy:
    """Fraction of examples whose largest logit is the label (index labels, or argmax of one-hot rows)."""

    logits: str
    labels: str
    name: str = "accuracy"

    def count(self, logits: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
        """(correct, total) for one batch."""
        logits, labels = np.asarray(logits), np.asarray(labels)
        predicted = logits.argmax(axis=-1)  # the method: np.argmax's wrapper costs as much again (called per step)
        truth = labels if labels.dtype.kind in "iu" else labels.argmax(axis=-1)
        return int(np.count_nonzero(predicted == truth)), truth.size

    @classmethod
    def find(cls, graph: Graph) -> "Accuracy":
        """Accuracy of the graph's loss over class labels (the one the loss uses, if several).

        A loss node qualifies when its op declares ``loss=LossInfo(..., class_labels=True)``;
        its prediction input holds the logits and its target input the labels.
        """
        losses = class_label_losses(graph)
        if graph.loss in graph.nodes and len(losses) > 1:
            losses = [x for x in losses if x.node.id == graph.loss] or losses
        if len(losses) != 1:
            found = "none" if not losses else ", ".join(repr(x.node.id) for x in losses)
            raise TrainingError(
                "metric 'accuracy' needs exactly one loss node over class labels (an op declaring "
                f"LossInfo(class_labels=True)) to read logits and labels from (found {found})"
            )
        loss = losses[0]
        if loss.target not in graph.inputs:
            raise TrainingError(
                f"metric 'accuracy': the labels {loss.target!r} of node {loss.node.id!r} are not an input of the graph"
            )
        return cls(loss.prediction, loss.target)


METRICS: dict[str, Callable[[Graph], Accuracy]] = {"accuracy": Accuracy.find}


def _resolve_metric(metric: Any, graph: Graph) -> Accuracy | None:
    if metric is None or isinstance(metric, Accuracy):
        return metric
    if metric not in METRICS:
        raise TrainingError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    return METRICS[metric](graph)
