"""Run the side-by-side benchmark suite and print a markdown table (or ``--json``).

Usage (from the repository root)::

    pip install -e ".[bench]"        # threadpoolctl; torch/autograd/jax are optional peers
    python -m benchmarks.run         # everything, a few minutes
    python -m benchmarks.run --quick --only A C   # fewer repeats, some scenarios
    python -m benchmarks.run --json results.json

Method: for each scenario every implementation's gradients are first checked
against hand-written numpy (and so against each other). Then all
implementations are timed in one process, interleaved round by round in a
shuffled order, after warm-up; each sample is the mean of an inner loop long
enough to be well above the clock's resolution. The table shows the median
time and ratios to hand-written numpy (median, with min and max of the
per-round ratios' building blocks: min time / numpy median, max time / numpy
median). Every reference is hand-written numpy forward+backward (C also shows
numpy forward only). Call 1 and call 2 of a freshly built implementation are
reported beside the steady state.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

import graphengine

from .peers import PEERS, available, make_peer
from .scenarios import Grads, Scenario, all_scenarios, random_dag

Impl = Callable[[], tuple[Any, Grads]]

#: jax's jit of scenario E (10,000 nodes) ran out of memory in the issue's measurement.
JAX_MAX_NODES = 2_000


# --- implementations ----------------------------------------------------------------------------


def engine_impl(scenario: Scenario) -> tuple[Impl, "graphengine.Plan"]:
    """graphengine's ``value_and_grad`` on the scenario's graph."""
    graph = graphengine.load_dict(scenario.doc)
    plan = graph.compile()
    feeds, wrt = scenario.feeds, scenario.wrt

    def run() -> tuple[Any, Grads]:
        r = plan.value_and_grad(feeds, wrt)
        return r.outputs[graph.outputs[0]], r.gradients

    def warm() -> None:
        """Calls until the generated code is complete (each later call writes a slice of it): the steady state."""
        run()
        for _ in range(10_000):
            if all(s.programs for s in plan._schedules.values()):
                return
            run()

    run.warm = warm  # type: ignore[attr-defined]
    return run, plan


def makers(
    scenario: Scenario, peers: list[str], jax_large: bool = False
) -> tuple[dict[str, Callable[[], Impl]], dict[str, str]]:
    """``{name: make}``: each ``make()`` builds a fresh implementation (a new plan, a new jit), plus skip notes."""
    made: dict[str, Callable[[], Impl]] = {
        "numpy": lambda: scenario.numpy_grad,
        "graphengine": lambda: engine_impl(scenario)[0],
    }
    notes: dict[str, str] = {}
    for peer in peers:
        if not available(peer):
            notes[peer] = "not installed"
            continue
        if peer == "jax" and len(scenario.doc["nodes"]) > JAX_MAX_NODES and not jax_large:
            notes[peer] = f"skipped: jit of {len(scenario.doc['nodes']):,} nodes exhausts memory (--jax-large to try)"
            continue
        try:
            make_peer(peer, scenario)
        except NotImplementedError as exc:
            notes[peer] = f"skipped: {exc}"
            continue
        made[peer] = lambda peer=peer: make_peer(peer, scenario)  # type: ignore[misc]
    return made, notes


def implementations(
    scenario: Scenario, peers: list[str], jax_large: bool = False
) -> tuple[dict[str, Impl], dict[str, str]]:
    """``{name: impl}`` for numpy, graphengine and the installed peers, plus notes on skipped ones."""
    made, notes = makers(scenario, peers, jax_large)
    return {name: make() for name, make in made.items()}, notes


def first_calls(make: Callable[[], Impl], later: int = 20) -> tuple[float, float, float]:
    """Seconds of the first, the second, and the costliest of calls 2 to ``later`` of a fresh implementation.

    graphengine's first call builds its table of calls and runs it checked;
    later ones write and compile code a slice at a time; jax's first call
    traces and compiles.
    """
    impl = make()
    gc.collect()
    times = []
    for _ in range(later):
        t0 = time.perf_counter()
        impl()
        times.append(time.perf_counter() - t0)
    return times[0], times[1], max(times[1:])


def check_gradients(scenario: Scenario, impls: dict[str, Impl]) -> dict[str, float]:
    """Compare every implementation's loss and gradients with hand-written numpy.

    Returns the largest relative error per implementation.

    Raises
    ------
    AssertionError
        When one disagrees beyond the scenario's tolerance; names it and the value.
    """
    ref_loss, ref = scenario.numpy_grad()
    worst: dict[str, float] = {}
    for name, impl in impls.items():
        loss, grads = impl()
        err = _rel_err(np.asarray(loss), np.asarray(ref_loss))
        for key in scenario.wrt:
            if key not in grads:
                raise AssertionError(f"{scenario.key}: {name} returned no gradient for {key!r}")
            got = np.asarray(grads[key])
            if got.shape != np.shape(ref[key]):
                raise AssertionError(
                    f"{scenario.key}: {name} gradient {key!r} has shape {got.shape}, numpy {np.shape(ref[key])}"
                )
            err = max(err, _rel_err(got, np.asarray(ref[key])))
        if not err <= scenario.rtol:
            raise AssertionError(f"{scenario.key}: {name} disagrees with hand-written numpy (relative error {err:.3g})")
        worst[name] = err
    return worst


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-30)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)) / scale


# --- timing ------------------------------------------------------------------------------------


@dataclass
class Timing:
    median: float
    min: float
    max: float
    samples: int


def _inner_loops(fn: Callable[[], Any], target: float) -> int:
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(target / once))


def time_interleaved(
    fns: dict[str, Callable[[], Any]], rounds: int, target: float, warmup: int = 3
) -> dict[str, Timing]:
    """Median/min/max seconds per call, implementations interleaved in shuffled order each round."""
    for fn in fns.values():
        getattr(fn, "warm", lambda: None)()
        for _ in range(warmup):
            fn()
    loops = {name: _inner_loops(fn, target) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    rng = random.Random(0)
    gc_was_enabled = gc.isenabled()
    try:
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                fn, n = fns[name], loops[name]
                gc.collect()
                gc.disable()
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter() - t0) / n)
                gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    return {n: Timing(statistics.median(s), min(s), max(s), len(s)) for n, s in samples.items()}


# --- memory ------------------------------------------------------------------------------------


def peak_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes traced by ``tracemalloc`` during one call (numpy reports its buffers to it)."""
    fn()  # warm caches (schedules, generated code) outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak


