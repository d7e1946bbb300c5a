"""Loading rejects bad graphs at load time, with typed errors naming file, JSON path and node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import networkx as nx
import numpy as np
import pytest
from conftest import SEED, graph_doc

import graphengine
from graphengine import errors

LINEAR = {"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}


def load_error(write_graph: Callable[..., Path], doc: dict[str, Any]) -> errors.GraphFileError:
    path = write_graph(doc)
    with pytest.raises(errors.GraphFileError) as info:
        graphengine.load(path)
    assert str(path) in str(info.value)
    return info.value


def test_digraph_is_public_and_carries_positions() -> None:
    g = graphengine.load(SEED)
    assert isinstance(g.digraph, nx.DiGraph)
    assert g.digraph.nodes["W_h"]["kind"] == "parameter"
    assert g.digraph.nodes["x"]["kind"] == "input"
    assert g.digraph.nodes["h"]["op"] == "sigmoid"
    assert g.digraph.edges["W_h", "h_pre"]["positions"] == [1]
    assert nx.is_directed_acyclic_graph(g.digraph)
    assert nx.has_path(g.digraph, "W_h", "loss")
    assert g.spec("h_pre").shape == (2,)


def test_same_input_twice_keeps_both_positions(write_graph) -> None:
    doc = graph_doc([{"id": "sq", "op": "mul", "inputs": ["x", "x"]}], ["sq"])
    g = graphengine.load(write_graph(doc))
    assert g.digraph.edges["x", "sq"]["positions"] == [0, 1]


def test_duplicate_id(write_graph) -> None:
    doc = graph_doc([LINEAR, {"id": "W", "op": "sigmoid", "inputs": ["h"]}], ["h"])
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.DuplicateIdError)
    assert err.json_path == "$.nodes[1]" and err.node_id == "W"
    assert "$.parameters[0]" in str(err)


def test_dangling_reference_suggests(write_graph) -> None:
    doc = graph_doc([{"id": "h", "op": "linear", "inputs": ["x", "Wx", "b"]}], ["h"])
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.DanglingReferenceError)
    assert err.json_path == "$.nodes[0].inputs[1]" and err.node_id == "h"
    assert "did you mean" in str(err) and "'W'" in str(err)


def test_dangling_output(write_graph) -> None:
    err = load_error(write_graph, graph_doc([LINEAR], ["hh"]))
    assert isinstance(err, errors.DanglingReferenceError) and err.json_path == "$.outputs[0]"


@pytest.mark.parametrize(
    "nodes, cycle",
    [
        ([{"id": "a", "op": "neg", "inputs": ["a"]}], "a -> a"),
        ([{"id": "a", "op": "neg", "inputs": ["m"]}, {"id": "m", "op": "neg", "inputs": ["a"]}], "a -> m -> a"),
        (
            [
                {"id": "a", "op": "neg", "inputs": ["n"]},
                {"id": "m", "op": "neg", "inputs": ["a"]},
                {"id": "n", "op": "neg", "inputs": ["m"]},
            ],
            "->",
        ),
    ],
    ids=["self-loop", "two-cycle", "three-cycle"],
)
def test_cycles_are_named(write_graph, nodes, cycle) -> None:
    err = load_error(write_graph, graph_doc(nodes, ["a"]))
    assert isinstance(err, errors.CycleError)
    assert cycle in str(err)
    for node in nodes:
        assert node["id"] in str(err)


def test_unknown_op_did_you_mean(write_graph) -> None:
    err = load_error(write_graph, graph_doc([{"id": "s", "op": "sigmod", "inputs": ["x"]}], ["s"]))
    assert isinstance(err, errors.UnknownOpError)
    assert err.json_path == "$.nodes[0].op" and err.node_id == "s"
    assert "did you mean 'sigmoid'" in str(err)


def test_dotted_op_names_are_never_imported(write_graph) -> None:
    err = load_error(write_graph, graph_doc([{"id": "s", "op": "os.system", "inputs": ["x"]}], ["s"]))
    assert isinstance(err, errors.UnknownOpError)


def test_wrong_number_of_inputs(write_graph) -> None:
    err = load_error(write_graph, graph_doc([{"id": "h", "op": "linear", "inputs": ["x", "W"]}], ["h"]))
    assert isinstance(err, errors.ArityError)
    assert "takes 3 inputs (x, W, b), got 2" in str(err) and err.node_id == "h"


def test_bad_attribute_value(write_graph) -> None:
    node = {"id": "s", "op": "softmax", "inputs": ["x"], "attrs": {"axis": "last"}}
    err = load_error(write_graph, graph_doc([node], ["s"]))
    assert isinstance(err, errors.OpAttributeError)
    assert err.json_path == "$.nodes[0].attrs.axis" and err.node_id == "s"


def test_unknown_attribute(write_graph) -> None:
    node = {"id": "s", "op": "softmax", "inputs": ["x"], "attrs": {"axsi": 0}}
    err = load_error(write_graph, graph_doc([node], ["s"]))
    assert isinstance(err, errors.OpAttributeError)
    assert "unknown attribute 'axsi'" in str(err) and "axis" in str(err)


def test_shape_mismatch_names_both_shapes(write_graph) -> None:
    doc = graph_doc([{"id": "h", "op": "matmul", "inputs": ["x", "c"]}], ["h"])
    doc["constants"] = [{"name": "c", "value": [[1.0, 2.0, 3.0]]}]
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.ShapeError)
    assert err.node_id == "h" and err.json_path == "$.nodes[0]"
    assert "(?, 2)" in str(err) and "(1, 3)" in str(err)


def test_dtype_mismatch_names_both(write_graph) -> None:
    doc = graph_doc([{"id": "s", "op": "add", "inputs": ["x", "c"]}], ["s"])
    doc["constants"] = [{"name": "c", "value": [1.0, 2.0], "dtype": "float32"}]
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.ShapeError)
    assert "float64" in str(err) and "float32" in str(err)


@pytest.mark.parametrize(
    "mutate, path",
    [
        (lambda d: d.update(code="print(1)"), "$.code"),
        (lambda d: d["nodes"][0].update(lambda_="x"), "$.nodes[0].lambda_"),
        (lambda d: d["parameters"][0].update(allow_unsafe=True), "$.parameters[0].allow_unsafe"),
        (lambda d: d.pop("outputs"), "$.outputs"),
        (lambda d: d["nodes"][0].update(id="has space"), "$.nodes[0].id"),
    ],
)
def test_schema_errors_name_the_path(write_graph, mutate, path) -> None:
    doc = graph_doc([dict(LINEAR)], ["h"])
    mutate(doc)
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.SchemaError)
    assert err.json_path == path


def test_unknown_format_version(write_graph) -> None:
    doc = graph_doc([LINEAR], ["h"], format="graphengine/v9")
    err = load_error(write_graph, doc)
    assert "graphengine/v1" in str(err) and err.json_path == "$.format"


def test_invalid_json_reports_line(tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"format": "graphengine/v1",\n "nodes": [,]}')
    with pytest.raises(errors.SchemaError, match="line 2"):
        graphengine.load(path)


def test_nan_literal_rejected_by_default(tmp_path) -> None:
    doc = json.dumps(graph_doc([LINEAR], ["h"])).replace("0.5", "NaN")
    path = tmp_path / "nan.json"
    path.write_text(doc)
    with pytest.raises(errors.SchemaError, match="NaN"):
        graphengine.load(path)
    assert np.isnan(graphengine.load(path, allow_nonfinite=True).parameters["b"][1])


def test_ragged_value(write_graph) -> None:
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"][0]["value"] = [[1.0, 2.0], [3.0]]
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.SchemaError) and err.node_id == "W"


def test_declared_shape_must_match_value(write_graph) -> None:
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"][0]["shape"] = [2, 3]
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.ShapeError) and "(2, 3)" in str(err) and "(2, 2)" in str(err)


def test_parameters_from_npz_and_npy_beside_the_graph(tmp_path, write_graph) -> None:
    np.savez(tmp_path / "weights.npz", W=np.eye(2))
    np.save(tmp_path / "bias.npy", np.array([1.0, 2.0]))
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"] = [{"name": "W", "file": "weights.npz"}, {"name": "b", "file": "bias.npy"}]
    g = graphengine.load(write_graph(doc))
    np.testing.assert_array_equal(g.run()["h"], [[2.0, 4.0]])


@pytest.mark.parametrize("bad", ["../w.npy", "a/../../w.npy", "/etc/passwd", "..\\w.npy", "C:\\w.npy", "w\x00.npy"])
def test_weight_paths_stay_inside_the_folder(write_graph, bad) -> None:
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"][0] = {"name": "W", "file": bad}
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.UnsafePathError) and err.json_path == "$.parameters[0].file"


def test_huge_declared_shape_is_rejected_before_allocation(write_graph) -> None:
    doc = graph_doc([LINEAR], ["h"])
    doc["inputs"][0] = {"name": "x", "shape": [2**40, 2**40]}
    err = load_error(write_graph, doc)
    assert isinstance(err, errors.LimitError) and "max_elements" in str(err)


def test_load_dict_without_file() -> None:
    g = graphengine.load_dict(graph_doc([LINEAR], ["h"]))
    assert g.run()["h"].shape == (1, 2)
