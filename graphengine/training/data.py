"""Training data: read ``.npz`` or CSV files into arrays named after a graph's inputs, and check them.

Rules (the first axis of every data array indexes the examples):

- An input declared with a free first dimension, e.g. ``x: [null, 64]``, takes
  batches: its data has shape ``(N, 64)``.
- An input without one, e.g. the seed network's ``x: [2]``, takes one example
  per step: its data has shape ``(N, 2)`` and the batch size must be 1.
- Inputs with a ``default`` may be left out of the data; the default is fed.
  With no data at all, the defaults are the one and only example.
- Every array must name an input ("did you mean" otherwise), hold finite
  numbers, and have the same number of examples. Integer inputs need integer data.
- Class-index labels fed to a loss whose op declares ``class_labels`` (see
  :class:`graphengine.ops.LossInfo`) must lie in ``[0, classes)``.

CSV files have a header. A column is named after an input (``y``), or after
one element of it, flattened row-major: ``x[0]``, ``x[1]``, ... ``x[63]``.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from ..errors import DataError, TrainingError, did_you_mean
from ..ops import format_shape

if TYPE_CHECKING:
    from ..graph import Graph, NodeInfo

__all__ = ["Dataset", "load_data", "check_labels", "class_label_losses", "LabelledLoss"]

_COLUMN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(\[(?P<index>\d+)\])?$")


@dataclass
class Dataset:
    """Checked example arrays, each with the examples on axis 0.

    Attributes
    ----------
    arrays : dict of str to ndarray
        Input name -> data, already in the input's dtype.
    size : int
        Number of examples (1 when there are no arrays: the inputs' defaults).
    batched : dict of str to bool
        Whether each input takes a batch (free first dimension) or one example.
    source : str
        Where the data came from, for messages.
    """

    arrays: dict[str, np.ndarray]
    size: int
    batched: dict[str, bool] = field(default_factory=dict)
    source: str = "<data>"

    @property
    def per_example(self) -> bool:
        """True when some input takes one example at a time (batch size 1)."""
        return not all(self.batched.values())

    def subset(self, index: np.ndarray, source: str) -> "Dataset":
        return Dataset({k: v[index] for k, v in self.arrays.items()}, len(index), self.batched, source)

    def feeds(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Feeds for the examples ``index`` (one example for per-example inputs)."""
        out = {}
        for name, array in self.arrays.items():
            out[name] = array[index] if self.batched[name] else array[index[0]]
        return out

    def batches(self, batch_size: int, order: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Index arrays of consecutive batches of ``order`` (default: 0..size-1); the last may be short."""
        order = np.arange(self.size) if order is None else order
        for start in range(0, self.size, batch_size):
            yield order[start : start + batch_size]


def load_data(source: Any, graph: "Graph", *, what: str = "data") -> Dataset:
    """Read and check data for ``graph``.

    Parameters
    ----------
    source : str, PathLike, mapping of str to array_like, Dataset, or None
        A ``.npz`` or ``.csv`` file, arrays by input name, or None for the
        inputs' defaults (one example).
    graph : Graph
    what : str
        How to call the data in messages (``"data"``, ``"validation data"``...).

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Unreadable file, an array that matches no input, a missing array for
        an input without default, a wrong shape (naming the input and both
        shapes), non-integer data for an integer input, NaN/Inf, differing
        example counts, or labels out of range.

    Examples
    --------
    >>> import graphengine
    >>> g = graphengine.load("examples/seed_network.json")
    >>> load_data({"x": [[0.05, 0.1], [0.2, 0.3]]}, g).size
    2
    """
    if isinstance(source, Dataset):
        return source
    if source is None:
        return Dataset({}, 1, {}, "the inputs' defaults")
    if isinstance(source, Mapping):
        raw, label = {k: np.asarray(v) for k, v in source.items()}, what
    else:
        path = Path(source)
        label = f"{what} {str(path)!r}"
        raw = _read_csv(path, graph, label) if path.suffix.lower() == ".csv" else _read_npz(path, label)
    return _check(raw, graph, label)


def _read_npz(path: Path, label: str) -> dict[str, np.ndarray]:
    if path.suffix.lower() != ".npz":
        raise DataError(f"{label}: expected a .npz or .csv file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(f"{label}: not a .npz archive")
            return {name: npz[name] for name in npz.files}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{label}: no such file") from None
    except Exception as exc:  # numpy raises several types for corrupt or pickled files
        raise DataError(f"{label}: cannot read as .npz: {type(exc).__name__}: {exc}") from None


def _read_csv(path: Path, graph: "Graph", label: str) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise DataError(f"{label}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{label}: cannot read as CSV: {exc}") from None
    if not rows:
        raise DataError(f"{label}: empty file (expected a header row naming inputs)")
    header = [h.strip() for h in rows[0]]
    groups: dict[str, list[tuple[int, int]]] = {}  # name -> [(flat index, column)]
    for col, head in enumerate(header):
        m = _COLUMN.match(head)
        if m is None:
            raise DataError(f"{label}: column {col + 1} header {head!r} is not NAME or NAME[i]")
        groups.setdefault(m["name"], []).append((int(m["index"] or 0), col))
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for r, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"{label}: line {r + 2} has {len(row)} cells, the header has {len(header)}")
        for c, cell in enumerate(row):
            try:
                values[r, c] = float(cell)
            except ValueError:
                raise DataError(
                    f"{label}: line {r + 2}, column {header[c]!r}: {cell.strip()!r} is not a number"
                ) from None
    out = {}
    for name, cols in groups.items():
        cols.sort()
        if [i for i, _ in cols] != list(range(len(cols))):
            raise DataError(f"{label}: columns of {name!r} must be {name}[0], {name}[1], ... without gaps or repeats")
        block = values[:, [c for _, c in cols]]
        out[name] = _shape_csv_block(block, name, graph, label)
    return out


def _shape_csv_block(block: np.ndarray, name: str, graph: "Graph", label: str) -> np.ndarray:
    info = graph.inputs.get(name)
    if info is None:
        return block  # reported as an unknown array by _check
    shape = info.spec.shape
    per_example = shape[1:] if shape and shape[0] is None else shape
    if any(d is None for d in per_example):
        raise DataError(
            f"{label}: input {name!r} is declared {format_shape(shape)}; CSV needs every dimension but the first fixed"
        )
    width = math.prod(per_example)  # type: ignore[arg-type]
    if block.shape[1] != width:
        raise DataError(
            f"{label}: input {name!r} is declared {format_shape(shape)}, so each row needs {width} column(s) "
            f"{name}[0]..{name}[{width - 1}]; the CSV has {block.shape[1]}"
        )
    if info.spec.dtype.kind in "iu":
        finite = np.isfinite(block)
        if finite.all() and (block == np.round(block)).all():
            block = block.astype(info.spec.dtype)
    return block.reshape((block.shape[0], *per_example))  # type: ignore[arg-type]


def _check(raw: dict[str, np.ndarray], graph: "Graph", label: str) -> Dataset:
    inputs = graph.inputs
    for name in raw:
        if name not in inputs:
            hint = did_you_mean(name, inputs)
            raise DataError(
                f"{label}: array {name!r} matches no input of the graph (inputs: {', '.join(inputs)}){hint}"
            )
    for name, info in inputs.items():
        if name not in raw and info.default is None:
            raise DataError(
                f"{label}: no array {name!r} for input {name!r} {format_shape(info.spec.shape)}, which has no default "
                f"(the data has: {', '.join(raw) or 'nothing'})"
            )
    arrays: dict[str, np.ndarray] = {}
    batched: dict[str, bool] = {}
    size = None
    for name, array in raw.items():
        spec = inputs[name].spec
        is_batched = bool(spec.shape) and spec.shape[0] is None
        expected = spec.shape if is_batched else (None, *spec.shape)
        if array.ndim != len(expected) or any(d is not None and d != s for s, d in zip(array.shape[1:], expected[1:])):
            want = format_shape(("N", *expected[1:]))  # type: ignore[arg-type]
            how = "" if is_batched else ", one example per row"
            raise DataError(
                f"{label}: array {name!r} has shape {format_shape(array.shape)} but input {name!r} is declared "
                f"{format_shape(spec.shape)}, so the data must be {want}{how}"
            )
        if array.dtype.kind not in "fiub":
            raise DataError(f"{label}: array {name!r} holds {array.dtype}, not numbers")
        if spec.dtype.kind in "iu" and array.dtype.kind == "f":
            raise DataError(f"{label}: array {name!r} holds non-integer values but input {name!r} is {spec.dtype.name}")
        if array.dtype.kind == "f":
            bad = ~np.isfinite(array)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                what = "NaN" if np.isnan(array).any() else "Inf"
                raise DataError(
                    f"{label}: array {name!r} holds {what} ({int(bad.sum())} value(s); first in example {row})"
                )
        if size is not None and array.shape[0] != size:
            first = next(iter(arrays))
            raise DataError(
                f"{label}: array {name!r} has {array.shape[0]} examples but {first!r} has {size}; they must match"
            )
        size = array.shape[0]
        if size == 0:
            raise DataError(f"{label}: array {name!r} has no examples")
        arrays[name] = np.ascontiguousarray(array, dtype=spec.dtype)
        batched[name] = is_batched
    dataset = Dataset(arrays, size if size is not None else 1, batched, label)
    check_labels(dataset, graph)
    return dataset


@dataclass(frozen=True)
class LabelledLoss:
    """A loss node whose op declares (``OpDef.loss.class_labels``) that its target holds class labels."""

    node: "NodeInfo"
    prediction: str  # the value holding the logits (classes on the last axis)
    target: str  # the value holding the labels


def class_label_losses(graph: "Graph") -> list[LabelledLoss]:
    """The graph's loss nodes over class labels, as their ops declare them: no op is known by name."""
    found = []
    for node in graph.nodes.values():
        info = node.op.loss
        if info is None or not info.class_labels:
            continue
        names = node.op.inputs
        found.append(
            LabelledLoss(node, node.inputs[names.index(info.prediction)], node.inputs[names.index(info.target)])
        )
    return found


def check_labels(dataset: Dataset, graph: "Graph") -> None:
    """Raise DataError when class-index labels in ``dataset`` are outside ``[0, classes)``."""
    for loss in class_label_losses(graph):
        node, labels_name, logits_name = loss.node, loss.target, loss.prediction
        labels = dataset.arrays.get(labels_name)
        classes = graph.spec(logits_name).shape[-1] if graph.spec(logits_name).shape else None
        if labels is None or labels.dtype.kind not in "iu" or classes is None:
            continue
        bad = (labels < 0) | (labels >= classes)
        if bad.any():
            first = np.argwhere(bad)[0]
            raise DataError(
                f"{dataset.source}: label {labels[tuple(first)]} in {labels_name!r} (example {int(first[0])}) is out of "
                f"range [0, {classes}) for node {node.id!r} ({node.op.name} over {classes} classes); "
                f"{int(bad.sum())} label(s) out of range"
            )


def split(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    order = np.random.default_rng([seed, 1]).permutation(dataset.size)
    n_val = int(round(dataset.size * fraction))
    if not dataset.arrays or n_val < 1 or n_val >= dataset.size:
        raise TrainingError(
            f"validation split {fraction} of {dataset.size} example(s) leaves no validation or no training data"
        )
    return (
        dataset.subset(np.sort(order[n_val:]), dataset.source),
        dataset.subset(np.sort(order[:n_val]), f"validation split of {dataset.source}"),
    )
