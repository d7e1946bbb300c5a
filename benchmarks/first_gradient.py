"""Scenario F, "file to first gradient": a JSON graph file to its first gradient, each run in a fresh process.

Usage (from the repository root)::

    python -m benchmarks.first_gradient                      # 1k, 10k, 100k; chain and random DAG
    python -m benchmarks.first_gradient --sizes 1000 10000 --repeats 3
    python -m benchmarks.first_gradient --jax-python /path/to/venv/bin/python   # jax from another venv
    python -m benchmarks.first_gradient --split --sizes 1000 10000 --repeats 5  # compile + call 1 by stage

For each graph file and each implementation a new Python process is started
(imports done before the clock starts, graphengine's installed op plugins
included, as ``import torch`` loads torch's ops: they are reported apart as
``imports_s``). It times, from the file's bytes to a gradient in hand:

* graphengine: ``graphengine.load`` (parse, validate, build, shape rules),
  ``Graph.compile()``, then ``Plan.value_and_grad`` (the first, checked call);
* torch eager: ``json.loads``, tensors from the document, the op loop of
  ``benchmarks.peers`` and ``torch.autograd.grad``;
* jax: ``json.loads``, the same op loop under ``jax.jit(jax.value_and_grad)``,
  first call (trace + XLA compile); dropped past ``--jax-timeout`` seconds.

Then the same process times call 2 and the steady state (median of the next
calls), so every row shows call 1, call 2 and steady. Each child prints the sum
of its gradient of ``x``; the parent checks every implementation against
graphengine's (relative 1e-6) before reporting anything.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from .scenarios import Scenario, random_dag, scenario_c

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("graphengine", "torch", "jax")


def write_graphs(folder: Path, sizes: list[int]) -> list[tuple[str, int, Path]]:
    """The chain (scenario C's ops) and random DAG (scenario E's) files, one per size."""
    files = []
    for n in sizes:
        for kind, doc in (("chain", scenario_c(n).doc), ("dag", random_dag(n, 16, seed=1))):
            path = folder / f"{kind}_{n}.json"
            path.write_text(json.dumps(doc))
            files.append((kind, n, path))
    return files


def _feeds(doc: dict[str, Any]) -> dict[str, np.ndarray]:
    size = doc["inputs"][0]["shape"][0]
    return {"x": np.random.default_rng(7).standard_normal(size)}


def _wrt(doc: dict[str, Any]) -> list[str]:
    return ["x"] + [p["name"] for p in doc.get("parameters", [])]


def _child(impl: str, path: Path, calls: int) -> dict[str, Any]:
    """Runs in the fresh process: import, then time file -> first gradient, call 2 and steady."""
    t_import = time.perf_counter()
    if impl == "graphengine":
        import graphengine
        from graphengine.registry import default_registry

        default_registry()  # the installed op plugins imported, as ``import torch`` imports torch's ops
    else:
        from .peers import make_peer

        __import__(impl)
    imports = time.perf_counter() - t_import
    raw = path.read_bytes()
    json_s = []  # the reference: json.loads of the same bytes in this fresh process, before anything grows the heap
    for _ in range(3):
        t1 = time.perf_counter()
        head = json.loads(raw)  # the feeds and wrt names only; the clock starts below
        json_s.append(time.perf_counter() - t1)
        del head
    head = json.loads(raw)
    del raw
    feeds, wrt = _feeds(head), _wrt(head)
    del head
    # The benchmark's own garbage (the json.loads reference) must not trigger a full collection inside
    # the timed region: with torch imported that is ~0.1 s, and it fell on torch's first call.
    gc.collect()
    c0 = time.process_time()  # CPU time too: wall clock on a shared machine counts the neighbours' work
    t0 = time.perf_counter()
    if impl == "graphengine":
        graph = graphengine.load(path)
        load = time.perf_counter() - t0  # file -> validated Graph: the "load + validate" of the goal
        plan = graph.compile()
        plan.value_and_grad(feeds, wrt)

        def call() -> Any:
            return plan.value_and_grad(feeds, wrt).gradients["x"]
    else:
        doc = json.loads(path.read_bytes())
        load = time.perf_counter() - t0
        run = make_peer(impl, Scenario("F", path.stem, doc, feeds, wrt, numpy_grad=lambda: (None, {})))
        run()

        def call() -> Any:
            return run()[1]["x"]

    first = time.perf_counter() - t0
    first_cpu = time.process_time() - c0
    t1 = time.perf_counter()
    g = call()
    call2 = time.perf_counter() - t1
    steady = []
    for _ in range(calls):
        t1 = time.perf_counter()
        g = call()
        steady.append(time.perf_counter() - t1)
    return {
        "imports_s": imports,
        "load_s": load,
        "first_s": first,
        "first_cpu_s": first_cpu,
        "call2_s": call2,
        "steady_s": statistics.median(steady),
        "json_s": min(json_s),
        "grad_x_sum": float(np.sum(g)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


#: The stages of ``--split``: CPU time of each in a fresh process, the collector off and run by hand after each part.
SPLIT = ("compile", "gc_compile", "schedule", "table", "checked_run", "gc_call1", "table_run")


def _split_child(path: Path) -> dict[str, float]:
    """graphengine's compile() and call 1 cut into their stages (engine internals, for docs/performance-calls.md).

    ``gc_*`` is the young generation's collection that the pause defers (the collector runs it when it is
    re-enabled); ``table_run`` is a later, unchecked run of the same table, for scale.
    """
    import graphengine
    from graphengine.registry import default_registry

    default_registry()
    head = json.loads(path.read_bytes())
    feeds, wrt = _feeds(head), _wrt(head)
    del head
    graph = graphengine.load(path)
    gc.collect()
    gc.disable()
    clock, out = time.process_time, {}

    def timed(stage: str, fn: Any) -> Any:
        start = clock()
        result = fn()
        out[stage] = clock() - start
        return result

    plan = timed("compile", graph.compile)
    timed("gc_compile", lambda: gc.collect(0))
    schedule = timed("schedule", lambda: plan._grad_schedule(wrt, None)[0])
    table = timed("table", lambda: plan._runners.table(schedule))
    seed = np.ones_like
    values = plan._bind(feeds, schedule)
    timed("checked_run", lambda: table(values, seed, None, check=plan.specs))
    timed("gc_call1", lambda: gc.collect(0))
    values = plan._bind(feeds, schedule)
    timed("table_run", lambda: table(values, seed, None))
    gc.enable()
    return out


def split(sizes: list[int], repeats: int) -> str:
    """``--split``: median CPU ms of each stage over ``repeats`` fresh processes, per graph file."""
    lines = ["| graph | " + " | ".join(SPLIT) + " | compile + call 1 |", "|---" * (len(SPLIT) + 2) + "|"]
    with tempfile.TemporaryDirectory() as folder:
        for kind, n, path in write_graphs(Path(folder), sizes):
            cmd = [sys.executable, "-m", "benchmarks.first_gradient", "--split-child", str(path)]
            runs = [
                json.loads(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
                for _ in range(max(repeats, 1))
            ]
            med = {stage: 1e3 * statistics.median(r[stage] for r in runs) for stage in SPLIT}
            total = sum(v for k, v in med.items() if k != "table_run")
            cells = " | ".join(f"{med[stage]:.1f}" for stage in SPLIT)
            lines.append(f"| {kind} {n} | {cells} | {total:.1f} |")
    return "\n".join(lines)


def run_child(python: str, impl: str, path: Path, calls: int, timeout: float) -> dict[str, Any] | str:
    """One fresh process; its figures, or why there are none."""
    cmd = [python, "-m", "benchmarks.first_gradient", "--child", impl, str(path), "--calls", str(calls)]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"over {timeout:.0f} s"
    if done.returncode != 0:
        return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:120]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(
    sizes: list[int], repeats: int, calls: int, pythons: dict[str, str], timeouts: dict[str, float]
) -> list[dict[str, Any]]:
    """Best of ``repeats`` fresh processes per (graph, implementation); gradients cross-checked."""
    rows = []
    given_up: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, n, path in write_graphs(Path(tmp), sizes):
            row: dict[str, Any] = {"graph": kind, "nodes": n, "file_mb": path.stat().st_size / 1e6}
            for impl, python in pythons.items():
                if (impl, kind) in given_up:  # it failed or ran out of time on a smaller graph of this kind
                    row[impl] = given_up[(impl, kind)]
                    continue
                runs = [run_child(python, impl, path, calls, timeouts.get(impl, 600.0))]
                if isinstance(runs[0], str):
                    given_up[(impl, kind)] = f"not run ({runs[0]} at {n:,})"
                else:
                    runs += [
                        run_child(python, impl, path, calls, timeouts.get(impl, 600.0)) for _ in range(repeats - 1)
                    ]
                good = [r for r in runs if isinstance(r, dict)]
                row[impl] = min(good, key=lambda r: r["first_s"]) if good else runs[0]
                if good:
                    row[impl]["first_median_s"] = statistics.median(r["first_s"] for r in good)
                    row[impl]["first_cpu_median_s"] = statistics.median(r["first_cpu_s"] for r in good)
                print(f"  {kind} {n}: {impl} {_cell(row[impl])}", file=sys.stderr)
            _check(row)
            rows.append(row)
    return rows


def _check(row: dict[str, Any]) -> None:
    ref = row.get("graphengine")
    if not isinstance(ref, dict):
        return
    for impl in IMPLS[1:]:
        got = row.get(impl)
        if isinstance(got, dict):
            want, have = ref["grad_x_sum"], got["grad_x_sum"]
            if not abs(have - want) <= 1e-6 * max(abs(want), 1e-12):
                raise AssertionError(
                    f"{row['graph']} {row['nodes']}: {impl} gradient sum {have!r}, graphengine {want!r}"
                )


def _ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _cell(r: dict[str, Any] | str) -> str:
    if isinstance(r, str):
        return r
    return f"{_ms(r['first_s'])} (median {_ms(r['first_median_s'])}, CPU {_ms(r['first_cpu_median_s'])})"


def _ratio(row: dict[str, Any], other: str) -> str:
    """graphengine's median first gradient over ``other``'s: wall clock, then CPU time."""
    ge, peer = row.get("graphengine"), row.get(other)
    if not isinstance(ge, dict) or not isinstance(peer, dict):
        return "-"
    wall = ge["first_median_s"] / peer["first_median_s"]
    return f"{wall:.2f} (CPU {ge['first_cpu_median_s'] / peer['first_cpu_median_s']:.2f})"


def markdown(rows: list[dict[str, Any]], impls: list[str]) -> str:
    peers = [i for i in impls if i != "graphengine"] if "graphengine" in impls else []
    lines = [
        "File to first gradient, fresh process each (best of the repeats; medians of wall clock and CPU time in "
        "brackets; the ratios are graphengine's medians over the peer's). Then call 2 and steady state in the "
        "same process:",
        "",
        "| graph | nodes | " + " | ".join(f"{i} first" for i in impls) + " | graphengine load+validate / json.loads "
        "| "
        + " | ".join(f"graphengine / {i}" for i in peers)
        + " | "
        + " | ".join(f"{i} call 2 / steady" for i in impls)
        + " |",
        "|---" * (2 * len(impls) + len(peers) + 3) + "|",
    ]
    for row in rows:
        firsts = [_cell(row.get(i, "not run")) for i in impls]
        ge = row.get("graphengine")
        ratio = f"{ge['load_s'] / ge['json_s']:.1f}× ({_ms(ge['load_s'])})" if isinstance(ge, dict) else "-"
        later = [
            f"{_ms(r['call2_s'])} / {_ms(r['steady_s'])}" if isinstance(r, dict) else "-"
            for r in (row.get(i) for i in impls)
        ]
        lines.append(
            f"| {row['graph']} | {row['nodes']:,} | "
            + " | ".join(firsts)
            + f" | {ratio} | "
            + "".join(_ratio(row, i) + " | " for i in peers)
            + " | ".join(later)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_gradient", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per graph and implementation")
    parser.add_argument("--calls", type=int, default=5, help="calls after call 2 for the steady state")
    parser.add_argument("--jax-python", default=sys.executable, help="the interpreter that has jax (default: this one)")
    parser.add_argument("--jax-timeout", type=float, default=60.0, help="seconds before a jax run is dropped")
    parser.add_argument("--impls", nargs="*", default=list(IMPLS))
    parser.add_argument("--split", action="store_true", help="graphengine's compile and call 1 by stage (CPU ms)")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--split-child", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.split_child:
        print(json.dumps(_split_child(Path(args.split_child))))
        return 0
    if args.split:
        print(split(args.sizes, args.repeats))
        return 0
    if args.child:
        print(json.dumps(_child(args.child[0], Path(args.child[1]), args.calls)))
        return 0
    pythons = {i: (args.jax_python if i == "jax" else sys.executable) for i in args.impls}
    rows = measure(args.sizes, args.repeats, args.calls, pythons, {"jax": args.jax_timeout})
    print(markdown(rows, list(pythons)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
