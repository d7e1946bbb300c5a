"""ONNX in and out (``pip install "graphengine[onnx]"``).

Layer: above :mod:`graphengine.engine`, beside render and training. It reads
ONNX models safely (:mod:`.safety`), translates them into graph documents
(:mod:`.importer`), and writes graphs back as ONNX (:mod:`.exporter`).
The ``onnx`` package is imported only when a function here is called.
"""

from .errors import OnnxError, UnsupportedOnnxError
from .exporter import export_model, save_model
from .importer import ImportedModel, import_model
from .safety import read_model

__all__ = [
    "import_model",
    "ImportedModel",
    "export_model",
    "save_model",
    "read_model",
    "OnnxError",
    "UnsupportedOnnxError",
]