# --- load / validate / compile -------------------------------------------------------------------


def load_timings(
    sizes: tuple[int, ...] = (10_000, 100_000), repeats: int = 3, tmpdir: Path | None = None
) -> list[dict[str, Any]]:
    """Seconds to ``json.loads``, load+validate, compile, and prepare a grad schedule for random DAGs."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        for n in sizes:
            doc = random_dag(n, 16, seed=1)
            path = Path(tmp) / f"dag_{n}.json"
            path.write_text(json.dumps(doc))
            raw = path.read_bytes()
            t_json, t_load, t_compile, t_prepare = [], [], [], []
            for _ in range(repeats):
                gc.collect()
                t0 = time.perf_counter()
                json.loads(raw)
                t_json.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                graph = graphengine.load(path)
                t_load.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                plan = graph.compile()
                t_compile.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                prepare = getattr(plan, "prepare", None)
                if prepare is not None:
                    prepare(wrt=["x"])
                else:  # an engine without Plan.prepare: the first grad call builds the schedule
                    plan.grad(wrt=["x"], feeds={"x": np.zeros(16)})
                t_prepare.append(time.perf_counter() - t0)
                del graph, plan
            j = min(t_json)
            rows.append(
                {
                    "nodes": len(doc["nodes"]),
                    "file_mb": round(len(raw) / 1e6, 2),
                    "json_loads_s": j,
                    "load_validate_s": min(t_load),
                    "compile_s": min(t_compile),
                    "prepare_grad_s": min(t_prepare),
                    "load_over_json": min(t_load) / j,
                    "total_over_json": (min(t_load) + min(t_compile) + min(t_prepare)) / j,
                }
            )
    return rows


# --- environment --------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Machine, versions, BLAS kernel (threadpoolctl) and OPENBLAS_CORETYPE."""
    env: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.processor() or _cpu_model()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "graphengine": graphengine.__version__ if hasattr(graphengine, "__version__") else "?",
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(not set)"),
    }
    for peer in PEERS:
        if available(peer):
            from importlib.metadata import version

            env[peer] = version(peer)
        else:
            env[peer] = "not installed"
    try:
        from threadpoolctl import threadpool_info

        env["blas"] = [
            {
                k: info.get(k)
                for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
            }
            for info in threadpool_info()
            if info.get("user_api") == "blas"
        ]
    except ImportError:
        env["blas"] = "threadpoolctl not installed (pip install threadpoolctl, or the 'bench' extra)"
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


