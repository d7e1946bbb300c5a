"""Generated code in chunks, and how a schedule gets it: a slice per call, or all at once (issue 13).

Chunks are forced with a tiny ``CHUNK_LINES``: the chunked program must give
the interpreter's bits, gradients that match central differences, errors that
name the node whatever chunk raised, and release memory as early as one
function does. Nothing here is timed: every call is checked bit for bit,
whichever of the table and the generated code ran it.
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
from conftest import import_benchmarks

import graphengine
from graphengine.engine import chunks
from graphengine.engine import runners as runners_module
from graphengine.engine.plan import _interpreted
from graphengine.ops.terse import defop

import_benchmarks()
from benchmarks.scenarios import random_dag  # noqa: E402


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks, "CHUNK_LINES", 7)


def _dag_plan() -> tuple[graphengine.Plan, dict[str, np.ndarray], list[str]]:
    doc = random_dag(120, 5, seed=3)
    plan = graphengine.load_dict(doc).compile()
    feeds = {"x": np.random.default_rng(1).standard_normal(5)}
    return plan, feeds, ["x"] + [p["name"] for p in doc["parameters"]]


@pytest.mark.usefixtures("tiny_chunks")
def test_chunked_code_matches_the_interpreter_bit_for_bit_and_central_differences() -> None:
    plan, feeds, wrt = _dag_plan()
    plan.prepare(wrt)
    reference = _interpreted(plan, feeds, wrt).gradients
    for record in (False, True):
        for _ in range(3):  # the checked table, then chunked generated code
            result = plan.value_and_grad(feeds, wrt, record=record)
            for name in wrt:
                np.testing.assert_array_equal(result.gradients[name], reference[name])
    program = plan._grad_schedule(wrt, None)[0].programs[False]
    assert program.source.count("def _chunk") > 10  # really chunked
    x, eps = feeds["x"], 1e-6
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        slope = (plan.run({"x": up})["loss"] - plan.run({"x": down})["loss"]) / (2 * eps)
        np.testing.assert_allclose(result.gradients["x"][i], slope, rtol=1e-5, atol=1e-7)


@pytest.mark.usefixtures("tiny_chunks")
def test_an_error_in_a_later_chunk_names_its_node() -> None:
    armed = {"on": False}

    @defop(lambda g: g)
    def fragile(x):
        if armed["on"]:
            raise ValueError("armed")
        return x + 0.0

    registry = graphengine.default_registry().copy()
    registry.register(fragile, "test")
    n = 60
    nodes = [{"id": f"n{i}", "op": "neg", "inputs": ["x" if i == 0 else f"n{i - 1}"]} for i in range(n)]
    nodes.append({"id": "late", "op": "fragile", "inputs": [f"n{n - 1}"]})
    nodes.append({"id": "loss", "op": "sum", "inputs": ["late"]})
    doc = {"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [2]}], "nodes": nodes, "outputs": ["loss"]}
    graph = graphengine.load_dict(doc, registry=registry)
    feeds = {"x": np.array([1.0, 2.0])}
    graph.grad(feeds, wrt=["x"])
    graph.grad(feeds, wrt=["x"])  # generated, chunked
    armed["on"] = True
    with pytest.raises(graphengine.ExecutionError, match="node 'late' \\(op 'fragile'\\) failed: ValueError: armed"):
        graph.grad(feeds, wrt=["x"])


@pytest.mark.usefixtures("tiny_chunks")
def test_chunks_release_values_as_early_as_one_function() -> None:
    n, size = 30, 500_000
    nodes = [{"id": f"n{i}", "op": "add", "inputs": ["x" if i == 0 else f"n{i - 1}", "c"]} for i in range(n)]
    nodes.append({"id": "loss", "op": "sum", "inputs": [f"n{n - 1}"]})
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [size]}],
        "constants": [{"name": "c", "value": 1.0}],
        "nodes": nodes,
        "outputs": ["loss"],
    }
    graph = graphengine.load_dict(doc)
    x = np.ones(size)
    graph.grad({"x": x}, wrt=["x"])
    graph.grad({"x": x}, wrt=["x"])
    tracemalloc.start()
    try:
        graph.grad({"x": x}, wrt=["x"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * x.nbytes  # holding every value would be ~30 arrays


def test_a_large_schedule_gets_its_code_a_slice_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners_module, "SMALL_STEPS", 10)
    monkeypatch.setattr(runners_module, "MIN_CHUNK_LINES", 7)
    monkeypatch.setattr(chunks, "CHUNK_LINES", 7)  # many chunks: many slices
    plan, feeds, wrt = _dag_plan()
    reference = _interpreted(plan, feeds, wrt).gradients
    sched = plan._grad_schedule(wrt, None)[0]
    calls = 0
    while False not in sched.programs:  # every slice is at least one step of the work: this ends
        calls += 1
        got = plan.grad(feeds, wrt)  # the table (checked on call 1), and a slice of the code generation
        assert all(np.array_equal(got[n], reference[n]) for n in wrt), f"call {calls}"
        assert sched.table is not None and (calls > 1 or not sched.programs)  # call 1 generates nothing
    program = sched.programs[False]
    assert program.source.count("def _chunk") > 10
    for _ in range(2):  # generated code from now on
        got = plan.grad(feeds, wrt)
        assert all(np.array_equal(got[n], reference[n]) for n in wrt)
    assert sched.programs[False] is program and sched.generation is None


def test_prepare_generates_code_for_a_large_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners_module, "SMALL_STEPS", 10)
    plan, feeds, wrt = _dag_plan()
    plan.prepare(wrt)
    sched = plan._grad_schedule(wrt, None)[0]
    assert False in sched.programs
    program = sched.programs[False]
    reference = _interpreted(plan, feeds, wrt).gradients
    for _ in range(2):  # the first call: still checked (on the table); then the prepared code
        got = plan.grad(feeds, wrt)
        assert all(np.array_equal(got[n], reference[n]) for n in wrt)
    assert sched.table is not None and sched.programs[False] is program and dataclasses.is_dataclass(sched)
