"""Regenerate the hostile graph files in this folder: ``python tests/data/hostile/_generate.py``.

Each case is ``NAME.json`` (the file a stranger might send) with ``NAME.expect.json``
beside it: the error graphengine must raise (class name, JSON path, node, a
phrase of the message), the stage (``load``, or ``run`` for errors only data
can reveal) and, for links and pipes that git cannot carry, the ``setup`` the
tests perform in a scratch copy of this folder. Weight files live in ``data/``.
Some cases hold bytes a JSON serializer would not write (NaN, deep nesting,
non-UTF-8), so they are written as raw text.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


def base(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None, 2], "default": [[1.0, 2.0]]}],
        "parameters": [{"name": "W", "value": [[0.1, 0.2], [0.3, 0.4]]}, {"name": "b", "value": [0.0, 0.5]}],
        "nodes": [{"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}],
        "outputs": ["h"],
    }
    doc.update(extra)
    return doc


def with_file(path: str, **more: Any) -> dict[str, Any]:
    doc = base()
    doc["parameters"][0] = {"name": "W", "file": path, **more}
    return doc


def one_node(node: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return base(nodes=[node], outputs=[node["id"]], **extra)


CASES: dict[str, tuple[Any, dict[str, Any]]] = {}


def case(name: str, doc: Any, error: str, json_path: str | None = None, node: str | None = None, match: str = "", **more: Any) -> None:
    expect = {"error": error, "json_path": json_path, "node": node, "match": match, "stage": "load", **more}
    CASES[name] = (doc, expect)


def npy_bytes(header: str, payload: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack("<H", len(text)) + text + payload


def npz_with_sizes(name: str, content: bytes, declared: int) -> bytes:
    """A .npz holding ``content`` under ``name`` whose zip headers claim ``declared`` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    raw = bytearray(buffer.getvalue())
    real = struct.pack("<I", len(content))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = raw.index(signature)
        assert raw[at + offset : at + offset + 4] == real
        raw[at + offset : at + offset + 4] = struct.pack("<I", declared)
    return bytes(raw)


def write_data() -> None:
    DATA.mkdir(exist_ok=True)
    np.save(DATA / "w.npy", np.array([[0.1, 0.2], [0.3, 0.4]]))
    np.save(DATA / "objects.npy", np.array([{"__reduce__": "os.system"}, None], dtype=object), allow_pickle=True)
    np.save(DATA / "complex.npy", np.array([[1j, 2], [3, 4]]))
    np.save(DATA / "nan.npy", np.array([[np.nan, 0.2], [0.3, 0.4]]))
    (DATA / "huge_header.npy").write_bytes(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"))
    (DATA / "overflow_header.npy").write_bytes(
        npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }")
    )
    # 10**8 elements (800 MB) fits the default limits, but the file holds 32 bytes of data.
    (DATA / "lying_header.npy").write_bytes(
        npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (10000, 10000), }", b"\0" * 32)
    )
    (DATA / "code_header.npy").write_bytes(
        npy_bytes("{'descr': __import__('os').system('echo pwned'), 'fortran_order': False, 'shape': (2, 2), }", b"\0" * 32)
    )
    (DATA / "version9.npy").write_bytes(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", b"\0" * 32, (9, 0)))
    (DATA / "garbage.npy").write_bytes(b"this is not an array, and not a zip either\n")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 2)))
    member = buffer.getvalue()
    (DATA / "bomb.npz").write_bytes(npz_with_sizes("W.npy", member, 0xFFFFFFF0))  # claims ~4 GiB
    big = io.BytesIO()
    np.save(big, np.zeros(10**6))  # 8 MB of zeros: compresses to a few KB
    (DATA / "understated.npz").write_bytes(npz_with_sizes("W.npy", big.getvalue(), len(member)))
    np.savez(DATA / "weights.npz", other=np.eye(2))
    (DATA / "not_a_zip.npz").write_bytes(b"PK\x03\x04" + b"\0" * 60)
    # Round two (issue 10): members whose readers have no output cap, odd header shapes, float32 overflow.
    zeros = io.BytesIO()
    np.save(zeros, np.zeros((2, 2)))
    for name, method in (("bzip2", zipfile.ZIP_BZIP2), ("lzma", zipfile.ZIP_LZMA)):
        with zipfile.ZipFile(DATA / f"{name}_member.npz", "w", method) as archive:
            archive.writestr("W.npy", zeros.getvalue())
    with zipfile.ZipFile(DATA / "twice.npz", "w") as archive:
        archive.writestr("W.npy", zeros.getvalue())
        with_warning = zipfile.ZipInfo("W.npy")
        archive.writestr(with_warning, zeros.getvalue())
    for name, shape in (("negative", "(-2, -2)"), ("bool", "(True, 2)"), ("digits", "(" + "9" * 4000 + ", 2)")):
        header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }"
        (DATA / f"shape_{name}.npy").write_bytes(npy_bytes(header, b"\0" * 32))
    np.save(DATA / "too_big_for_float32.npy", np.array([[1e300, 0.2], [0.3, 0.4]]))
    write_data_round_three()


