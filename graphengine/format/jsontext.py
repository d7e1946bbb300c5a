"""JSON text in, Python values out: strict parsing and JSON paths for messages."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from ..errors import SchemaError
from ..errors import clip as _clip


def parse_json(raw: bytes | str, *, file: str | None, allow_nonfinite: bool = False) -> Any:
    """Parse JSON text, rejecting NaN/Infinity unless allowed.

    Raises
    ------
    SchemaError
        On malformed JSON (with line and column), non-finite literals, or
        nesting too deep to parse.
    """

    def reject_constant(name: str) -> float:
        raise SchemaError(
            f"JSON literal {name} is not allowed (load with allow_nonfinite=True / --allow-nonfinite to accept it)",
            file=file,
        )

    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):  # a key given twice: the reader would see the first, json keeps the last
            key = _repeated_key(items)
            duplicates.append(key)
            return _Duplicated(out, key)
        return out

    constant = {} if allow_nonfinite else {"parse_constant": reject_constant}
    try:
        data = json.loads(raw, object_pairs_hook=pairs, **constant)  # type: ignore[arg-type]
    except json.JSONDecodeError as exc:
        raise SchemaError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=file) from None
    except UnicodeDecodeError as exc:
        raise SchemaError(f"file is not UTF-8 text: {exc.reason}", file=file) from None
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        raise SchemaError(f"invalid JSON: {_clip(str(exc), 120)}", file=file) from None
    except RecursionError:
        raise SchemaError("JSON is nested too deeply to parse", file=file) from None
    if duplicates:
        where, key = _first_duplicate(data)
        raise SchemaError(f"key {json.dumps(_clip(key, 64))} appears twice in one object", file=file, json_path=where)
    return data


def _repeated_key(items: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no key is repeated")  # pragma: no cover


class _Duplicated(dict):  # type: ignore[type-arg]
    """An object that held a key twice; marks where, for the message."""

    def __init__(self, items: dict[str, Any], key: str) -> None:
        super().__init__(items)
        self.duplicate = key


def _first_duplicate(data: Any) -> tuple[str, str]:
    """JSON path and key of the first object (document order) that held a key twice; walked without recursion."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, _Duplicated):
            return json_path(loc), value.duplicate
        if isinstance(value, dict):
            stack.extend((v, (*loc, k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in reversed(list(enumerate(value))))
    raise AssertionError("a duplicate key was recorded but not found")  # pragma: no cover


def json_path(loc: Iterable[Any]) -> str:
    """``("nodes", 2, "attrs")`` as ``$.nodes[2].attrs``.

    Keys that are not plain identifiers are quoted and escaped (``$.attrs["a b"]``),
    so a hostile key cannot put a newline or a terminal escape into a message.
    """
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(_clip(str(part), 64))}]"  # ensure_ascii: escapes control characters
    return out


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}\Z")
