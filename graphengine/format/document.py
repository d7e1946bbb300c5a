"""A parsed JSON value checked against the file format: a :class:`GraphV1` or a :class:`SchemaError` in the format's words."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import LimitError, SchemaError
from ..errors import show as _show
from .jsontext import json_path
from .limits import Limits
from .schema import FORMAT_V1, GraphV1

_SECTIONS = ("inputs", "parameters", "constants", "nodes")


def validate_document(data: Any, file: str | None, limits: Limits) -> GraphV1:
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
    try:
        return GraphV1.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc, data, file) from None
    except RecursionError:
        raise SchemaError("document is nested too deeply", file=file) from None


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
