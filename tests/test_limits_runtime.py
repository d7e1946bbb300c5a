"""Limits hold at run time: free and named dimensions are bound at feed time and every node's output is
checked against max_elements and max_total_bytes before anything is allocated."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import numpy as np
import pytest
from conftest import EXAMPLES

import graphengine
from graphengine import errors
from graphengine.cli import main
from graphengine.graph import Limits


def concat_chain(depth: int) -> dict[str, Any]:
    """The issue's 1.7 KB file: 28 concats on x: [null] double the length each time (2**28 elements at the end)."""
    nodes = [{"id": "c0", "op": "concat", "inputs": ["x", "x"]}]
    nodes += [{"id": f"c{i}", "op": "concat", "inputs": [f"c{i - 1}", f"c{i - 1}"]} for i in range(1, depth)]
    return {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None], "default": [1.0, 2.0]}],
        "nodes": nodes,
        "outputs": [nodes[-1]["id"]],
    }


def outer_add(op: str, n: int) -> dict[str, Any]:
    """Defaults of shape (n, 1) and (1, n), fed to an op that makes (n, n)."""
    return {
        "format": "graphengine/v1",
        "inputs": [
            {"name": "a", "shape": [None, 1], "default": [[0.5]] * n},
            {"name": "b", "shape": [1, None], "default": [[0.25] * n]},
        ],
        "nodes": [{"id": "y", "op": op, "inputs": ["a", "b"]}],
        "outputs": ["y"],
    }


def test_a_concat_chain_is_refused_before_it_allocates() -> None:
    graph = graphengine.load_dict(concat_chain(28))
    assert len(json.dumps(concat_chain(28))) < 2000
    tracemalloc.start()
    with pytest.raises(errors.LimitError) as info:
        graph.run({"x": np.ones(1000)})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20, f"the refusal itself allocated {peak} bytes"
    assert "max_elements=100000000" in str(info.value) or "max_total_bytes" in str(info.value)
    assert info.value.node_id is not None and info.value.node_id.startswith("c")
    # A short chain runs, and gives what concat gives.
    small = graphengine.load_dict(concat_chain(3)).run({"x": np.array([1.0, 2.0])})["c2"]
    np.testing.assert_array_equal(small, np.tile([1.0, 2.0], 8))


def test_the_chain_on_its_own_default_is_refused_on_the_cli(tmp_path, capsys) -> None:
    path = tmp_path / "chain.json"
    doc = concat_chain(28)
    doc["inputs"][0]["default"] = [1.0] * 8
    path.write_text(json.dumps(doc))
    assert main(["validate", str(path)]) == 0  # the file is valid: only a run reveals the size
    capsys.readouterr()
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LimitError" not in err and "over the limit max_" in err and "chain.json" in err


@pytest.mark.parametrize("op", ["add", "mul", "matmul"])
def test_defaults_that_broadcast_to_4e8_elements_are_refused(op: str) -> None:
    n = 20000
    doc = outer_add(op, n)
    graph = graphengine.load_dict(doc)
    with pytest.raises(errors.LimitError, match=r"400000000 elements, over the limit max_elements=100000000") as info:
        graph.run()
    assert info.value.node_id == "y" and info.value.json_path == "$.nodes[0]"
    with pytest.raises(errors.LimitError):
        graph.value_and_grad(wrt=["a"], output="y", cotangent=None)
    small = graphengine.load_dict(outer_add(op, 3)).run()["y"]
    expected = {"add": 0.75, "mul": 0.125, "matmul": 0.125}[op]
    np.testing.assert_allclose(small, np.full((3, 3), expected))


def test_max_total_bytes_bounds_all_values_of_a_call() -> None:
    # Each value is small, but ten of them together pass a 1 MB budget.
    nodes = [{"id": "n0", "op": "tanh", "inputs": ["x"]}]
    nodes += [{"id": f"n{i}", "op": "tanh", "inputs": [f"n{i - 1}"]} for i in range(1, 10)]
    doc = {"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [None]}], "nodes": nodes, "outputs": ["n9"]}
    graph = graphengine.load_dict(doc, limits=Limits(max_total_bytes=1_000_000))
    graph.run({"x": np.zeros(10_000)})  # 11 values of 80 kB
    with pytest.raises(errors.LimitError, match="max_total_bytes=1000000"):
        graph.run({"x": np.zeros(20_000)})  # 11 values of 160 kB


def test_a_feed_over_max_elements_is_a_feed_error() -> None:
    graph = graphengine.load_dict(concat_chain(1), limits=Limits(max_elements=100))
    with pytest.raises(errors.FeedError, match=r"feed 'x' has shape \(101,\), 101 elements, over the limit"):
        graph.run({"x": np.zeros(101)})


def test_named_dimensions_are_bound_too() -> None:
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "a", "shape": ["n", 1]}, {"name": "b", "shape": [1, "m"]}],
        "nodes": [{"id": "y", "op": "add", "inputs": ["a", "b"]}],
        "outputs": ["y"],
    }
    graph = graphengine.load_dict(doc, limits=Limits(max_elements=10_000))
    assert graph.run({"a": np.zeros((100, 1)), "b": np.zeros((1, 100))})["y"].shape == (100, 100)
    with pytest.raises(errors.LimitError, match="10100 elements"):
        graph.run({"a": np.zeros((101, 1)), "b": np.zeros((1, 100))})


def test_the_answer_is_cached_per_shape_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = graphengine.load_dict(concat_chain(4))
    plan = graph.compile()
    calls: list[Any] = []
    limits = plan._binder.run_limits
    real = limits._measure
    monkeypatch.setattr(limits, "_measure", lambda *a: calls.append(a) or real(*a))
    for _ in range(5):
        graph.run({"x": np.zeros(3)})
    graph.run({"x": np.zeros(4)})
    graph.run({"x": np.zeros(3)})
    assert len(calls) == 2


