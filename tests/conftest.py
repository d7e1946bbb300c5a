from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = EXAMPLES / "seed_network.json"
SINE_PLUGIN = EXAMPLES / "custom_op" / "sine.py"


def import_benchmarks() -> Any:
    """The repository's ``benchmarks`` package, imported from its folder.

    Putting the repository root on ``sys.path`` would also expose the source tree's
    ``graphengine`` and any ``*.egg-info`` a build left there, so that the tests
    would no longer run against the installed package.
    """
    import importlib.util
    import sys

    if "benchmarks" in sys.modules:
        return sys.modules["benchmarks"]
    folder = ROOT / "benchmarks"
    spec = importlib.util.spec_from_file_location("benchmarks", folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks"] = module
    spec.loader.exec_module(module)
    return module


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


def random_graph_doc(rng: np.random.Generator, n_nodes: int) -> dict[str, Any]:
    """A random DAG of cheap smooth ops with fan-out, over an input and two broadcasting parameters."""
    unary = ["tanh", "sigmoid", "exp", "neg", "softplus"]
    binary = ["add", "mul", "sub"]
    names = ["x", "p0", "p1"]
    nodes = []
    for i in range(n_nodes):
        if rng.random() < 0.5:
            op, ins = rng.choice(unary), [names[rng.integers(len(names))]]
        else:
            op, ins = rng.choice(binary), [names[rng.integers(len(names))] for _ in range(2)]
        nodes.append({"id": f"n{i}", "op": str(op), "inputs": ins})
        names.append(f"n{i}")
    nodes.append({"id": "loss", "op": "mean", "inputs": [names[-1]]})
    return {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None, 3], "default": (rng.standard_normal((2, 3)) * 0.5).tolist()}],
        "parameters": [
            {"name": "p0", "value": (rng.standard_normal(3) * 0.5).tolist()},
            {"name": "p1", "value": (rng.standard_normal((2, 1)) * 0.5).tolist()},
        ],
        "nodes": nodes,
        "outputs": ["loss"],
    }


def classifier_doc(dtype: str = "float64") -> dict[str, Any]:
    """A 4-6-3 softmax classifier with fixed initial weights."""
    rng = np.random.default_rng(7)
    return {
        "format": "graphengine/v1",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": [None, 4]}, {"name": "y", "shape": [None], "dtype": "int64"}],
        "parameters": [
            {"name": "W1", "value": np.round(rng.normal(0, 0.5, (6, 4)), 4).tolist()},
            {"name": "b1", "value": [0.0] * 6},
            {"name": "W2", "value": np.round(rng.normal(0, 0.5, (3, 6)), 4).tolist()},
            {"name": "b2", "value": [0.0] * 3},
        ],
        "nodes": [
            {"id": "h", "op": "linear", "inputs": ["x", "W1", "b1"]},
            {"id": "a", "op": "tanh", "inputs": ["h"]},
            {"id": "logits", "op": "linear", "inputs": ["a", "W2", "b2"]},
            {"id": "loss", "op": "softmax_cross_entropy", "inputs": ["logits", "y"]},
        ],
        "outputs": ["loss", "logits"],
        "loss": "loss",
    }
