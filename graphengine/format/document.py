"""A parsed JSON value checked against the file format: a :class:`GraphV1` or a :class:`SchemaError` in the format's words."""

from __future__ import annotations

import re
from itertools import chain
from operator import itemgetter
from typing import Any, Callable, NamedTuple

from pydantic import ValidationError

from ..errors import LimitError, SchemaError
from ..errors import show as _show
from .jsontext import json_path
from .limits import Limits
from .schema import FORMAT_V1, GraphV1, NodeDecl

_SECTIONS = ("inputs", "parameters", "constants", "nodes")


class NodeTable(NamedTuple):
    """The validated node list as columns: entry ``k`` of each list belongs to ``nodes[k]``.

    ``attrs[k]`` is None when the node gives no attributes (or ``{}``).
    ``check_inputs()`` raises the SchemaError pydantic would for a node input
    that is not a name; a builder calls it before it raises any other error
    (an input that resolves to a declared name is one, so only a failed build
    needs the check, and the order of errors stays pydantic's).
    """

    ids: list[str]
    ops: list[str]
    inputs: list[list[str]]
    attrs: list[dict[str, Any] | None]
    labels: list[str | None]
    check_inputs: Callable[[], None]


def validate_document(data: Any, file: str | None, limits: Limits) -> GraphV1:
    """``data`` checked against the file format, as one :class:`GraphV1`."""
    _check_outline(data, file, limits)
    return _validated(data, file)


def validate_nodes_fast(
    data: Any,
    file: str | None,
    limits: Limits,
    *,
    copy: bool = False,
    nodes_again: Callable[[], list[Any]] | None = None,
) -> tuple[GraphV1, NodeTable, GraphV1 | Callable[[], GraphV1]]:
    """``data`` checked as :func:`validate_document` checks it: (the document but its nodes, the nodes as a
    :class:`NodeTable`, the whole document).

    When every node is plainly valid (checked in a few passes over whole
    columns, without a model per node), the document is returned as a function
    that builds it on demand, from the parsed nodes it keeps (``copy``: copies
    of them, for a caller's dict that it may change later), or from what
    ``nodes_again`` returns (the nodes parsed again from the file's text, so that
    a large file's parsed nodes need not be kept alive). Otherwise pydantic
    validates the whole document, so every error is exactly the one
    :func:`validate_document` raises.
    """
    _check_outline(data, file, limits)
    nodes = data.get("nodes", [])
    table = _plain_nodes(nodes, file, exact=copy)
    if table is None:
        doc = _validated(data, file)
        return doc, table_of(doc), doc
    head = _validated({k: v for k, v in data.items() if k != "nodes"}, file)
    if "nodes" not in data:
        return head, table, head
    if copy:
        nodes = [
            {**d, "inputs": list(d["inputs"])} | ({"attrs": dict(d["attrs"])} if "attrs" in d else {}) for d in nodes
        ]
    kept = None if nodes_again is not None else nodes

    def document() -> GraphV1:
        listed = kept if kept is not None else nodes_again()  # type: ignore[misc]
        return head.model_copy(update={"nodes": [NodeDecl.model_validate(d) for d in listed]})

    return head, table, document


def _check_outline(data: Any, file: str | None, limits: Limits) -> None:
    if not isinstance(data, dict):
        raise SchemaError(f"a graph file holds a JSON object, not {type(data).__name__}", file=file)
    version = data.get("format")
    if version != FORMAT_V1:
        raise SchemaError(
            f"unsupported format {_show(version)}; this version of graphengine reads {FORMAT_V1!r}",
            file=file,
            json_path="$.format",
        )
    # Count entries before pydantic builds a model for each of them.
    count = sum(len(v) for k in _SECTIONS if isinstance(v := data.get(k), list))
    if count > limits.max_nodes:
        raise LimitError(f"{count} entries, over the limit max_nodes={limits.max_nodes}", file=file)


def _validated(data: dict[str, Any], file: str | None) -> GraphV1:
    try:
        return GraphV1.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc, data, file) from None
    except RecursionError:
        raise SchemaError("document is nested too deeply", file=file) from None


