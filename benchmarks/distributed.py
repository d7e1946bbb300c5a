"""Data-parallel gradient on a Dask LocalCluster against one process, and where the time goes.

Run from a clean clone (needs the ``dask`` extra)::

    python -m benchmarks.distributed                 # 200,000 x 784, MLP 784-256-10, 2 workers
    python -m benchmarks.distributed --rows 50000    # smaller

It times, in one run:

- ``one process``: ``Plan.value_and_grad`` on the whole batch;
- ``cluster, data from the client``: ``DataParallel.value_and_grad`` with numpy feeds, so every
  call ships the shards to the workers (what a notebook user does first);
- ``cluster, data on the workers``: the same batch as a ``dask.array`` persisted on the workers,
  so only the parameters (scattered once per change) and the gradients travel;

and, to say where the cluster's time goes:

- ``transfer``: ``client.scatter`` of the shards (serialization and the loopback copy);
- ``task overhead``: the round trip of a task that does nothing, on each worker;
- ``compute``: one process on one shard (what each worker computes).

From these it projects the crossover for k machines with the data already on them:
``t(k) ~ compute_of_whole / k + overhead + transfer of parameters and gradients``.
Every figure is the median of ``--rounds`` calls after one untimed first call; the first call
is reported on its own line (it includes the workers building the graph).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

import graphengine


def mlp(sizes: tuple[int, ...], seed: int = 0) -> dict[str, Any]:
    """An MLP graph (relu, mean softmax cross-entropy over a named batch), weights inline."""
    rng = np.random.default_rng(seed)
    params, nodes, prev = [], [], "x"
    for i in range(len(sizes) - 1):
        w = rng.standard_normal((sizes[i + 1], sizes[i])) * np.sqrt(2.0 / sizes[i])
        params += [{"name": f"W{i}", "value": w.tolist()}, {"name": f"b{i}", "value": [0.0] * sizes[i + 1]}]
        nodes.append({"id": f"z{i}", "op": "linear", "inputs": [prev, f"W{i}", f"b{i}"]})
        prev = f"z{i}"
        if i < len(sizes) - 2:
            nodes.append({"id": f"h{i}", "op": "relu", "inputs": [prev]})
            prev = f"h{i}"
    nodes.append(
        {"id": "loss", "op": "softmax_cross_entropy", "inputs": [prev, "labels"], "attrs": {"reduction": "mean"}}
    )
    return {
        "format": "graphengine/v1",
        "inputs": [
            {"name": "x", "shape": ["batch", sizes[0]]},
            {"name": "labels", "shape": ["batch"], "dtype": "int64"},
        ],
        "parameters": params,
        "nodes": nodes,
        "outputs": ["loss"],
    }


def timed(call: Callable[[], Any], rounds: int) -> tuple[float, float, Any]:
    """(first call, median of the next ``rounds``) in seconds, and the last result."""
    start = time.perf_counter()
    result = call()
    first = time.perf_counter() - start
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        import dask.array as da
        from distributed import Client, LocalCluster
    except ImportError:
        print("benchmarks.distributed needs the dask extra: pip install 'graphengine[dask]'", file=sys.stderr)
        return 1
    from graphengine.distributed import DataParallel

    # 200,000 x 784 is over the default max_elements (10^8): this benchmark raises the limits on purpose.
    limits = graphengine.Limits(max_elements=10**9, max_total_bytes=32 * 1024**3)
    graph = graphengine.load_dict(mlp((784, args.hidden, 10)), limits=limits)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((args.rows, 784))
    labels = rng.integers(0, 10, size=args.rows)
    feeds = {"x": x, "labels": labels}
    plan = graph.compile()
    rows: list[tuple[str, float, float]] = []

    first, steady, reference = timed(lambda: plan.value_and_grad(feeds), args.rounds)
    rows.append(("one process", first, steady))
    shard = args.rows // args.workers
    _, compute, _ = timed(lambda: plan.value_and_grad({"x": x[:shard], "labels": labels[:shard]}), args.rounds)

    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        ) as cluster,
        Client(cluster) as client,
    ):
        with DataParallel(graph, client, shards=args.workers, limits=limits) as parallel:
            first, steady, result = timed(lambda: parallel.value_and_grad(feeds), args.rounds)
            rows.append(("cluster, data from the client", first, steady))
            worst = max(
                float(np.max(np.abs(result.gradients[k] - reference.gradients[k]))) for k in reference.gradients
            )
            chunks = (shard, 784)
            x_da = da.from_array(x, chunks=chunks).persist()
            l_da = da.from_array(labels, chunks=(shard,)).persist()
            first, steady, _ = timed(lambda: parallel.value_and_grad({"x": x_da, "labels": l_da}), args.rounds)
            rows.append(("cluster, data on the workers", first, steady))
        _, transfer, _ = timed(lambda: client.scatter([x[:shard], x[shard:]]), args.rounds)
        _, overhead, _ = timed(lambda: client.gather(client.map(int, range(args.workers), pure=False)), args.rounds)

    one = rows[0][2]
    print(
        f"MLP 784-{args.hidden}-10, batch {args.rows:,} x 784 float64, {args.workers} worker processes (LocalCluster)\n"
    )
    print("| run | first call | steady (median) | ratio to one process |")
    print("|---|---|---|---|")
    for name, first, steady in rows:
        print(f"| {name} | {first:.3f} s | {steady:.3f} s | {steady / one:.2f} |")
    print(f"\nlargest gradient difference to one process: {worst:.2e}\n")
    print("| where the cluster's time goes | seconds |")
    print("|---|---|")
    print(f"| transfer of the shards (scatter, {x.nbytes / 1e6:.0f} MB) | {transfer:.3f} |")
    print(f"| task round trip on every worker | {overhead:.4f} |")
    print(f"| compute of one shard ({shard:,} rows, one process) | {compute:.3f} |")
    params_mb = sum(v.nbytes for v in graph.parameters.values()) / 1e6
    print(
        f"\nprojection, data resident on k machines: t(k) ~ {one:.3f} s / k + {overhead:.4f} s + 2 x {params_mb:.1f} MB of parameters and gradients"
    )
    for k in (1, 2, 4, 8, 16):
        print(f"  k = {k:2d}: {one / k + overhead:.3f} s (one process: {one:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
