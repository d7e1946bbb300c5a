"""Named dimensions: every use of a name binds one size within a call; null stays "any size"."""

from __future__ import annotations

import numpy as np
import pytest

import graphengine


def _doc(x_shape, target_shape, target_default):
    return {
        "format": "graphengine/v1",
        "inputs": [
            {"name": "x", "shape": x_shape},
            {"name": "target", "shape": target_shape, "default": target_default},
        ],
        "parameters": [{"name": "W", "value": [[0.1], [0.2], [0.3]]}],
        "nodes": [
            {"id": "y", "op": "matmul", "inputs": ["x", "W"]},
            {"id": "loss", "op": "squared_error", "inputs": ["y", "target"]},
        ],
        "outputs": ["loss"],
    }


def test_a_name_binds_one_size_across_inputs() -> None:
    g = graphengine.load_dict(_doc(["batch", 3], ["batch", 1], [[0.0], [1.0]]))
    with pytest.raises(graphengine.FeedError) as info:
        g.run({"x": [[1.0, 2.0, 3.0]]})  # one row against the target's two
    message = str(info.value)
    assert "'batch'" in message and "'x'" in message and "'target'" in message
    assert "is 2 in input 'target'" in message or "is 1 in input 'x'" in message
    with pytest.raises(graphengine.FeedError):  # the generated code binds through the same path
        g.value_and_grad({"x": [[1.0, 2.0, 3.0]]})
    x = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    expected = 0.5 * np.sum((x @ np.array([[0.1], [0.2], [0.3]]) - [[0.0], [1.0]]) ** 2)
    for _ in range(3):  # first call (interpreter), second (code generated), steady
        assert float(g.run({"x": x})["loss"]) == pytest.approx(expected, rel=1e-12)
        g.value_and_grad({"x": x})


def test_null_keeps_meaning_any_size_and_names_show_in_messages() -> None:
    g = graphengine.load_dict(_doc([None, 3], [None, 1], [[0.0], [1.0]]))
    assert g.inputs["x"].dims == (None, 3)
    named = graphengine.load_dict(_doc(["batch", 3], ["batch", 1], None))
    assert named.inputs["x"].dims == ("batch", 3)
    assert named.spec("x").shape == (None, 3)  # shape rules see a named dimension as free
    with pytest.raises(graphengine.ShapeError, match=r"declared \(batch, 1\)"):
        graphengine.load_dict(_doc(["batch", 3], ["batch", 1], [0.0, 1.0]))


@pytest.mark.parametrize("bad", ["2", "1batch", True, -1, 2.0, "a" * 65])
def test_a_bad_dimension_is_a_schema_error_at_its_path(bad) -> None:
    with pytest.raises(graphengine.SchemaError) as info:
        graphengine.load_dict(_doc([bad, 3], [None, 1], None))
    assert info.value.json_path == "$.inputs[0].shape[0]"
