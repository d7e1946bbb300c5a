"""Plan._build reading a loaded graph's columns (issue 13, round five) makes the plan the NodeInfo path makes."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from conftest import random_graph_doc

import graphengine
from graphengine.engine.plan import Plan
from graphengine.graph.graph import NodeMap


def _with_constant(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["constants"] = [{"name": "k", "value": [0.5, -1.0, 2.0]}]
    doc["nodes"].insert(0, {"id": "scaled", "op": "mul", "inputs": ["x", "k"]})
    doc["nodes"][-1]["inputs"] = ["sum_all"]
    doc["nodes"].insert(-1, {"id": "sum_all", "op": "add", "inputs": [doc["nodes"][-2]["id"], "scaled"]})
    return doc


def _reversed_nodes(doc: dict[str, Any]) -> dict[str, Any]:
    """The same graph with its nodes listed backwards: the execution order is then not file order."""
    doc = copy.deepcopy(doc)
    doc["nodes"].reverse()
    return doc


def _docs() -> list[tuple[str, dict[str, Any]]]:
    base = random_graph_doc(np.random.default_rng(3), 40)
    return [
        ("file order", base),
        ("reversed", _reversed_nodes(base)),
        ("constant", _with_constant(base)),
        ("constant reversed", _reversed_nodes(_with_constant(base))),
    ]


@pytest.mark.parametrize("name, doc", _docs(), ids=[name for name, _ in _docs()])
def test_plan_from_columns_equals_plan_from_node_infos(name: str, doc: dict[str, Any]) -> None:
    graph = graphengine.load_dict(doc)
    assert isinstance(graph.nodes, NodeMap)
    by_columns = Plan(graph)
    assert graph.nodes._made is None  # no NodeInfo was made
    other = graphengine.load_dict(doc)
    other.nodes = dict(other.nodes.items())  # a plain mapping of NodeInfo: the general path
    by_infos = Plan(other)
    assert by_columns.names == by_infos.names
    assert by_columns.slot == by_infos.slot
    assert by_columns.specs == by_infos.specs
    assert by_columns.steps == by_infos.steps
    for step in by_columns.steps:  # what each step reads, by slot and by name, is the node's own wiring
        node = graph.nodes[step.node_id]
        assert step.input_names == node.inputs
        assert step.ins == tuple(by_columns.slot[i] for i in node.inputs)
        assert step.out == by_columns.slot[step.node_id]
        assert step.op is node.op and step.attrs is node.attrs


def test_reversed_file_runs_in_a_different_order_with_the_same_gradient() -> None:
    doc = _with_constant(random_graph_doc(np.random.default_rng(5), 30))
    forward, backward = graphengine.load_dict(doc), graphengine.load_dict(_reversed_nodes(doc))
    assert not isinstance(backward.nodes._run_ids, range)  # the columns are reordered on this one
    wrt = ["p0", "p1"]
    got = backward.compile().grad(wrt=wrt)
    want = forward.compile().grad(wrt=wrt)
    for name in wrt:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12)
    # and against central differences of the loss
    plan = forward.compile()
    for name in wrt:
        base = forward.parameters[name]
        numeric = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            bumped = []
            for step in (1e-6, -1e-6):
                value = base.copy()
                value[index] += step
                bumped.append(float(plan.run({name: value})["loss"]))
            numeric[index] = (bumped[0] - bumped[1]) / 2e-6
        np.testing.assert_allclose(got[name], numeric, rtol=1e-5, atol=1e-8)
