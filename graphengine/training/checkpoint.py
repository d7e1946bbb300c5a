"""Checkpoints: graph files whose ``.npz`` also holds the optimizer state and the loop's position."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import TrainingError
from ..format import SavedGraph
from ..graph import Graph, load, save
from .optimizers import Optimizer

STATE_KEY = "__train_state__"


OPT_PREFIX = "__optimizer__/"


def write_checkpoint(path: Path, graph: Graph, optimizer: Optimizer, state: Mapping[str, Any]) -> SavedGraph:
    """Write a checkpoint: the graph with current parameters, optimizer state and loop state."""
    extra = {OPT_PREFIX + k: v for k, v in optimizer.state_arrays().items()}
    extra[STATE_KEY] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    return save(graph, path, weights="npz", overwrite=True, extra_arrays=extra)


def read_checkpoint(
    path: str | os.PathLike[str], graph: Graph
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint written by :func:`train` for ``graph``.

    Returns
    -------
    (parameters, optimizer state arrays, loop state)

    Raises
    ------
    TrainingError
        The file is not a checkpoint, or its parameters do not match ``graph``'s.
    GraphFileError
        The checkpoint's graph file is invalid (e.g. its .npz is missing or altered).
    """
    checkpoint = load(path, registry=graph.registry)
    for name, value in graph.parameters.items():
        theirs = checkpoint.parameters.get(name)
        if theirs is None or theirs.shape != value.shape:
            got = "missing" if theirs is None else f"shape {theirs.shape}"
            raise TrainingError(
                f"checkpoint {str(path)!r} does not fit the graph: parameter {name!r} {value.shape} is {got}"
            )
    files = {d.file for d in checkpoint.document.parameters if d.file}
    if len(files) != 1:
        raise TrainingError(f"{str(path)!r} is a graph file but not a checkpoint (no training state)")
    with np.load(Path(path).parent / files.pop(), allow_pickle=False) as npz:
        if STATE_KEY not in npz.files:
            raise TrainingError(f"{str(path)!r} is a graph file but not a checkpoint (no training state)")
        state = json.loads(npz[STATE_KEY].tobytes().decode())
        opt_state = {k[len(OPT_PREFIX) :]: npz[k] for k in npz.files if k.startswith(OPT_PREFIX)}
    return dict(checkpoint.parameters), opt_state, state


@dataclass
class TrainState:
    """The loop's position and running sums: what a checkpoint keeps besides parameters and optimizer state."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the current epoch
    step: int = 0
    loss_sum: float = 0.0
    examples: int = 0
    correct: int = 0
    counted: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"version": 1, **self.__dict__, "config": dict(config)}


def resume_from(path: str | os.PathLike[str], graph: Graph, opt: Optimizer, config: Mapping[str, Any]) -> TrainState:
    params, opt_state, saved = read_checkpoint(path, graph)
    theirs = saved.get("config", {})
    if theirs.get("optimizer") != config["optimizer"]:
        raise TrainingError(
            f"checkpoint {str(path)!r} was made with optimizer {theirs.get('optimizer')!r}, not {config['optimizer']!r}"
        )
    if saved.get("batch"):
        for key in ("batch_size", "seed", "shuffle", "examples"):
            if theirs.get(key) != config[key]:
                raise TrainingError(
                    f"checkpoint {str(path)!r} stopped inside an epoch with {key}={theirs.get(key)!r}; resuming needs the same "
                    f"{key} (got {config[key]!r})"
                )
    for name, value in params.items():
        graph.parameters[name] = np.array(value, dtype=graph.parameters[name].dtype, copy=True)
    opt.load_state_arrays(opt_state)
    fields = {k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__}
    return TrainState(**fields)