_NODE_KEYS = frozenset(NodeDecl.model_fields)
#: Names one per line, each as ``schema.Name`` allows: the whole column checked in one match.
_NAME_LINES = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_.\-]{0,127}\n)*")
_get_id, _get_op, _get_inputs = itemgetter("id"), itemgetter("op"), itemgetter("inputs")


def _names_valid(names: list[Any], exact: bool) -> bool:
    """Every one a ``schema.Name``; ``exact``: also of type str exactly (parsed JSON has no other)."""
    if not names or (exact and set(map(type, names)) != {str}):
        return not names
    try:
        lines = "\n".join(names) + "\n"
    except TypeError:  # not a string
        return False
    # One line per name: a name holding a newline would pass as two valid ones.
    return lines.count("\n") == len(names) and _NAME_LINES.fullmatch(lines) is not None


def _plain_nodes(nodes: Any, file: str | None, exact: bool) -> NodeTable | None:
    """The node list as a table when every node is certainly valid under ``NodeDecl``; None to let pydantic judge.

    Every test is a sufficient condition (exact types, only known keys, names by
    the schema's pattern), so a node it passes is one ``NodeDecl`` accepts, but
    for the names in ``inputs``, which ``NodeTable.check_inputs`` checks when the
    build fails. Each column is read in one pass (a map, not a Python loop); the rest are passes over whole
    columns. Parsed JSON holds exact dicts and strings; ``exact`` checks that
    for values from Python.
    """
    if type(nodes) is not list:
        return None
    if exact and set(map(type, nodes)) - {dict}:
        return None
    try:  # each column in one pass at C speed (map over an itemgetter), not a Python loop over nodes
        ids: list[Any] = list(map(_get_id, nodes))
        ops: list[Any] = list(map(_get_op, nodes))
        inputs: list[Any] = list(map(_get_inputs, nodes))
        sizes = set(map(len, nodes))
    except (KeyError, TypeError):  # a key missing, or a node that is not an object
        return None
    # positions of nodes with more than id, op and inputs
    more = [k for k, node in enumerate(nodes) if len(node) != 3] if sizes - {3} else []
    if nodes and (set(map(type, ops)) != {str} or set(map(type, inputs)) != {list}):
        return None
    if not _names_valid(ids, exact) or (exact and not all(map(_all_str, inputs))):
        return None
    attrs: list[dict[str, Any] | None] = [None] * len(nodes)
    labels: list[str | None] = [None] * len(nodes)
    for k in more:
        node = nodes[k]
        given, label, description = node.get("attrs", {}), node.get("label"), node.get("description")
        if not _NODE_KEYS.issuperset(node) or type(given) is not dict or any(type(key) is not str for key in given):
            return None
        if not {type(label), type(description)} <= {str, type(None)}:
            return None
        attrs[k], labels[k] = given or None, label

    def check_inputs() -> None:
        if not _names_valid(list(chain.from_iterable(inputs)), exact):
            _validated({"format": FORMAT_V1, "outputs": ["_"], "nodes": nodes}, file)  # raises pydantic's error

    return NodeTable(ids, ops, inputs, attrs, labels, check_inputs)


def _all_str(names: list[Any]) -> bool:
    return all(type(name) is str for name in names)


def _no_check() -> None:
    pass


def table_of(doc: GraphV1) -> NodeTable:
    nodes = doc.nodes
    return NodeTable(
        [d.id for d in nodes],
        [d.op for d in nodes],
        [d.inputs for d in nodes],
        [d.attrs or None for d in nodes],
        [d.label for d in nodes],
        _no_check,
    )


def _schema_error(exc: ValidationError, data: Any, file: str | None) -> SchemaError:
    errors = exc.errors()
    first = errors[0]
    loc = first["loc"]
    node_id = None
    if len(loc) >= 2 and loc[0] in ("nodes", "inputs", "parameters", "constants") and isinstance(loc[1], int):
        try:
            entry = data[loc[0]][loc[1]]
            node_id = entry.get("id", entry.get("name")) if isinstance(entry, dict) else None
            node_id = node_id if isinstance(node_id, str) else None
        except (IndexError, KeyError, TypeError):
            pass
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown field {_show(loc[-1])}"
    elif first["type"] == "missing":
        msg = f"missing field {_show(loc[-1])}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return SchemaError(msg + more, file=file, json_path=json_path(loc), node_id=node_id)