# --- main --------------------------------------------------------------------------------------


def run_suite(
    keys: list[str] | None,
    peers: list[str],
    rounds: int,
    target: float,
    jax_large: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    results: dict[str, Any] = {"environment": environment(), "scenarios": []}
    for scenario in all_scenarios():
        if keys and scenario.key not in keys and scenario.key.rstrip("0123456789") not in keys:
            continue
        log(f"# {scenario.key}: {scenario.title}")
        impls, notes = implementations(scenario, peers, jax_large)
        errors = check_gradients(scenario, impls)
        fns: dict[str, Callable[[], Any]] = dict(impls)
        if scenario.numpy_forward is not None:
            fns["numpy forward"] = scenario.numpy_forward
        made, _ = makers(scenario, list(impls)[2:], jax_large=True)
        firsts = {name: first_calls(make) for name, make in made.items()}
        timings = time_interleaved(fns, rounds, target)
        ref = timings["numpy"].median  # hand-written forward+backward, in every scenario
        row = {
            "key": scenario.key,
            "title": scenario.title,
            "reference": "numpy",
            "nodes": len(scenario.doc["nodes"]),
            "max_rel_error": errors,
            "notes": notes,
            "impls": {
                name: {
                    "median_s": t.median,
                    "min_s": t.min,
                    "max_s": t.max,
                    "samples": t.samples,
                    "ratio": t.median / ref,
                    "ratio_min": t.min / ref,
                    "ratio_max": t.max / ref,
                    **(
                        {"call1_s": firsts[name][0], "call2_s": firsts[name][1], "worst_later_s": firsts[name][2]}
                        if name in firsts
                        else {}
                    ),
                }
                for name, t in timings.items()
            },
        }
        if scenario.key.startswith("B"):
            engine_fn = impls["graphengine"]
            row["peak_memory"] = {
                "numpy_bytes": peak_memory(scenario.numpy_grad),
                "graphengine_bytes": peak_memory(engine_fn),
            }
            row["peak_memory"]["ratio"] = row["peak_memory"]["graphengine_bytes"] / row["peak_memory"]["numpy_bytes"]
        results["scenarios"].append(row)
        log("  " + ", ".join(f"{n} {v['ratio']:.2f}" for n, v in row["impls"].items()))
    return results


#: Issue 13's goals, as ratios to hand-written numpy forward+backward (C has none of its own).
GOALS = {"A": 1.4, "B64": 1.05, "B32": 1.05, "D": 1.05, "E": 2.0}


def markdown(results: dict[str, Any], load_rows: list[dict[str, Any]] | None) -> str:
    env = results["environment"]
    lines = [
        f"Date {env['date']}; {env['machine']}; Python {env['python']}, numpy {env['numpy']}; "
        f"torch {env['torch']}, autograd {env['autograd']}, jax {env['jax']}.",
        "",
        f"BLAS: {_blas_line(env['blas'])}; OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}"
        + (f"; limited to {env['threads_limit']} thread(s) (--threads)." if env.get("threads_limit") else "."),
        "",
        "Steady state: ratios of median time to hand-written numpy forward+backward (lower is better; "
        "[min-max] over rounds). C also shows numpy forward only.",
        "",
    ]
    cols = ["numpy", "graphengine", *PEERS, "numpy forward"]
    lines.append("| scenario | goal | " + " | ".join(cols) + " | numpy time |")
    lines.append("|---" * (len(cols) + 3) + "|")
    for row in results["scenarios"]:
        cells = []
        for c in cols:
            v = row["impls"].get(c)
            if v is None and c == "numpy forward":
                cells.append("")
            elif v is None:
                note = row["notes"].get(c)
                cells.append("not run" if note is None else "not installed" if "not installed" in note else "skipped")
            else:
                cells.append(f"{v['ratio']:.2f} [{v['ratio_min']:.2f}-{v['ratio_max']:.2f}]")
        ref = row["impls"]["numpy"]["median_s"]
        goal = f"≤ {GOALS[row['key']]:.2f}" if row["key"] in GOALS else "-"
        lines.append(f"| {row['key']}. {row['title']} | {goal} | " + " | ".join(cells) + f" | {_fmt_s(ref)} |")
    lines += _first_calls_table(results["scenarios"])
    mem = [r for r in results["scenarios"] if "peak_memory" in r]
    if mem:
        lines += [
            "",
            "Peak memory of one gradient call (tracemalloc), goal ≤ 1.05× the lean numpy reference:",
            "",
            "| scenario | numpy | graphengine | ratio |",
            "|---|---|---|---|",
        ]
        for r in mem:
            m = r["peak_memory"]
            lines.append(
                f"| {r['key']} | {m['numpy_bytes'] / 2**20:.1f} MiB | {m['graphengine_bytes'] / 2**20:.1f} MiB | {m['ratio']:.3f} |"
            )
    if load_rows:
        lines += [
            "",
            "Load, validate and compile (random DAG files, best of 3):",
            "",
            "| nodes | file | json.loads | load+validate | compile | prepare grad | total / json.loads |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in load_rows:
            lines.append(
                f"| {r['nodes']:,} | {r['file_mb']} MB | {_fmt_s(r['json_loads_s'])} | {_fmt_s(r['load_validate_s'])} | "
                f"{_fmt_s(r['compile_s'])} | {_fmt_s(r['prepare_grad_s'])} | {r['total_over_json']:.1f}× |"
            )
    skipped = {
        (row["key"], k): v for row in results["scenarios"] for k, v in row["notes"].items() if "not installed" not in v
    }
    if skipped:
        lines += [""] + [f"- {key} {peer}: {note}" for (key, peer), note in skipped.items()]
    return "\n".join(lines)


def _first_calls_table(rows: list[dict[str, Any]]) -> list[str]:
    """Call 1, call 2 and steady state of each implementation: time, and call / steady."""
    cols = ["numpy", "graphengine", *PEERS]
    lines = [
        "",
        "First calls of a freshly built implementation: call 1 / call 2 / worst of calls 2-20 / steady "
        "(median, after warm-up), and the first three as multiples of steady:",
        "",
        "| scenario | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for row in rows:
        cells = []
        for c in cols:
            v = row["impls"].get(c)
            if v is None or "call1_s" not in v:
                cells.append("-")
                continue
            m = v["median_s"]
            worst = v.get("worst_later_s", v["call2_s"])
            cells.append(
                f"{_fmt_s(v['call1_s'])} / {_fmt_s(v['call2_s'])} / {_fmt_s(worst)} / {_fmt_s(m)} "
                f"({v['call1_s'] / m:.1f}×, {v['call2_s'] / m:.1f}×, {worst / m:.1f}×)"
            )
        lines.append(f"| {row['key']} | " + " | ".join(cells) + " |")
    return lines


def _blas_line(blas: Any) -> str:
    if isinstance(blas, str):
        return blas
    return (
        "; ".join(
            f"{b['internal_api']} {b['version']} kernel {b['architecture']}, {b['num_threads']} threads" for b in blas
        )
        or "none found"
    )


def _fmt_s(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", metavar="KEY", help="scenarios to run: A B B64 B32 C D E")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), help="peers to try (default: all installed)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per implementation (default 15)")
    parser.add_argument("--target", type=float, default=0.05, help="seconds per timed sample (default 0.05)")
    parser.add_argument("--quick", action="store_true", help="5 rounds of 0.02 s: a rough look")
    parser.add_argument("--no-load", action="store_true", help="skip the load/validate/compile timing")
    parser.add_argument(
        "--jax-large", action="store_true", help=f"also jit graphs over {JAX_MAX_NODES:,} nodes with jax"
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="limit BLAS (threadpoolctl) and torch to N threads: steadier ratios on a busy machine",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' for stdout only)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.target = 5, 0.02
    log = (lambda s: print(s, file=sys.stderr)) if args.json == "-" else print
    with contextlib.ExitStack() as stack:
        if args.threads:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=args.threads, user_api="blas"))
            if available("torch"):
                import torch

                torch.set_num_threads(args.threads)
        results = run_suite(args.only, args.peers, args.rounds, args.target, args.jax_large, log=log)
        results["environment"]["threads_limit"] = args.threads
    load_rows = None if args.no_load else load_timings()
    results["load"] = load_rows
    if args.json == "-":
        print(json.dumps(results, indent=2))
        return 0
    print()
    print(markdown(results, load_rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
