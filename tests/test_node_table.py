"""The node table (issue 13): nodes checked by columns give the same graph, document and errors as pydantic."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import graphengine
from graphengine import errors
from graphengine.format import GraphV1, Limits, validate_document
from graphengine.graph.build import Builder
from graphengine.registry import default_registry

EXAMPLES = sorted(Path("examples").glob("*.json"))


def _doc(*nodes: Any) -> dict[str, Any]:
    return {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [3]}],
        "nodes": [{"id": "y", "op": "exp", "inputs": ["x"]}, *nodes],
        "outputs": ["y"],
    }


def _by_pydantic(data: Any) -> graphengine.Graph:
    """The build every node goes through pydantic's ``NodeDecl`` for (the reference)."""
    doc = validate_document(data, None, Limits())
    return Builder(doc, default_registry(), None, None, Limits(), False).build()


def _outcome(build: Any, data: Any) -> str:
    try:
        graph = build(copy.deepcopy(data))
    except errors.GraphEngineError as exc:
        return f"{type(exc).__name__}: {exc}"
    return json.dumps(graph.document.model_dump(mode="json", exclude_unset=True), sort_keys=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_document_equals_the_one_pydantic_validates(path: Path) -> None:
    graph = graphengine.load(path)
    reference = GraphV1.model_validate(json.loads(path.read_text()))
    assert graph.document == reference
    dumped = graph.document.model_dump(mode="json", exclude_unset=True)
    assert dumped == reference.model_dump(mode="json", exclude_unset=True)
    assert graph.document is graph.document  # made once, then kept
    assert list(graph.digraph.nodes) == list(_by_pydantic(json.loads(path.read_text())).digraph.nodes)


NODES = [
    {"id": "z", "op": "neg", "inputs": ["y"], "label": "a layer", "description": "said", "attrs": {}},
    {"id": "z\n", "op": "neg", "inputs": ["y"]},
    {"id": "a\nb", "op": "neg", "inputs": ["y"]},  # one name with a newline inside: not two valid names
    {"id": "z", "op": "neg", "inputs": ["x\ny"]},
    {"id": "z" * 128, "op": "neg", "inputs": ["y"]},
    {"id": "z" * 129, "op": "neg", "inputs": ["y"]},
    {"id": "1z", "op": "neg", "inputs": ["y"]},
    {"id": "", "op": "neg", "inputs": ["y"]},
    {"id": "z", "op": "neg", "inputs": ["y\n"]},
    {"id": "z", "op": "neg", "inputs": ["y z"]},
    {"id": "z", "op": "neg", "inputs": [""]},
    {"id": "z", "op": "neg", "inputs": [1]},
    {"id": "z", "op": "neg", "inputs": [[1]]},
    {"id": "z", "op": "neg", "inputs": [{"a": 1}]},
    {"id": "z", "op": "neg", "inputs": [None]},
    {"id": "z", "op": "nope", "inputs": ["bad name"]},
    {"id": "x", "op": "neg", "inputs": ["bad name"]},
    {"id": "z", "op": "add", "inputs": ["y"]},
    {"id": "z", "op": "neg", "inputs": "y"},
    {"id": "z", "op": "neg", "inputs": []},
    {"id": "z", "op": 3, "inputs": ["y"]},
    {"id": 3, "op": "neg", "inputs": ["y"]},
    {"id": "z", "inputs": ["y"]},
    {"id": "z", "op": "neg"},
    {"id": "z", "op": "neg", "inputs": ["y"], "attrs": []},
    {"id": "z", "op": "neg", "inputs": ["y"], "attrs": None},
    {"id": "z", "op": "neg", "inputs": ["y"], "attrs": 0},
    {"id": "z", "op": "neg", "inputs": ["y"], "attrs": {"axis": 1}},
    {"id": "z", "op": "sum", "inputs": ["y"], "attrs": {1: 2}},
    {"id": "z", "op": "neg", "inputs": ["y"], "label": 3},
    {"id": "z", "op": "neg", "inputs": ["y"], "label": None},
    {"id": "z", "op": "neg", "inputs": ["y"], "description": ["d"]},
    {"id": "z", "op": "neg", "inputs": ["y"], "colour": "red"},
    {"id": "z", "op": "ne", "inputs": ["y"]},
    {"id": "z", "op": "neg", "inputs": ["w"]},
    {"id": "y", "op": "neg", "inputs": ["y"]},
    "z",
    None,
]


@pytest.mark.parametrize("node", NODES, ids=[repr(n)[:40] for n in NODES])
def test_every_node_gives_what_pydantic_gives(node: Any, tmp_path: Path) -> None:
    data = _doc(node)
    assert _outcome(graphengine.load_dict, data) == _outcome(_by_pydantic, data)
    path = tmp_path / "g.json"  # from a file: parsed JSON skips the checks of exact Python types
    path.write_text(json.dumps(data))
    parsed = json.loads(path.read_text())
    from_file = _outcome(lambda _: graphengine.load(path), parsed)
    assert from_file == _outcome(_by_pydantic, parsed).replace("<graph>", str(path))


class Named(str):
    pass


@pytest.mark.parametrize("nodes", [[{"id": Named("y"), "op": "exp", "inputs": ["x"]}], {"y": 1}, "y", 3])
def test_odd_python_values_take_pydantic_s_path(nodes: Any) -> None:
    data = {**_doc(), "nodes": nodes}
    assert _outcome(graphengine.load_dict, data) == _outcome(_by_pydantic, data)


def test_a_dict_changed_after_load_dict_does_not_change_the_graph() -> None:
    data = _doc({"id": "z", "op": "sum", "inputs": ["y"], "attrs": {"axis": 0}})
    graph = graphengine.load_dict(data)
    data["nodes"][1]["inputs"].append("x")
    data["nodes"][1]["attrs"]["axis"] = 5
    data["nodes"][1]["id"] = "w"
    node = graph.document.nodes[1]
    assert (node.id, node.inputs, node.attrs) == ("z", ["y"], {"axis": 0})


def test_a_bad_input_name_wins_over_a_later_error_as_with_pydantic(tmp_path: Path) -> None:
    data = _doc({"id": "z", "op": "neg", "inputs": ["y"]}, {"id": "z", "op": "nope", "inputs": ["y", "x y"]})
    data["parameters"] = [{"name": "p", "file": "missing.npy"}]
    assert "SchemaError: <graph>: $.nodes[2].inputs[1]" in _outcome(graphengine.load_dict, data)
    assert _outcome(graphengine.load_dict, data) == _outcome(_by_pydantic, data)


def test_a_file_without_nodes_keeps_nodes_unset(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [1]}], "outputs": ["x"]}))
    graph = graphengine.load(path)
    assert "nodes" not in graph.document.model_dump(exclude_unset=True)
