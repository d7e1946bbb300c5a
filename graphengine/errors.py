"""Typed exceptions.

Every failure graphengine reports on purpose is a :class:`GraphEngineError`, so
callers can catch exactly what they mean and the CLI can print one line.

Hierarchy::

    GraphEngineError
    ├── GraphFileError            a graph file is wrong (names file, JSON path, node)
    │   ├── SchemaError           does not match the file format
    │   ├── DuplicateIdError
    │   ├── DanglingReferenceError
    │   ├── CycleError
    │   ├── UnknownOpError        with "did you mean ..."
    │   ├── ArityError            wrong number of inputs
    │   ├── OpAttributeError      attrs rejected by the op's attribute model
    │   ├── ShapeError            an op's shape/dtype rule refused its inputs
    │   ├── UnsafePathError       a path leaves the graph's folder
    │   └── LimitError            a resource limit was exceeded
    ├── PluginError
    │   ├── DuplicateOpError      two sources define the same op name
    │   └── PluginImportError     a plugin failed to import
    ├── FeedError                 a run-time feed is missing or has the wrong shape
    ├── ExecutionError            an op's forward or VJP raised or misbehaved
    ├── RenderError               a diagram cannot be drawn or written (e.g. no Graphviz 'dot')
    ├── GradcheckError            analytic and numeric gradients disagree
    ├── DataError                 training data is missing, misshapen, non-finite or out of range
    ├── TrainingError             training cannot go on (bad options, unknown optimizer, bad checkpoint)
    │   └── NonFiniteError        the loss or a gradient became NaN/Inf; names the step
    └── SaveError                 a graph or checkpoint could not be written safely
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

__all__ = [
    "GraphEngineError",
    "GraphFileError",
    "SchemaError",
    "DuplicateIdError",
    "DanglingReferenceError",
    "CycleError",
    "UnknownOpError",
    "ArityError",
    "OpAttributeError",
    "ShapeError",
    "UnsafePathError",
    "LimitError",
    "PluginError",
    "DuplicateOpError",
    "PluginImportError",
    "FeedError",
    "ExecutionError",
    "RenderError",
    "GradcheckError",
    "DataError",
    "TrainingError",
    "NonFiniteError",
    "SaveError",
]


#: The longest message any error carries; text from a file is echoed at most this long (see :func:`clip_message`).
MAX_MESSAGE = 1000


class GraphEngineError(Exception):
    """Base class of every error graphengine raises on purpose.

    Its message is clipped here, in one place, to :data:`MAX_MESSAGE`
    characters, whatever a file made the raiser echo (a 1 MiB id, a
    million-entry shape).
    """

    def __init__(self, *args: Any) -> None:
        if args and isinstance(args[0], str):
            args = (clip_message(args[0]), *args[1:])
        super().__init__(*args)


class GraphFileError(GraphEngineError):
    """A graph file is invalid.

    The message starts with where the problem is: ``file: $.json.path (node 'id'):``.
    The parts are also available as attributes for programs.

    Attributes
    ----------
    file : str or None
        The graph file, or None for a graph given as a Python dict.
    json_path : str
        JSONPath-style location, e.g. ``$.nodes[2].attrs.axis``.
    node_id : str or None
        The id of the node (or input/parameter/constant) concerned.
    detail : str
        The bare problem, without the location prefix.
    """

    def __init__(
        self,
        detail: str,
        *,
        file: str | None = None,
        json_path: str = "$",
        node_id: str | None = None,
    ) -> None:
        self.detail = clip_message(detail)
        self.file = file
        self.json_path = json_path
        self.node_id = node_id
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{clip(self.file or '<graph>', 200)}: {clip(self.json_path, 200)}"
        if self.node_id is not None:
            where += f" (node {clip(self.node_id)!r})"
        return f"{where}: {self.detail}"


class SchemaError(GraphFileError):
    """The document does not match the graph file format."""


class DuplicateIdError(GraphFileError):
    """Two entries share one name."""


class DanglingReferenceError(GraphFileError):
    """A node input or output names something that does not exist."""


class CycleError(GraphFileError):
    """The nodes form a cycle; the message lists it."""


class UnknownOpError(GraphFileError):
    """A node names an op that is not registered."""


class ArityError(GraphFileError):
    """A node has the wrong number of inputs for its op."""


class OpAttributeError(GraphFileError):
    """A node's ``attrs`` were rejected by its op's attribute model."""


class ShapeError(GraphFileError):
    """An op's shape/dtype rule rejected its input shapes or dtypes.

    Shape rules raise it with only ``detail``; the loader fills in the location.
    """


class UnsafePathError(GraphFileError):
    """A file reference would read outside the graph's folder."""


