"""Feed errors name the graph file, the JSON path of the declaration, the value, and the shapes or types involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import graphengine


def _write(folder: Path) -> Path:
    doc = {
        "format": "graphengine/v1",
        "inputs": [
            {"name": "x", "shape": ["batch", 3]},
            {"name": "target", "shape": ["batch", 1], "default": [[0.0], [1.0]]},
        ],
        "parameters": [{"name": "W", "value": [[0.1], [0.2], [0.3]]}],
        "nodes": [
            {"id": "y", "op": "matmul", "inputs": ["x", "W"]},
            {"id": "loss", "op": "squared_error", "inputs": ["y", "target"]},
        ],
        "outputs": ["loss"],
    }
    path = folder / "net.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("call", ["run", "value_and_grad"])
def test_a_dimension_bound_twice_names_the_file_path_input_and_shapes(tmp_path: Path, call: str) -> None:
    path = _write(tmp_path)
    g = graphengine.load(path)
    with pytest.raises(graphengine.FeedError) as info:
        getattr(g, call)({"x": [[1.0, 2.0, 3.0]]})  # one row against the default target's two
    message = str(info.value)
    assert message.startswith(f"{path}: $.inputs[")
    assert "dimension 'batch'" in message
    assert "(axis 0 of shape (1, 3))" in message and "(axis 0 of shape (2, 1))" in message


def test_a_wrong_feed_shape_names_the_file_path_and_the_declared_names(tmp_path: Path) -> None:
    path = _write(tmp_path)
    g = graphengine.load(path)
    with pytest.raises(graphengine.FeedError) as info:
        g.run({"x": [[1.0, 2.0]], "target": [[0.0]]})
    assert str(info.value) == (
        f"{path}: $.inputs[0] (node 'x'): feed 'x': shape (1, 2) does not match the declared (batch, 3)"
    )


def test_a_parameter_fed_with_the_wrong_type_names_its_declaration(tmp_path: Path) -> None:
    path = _write(tmp_path)
    g = graphengine.load(path)
    with pytest.raises(graphengine.FeedError) as info:
        g.run({"x": [[1.0, 2.0, 3.0]] * 2, "W": ["a", "b", "c"]})
    assert str(info.value).startswith(f"{path}: $.parameters[0] (node 'W'): feed 'W': got str")


def test_a_missing_input_names_its_declaration_and_a_dict_graph_says_graph(tmp_path: Path) -> None:
    g = graphengine.load_dict(json.loads(_write(tmp_path).read_text()))
    with pytest.raises(graphengine.FeedError) as info:
        g.run({})
    assert str(info.value).startswith("<graph>: $.inputs[0] (node 'x'): input 'x'")


def test_the_cli_prints_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from graphengine.cli import main

    path = _write(tmp_path)
    assert main(["run", str(path), "--feed", "x=[[1, 2]]"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: $.inputs[0] (node 'x'): feed 'x': shape (1, 2)" in err
