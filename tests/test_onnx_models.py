"""Real PyTorch models through ONNX: exported with torch.onnx.export, imported, and checked against torch.

Outputs must equal torch's, and the parameter gradients of sum(y * r) must
equal torch's autograd gradients: to 1e-10 relative with the model cast to
float64, and to 1e-6 in float32 (summation order alone moves float32 by ~1e-7).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'graphengine[onnx]')")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "onnx"))
import models  # noqa: E402

from graphengine.onnx import import_model  # noqa: E402

CASES = {
    "mlp": (models.MLP, (4, 6)),
    "cnn": (models.SmallCNN, (3, 1, 8, 8)),
    "transformer": (models.TransformerBlock, (2, 5, 8)),
}


def _setup(kind: str, dtype: torch.dtype):
    cls, shape = CASES[kind]
    torch.manual_seed(0)
    model = cls().to(dtype).eval()
    with torch.no_grad():  # no two parameters equal (the exporter would share them), layer norms not the identity
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if kind == "cnn":  # running statistics that are not the identity, so batch norm does something
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(*shape, dtype=dtype)
    imported = import_model(onnx.load_from_string(models.export(model, x)))
    return model, x, imported


def _torch_grads(model, x, r):
    model.zero_grad()
    y = model(x)
    (y * r).sum().backward()
    return y.detach().numpy(), {name: p.grad.numpy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-6)], ids=["float64", "float32"])
def test_outputs_and_parameter_gradients_equal_torch(kind, dtype, rtol):
    model, x, imported = _setup(kind, dtype)
    graph = imported.graph()
    y_name = imported.names["y"]
    r = torch.randn(model(x).shape, dtype=dtype)
    y_torch, grads_torch = _torch_grads(model, x, r)
    wrt = [imported.names[name] for name in grads_torch]
    result = graph.value_and_grad({"x": x.numpy()}, wrt, output=y_name, cotangent=r.numpy())
    np.testing.assert_allclose(result.outputs[y_name], y_torch, rtol=rtol, atol=rtol * np.abs(y_torch).max())
    # Relative to the largest gradient: k.bias's gradient is exactly 0 (softmax ignores a shift), and both
    # sides give rounding noise of 1e-16 for it.
    scale = max(np.abs(g).max() for g in grads_torch.values())
    for name, expected in grads_torch.items():
        got = result.gradients[imported.names[name]]
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale, err_msg=name)


def test_the_batch_dimension_stays_named():
    _, _, imported = _setup("mlp", torch.float32)
    assert imported.document["inputs"][0]["shape"] == ["batch", 6]
    graph = imported.graph()
    for batch in (1, 7):
        assert graph.run({"x": np.zeros((batch, 6), np.float32)})[imported.names["y"]].shape == (batch, 3)


def test_onnx_names_are_kept_for_the_diagram():
    _, _, imported = _setup("cnn", torch.float32)
    doc = imported.document
    assert {p["name"] for p in doc["parameters"]} >= {"conv.weight", "conv.bias", "fc.weight", "bn.running_mean"}
    conv = next(n for n in doc["nodes"] if n["op"] == "conv")
    assert conv["label"] == "/conv/Conv" and "Conv" in conv["description"]


def test_the_transformer_diagram_shows_the_residual_sums(tmp_path):
    from graphengine.render import to_dot, write

    model, x, imported = _setup("transformer", torch.float64)
    graph = imported.graph()
    feeds = {"x": x.numpy()}
    y_name = imported.names["y"]
    result = graph.value_and_grad(feeds, ["x"], output=y_name, cotangent=np.ones(tuple(model(x).shape)), record=True)
    dot = to_dot(graph, values=graph.compile().run_all(feeds), gradients=result.gradients, trace=result.trace)
    residuals = [n["id"] for n in imported.document["nodes"] if n["op"] == "add" and n["label"].startswith("/Add")]
    assert len(residuals) == 3  # the two residual adds and the 1 + erf of gelu
    # x feeds norm1 and the first residual add; that add feeds norm2, ff and the second add: their
    # gradients are sums, and the diagram writes each sum out.
    assert dot.source.count("Σ") >= 2
    assert write(dot, tmp_path / "block.svg").stat().st_size > 0