def zip_member_method(method: int, flag_bits: int = 0) -> bytes:
    """A .npz whose one member W.npy claims compression ``method`` (and ``flag_bits``) in both its headers."""
    buffer = io.BytesIO()
    zeros = io.BytesIO()
    np.save(zeros, np.zeros((2, 2)))
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("W.npy", date_time=(2026, 1, 1, 0, 0, 0)), zeros.getvalue())
    raw = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # flag bits, then the method
        at = raw.index(signature) + offset
        raw[at : at + 4] = struct.pack("<HH", flag_bits, method)
    return bytes(raw)


def write_data_round_three() -> None:
    """Variants of issue 10's families that the first corpus did not hold: other methods, shapes, dtypes."""
    for name, method, flags in (("deflate64", 9, 0), ("zstd", 93, 0), ("encrypted", 0, 1)):
        (DATA / f"{name}_member.npz").write_bytes(zip_member_method(method, flags))
    for name, shape in (("float", "(2.0, 2)"), ("huge_negative", "(-" + "9" * 4000 + ", 2)")):
        header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }"
        (DATA / f"shape_{name}.npy").write_bytes(npy_bytes(header, b"\0" * 32))
    header = "{'descr': [('a', '<f8'), ('b', '<f8')], 'fortran_order': False, 'shape': (2,), }"
    (DATA / "structured.npy").write_bytes(npy_bytes(header, b"\0" * 32))
    np.save(DATA / "bools.npy", np.array([[True, False], [False, True]]))


