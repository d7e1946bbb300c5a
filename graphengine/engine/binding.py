"""Feeds in, cotangent seeds: turning a call's arguments into the slot values a schedule runs on.

A :class:`Binder` is built once per plan from the graph; ``bind`` then reads
only plain dicts and lists (the graph's parameter and constant dicts are read
on every call, so that training may replace their entries).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping, Sequence

import numpy as np

from ..errors import FeedError, clip, did_you_mean
from ..ops import TensorSpec, format_shape
from .limits import RunLimits

if TYPE_CHECKING:
    from ..graph import Graph


def _read_only_one(dtype: str) -> np.ndarray:
    one = np.ones((), dtype=dtype)
    one.flags.writeable = False
    return one


#: The cotangent of a scalar output, one per float dtype, shared by every call.
_ONE = {np.dtype(name): _read_only_one(name) for name in ("float32", "float64")}


def check_names(names: Sequence[str], slot: Mapping[str, int], what: str) -> None:
    """Raise a FeedError, with a did-you-mean hint, for the first of ``names`` not in ``slot``."""
    for name in names:
        if name not in slot:
            hint = did_you_mean(name, slot)
            raise FeedError(f"{what}: no value named {name!r} in the graph{hint}")


class Binder:
    """Binds the feeds of one call to slots; built once per plan.

    Parameters
    ----------
    graph : Graph
    slot : mapping of str to int
        Slot of every name; sources (inputs, parameters, constants) first.
    specs : sequence of TensorSpec
        Per slot, already in the plan's dtype.
    dtype : numpy.dtype or None
        The plan's float dtype, when it overrides the declared ones.

    Examples
    --------
    >>> import graphengine
    >>> plan = graphengine.load("examples/seed_network.json").compile()
    >>> binder = Binder(plan.graph, plan.slot, plan.specs, None)
    >>> values = binder.bind({"x": [1, 0]}, frozenset(range(len(plan.names))))
    >>> values[plan.slot["x"]], values[plan.slot["target"]]  # fed (as float64), and the default
    (array([1., 0.]), array([0.01, 0.99]))
    """

    def __init__(
        self, graph: "Graph", slot: Mapping[str, int], specs: Sequence[TensorSpec], dtype: np.dtype | None
    ) -> None:
        self.graph, self.slot, self.specs, self.dtype = graph, slot, specs, dtype
        self.n_slots = len(specs)
        self.run_limits = RunLimits(graph, dict(slot), specs)
        self.n_sources = len(graph.inputs) + len(graph.parameters) + len(graph.constants)
        self.input_slots = [(slot[name], name, info) for name, info in graph.inputs.items()]
        # Where each feedable value is declared, as a graph file error names it: "file: $.inputs[0] (node 'x')".
        self.where = {
            name: declared_at(graph.file, section, i, name)
            for section, table in (
                ("inputs", graph.inputs),
                ("parameters", graph.parameters),
                ("constants", graph.constants),
            )
            for i, name in enumerate(table)
        }
        self.dims = {name: info.dims for name, info in graph.inputs.items()}
        # Parameters and constants: (slot, name, is a parameter), read from the graph's dicts on every call.
        self.source_slots = [(slot[name], name, True) for name in graph.parameters]
        self.source_slots += [(slot[name], name, False) for name in graph.constants]
        # Inputs with named dimensions: (slot, input name, ((axis, dimension name), ...)). Usually none.
        self.named_dims = [
            (slot[name], name, tuple((axis, d) for axis, d in enumerate(info.dims) if isinstance(d, str)))
            for name, info in graph.inputs.items()
            if any(isinstance(d, str) for d in info.dims)
        ]
        self.plain = plain_feeds(graph.inputs, slot, specs)
        self.n_inputs = len(graph.inputs)
        n_params = len(graph.parameters)
        self.parameter_slots = slice(self.n_inputs, self.n_inputs + n_params)
        self.constant_slots = slice(self.n_inputs + n_params, self.n_sources)
        self.parameter_names, self.constant_names = list(graph.parameters), list(graph.constants)

    def cast(self, value: np.ndarray) -> np.ndarray:
        """``value`` in the plan's dtype, when it is a float array of another one."""
        if self.dtype is not None and value.dtype.kind == "f" and value.dtype != self.dtype:
            return value.astype(self.dtype)
        return value

    def bind(self, feeds: Mapping[str, Any] | None, required: Collection[int]) -> list[Any]:
        """One value per slot: the feeds, then defaults of ``required`` inputs, then parameters and constants.

        Raises
        ------
        FeedError
            An unknown or computed name, a missing input, a wrong shape or dtype,
            or a dimension name bound to two sizes.
        """
        values: list[Any] = [None] * self.n_slots
        plain = general = 0  # feeds bound by the plain test, and by coerce
        if feeds:
            plain_of, nd = self.plain, np.ndarray
            for name, value in feeds.items():
                entry = plain_of.get(name)
                if entry is not None and value.__class__ is nd:
                    at, dtype, ndim, lead, tail = entry
                    shape = value.shape
                    # What coerce accepts unchanged, in one test: this dtype, these dimensions.
                    if value.dtype is dtype and len(shape) == ndim and shape[lead:] == tail:
                        values[at] = value
                        plain += 1
                        continue
                slot = self.slot.get(name)
                if slot is None or slot >= self.n_sources:
                    check_names([name] if slot is None else [], self.slot, "feed")
                    raise FeedError(f"feed: {name!r} is computed by the graph and cannot be fed")
                values[slot] = coerce(name, value, self.specs[slot], self.where[name], self.dims.get(name))
                general += 1
        cast = self.dtype is not None
        if plain < self.n_inputs:  # an input not fed: its default, if the request needs it
            for slot, name, info in self.input_slots:
                if values[slot] is None and slot in required:
                    default = info.default
                    if default is None:
                        raise FeedError(
                            f"{self.where[name]}input {name!r} ({self.specs[slot]}) needs a value: feed it or give it a default"
                        )
                    values[slot] = self.cast(default) if cast else default
        if self.named_dims:
            check_dimension_names(self.named_dims, values, self.where)
        if self.run_limits.active:  # free dimensions: bound what this call computes before it allocates
            self.run_limits.check(values)
        # Read the graph's dicts on every call (training replaces their entries).
        graph = self.graph
        parameters, constants = graph.parameters, graph.constants
        if not (general or cast):  # no parameter or constant fed by name: each dict read in C, in slot order
            values[self.parameter_slots] = map(parameters.__getitem__, self.parameter_names)
            values[self.constant_slots] = map(constants.__getitem__, self.constant_names)
            return values
        for slot, name, is_param in self.source_slots:
            if values[slot] is None:
                value = parameters[name] if is_param else constants[name]
                values[slot] = self.cast(value) if cast else value
        return values


