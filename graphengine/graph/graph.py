"""The :class:`Graph`: a validated file built into a networkx DAG, with every value's static spec."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable, ItemsView, Iterator, Mapping, NamedTuple, Sequence

import networkx as nx
import numpy as np
from pydantic import BaseModel

from .. import hooks
from ..errors import counted
from ..format import GraphV1, InputInfo, Limits
from ..ops import OpDef, TensorSpec
from ..registry import Registry
from .topology import build_digraph

if TYPE_CHECKING:  # annotations only: at run time the engine is reached through hooks
    from ..engine import GradResult, Plan


class NodeInfo(NamedTuple):
    """A validated node: its op, input names, attribute model and output spec.

    Immutable; a named tuple because a large graph makes one per node while
    loading, and a tuple is made several times faster than a frozen dataclass.
    """

    id: str
    op: OpDef
    inputs: tuple[str, ...]
    attrs: BaseModel
    spec: TensorSpec
    json_path: str
    label: str | None = None


class NodeMap(Mapping[str, NodeInfo]):
    """``Graph.nodes`` of a loaded graph: each node's :class:`NodeInfo` by id, in execution order.

    A read-only mapping over the loader's columns (one list per field, in file
    order): ids, length and membership cost nothing per node, a
    :class:`NodeInfo` is made when asked for, and the first ``values()`` (a
    tuple) or ``items()`` makes all of them at once (then keeps them). Loading a large
    graph to validate it, or to count its nodes, never makes one.

    ``names`` are all names in id order (declared values, then nodes in file
    order); ``ids`` maps each to its position there; ``order`` is the execution
    order of ids (a ``range`` when it is id order); ``sources[starts[k]:starts[k + 1]]`` are the
    ids node ``k`` reads; ``specs`` holds one spec per id.

    Examples
    --------
    >>> import graphengine
    >>> nodes = graphengine.load("examples/seed_network.json").nodes
    >>> list(nodes)
    ['h_pre', 'h', 'y_pre', 'y', 'loss']
    >>> nodes["h"].op.name, nodes["h"].inputs, nodes["h"].json_path
    ('sigmoid', ('h_pre',), '$.nodes[1]')
    >>> "W_h" in nodes, len(nodes)
    (False, 5)
    """

    def __init__(
        self,
        names: list[str],
        ids: Mapping[str, int],
        order: Sequence[int],
        ops: list[OpDef],
        sources: list[int],
        starts: list[int],
        attrs: list[BaseModel],
        labels: list[str | None],
        specs: list[TensorSpec],
    ) -> None:
        self._names, self._ids, self._ops, self._sources, self._starts = names, ids, ops, sources, starts
        self._attrs, self._labels, self._specs = attrs, labels, specs
        self._first = len(names) - len(ops)
        #: ids of the nodes in execution order
        self._run_ids: Sequence[int] = order[self._first :]  # a range when that is id order
        self._made: tuple[NodeInfo, ...] | None = None  # every NodeInfo, in execution order, once asked for
        self._by_id: dict[str, NodeInfo] | None = None

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[str]:
        return map(self._names.__getitem__, self._run_ids)

    def __reversed__(self) -> Iterator[str]:
        return map(self._names.__getitem__, reversed(self._run_ids))

    def __contains__(self, name: object) -> bool:
        index = self._ids.get(name)  # type: ignore[call-overload]
        return index is not None and index >= self._first

    def __getitem__(self, name: str) -> NodeInfo:
        if self._by_id is not None:
            return self._by_id[name]
        index = self._ids.get(name, -1) - self._first
        if index < 0:
            raise KeyError(name)
        names, sources = self._names, self._sources
        inputs = tuple([names[i] for i in sources[self._starts[index] : self._starts[index + 1]]])
        fields = (name, self._ops[index], inputs, self._attrs[index], self._specs[index + self._first])
        return NodeInfo(*fields, f"$.nodes[{index}]", self._labels[index])

    def values(self) -> tuple[NodeInfo, ...]:  # type: ignore[override]
        """Every NodeInfo in execution order, made once by whole-column maps (no Python loop per node), then kept."""
        if self._made is None:
            first, names, starts = self._first, self._names, self._starts
            read = [*map(names.__getitem__, self._sources)]
            inputs = map(tuple, map(read.__getitem__, map(slice, starts, starts[1:])))
            paths = map("$.nodes[{}]".format, range(len(self._ops)))
            rows = zip(names[first:], self._ops, inputs, self._attrs, self._specs[first:], paths, self._labels)
            made = tuple(map(partial(tuple.__new__, NodeInfo), rows))  # in file order
            run = self._run_ids
            self._made = made if isinstance(run, range) else tuple(map(made.__getitem__, [i - first for i in run]))
        return self._made  # type: ignore[return-value]

    def wiring(self) -> tuple[tuple[Sequence[Any], ...], list[TensorSpec]]:
        """Columns ``(ids, ops, attrs, input slots, slots, input names)`` of the nodes in execution order, and their specs.

        A *slot* numbers the declared values first, in id order, then the nodes in execution order (a
        plan's numbering). Read straight from the loader's columns by whole-column maps: no :class:`NodeInfo`.

        Examples
        --------
        >>> import graphengine
        >>> columns, specs = graphengine.load("examples/seed_network.json").nodes.wiring()
        >>> node_id, op, attrs, ins, slot, input_names = next(zip(*columns))
        >>> node_id, op.name, ins, slot, input_names, specs[0].shape
        ('h_pre', 'linear', (0, 2, 3), 6, ('x', 'W_h', 'b_h'), (2,))
        """
        first, names, sources, starts, run = self._first, self._names, self._sources, self._starts, self._run_ids
        in_id_order = isinstance(run, range)  # then ids are slots
        slot_of: list[int] = sources
        if not in_id_order:
            where = [*range(first), *[0] * len(self._ops)]
            for j, i in enumerate(run):
                where[i] = first + j
            slot_of = [*map(where.__getitem__, sources)]
        spans = [*map(slice, starts, starts[1:])]
        read = [*map(names.__getitem__, sources)]
        columns: list[list[Any]] = [
            self._ops,
            self._attrs,
            [*map(tuple, map(slot_of.__getitem__, spans))],
            [*map(tuple, map(read.__getitem__, spans))],
        ]
        specs = self._specs[first:]
        if not in_id_order:  # file order -> execution order
            at = [i - first for i in run]
            columns = [[*map(column.__getitem__, at)] for column in columns]
            specs = [*map(specs.__getitem__, at)]
        ops, attrs, ins, input_names = columns
        return ([*map(names.__getitem__, run)], ops, attrs, ins, range(first, len(names)), input_names), specs

    def items(self) -> ItemsView[str, NodeInfo]:  # type: ignore[override]
        return self._dict().items()

    def _dict(self) -> dict[str, NodeInfo]:
        if self._by_id is None:
            self._by_id = dict(zip(self, self.values()))
        return self._by_id

    def __repr__(self) -> str:
        return repr(self._dict())


class SpecTable(Mapping[str, TensorSpec]):
    """Every value's spec by name, read from the loader's list of specs by id (no dict of a million entries)."""

    def __init__(self, ids: Mapping[str, int], specs: list[TensorSpec]) -> None:
        self._ids, self._specs = ids, specs

    def __getitem__(self, name: str) -> TensorSpec:
        return self._specs[self._ids[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


class Graph:
    """A loaded and validated graph.

    Attributes
    ----------
    digraph : networkx.DiGraph
        One node per name (inputs, parameters, constants, op nodes), with
        attributes ``kind`` (``"input"``, ``"parameter"``, ``"constant"`` or
        ``"op"``), ``spec`` and, for op nodes, ``op``. An edge ``u -> v`` means v
        reads u; its ``positions`` attribute lists the input positions.
    inputs : dict of str to InputInfo
    parameters : dict of str to numpy.ndarray
        Trainable values. Replace entries to change them; call
        :meth:`compile` again afterwards.
    constants : dict of str to numpy.ndarray
    nodes : mapping of str to NodeInfo
        In a valid execution (topological) order. A loaded graph's is a
        read-only :class:`NodeMap` that makes each NodeInfo when asked for.
    outputs : list of str
    loss : str or None
        The default output of :meth:`grad`.
    file : str or None
    registry : Registry
    limits : Limits
        The limits it was loaded with; running it checks them again on the fed shapes.
    """

    def __init__(
        self,
        *,
        inputs: dict[str, InputInfo],
        parameters: dict[str, np.ndarray],
        constants: dict[str, np.ndarray],
        nodes: Mapping[str, NodeInfo],
        outputs: list[str],
        loss: str | None,
        registry: Registry,
        file: str | None,
        document: GraphV1 | Callable[[], GraphV1],
        limits: Limits | None = None,
        digraph: nx.DiGraph | None = None,
        specs: Mapping[str, TensorSpec] | None = None,
        file_order: Sequence[str] | None = None,
    ) -> None:
        self.inputs = inputs
        self.parameters = parameters
        self.constants = constants
        self.nodes = nodes
        self.outputs = outputs
        self.loss = loss
        self._digraph = digraph  # built on first use: the run path never reads it, and a big one is costly
        self._specs: Mapping[str, TensorSpec] = (
            (specs if isinstance(specs, (dict, SpecTable)) else dict(specs))
            if specs is not None
            else self._specs_of_values()
        )
        self.registry = registry
        self.file = file
        # The validated file as pydantic models, or the function that makes it when first read.
        self._document = document
        self._file_order = file_order  # op node ids in file order (else read from the document)
        self.limits = limits or Limits()
        self._plan: "Plan | None" = None

    @property
    def document(self) -> GraphV1:
        """The validated file as a :class:`~graphengine.format.GraphV1`; a large file's is made on first use, then kept."""
        if not isinstance(self._document, GraphV1):
            self._document = self._document()
        return self._document

    @document.setter
    def document(self, value: GraphV1) -> None:
        self._document = value

    @property
    def parameter_names(self) -> list[str]:
        return list(self.parameters)

    @property
    def digraph(self) -> nx.DiGraph:
        """The graph as a networkx DiGraph (see the class docstring); built on first use, then kept.

        Nodes are in file order (declared values, then op nodes), as they always were.
        """
        if self._digraph is None:
            nodes = self.nodes
            declared = self._file_order if self._file_order is not None else [d.id for d in self.document.nodes]
            in_file_order = [nodes[i] for i in declared] if len(declared) == len(nodes) else nodes.values()
            wiring = ((i.id, i.op.name, i.spec, i.inputs) for i in in_file_order)
            self._digraph = build_digraph(self._declared(), wiring)
        return self._digraph

    def _specs_of_values(self) -> dict[str, TensorSpec]:
        if self._digraph is not None:
            return {n: d["spec"] for n, d in self._digraph.nodes(data=True)}
        values = {**self.parameters, **self.constants}
        return {
            **{name: info.spec for name, info in self.inputs.items()},
            **{name: TensorSpec(v.shape, v.dtype) for name, v in values.items()},
            **{name: info.spec for name, info in self.nodes.items()},
        }

    def _declared(self) -> list[tuple[str, str, TensorSpec]]:
        spec = self.spec
        return [
            *((name, "input", info.spec) for name, info in self.inputs.items()),
            *((name, "parameter", spec(name)) for name in self.parameters),
            *((name, "constant", spec(name)) for name in self.constants),
        ]

    def spec(self, name: str) -> TensorSpec:
        """The static shape and dtype of any named value (as loaded)."""
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(name) from None

    def compile(self) -> "Plan":
        """Compile into a flat execution plan (once; later calls return the same plan).

        The plan reads :attr:`parameters` on every call, so updating them (as
        training does) needs no recompilation.

        Examples
        --------
        >>> import graphengine
        >>> g = graphengine.load("examples/seed_network.json")
        >>> plan = g.compile()
        >>> round(float(plan.run()["loss"]), 9)
        0.298371109
        """
        if self._plan is None:
            self._plan = hooks.compiler()(self)
        return self._plan

    def run(
        self, feeds: Mapping[str, Any] | None = None, *, outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Shorthand for ``self.compile().run(...)``."""
        return self.compile().run(feeds, outputs=outputs)

    def grad(
        self, feeds: Mapping[str, Any] | None = None, wrt: Sequence[str] | None = None, **kwargs: Any
    ) -> dict[str, np.ndarray]:
        """Shorthand for ``self.compile().grad(...)``."""
        return self.compile().grad(feeds, wrt, **kwargs)

    def value_and_grad(
        self, feeds: Mapping[str, Any] | None = None, wrt: Sequence[str] | None = None, **kwargs: Any
    ) -> "GradResult":
        """Shorthand for ``self.compile().value_and_grad(...)``."""
        return self.compile().value_and_grad(feeds, wrt, **kwargs)

    def __repr__(self) -> str:
        return (
            f"<Graph {self.file or '<dict>'}: {counted(len(self.inputs), 'input')}, "
            f"{counted(len(self.parameters), 'parameter')}, {counted(len(self.nodes), 'node')}, outputs {self.outputs}>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return hooks.display(self)

    def _repr_svg_(self) -> str | None:
        return self._repr_mimebundle_().get("image/svg+xml")
