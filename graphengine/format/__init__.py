"""The graph file format: schema, parsing, literals, weight files, and safe writing.

A JSON document goes in, a validated :class:`~graphengine.format.schema.GraphV1`
and its tensors as numpy arrays come out. This layer knows nothing of the DAG
or of execution.

Layer: above :mod:`graphengine.ops` and :mod:`graphengine.registry`; it imports
only those and :mod:`graphengine.errors`.
"""

from .document import validate_document
from .jsontext import json_path, parse_json
from .limits import Limits
from .literals import check_numbers, first_nonfinite, index_path
from .save import (
    SavedGraph,
    atomic_write,
    atomic_write_bytes,
    check_writable,
    format_document,
    npz_bytes,
)
from .schema import (
    FORMAT_V1,
    GraphV1,
    InputDecl,
    NodeDecl,
    TensorDecl,
    document_json_schema,
)
from .tensors import InputInfo, TensorReader

__all__ = [
    "validate_document",
    "json_path",
    "parse_json",
    "Limits",
    "check_numbers",
    "first_nonfinite",
    "index_path",
    "SavedGraph",
    "atomic_write",
    "atomic_write_bytes",
    "check_writable",
    "format_document",
    "npz_bytes",
    "FORMAT_V1",
    "GraphV1",
    "InputDecl",
    "NodeDecl",
    "TensorDecl",
    "document_json_schema",
    "InputInfo",
    "TensorReader",
]
