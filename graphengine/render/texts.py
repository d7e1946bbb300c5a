"""The sentences a diagram and the explorer share: gradient labels and Σ rows, term by term."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .numbers import _flat_text, _inline, _number, _term
from .style import FULL_ELEMENTS, SUBSCRIPTS


def tag(k: int) -> str:
    """The name of the ``k``-th contribution (1-based): c₁, c₂, ..."""
    return f"c{k}".translate(SUBSCRIPTS)


def _as_term(value: Any) -> str:
    a = np.asarray(value)
    if a.size == 1:
        return _term(float(a.reshape(-1)[0])) if a.dtype.kind in "fc" else str(a.reshape(-1)[0])
    return _flat_text(a) if a.size <= FULL_ELEMENTS else "…"


def _total(value: Any) -> str:
    a = np.asarray(value)
    return _number(float(a.reshape(-1)[0])) if a.size == 1 and a.dtype.kind in "fc" else _inline(a)


def sigma_texts(contributions: Sequence[Any], total: Any) -> list[str]:
    """The Σ row after 0, 1, ..., all of ``contributions`` have arrived; the last one ends in ``total``.

    Examples
    --------
    >>> sigma_texts([0.0554, -0.01905], 0.03635)
    ['Σ = c₁ + c₂ = ? + ?', 'Σ = c₁ + c₂ = 0.0554 + ?', 'Σ = c₁ + c₂ = 0.0554 + (-0.01905) = 0.03635']
    >>> sigma_texts([[1.0, 2.0], [0.5, 0.5]], [1.5, 2.5])[-1]
    'Σ = c₁ + c₂ = [1, 2] + [0.5, 0.5] = [1.5, 2.5]'
    """
    n = len(contributions)
    tags = " + ".join(tag(k) for k in range(1, n + 1))
    terms = [_as_term(c) for c in contributions]
    texts = []
    for arrived in range(n + 1):
        shown = " + ".join(terms[:arrived] + ["?"] * (n - arrived))
        if all(t == "…" for t in terms):
            shown = " + ".join(tags.split(" + ")[:arrived] + ["?"] * (n - arrived))
        texts.append(f"Σ = {tags} = {shown}" + (f" = {_total(total)}" if arrived == n else ""))
    if texts[-1].startswith(f"Σ = {tags} = {tags} = "):  # large tensors: no numbers to repeat
        texts[-1] = f"Σ = {tags} = {_total(total)}"
    return texts


def grad_label(output: str | None, name: str) -> str:
    """``∂loss/∂h``."""
    return f"∂{output or 'out'}/∂{name}"
