"""Loading by columns (issue 13, round four): the execution order, ``Graph.nodes`` made on demand, the default limit."""

from __future__ import annotations

import random
from typing import Any

import networkx as nx
import pytest

import graphengine
from graphengine import errors
from graphengine.format import Limits
from graphengine.graph.graph import NodeInfo, NodeMap
from graphengine.graph.topology import topological_order


def _wiring(rng: random.Random, declared: int, nodes: int, style: str) -> list[list[int]]:
    """Sources (ids) of each node: ``forward`` reads earlier ids only, ``any`` reads any id but its own."""
    wires = []
    for k in range(nodes):
        node = declared + k
        if style == "chain":
            wires.append([node - 1] if k else [rng.randrange(declared)])
            continue
        count = rng.choice([0, 1, 1, 1, 2, 2, 3]) if style != "single" else 1
        pool = range(node) if style in ("forward", "single") else [i for i in range(declared + nodes) if i != node]
        picks = [rng.choice(pool) for _ in range(count)]
        if picks and rng.random() < 0.2:
            picks.append(picks[0])  # a repeated source is one edge
        wires.append(picks)
    return wires


def _networkx_order(declared: int, wires: list[list[int]]) -> list[int] | None:
    """The reference: networkx's topological sort of the same graph, inserted in the same order as the loader's."""
    digraph = nx.DiGraph()
    digraph.add_nodes_from(range(declared + len(wires)))
    digraph.add_edges_from((src, declared + k) for k, sources in enumerate(wires) for src in sources)
    try:
        return list(nx.topological_sort(digraph))
    except nx.NetworkXUnfeasible:
        return None


@pytest.mark.parametrize("style", ["chain", "single", "forward", "any"])
def test_the_order_is_networkx_s_on_random_graphs(style: str) -> None:
    rng = random.Random(style)
    for _ in range(300):
        declared, nodes = rng.randint(1, 4), rng.randint(0, 25)
        wires = _wiring(rng, declared, nodes, style)
        sources = [src for sources in wires for src in sources]
        starts = [0]
        for sources_of_one in wires:
            starts.append(starts[-1] + len(sources_of_one))
        order = topological_order(declared, sources, starts)
        expected = _networkx_order(declared, wires)
        assert (list(order) if order is not None else None) == expected, (declared, wires)


def test_id_order_is_found_without_the_kahn_loop_only_when_it_is_the_order() -> None:
    # x, a(x), b(a), c(x): Kahn's generations are [x], [a, c], [b], not id order.
    assert list(topological_order(1, [0, 1, 0], [0, 1, 2, 3])) == [0, 1, 3, 2]  # type: ignore[arg-type]
    assert isinstance(topological_order(1, [0, 1, 2], [0, 1, 2, 3]), range)  # a chain
    assert topological_order(1, [2, 1], [0, 1, 2]) is None  # a and b read each other
    assert list(topological_order(1, [0], [0, 1, 1])) == [0, 2, 1]  # type: ignore[arg-type]  # b reads nothing: generation 0


CHAIN = {
    "format": "graphengine/v1",
    "inputs": [{"name": "x", "shape": [3]}],
    "parameters": [{"name": "w", "value": [1.0, 2.0, 3.0]}],
    "nodes": [
        {"id": "m", "op": "mul", "inputs": ["x", "w"], "label": "scale"},
        {"id": "late", "op": "exp", "inputs": ["s"]},
        {"id": "s", "op": "leaky_relu", "inputs": ["m"], "attrs": {"negative_slope": 0.1}},
        {"id": "loss", "op": "sum", "inputs": ["late"]},
    ],
    "outputs": ["loss"],
}


def _expected_nodes() -> dict[str, tuple[Any, ...]]:
    """Each node as the file says it, for comparison: (op, inputs, JSON path, label)."""
    by_id = {d["id"]: (k, d) for k, d in enumerate(CHAIN["nodes"])}  # type: ignore[arg-type]
    return {
        node_id: (d["op"], tuple(d["inputs"]), f"$.nodes[{k}]", d.get("label"))
        for node_id in ["m", "s", "late", "loss"]
        for k, d in [by_id[node_id]]
    }


