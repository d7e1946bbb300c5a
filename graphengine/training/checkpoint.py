"""Checkpoints: graph files whose ``.npz`` also holds the optimizer state and the loop's position."""

from __future__ import annotations

import json
import os
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
