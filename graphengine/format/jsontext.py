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

    try:
        if allow_nonfinite:
            return json.loads(raw)
        return json.loads(raw, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=file) from None
    except UnicodeDecodeError as exc:
        raise SchemaError(f"file is not UTF-8 text: {exc.reason}", file=file) from None
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        raise SchemaError(f"invalid JSON: {_clip(str(exc), 120)}", file=file) from None
    except RecursionError:
        raise SchemaError("JSON is nested too deeply to parse", file=file) from None


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