def cases() -> None:
    lin = {"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}
    # 1. No code from data.
    for name, op in [("op_os_system", "os.system"), ("op_builtins_eval", "builtins.eval"),
                     ("op_dotted_path", "graphengine_std.arithmetic.OPS"), ("op_dunder_import", "__import__"),
                     ("op_pickle_loads", "pickle.loads")]:
        case(name, one_node({"id": "h", "op": op, "inputs": ["x"]}), "UnknownOpError", "$.nodes[0].op", "h", "unknown op")
    case("extra_code_field", base(code="__import__('os').system('echo pwned')"), "SchemaError", "$.code", match="unknown field 'code'")
    case("extra_lambda_field", one_node({**lin, "lambda": "lambda x: x"}), "SchemaError", "$.nodes[0].lambda", "h", "unknown field")
    case("extra_allow_unsafe", with_file("../w.npy", allow_unsafe=True), "SchemaError", "$.parameters[0].allow_unsafe", "W", "unknown field")
    case("extra_plugins_field", base(plugins=["evil.py"]), "SchemaError", "$.plugins", match="unknown field 'plugins'")
    case("extra_allow_nonfinite", base(allow_nonfinite=True), "SchemaError", "$.allow_nonfinite", match="unknown field")
    case("extra_limits_field", base(limits={"max_nodes": 10**12}), "SchemaError", "$.limits", match="unknown field")
    case("attr_code", one_node({"id": "s", "op": "softmax", "inputs": ["x"], "attrs": {"code": "import os"}}),
         "OpAttributeError", "$.nodes[0].attrs.code", "s", "unknown attribute 'code'")
    case("npy_object_pickle", with_file("data/objects.npy"), "SchemaError", "$.parameters[0].file", "W", "never unpickled")
    case("npy_code_in_header", with_file("data/code_header.npy"), "SchemaError", "$.parameters[0].file", "W", "corrupt .npy header")
    # 2. Paths stay inside the graph's folder.
    paths = {
        "path_dotdot": ("../outside/secret.npy", "must stay inside"),
        "path_a_dotdot": ("a/../../outside/secret.npy", "must stay inside"),
        "path_absolute": ("/etc/passwd", "must stay inside"),
        "path_backslash": ("..\\outside\\secret.npy", "must use '/'"),
        "path_drive_letter": ("C:\\outside\\secret.npy", "must use '/'"),
        "path_nul_byte": ("data/w.npy\u0000.txt", "NUL byte"),
        "path_missing": ("data/missing.npy", "does not exist"),
        "path_directory": ("data", "not a regular file"),
    }
    for name, (path, match) in paths.items():
        case(name, with_file(path), "UnsafePathError", "$.parameters[0].file", "W", match)
    case("path_symlink_final", with_file("data/link.npy"), "UnsafePathError", "$.parameters[0].file", "W", "symlink",
         setup=[["symlink", "data/link.npy", "../../outside/secret.npy"]])
    case("path_symlink_parent", with_file("linked/secret.npy"), "UnsafePathError", "$.parameters[0].file", "W", "symlink",
         setup=[["symlink", "linked", "../outside"]])
    case("path_hardlink", with_file("data/hard.npy"), "UnsafePathError", "$.parameters[0].file", "W", "hard link",
         setup=[["hardlink", "data/hard.npy", "../outside/secret.npy"]])
    case("path_fifo", with_file("data/pipe.npy"), "UnsafePathError", "$.parameters[0].file", "W", "not a regular file",
         setup=[["fifo", "data/pipe.npy"]])
    case("path_in_constants", base(constants=[{"name": "c", "file": "../outside/secret.npy"}]),
         "UnsafePathError", "$.constants[0].file", "c", "must stay inside")
    case("sha256_mismatch", with_file("data/w.npy", sha256="0" * 64), "SchemaError", "$.parameters[0].sha256", "W", "sha256")
    case("sha256_malformed", with_file("data/w.npy", sha256="md5:abc"), "SchemaError", "$.parameters[0].sha256", "W", "")
    # 3. Bounded resources.
    case("shape_huge", base(inputs=[{"name": "x", "shape": [10**12, 10**12]}]), "LimitError", "$.inputs[0].shape", "x", "max_elements")
    case("shape_int64_overflow", base(inputs=[{"name": "x", "shape": [2**40, 2**40, 2**40]}]), "LimitError", "$.inputs[0].shape", "x", "max_elements")
    case("shape_negative", base(inputs=[{"name": "x", "shape": [-1, 2]}]), "SchemaError", "$.inputs[0].shape[0]", "x", "greater than or equal to 0")
    case("shape_too_many_dims", base(inputs=[{"name": "x", "shape": [1] * 64}]), "LimitError", "$.inputs[0].shape", "x", "max_ndim")
    case("shape_bool_dim", base(inputs=[{"name": "x", "shape": [True, 2]}]), "SchemaError", "$.inputs[0].shape[0]", "x", "integer")
    case("shape_string_dim", base(inputs=[{"name": "x", "shape": ["2", 2]}]), "SchemaError", "$.inputs[0].shape[0]", "x", "integer")
    case("shape_float_dim", base(inputs=[{"name": "x", "shape": [2.0, 2]}]), "SchemaError", "$.inputs[0].shape[0]", "x", "integer")
    doc = base(); doc["parameters"][1]["shape"] = [3]
    case("value_shorter_than_shape", doc, "ShapeError", "$.parameters[1]", "b", "(3,)")
    doc = base(); doc["inputs"][0]["default"] = [[1.0, 2.0, 3.0]]
    case("default_wider_than_shape", doc, "ShapeError", "$.inputs[0].default", "x", "(?, 2)")
    doc = base(); doc["parameters"][0]["value"] = [[0.1, 0.2], [0.3]]
    case("value_ragged", doc, "SchemaError", "$.parameters[0].value", "W", "rectangular")
    for name, element, match in [("value_string_element", "0.5", "a string"), ("value_null_element", None, "null"),
                                 ("value_bool_element", True, "true/false"), ("value_object_element", {"a": 1}, "an object")]:
        doc = base(); doc["parameters"][0]["value"] = [[0.1, 0.2], [0.3, element]]
        case(name, doc, "SchemaError", "$.parameters[0].value[1][1]", "W", match)
    doc = base(constants=[{"name": "c", "value": [1, 2**64], "dtype": "int64"}])
    case("value_int64_overflow", doc, "SchemaError", "$.constants[0].value[1]", "c", "does not fit int64")
    doc = base(constants=[{"name": "c", "value": [1, 2.5], "dtype": "int32"}])
    case("value_float_in_int_tensor", doc, "SchemaError", "$.constants[0].value[1]", "c", "int32")
    doc = base(dtype="float32"); doc["parameters"][1]["value"] = [0.0, 1e39]
    case("value_float32_overflow", doc, "SchemaError", "$.parameters[1].value[1]", "b", "does not fit float32")
    doc = base(); doc["parameters"][0]["value"] = json.loads("[" * 40 + "1" + "]" * 40)
    case("value_nested_40_deep", doc, "LimitError", "$.parameters[0].value", "W", "max_ndim")
    case("npy_huge_header", with_file("data/huge_header.npy"), "LimitError", "$.parameters[0].file", "W", "max_elements")
    case("npy_int64_overflow_header", with_file("data/overflow_header.npy"), "LimitError", "$.parameters[0].file", "W", "max_elements")
    case("npy_lying_header", with_file("data/lying_header.npy"), "SchemaError", "$.parameters[0].file", "W", "does not fit its header")
    case("npy_version_9", with_file("data/version9.npy"), "SchemaError", "$.parameters[0].file", "W", "not supported")
    case("npy_garbage", with_file("data/garbage.npy"), "SchemaError", "$.parameters[0].file", "W", "not a .npy or .npz")
    case("npy_complex", with_file("data/complex.npy"), "SchemaError", "$.parameters[0].file", "W", "not numbers")
    case("npy_nan", with_file("data/nan.npy"), "SchemaError", "$.parameters[0].file", "W", "NaN")
    case("npz_bomb_declared", with_file("data/bomb.npz"), "LimitError", "$.parameters[0].file", "W", "max_total_bytes")
    case("npz_understated_size", with_file("data/understated.npz"), "SchemaError", "$.parameters[0].file", "W", "")
    case("npz_missing_key", with_file("data/weights.npz"), "SchemaError", "$.parameters[0].key", "W", "has no array 'W'")
    case("npz_corrupt", with_file("data/not_a_zip.npz"), "SchemaError", "$.parameters[0].file", "W", ".npz")
    case("key_on_npy", with_file("data/w.npy", key="W"), "SchemaError", "$.parameters[0].key", "W", "only applies to .npz")
    # Small files whose nodes would allocate huge outputs when run (the onnxruntime 152-byte case).
    doc = base(inputs=[{"name": "x", "shape": [100000, 1]}, {"name": "y", "shape": [1, 100000]}],
               parameters=[], nodes=[{"id": "h", "op": "add", "inputs": ["x", "y"]}], outputs=["h"])
    case("node_output_huge", doc, "LimitError", "$.nodes[0]", "h", "max_elements")
    case("reshape_huge_attr", one_node({"id": "r", "op": "reshape", "inputs": ["x"], "attrs": {"shape": [-1, 10**20]}}),
         "LimitError", "$.nodes[0]", "r", "max_elements")
    deep = "[" * 10000 + "]" * 10000
    case("json_nested_10000_arrays", '{"format": "graphengine/v1", "description": ' + deep + ', "outputs": ["x"]}',
         "SchemaError", "$", None, "nested too deeply")
    case("json_nested_10000_objects", '{"format": "graphengine/v1", "name": ' + '{"a": ' * 10000 + "1" + "}" * 10000 + "}",
         "SchemaError", "$", None, "nested too deeply")
    attrs = '{"shape": ' + "[" * 500 + "]" * 500 + "}"
    case("attrs_nested_500", '{"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [2]}], '
         '"nodes": [{"id": "r", "op": "reshape", "inputs": ["x"], "attrs": ' + attrs + '}], "outputs": ["r"]}',
         "OpAttributeError", "$.nodes[0].attrs", "r", "nested too deeply")
    case("json_5000_digit_integer", '{"format": "graphengine/v1", "name": ' + "9" * 5000 + "}", "SchemaError", "$", None, "invalid JSON")
    case("json_1e400", json.dumps(base()).replace("0.5", "1e400"), "SchemaError", "$.parameters[1].value[1]", "b", "Infinity")
    case("json_nan_literal", json.dumps(base()).replace("0.5", "NaN"), "SchemaError", "$", None, "NaN")
    case("json_infinity_in_attrs", json.dumps(one_node({"id": "l", "op": "leaky_relu", "inputs": ["x"], "attrs": {"negative_slope": 0.25}})).replace("0.25", "-1e999"),
         "OpAttributeError", "$.nodes[0].attrs.negative_slope", "l", "NaN or Infinity")
    # 4. Graph structure.
    neg = lambda i, s: {"id": i, "op": "neg", "inputs": [s]}  # noqa: E731
    case("cycle_self_loop", base(nodes=[neg("a", "a")], outputs=["a"]), "CycleError", "$.nodes[0]", "a", "a -> a")
    case("cycle_two", base(nodes=[neg("a", "m"), neg("m", "a")], outputs=["a"]), "CycleError", None, None, "cycle")
    case("cycle_three", base(nodes=[neg("a", "n"), neg("m", "a"), neg("n", "m")], outputs=["a"]), "CycleError", None, None, "cycle")
    case("duplicate_node_id", base(nodes=[lin, neg("h", "x")]), "DuplicateIdError", "$.nodes[1]", "h", "already defined at $.nodes[0]")
    case("duplicate_across_sections", base(nodes=[lin, neg("W", "x")]), "DuplicateIdError", "$.nodes[1]", "W", "$.parameters[0]")
    case("dangling_input", one_node({"id": "h", "op": "linear", "inputs": ["x", "Wx", "b"]}), "DanglingReferenceError",
         "$.nodes[0].inputs[1]", "h", "'W'?")
    case("dangling_output", base(outputs=["hh"]), "DanglingReferenceError", "$.outputs[0]", "hh", "did you mean 'h'")
    # 5. Values.
    case("attr_wrong_type", one_node({"id": "s", "op": "softmax", "inputs": ["x"], "attrs": {"axis": "last"}}),
         "OpAttributeError", "$.nodes[0].attrs.axis", "s", "integer")
    case("attr_bool_for_int", one_node({"id": "s", "op": "softmax", "inputs": ["x"], "attrs": {"axis": True}}),
         "OpAttributeError", "$.nodes[0].attrs.axis", "s", "integer")
    case("attr_string_for_float", one_node({"id": "l", "op": "leaky_relu", "inputs": ["x"], "attrs": {"negative_slope": "0.1"}}),
         "OpAttributeError", "$.nodes[0].attrs.negative_slope", "l", "number")
    case("dtype_unknown", base(constants=[{"name": "c", "value": [1], "dtype": "object"}]), "SchemaError", "$.constants[0].dtype", "c", "")
    case("dtype_complex_graph", base(dtype="complex128"), "SchemaError", "$.dtype", None, "")
    case("axis_out_of_range", one_node({"id": "s", "op": "sum", "inputs": ["x"], "attrs": {"axis": -3}}), "ShapeError", "$.nodes[0]", "s", "out of range")
    case("slice_start_out_of_range", one_node({"id": "s", "op": "slice", "inputs": ["x"], "attrs": {"axis": 1, "start": 2}}),
         "ShapeError", "$.nodes[0]", "s", "out of range")
    case("slice_negative_out_of_range", one_node({"id": "s", "op": "slice", "inputs": ["x"], "attrs": {"axis": 1, "start": -3}}),
         "ShapeError", "$.nodes[0]", "s", "out of range")
    case("slice_stop_out_of_range", one_node({"id": "s", "op": "slice", "inputs": ["x"], "attrs": {"axis": 1, "start": 0, "stop": 3}}),
         "ShapeError", "$.nodes[0]", "s", "out of range")
    case("slice_free_axis_at_run_time", one_node({"id": "s", "op": "slice", "inputs": ["x"], "attrs": {"axis": 0, "start": 4, "stop": 6}}),
         "FeedError", None, None, "(node 's'): with the fed shapes (x: (1, 2)) op 'slice' cannot take its inputs", stage="run")
    for name, label in [("labels_too_large", 2), ("labels_negative", -1)]:
        doc = base(constants=[{"name": "labels", "value": [label], "dtype": "int64"}],
                   nodes=[{"id": "ce", "op": "softmax_cross_entropy", "inputs": ["x", "labels"]}], outputs=["ce"])
        case(name, doc, "ExecutionError", None, None, f"label {label}", stage="run")
    # Whole-document problems.
    case("top_level_array", "[1, 2, 3]", "SchemaError", "$", None, "JSON object")
    case("empty_file", "", "SchemaError", "$", None, "invalid JSON")
    case("not_utf8", b'{"format": "graphengine/v1", "name": "\xff\xfe"}', "SchemaError", "$", None, "")
    case("format_missing", {k: v for k, v in base().items() if k != "format"}, "SchemaError", "$.format", None, "graphengine/v1")
    case("terminal_escape_in_key", base(**{"\u001b]0;pwned\u0007\n": 1}), "SchemaError", '$["\\u001b]0;pwned\\u0007\\n"]', None, "unknown field")
    round_two()
    round_three()
    case("op_name_10k_long", one_node({"id": "h", "op": "x" * 10000, "inputs": ["x"]}), "UnknownOpError", "$.nodes[0].op", "h", "10000 characters")


def round_two() -> None:
    """Issue 10: duplicate keys, unbounded zip readers, odd .npy shapes, float32 overflow, run-time sizes."""
    text = json.dumps(base())
    case("dup_key_top_level", text.replace('"format": "graphengine/v1"', '"format": "graphengine/v1", "format": "graphengine/v1"'),
         "SchemaError", "$", None, 'key "format" appears twice')
    case("dup_key_value", text.replace('"value": [0.0, 0.5]', '"value": [0.0, 0.5], "value": [9.0, 9.0]'),
         "SchemaError", "$.parameters[1]", None, 'key "value" appears twice')
    case("dup_key_attrs", json.dumps(one_node({"id": "s", "op": "softmax", "inputs": ["x"], "attrs": {"axis": 0}})).replace(
        '"axis": 0', '"axis": 0, "axis": 1'), "SchemaError", "$.nodes[0].attrs", None, 'key "axis" appears twice')
    case("dup_key_escaped", text.replace('"outputs"', '"outputs": ["x"], "\\u006futputs"'), "SchemaError", "$", None, "appears twice")
    for name in ("bzip2", "lzma"):
        case(f"npz_{name}_member", with_file(f"data/{name}_member.npz"), "SchemaError", "$.parameters[0].file", "W",
             "only stored and deflated")
    case("npz_member_twice", with_file("data/twice.npz"), "SchemaError", "$.parameters[0].key", "W", "twice")
    case("npy_negative_shape", with_file("data/shape_negative.npy"), "SchemaError", "$.parameters[0].file", "W", "negative size")
    case("npy_bool_shape", with_file("data/shape_bool.npy"), "SchemaError", "$.parameters[0].file", "W", "bool size")
    case("npy_4000_digit_shape", with_file("data/shape_digits.npy"), "LimitError", "$.parameters[0].file", "W", "4000-digit")
    case("npy_float32_overflow", with_file("data/too_big_for_float32.npy", dtype="float32"), "SchemaError",
         "$.parameters[0].file", "W", "too large for float32")
    chain = [{"id": "c0", "op": "concat", "inputs": ["x", "x"]}]
    chain += [{"id": f"c{i}", "op": "concat", "inputs": [f"c{i - 1}", f"c{i - 1}"]} for i in range(1, 28)]
    doc = base(inputs=[{"name": "x", "shape": [None], "default": [1.0, 2.0]}], parameters=[], nodes=chain, outputs=["c27"])
    case("run_concat_chain_28", doc, "LimitError", "$.nodes[25]", "c25", "max_elements=100000000", stage="run")
    for op in ("add", "matmul"):
        doc = base(inputs=[{"name": "a", "shape": [None, 1], "default": [[0.5]] * 12000},
                           {"name": "b", "shape": [1, None], "default": [[0.25] * 12000]}],
                   parameters=[], nodes=[{"id": "y", "op": op, "inputs": ["a", "b"]}], outputs=["y"])
        case(f"run_{op}_defaults_outer", doc, "LimitError", "$.nodes[0]", "y", "144000000 elements", stage="run")


def round_three() -> None:
    """Variants of our own: other zip methods, other header shapes and dtypes, run-time shapes via named dims."""
    for name in ("deflate64", "zstd"):
        case(f"npz_{name}_member", with_file(f"data/{name}_member.npz"), "SchemaError", "$.parameters[0].file", "W",
             "only stored and deflated")
    case("npz_encrypted_member", with_file("data/encrypted_member.npz"), "SchemaError", "$.parameters[0].file", "W",
         "is encrypted")
    case("npy_float_shape", with_file("data/shape_float.npy"), "SchemaError", "$.parameters[0].file", "W", "header")
    case("npy_4000_digit_negative_shape", with_file("data/shape_huge_negative.npy"), "SchemaError",
         "$.parameters[0].file", "W", "negative size")
    case("npy_structured_dtype", with_file("data/structured.npy"), "SchemaError", "$.parameters[0].file", "W", "not numbers")
    case("npy_bool_dtype", with_file("data/bools.npy"), "SchemaError", "$.parameters[0].file", "W", "not numbers")
    pair = lambda a, b, da, db, op="add": base(  # noqa: E731
        inputs=[{"name": "a", "shape": a, "default": da}, {"name": "b", "shape": b, "default": db}],
        parameters=[], nodes=[{"id": "y", "op": op, "inputs": ["a", "b"]}], outputs=["y"])
    case("run_defaults_the_rule_refuses", pair([None], [None], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]), "FeedError",
         None, None, "(node 'y'): with the fed shapes (a: (3,), b: (4,)) op 'add' cannot take its inputs", stage="run")
    case("run_named_dims_outer", pair(["n", 1], [1, "m"], [[0.5]] * 12000, [[0.25] * 12000], "mul"), "LimitError",
         "$.nodes[0]", "y", "144000000 elements", stage="run")
    case("run_named_dims_disagree", pair(["n"], ["n"], [1.0, 2.0, 3.0], [1.0, 2.0]), "FeedError", None, None,
         "dimension 'n' is 3 in input 'a'", stage="run")
    doc = base(inputs=[{"name": "a", "shape": [None, None], "default": [[0.5] * 12000]}], parameters=[],
               nodes=[{"id": "t", "op": "transpose", "inputs": ["a"]}, {"id": "y", "op": "matmul", "inputs": ["t", "a"]}],
               outputs=["y"])
    case("run_transpose_matmul_outer", doc, "LimitError", "$.nodes[1]", "y", "144000000 elements", stage="run")


def main() -> None:
    for old in HERE.glob("*.json"):
        old.unlink()
    write_data()
    cases()
    for name, (doc, expect) in CASES.items():
        path = HERE / f"{name}.json"
        if isinstance(doc, bytes):
            path.write_bytes(doc)
        elif isinstance(doc, str):
            path.write_text(doc)
        else:
            path.write_text(json.dumps(doc, indent=1) + "\n")
        (HERE / f"{name}.expect.json").write_text(json.dumps({k: v for k, v in expect.items() if v is not None}, indent=1) + "\n")
    print(f"{len(CASES)} hostile cases written to {HERE}")


if __name__ == "__main__":
    main()
