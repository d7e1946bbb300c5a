"""Print how closely graphengine's outputs and parameter gradients match torch's, for the three models.

    python examples/onnx/agreement.py

Relative error: max |graphengine - torch| / max |torch|, over the output and over every parameter gradient
of sum(y * r).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import MLP, SmallCNN, TransformerBlock, export  # noqa: E402

from graphengine.onnx import import_model  # noqa: E402


def agreement(cls: type, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[float, float]:
    torch.manual_seed(0)
    model = cls().to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(*shape, dtype=dtype)
    imported = import_model(onnx.load_from_string(export(model, x)))
    y = model(x)
    r = torch.randn(y.shape, dtype=dtype)
    (y * r).sum().backward()
    grads = {n: p.grad.numpy() for n, p in model.named_parameters()}
    result = imported.graph().value_and_grad(
        {"x": x.numpy()}, [imported.names[n] for n in grads], output=imported.names["y"], cotangent=r.numpy()
    )
    out = result.outputs[imported.names["y"]]
    out_err = np.abs(out - y.detach().numpy()).max() / np.abs(y.detach().numpy()).max()
    scale = max(np.abs(g).max() for g in grads.values())
    grad_err = max(np.abs(result.gradients[imported.names[n]] - g).max() for n, g in grads.items()) / scale
    return float(out_err), float(grad_err)


if __name__ == "__main__":
    for cls, shape in [(MLP, (4, 6)), (SmallCNN, (3, 1, 8, 8)), (TransformerBlock, (2, 5, 8))]:
        for dtype in (torch.float32, torch.float64):
            out_err, grad_err = agreement(cls, shape, dtype)
            print(f"{cls.__name__:17} {str(dtype):14} output {out_err:.2e}  gradients {grad_err:.2e}")
