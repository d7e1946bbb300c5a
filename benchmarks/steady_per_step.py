"""Steady cost per step at growing size, and the cost of every call from the first (issue 13's cliff goals).

Usage::

    python -m benchmarks.steady_per_step 1000 10000 100000          # chain (scenario C's), after Plan.prepare
    python -m benchmarks.steady_per_step --calls 40 1000 10000       # a fresh plan: calls 1..40 one by one
    python -m benchmarks.steady_per_step --calls 40 --dag 10000      # the same on a random DAG (scenario E's)
    python -m benchmarks.steady_per_step --calls 40 --cpu 10000      # CPU time, steadier on a shared machine

The first form prints the time to generate the code, then min / median of 5 calls per step, generated code
against the step interpreter. The second prints, for a freshly compiled plan, call 1 (the checked first call),
call 2, the costliest call after the first, the 90th percentile of the calls while the code is being written, and
the steady state (median of 20 calls once the generated code is in use), each also as a multiple of steady;
it calls on past N until the code is complete (at most 5,000 calls): the goal is no call after the first above 3x steady, and steady per step at 100k nodes
within 1.5x of that at 1k. Use ``--threads 1`` semantics by running with OPENBLAS_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

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


def calls(n: int, dag: bool, count: int, clock: Callable[[], float] = time.perf_counter) -> None:
    """Calls 1..count of a fresh plan, then on until its generated code is in use, then 20 steady calls."""
    doc, feeds, wrt = _case(n, dag)
    t = clock()
    plan = graphengine.load_dict(doc).compile()
    compiled = clock() - t
    times: list[float] = []
    done_at = 0  # the call after which the generated code was installed
    while len(times) < count or not done_at or len(times) < done_at + 20:
        t = clock()
        plan.grad(feeds, wrt)
        times.append(clock() - t)
        schedule = plan._grad_schedule(wrt, None)[0]
        if not done_at and schedule.programs.get(False) is not None:
            done_at = len(times)
        if len(times) >= 5000:
            break
    steps = schedule.size
    m = statistics.median(times[-20:])
    worst = max(range(1, len(times)), key=lambda k: times[k])
    later = sorted(times[1:done_at] or times[1:])
    p90 = later[int(0.9 * (len(later) - 1))]
    print(
        f"{'dag' if dag else 'chain'} {n}: {steps} steps; load+compile {compiled:.3f} s; call 1 {times[0] * 1e3:.1f} ms "
        f"({times[0] / m:.1f}x); call 2 {times[1] * 1e3:.1f} ms ({times[1] / m:.2f}x); worst later call {worst + 1}: "
        f"{times[worst] * 1e3:.1f} ms ({times[worst] / m:.2f}x); 90th percentile while generating {p90 / m:.2f}x; "
        f"code complete after call {done_at or 'never'}; steady (median of the last 20) {m * 1e3:.2f} ms = "
        f"{m / steps * 1e6:.2f} us/step",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--calls", type=int, default=0, help="time calls 1..N of a fresh plan one by one")
    parser.add_argument("--dag", action="store_true", help="a random DAG (scenario E's generator) instead of a chain")
    parser.add_argument("--cpu", action="store_true", help="with --calls: CPU time of this process, not wall-clock")
    args = parser.parse_args()
    for n in args.sizes:
        if args.calls:
            calls(n, args.dag, max(args.calls, 7), time.process_time if args.cpu else time.perf_counter)
        else:
            steady(n, args.dag)


if __name__ == "__main__":
    main()
