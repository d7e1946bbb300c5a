"""The one place where broadcasting is undone, and where a VJP's result is made to fit its input.

:func:`call_vjp` is the only way graphengine calls a VJP: the step interpreter,
gradcheck and the diagrams call it, and the generated code's slow path is its
second half, :func:`fit_cotangent` (the generated code makes the call itself,
inline, and tests the result's shape and dtype before taking the slow path).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from ..errors import ExecutionError

_add_reduce = np.add.reduce


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
    have = cotangent.shape
    if have == shape:
        return cotangent
    # The two common cases first, without building a list of axes: a scalar input (one bias shared by
    # every unit), and an input that broadcasting only gave leading axes (a batch).
    if not shape:
        if len(have) == 1 and have[0] < 8:
            # A few numbers: Python's sum of the list costs half a numpy reduction's set-up, and numpy also
            # adds fewer than 8 numbers one after the other (float32 is added in float64, then rounded).
            return np.asarray(sum(cotangent.tolist()), dtype=cotangent.dtype)
        return np.asarray(_add_reduce(cotangent, None))  # a full reduction gives a numpy scalar
    lead = len(have) - len(shape)
    if lead > 0 and have[lead:] == shape:
        return _add_reduce(cotangent, 0 if lead == 1 else tuple(range(lead)))  # type: ignore[no-any-return]
    if lead < 0:
        raise ValueError(f"cotangent shape {have} has fewer dimensions than input shape {shape}")
    axes = list(range(lead))
    for i, n in enumerate(shape):
        m = have[lead + i]
        if n == 1 and m != 1:
            axes.append(lead + i)
        elif n != m:
            raise ValueError(f"cotangent shape {have} does not broadcast from input shape {shape}")
    # np.add.reduce directly: ndarray.sum's Python wrappers cost more than the sum of a small array.
    return np.reshape(_add_reduce(cotangent, tuple(axes)), shape)


class VJPSite(NamedTuple):
    """Where a VJP is called, for messages: the op, the input, and the node when there is one.

    A named tuple, so that the step interpreter can make one per call cheaply.

    Examples
    --------
    >>> str(VJPSite("mul", 1, "b", node="h"))
    "node 'h' (op 'mul'), input 1 ('b')"
    >>> str(VJPSite("mul", 1, "b"))
    "op 'mul', input 1 ('b')"
    """

    op: str
    position: int
    input: str
    node: str | None = None

    def __str__(self) -> str:
        head = f"op {self.op!r}" if self.node is None else f"node {self.node!r} (op {self.op!r})"
        return f"{head}, input {self.position} ({self.input!r})"


class VJPError(ExecutionError):
    """A VJP raised, or returned something that does not fit its input.

    The message starts with the :class:`VJPSite`; ``site`` holds it as data.
    """

    def __init__(self, message: str, site: VJPSite) -> None:
        super().__init__(message)
        self.site = site


def vjp_raised(site: VJPSite, exc: BaseException) -> VJPError:
    """The error for a VJP that raised ``exc`` (the caller chains it: ``raise ... from exc``)."""
    return VJPError(f"{site}: VJP raised {type(exc).__name__}: {exc}", site)


def call_vjp(
    vjp: Any,
    g: Any,
    out: Any,
    inputs: Sequence[Any],
    attrs: Any,
    *,
    shape: tuple[int, ...],
    dtype: np.dtype,
    site: VJPSite,
) -> np.ndarray:
    """Call ``vjp(g, out, *inputs, attrs=attrs)`` and make its result fit the input.

    The result is reduced to ``shape`` (see :func:`unbroadcast`) and must have
    ``dtype``; see :func:`fit_cotangent`.

    Parameters
    ----------
    vjp : callable
        ``vjp(g, out, *inputs, attrs)``; bind ``argnum`` first for a variadic op.
    g, out : ndarray
        The output's cotangent and value (``out`` may be None when unread).
    inputs : sequence
        The op's inputs (None where unread).
    attrs
        The op's attribute model.
    shape : tuple of int
        The input's shape (at run time).
    dtype : numpy.dtype
        The input's dtype.
    site : VJPSite
        Where the call is, for messages.

    Returns
    -------
    numpy.ndarray
        The cotangent of the input: its shape, its dtype.

    Raises
    ------
    VJPError
        An :class:`~graphengine.errors.ExecutionError` naming ``site``: the VJP
        raised, or returned a non-array, a shape that does not reduce to
        ``shape`` (both shapes are named), or another dtype.

    Examples
    --------
    >>> import numpy as np
    >>> def vjp_b(g, out, a, b, *, attrs):
    ...     return g * a  # in the broadcast shape (2, 3)
    >>> site = VJPSite("mul", 1, "b", node="h")
    >>> g, a = np.ones((2, 3)), np.full((2, 3), 2.0)
    >>> call_vjp(vjp_b, g, None, [a, None], None, shape=(3,), dtype=np.dtype("float64"), site=site)
    array([4., 4., 4.])
    >>> call_vjp(vjp_b, g, None, [a, None], None, shape=(2,), dtype=np.dtype("float64"), site=site)
    Traceback (most recent call last):
    ...
    graphengine.ops.vjp.VJPError: node 'h' (op 'mul'), input 1 ('b'): VJP returned shape (2, 3), which does not reduce to the input's shape (2,)
    """
    try:
        raw = vjp(g, out, *inputs, attrs=attrs)
    except Exception as exc:
        raise vjp_raised(site, exc) from exc
    return fit_cotangent(raw, shape, dtype, site)


def fit_cotangent(raw: Any, shape: tuple[int, ...], dtype: np.dtype, site: VJPSite) -> np.ndarray:
    """The second half of :func:`call_vjp`: check a VJP's result and reduce it to ``shape``.

    A numpy array or scalar of the right shape and dtype comes back as it is:
    the generated code's inline test (``c.__class__ is ndarray``, ``c.shape ==
    shape``, ``c.dtype is dtype``) passes exactly those without calling this.

    Raises
    ------
    VJPError
        As :func:`call_vjp`.

    Examples
    --------
    >>> import numpy as np
    >>> fit_cotangent(np.ones((4, 3)), (1, 3), np.dtype("float64"), VJPSite("add", 0, "a")).tolist()
    [[4.0, 4.0, 4.0]]
    >>> fit_cotangent([1.0], (1,), np.dtype("float64"), VJPSite("add", 0, "a"))
    Traceback (most recent call last):
    ...
    graphengine.ops.vjp.VJPError: op 'add', input 0 ('a'): VJP returned a list, not a numpy array
    """
    if not isinstance(raw, (np.ndarray, np.generic)):
        raise VJPError(f"{site}: VJP returned a {type(raw).__name__}, not a numpy array", site)
    if (
        raw.dtype is not dtype and raw.dtype != dtype
    ):  # checked first, so that only numbers of the input's dtype are summed
        raise VJPError(f"{site}: VJP returned {raw.dtype.name} for a {dtype.name} input", site)
    try:
        return unbroadcast(raw, shape)  # type: ignore[arg-type]
    except ValueError:
        raise VJPError(
            f"{site}: VJP returned shape {raw.shape}, which does not reduce to the input's shape {shape}", site
        ) from None
