"""The fast load path (issue 13): same graph, same order, same errors as the networkx-based build it replaced."""

from __future__ import annotations

import gc
import random
from typing import Any

import networkx as nx
import numpy as np
import pytest

import graphengine
from graphengine import errors
from graphengine.graph.graph import NodeInfo

UNARY = ("exp", "neg", "tanh", "sigmoid")
BINARY = ("add", "mul", "sub")


def random_dag_doc(n: int, seed: int) -> dict[str, Any]:
    """A DAG whose file order is NOT its generation order, with repeated inputs (``add(a, a)``)."""
    rng = random.Random(seed)
    names = ["x", "p"]
    nodes = []
    for i in range(n):
        if rng.random() < 0.5:
            nodes.append({"id": f"n{i}", "op": rng.choice(UNARY), "inputs": [rng.choice(names)]})
        else:
            a, b = rng.choice(names), rng.choice(names)
            nodes.append({"id": f"n{i}", "op": rng.choice(BINARY), "inputs": [a, a if rng.random() < 0.2 else b]})
        names.append(f"n{i}")
    nodes.append({"id": "loss", "op": "sum", "inputs": names[-3:-2]})
    rng.shuffle(nodes)  # a file in any order is valid: the loader sorts it
    return {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [3]}],
        "parameters": [{"name": "p", "value": [0.1, -0.2, 0.3]}],
        "nodes": nodes,
        "outputs": ["loss"],
    }


def reference_digraph(doc: dict[str, Any]) -> nx.DiGraph:
    """The wiring drawn directly with networkx, as the loader used to."""
    g = nx.DiGraph()
    g.add_nodes_from(d["name"] for d in doc["inputs"] + doc["parameters"])
    g.add_nodes_from(d["id"] for d in doc["nodes"])
    for d in doc["nodes"]:
        for position, src in enumerate(d["inputs"]):
            if g.has_edge(src, d["id"]):
                g.edges[src, d["id"]]["positions"].append(position)
            else:
                g.add_edge(src, d["id"], positions=[position])
    return g


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_node_order_is_networkx_topological_sort(seed: int) -> None:
    doc = random_dag_doc(300, seed)
    g = graphengine.load_dict(doc)
    expected = [v for v in nx.topological_sort(reference_digraph(doc)) if v not in ("x", "p")]
    assert list(g.nodes) == expected


def test_digraph_is_built_on_demand_and_matches_the_file() -> None:
    doc = random_dag_doc(200, 4)
    g = graphengine.load_dict(doc)
    assert g._digraph is None  # the run path never needs it
    ref = reference_digraph(doc)
    assert list(g.digraph.nodes) == list(ref.nodes)
    assert sorted(g.digraph.edges(data="positions")) == sorted(ref.edges(data="positions"))
    assert g.digraph.nodes["p"]["kind"] == "parameter" and g.digraph.nodes["x"]["kind"] == "input"
    for node_id, info in g.nodes.items():
        assert g.digraph.nodes[node_id] == {"kind": "op", "op": info.op.name, "spec": info.spec}
    assert g.digraph is g.digraph  # built once
    assert g.spec("x").shape == (3,) and g.spec("loss").shape == ()


def test_node_info_is_an_immutable_record() -> None:
    g = graphengine.load("examples/seed_network.json")
    info = g.nodes["h"]
    assert isinstance(info, NodeInfo) and info.id == "h" and info.op.name == "sigmoid"
    assert info.json_path.startswith("$.nodes[")
    with pytest.raises(AttributeError):
        info.id = "other"  # type: ignore[misc]


def test_equal_attributes_are_validated_once_and_shared() -> None:
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [4]}],
        "nodes": [
            {"id": "a", "op": "leaky_relu", "inputs": ["x"], "attrs": {"negative_slope": 0.1}},
            {"id": "b", "op": "leaky_relu", "inputs": ["a"], "attrs": {"negative_slope": 0.1}},
            {"id": "c", "op": "leaky_relu", "inputs": ["b"], "attrs": {"negative_slope": 0.2}},
            {"id": "loss", "op": "sum", "inputs": ["c"]},
        ],
        "outputs": ["loss"],
    }
    g = graphengine.load_dict(doc)
    assert g.nodes["a"].attrs is g.nodes["b"].attrs
    assert g.nodes["c"].attrs.negative_slope == 0.2  # type: ignore[attr-defined]


def test_errors_keep_their_precedence() -> None:
    # An unknown op later in the file is reported before an undefined input earlier in it, as before.
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2]}],
        "nodes": [
            {"id": "a", "op": "exp", "inputs": ["nope"]},
            {"id": "b", "op": "expp", "inputs": ["x"]},
        ],
        "outputs": ["b"],
    }
    with pytest.raises(errors.UnknownOpError, match="did you mean 'exp'"):
        graphengine.load_dict(doc)
    doc["nodes"][1]["op"] = "exp"
    with pytest.raises(errors.DanglingReferenceError) as info:
        graphengine.load_dict(doc)
    assert info.value.json_path == "$.nodes[0].inputs[0]" and info.value.node_id == "a"


def test_a_cycle_is_named_with_its_json_path() -> None:
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2]}],
        "nodes": [
            {"id": "a", "op": "add", "inputs": ["x", "c"]},
            {"id": "b", "op": "exp", "inputs": ["a"]},
            {"id": "c", "op": "neg", "inputs": ["b"]},
        ],
        "outputs": ["c"],
    }
    with pytest.raises(errors.CycleError, match="a -> b -> c -> a") as info:
        graphengine.load_dict(doc)
    assert info.value.json_path == "$.nodes[0]"


@pytest.mark.parametrize("enabled", [True, False])
def test_garbage_collector_is_restored(enabled: bool, tmp_path: Any) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"format": "graphengine/v1", "nodes": [{"id": "a", "op": "exp", "inputs": ["x"]}], "outputs": ["a"]}'
    )
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        graphengine.load("examples/seed_network.json")
        assert gc.isenabled() is enabled
        with pytest.raises(errors.DanglingReferenceError):
            graphengine.load(bad)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_long_chain_loads_and_its_gradient_matches_the_chain_rule() -> None:
    """6,000 nodes (exp, log, neg, over and over); the value and gradient accumulated by hand, in numpy."""
    n = 6_000
    ops = ("exp", "log", "neg")
    nodes = [{"id": f"n{i}", "op": ops[i % 3], "inputs": [f"n{i - 1}" if i else "x"]} for i in range(n)]
    nodes.append({"id": "loss", "op": "sum", "inputs": [f"n{n - 1}"]})
    doc = {"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [3]}], "nodes": nodes, "outputs": ["loss"]}
    g = graphengine.load_dict(doc)
    assert len(g.nodes) == n + 1 and next(reversed(g.nodes)) == "loss"
    x = np.array([-0.5, 0.1, 0.25])
    v, dv = x.copy(), np.ones_like(x)  # forward-mode: dv = d(value)/dx, elementwise
    for i in range(n):
        if i % 3 == 0:
            v = np.exp(v)
            dv = dv * v
        elif i % 3 == 1:
            dv = dv / v
            v = np.log(v)
        else:
            v, dv = -v, -dv
    result = g.value_and_grad({"x": x}, wrt=["x"])
    np.testing.assert_allclose(result.outputs["loss"], v.sum(), rtol=1e-9)
    np.testing.assert_allclose(result.gradients["x"], dv, rtol=1e-9)
