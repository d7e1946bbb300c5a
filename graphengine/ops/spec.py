"""Static types of values: :class:`TensorSpec` and the shape helpers that shape rules share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ShapeError

FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))


@dataclass(frozen=True)
class TensorSpec:
    """The static type of a value: shape (``None`` = free dimension) and dtype."""

    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype.name}[{dims}]"


def broadcast_shapes(*shapes: Sequence[int | None]) -> tuple[int | None, ...]:
    """Numpy broadcasting for shapes whose dimensions may be ``None``.

    Raises
    ------
    ShapeError
        When two known dimensions differ and neither is 1; names all shapes.

    Examples
    --------
    >>> broadcast_shapes((None, 3), (3,))
    (None, 3)
    >>> broadcast_shapes((2, 1), (1, 4))
    (2, 4)
    """
    ndim = max((len(s) for s in shapes), default=0)
    result: list[int | None] = []
    for axis in range(-ndim, 0):
        dims = [s[axis] for s in shapes if len(s) >= -axis]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            shown = " and ".join(_fmt_shape(s) for s in shapes)
            raise ShapeError(f"shapes {shown} do not broadcast (axis {axis})")
        if known:
            result.append(known.pop())
        elif any(d is None for d in dims):
            result.append(None)
        else:
            result.append(1)
    return tuple(result)


def common_dtype(*specs: TensorSpec, float_only: bool = True) -> np.dtype:
    """The one dtype shared by ``specs``; graphengine never promotes silently.

    Raises
    ------
    ShapeError
        When the dtypes differ, or (``float_only``) one is not float32/float64.
    """
    dtypes = [s.dtype for s in specs]
    if float_only:
        for s in specs:
            if s.dtype not in FLOAT_DTYPES:
                raise ShapeError(f"expected float32 or float64, got {s.dtype.name} (shape {_fmt_shape(s.shape)})")
    if len(set(dtypes)) > 1:
        shown = " and ".join(f"{s.dtype.name}{_fmt_shape(s.shape)}" for s in specs)
        raise ShapeError(f"dtypes differ: {shown}; cast one explicitly (graphengine does not promote)")
    return dtypes[0]


def elementwise_rule(*specs: TensorSpec, attrs: Any = None) -> TensorSpec:
    """Shape rule of elementwise ops: broadcast shapes, one float dtype."""
    return TensorSpec(broadcast_shapes(*(s.shape for s in specs)), common_dtype(*specs))


def _fmt_shape(shape: Iterable[int | str | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(tuple(shape)) == 1 else "") + ")"


def format_shape(shape: Iterable[int | str | None]) -> str:
    """``(None, 3)`` as ``(?, 3)`` and ``("batch", 3)`` as ``(batch, 3)``, for messages."""
    return _fmt_shape(tuple(shape))
