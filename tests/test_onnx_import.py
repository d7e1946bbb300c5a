"""The ONNX importer and exporter on hand-built models: opset semantics, errors, safety, files, round trips."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'graphengine[onnx]')")
from conftest import ROOT  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphengine  # noqa: E402
from graphengine.errors import LimitError  # noqa: E402
from graphengine.onnx import OnnxError, UnsupportedOnnxError, export_model, import_model, read_model  # noqa: E402

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, opset=17, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def run_one(m, feeds, output="y"):
    imported = import_model(m)
    return imported.graph().run(feeds)[imported.names[output]]


def test_softmax_changed_meaning_at_opset_13():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    old = run_one(model([node], [vi("x", [2, 3, 4])], [vi("y", [2, 3, 4])], opset=11), {"x": x})
    new = run_one(model([node], [vi("x", [2, 3, 4])], [vi("y", [2, 3, 4])], opset=13), {"x": x})
    flat = np.exp(x.reshape(2, 12)) / np.exp(x.reshape(2, 12)).sum(1, keepdims=True)  # opset 11: axes 1.. as one
    np.testing.assert_allclose(old, flat.reshape(2, 3, 4), rtol=1e-6)
    np.testing.assert_allclose(new, np.exp(x) / np.exp(x).sum(1, keepdims=True), rtol=1e-6)


def test_reduce_sum_axes_attribute_before_13_and_input_from_13():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    attr = helper.make_node("ReduceSum", ["x"], ["y"], axes=[1], keepdims=0)
    as_input = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    out11 = run_one(model([attr], [vi("x", [2, 3, 4])], [vi("y", [2, 4])], opset=11), {"x": x})
    out13 = run_one(model([as_input], [vi("x", [2, 3, 4])], [vi("y", [2, 4])], opset=13, initializers=[axes]), {"x": x})
    np.testing.assert_array_equal(out11, x.sum(1))
    np.testing.assert_array_equal(out13, x.sum(1))


def test_gelu_none_is_the_erf_form_not_the_tanh_approximation():
    x = np.linspace(-3, 3, 13)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    node = helper.make_node("Gelu", ["x"], ["y"])  # approximate="none" by default
    got = run_one(
        model([node], [vi("x", [13], TensorProto.DOUBLE)], [vi("y", [13], TensorProto.DOUBLE)], opset=20), {"x": x}
    )
    np.testing.assert_allclose(got, exact, rtol=1e-14, atol=1e-15)


def test_an_unsupported_op_is_one_line_naming_node_op_and_reason(tmp_path):
    m = model([helper.make_node("HardSwish", ["x"], ["y"], name="act3")], [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(UnsupportedOnnxError) as info:
        import_model(m)
    assert info.value.node == "act3" and info.value.op == "HardSwish" and "\n" not in str(info.value)
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    proc = subprocess.run(
        [sys.executable, "-m", "graphengine", "import-onnx", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "m.onnx: node 'act3' (op HardSwish)" in proc.stderr


@pytest.mark.parametrize(
    "m, words",
    [
        (
            model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2], TensorProto.FLOAT16)], [vi("y", [2])]),
            "float16",
        ),
        (model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2])], [vi("y", [2])], opset=6), "opset 6"),
        (
            model(
                [helper.make_node("Dropout", ["x", "r", "t"], ["y"])],
                [vi("x", [2]), vi("r", [], F), vi("t", [], 9)],
                [vi("y", [2])],
            ),
            "constant data",
        ),  # fmt: skip
    ],
    ids=["dtype", "opset", "training-mode-unknown"],
)
def test_unsupported_dtype_opset_and_attribute_data_are_named(m, words):
    with pytest.raises(UnsupportedOnnxError, match=words):
        import_model(m)


def _external_model(tmp_path, location):
    tensor = numpy_helper.from_array(np.ones(4, np.float32), "w")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.float_data[:]
    tensor.ClearField("raw_data")
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    m = model([helper.make_node("Add", ["x", "w"], ["y"])], [vi("x", [4])], [vi("y", [4])], initializers=[tensor])
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(m.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin", "link.bin"])
def test_external_data_must_stay_in_the_models_folder(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(np.ones(4, np.float32).tobytes())
    path = _external_model(tmp_path, location)
    os.symlink(tmp_path / "secret.bin", path.parent / "link.bin")
    with pytest.raises(OnnxError, match="tensor 'w'"):
        read_model(path)


def test_external_data_inside_the_folder_is_read(tmp_path):
    path = _external_model(tmp_path, "w.bin")
    (path.parent / "w.bin").write_bytes(np.full(4, 2.0, np.float32).tobytes())
    imported = import_model(path)
    np.testing.assert_array_equal(imported.graph().run({"x": np.ones(4, np.float32)})[imported.names["y"]], 3.0)


def test_the_model_size_is_bounded_and_garbage_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2])], [vi("y", [2])]), path)
    with pytest.raises(LimitError):
        read_model(path, max_bytes=10)
    path.write_bytes(b"\xff" * 100)
    with pytest.raises(OnnxError, match="not an ONNX model"):
        read_model(path)


def test_large_initializers_go_to_an_npz_and_the_saved_graph_loads(tmp_path):
    w = numpy_helper.from_array(np.arange(300, dtype=np.float32).reshape(3, 100), "fc.weight")
    m = model([helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="/fc/MatMul")], [vi("x", ["n", 3])],
              [vi("y", ["n", 100])], initializers=[w])  # fmt: skip
    imported = import_model(m)
    saved = imported.save(tmp_path / "net.json")
    assert (tmp_path / "net.npz").exists()
    graph = graphengine.load(saved)
    assert graph.parameter_names == ["fc.weight"]
    node = graph.document.nodes[0]
    assert node.id == "MatMul_y" and node.label == "/fc/MatMul"  # "/fc/MatMul" is no valid id: op type + output
    np.testing.assert_array_equal(
        graph.run({"x": np.eye(3, dtype=np.float32)})["MatMul_y"], np.arange(300).reshape(3, 100)
    )


def test_export_then_import_gives_the_same_outputs_and_gradients():
    pytest.importorskip("torch", reason="torch is not installed")
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "onnx"))
    import models

    for cls, shape in [(models.SmallCNN, (2, 1, 8, 8)), (models.TransformerBlock, (2, 5, 8))]:
        torch.manual_seed(1)
        net = cls().double().eval()
        x = torch.randn(*shape, dtype=torch.float64)
        first = import_model(onnx.load_from_string(models.export(net, x)))
        exported = export_model(first.graph())
        onnx.checker.check_model(exported, full_check=True)
        second = import_model(exported)
        y1, y2 = first.names["y"], second.names[first.names["y"]]
        r = np.random.default_rng(0).standard_normal(tuple(net(x).shape))
        g1 = first.graph().value_and_grad({"x": x.numpy()}, output=y1, cotangent=r)
        g2 = second.graph().value_and_grad({"x": x.numpy()}, output=y2, cotangent=r)
        np.testing.assert_allclose(g2.outputs[y2], g1.outputs[y1], rtol=1e-12)
        assert set(g2.gradients) == set(g1.gradients)
        for name in g1.gradients:
            np.testing.assert_allclose(g2.gradients[name], g1.gradients[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_export_refuses_an_op_without_onnx_equivalent():
    with pytest.raises(UnsupportedOnnxError, match="node 'loss' \\(op squared_error\\)"):
        export_model(graphengine.load("examples/seed_network.json"))


def test_writing_into_a_missing_folder_is_one_line(tmp_path, capsys) -> None:
    """import-onnx and export-onnx write atomically through format.atomic_write: a SaveError, never a traceback."""
    from graphengine.cli import main

    model = ROOT / "examples" / "onnx" / "small_cnn.onnx"
    assert main(["import-onnx", str(model), "-o", str(tmp_path / "missing" / "cnn.json")]) == 1
    assert main(["import-onnx", str(model), "-o", str(tmp_path / "cnn.json")]) == 0
    assert main(["export-onnx", str(tmp_path / "cnn.json"), "-o", str(tmp_path / "missing" / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("graphengine: error: cannot write") == 2 and "Traceback" not in err and "internal error" not in err
    assert main(["import-onnx", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "x.json")]) == 1
    assert "cannot read model file" in capsys.readouterr().err
