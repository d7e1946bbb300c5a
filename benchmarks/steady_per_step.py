"""Steady cost per step at growing size, and the cost of every call from the first (issue 13's cliff goals).

Usage::

    python -m benchmarks.steady_per_step 1000 10000 100000          # chain (scenario C's), after Plan.prepare
    python -m benchmarks.steady_per_step --calls 40 1000 10000       # a fresh plan: calls 1..40 one by one
    python -m benchmarks.steady_per_step --calls 40 --dag 10000      # the same on a random DAG (scenario E's)

The first form prints the time to generate the code, then min / median of 5 calls per step, generated code
against the step interpreter. The second prints, for a freshly compiled plan, call 1 (the checked first call),
call 2, the costliest call after the first, and the steady state (median of the last 5 calls), each also as a
multiple of steady: the goal is no call after the first above 3x steady, and steady per step at 100k nodes
within 1.5x of that at 1k. Use ``--threads 1`` semantics by running with OPENBLAS_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import graphengine  # noqa: E402
from benchmarks.scenarios import random_dag, scenario_c  # noqa: E402
from graphengine.engine.plan import _interpreted  # noqa: E402


def _case(n: int, dag: bool) -> tuple[dict, dict, list[str]]:
    if not dag:
        s = scenario_c(n)
        return s.doc, s.feeds, s.wrt
    import numpy as np

    doc = random_dag(n, 16, seed=0)
    return doc, {"x": np.random.default_rng(1).standard_normal(16)}, ["x"] + [p["name"] for p in doc["parameters"]]


def steady(n: int, dag: bool) -> None:
    doc, feeds, wrt = _case(n, dag)
    plan = graphengine.load_dict(doc).compile()
    t = time.perf_counter()
    plan.prepare(wrt)
    gen = time.perf_counter() - t
    plan.grad(feeds, wrt)  # call 1: checked
    ts, ti = [], []
    for _ in range(5):
        t = time.perf_counter()
        plan.grad(feeds, wrt)
        ts.append(time.perf_counter() - t)
        t = time.perf_counter()
        _interpreted(plan, feeds, wrt)
        ti.append(time.perf_counter() - t)
    steps = plan._grad_schedule(wrt, None)[0].size
    print(
        f"{'dag' if dag else 'chain'} {n}: {steps} steps; generate {gen:.2f} s; generated min "
        f"{min(ts) / steps * 1e6:.2f} median {statistics.median(ts) / steps * 1e6:.2f} us/step; "
        f"interpreter min {min(ti) / steps * 1e6:.2f} median {statistics.median(ti) / steps * 1e6:.2f} us/step",
        flush=True,
    )


def calls(n: int, dag: bool, count: int) -> None:
    doc, feeds, wrt = _case(n, dag)
    t = time.perf_counter()
    plan = graphengine.load_dict(doc).compile()
    compiled = time.perf_counter() - t
    times = []
    for _ in range(count):
        t = time.perf_counter()
        plan.grad(feeds, wrt)
        times.append(time.perf_counter() - t)
    schedule = plan._grad_schedule(wrt, None)[0]
    steps = schedule.size
    m = statistics.median(times[-5:])
    worst = max(range(1, count), key=lambda k: times[k])
    print(
        f"{'dag' if dag else 'chain'} {n}: {steps} steps; load+compile {compiled:.3f} s; call 1 {times[0] * 1e3:.1f} ms "
        f"({times[0] / m:.1f}x); call 2 {times[1] * 1e3:.1f} ms ({times[1] / m:.2f}x); worst later call {worst + 1}: "
        f"{times[worst] * 1e3:.1f} ms ({times[worst] / m:.2f}x); steady {m * 1e3:.2f} ms = "
        f"{m / steps * 1e6:.2f} us/step; generated code in use: {bool(schedule.programs)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--calls", type=int, default=0, help="time calls 1..N of a fresh plan one by one")
    parser.add_argument("--dag", action="store_true", help="a random DAG (scenario E's generator) instead of a chain")
    args = parser.parse_args()
    for n in args.sizes:
        if args.calls:
            calls(n, args.dag, max(args.calls, 7))
        else:
            steady(n, args.dag)


if __name__ == "__main__":
    main()
