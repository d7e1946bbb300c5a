""":class:`DataParallel`: ``run``, ``grad`` and ``evaluate`` of one graph, in shards on a Dask cluster.

The gradient of a sum over shards is the sum of the shards' gradients: the
fan-out rule one level up. Each worker runs its shard on the graph it built
from the JSON text; the pieces come back combined by a tree of ``combine``
tasks. A mean loss weights shard ``i`` by ``n_i / n``; a sum loss by 1. The
reduction is what the loss op declares (:class:`~graphengine.ops.LossInfo`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from concurrent.futures import CancelledError
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..engine import GradResult
from ..errors import FeedError
from ..format import format_document
from ..graph import Graph, Limits
from .cluster import DistributedError, connect, require_dask, upload_plugins
from .worker import WorkerFailure, combine, shard_pass

__all__ = ["DataParallel", "batch_axes", "portable_text", "shard_sizes"]

#: How many pieces one ``combine`` task adds up.
FAN_IN = 4


def batch_axes(graph: Graph, batch_dim: str = "batch") -> dict[str, int]:
    """The batch axis of each input that has one: the axis named ``batch_dim``, else a leading free axis.

    Examples
    --------
    >>> import graphengine
    >>> batch_axes(graphengine.load("examples/digits/mlp.json"))
    {'x': 0, 'label': 0}
    >>> batch_axes(graphengine.load("examples/seed_network.json"))
    {}
    """
    axes = {}
    for name, info in graph.inputs.items():
        if batch_dim in info.dims:
            axes[name] = info.dims.index(batch_dim)
        elif info.spec.shape and info.spec.shape[0] is None:
            axes[name] = 0
    return axes


def shard_sizes(n: int, shards: int | Sequence[int]) -> list[int]:
    """Sizes of ``shards`` near-equal shards of ``n`` examples (the first ones one larger), or given sizes checked.

    Examples
    --------
    >>> shard_sizes(5, 2), shard_sizes(5, 4), shard_sizes(2, 4), shard_sizes(5, [4, 1])
    ([3, 2], [2, 1, 1, 1], [1, 1], [4, 1])
    """
    if not isinstance(shards, int):
        sizes = [int(s) for s in shards]
        if sum(sizes) != n or min(sizes, default=0) < 1:
            raise DistributedError(f"shard sizes {sizes} must be positive and add up to the batch size {n}")
        return sizes
    if shards < 1:
        raise DistributedError(f"shards must be at least 1, not {shards}")
    count = min(shards, max(n, 1))
    return [n // count + (1 if i < n % count else 0) for i in range(count)]


def portable_text(graph: Graph) -> str:
    """The graph as self-contained JSON text: current parameters, file constants and defaults inline."""
    doc = graph.document.model_dump(mode="json", exclude_unset=True)
    tables = {"parameters": graph.parameters, "constants": graph.constants}
    for section, table in tables.items():
        for entry in doc.get(section, []):
            if section == "parameters" or "file" in entry:
                for key in ("file", "key", "sha256"):
                    entry.pop(key, None)
                entry["value"] = np.asarray(table[entry["name"]]).tolist()
                entry["shape"] = list(np.shape(table[entry["name"]]))
    for entry in doc.get("inputs", []):
        default = graph.inputs[entry["name"]].default
        if default is not None:
            entry["default"] = default.tolist()
    return format_document(doc)


class DataParallel:
    """A graph's ``run``, ``value_and_grad`` and ``evaluate``, split along the batch axis over Dask workers.

    Parameters
    ----------
    graph : Graph
        Its current ``parameters`` are sent with every call (scattered, once).
    client : distributed.Client or str
        A client, a scheduler address, or ``local:N`` (see :func:`~graphengine.distributed.connect`).
    shards : int or sequence of int, optional
        How many shards (default: one per worker thread), or their sizes.
    batch_dim : str
        The name of the batch dimension in the inputs' shapes.
    limits : Limits, optional
        What the workers' loader allows (default: :class:`Limits`).
    plugins : sequence of str
        ``--plugin`` files (uploaded to the workers) and module names (installed there).
    retries : int
        Times a call is tried again after a worker, its data or its connection was lost.
    reduction : {"mean", "sum"}, optional
        The loss's reduction when its op declares none.
    """

    def __init__(
        self,
        graph: Graph,
        client: Any,
        *,
        shards: int | Sequence[int] | None = None,
        batch_dim: str = "batch",
        limits: Limits | None = None,
        plugins: Sequence[str] = (),
        retries: int = 2,
        reduction: str | None = None,
    ) -> None:
        require_dask()
        self.graph = graph
        self.client, self._cluster = connect(client)
        # A client made here from an address or ``local:N`` is ours to close; a Client passed in is the caller's.
        self._owns_client = isinstance(client, str)
        self.shards = shards
        self.retries = retries
        self.axes = batch_axes(graph, batch_dim)
        self._reduction = reduction
        limit_fields = dataclasses.asdict(limits or Limits())
        specs = upload_plugins(self.client, plugins)
        self._structure = (limit_fields, specs)
        self._graph_future: Any = None
        self._sent: tuple[str, Any] | None = None

    # --- the cluster ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the client and the cluster, when this object started them (``local:N``, an address)."""
        if self._owns_client:  # left open, a client to an address keeps reconnecting after its scheduler goes
            self.client.close()
            self._owns_client = False
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> "DataParallel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _graph(self) -> Any:
        """The graph's text on every worker (sent once; again only after a loss)."""
        if self._graph_future is None:
            text = portable_text(self.graph)
            key = hashlib.sha256((text + json.dumps(self._structure)).encode()).hexdigest()
            self._graph_future = self.client.scatter([(key, text, *self._structure)], broadcast=True, hash=False)[0]
        return self._graph_future

    def _params(self) -> Any:
        """The current parameters on the workers: scattered once per change, never embedded in tasks."""
        params = {k: np.asarray(v) for k, v in self.graph.parameters.items()}
        digest = hashlib.sha256(b"".join(v.tobytes() + str(v.shape).encode() for v in params.values())).hexdigest()
        if self._sent is None or self._sent[0] != digest:
            self._sent = (digest, self.client.scatter([params], hash=False)[0])
        return self._sent[1]

    # --- public calls ---------------------------------------------------------------------

    def reduction_of(self, name: str) -> str | None:
        """How the scalar ``name`` combines examples: what its loss op declares, else the ``reduction`` given."""
        node = self.graph.nodes.get(name)
        if node is not None and node.op.loss is not None:
            return node.op.loss.reduction_of(node.attrs)
        return self._reduction

    def run(self, feeds: Mapping[str, Any] | None = None, *, outputs: Sequence[str] | None = None) -> dict[str, Any]:
        """Forward on the cluster: batched outputs concatenated, a loss combined by its reduction.

        Raises
        ------
        DistributedError
            An output that is neither batched nor a loss with a known reduction, or a worker failure.
        """
        names = list(outputs) if outputs is not None else list(self.graph.outputs)
        loss = next((n for n in names if self._is_scalar_loss(n)), None)
        return self._call(feeds, names, None, loss)["outputs"]

    def value_and_grad(
        self,
        feeds: Mapping[str, Any] | None = None,
        wrt: Sequence[str] | None = None,
        *,
        output: str | None = None,
        cotangent: Any = None,
    ) -> GradResult:
        """Outputs and gradients of ``output`` (default: the loss), as :meth:`Plan.value_and_grad` gives them.

        Outputs are the loss and the batched outputs. A cotangent is refused: a
        sharded output must be a scalar loss.
        """
        if cotangent is not None:
            raise DistributedError("a cotangent cannot be split into shards: differentiate a scalar loss")
        loss = output or self.graph.loss
        if loss is None:
            raise FeedError(f"the graph has several outputs {self.graph.outputs} and no 'loss'; say which (output=...)")
        wrt_names = list(wrt) if wrt is not None else list(self.graph.parameters)
        names = [n for n in self.graph.outputs if n != loss and self._is_batched(n)] + [loss]
        result = self._call(feeds, names, wrt_names, loss)
        return GradResult(result["outputs"], result["gradients"])

    def grad(
        self, feeds: Mapping[str, Any] | None = None, wrt: Sequence[str] | None = None, *, output: str | None = None
    ) -> dict[str, np.ndarray]:
        """Only the gradients (the batched outputs stay on the workers)."""
        loss = output or self.graph.loss
        wrt_names = list(wrt) if wrt is not None else list(self.graph.parameters)
        return self._call(feeds, [loss] if loss else [], wrt_names, loss)["gradients"]  # type: ignore[no-any-return]

    # --- internals ------------------------------------------------------------------------

    def _is_batched(self, name: str) -> bool:
        shape = self.graph.spec(name).shape
        return bool(self.axes) and bool(shape) and shape[0] is None

    def _is_scalar_loss(self, name: str) -> bool:
        return name in self.graph.nodes and self.graph.spec(name).shape == () and self.reduction_of(name) is not None

    def _call(
        self, feeds: Mapping[str, Any] | None, names: list[str], wrt: list[str] | None, loss: str | None
    ) -> dict[str, Any]:
        feeds = dict(feeds or {})
        n = self._batch_size(feeds)
        reduction = self.reduction_of(loss) if loss is not None else None
        if n is not None and loss is not None:
            if reduction not in ("mean", "sum"):
                raise DistributedError(
                    f"{loss!r} declares no reduction over the batch ({reduction}); shards cannot be combined: "
                    "give its op a LossInfo, or pass reduction='mean' or 'sum'"
                )
        keep = [m for m in names if m != loss and self._is_batched(m)]
        bad = [m for m in names if m != loss and m not in keep and n is not None]
        if bad:
            raise DistributedError(
                f"outputs {bad} are neither batched nor the loss; they cannot be combined across shards"
            )
        split_wrt = [w for w in (wrt or []) if w in self.axes and n is not None]
        sizes = shard_sizes(n, self.shards or self._default_shards()) if n is not None else [1]
        weights = [s / n if reduction == "mean" and n else 1.0 for s in sizes]
        options = {"wrt": wrt, "outputs": names, "loss": loss, "keep": keep, "split_wrt": split_wrt}

        def submit() -> Any:
            graph, params = self._graph(), self._params()
            pieces = [
                self.client.submit(shard_pass, graph, params, part, weight=w, pure=False, **options)
                for part, w in zip(self._shard_feeds(feeds, sizes, n), weights)
            ]
            return self._tree(pieces)

        total = self._attempt(submit)
        outputs = {k: v for k, v in total["values"].items()}
        for name in keep:
            outputs[name] = np.concatenate(total["parts"][name], axis=0)
        gradients = dict(total["grads"])
        for name in split_wrt:
            gradients[name] = np.concatenate(total["parts"]["grad/" + name], axis=self.axes[name])
        order = {m: i for i, m in enumerate(names)}
        return {
            "outputs": dict(sorted(outputs.items(), key=lambda kv: order.get(kv[0], len(order)))),
            "gradients": {w: gradients[w] for w in wrt or []},
        }

    def _default_shards(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def _batch_size(self, feeds: Mapping[str, Any]) -> int | None:
        """The examples in the batched feeds (None when no input is batched); they must agree."""
        sizes = {name: int(np.shape(feeds[name])[axis]) for name, axis in self.axes.items() if name in feeds}
        if not sizes:
            return None
        if len(set(sizes.values())) > 1:
            raise FeedError(f"batched inputs disagree on the batch size: {sizes}")
        return next(iter(sizes.values()))

    def _shard_feeds(self, feeds: dict[str, Any], sizes: list[int], n: int | None) -> list[list[Any]]:
        """Per shard, its feeds: numpy slices in the task, dask blocks where they lie."""
        if n is None:
            return [[feeds]]
        import dask.array as da

        bounds = np.cumsum([0, *sizes])
        lazy = {k: v for k, v in feeds.items() if isinstance(v, da.Array)}
        local = [{} for _ in sizes]  # type: list[dict[str, Any]]
        for name, value in feeds.items():
            if name in lazy:
                continue
            axis = self.axes.get(name)
            for i, part in enumerate(local):
                part[name] = value if axis is None else _take(np.asarray(value), axis, bounds[i], bounds[i + 1])
        # Slices travel in their tasks, not scattered: a task whose worker dies is run again elsewhere with them.
        shards: list[list[Any]] = [[part] for part in local]
        for name, array in lazy.items():
            axis = self.axes[name]
            chunks = tuple(tuple(sizes) if a == axis else (array.shape[a],) for a in range(array.ndim))
            blocks = array.rechunk(chunks).to_delayed().reshape(-1)
            for shard, block in zip(shards, self.client.compute(list(blocks))):
                shard.append({name: block})
        return shards

    def _tree(self, pieces: list[Any]) -> Any:
        while len(pieces) > 1:
            groups = [pieces[i : i + FAN_IN] for i in range(0, len(pieces), FAN_IN)]
            pieces = [g[0] if len(g) == 1 else self.client.submit(combine, *g, pure=False) for g in groups]
        return pieces[0]

    def _attempt(self, submit: Callable[[], Any]) -> Any:
        """The combined result; tried again (with everything sent again) after a lost worker or lost data."""
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker

        # KeyError: a broadcast scatter racing the scheduler's removal of a dead worker (distributed 2026.8).
        lost: tuple[type[BaseException], ...] = (
            KilledWorker, CancelledError, CommClosedError, OSError, TimeoutError, KeyError,
        )  # fmt: skip
        last: BaseException | None = None
        for _ in range(self.retries + 1):
            try:
                return submit().result()
            except WorkerFailure as exc:
                raise DistributedError(str(exc)) from None
            except lost as exc:
                last = exc
                self._graph_future, self._sent = None, None
        raise DistributedError(
            f"gave up after {self.retries + 1} attempts, each losing a worker or its data: {type(last).__name__}: {last}"
        )


def _take(array: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(int(start), int(stop))
    return array[tuple(index)]
