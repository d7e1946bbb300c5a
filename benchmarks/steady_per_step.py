"""Steady cost per step at growing size: scenario C's chain, generated code (after Plan.prepare) and the interpreter.

Usage: ``python -m benchmarks.steady_per_step 1000 10000 100000``. Issue 13's cliff goal: the 100k figure within
1.5x of the 1k one. Prints the time to generate the code, then min / median of 5 calls, per step.
"""

import statistics
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
import graphengine
from benchmarks.scenarios import scenario_c
from graphengine.engine.plan import _interpreted

for n in [int(a) for a in sys.argv[1:]] or [1000, 10000]:
    s = scenario_c(n)
    plan = graphengine.load_dict(s.doc).compile()
    t = time.perf_counter()
    plan.prepare(s.wrt)
    gen = time.perf_counter() - t
    plan.grad(s.feeds, s.wrt)  # call 1: interpreter
    ts, ti = [], []
    for _ in range(5):
        t = time.perf_counter()
        plan.grad(s.feeds, s.wrt)
        ts.append(time.perf_counter() - t)
        t = time.perf_counter()
        _interpreted(plan, s.feeds, s.wrt)
        ti.append(time.perf_counter() - t)
    steps = plan._grad_schedule(s.wrt, None)[0].size
    print(
        f"chain {n}: {steps} steps; generate {gen:.2f} s; generated min {min(ts) / steps * 1e6:.2f} median {statistics.median(ts) / steps * 1e6:.2f} us/step; interpreter min {min(ti) / steps * 1e6:.2f} median {statistics.median(ti) / steps * 1e6:.2f} us/step",
        flush=True,
    )