class LimitError(GraphFileError):
    """A resource limit (nodes, elements, bytes) was exceeded."""


class PluginError(GraphEngineError):
    """An op plugin could not be used."""


class DuplicateOpError(PluginError):
    """Two plugins define the same op name."""


class PluginImportError(PluginError):
    """A plugin failed to import, or does not export ops correctly."""


class FeedError(GraphEngineError):
    """A value fed at run time is missing, unknown, or of the wrong shape or dtype."""


class ExecutionError(GraphEngineError):
    """An op raised, or returned a value of the wrong shape or dtype, while running."""


class RenderError(GraphEngineError):
    """A diagram cannot be drawn or written: unknown format, no Graphviz ``dot`` program, bad ``highlight``."""


class GradcheckError(GraphEngineError):
    """An analytic gradient disagrees with a finite-difference estimate."""


class DataError(GraphEngineError):
    """Training data is missing, has the wrong shape, holds NaN/Inf, or has labels out of range."""


class TrainingError(GraphEngineError):
    """Training cannot start or go on: bad options, unknown optimizer, incompatible checkpoint."""


class NonFiniteError(TrainingError):
    """The loss or a gradient became NaN or Inf; training stopped before applying that step.

    Attributes
    ----------
    step : int
        The 1-based step whose loss or gradient was not finite.
    checkpoint : str or None
        The last good checkpoint (left untouched), if any was written.
    """

    def __init__(self, detail: str, *, step: int, checkpoint: str | None = None) -> None:
        self.step = step
        self.checkpoint = checkpoint
        super().__init__(detail)


class SaveError(GraphEngineError):
    """A graph, checkpoint or history file could not be written (the old file, if any, is intact)."""


# --- "did you mean": one helper, one cutoff ------------------------------------------------


def close_matches(name: str, choices: Iterable[str], *, n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``name`` (difflib, cutoff 0.6), best first.

    A name over 128 characters has no close match: comparing it would cost more than it helps.

    Examples
    --------
    >>> close_matches("sigmod", ["sigmoid", "tanh", "softmax"])
    ['sigmoid']
    """
    if len(name) > 128:
        return []
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)


def did_you_mean(name: str, choices: Iterable[str], *, otherwise: str = "") -> str:
    """``"; did you mean 'x'?"`` for a message, or ``otherwise`` when nothing is close.

    Examples
    --------
    >>> did_you_mean("W_0", ["W_o", "b_o"])
    "; did you mean 'W_o'?"
    >>> did_you_mean("zzz", ["W_o"], otherwise="; see `graphengine ops`")
    '; see `graphengine ops`'
    """
    close = close_matches(name, choices)
    if not close:
        return otherwise
    return f"; did you mean {' or '.join(repr(clip(c, 80)) for c in close)}?"


# --- quoting text from a file in a message -------------------------------------------------


def counted(n: int | str, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (nouns here take an ``s``).

    Examples
    --------
    >>> counted(1, "input"), counted(0, "constant"), counted(3, "node")
    ('1 input', '0 constants', '3 nodes')
    """
    return f"{n} {noun}" + ("" if n == 1 else "s")


def clip(text: str, limit: int = 80) -> str:
    """``text``, cut to ``limit`` characters with a note of its full length.

    Examples
    --------
    >>> clip("x" * 100, 5)
    'xxxxx...(100 characters)'
    """
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} characters)"


def clip_message(text: str, limit: int = MAX_MESSAGE) -> str:
    """A whole message cut to about ``limit`` characters, keeping its start and its end.

    Every :class:`GraphEngineError` passes its message through here, so no
    echoed string (an id, a shape, a path) makes a message longer.

    Examples
    --------
    >>> len(clip_message("a" * 10**6)) < 1100
    True
    >>> clip_message("short")
    'short'
    """
    if len(text) <= limit:
        return text
    tail = limit // 5
    return f"{text[: limit - tail]} ...[{len(text) - limit} characters cut]... {text[-tail:]}"


def show(value: Any) -> str:
    """A value from a file for a message: quoted, escaped, and at most ~80 characters."""
    if isinstance(value, str):
        return repr(clip(value))
    if value is None or isinstance(value, (bool, int, float)):
        return clip(repr(value) if not isinstance(value, int) or abs(value) < 10**40 else "a huge integer")
    return f"a JSON {'array' if isinstance(value, list) else 'object' if isinstance(value, dict) else type(value).__name__}"
