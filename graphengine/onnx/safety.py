"""Reading an ONNX file from a stranger: bounded bytes, external data only inside the model's folder.

ONNX's own loader followed external-data paths out of the model's folder
(CVE-2022-25882, CVE-2024-27318). Here every ``location`` goes through the same
check as a graph file's weight files (:func:`graphengine.format.weights.safe_data_path`:
no absolute paths, ``..``, symlinks or hard links), and the bytes read are
bounded before they are read. Nothing in a model runs code: graphengine only
reads its protobuf fields, and folds constants with ONNX's own reference ops.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import LimitError
from ..format.weights import read_bounded, safe_data_path
from .errors import OnnxError

__all__ = ["MAX_MODEL_BYTES", "read_model"]

#: The largest model file (and, separately, the most external data) read: 2 GiB is protobuf's own ceiling.
MAX_MODEL_BYTES = 2 * 1024**3 - 1


def read_model(path: str | os.PathLike[str], *, max_bytes: int = MAX_MODEL_BYTES) -> Any:
    """Parse an ONNX file into a ``ModelProto``, with its external data read safely.

    Raises
    ------
    OnnxError
        The file cannot be read or parsed, or an external-data path leaves the folder.
    LimitError
        The file or its external data is over ``max_bytes``.
    """
    import onnx

    file = str(path)

    def error(detail: str) -> OnnxError:
        return OnnxError(detail, file=file)

    def limit(detail: str) -> LimitError:
        return LimitError(f"{file}: {detail}")

    raw = read_bounded(path, max_bytes, error=error, limit_error=limit, what="model file")
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as exc:  # protobuf's DecodeError and friends: the file is not a model
        raise OnnxError(f"not an ONNX model: {type(exc).__name__}: {exc}", file=file) from None
    load_external(model, Path(path).parent, file=file, max_bytes=max_bytes)
    return model


def _tensors(graph: Any) -> Any:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)


def load_external(model: Any, base_dir: Path, *, file: str | None, max_bytes: int = MAX_MODEL_BYTES) -> None:
    """Read every external tensor's bytes into the model, refusing paths outside ``base_dir``."""
    import onnx

    total = 0
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        where = f"tensor {tensor.name!r}"
        path = safe_data_path(base_dir, info.get("location", ""), error=lambda d: OnnxError(f"{where}: {d}", file=file))
        offset, length = int(info.get("offset", 0) or 0), info.get("length")
        size = path.stat().st_size
        length = size - offset if length is None else int(length)
        if offset < 0 or length < 0 or offset + length > size:
            raise OnnxError(
                f"{where}: offset {offset} and length {length} lie outside {path.name} ({size} bytes)", file=file
            )
        total += length
        if total > max_bytes:
            raise LimitError(f"{file}: external data over {max_bytes} bytes")
        with open(path, "rb") as fh:
            fh.seek(offset)
            tensor.raw_data = fh.read(length)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
