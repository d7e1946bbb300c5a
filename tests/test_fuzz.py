"""Fuzzing the loader with Hypothesis: valid graph documents, and the same documents mutated.

Loading either succeeds or raises one of graphengine's own errors: never a bare
KeyError, IndexError, RecursionError, MemoryError or a pydantic internal. When a
mutated document still loads and every input has a default, running it forward
and backward must also succeed or raise a graphengine error.

Weight files and feeds are fuzzed too: .npy headers (dtype strings, shapes, fortran_order,
versions, truncated or padded data), .npz archives (methods, duplicate or wrong names, lying
sizes, the encrypted flag) and run-time feeds (dtypes, shapes, nested lists, NaN, strings).
What loads must equal what numpy reads; what runs must equal numpy's value of the same sum.

The budget is small by default, so CI stays quick. For a thorough run::

    GRAPHENGINE_FUZZ=thorough pytest tests/test_fuzz.py -q -p no:cacheprovider --hypothesis-show-statistics
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
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
            node.update(
                op=draw(st.sampled_from(BINARY)), inputs=draw(st.lists(st.sampled_from(values), min_size=2, max_size=2))
            )
        elif kind == "softmax":
            node.update(
                op="softmax",
                inputs=[draw(st.sampled_from([v for v in values if v not in scalars]))],
                attrs={"axis": -1},
            )
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
    st.sampled_from(
        [
            "os.system",
            "../x.npy",
            "/etc/passwd",
            "data/w.npy",
            "graphengine/v1",
            "float16",
            "object",
            "\x00",
            "\u001b[2J",
        ]
    ),
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
        action = draw(
            st.sampled_from(["replace", "delete", "add_key", "duplicate", "wrap", "deepen", "swap_name", "huge"])
        )
        if action == "replace":
            container[key] = draw(json_values)
        elif action == "delete":
            del container[key]
        elif action == "add_key" and isinstance(container, dict):
            container[
                draw(
                    st.sampled_from(
                        [
                            "code",
                            "lambda",
                            "allow_unsafe",
                            "plugins",
                            "limits",
                            "file",
                            "sha256",
                            "key",
                            "shape",
                            "attrs",
                            "value",
                        ]
                    )
                )
            ] = draw(json_values)
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
            container[key] = draw(
                st.sampled_from([[10**12, 10**12], [2**62] * 3, [-1], [1] * 40, 10**30, -(2**63) - 1])
            )
    return doc


def load_and_exercise(doc: Any) -> None:
    """Load; if that works and the graph can run without feeds, run it forward and backward."""
    allow_nonfinite = isinstance(doc, dict) and bool(doc.get("name"))  # both policies get exercised
    try:
        graph = load_dict(
            doc, base_dir=WEIGHTS, file="fuzz.json", registry=REGISTRY, limits=LIMITS, allow_nonfinite=allow_nonfinite
        )
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
            text[at:at] = data.draw(
                st.sampled_from(
                    [
                        b"[",
                        b"{",
                        b"]",
                        b"}",
                        b",",
                        b'"',
                        b"NaN",
                        b"-Infinity",
                        b"1e999",
                        b"\xff",
                        b"9" * 5000,
                        b"\\u0000",
                    ]
                )
            )
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
        graphengine.load_dict(
            parse_json(bytes(raw), file=str(path)), base_dir=WEIGHTS, registry=REGISTRY, limits=LIMITS
        )
    except GraphEngineError:
        pass


# --- weight files (.npy, .npz) and run-time feeds ----------------------------------------------------------------

FILE_FUZZ = settings(FUZZ, max_examples=max(BUDGETS[PROFILE] // 2, 60))
NPY_DESCRS: list[Any] = [
    "<f8",
    "<f4",
    ">f8",
    ">i4",
    "<f2",
    "<i8",
    "<u8",
    "|u1",
    "|i1",
    "|b1",
    "?",
    "|O",
    "O",
    "<U3",
    ">U1",
    "<c16",
    "|S2",
    "<M8[s]",
    "|V8",
    "float64",
    "bogus",
    "",
    "<f99",
    [("a", "<f8")],
    7,
]
SHAPES: list[Any] = [
    (),
    (0,),
    (3,),
    (2, 2),
    (1, 2, 2),
    (0, 3),
    (-1,),
    (2, -2),
    (True, 2),
    (False,),
    (2**70,),
    (10**6, 10**6),
    (2.0,),
    [2, 2],
    4,
    "(2,)",
    None,
    (None,),
    ((2,),),
    (1,) * 40,
]


def mostly(draw: st.DrawFn, usual: list[Any], rare: list[Any]) -> Any:
    """One of ``usual`` three times in four, else one of ``rare``: most examples must get far enough to load."""
    return draw(st.sampled_from(rare if draw(st.sampled_from([False, False, False, True])) else usual))


def npy_header_bytes(descr: Any, fortran: Any, shape: Any, version: tuple[int, int], extra: str) -> bytes:
    text = "{'descr': %r, 'fortran_order': %r, 'shape': %r, %s}" % (descr, fortran, shape, extra)
    size_bytes = 2 if version[0] == 1 else 4
    pad = -(len(text) + 1 + 6 + 2 + size_bytes) % 64
    body = (text + " " * pad + "\n").encode("latin1")
    size = len(body).to_bytes(size_bytes, "little")
    return b"\x93NUMPY" + bytes(version) + size + body


@st.composite
def npy_files(draw: st.DrawFn) -> bytes:
    """A .npy file: a plausible or hostile header, then as many data bytes as it asks for, more, or fewer."""
    descr, shape = mostly(draw, ["<f8", "<f4", ">f8", "<i8"], NPY_DESCRS), mostly(draw, [(2, 2), (3,), ()], SHAPES)
    fortran = mostly(draw, [False, True], [0, 1, "yes", None])
    version = mostly(draw, [(1, 0), (2, 0)], [(3, 0), (0, 9), (1, 1)])
    extra = mostly(draw, [""], ["'extra': 1, ", "'descr': '|O', "])
    raw = npy_header_bytes(descr, fortran, shape, version, extra)
    try:
        wanted = int(np.prod(shape)) * np.dtype(descr).itemsize if 0 <= int(np.prod(shape)) <= 10_000 else 64
    except Exception:
        wanted = 16
    data = draw(st.sampled_from([bytes(wanted), np.arange(wanted, dtype=np.uint8).tobytes()]))
    raw += data + mostly(draw, [b""], [b"\x00", bytes(8)])
    cut = mostly(draw, [None], [0, 5, 9, 20, -1, -8])
    if cut is not None:
        raw = raw[:cut]
    if draw(st.integers(0, 9)) == 9:  # corrupt the magic, the version or the header length
        at = draw(st.integers(0, 9))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    return raw


def weight_graph(folder: Path, file: str, dtype: str, shape: Any, key: str | None = None) -> Path:
    """A graph beside its weight file: parameter W is read from ``file``, and the loss sums it."""
    param: dict[str, Any] = {"name": "W", "file": file, "dtype": dtype}
    if shape is not None:
        param["shape"] = shape
    if key is not None:
        param["key"] = key
    doc = {
        "format": "graphengine/v1",
        "inputs": [],
        "parameters": [param],
        "nodes": [{"id": "loss", "op": "sum", "inputs": ["W"]}],
        "outputs": ["loss"],
    }
    (folder / "g.json").write_text(json.dumps(doc))
    return folder / "g.json"


def load_weights(path: Path, raw_npy: bytes | None, dtype: str, shape: Any) -> np.ndarray | None:
    """Load; on success the array must be what numpy itself reads from the .npy, in the declared dtype and shape."""
    try:
        graph = graphengine.load(path, limits=LIMITS)
    except GraphEngineError:
        return None
    array = graph.parameters["W"]
    assert array.dtype == np.dtype(dtype)
    assert shape is None or array.shape == tuple(shape)
    if raw_npy is not None:
        expected = np.load(io.BytesIO(raw_npy), allow_pickle=False)
        assert expected.dtype.kind in "fiu" and array.shape == expected.shape
        np.testing.assert_array_equal(array, expected.astype(dtype))
    return array


@FILE_FUZZ
@given(npy_files(), st.sampled_from(["float64", "float32", "int64", "int32"]), st.sampled_from([None, [2, 2], [3], []]))
def test_fuzzed_npy_files_load_as_their_header_says_or_fail_cleanly(raw: bytes, dtype: str, shape: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "w.npy").write_bytes(raw)
        load_weights(weight_graph(Path(folder), "w.npy", dtype, shape), raw, dtype, shape)


def npy_of(draw: st.DrawFn) -> bytes:
    stream = io.BytesIO()
    shape = draw(st.sampled_from([(2, 2), (3,), (), (0, 3)]))
    np.save(stream, np.arange(int(np.prod(shape)), dtype=draw(st.sampled_from(["<f8", "<f4", "<i8"]))).reshape(shape))
    return stream.getvalue()


METHODS = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]


def patch_zip(raw: bytearray, what: str, value: int) -> None:
    """Lie in every local (PK\\3\\4) and/or central (PK\\1\\2) header: the flags or the unpacked size."""
    for sig, flags_at, size_at in ((b"PK\x03\x04", 6, 22), (b"PK\x01\x02", 8, 24)):
        at = raw.find(sig)
        while at >= 0 and at + size_at + 4 <= len(raw):
            if what == "encrypted":
                raw[at + flags_at] |= 0x1
            else:
                raw[at + size_at : at + size_at + 4] = value.to_bytes(4, "little")
            at = raw.find(sig, at + 4)


@st.composite
def npz_files(draw: st.DrawFn) -> tuple[bytes, bytes | None, int | None, str | None]:
    """(archive, the W.npy member's bytes if there is exactly one honest one, its method, the lie told)."""
    stream = io.BytesIO()
    members: list[tuple[str, bytes, int]] = []
    for i in range(draw(st.integers(0, 3))):
        name = mostly(
            draw, ["W.npy" if i == 0 else "b.npy"], ["W.npy", "w.npy", "W", "dir/W.npy", "W.npy/", "../W.npy"]
        )
        content = (
            draw(st.sampled_from([b"hello", b"", b"\x93NUMPY\x01\x00"]))
            if draw(st.integers(0, 4)) == 0
            else npy_of(draw)
        )
        members.append((name, content, mostly(draw, METHODS[:2], METHODS[2:])))
    with warnings.catch_warnings(), zipfile.ZipFile(stream, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are the point
        for name, content, method in members:
            archive.writestr(zipfile.ZipInfo(name), content, compress_type=method)
    raw = bytearray(stream.getvalue())
    lie = mostly(draw, [None], ["encrypted", "size"])
    if lie is not None:
        patch_zip(raw, lie, draw(st.sampled_from([0, 1, 2**31, 2**32 - 1])))
    ws = [(content, method) for name, content, method in members if name == "W.npy"]
    honest = ws[0] if len(ws) == 1 and lie is None else (None, ws[0][1] if len(ws) == 1 else None)
    return bytes(raw), honest[0], honest[1], lie


@FILE_FUZZ
@given(npz_files(), st.sampled_from(["float64", "int64"]), st.sampled_from([None, "W", "b"]))
def test_fuzzed_npz_archives_refuse_bzip2_and_lzma_and_fail_cleanly(
    archive: tuple[bytes, bytes | None, int | None, str | None], dtype: str, key: str | None
) -> None:
    raw, member, method, lie = archive
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "w.npz").write_bytes(raw)
        array = load_weights(
            weight_graph(Path(folder), "w.npz", dtype, None, key), member if key in (None, "W") else None, dtype, None
        )
    if array is not None and key in (None, "W"):
        assert method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED), f"method {method} was read"
        assert lie != "encrypted", "a member flagged as encrypted was read"


