"""Evaluating a graph on data: the loss (and metric) with its current parameters, and the per-epoch record."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import TrainingError
from ..graph import Graph
from .checkpoint import TrainState
from .data import Dataset, load_data
from .metrics import Accuracy, _resolve_metric

__all__ = ["evaluate"]


def evaluate(graph: Graph, data: Any = None, *, metric: Any = None, batch_size: int = 256) -> dict[str, float]:
    """Loss (and metric) of ``graph`` over ``data``, with its current parameters.

    The loss is the batch-size-weighted mean of per-batch losses.

    Raises
    ------
    DataError, TrainingError, ExecutionError

    Examples
    --------
    >>> import graphengine
    >>> g = graphengine.load("examples/seed_network.json")
    >>> round(evaluate(g)["loss"], 9)
    0.298371109
    """
    dataset = data if isinstance(data, Dataset) else load_data(data, graph)
    acc = _resolve_metric(metric, graph)
    loss_name = loss_of(graph)
    plan = graph.compile()
    wanted = [loss_name] + ([acc.logits] if acc else [])
    total = correct = seen = 0.0
    size = 1 if dataset.per_example else batch_size
    for index in dataset.batches(size):
        feeds = dataset.feeds(index)
        out = plan.run(feeds, outputs=wanted)
        total += float(out[loss_name]) * len(index)
        if acc is not None:
            c, n = acc.count(
                out[acc.logits], feeds[acc.labels] if acc.labels in feeds else default_of(graph, acc.labels)
            )
            correct, seen = correct + c, seen + n
    result = {"loss": total / dataset.size}
    if acc is not None:
        result[acc.name] = correct / max(seen, 1)
    return result


def default_of(graph: Graph, name: str) -> np.ndarray:
    default = graph.inputs[name].default
    assert default is not None
    return default


def loss_of(graph: Graph) -> str:
    if graph.loss is None:
        raise TrainingError(
            f"the graph has several outputs {graph.outputs} and no 'loss'; name the scalar to minimize in its \"loss\" field"
        )
    return graph.loss


def epoch_record(
    state: TrainState, epoch: int, acc: Accuracy | None, val: Dataset | None, graph: Graph, seconds: float
) -> dict[str, Any]:
    record: dict[str, Any] = {"epoch": epoch, "step": state.step, "loss": state.loss_sum / max(state.examples, 1)}
    if acc is not None:
        record[acc.name] = state.correct / max(state.counted, 1)
    if val is not None:
        for key, value in evaluate(graph, val, metric=acc).items():
            record[f"val_{key}"] = value
    record["seconds"] = round(seconds, 4)
    return record
