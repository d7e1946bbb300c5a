"""What runs on a Dask worker: build the graph from its JSON text once, then run shards.

Every function here takes plain data (text, dicts of arrays, names, numbers)
and lives in an installed module, so a task carries a reference to it, never
a pickled closure of user code. A worker builds each graph once, with the
same safe loader and :class:`~graphengine.format.Limits` as the client, and
keeps the compiled plan in :data:`_PLANS` for the tasks that follow.

Errors in the graph or a plugin come back as :class:`WorkerFailure`, a plain
exception that pickles, naming the worker; the client turns it into a
:class:`~graphengine.distributed.DistributedError`.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import GraphEngineError
from ..format import parse_json
from ..graph import Limits, load_dict

__all__ = ["WorkerFailure", "shard_pass", "combine", "collect", "worker_pid"]

#: Compiled plans by graph key, per worker process.
_PLANS: dict[str, Any] = {}


class WorkerFailure(Exception):
    """A graph, plugin or op error on a worker: ``(address, kind, message)``; pickles by its args."""

    def __str__(self) -> str:
        address, kind, message = self.args
        return f"worker {address}: {kind}: {message}"


def _address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not inside a worker (tests call these functions directly)
        return f"pid {os.getpid()}"


def _plugin_paths(plugins: Sequence[str]) -> list[str]:
    """Uploaded plugin files sit in the worker's folder; module names are used as they are."""
    paths = []
    for spec in plugins:
        if spec.endswith(".py"):
            try:
                from distributed import get_worker

                folder = get_worker().local_directory
            except (ImportError, ValueError):
                folder = "."
            spec = os.path.join(folder, os.path.basename(spec))
        paths.append(spec)
    return paths


def plan_of(key: str, text: str, limits: Mapping[str, int], plugins: Sequence[str]) -> Any:
    """The compiled plan of the graph ``text`` (built once per worker and key)."""
    plan = _PLANS.get(key)
    if plan is None:
        try:
            source = "<graph sent by the client>"
            data = parse_json(text.encode(), file=source)
            graph = load_dict(data, file=source, plugins=_plugin_paths(plugins), limits=Limits(**limits))
        except GraphEngineError as exc:
            raise WorkerFailure(_address(), type(exc).__name__, str(exc)) from None
        plan = _PLANS[key] = graph.compile()
    return plan


def shard_pass(
    graph: tuple[str, str, Mapping[str, int], Sequence[str]],
    params: Mapping[str, np.ndarray],
    feeds: Sequence[Mapping[str, Any]],
    *,
    wrt: Sequence[str] | None,
    outputs: Sequence[str],
    loss: str | None,
    weight: float,
    keep: Sequence[str],
    split_wrt: Sequence[str] = (),
) -> dict[str, Any]:
    """One shard's forward (and, with ``wrt``, backward) pass.

    Parameters
    ----------
    graph : (key, text, limits, plugins)
    params : the current parameters (scattered once per step)
    feeds : this shard's inputs, in parts (scattered slices, dask blocks) merged in order
    wrt : names to differentiate, or None for a forward run
    outputs : forward outputs (``run``)
    loss : the scalar to weight and differentiate
    weight : this shard's weight in the combined loss (n_shard / n for a mean, 1 for a sum)
    keep : batched outputs to return (concatenated later); scalars are weighted
    split_wrt : ``wrt`` names that are batched inputs: their gradients are pieces too, not sums

    Returns
    -------
    dict with ``"values"`` (weighted scalars), ``"parts"`` (lists of batched pieces) and ``"grads"``.
    """
    plan = plan_of(*graph)
    full = dict(params)
    for part in feeds:
        full.update(part)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite values are reported by the client
            if wrt is None:
                out = plan.run(full, outputs=list(outputs))
                grads: dict[str, Any] = {}
            else:
                result = plan.value_and_grad(full, list(wrt), output=loss)
                out, grads = result.outputs, {k: v * weight for k, v in result.gradients.items()}
    except GraphEngineError as exc:
        raise WorkerFailure(_address(), type(exc).__name__, str(exc)) from None
    values = {
        name: np.asarray(out[name]) * weight if name == loss else out[name] for name in outputs if name not in keep
    }
    parts = {name: [out[name]] for name in keep}
    for name in split_wrt:
        parts["grad/" + name] = [grads.pop(name)]
    return {"values": values, "parts": parts, "grads": grads}


def combine(*pieces: dict[str, Any]) -> dict[str, Any]:
    """Sum the weighted values and gradients of neighbouring shards; keep the batched pieces in order."""
    first = pieces[0]
    values = {k: sum((p["values"][k] for p in pieces[1:]), first["values"][k]) for k in first["values"]}
    grads = {k: sum((p["grads"][k] for p in pieces[1:]), first["grads"][k]) for k in first["grads"]}
    parts = {k: [part for p in pieces for part in p["parts"][k]] for k in first["parts"]}
    return {"values": values, "parts": parts, "grads": grads}


def collect(*pieces: Any) -> list[Any]:
    """The pieces as one list, in order (one result to wait for)."""
    return list(pieces)


def worker_pid() -> int:
    """This worker's process id (for tests that kill a worker)."""
    return os.getpid()


def ignore_sigint() -> None:
    """On a ``local:N`` worker: leave Ctrl-C to the client (a terminal sends it to the whole process group)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
