"""The reverse-mode scheduler: fan-out sums, diamonds, pruning, long chains, memory."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from conftest import SINE_PLUGIN, random_graph_doc

import graphengine
from graphengine import OpDef, Registry, default_registry, elementwise_rule


def doc(nodes: list[dict[str, Any]], outputs: list[str], *, x: Any = 0.7, shape: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": shape if shape is not None else list(np.shape(x)), "default": x}],
        "nodes": nodes,
        "outputs": outputs,
    }
    d.update(extra)
    return d


def test_fan_out_sin_sin_plus_sin() -> None:
    """y = sin(sin(x) + sin(x)): dy/dx = cos(2 sin x) * 2 cos x, the sum of both branches."""
    nodes = [
        {"id": "s1", "op": "sin", "inputs": ["x"]},
        {"id": "s2", "op": "sin", "inputs": ["x"]},
        {"id": "sum", "op": "add", "inputs": ["s1", "s2"]},
        {"id": "y", "op": "sin", "inputs": ["sum"]},
    ]
    g = graphengine.load_dict(doc(nodes, ["y"]), plugins=[str(SINE_PLUGIN)])
    x = 0.7
    grad = g.grad(wrt=["x"])["x"]
    assert grad == pytest.approx(np.cos(2 * np.sin(x)) * 2 * np.cos(x), rel=1e-12)
    # A single sin node feeding both sides of the add: the same sum, through one value.
    shared = graphengine.load_dict(
        doc([{"id": "s", "op": "sin", "inputs": ["x"]}, {"id": "sum", "op": "add", "inputs": ["s", "s"]}, {"id": "y", "op": "sin", "inputs": ["sum"]}], ["y"]),
        plugins=[str(SINE_PLUGIN)],
    )
    assert shared.grad(wrt=["x"])["x"] == pytest.approx(grad, rel=1e-12)
    graphengine.gradcheck(shared.compile(), wrt=["x"])


def test_diamond() -> None:
    """x -> a = exp(x), b = x * x -> y = a * b: dy/dx = exp(x) x^2 + exp(x) 2x."""
    nodes = [
        {"id": "a", "op": "exp", "inputs": ["x"]},
        {"id": "b", "op": "mul", "inputs": ["x", "x"]},
        {"id": "y", "op": "mul", "inputs": ["a", "b"]},
        {"id": "loss", "op": "sum", "inputs": ["y"]},
    ]
    x = np.array([0.3, -1.2, 2.0])
    g = graphengine.load_dict(doc(nodes, ["loss"], x=x.tolist()))
    np.testing.assert_allclose(g.grad(wrt=["x"])["x"], np.exp(x) * x**2 + np.exp(x) * 2 * x, rtol=1e-12)


def test_recorded_fan_in_sums_to_the_gradient() -> None:
    nodes = [
        {"id": "a", "op": "exp", "inputs": ["x"]},
        {"id": "b", "op": "mul", "inputs": ["x", "x"]},
        {"id": "y", "op": "mul", "inputs": ["a", "b"]},
        {"id": "loss", "op": "sum", "inputs": ["y"]},
    ]
    g = graphengine.load_dict(doc(nodes, ["loss"], x=[0.3, -1.2]))
    result = g.value_and_grad(wrt=["x"], record=True)
    fan = result.trace.fan_in["x"]
    assert [src for src, _ in fan.contributions] == ["b", "b", "a"] or sorted(src for src, _ in fan.contributions) == ["a", "b", "b"]
    np.testing.assert_allclose(sum(c for _, c in fan.contributions), result.gradients["x"], rtol=1e-12)
    assert result.trace.to_json()["fan_in"]["x"]["total"] == pytest.approx(result.gradients["x"].tolist())


@pytest.mark.parametrize("seed", range(8))
def test_random_dags_agree_with_finite_differences(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = graphengine.load_dict(random_graph_doc(rng, 12))
    wrt = ["p0", "p1", "x"]
    results = graphengine.gradcheck(g.compile(), wrt=wrt, rng=rng)
    assert set(results) == set(wrt)


def _counting_registry(calls: list[str]) -> Registry:
    def fwd(x, *, attrs):
        return x * 2.0

    def vjp(g, out, x, *, attrs):
        calls.append("vjp")
        return g * 2.0

    reg = default_registry()
    reg.register(OpDef("double", fwd, (vjp,), elementwise_rule, vjp_needs=frozenset()), "test")
    return reg


def test_only_nodes_on_a_path_from_wrt_to_output_are_visited() -> None:
    calls: list[str] = []
    nodes = [
        {"id": "off_path", "op": "double", "inputs": ["x"]},  # depends on x only, not on p
        {"id": "on_path", "op": "double", "inputs": ["p"]},
        {"id": "y", "op": "mul", "inputs": ["off_path", "on_path"]},
    ]
    d = doc(nodes, ["y"], x=1.5, parameters=[{"name": "p", "value": 2.0}])
    g = graphengine.load_dict(d, registry=_counting_registry(calls))
    assert g.grad(wrt=["p"])["p"] == pytest.approx(2.0 * 1.5 * 2.0)
    assert calls == ["vjp"]


def test_grad_returns_fresh_results_without_state() -> None:
    g = graphengine.load_dict(doc([{"id": "y", "op": "mul", "inputs": ["x", "x"]}], ["y"], x=3.0))
    first = g.grad(wrt=["x"])
    first["x"] += 100.0
    second = g.grad(wrt=["x"])
    assert second["x"] == pytest.approx(6.0)
    assert first is not second


def test_explicit_output_cotangent_for_vector_output() -> None:
    g = graphengine.load_dict(doc([{"id": "y", "op": "mul", "inputs": ["x", "x"]}], ["y"], x=[1.0, 2.0]))
    with pytest.raises(graphengine.FeedError, match="cotangent"):
        g.grad(wrt=["x"])
    np.testing.assert_allclose(g.grad(wrt=["x"], cotangent=[1.0, 10.0])["x"], [2.0, 40.0])


def test_long_chain_runs_iteratively() -> None:
    # 30,000 nodes: far past any recursion limit, and past CODEGEN_MAX_STEPS (40,000 steps forward and
    # backward), so the step interpreter runs it. tests/test_hostile.py holds the one 100,000-node test.
    n = 30_000
    nodes = [{"id": f"n{i}", "op": "neg", "inputs": ["x" if i == 0 else f"n{i - 1}"]} for i in range(n)]
    nodes.append({"id": "loss", "op": "sum", "inputs": [f"n{n - 1}"]})
    g = graphengine.load_dict(doc(nodes, ["loss"], x=[1.0, 2.0]))
    np.testing.assert_array_equal(g.grad(wrt=["x"])["x"], [1.0, 1.0])  # an even number of negations


def test_values_and_cotangents_are_released_early() -> None:
    """A chain of 40 adds on 1M floats: if nothing were released, peak memory would be ~40 arrays."""
    n, size = 40, 1_000_000
    nodes = [{"id": f"n{i}", "op": "add", "inputs": ["x" if i == 0 else f"n{i - 1}", "c"]} for i in range(n)]
    nodes.append({"id": "loss", "op": "sum", "inputs": [f"n{n - 1}"]})
    d = doc(nodes, ["loss"], shape=[size], x=None, constants=[{"name": "c", "value": 1.0}])
    del d["inputs"][0]["default"]
    g = graphengine.load_dict(d)
    x = np.ones(size)
    plan = g.compile()
    plan.grad({"x": x}, wrt=["x"])  # warm the schedule cache
    tracemalloc.start()
    grads = plan.grad({"x": x}, wrt=["x"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(grads["x"][:3], [1.0, 1.0, 1.0])
    assert peak < 6 * x.nbytes, f"peak {peak / x.nbytes:.1f} arrays"


def test_gradients_keep_the_parameter_dtype() -> None:
    d = doc(
        [{"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}, {"id": "loss", "op": "sum", "inputs": ["h"]}],
        ["loss"],
        x=[[1.0, 2.0]],
        dtype="float32",
        parameters=[{"name": "W", "value": [[1.0, 2.0]]}, {"name": "b", "value": 0.5}],
    )
    g = graphengine.load_dict(d)
    grads = g.grad()
    assert grads["W"].dtype == np.float32 and grads["b"].dtype == np.float32 and grads["b"].shape == ()


def test_checker_catches_a_wrong_vjp() -> None:
    def fwd(x, *, attrs):
        return np.exp(x)

    def wrong_vjp(g, out, x, *, attrs):
        return g * out * 1.01  # one percent off

    reg = default_registry()
    reg.register(OpDef("bad_exp", fwd, (wrong_vjp,), elementwise_rule), "test")
    g = graphengine.load_dict(
        doc([{"id": "e", "op": "bad_exp", "inputs": ["x"]}, {"id": "loss", "op": "sum", "inputs": ["e"]}], ["loss"], parameters=[], x=[0.1, 0.2]),
        registry=reg,
    )
    with pytest.raises(graphengine.GradcheckError, match="node 'e'.*bad_exp.*input 'x'"):
        graphengine.gradcheck(g.compile(), wrt=["x"])
    with pytest.raises(graphengine.GradcheckError, match="bad_exp"):
        graphengine.check_op(reg["bad_exp"], [np.array([0.1, 0.2])])


def test_vjp_returning_wrong_shape_is_named() -> None:
    def fwd(x, *, attrs):
        return x * 1.0

    def bad_vjp(g, out, x, *, attrs):
        return np.ones(7)

    reg = default_registry()
    reg.register(OpDef("bad_shape", fwd, (bad_vjp,), elementwise_rule), "test")
    g = graphengine.load_dict(doc([{"id": "e", "op": "bad_shape", "inputs": ["x"]}, {"id": "loss", "op": "sum", "inputs": ["e"]}], ["loss"], x=[0.1, 0.2]), registry=reg)
    with pytest.raises(graphengine.ExecutionError, match=r"node 'e' \(op 'bad_shape'\), input 0 \('x'\).*shape"):
        g.grad(wrt=["x"])


def test_op_that_raises_is_named() -> None:
    g = graphengine.load_dict(
        doc(
            [{"id": "ce", "op": "softmax_cross_entropy", "inputs": ["x", "labels"]}],
            ["ce"],
            x=[[0.1, 0.2, 0.3]],
            constants=[{"name": "labels", "value": [5], "dtype": "int64"}],
        )
    )
    with pytest.raises(graphengine.ExecutionError, match="node 'ce'"):
        g.run()


def test_feed_errors() -> None:
    g = graphengine.load_dict(doc([{"id": "y", "op": "neg", "inputs": ["x"]}], ["y"], x=[1.0, 2.0]))
    with pytest.raises(graphengine.FeedError, match="did you mean 'x'"):
        g.run({"xx": [1.0, 2.0]})
    with pytest.raises(graphengine.FeedError, match=r"\(3,\).*\(2,\)"):
        g.run({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(graphengine.FeedError, match="computed by the graph"):
        g.run({"y": [1.0, 2.0]})


def test_check_op_catches_an_incomplete_vjp_needs() -> None:
    def fwd(x, *, attrs):
        return np.tanh(x)

    def vjp(g, out, x, *, attrs):
        return g * (1 - out * out)

    lying = OpDef("tanh2", fwd, (vjp,), elementwise_rule, vjp_needs=frozenset({"x"}))  # it reads out, not x
    with pytest.raises(graphengine.ExecutionError, match="vjp_needs"):
        graphengine.check_op(lying, [np.array([0.1, 0.2])])
    honest = OpDef("tanh2", fwd, (vjp,), elementwise_rule, vjp_needs=frozenset({"out"}))
    graphengine.check_op(honest, [np.array([0.1, 0.2])])


def test_inputs_the_request_does_not_read_need_no_value() -> None:
    d = doc([{"id": "y", "op": "neg", "inputs": ["x"]}, {"id": "z", "op": "neg", "inputs": ["label"]}], ["y", "z"], x=[1.0])
    d["inputs"].append({"name": "label", "shape": [1]})  # no default
    g = graphengine.load_dict(d)
    assert g.run(outputs=["y"])["y"].tolist() == [-1.0]
    with pytest.raises(graphengine.FeedError, match="input 'label'"):
        g.run()


def test_the_loss_is_returned_even_when_not_an_output() -> None:
    d = doc(
        [{"id": "y", "op": "mul", "inputs": ["x", "x"]}, {"id": "loss", "op": "sum", "inputs": ["y"]}],
        ["y"],
        x=[1.0, 2.0],
        loss="loss",
    )
    result = graphengine.load_dict(d).value_and_grad(wrt=["x"])
    assert float(result.outputs["loss"]) == 5.0 and set(result.outputs) == {"y", "loss"}


def test_repeated_calls_agree_and_keep_checking_what_may_need_unbroadcasting() -> None:
    """The first call runs every check; later calls keep those that broadcasting or free dims need."""
    calls: list[int] = []

    def fwd(a, b, *, attrs):
        return a + b

    def vjp_a(g, out, a, b, *, attrs):
        calls.append(1)
        return g if len(calls) < 3 else g[..., :1]  # turns wrong on the third call

    def vjp_b(g, out, a, b, *, attrs):
        return g

    reg = default_registry()
    reg.register(OpDef("add2", fwd, (vjp_a, vjp_b), elementwise_rule, inputs=("a", "b")), "test")
    d = doc(
        [{"id": "s", "op": "add2", "inputs": ["p", "x"]}, {"id": "loss", "op": "sum", "inputs": ["s"]}],
        ["loss"],
        x=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
        parameters=[{"name": "p", "value": [0.1, 0.2, 0.3]}],
    )
    plan = graphengine.load_dict(d, registry=reg).compile()
    for _ in range(2):
        np.testing.assert_array_equal(plan.grad()["p"], [2.0, 2.0, 2.0])
    with pytest.raises(graphengine.ExecutionError, match=r"node 's' \(op 'add2'\), input 0 \('p'\).*\(2, 1\)"):
        plan.grad()


def test_interpreter_and_generated_code_record_the_same_trace() -> None:
    """A request's first call runs on the interpreter, later ones on generated code: same answers, same trace."""
    rng = np.random.default_rng(3)
    plan = graphengine.load_dict(random_graph_doc(rng, 14)).compile()
    first = plan.value_and_grad(wrt=["x", "p0", "p1"], record=True)
    second = plan.value_and_grad(wrt=["x", "p0", "p1"], record=True)
    assert first.trace.to_json() == second.trace.to_json()
    for name in first.gradients:
        np.testing.assert_array_equal(first.gradients[name], second.gradients[name])
