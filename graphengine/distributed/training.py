""":func:`train` and :func:`evaluate` on a Dask cluster: the training loop of one process, the gradients of N workers.

The loop, the optimizer and its state, progress, history, checkpoints,
resume, Ctrl-C and the NaN stop are those of :func:`graphengine.train`, on
the client. Only the gradient of each step runs on the cluster (through the
loop's ``gradient_fn``): the current parameters are scattered once per step,
the batch is split into shards, and the gradients come back summed. An
update is applied only after every shard's gradient is in, so a lost worker
never leaves half a step behind.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..graph import Graph, Limits, load
from ..training import TrainConfig, TrainResult
from ..training import train as train_locally
from ..training.data import Dataset, load_data
from ..training.evaluation import default_of, loss_of
from ..training.metrics import _resolve_metric
from .cluster import DistributedError
from .parallel import DataParallel
from .worker import collect, shard_pass

__all__ = ["train", "evaluate"]


def train(
    graph: Graph | str | os.PathLike[str],
    data: Any = None,
    *,
    client: Any = None,
    config: TrainConfig | None = None,
    limits: Limits | None = None,
    **options: Any,
) -> TrainResult:
    """:func:`graphengine.train` with each step's gradient computed in shards on a Dask cluster.

    Parameters
    ----------
    graph, data, config
        As :func:`graphengine.train`.
    client : distributed.Client or str, optional
        The cluster; default ``config.dask`` (an address or ``local:N``).
    limits : Limits, optional
        What the workers' loader allows.
    **options
        TrainConfig fields and the other arguments of :func:`graphengine.train`
        (``stream``, ``on_step``, ``handle_sigint``...).

    Returns
    -------
    TrainResult
        The same, up to float summation order, as one process with the same seed.

    Raises
    ------
    DistributedError
        No cluster given, or a worker failed (after retries); no update of that step was applied.
    """
    # validation_data and test_data stay arguments: as such they may be arrays, not only paths.
    passed = ("validation_data", "test_data")
    fields = {k: options.pop(k) for k in list(options) if k in TrainConfig.model_fields and k not in passed}
    cfg = (config or TrainConfig()).replace("train()", **fields)
    target = client if client is not None else cfg.dask
    if target is None:
        raise DistributedError("train on Dask needs a client, a scheduler address or local:N (client=... or dask=...)")
    if not isinstance(graph, Graph):
        graph = load(graph, plugins=cfg.plugins, limits=limits)
    with DataParallel(graph, target, shards=cfg.shards, limits=limits, plugins=cfg.plugins) as parallel:

        def figures(trained: Graph, dataset: Any, *, metric: Any, batch_size: int) -> dict[str, float]:
            """The final and test figures, computed on the cluster."""
            return evaluate(
                trained, dataset, client=parallel.client, metric=metric, batch_size=batch_size,
                plugins=cfg.plugins, limits=limits,
            )  # fmt: skip

        return train_locally(
            graph, data, config=cfg, gradient_fn=parallel.value_and_grad, evaluate_fn=figures, **options
        )


def evaluate(
    graph: Graph,
    data: Any = None,
    *,
    client: Any,
    metric: Any = None,
    batch_size: int = 256,
    plugins: Sequence[str] = (),
    limits: Limits | None = None,
) -> dict[str, float]:
    """:func:`graphengine.evaluate` with its batches spread over the workers: the same figures.

    Each batch is one task; the loss is the batch-size-weighted mean of the
    per-batch losses, exactly as in one process.
    """
    dataset = data if isinstance(data, Dataset) else load_data(data, graph)
    acc = _resolve_metric(metric, graph)
    loss = loss_of(graph)
    size = 1 if dataset.per_example else batch_size
    indices = list(dataset.batches(size))
    batches = [dataset.feeds(index) for index in indices]
    with DataParallel(graph, client, plugins=plugins, limits=limits) as parallel:
        outputs = [loss] + ([acc.logits] if acc else [])
        keep = [acc.logits] if acc else []

        def submit() -> Any:
            graph_future, params = parallel._graph(), parallel._params()
            parts = [[feeds] for feeds in batches]
            tasks = [
                parallel.client.submit(
                    shard_pass,
                    graph_future,
                    params,
                    part,
                    wrt=None,
                    outputs=outputs,
                    loss=loss,
                    weight=1.0,
                    keep=keep,
                    pure=False,
                )  # fmt: skip
                for part in parts
            ]
            return parallel.client.submit(collect, *tasks, pure=False)

        results = parallel._attempt(submit)
    total = correct = seen = 0.0
    for index, feeds, result in zip(indices, batches, results):
        total += float(result["values"][loss]) * len(index)
        if acc is not None:
            labels = feeds[acc.labels] if acc.labels in feeds else default_of(graph, acc.labels)
            c, k = acc.count(np.concatenate(result["parts"][acc.logits]), labels)
            correct, seen = correct + c, seen + k
    out = {"loss": total / dataset.size}
    if acc is not None:
        out[acc.name] = correct / max(seen, 1)
    return out
