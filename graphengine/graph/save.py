"""Saving a :class:`Graph` with its current parameter values, as a graph file that :func:`load` reads back."""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Literal, Mapping

import numpy as np

from ..errors import SaveError
from ..format.save import (
    INLINE_LIMIT,
    SavedGraph,
    _stem,
    atomic_write_bytes,
    check_writable,
    format_document,
    npz_bytes,
    npz_names,
    remove_dead_temp_files,
    remove_replaced_npz,
)
from .graph import Graph


def _names_in(target: os.PathLike[str]) -> set[str]:
    """The weight files the graph file about to be replaced names (none if it is absent or unreadable)."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return set()
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return set()
        return npz_names(fh.read(64 * 1024**2 + 1))


def save(
    graph: "Graph",
    path: str | os.PathLike[str],
    *,
    weights: Literal["auto", "inline", "npz"] = "auto",
    overwrite: bool = False,
    overwrite_input: bool = False,
    extra_arrays: Mapping[str, np.ndarray] | None = None,
    description: str | None = None,
) -> SavedGraph:
    """Write ``graph`` with its current parameters as a new graph file.

    Parameters
    ----------
    graph : Graph
    path : str or PathLike
        The new ``.json`` file.
    weights : {"auto", "inline", "npz"}
        Where parameter values go; ``"auto"`` is inline up to 10,000 elements.
        Constants that the source graph kept in files are stored the same way.
    overwrite : bool
        Replace an existing file (other than the graph's own).
    overwrite_input : bool
        Allow ``path`` to be the file the graph was loaded from.
    extra_arrays : mapping, optional
        More arrays for the .npz (checkpoints keep optimizer state there);
        forces ``weights="npz"``. Names must not clash with parameters.
    description : str, optional
        Replaces the graph's description.

    Returns
    -------
    SavedGraph

    Raises
    ------
    SaveError
        The path is the input file or exists (and that was not allowed), its
        folder is missing, a value is NaN/Inf, or the write failed. Nothing
        is left half-written.

    Examples
    --------
    >>> import graphengine, tempfile, pathlib
    >>> g = graphengine.load("examples/seed_network.json")
    >>> out = save(g, pathlib.Path(tempfile.mkdtemp()) / "copy.json")
    >>> graphengine.load(out.path).parameters["W_h"].tolist()
    [[0.15, 0.2], [0.25, 0.3]]
    """
    target = check_writable(path, graph.file, overwrite=overwrite, overwrite_input=overwrite_input)
    doc = graph.document.model_dump(mode="json", exclude_unset=True)
    if description is not None:
        doc["description"] = description
    size = sum(v.size for v in graph.parameters.values())
    use_npz = extra_arrays is not None or weights == "npz" or (weights == "auto" and size > INLINE_LIMIT)
    if weights not in ("auto", "inline", "npz"):
        raise SaveError(f"weights must be 'auto', 'inline' or 'npz', not {weights!r}")

    stored: dict[str, np.ndarray] = {}
    for section, table in (("parameters", graph.parameters), ("constants", graph.constants)):
        for entry in doc.get(section, []):
            if section == "constants" and "file" not in entry:
                continue  # inline constants stay exactly as written
            value = table[entry["name"]]
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise SaveError(f"{section[:-1]} {entry['name']!r} holds NaN or Inf; not saving it")
            for key in ("value", "file", "key", "sha256"):
                entry.pop(key, None)
            if use_npz:
                stored[entry["name"]] = value
            else:
                entry["value"] = value.tolist()
            entry["shape"] = list(value.shape)

    npz_path = None
    if use_npz:
        arrays = dict(stored)
        for name, value in (extra_arrays or {}).items():
            if name in arrays:
                raise SaveError(f"extra array {name!r} clashes with a parameter or constant")
            arrays[name] = value
        data = npz_bytes(arrays)
        digest = hashlib.sha256(data).hexdigest()
        npz_path = target.with_name(f"{_stem(target)}.{digest[:12]}.npz")
        for section in ("parameters", "constants"):
            for entry in doc.get(section, []):
                if entry["name"] in stored and "value" not in entry:
                    entry.update(file=npz_path.name, key=entry["name"], sha256=digest)
        if not npz_path.exists():
            atomic_write_bytes(npz_path, data)
    old_names = _names_in(target)
    atomic_write_bytes(target, format_document(doc).encode())
    remove_replaced_npz(target, old_names, keep=npz_path)
    remove_dead_temp_files(target)
    return SavedGraph(target, npz_path)
