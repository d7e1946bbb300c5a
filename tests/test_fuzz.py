"""Fuzzing the loader with Hypothesis: valid graph documents, and the same documents mutated.

Loading either succeeds or raises one of graphengine's own errors: never a bare
KeyError, IndexError, RecursionError, MemoryError or a pydantic internal. When a
mutated document still loads and every input has a default, running it forward
and backward must also succeed or raise a graphengine error.

The budget is small by default, so CI stays quick. For a thorough run::

    GRAPHENGINE_FUZZ=thorough pytest tests/test_fuzz.py -q -p no:cacheprovider --hypothesis-show-statistics
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphengine
from graphengine.errors import GraphEngineError
from graphengine.graph import Limits, load_dict, parse_json
from graphengine.registry import default_registry

BUDGETS = {"ci": 150, "thorough": 10_000}
PROFILE = os.environ.get("GRAPHENGINE_FUZZ", "ci")
if PROFILE not in BUDGETS:
    raise ValueError(f"GRAPHENGINE_FUZZ={PROFILE!r}: use one of {sorted(BUDGETS)}")
FUZZ = settings(
    max_examples=BUDGETS[PROFILE],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
REGISTRY = default_registry()
#: Small limits, so a mutation that asks for something big fails fast instead of allocating it.
LIMITS = Limits(max_nodes=200, max_elements=10_000, max_total_bytes=1_000_000)
WEIGHTS = Path(__file__).resolve().parent / "data" / "hostile"  # holds data/w.npy, a 2x2 float64 array

UNARY = ["neg", "tanh", "sigmoid", "exp", "relu", "abs", "softplus", "identity", "gelu"]
BINARY = ["add", "sub", "mul"]
NAMES = ["x", "y", "W", "b", "c", "n0", "n1", "n2", "n3", "n4", "n5", "loss", "W.1", "a-b"]


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A small graph that is valid by construction: elementwise ops on (rows, cols) tensors, then a loss."""
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    finite = st.floats(-3, 3, allow_nan=False, width=32)
    matrix = st.lists(st.lists(finite, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
    doc: dict[str, Any] = {
        "format": "graphengine/v1",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": [draw(st.sampled_from([None, rows])), cols], "default": draw(matrix)}],
        "parameters": [{"name": "W", "value": draw(matrix)}],
        "constants": [{"name": "c", "value": draw(finite)}],
        "nodes": [],
    }
    if draw(st.booleans()):
        doc["parameters"].append({"name": "b", "file": "data/w.npy", "dtype": dtype})
    values, scalars = ["x", "W", "c"], {"c"}
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["unary", "binary", "softmax", "transpose"]))
        node: dict[str, Any] = {"id": f"n{i}"}
        if kind == "unary":
            node.update(op=draw(st.sampled_from(UNARY)), inputs=[draw(st.sampled_from(values))])
        elif kind == "binary":
            node.update(op=draw(st.sampled_from(BINARY)), inputs=draw(st.lists(st.sampled_from(values), min_size=2, max_size=2)))
        elif kind == "softmax":
            node.update(op="softmax", inputs=[draw(st.sampled_from([v for v in values if v not in scalars]))], attrs={"axis": -1})
        elif rows == cols:
            node.update(op="transpose", inputs=["W"], attrs={"axes": [1, 0]})
        else:
            node.update(op="identity", inputs=["W"])
        if all(v in scalars for v in node["inputs"]):
            scalars.add(node["id"])
        doc["nodes"].append(node)
        values.append(node["id"])
    doc["nodes"].append({"id": "loss", "op": "sum", "inputs": [values[-1]]})
    doc["outputs"] = ["loss"]
    return doc


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["os.system", "../x.npy", "/etc/passwd", "data/w.npy", "graphengine/v1", "float16", "object", "\x00", "\u001b[2J"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def locations(tree: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in a JSON tree, iteratively."""
    found: list[tuple[Any, Any]] = []
    stack = [tree]
    while stack:
        item = stack.pop()
        keys = list(item) if isinstance(item, dict) else range(len(item)) if isinstance(item, list) else []
        for key in keys:
            found.append((item, key))
            stack.append(item[key])
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    doc = draw(valid_documents())
    for _ in range(draw(st.integers(1, 4))):
        spots = locations(doc)
        if not spots:
            break
        container, key = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["replace", "delete", "add_key", "duplicate", "wrap", "deepen", "swap_name", "huge"]))
        if action == "replace":
            container[key] = draw(json_values)
        elif action == "delete":
            del container[key]
        elif action == "add_key" and isinstance(container, dict):
            container[draw(st.sampled_from(["code", "lambda", "allow_unsafe", "plugins", "limits", "file", "sha256", "key", "shape", "attrs", "value"]))] = draw(json_values)
        elif action == "duplicate" and isinstance(container, list):
            container.insert(key, container[key])  # shared, not copied: it may be nested too deep to copy
        elif action == "wrap":
            container[key] = [container[key]]
        elif action == "deepen":
            deep: Any = container[key]
            for _ in range(draw(st.sampled_from([40, 300, 3000]))):
                deep = [deep]
            container[key] = deep
        elif action == "swap_name":
            container[key] = draw(st.sampled_from(NAMES))
        elif action == "huge":
            container[key] = draw(st.sampled_from([[10**12, 10**12], [2**62] * 3, [-1], [1] * 40, 10**30, -(2**63) - 1]))
    return doc


def load_and_exercise(doc: Any) -> None:
    """Load; if that works and the graph can run without feeds, run it forward and backward."""
    allow_nonfinite = isinstance(doc, dict) and bool(doc.get("name"))  # both policies get exercised
    try:
        graph = load_dict(doc, base_dir=WEIGHTS, file="fuzz.json", registry=REGISTRY, limits=LIMITS, allow_nonfinite=allow_nonfinite)
    except GraphEngineError:
        return
    if graph.loss is None or any(info.default is None for info in graph.inputs.values()):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # exp overflow etc. is numerics, not a loader bug
            graph.value_and_grad()
    except GraphEngineError:
        pass


@FUZZ
@given(valid_documents())
def test_valid_documents_load_run_and_differentiate(doc: dict[str, Any]) -> None:
    graph = load_dict(doc, base_dir=WEIGHTS, registry=REGISTRY, limits=LIMITS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = graph.value_and_grad()
    assert set(result.gradients) == set(graph.parameters)
    for name, grad in result.gradients.items():
        assert grad.shape == graph.parameters[name].shape and grad.dtype == graph.parameters[name].dtype


@FUZZ
@given(mutated_documents())
def test_mutated_documents_fail_only_with_graphengine_errors(doc: Any) -> None:
    load_and_exercise(doc)


@FUZZ
@given(valid_documents(), st.data())
def test_mutated_json_text_fails_only_with_graphengine_errors(doc: dict[str, Any], data: st.DataObject) -> None:
    text = bytearray(json.dumps(doc).encode())
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "nest"]))
        if action == "flip" and at < len(text):
            text[at] = data.draw(st.integers(0, 255))
        elif action == "insert":
            text[at:at] = data.draw(st.sampled_from([b"[", b"{", b"]", b"}", b",", b'"', b"NaN", b"-Infinity", b"1e999", b"\xff", b"9" * 5000, b"\\u0000"]))
        elif action == "delete":
            del text[at : at + data.draw(st.integers(1, 8))]
        else:
            text[at:at] = b"[" * 20_000
    try:
        parsed = parse_json(bytes(text), file="fuzz.json")
    except GraphEngineError:
        return
    load_and_exercise(parsed)


@FUZZ
@given(st.sampled_from(sorted(p for p in WEIGHTS.glob("*.json") if not p.name.endswith(".expect.json"))), st.data())
def test_mutated_hostile_files(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(0, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        graphengine.load_dict(parse_json(bytes(raw), file=str(path)), base_dir=WEIGHTS, registry=REGISTRY, limits=LIMITS)
    except GraphEngineError:
        pass
