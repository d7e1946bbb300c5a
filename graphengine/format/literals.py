"""Inline values (nested JSON lists), checked element by element before numpy converts them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import clip as _clip
from .limits import Limits


def check_numbers(value: Any, dtype: np.dtype, limits: Limits) -> tuple[tuple[int, ...], str] | None:
    """Walk a nested-list literal (iteratively: it may be deep) before numpy converts it.

    Returns ``(index, problem)`` for the first bad element, or None. Catches
    what ``np.array`` would accept silently: strings ("1.5" -> 1.5), null
    (-> NaN), true/false (-> 1/0), floats in an integer tensor, integers out of
    its range, and more elements or nesting than the limits allow. Lists are
    checked a whole row at a time, so a big literal costs little.
    """
    integer = dtype.kind in "iu"
    allowed = (int,) if integer else (int, float)
    count = 0
    stack: list[tuple[Any, tuple[int, ...]]] = [([value], ())]  # a one-row wrapper: the value itself is element ()
    while stack:
        row, where = stack.pop()
        if len(where) > limits.max_ndim:
            return where, f"nested deeper than the limit max_ndim={limits.max_ndim}"
        if any(type(x) is list for x in row):
            stack.extend((x, where + (i,)) for i, x in enumerate(row) if type(x) is list)
            continue  # a row mixing lists and numbers is ragged: numpy says so
        count += len(row)
        if count > limits.max_elements:
            return where, f"more than {limits.max_elements} elements, over the limit max_elements={limits.max_elements}"
        if not all(type(x) in allowed for x in row):
            i, x = next((i, x) for i, x in enumerate(row) if type(x) not in allowed)
            kind = {bool: "true/false", str: "a string", type(None): "null", dict: "an object", float: f"{x!r}"}.get(
                type(x), type(x).__name__
            )
            need = f"integers ({dtype.name})" if integer else "numbers"
            return where + (i,), f"element is {kind}; values are {need} or nested lists of them"
        if integer and row:
            info = np.iinfo(dtype)
            if min(row) < info.min or max(row) > info.max:
                i, x = next((i, x) for i, x in enumerate(row) if not info.min <= x <= info.max)
                return where + (i,), f"element {_clip(str(x), 40)} does not fit {dtype.name}"
    return None


def index_path(where: tuple[int, ...]) -> str:
    return "".join(f"[{i}]" for i in where)


def first_nonfinite(value: Any) -> tuple[Any, ...] | None:
    """The location of the first NaN/Infinity float in nested JSON values, or None."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            stack.extend((v, where + (k,)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, where + (i,)) for i, v in enumerate(item))
    return None