def test_a_graph_without_free_dimensions_pays_nothing() -> None:
    graph = graphengine.load(EXAMPLES / "seed_network.json")
    assert not graph.compile()._binder.run_limits.active


def _named(a: str, b: str, op: str = "add") -> dict[str, Any]:
    return {
        "format": "graphengine/v1",
        "inputs": [{"name": "a", "shape": [a]}, {"name": "b", "shape": [b]}],
        "nodes": [{"id": "y", "op": op, "inputs": ["a", "b"]}, {"id": "z", "op": "tanh", "inputs": ["y"]}],
        "outputs": ["z"],
    }


def test_a_rule_that_refuses_the_fed_shapes_is_a_feed_error(tmp_path, capsys) -> None:
    graph = graphengine.load_dict(_named("n", "m"))
    with pytest.raises(errors.FeedError) as info:
        graph.run({"a": np.zeros(3), "b": np.zeros(4)})
    message = str(info.value)
    for part in ("$.nodes[0]", "node 'y'", "op 'add'", "a: (3,)", "b: (4,)", "do not broadcast"):
        assert part in message, (part, message)
    np.testing.assert_array_equal(graph.run({"a": np.ones(2), "b": np.ones(2)})["z"], np.tanh([2.0, 2.0]))
    # matmul on free dimensions that the feeds make disagree: the same, and one line on the CLI.
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None, None]}],
        "parameters": [{"name": "W", "value": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}],
        "nodes": [{"id": "h", "op": "matmul", "inputs": ["x", "W"]}],
        "outputs": ["h"],
    }
    path = tmp_path / "mm.json"
    path.write_text(json.dumps(doc))
    assert main(["run", str(path), "--feed", "x=[[1, 2, 3, 4]]"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mm.json" in err and "node 'h'" in err and "op 'matmul'" in err, err
    assert "x: (1, 4)" in err and "W: (3, 2)" in err and "Traceback" not in err
    assert main(["run", str(path), "--feed", "x=[[1, 0, 0]]"]) == 0


def _plugin_graph(rule: Any, forward: Any, limits: Limits | None = None) -> graphengine.Graph:
    """x: [null] -> y = plugin(x) -> z = tanh(y), with the plugin's rule and forward given."""
    from graphengine import default_registry
    from graphengine.ops import OpDef

    registry = default_registry()
    registry.register(OpDef("liar", forward, (lambda g, out, x, *, attrs: g,), rule), "test")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None]}],
        "nodes": [{"id": "y", "op": "liar", "inputs": ["x"]}, {"id": "z", "op": "tanh", "inputs": ["y"]}],
        "outputs": ["z"],
    }
    return graphengine.load_dict(doc, registry=registry, limits=limits)


def test_a_rule_that_under_reports_is_caught_right_after_the_op_returns() -> None:
    from graphengine.ops import elementwise_rule

    calls = []

    def doubling(x: np.ndarray, *, attrs: Any) -> np.ndarray:  # its rule says "same shape as x"
        calls.append(x.shape)
        return np.concatenate([x, x]) if x.size > 20 else x * 1.0

    graph = _plugin_graph(elementwise_rule, doubling, Limits(max_elements=100))
    for _ in range(3):  # the honest sizes: interpreter first, then generated code
        np.testing.assert_array_equal(graph.run({"x": np.ones(5)})["z"], np.tanh(np.ones(5)))
    with pytest.raises(
        errors.ExecutionError, match=r"node 'y' \(op 'liar'\) returned float64 \(120,\).*promised float64 \(60,\)"
    ):
        graph.run({"x": np.ones(60)})  # a new signature: the rule said 60 elements (under the limit), the op made 120
    with pytest.raises(errors.ExecutionError, match="op 'liar'"):
        graph.value_and_grad(feeds={"x": np.ones(30)}, wrt=None, output="z", cotangent=np.ones(30))


def test_a_rule_that_crashes_on_the_fed_shapes_is_a_shape_error() -> None:
    from graphengine.ops import TensorSpec

    def rule(x: TensorSpec, *, attrs: Any) -> TensorSpec:
        if x.shape[0] is not None and x.shape[0] > 3:
            raise KeyError("internal")
        return x

    graph = _plugin_graph(rule, lambda x, *, attrs: x * 1.0)
    graph.run({"x": np.ones(3)})
    with pytest.raises(errors.ShapeError, match=r"node 'y'.*shape rule of op 'liar' failed on \(x: \(4,\)\): KeyError"):
        graph.run({"x": np.ones(4)})


def test_every_built_in_rule_gives_concrete_shapes_and_the_forward_makes_them() -> None:
    # Why run-time limits hold before allocation for built-in ops: on known inputs each rule gives a fully known
    # output shape (nothing counted as 1), and the forward makes exactly that (checked on every op's samples).
    from graphengine import default_registry
    from graphengine.ops import TensorSpec

    registry = default_registry()
    rng = np.random.default_rng(0)
    checked = 0
    for name in registry:
        op = registry[name]
        assert op.samples is not None, name
        for inputs, attrs in op.samples(rng):
            parsed = op.attrs.model_validate(attrs or {})
            specs = [TensorSpec(np.shape(v), np.asarray(v).dtype) for v in inputs]
            try:
                spec = op.shape_rule(*specs, attrs=parsed)
            except errors.ShapeError:
                continue  # a sample of a refusal
            out = op.forward(*[np.asarray(v) for v in inputs], attrs=parsed)
            assert None not in spec.shape and np.shape(out) == spec.shape, (name, specs, spec, np.shape(out))
            checked += 1
    assert checked >= 100
