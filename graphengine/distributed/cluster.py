"""Reaching a Dask cluster: a ``Client``, a scheduler address, or ``local:N``; sending plugin files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import GraphEngineError
from .worker import ignore_sigint

__all__ = ["DistributedError", "connect", "require_dask", "upload_plugins"]


class DistributedError(GraphEngineError):
    """A cluster could not be reached, a worker failed, or a request cannot be split into shards."""


def require_dask() -> Any:
    """Import ``distributed``, or say in one line what to install."""
    try:
        import dask.array  # noqa: F401
        import distributed
    except ImportError as exc:
        raise DistributedError(
            f'running on Dask needs the dask extra: pip install "graphengine[dask]" ({exc})'
        ) from None
    return distributed


def connect(target: Any) -> tuple[Any, Any]:
    """A ``distributed.Client`` for ``target``, and the cluster to close afterwards (None if not ours).

    Parameters
    ----------
    target : distributed.Client, str
        A client (used as it is), a scheduler address (``tcp://host:8786``), or
        ``local:N``: a ``LocalCluster`` of N worker processes on loopback, one
        thread each, without a dashboard.

    Raises
    ------
    DistributedError
        Dask is not installed, ``local:N`` is malformed, or the scheduler cannot be reached.

    Examples
    --------
    >>> connect("local:zero")
    Traceback (most recent call last):
    ...
    graphengine.distributed.cluster.DistributedError: --dask 'local:zero': expected local:N with N >= 1 worker processes
    """
    if not isinstance(target, str):
        return target, None
    if target.startswith("local"):
        _, _, count = target.partition(":")
        if not count.isdigit() or int(count) < 1:
            raise DistributedError(f"--dask {target!r}: expected local:N with N >= 1 worker processes")
        distributed = require_dask()
        cluster = distributed.LocalCluster(
            n_workers=int(count), threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
        client = distributed.Client(cluster)
        # Ctrl-C in a terminal reaches our workers too; the client's training loop handles it.
        client.run(ignore_sigint)
        return client, cluster
    distributed = require_dask()
    try:
        return distributed.Client(target, timeout="10s"), None
    except (OSError, TimeoutError) as exc:
        raise DistributedError(f"--dask {target!r}: cannot reach the scheduler: {exc}") from None


def upload_plugins(client: Any, plugins: Sequence[str]) -> list[str]:
    """Send ``--plugin`` files to every worker (now and when workers join); module names go as they are.

    Returns the specs the workers load: a file's base name (they find it in
    their own folder), or the module name (it must be installed there).
    """
    specs = []
    for spec in plugins:
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            path = Path(spec)
            if not path.is_file():
                raise DistributedError(f"plugin {spec!r}: no such file")
            try:
                client.upload_file(os.fspath(path), load=False)
            except Exception as exc:  # the worker's error, whatever its type
                raise DistributedError(f"plugin {spec!r}: upload to the workers failed: {exc}") from None
            specs.append(path.name)
        else:
            specs.append(spec)
    return specs
