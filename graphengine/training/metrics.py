"""Metrics reported beside the loss while training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import TrainingError
from ..graph import Graph


@dataclass(frozen=True)
class Accuracy:
    """Fraction of examples whose largest logit is the label (index labels, or argmax of one-hot rows)."""

    logits: str
    labels: str
    name: str = "accuracy"

    def count(self, logits: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
        """(correct, total) for one batch."""
        predicted = np.argmax(logits, axis=-1)
        truth = labels if labels.dtype.kind in "iu" else np.argmax(labels, axis=-1)
        return int(np.sum(predicted == truth)), int(np.size(truth))

    @classmethod
    def find(cls, graph: Graph) -> "Accuracy":
        """Accuracy of the graph's softmax_cross_entropy node (the one the loss uses, if several)."""
        nodes = [n for n in graph.nodes.values() if n.op.name == "softmax_cross_entropy"]
        if graph.loss in graph.nodes and len(nodes) > 1:
            nodes = [n for n in nodes if n.id == graph.loss] or nodes
        if len(nodes) != 1:
            found = "none" if not nodes else ", ".join(repr(n.id) for n in nodes)
            raise TrainingError(
                f"metric 'accuracy' needs exactly one softmax_cross_entropy node to read logits and labels from (found {found})"
            )
        node = nodes[0]
        if node.inputs[1] not in graph.inputs:
            raise TrainingError(
                f"metric 'accuracy': the labels {node.inputs[1]!r} of node {node.id!r} are not an input of the graph"
            )
        return cls(node.inputs[0], node.inputs[1])


METRICS: dict[str, Callable[[Graph], Accuracy]] = {"accuracy": Accuracy.find}


def _resolve_metric(metric: Any, graph: Graph) -> Accuracy | None:
    if metric is None or isinstance(metric, Accuracy):
        return metric
    if metric not in METRICS:
        raise TrainingError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    return METRICS[metric](graph)
