"""Checkpoints: graph files whose ``.npz`` also holds the optimizer state and the loop's position."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, NonNegativeInt, ValidationError

from ..errors import TrainingError, clip
from ..format import Limits, SavedGraph
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
        The checkpoint's graph file is invalid (e.g. its .npz is missing or altered), or it is over
        ``graph.limits`` (the limits ``graph`` was loaded with bound the checkpoint too).
    """
    limits = getattr(graph, "limits", None) or Limits()
    checkpoint = load(path, registry=graph.registry, limits=limits)
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
    npz_path = Path(path).parent / files.pop()
    _check_archive(npz_path, str(path), limits.max_total_bytes)
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            if STATE_KEY not in npz.files:
                raise TrainingError(f"{str(path)!r} is a graph file but not a checkpoint (no training state)")
            raw = npz[STATE_KEY]
            opt_state = {k[len(OPT_PREFIX) :]: npz[k] for k in npz.files if k.startswith(OPT_PREFIX)}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TrainingError(f"checkpoint {str(path)!r}: cannot read {npz_path.name!r}: {exc}") from None
    state = _train_state(raw, str(path))
    for key, value in opt_state.items():
        if value.dtype.kind not in "fiu" or (value.dtype.kind == "f" and not np.isfinite(value).all()):
            raise TrainingError(f"checkpoint {str(path)!r}: optimizer state {key!r} is not finite numbers")
    t = opt_state.get("t")
    if t is not None and (t.shape != () or t.dtype.kind not in "iu" or int(t) < 0):
        raise TrainingError(f"checkpoint {str(path)!r}: optimizer step 't' must be a non-negative integer scalar")
    return dict(checkpoint.parameters), opt_state, state


def _check_archive(npz_path: Path, shown: str, max_total_bytes: int) -> None:
    """Refuse an archive that unpacks past ``max_total_bytes`` and members whose unpacking zipfile cannot bound
    (bzip2, LZMA), before numpy reads any."""
    try:
        with zipfile.ZipFile(npz_path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > max_total_bytes:
                raise TrainingError(
                    f"checkpoint {shown!r}: {npz_path.name!r} unpacks to {unpacked} bytes, "
                    f"over the limit max_total_bytes={max_total_bytes}"
                )
            for info in archive.infolist():
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
                    raise TrainingError(
                        f"checkpoint {shown!r}: member {info.filename[:80]!r} is neither stored nor deflated"
                    )
    except (OSError, zipfile.BadZipFile) as exc:
        raise TrainingError(f"checkpoint {shown!r}: cannot read {npz_path.name!r}: {exc}") from None


class SavedTrainState(BaseModel):
    """The training state a checkpoint holds, as JSON; validated before any of it is used."""

    model_config = ConfigDict(extra="ignore", strict=True)
    version: Literal[1] = 1
    epoch: NonNegativeInt = 0
    batch: NonNegativeInt = 0
    step: NonNegativeInt = 0
    loss_sum: FiniteFloat = 0.0
    examples: NonNegativeInt = 0
    correct: NonNegativeInt = 0
    counted: NonNegativeInt = 0
    seconds: Annotated[FiniteFloat, Field(ge=0)] = 0.0
    history: list[dict[str, Any]] = []
    config: dict[str, Any] = {}


def _train_state(raw: np.ndarray, shown: str) -> dict[str, Any]:
    """The checkpoint's training state, or a TrainingError naming what is wrong with it."""
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise TrainingError(f"checkpoint {shown!r}: training state is {raw.dtype} {raw.shape}, not bytes of JSON")
    try:
        data = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise TrainingError(f"checkpoint {shown!r}: training state is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise TrainingError(f"checkpoint {shown!r}: training state is not valid JSON ({clip(str(exc), 120)})") from None
    try:
        return SavedTrainState.model_validate(data).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise TrainingError(f"checkpoint {shown!r}: training state field {clip(where)}: {first['msg']}") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


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
