"""Export the small CNN from PyTorch, import it with graphengine, and draw its backward pass.

Run from the repository root::

    python examples/onnx/cnn_diagram.py

writes ``examples/onnx/small_cnn.onnx`` (what PyTorch exported), ``small_cnn.json``
(+ ``small_cnn.npz``, the graph graphengine imported) and ``small_cnn_backward.svg``:
the gradient of ``sum(y)`` for one image, on every value and every arrow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import SmallCNN, export  # noqa: E402

from graphengine.onnx import import_model  # noqa: E402
from graphengine.render import to_dot, write  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # running statistics as after training, so batch norm does something
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 1, 8, 8)
    (HERE / "small_cnn.onnx").write_bytes(export(model, x))
    imported = import_model(HERE / "small_cnn.onnx", file="small_cnn.onnx", name="small_cnn")
    imported.save(HERE / "small_cnn.json")
    graph = imported.graph()
    feeds = {"x": x.numpy()}
    y = imported.names["y"]
    result = graph.value_and_grad(feeds, list(graph.parameters), output=y, cotangent=np.ones((1, 3)), record=True)
    dot = to_dot(graph, values=graph.compile().run_all(feeds), gradients=result.gradients, trace=result.trace,
                 title="small CNN from PyTorch via ONNX: gradient of sum(y)")  # fmt: skip
    print(write(dot, HERE / "small_cnn_backward.svg"))


if __name__ == "__main__":
    main()