def plain_feeds(
    inputs: Mapping[str, Any], slot: Mapping[str, int], specs: Sequence[TensorSpec]
) -> dict[str, tuple[int, np.dtype, int, int, tuple[int, ...]]]:
    """Per input whose declared shape is free dimensions then fixed ones: ``(slot, dtype, ndim, lead, tail)``.

    A feed that is an ndarray of exactly ``dtype``, with ``ndim`` dimensions ending in ``tail`` (after
    ``lead`` free ones), is what :func:`coerce` would return unchanged; :meth:`Binder.bind` takes it as
    it is. Anything else (a list, another dtype, a wrong shape) goes through :func:`coerce`, which
    converts it or raises its error. An input with a free dimension after a fixed one always does.

    Examples
    --------
    >>> import numpy as np
    >>> spec = TensorSpec((None, 64), np.dtype("float64"))
    >>> plain_feeds({"x": None}, {"x": 0}, [spec])
    {'x': (0, dtype('float64'), 2, 1, (64,))}
    """
    plain = {}
    for name in inputs:
        s = slot[name]
        shape = specs[s].shape
        lead = 0
        while lead < len(shape) and shape[lead] is None:
            lead += 1
        tail = tuple(d for d in shape[lead:] if d is not None)
        if len(tail) == len(shape) - lead:
            plain[name] = (s, specs[s].dtype, len(shape), lead, tail)
    return plain


def declared_at(file: str | None, section: str, index: int, name: str) -> str:
    """The prefix of a feed error about entry ``index`` of ``section``: the file, its JSON path and its name.

    Examples
    --------
    >>> declared_at("net.json", "inputs", 1, "label")
    "net.json: $.inputs[1] (node 'label'): "
    """
    return f"{clip(file or '<graph>', 200)}: $.{section}[{index}] (node {clip(name)!r}): "


