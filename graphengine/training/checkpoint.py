"""Checkpoints: graph files whose ``.npz`` also holds the optimizer state and the loop's position."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, NonNegativeInt, ValidationError

from ..errors import TrainingError, clip
from ..format import Limits, SavedGraph
from ..format.weights import npy_header, read_data_file
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
    members = _state_members(Path(path), files.pop(), checkpoint, limits.max_total_bytes)
    if STATE_KEY not in members:
        raise TrainingError(f"{str(path)!r} is a graph file but not a checkpoint (no training state)")
    raw = members[STATE_KEY]
    opt_state = {k[len(OPT_PREFIX) :]: v for k, v in members.items() if k.startswith(OPT_PREFIX)}
    state = _train_state(raw, str(path))
    for key, value in opt_state.items():
        if value.dtype.kind not in "fiu" or (value.dtype.kind == "f" and not np.isfinite(value).all()):
            raise TrainingError(f"checkpoint {str(path)!r}: optimizer state {key!r} is not finite numbers")
    t = opt_state.get("t")
    if t is not None and (t.shape != () or t.dtype.kind not in "iu" or int(t) < 0):
        raise TrainingError(f"checkpoint {str(path)!r}: optimizer step 't' must be a non-negative integer scalar")
    return dict(checkpoint.parameters), opt_state, state


def _state_members(path: Path, name: str, checkpoint: Graph, max_total_bytes: int) -> dict[str, np.ndarray]:
    """The training-state and optimizer arrays of the checkpoint's .npz, read once, bounded and never unpickled.

    The bytes are read like any weight file (inside the folder, regular, non-blocking, at most
    ``max_total_bytes``) and must still have the sha256 the graph file pins, so a file swapped
    since :func:`load` read it is refused, not waited on. Only stored and deflated members are
    read, all of them together at most ``max_total_bytes`` unpacked, and each member's .npy
    header must describe exactly the bytes it holds before an array is made.
    """
    shown = str(path)

    def fail(detail: str) -> TrainingError:
        return TrainingError(f"checkpoint {shown!r}: {detail}")

    data = read_data_file(path.parent, name, max_bytes=max_total_bytes, error=fail)
    pinned = {d.sha256 for d in checkpoint.document.parameters if d.file == name and d.sha256}
    if pinned and hashlib.sha256(data).hexdigest() not in {p.lower() for p in pinned}:
        raise fail(f"{name!r} changed since its graph file was read; refusing it")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            unpacked = sum(info.file_size for info in infos)
            if unpacked > max_total_bytes:
                raise fail(f"{name!r} unpacks to {unpacked} bytes, over the limit max_total_bytes={max_total_bytes}")
            for info in infos:
                key = info.filename[: -len(".npy")] if info.filename.endswith(".npy") else info.filename
                if not (key == STATE_KEY or key.startswith(OPT_PREFIX)):
                    continue  # parameters: already read, and checked, by load()
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
                    raise fail(f"member {clip(info.filename, 80)!r} is neither stored nor deflated")
                with archive.open(info) as stream:
                    arrays[key] = _npy_array(stream.read(info.file_size + 1), key, fail)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise fail(f"cannot read {name!r}: {type(exc).__name__}: {clip(str(exc), 160)}") from None
    return arrays


def _npy_array(content: bytes, key: str, fail: Any) -> np.ndarray:
    """An array from a member's .npy bytes whose header must match its length exactly (no allocation on trust)."""
    try:
        shape, fortran, dtype, offset = npy_header(content)
    except Exception as exc:  # numpy raises several types for corrupt headers
        raise fail(f"state {clip(key)!r} has a corrupt .npy header: {clip(str(exc), 120)}") from None
    if dtype.hasobject or dtype.kind not in "fiu" or any(type(d) is not int or d < 0 for d in shape):
        raise fail(f"state {clip(key)!r} is not an array of numbers")
    if len(content) - offset != dtype.itemsize * math.prod(shape):
        raise fail(f"state {clip(key)!r} is {len(content)} bytes, which does not fit its header")
    flat = np.frombuffer(content, dtype=dtype, offset=offset)
    return np.array(flat.reshape(shape, order="F" if fortran else "C"), order="C")


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
