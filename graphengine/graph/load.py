""":func:`load` and :func:`load_dict`: a graph file in, a :class:`Graph` out, or a typed error naming the place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import LimitError, SchemaError
from ..format import Limits, parse_json
from ..format.document import validate_nodes_fast
from ..format.weights import read_bounded
from ..registry import Registry, default_registry
from .build import Builder
from .collector import collector_paused
from .graph import Graph


def load(
    path: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    plugins: Sequence[str] = (),
    limits: Limits | None = None,
    allow_nonfinite: bool = False,
) -> Graph:
    """Load, validate and build a graph file.

    Parameters
    ----------
    path : str or PathLike
        The JSON graph file. Weight files it names must sit in its folder.
    registry : Registry, optional
        Ops to resolve names against; default: installed plugins plus ``plugins``.
    plugins : sequence of str
        Extra plugins (file paths or module names), as ``--plugin`` on the CLI.
    limits : Limits, optional
    allow_nonfinite : bool
        Accept ``NaN`` and ``Infinity`` literals in the JSON (rejected by default).

    Returns
    -------
    Graph

    Raises
    ------
    GraphFileError
        A subclass naming the file, the JSON path and the node: SchemaError,
        DuplicateIdError, DanglingReferenceError, CycleError, UnknownOpError,
        ArityError, OpAttributeError, ShapeError, UnsafePathError, LimitError.
    PluginError
        When one of ``plugins`` cannot be loaded.

    Examples
    --------
    >>> import graphengine
    >>> g = graphengine.load("examples/seed_network.json")
    >>> sorted(g.parameters)
    ['W_h', 'W_o', 'b_h', 'b_o']
    >>> g.digraph.has_edge("W_h", "h_pre")
    True
    """
    limits = limits or Limits()
    file = str(path)
    raw = read_bounded(
        path,
        limits.max_file_bytes,
        error=lambda detail: SchemaError(detail, file=file),
        limit_error=lambda detail: LimitError(detail, file=file),
    )

    def nodes_again() -> list[Any]:
        """The nodes parsed again, for ``Graph.document``: the file's bytes are kept, not a million parsed dicts."""
        return parse_json(raw, file=file, allow_nonfinite=allow_nonfinite)["nodes"]  # type: ignore[no-any-return]

    with collector_paused():
        data = parse_json(raw, file=file, allow_nonfinite=allow_nonfinite)
        registry = registry or default_registry(plugins)
        head, table, document = validate_nodes_fast(data, file, limits, nodes_again=nodes_again)
        del data
        graph = Builder(head, registry, file, Path(path).parent, limits, allow_nonfinite, table, document).build()
        # The parsed nodes are freed here, while the collector is still off: left alive past the block, they
        # would all be scanned by the first collection after it (a third of a second on a 1M-node chain).
        del table
    return graph


def load_dict(
    data: Any,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    file: str | None = None,
    registry: Registry | None = None,
    plugins: Sequence[str] = (),
    limits: Limits | None = None,
    allow_nonfinite: bool = False,
) -> Graph:
    """Validate and build a graph from an already-parsed JSON document.

    ``base_dir`` is the folder weight files are read from; without it, a
    graph that refers to files is rejected. See :func:`load` for the rest.
    """
    limits = limits or Limits()
    registry = registry or default_registry(plugins)
    with collector_paused():
        head, table, document = validate_nodes_fast(data, file, limits, copy=True)  # the caller may change ``data``
        folder = Path(base_dir) if base_dir is not None else None
        return Builder(head, registry, file, folder, limits, allow_nonfinite, table, document).build()
