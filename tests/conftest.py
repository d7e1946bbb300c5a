from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = EXAMPLES / "seed_network.json"
SINE_PLUGIN = EXAMPLES / "custom_op" / "sine.py"


@pytest.fixture
def write_graph(tmp_path: Path) -> Callable[..., Path]:
    """Write a graph document (dict) to a file and return its path."""

    def write(doc: dict[str, Any], name: str = "graph.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        return path

    return write


def graph_doc(nodes: list[dict[str, Any]], outputs: list[str], **extra: Any) -> dict[str, Any]:
    """A minimal v1 document with a free-batch input x of width 2 and a parameter W."""
    doc: dict[str, Any] = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None, 2], "default": [[1.0, 2.0]]}],
        "parameters": [{"name": "W", "value": [[0.1, 0.2], [0.3, 0.4]]}, {"name": "b", "value": [0.0, 0.5]}],
        "nodes": nodes,
        "outputs": outputs,
    }
    doc.update(extra)
    return doc
