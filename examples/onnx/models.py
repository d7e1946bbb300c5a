"""Three small PyTorch models for the ONNX examples and tests: an MLP, a CNN and a transformer block.

Export one with :func:`export` (``torch.onnx.export(..., dynamo=False)``, the
TorchScript exporter: it needs no onnxscript, and with constant folding off it
keeps BatchNormalization and the parameters' own names).
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn


class MLP(nn.Module):
    """6 -> 16 -> 3 with tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(6, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))


class SmallCNN(nn.Module):
    """conv 3x3 -> batch norm -> relu -> max-pool 2 -> linear, on 1x8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(h, 1))


class TransformerBlock(nn.Module):
    """Pre-norm single-head attention and a GELU feed-forward layer, each with a residual add."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k, self.v = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.ff = nn.Linear(width, width)
        self.scale = width**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        attention = torch.softmax(self.q(h) @ self.k(h).transpose(-1, -2) * self.scale, dim=-1)
        x = x + attention @ self.v(h)
        return x + nn.functional.gelu(self.ff(self.norm2(x)))


def export(model: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
    """The ONNX bytes of ``model`` in eval mode, input ``x`` with a named batch dimension, output ``y``."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), (example,), buffer, dynamo=False, opset_version=opset, do_constant_folding=False,
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )  # fmt: skip
    return buffer.getvalue()