def test_graph_nodes_is_a_read_only_mapping_in_execution_order() -> None:
    graph = graphengine.load_dict(CHAIN)
    nodes = graph.nodes
    assert isinstance(nodes, NodeMap)
    expected = _expected_nodes()
    assert list(nodes) == list(expected) and len(nodes) == 4
    assert list(reversed(nodes)) == list(reversed(expected))
    for node_id, (op, inputs, path, label) in expected.items():
        info = nodes[node_id]
        assert isinstance(info, NodeInfo) and info.id == node_id and info.op.name == op
        assert (info.inputs, info.json_path, info.label) == (inputs, path, label)
        assert info.spec == graph.spec(node_id)
    assert nodes["s"].attrs.negative_slope == 0.1  # type: ignore[attr-defined]
    assert "x" not in nodes and "w" not in nodes and "nope" not in nodes and "m" in nodes
    for missing in ("x", "w", "nope"):
        with pytest.raises(KeyError):
            nodes[missing]
    assert nodes.get("x") is None
    one_by_one = {node_id: nodes[node_id] for node_id in nodes}  # made one at a time, before all are made
    assert dict(nodes.items()) == one_by_one and list(nodes.values()) == list(one_by_one.values())
    assert {node_id: nodes[node_id] for node_id in nodes} == one_by_one  # and after
    assert nodes == one_by_one and repr(nodes) == repr(one_by_one)


def test_graph_nodes_of_a_file_equal_the_ones_the_document_describes(tmp_path: Any) -> None:
    rng = random.Random(4)
    node_list = []
    names = ["x"]
    for i in range(300):
        if rng.random() < 0.5:
            node_list.append({"id": f"n{i}", "op": rng.choice(["exp", "neg", "tanh"]), "inputs": [rng.choice(names)]})
        else:
            node_list.append({"id": f"n{i}", "op": rng.choice(["add", "mul"]), "inputs": rng.sample(names * 2, 2)})
        names.append(f"n{i}")
    node_list.append({"id": "loss", "op": "sum", "inputs": [names[-1]]})
    doc = {"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [2]}], "nodes": node_list, "outputs": ["loss"]}
    path = tmp_path / "g.json"
    path.write_text(__import__("json").dumps(doc))
    graph = graphengine.load(path)
    by_id = {d.id: (k, d) for k, d in enumerate(graph.document.nodes)}  # the document, parsed again from the file
    assert len(by_id) == len(graph.nodes) == 301
    for node_id, info in graph.nodes.items():
        k, decl = by_id[node_id]
        assert (info.op.name, info.inputs, info.json_path) == (decl.op, tuple(decl.inputs), f"$.nodes[{k}]")
    digraph = graph.digraph
    assert list(graph.nodes) == [n for n in nx.topological_sort(digraph) if digraph.nodes[n]["kind"] == "op"]


def test_the_default_limit_admits_a_million_node_chain_and_still_holds() -> None:
    assert Limits().max_nodes >= 1_000_002  # scenario C's 1,000,000-node chain: its input and loss come on top
    over = {"format": "graphengine/v1", "nodes": [{}] * (Limits().max_nodes + 1), "outputs": ["y"]}
    with pytest.raises(errors.LimitError, match=f"over the limit max_nodes={Limits().max_nodes}"):
        graphengine.load_dict(over)


def test_shape_inference_of_a_chain_in_file_order_equals_the_general_loop() -> None:
    """A one-input-each file in order takes shape inference's chain loop; the same nodes listed backwards take
    the general loop over the execution order. Both give every node the same spec."""
    ops = ["tanh", "exp", "neg", "sigmoid", "sum", "reshape", "relu"]
    nodes, last = [], "x"
    for k in range(40):
        op = ops[k % len(ops)]
        node: dict[str, Any] = {"id": f"n{k}", "op": op, "inputs": [last]}
        if op == "reshape":
            node["attrs"] = {"shape": [-1]}
        if op == "sum":
            node["attrs"] = {"axis": -1, "keepdims": True}
        nodes.append(node)
        last = node["id"]
    doc = {"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [4, 6]}], "nodes": nodes, "outputs": [last]}
    in_order = graphengine.load_dict(doc)
    backwards = graphengine.load_dict({**doc, "nodes": nodes[::-1]})
    assert isinstance(in_order.nodes._run_ids, range) and not isinstance(backwards.nodes._run_ids, range)
    assert [(n.id, n.spec) for n in in_order.nodes.values()] == [(n.id, n.spec) for n in backwards.nodes.values()]
    assert {n.spec.shape for n in in_order.nodes.values()} != {(4, 6)}  # the rules did change shapes
