"""``--dask ADDRESS`` / ``--dask local:N`` and ``--shards N`` for ``run``, ``grad`` and ``train``."""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Any, Iterator

from ..graph import Graph, Limits


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the Dask options to a command's parser."""
    g = p.add_argument_group("Dask (pip install 'graphengine[dask]'; docs/distributed.md)")
    g.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run in shards on this Dask scheduler (tcp://host:8786), or local:N for N local worker processes",
    )
    g.add_argument("--shards", type=int, metavar="N", help="shards per batch (default: one per worker thread)")


@contextmanager
def plan_for(graph: Graph, args: argparse.Namespace) -> Iterator[Any]:
    """The graph's plan, or with ``--dask`` a :class:`~graphengine.distributed.DataParallel` (closed afterwards)."""
    if not getattr(args, "dask", None):
        yield graph.compile()
        return
    from ..distributed import DataParallel

    limits = Limits(**{k: v for k, v in vars(args).items() if k.startswith("max_") and v is not None})
    with DataParallel(graph, args.dask, shards=args.shards, plugins=args.plugin, limits=limits) as parallel:
        yield parallel
