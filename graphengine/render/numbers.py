"""Numbers as a diagram shows them: short, but never rounded to a value they are not."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    pass

from .safe import html_text
from .style import FULL_ELEMENTS


def _number(v: float) -> str:
    """A number in at least 4 significant digits, never shown rounder than it is.

    Examples
    --------
    >>> _number(0.99997), _number(0.5), _number(0.123456), _number(2.0), _number(1.3 * 0.7)
    ('0.99997', '0.5', '0.1235', '2', '0.91')
    """
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    # 4 significant digits; more when that drops two or more of them (0.99997 is not "1", 0.10004 not "0.1").
    for digits in range(4, 18):
        text = f"{v:.{digits}g}"
        if abs(float(text) - v) <= 1e-12 * abs(v) or len(_significant(text)) >= digits - 1:  # exact up to float noise
            break
    return "0" if text == "-0" else text


def _significant(text: str) -> str:
    mantissa = text.lower().split("e")[0].lstrip("-").replace(".", "")
    return mantissa.lstrip("0")


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


#: Matrices up to this many rows and columns are drawn as heatmap tables with numbers.
HEATMAP_MAX = 8


def _heat(v: float, scale: float) -> str:
    """White at 0, blue for negative, red for positive; ``scale`` maps to full colour."""
    t = 0.0 if not np.isfinite(v) or scale == 0 else max(-1.0, min(1.0, v / scale)) * 0.6
    r, g, b = (1, 1 - t, 1 - t) if t >= 0 else (1 + t, 1 + t, 1)
    return "#%02x%02x%02x" % (round(r * 255), round(g * 255), round(b * 255))


def _heatmap(value: Any) -> str | None:
    """An HTML-like table of a matrix, one cell per element coloured by sign and size; None when not a small matrix."""
    a = np.asarray(value)
    if a.ndim != 2 or a.dtype.kind not in "fiu" or not (a.shape[0] > 1 and a.shape[1] > 1):
        return None
    if a.shape[0] > HEATMAP_MAX or a.shape[1] > HEATMAP_MAX:
        return None
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    rows = "".join(
        "<TR>"
        + "".join(
            f'<TD BGCOLOR="{_heat(float(v), scale)}"><FONT POINT-SIZE="8">{_esc(_number(float(v)))}</FONT></TD>'
            for v in row
        )
        + "</TR>"
        for row in a
    )
    return f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2" COLOR="#e5e7eb">{rows}</TABLE>'


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