FEED_DOC = {
    "format": "graphengine/v1",
    "inputs": [{"name": "x", "shape": [None, "n"]}, {"name": "y", "shape": ["n"]}],
    "parameters": [{"name": "W", "value": [0.5]}],
    "nodes": [
        {"id": "h", "op": "mul", "inputs": ["x", "y"]},
        {"id": "g", "op": "mul", "inputs": ["h", "W"]},
        {"id": "loss", "op": "sum", "inputs": ["g"]},
    ],
    "outputs": ["loss"],
}
FEED_DTYPES = [
    "float16",
    "float32",
    "float64",
    "int8",
    "int64",
    "uint64",
    "bool",
    "complex128",
    "object",
    "<U2",
    "<M8[s]",
]
FEED_SHAPES = [(), (0,), (3,), (2, 3), (0, 3), (2, 0), (1, 1, 3), (1, 3), (40, 40), (200, 300)]
ELEMENTS = [0.0, 1.5, -2.0, float("nan"), float("inf"), -float("inf"), 1e300, 7]


@st.composite
def feed_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly a fitting (x, y) pair of float or int arrays, then 0-2 entries replaced, dropped or added."""
    rows, n = draw(st.sampled_from([0, 1, 3])), draw(st.sampled_from([0, 1, 3]))
    kind = draw(st.sampled_from(["float64", "float32", "float16", "int64", "bool"]))
    feeds: dict[str, Any] = {"x": np.ones((rows, n), kind), "y": np.arange(n).astype(kind)}
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(["x", "y", "W", "loss", "z"]))
        if draw(st.integers(0, 4)) == 0:
            feeds.pop(name, None)
        else:
            feeds[name] = draw(feed_values())
    return feeds


@st.composite
def feed_values(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["array", "array", "array", "list", "scalar"]))
    if kind == "array":
        dtype, shape = draw(st.sampled_from(FEED_DTYPES)), draw(st.sampled_from(FEED_SHAPES))
        with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            fill = np.full(shape, draw(st.sampled_from(ELEMENTS)))
            return fill.astype(dtype) if dtype not in ("<M8[s]",) else np.zeros(shape, dtype)
    if kind == "list":
        leaf = st.sampled_from([*ELEMENTS, True, "a", None, 2**70, 1j])
        row = st.lists(leaf, min_size=0, max_size=4)
        return draw(st.one_of(row, st.lists(row, max_size=3), st.lists(st.lists(row, max_size=2), max_size=2)))
    return draw(st.sampled_from([1.0, True, "abc", None, b"x", {"a": 1}, float("nan"), 3, [], object()]))


def expected_loss(x: Any, y: Any) -> float:
    with np.errstate(all="ignore"):
        return float(np.sum(np.asarray(x, dtype=np.float64) * np.asarray(y, dtype=np.float64) * 0.5))


def check_call(plan: Any, feeds: dict[str, Any], grad: bool) -> None:
    """One call: a result of the declared shapes and numpy's value, or a graphengine error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = plan.value_and_grad(feeds, wrt=["W", "x"]) if grad else None
            outputs = result.outputs if result is not None else plan.run(feeds)
    except GraphEngineError:
        return
    loss = outputs["loss"]
    assert np.shape(loss) == () and loss.dtype == np.float64
    x, y = np.asarray(feeds["x"]), np.asarray(feeds["y"])  # it ran, so both were fed and fit (None, n) and (n,)
    assert x.ndim == 2 and y.shape == (x.shape[1],) and x.dtype.kind in "fiub" and y.dtype.kind in "fiub"
    np.testing.assert_allclose(loss, expected_loss(x, y), rtol=1e-9)
    if result is not None:
        assert result.gradients["W"].shape == (1,) and result.gradients["x"].shape == x.shape


@FILE_FUZZ
@given(st.lists(st.tuples(feed_dicts(), st.booleans()), min_size=1, max_size=3))
def test_fuzzed_feeds_run_or_fail_cleanly_on_first_and_later_calls(calls: list[tuple[dict[str, Any], bool]]) -> None:
    plan = load_dict(FEED_DOC, registry=REGISTRY, limits=LIMITS).compile()
    good = {"x": np.arange(6.0).reshape(2, 3), "y": np.array([1.0, -1.0, 2.0])}
    for feeds, grad in [*calls, (good, True), (good, False)]:
        if "W" in feeds:  # overriding the parameter changes the reference value; keep the checked model fixed
            feeds.pop("W")
        check_call(plan, feeds, grad)
    assert float(plan.run(good)["loss"]) == expected_loss(good["x"], good["y"])