def check_dimension_names(
    named_dims: Sequence[tuple[int, str, tuple[tuple[int, str], ...]]],
    values: Sequence[Any],
    where: Mapping[str, str] | None = None,
) -> None:
    """Every use of a dimension name within one call binds one size; a second size is a FeedError.

    ``named_dims`` holds ``(slot, input name, ((axis, dimension name), ...))``;
    inputs whose value is None (not needed by the request) are skipped.
    ``where`` maps an input to the prefix that locates it (see :func:`declared_at`);
    the error names the input whose size disagrees, its shape and the first one's.

    Examples
    --------
    >>> import numpy as np
    >>> dims = [(0, "x", ((0, "batch"),)), (1, "t", ((0, "batch"),))]
    >>> check_dimension_names(dims, [np.zeros((2, 3)), np.zeros((2, 1))])
    >>> check_dimension_names(dims, [np.zeros((2, 3)), np.zeros((1, 1))])
    Traceback (most recent call last):
    ...
    graphengine.errors.FeedError: dimension 'batch' is 2 in input 'x' (axis 0 of shape (2, 3)) but 1 in input 't' (axis 0 of shape (1, 1)); every use of 'batch' must have one size in a call
    """
    where = where or {}
    bound: dict[str, tuple[int, str, int, tuple[int, ...]]] = {}  # dimension name -> (size, input, axis, shape)
    for slot, name, axes in named_dims:
        value = values[slot]
        if value is None:
            continue
        for axis, dim in axes:
            size = value.shape[axis]
            first = bound.setdefault(dim, (size, name, axis, value.shape))
            if first[0] != size:
                raise FeedError(
                    f"{where.get(name, '')}dimension {dim!r} is {first[0]} in input {first[1]!r} "
                    f"(axis {first[2]} of shape {format_shape(first[3])}) but {size} in input {name!r} "
                    f"(axis {axis} of shape {format_shape(value.shape)}); every use of {dim!r} must have one size in a call"
                )


def coerce(
    name: str, value: Any, spec: TensorSpec, where: str = "", dims: Sequence[int | str | None] | None = None
) -> np.ndarray:
    """A fed value as an array of ``spec``'s dtype; a FeedError unless its shape fits ``spec``.

    Integers may feed a float input; floats may not feed an integer one.
    ``where`` starts every message (the file, JSON path and input; see :func:`declared_at`);
    ``dims``, the declared dimensions with their names, is what a shape message shows.

    Examples
    --------
    >>> import numpy as np
    >>> coerce("x", [[1, 2]], TensorSpec((None, 2), np.dtype("float64")))
    array([[1., 2.]])
    """
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise FeedError(f"{where}feed {name!r}: not an array: {clip(str(exc), 200)}") from None
    if array.dtype.kind not in "fiub" or (spec.dtype.kind in "iu" and array.dtype.kind == "f"):
        raise FeedError(f"{where}feed {name!r}: got {array.dtype.name} values for a {spec.dtype.name} input")
    array = array.astype(spec.dtype, copy=False)
    shape = array.shape
    if len(shape) != len(spec.shape) or any(d is not None and d != s for s, d in zip(shape, spec.shape)):
        raise FeedError(
            f"{where}feed {name!r}: shape {format_shape(shape)} does not match the declared {format_shape(spec.shape if dims is None else dims)}"
        )
    return array


@functools.lru_cache(maxsize=256)
def default_seed(output: str) -> Callable[[Any], np.ndarray]:
    """``seed(out)``: :func:`seed_cotangent` with no cotangent given, made once per output name (cached).

    Examples
    --------
    >>> import numpy as np
    >>> seed = default_seed("loss")
    >>> seed(np.float64(0.5)), seed(np.zeros(())) is seed(np.zeros(()))  # a loss's 1 is shared, read-only
    (array(1.), True)
    """
    ones = _ONE

    def seed(out: Any) -> np.ndarray:
        if out.__class__ is np.ndarray and out.shape == ():  # a loss: seed_cotangent's first test, without its call
            one = ones.get(out.dtype)
            if one is not None:
                return one
        return seed_cotangent(out, None, output)

    return seed


def seed_cotangent(out: Any, cotangent: Any, output: str) -> np.ndarray:
    """The cotangent that starts reverse mode at ``out`` (the value named ``output``).

    ``cotangent`` None means 1, which only a one-element output allows. A
    scalar's 1 is a shared read-only array, copied if it comes back as a gradient.

    Examples
    --------
    >>> import numpy as np
    >>> seed_cotangent(np.float64(0.5), None, "loss")
    array(1.)
    >>> seed_cotangent(np.zeros(2), [1.0, -1.0], "y")
    array([ 1., -1.])
    """
    if cotangent is None and out.__class__ is np.ndarray and out.shape == ():  # a loss: no asarray, no size
        one = _ONE.get(out.dtype)
        if one is not None:
            return one
    out = np.asarray(out)
    if cotangent is None:
        if out.size != 1:
            raise FeedError(
                f"output {output!r} has shape {out.shape}, not a scalar; pass a cotangent of that shape (cotangent=... in Python, --cotangent on the command line)"
            )
        if out.shape == ():
            one = _ONE.get(out.dtype)
            if one is not None:
                return one
        return np.ones(out.shape, dtype=out.dtype)
    seed = np.array(cotangent, dtype=out.dtype)  # a copy: it may come back as a gradient
    if seed.shape != out.shape:
        raise FeedError(f"cotangent has shape {seed.shape} but output {output!r} has shape {out.shape}")
    return seed
