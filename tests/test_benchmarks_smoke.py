"""Smoke test of the benchmark suite: every scenario at tiny size runs, and all implementations agree.

Nothing here is timed. The engine's gradients are also checked against finite
differences, so the hand-written numpy references are not checked only against
the engine (and the engine not only against them).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import import_benchmarks

import graphengine

import_benchmarks()
from benchmarks.peers import PEERS, available  # noqa: E402
from benchmarks.run import check_gradients, implementations, load_timings, markdown, peak_memory, time_interleaved  # noqa: E402
from benchmarks.scenarios import all_scenarios  # noqa: E402

SCENARIOS = {s.key: s for s in all_scenarios(small=True)}


@pytest.mark.parametrize("key", list(SCENARIOS))
def test_scenario_runs_and_gradients_agree(key: str) -> None:
    scenario = SCENARIOS[key]
    impls, notes = implementations(scenario, peers=[])
    errors = check_gradients(scenario, impls)
    assert set(errors) == {"numpy", "graphengine"}
    assert all(err <= scenario.rtol for err in errors.values())
    # The engine itself against central differences (float64), independent of the hand-written code.
    plan = graphengine.load_dict(scenario.doc).compile()
    graphengine.gradcheck(plan, feeds=scenario.feeds, wrt=scenario.wrt, rtol=1e-4, atol=1e-6)


def test_check_gradients_catches_a_wrong_implementation() -> None:
    scenario = SCENARIOS["A"]
    impls, _ = implementations(scenario, peers=[])

    def wrong() -> tuple[object, dict[str, np.ndarray]]:
        loss, grads = impls["graphengine"]()
        return loss, {k: v * 1.01 for k, v in grads.items()}

    with pytest.raises(AssertionError, match="wrong disagrees"):
        check_gradients(scenario, {"wrong": wrong})


@pytest.mark.parametrize("peer", PEERS)
def test_peer_agrees_when_installed(peer: str) -> None:
    if not available(peer):
        pytest.skip(f"optional peer {peer!r} is not installed")
    for key in ("A", "B64", "C"):
        scenario = SCENARIOS[key]
        impls, notes = implementations(scenario, peers=[peer])
        assert peer in impls, notes
        check_gradients(scenario, {peer: impls[peer]})


def test_harness_pieces_run() -> None:
    scenario = SCENARIOS["C"]
    impls, _ = implementations(scenario, peers=[])
    timings = time_interleaved(
        {"numpy": scenario.numpy_grad, "graphengine": impls["graphengine"]}, rounds=2, target=1e-4, warmup=1
    )
    assert set(timings) == {"numpy", "graphengine"} and all(t.samples == 2 for t in timings.values())
    assert peak_memory(scenario.numpy_grad) > 0
    rows = load_timings(sizes=(50,), repeats=1)
    assert rows[0]["nodes"] > 50 and rows[0]["json_loads_s"] > 0
    results = {
        "environment": {
            "date": "d",
            "machine": "m",
            "python": "p",
            "numpy": "n",
            "torch": "t",
            "autograd": "a",
            "jax": "j",
            "OPENBLAS_CORETYPE": "(not set)",
            "blas": "b",
        },
        "scenarios": [],
    }
    assert "load+validate" in markdown(results, rows)


def test_first_gradient_runs_in_fresh_processes_and_agrees() -> None:
    """Scenario F at a tiny size: one fresh process per implementation, gradients cross-checked."""
    import sys

    from benchmarks.first_gradient import _check, markdown, measure

    pythons = {"graphengine": sys.executable}
    if available("torch"):
        pythons["torch"] = sys.executable
    rows = measure([40], repeats=1, calls=1, pythons=pythons, timeouts={})
    assert [(r["graph"], r["nodes"]) for r in rows] == [("chain", 40), ("dag", 40)]
    for row in rows:
        for impl in pythons:
            assert isinstance(row[impl], dict), row[impl]  # a string says why the child failed
            assert row[impl]["first_s"] > 0 and row[impl]["call2_s"] > 0
    assert "file to first gradient" in markdown(rows, list(pythons)).lower()
    bad = dict(rows[0], torch=dict(rows[0]["graphengine"], grad_x_sum=rows[0]["graphengine"]["grad_x_sum"] * 1.01 + 1))
    with pytest.raises(AssertionError, match="torch gradient sum"):
        _check(bad)
