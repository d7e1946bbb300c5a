"""Numbers as a diagram shows them: short, but never rounded to a value they are not."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    pass

from .safe import html_text
from .style import FULL_ELEMENTS


def _number(v: float) -> str:
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    text = f"{v:.4g}"
    return "0" if text == "-0" else text


def _term(v: float) -> str:
    """A number as a term of a sum: negatives in parentheses."""
    text = _number(v)
    return f"({text})" if text.startswith("-") else text


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _flat_text(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _number(float(a)) if a.dtype.kind in "fc" else str(a.item())
    text = np.array2string(a, separator=", ", max_line_width=10**6, threshold=10**6, formatter={"float_kind": _number})  # type: ignore[arg-type]
    return text.replace("\n", "")


def _summary(a: np.ndarray) -> str:
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if finite.size == 0:
        return f"{_shape(a.shape)} no finite elements"
    return (
        f"{_shape(a.shape)} mean {_number(float(finite.mean()))} std {_number(float(finite.std()))} "
        f"min {_number(float(finite.min()))} max {_number(float(finite.max()))}"
    )


def _inline(value: Any) -> str:
    """One-line text: the full value when small, else a summary."""
    a = np.asarray(value)
    return _flat_text(a) if a.size <= FULL_ELEMENTS else _summary(a)


def _html_value(value: Any) -> str:
    a = np.asarray(value)
    if a.size <= FULL_ELEMENTS and a.ndim == 2 and a.shape[0] > 1:
        return '<BR ALIGN="LEFT"/>'.join(_esc(_flat_text(row)) for row in a)
    return _esc(_inline(a))


def _nonfinite(value: Any) -> str:
    a = np.asarray(value)
    if a.dtype.kind != "f":
        return ""
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    parts = [f"{nan} NaN"] if nan else []
    parts += [f"{inf} Inf"] if inf else []
    return ", ".join(parts)


def _esc(text: str) -> str:
    return html_text(text)
