"""Write mlp.json: a 64-32-10 MLP classifier for scikit-learn's 8x8 digits, as a graphengine graph.

The initial weights are drawn here once (He-normal for the ReLU layer, Glorot for the
output layer, biases zero, seed 0) and written inline, so the graph file alone fixes
the starting point and training is reproducible from it. Run from anywhere:

    python examples/digits/make_graph.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def build(hidden: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, np.sqrt(2.0 / 64), size=(hidden, 64))
    w2 = rng.normal(0.0, np.sqrt(2.0 / (hidden + 10)), size=(10, hidden))

    def rounded(a: np.ndarray) -> list:
        return np.round(a, 6).tolist()

    return {
        "format": "graphengine/v1",
        "name": "digits_mlp",
        "description": f"MLP 64-{hidden}-10 (ReLU) for scikit-learn's 8x8 handwritten digits; pixels scaled to [0, 1]. "
        f"Initial weights: He/Glorot normal, seed {seed}, made by make_graph.py.",
        "dtype": "float64",
        "inputs": [
            {"name": "x", "shape": [None, 64], "description": "8x8 images, flattened row-major, pixel / 16"},
            {"name": "label", "shape": [None], "dtype": "int64", "description": "the digit, 0-9"},
        ],
        "parameters": [
            {"name": "W1", "value": rounded(w1)},
            {"name": "b1", "value": [0.0] * hidden},
            {"name": "W2", "value": rounded(w2)},
            {"name": "b2", "value": [0.0] * 10},
        ],
        "nodes": [
            {"id": "h_pre", "op": "linear", "inputs": ["x", "W1", "b1"], "label": "hidden"},
            {"id": "h", "op": "relu", "inputs": ["h_pre"], "label": "hidden"},
            {"id": "logits", "op": "linear", "inputs": ["h", "W2", "b2"], "label": "output"},
            {"id": "loss", "op": "softmax_cross_entropy", "inputs": ["logits", "label"], "attrs": {"reduction": "mean"}},
        ],
        "outputs": ["loss", "logits"],
        "loss": "loss",
    }


if __name__ == "__main__":
    from graphengine.format import format_document

    (HERE / "mlp.json").write_text(format_document(build()))
    print(f"wrote {HERE / 'mlp.json'}")
