"""The ONNX layer's errors: one typed exception, one line naming the model, the node, the op and the reason."""

from __future__ import annotations

from ..errors import GraphEngineError, clip

__all__ = ["OnnxError", "UnsupportedOnnxError"]


class OnnxError(GraphEngineError):
    """An ONNX model cannot be read or translated.

    The message reads ``model.onnx: node 'name' (op Conv): reason``; the parts
    are also attributes for programs.

    Attributes
    ----------
    file : str or None
    node : str or None
        The ONNX node's name (or its first output's when it has no name).
    op : str or None
        The ONNX op type.
    reason : str
    """

    def __init__(self, reason: str, *, file: str | None = None, node: str | None = None, op: str | None = None) -> None:
        self.file, self.node, self.op, self.reason = file, node, op, reason
        where = clip(file or "<model>", 200)
        if node is not None or op is not None:
            where += f": node {clip(node or '?')!r} (op {op})"
        super().__init__(f"{where}: {reason}")


class UnsupportedOnnxError(OnnxError):
    """The model uses an op, an attribute value, a dtype or an opset graphengine does not translate."""
