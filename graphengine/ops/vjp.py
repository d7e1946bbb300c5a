"""The one place where broadcasting is undone, and where a VJP's result is made to fit its input."""

from __future__ import annotations

import numpy as np


def unbroadcast(cotangent: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``cotangent`` over the axes that broadcasting added or stretched.

    Every VJP may return its cotangent in the broadcast (output) shape; the
    engine calls this once per contribution so no op has to.

    Raises
    ------
    ValueError
        When ``cotangent`` could not have come from broadcasting ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> unbroadcast(np.ones((4, 3)), (3,))
    array([4., 4., 4.])
    >>> unbroadcast(np.ones((4, 3)), (4, 1)).shape
    (4, 1)
    """
    if cotangent.shape == shape:
        return cotangent
    lead = cotangent.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"cotangent shape {cotangent.shape} has fewer dimensions than input shape {shape}")
    axes = list(range(lead))
    stretched = False
    for i, n in enumerate(shape):
        m = cotangent.shape[lead + i]
        if n == 1 and m != 1:
            axes.append(lead + i)
            stretched = True
        elif n != m:
            raise ValueError(f"cotangent shape {cotangent.shape} does not broadcast from input shape {shape}")
    # np.add.reduce directly: ndarray.sum's Python wrappers cost more than the sum of a small array.
    reduced = np.add.reduce(cotangent, axis=tuple(axes))
    return np.reshape(reduced, shape) if stretched else np.asarray(reduced)  # a full reduction gives a scalar
