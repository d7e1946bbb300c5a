"""Run-time limits: the sizes a call will compute, bound before anything is allocated.

At load time a free dimension counts as 1, so a file's limits say nothing
about what its nodes produce once a feed fixes the free and named
dimensions. :class:`RunLimits` re-runs every node's shape rule on the
concrete shapes of a call's inputs, in topological order, and checks each
output against ``max_elements`` and all of them together (with the feeds)
against ``max_total_bytes`` — before the plan runs a single op. A node
whose rule refuses the fed shapes is a :class:`FeedError` naming the node,
the op, its input shapes and the feeds (a rule that crashes is a
:class:`ShapeError`), also before anything runs.

The limits are only as true as the shape rules, so the first call of each
new signature runs on the plan's checked interpreter with the specs
measured here (:meth:`RunLimits.take_fresh`): each op's output is compared
with its rule right after the op returns it, and one bigger than its rule
said is an ExecutionError before the next op runs.

The answer depends only on the input shapes, so it is cached per distinct
shape signature: a steady training loop pays one tuple and one dict lookup
per call. A graph without free dimensions was bounded at load time and pays
nothing.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import FeedError, GraphEngineError, LimitError, ShapeError, clip
from ..format import Limits
from ..ops import TensorSpec, format_shape

if TYPE_CHECKING:
    from ..graph import Graph

__all__ = ["RunLimits"]

#: Distinct input-shape signatures remembered per plan; past this the cache starts afresh (a bound on memory).
CACHE_SIZE = 256

_SHAPE = operator.attrgetter("shape")


class RunLimits:
    """Checks, once per distinct input-shape signature, that a call stays within the graph's :class:`Limits`.

    Parameters
    ----------
    graph : Graph
        Its ``limits`` (those it was loaded with) are the bounds.
    slot : mapping of str to int
    specs : sequence of TensorSpec
        Per slot, in the plan's dtype.

    Examples
    --------
    >>> import graphengine, numpy as np
    >>> doc = {"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [None]}],
    ...        "nodes": [{"id": "y", "op": "concat", "inputs": ["x", "x"]}], "outputs": ["y"]}
    >>> g = graphengine.load_dict(doc, limits=graphengine.Limits(max_elements=100))
    >>> g.run({"x": np.zeros(10)})["y"].shape
    (20,)
    >>> g.run({"x": np.zeros(60)})
    Traceback (most recent call last):
    ...
    graphengine.errors.LimitError: <graph>: $.nodes[0] (node 'y'): with the fed shapes (x: (60,)) this node makes shape (120,), 120 elements, over the limit max_elements=100
    """

    def __init__(self, graph: "Graph", slot: dict[str, int], specs: Sequence[TensorSpec]) -> None:
        self.limits: Limits = getattr(graph, "limits", None) or Limits()
        self.file = graph.file
        self.specs = specs
        # Only inputs with a free or named dimension change what a call computes.
        self.free = [(slot[name], name) for name, info in graph.inputs.items() if None in info.spec.shape]
        self._graph, self._slot = graph, slot
        # Made on the first measure: most graphs never need it.
        self._nodes: list[tuple[Any, int, tuple[int, ...]]] | None = None
        self.active = bool(self.free)
        slots = [s for s, _ in self.free]
        # The free inputs' values as a tuple, taken in C (itemgetter of one slot gives the value itself).
        self._free_values: Any = operator.itemgetter(*slots) if len(slots) > 1 else lambda values: (values[slots[0]],)
        self._seen: dict[tuple[Any, ...], GraphEngineError | None] = {}
        #: Signatures measured but not yet run, with their specs: the next call of each is verified (take_fresh).
        self.unverified: dict[tuple[Any, ...], list[TensorSpec]] = {}

    @property
    def nodes(self) -> list[tuple[Any, int, tuple[int, ...]]]:
        """(node, output slot, input slots) of every node, in topological order."""
        if self._nodes is None:
            slot = self._slot
            self._nodes = [
                (node, slot[node.id], tuple([slot[i] for i in node.inputs])) for node in self._graph.nodes.values()
            ]
        return self._nodes

    def check(self, values: Sequence[Any]) -> None:
        """Raise a LimitError (a FeedError for a feed itself) if the shapes of this call's inputs make any value too big."""
        signature = self._signature(values)
        try:
            problem = self._seen[signature]
        except KeyError:
            problem = self._measure(values, signature)
            if len(self._seen) >= CACHE_SIZE:
                self._seen.clear()
                self.unverified.clear()
            self._seen[signature] = problem
        if problem is not None:
            # A cached error is raised again on every such call: drop the last traceback, or it would grow each time.
            raise problem.with_traceback(None)

    def _measure(self, values: Sequence[Any], signature: tuple[Any, ...]) -> GraphEngineError | None:
        limits = self.limits
        spec_of: dict[int, TensorSpec] = {}
        total = 0
        fed = ", ".join(f"{name}: {format_shape(shape)}" for (_, name), shape in zip(self.free, signature) if shape)
        for (slot, name), shape in zip(self.free, signature):
            if shape is not None:
                spec_of[slot] = TensorSpec(tuple(shape), self.specs[slot].dtype)
                elements = math.prod(shape)
                if elements > limits.max_elements:
                    return FeedError(
                        f"feed {clip(name)!r} has shape {_shape(shape)}, {elements} elements, "
                        f"over the limit max_elements={limits.max_elements}"
                    )
                total += elements * self.specs[slot].dtype.itemsize
        known: dict[tuple[Any, ...], TensorSpec] = {}
        for node, out, inputs in self.nodes:
            specs = [spec_of.get(i) or self.specs[i] for i in inputs]
            key = (id(node.op), id(node.attrs), *specs)
            spec = known.get(key)
            if spec is None:
                result = self._rule(node, specs, fed)
                if not isinstance(result, TensorSpec):
                    return result  # the error: these shapes are refused, or the rule is broken
                spec = known[key] = result
            spec_of[out] = spec
            elements = math.prod(1 if d is None else d for d in spec.shape)
            if elements > limits.max_elements:
                return self._error(node, f"{_shape(spec.shape)}, {_count(elements)} elements", fed, "max_elements")
            total += elements * spec.dtype.itemsize
            if total > limits.max_total_bytes:
                what = f"{_shape(spec.shape)}, which takes the values of one call to {_count(total)} bytes"
                return self._error(node, what, fed, "max_total_bytes")
        self.unverified[signature] = [spec_of.get(i) or spec for i, spec in enumerate(self.specs)]
        return None

    def _rule(self, node: Any, specs: list[TensorSpec], fed: str) -> TensorSpec | GraphEngineError:
        """The node's output spec at these input specs, or the error to raise: a FeedError when its rule
        refuses them (as it would at load time), a ShapeError when the rule itself is broken."""
        where = f"{clip(self.file or '<graph>', 200)}: {node.json_path} (node {clip(node.id)!r})"
        shown = ", ".join(f"{clip(i)}: {_shape(s.shape)}" for i, s in zip(node.inputs, specs))
        try:
            spec = node.op.shape_rule(*specs, attrs=node.attrs)
        except ShapeError as exc:
            return FeedError(
                f"{where}: with the fed shapes ({clip(fed, 200)}) op {node.op.name!r} cannot take its inputs "
                f"({clip(shown, 300)}): {exc.detail}"
            )
        except Exception as exc:  # a plugin's shape rule is code we do not trust to be tidy
            detail = f"shape rule of op {node.op.name!r} failed on ({clip(shown, 300)}): {type(exc).__name__}: {exc}"
            return ShapeError(detail, file=self.file, json_path=node.json_path, node_id=node.id)
        if not isinstance(spec, TensorSpec):
            detail = f"shape rule of op {node.op.name!r} returned {type(spec).__name__}, not a TensorSpec"
            return ShapeError(detail, file=self.file, json_path=node.json_path, node_id=node.id)
        return spec

    def take_fresh(self, values: Sequence[Any]) -> list[TensorSpec] | None:
        """Per slot, the specs at the input shapes of ``values``, if these shapes were measured but not yet run.

        Callers test ``self.unverified`` first (an empty dict: the steady state costs nothing more).

        A plan runs such a call on its checked interpreter with these specs, so every op's output is
        compared with what its rule said at these shapes (and the limits were checked against) right
        after the op makes it: a rule that under-reports is an ExecutionError naming the node.
        """
        if not values:
            return None
        return self.unverified.pop(self._signature(values), None)  # one call per signature is verified

    def _signature(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """The shapes of the free inputs' values (None for one the call does not bind)."""
        try:
            return tuple(map(_SHAPE, self._free_values(values)))  # every free input bound: no Python loop
        except AttributeError:  # a None among them
            return tuple(None if values[s] is None else values[s].shape for s, _ in self.free)

    def _error(self, node: Any, what: str, fed: str, limit: str) -> LimitError:
        return LimitError(
            f"with the fed shapes ({clip(fed, 200)}) this node makes shape {what}, "
            f"over the limit {limit}={getattr(self.limits, limit)}",
            file=self.file,
            json_path=node.json_path,
            node_id=node.id,
        )


def _count(n: int) -> str:
    return str(n) if n < 10**30 else f"about 10^{len(str(n)) - 1}" if n < 10**4000 else "a number past 10^4000"


def _shape(shape: tuple[int | None, ...]) -> str:
    return clip(format_shape(shape), 120)
