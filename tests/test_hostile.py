"""Hostile and broken graph files: every one gets its own typed error, and nothing runs, escapes or balloons.

The cases live in tests/data/hostile/ (``NAME.json`` plus ``NAME.expect.json``;
regenerate them with ``python tests/data/hostile/_generate.py``). Links and
pipes, which git cannot carry, are made by the ``setup`` steps in a scratch
copy of that folder.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from conftest import EXAMPLES, SINE_PLUGIN, graph_doc

import graphengine
from graphengine import errors
from graphengine.cli import main
from graphengine.graph import Limits
from graphengine.ops import OpDef, TensorSpec, elementwise_rule
from graphengine.registry import default_registry

HOSTILE = Path(__file__).resolve().parent / "data" / "hostile"
CASES = sorted(p.name[: -len(".json")] for p in HOSTILE.glob("*.json") if not p.name.endswith(".expect.json"))
LINEAR = {"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}


def expected(name: str) -> dict[str, Any]:
    return json.loads((HOSTILE / f"{name}.expect.json").read_text())


def prepare(root: Path) -> Path:
    """A scratch copy of the hostile folder with its links and pipes made; ``root/outside`` holds the bait."""
    folder = root / "hostile"
    shutil.copytree(HOSTILE, folder, ignore=shutil.ignore_patterns("_generate.py", "__pycache__"))
    (root / "outside").mkdir()
    np.save(root / "outside" / "secret.npy", np.array([[6.0, 6.0], [6.0, 6.0]]))
    for name in CASES:
        for step in expected(name).get("setup", []):
            link = folder / step[1]
            if step[0] == "symlink":
                link.symlink_to(step[2])
            elif step[0] == "hardlink":
                os.link(folder / step[2], link)
            elif step[0] == "fifo":
                os.mkfifo(link)
            else:  # pragma: no cover - a typo in a sidecar
                raise ValueError(f"unknown setup step {step}")
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(tmp_path_factory.mktemp("hostile"))


def check(err: BaseException, exp: dict[str, Any], path: Path) -> None:
    assert type(err).__name__ == exp["error"], f"{path.name}: {type(err).__name__}: {err}"
    assert exp.get("match", "") in str(err)
    if isinstance(err, errors.GraphFileError):
        assert err.file == str(path)
        if "json_path" in exp:
            assert err.json_path == exp["json_path"]
        if "node" in exp:
            assert err.node_id == exp["node"]


def load_and_maybe_run(path: Path, exp: dict[str, Any], **kwargs: Any) -> BaseException:
    """Load (and, for run-stage cases, run) a hostile file; return the error it raised."""
    try:
        graph = graphengine.load(path, **kwargs)
        if exp["stage"] == "run":
            graph.run()
    except errors.GraphEngineError as exc:
        return exc
    raise AssertionError(f"{path.name} was accepted")


# --- every hostile file, through the API and the CLI -------------------------------------------


def test_there_is_a_case_for_every_kind() -> None:
    assert len(CASES) >= 80
    kinds = {expected(n)["error"] for n in CASES}
    assert kinds >= {
        "SchemaError",
        "UnknownOpError",
        "UnsafePathError",
        "LimitError",
        "CycleError",
        "DuplicateIdError",
        "DanglingReferenceError",
        "OpAttributeError",
        "ShapeError",
        "ExecutionError",
    }


@pytest.mark.parametrize("name", CASES)
def test_hostile_file_gets_its_typed_error(hostile: Path, name: str) -> None:
    exp = expected(name)
    if exp["stage"] == "run":  # only the data can reveal it: the file itself is valid
        graphengine.load(hostile / f"{name}.json")
    check(load_and_maybe_run(hostile / f"{name}.json", exp), exp, hostile / f"{name}.json")


@pytest.mark.parametrize("name", CASES)
def test_cli_prints_one_line_and_fails(hostile: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    exp = expected(name)
    path = hostile / f"{name}.json"
    code = main(["run" if exp["stage"] == "run" else "validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    line = err.rstrip("\n")
    assert line.startswith("graphengine: error: ") and "Traceback" not in line
    assert line.isprintable(), "control characters from the file reached the terminal"
    assert len(line) < 1000
    if "json_path" in exp:
        assert exp["json_path"] in line


def test_console_script_on_hostile_files(hostile: Path) -> None:
    exe = shutil.which("graphengine")
    command = [exe] if exe else [sys.executable, "-m", "graphengine"]
    for name in ("path_symlink_parent", "json_nested_10000_arrays", "npy_object_pickle", "terminal_escape_in_key"):
        proc = subprocess.run(
            [*command, "validate", str(hostile / f"{name}.json")], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 1 and proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("graphengine: error: "), proc.stderr
        assert "Traceback" not in proc.stderr and lines[0].isprintable()


# --- 1. no code from data ------------------------------------------------------------------------


def test_loading_never_unpickles_evals_or_imports(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Build the registries first: entry points and an explicit --plugin are the only imports allowed.
    registry = default_registry()
    with_sine = default_registry([str(SINE_PLUGIN)])
    examples = [p for p in sorted(EXAMPLES.rglob("*.json")) if '"graphengine/v1"' in p.read_text()]
    assert examples
    # Warm up once: numpy, pydantic and networkx import and generate some code lazily on first use.
    # Data that made graphengine eval, unpickle or import would do it on every load, so the trap still sees it.
    for path in examples:
        graphengine.load(path, registry=with_sine)
    for name in CASES:
        load_and_maybe_run(hostile / f"{name}.json", expected(name), registry=registry)
    calls: list[str] = []

    def trap(name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} was called while loading")

        return refuse

    traps = [
        (pickle, "loads"),
        (pickle, "load"),
        (pickle, "Unpickler"),
        (builtins, "eval"),
        (builtins, "exec"),
        (importlib, "import_module"),
        (os, "system"),
        (subprocess, "Popen"),
    ]
    try:
        for target, attr in traps:
            monkeypatch.setattr(target, attr, trap(f"{target.__name__}.{attr}"))
        loaded = [graphengine.load(path, registry=with_sine) for path in examples]
        outcome: dict[str, Any] = {}
        for name in CASES:
            try:
                outcome[name] = graphengine.load(hostile / f"{name}.json", registry=registry)
            except errors.GraphEngineError as exc:
                outcome[name] = exc
    finally:
        monkeypatch.undo()
    assert calls == []
    # Running is not loading: the plan compiles straight-line Python from slot numbers (see SECURITY.md).
    for graph in loaded:
        if all(info.default is not None for info in graph.inputs.values()) and graph.loss is not None:
            graph.grad()
    for name, result in outcome.items():
        exp = expected(name)
        if exp["stage"] == "run":
            with pytest.raises(errors.GraphEngineError) as info:  # check() below names the class
                result.run()
            result = info.value
        check(result, exp, hostile / f"{name}.json")
    assert calls == []


def test_a_plugin_is_used_only_when_the_user_names_it() -> None:
    doc = json.loads((EXAMPLES / "custom_op" / "fanout.json").read_text())
    with pytest.raises(errors.UnknownOpError, match="'sin'"):
        graphengine.load_dict(doc, registry=default_registry())
    graph = graphengine.load_dict(doc, plugins=[str(SINE_PLUGIN)])  # the user's explicit choice
    assert graph.nodes["y"].op.name == "sin"


# --- 2. paths stay inside the graph's folder ----------------------------------------------------

PATH_CASES: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "../x": ("../outside/secret.npy", "must stay inside", []),
    "a/../../x": ("a/../../outside/secret.npy", "must stay inside", []),
    "absolute": ("{outside}/secret.npy", "must stay inside", []),
    "..\\x": ("..\\outside\\secret.npy", "must use '/'", []),
    "C:\\x": ("C:\\outside\\secret.npy", "must use '/'", []),
    "NUL byte": ("w.npy\x00../outside/secret.npy", "NUL byte", []),
    "final symlink": ("link.npy", "symlink", [("symlink", "link.npy", "../outside/secret.npy")]),
    "symlinked parent": ("sub/secret.npy", "symlink", [("symlink", "sub", "../outside")]),
    "hard link": ("hard.npy", "hard link", [("hardlink", "hard.npy", "outside/secret.npy")]),
}


@pytest.mark.parametrize("section", ["parameters", "constants"])
@pytest.mark.parametrize("case", list(PATH_CASES))
def test_every_path_field_stays_inside_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: str, case: str
) -> None:
    relative, match, setup = PATH_CASES[case]
    folder = tmp_path / "graph"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    np.save(tmp_path / "outside" / "secret.npy", np.eye(2))
    np.save(folder / "w.npy", np.eye(2))
    for kind, link, target in setup:
        if kind == "symlink":
            (folder / link).symlink_to(target)
        else:
            os.link(tmp_path / target, folder / link)
    doc = graph_doc([LINEAR], ["h"])
    entry = {"name": "c", "file": relative.format(outside=tmp_path / "outside")}
    if section == "parameters":
        doc["parameters"][0] = {**entry, "name": "W"}
    else:
        doc["constants"] = [entry]
    path = folder / "graph.json"
    path.write_text(json.dumps(doc))
    # Warm up first: the first load in a process reads entry-point metadata and imports lazily,
    # which opens files that have nothing to do with this graph.
    graphengine.load_dict(graph_doc([LINEAR], ["h"]))
    opened: list[str] = []
    real_open, real_os_open = io.open, os.open

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int):  # os.fdopen wraps a descriptor already opened (and recorded) by os.open
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    with pytest.raises(errors.UnsafePathError) as info:
        graphengine.load(path)
    monkeypatch.undo()
    assert info.value.json_path == f"$.{section}[0].file"
    assert match in str(info.value)
    assert opened == [str(path)], f"only the graph file itself may be opened: {opened}"


def test_weight_file_inside_the_folder_and_a_subfolder_loads(tmp_path: Path, write_graph: Callable[..., Path]) -> None:
    (tmp_path / "weights").mkdir()
    np.save(tmp_path / "weights" / "W.npy", np.array([[1.0, 2.0], [3.0, 4.0]]))
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"][0] = {"name": "W", "file": "weights/W.npy"}
    np.testing.assert_array_equal(graphengine.load(write_graph(doc)).parameters["W"], [[1.0, 2.0], [3.0, 4.0]])


def test_sha256_is_checked(tmp_path: Path, write_graph: Callable[..., Path]) -> None:
    np.save(tmp_path / "w.npy", np.eye(2))
    digest = hashlib.sha256((tmp_path / "w.npy").read_bytes()).hexdigest()
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"][0] = {"name": "W", "file": "w.npy", "sha256": digest.upper()}
    np.testing.assert_array_equal(graphengine.load(write_graph(doc)).parameters["W"], np.eye(2))
    np.save(tmp_path / "w.npy", 2 * np.eye(2))  # the file changed after the graph was written
    with pytest.raises(errors.SchemaError, match="sha256") as info:
        graphengine.load(tmp_path / "graph.json")
    assert info.value.json_path == "$.parameters[0].sha256" and digest in str(info.value)


def test_graph_from_a_dict_cannot_read_files() -> None:
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"][0] = {"name": "W", "file": "w.npy"}
    with pytest.raises(errors.UnsafePathError, match="not loaded from a file"):
        graphengine.load_dict(doc)


# --- 3. bounded resources ------------------------------------------------------------------------


def test_limits_can_be_changed_from_the_api(tmp_path: Path, write_graph: Callable[..., Path]) -> None:
    path = write_graph(graph_doc([LINEAR], ["h"]))
    graphengine.load(path)  # within the defaults
    cases = [
        (Limits(max_nodes=3), "max_nodes=3"),
        (Limits(max_elements=3), "max_elements=3"),
        (Limits(max_total_bytes=40), "max_total_bytes=40"),
        (Limits(max_ndim=1), "max_ndim=1"),
        (Limits(max_file_bytes=100), "max_file_bytes=100"),
    ]
    for limits, name in cases:
        with pytest.raises(errors.LimitError, match=name):
            graphengine.load(path, limits=limits)


def test_limits_bound_weight_files_before_reading(tmp_path: Path, write_graph: Callable[..., Path]) -> None:
    np.save(tmp_path / "w.npy", np.zeros((100, 100)))
    np.savez_compressed(tmp_path / "w.npz", W=np.zeros((100, 100)))
    for file in ("w.npy", "w.npz"):
        doc = graph_doc([{"id": "s", "op": "sum", "inputs": ["W"]}], ["s"])
        doc["parameters"] = [{"name": "W", "file": file}]
        path = write_graph(doc)
        assert graphengine.load(path).parameters["W"].shape == (100, 100)
        with pytest.raises(errors.LimitError, match="max_total_bytes=50000"):
            graphengine.load(path, limits=Limits(max_total_bytes=50_000))  # 80,000 bytes of data
        with pytest.raises(errors.LimitError, match="max_elements=9999"):
            graphengine.load(path, limits=Limits(max_elements=9_999))


@pytest.mark.parametrize(
    "flag, value, name",
    [
        ("--max-nodes", "3", "max_nodes=3"),
        ("--max-elements", "3", "max_elements=3"),
        ("--max-total-bytes", "40", "max_total_bytes=40"),
    ],
)
def test_limits_can_be_changed_from_the_cli(
    write_graph: Callable[..., Path], capsys: pytest.CaptureFixture[str], flag: str, value: str, name: str
) -> None:
    path = write_graph(graph_doc([LINEAR], ["h"]))
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    assert main(["validate", str(path), flag, value]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err


def test_deep_python_values_give_clean_errors() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(20_000):
        inner.append([])
        inner = inner[0]
    doc = graph_doc([dict(LINEAR, attrs={"a": deep})], ["h"])
    with pytest.raises(errors.OpAttributeError, match="JSON values|nested"):
        graphengine.load_dict(doc)
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"][0]["value"] = deep
    with pytest.raises(errors.LimitError, match="max_ndim"):
        graphengine.load_dict(doc)
    for field in ("name", "nodes", "outputs"):
        with pytest.raises(errors.SchemaError):
            graphengine.load_dict({"format": "graphengine/v1", "outputs": ["x"], field: deep})


RLIMIT_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import graphengine
    from graphengine.registry import default_registry

    folder = Path(sys.argv[1])
    default_registry()
    status = Path("/proc/self/status").read_text()
    in_use = int(next(l for l in status.splitlines() if l.startswith("VmSize:")).split()[1]) * 1024
    headroom = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (in_use + headroom, in_use + headroom))
    results = {}
    for name in json.loads(sys.argv[3]):
        stage = json.loads((folder / f"{name}.expect.json").read_text())["stage"]
        try:
            graph = graphengine.load(folder / f"{name}.json")
            if stage == "run":
                graph.run()
            results[name] = "accepted"
        except MemoryError:
            results[name] = "MemoryError"
        except Exception as exc:
            results[name] = type(exc).__name__
    try:
        bytearray(headroom + 2**20)
        results["<probe>"] = "allocated"
    except MemoryError:
        results["<probe>"] = "MemoryError"
    print(json.dumps(results))
    """
)


@pytest.mark.skipif(
    not Path("/proc/self/status").exists() or sys.platform != "linux", reason="needs Linux /proc and RLIMIT_AS"
)
def test_hostile_files_allocate_nothing_large(tmp_path: Path) -> None:
    folder = prepare(tmp_path)
    headroom = 256 * 1024**2
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RLIMIT_SCRIPT, str(folder), str(headroom), json.dumps(CASES)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results.pop("<probe>") == "MemoryError", "the address-space limit was not in force"
    wrong = {n: r for n, r in results.items() if r != expected(n)["error"]}
    assert wrong == {}
    # The cases that would need gigabytes if anything trusted the file:
    for name in ("npy_huge_header", "npy_lying_header", "npz_bomb_declared", "node_output_huge", "shape_huge"):
        assert name in results


def test_a_100k_node_graph_loads_validates_and_differentiates(write_graph: Callable[..., Path]) -> None:
    n = 100_000
    nodes = [
        {
            "id": f"n{i}",
            "op": "mul" if i % 2 else "neg",
            "inputs": [f"n{i - 1}", "a"] if i % 2 else ["x" if i == 0 else f"n{i - 1}"],
        }
        for i in range(n)
    ]
    nodes.append({"id": "loss", "op": "sum", "inputs": [f"n{n - 1}"]})
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2], "default": [1.0, 2.0]}],
        "parameters": [{"name": "a", "value": 1.0}],
        "nodes": nodes,
        "outputs": ["loss"],
    }
    graph = graphengine.load(write_graph(doc))
    assert len(graph.nodes) == n + 1
    result = graph.value_and_grad(wrt=["x", "a"])
    # loss = sum((-1)^(n/2) a^(n/2) x): at a = 1, d/dx = 1 (even number of negations), d/da = (n/2) * sum(x).
    np.testing.assert_array_equal(result.gradients["x"], [1.0, 1.0])
    assert result.gradients["a"] == pytest.approx((n // 2) * 3.0)
    assert float(result.outputs["loss"]) == pytest.approx(3.0)


# --- 5. values -----------------------------------------------------------------------------------


def test_nonfinite_policy_rejects_by_default_and_allows_by_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = json.dumps(graph_doc([LINEAR], ["h"])).replace("0.5", "NaN").replace("0.4", "1e400")
    path = tmp_path / "nonfinite.json"
    path.write_text(text)
    with pytest.raises(errors.SchemaError, match="NaN"):
        graphengine.load(path)
    graph = graphengine.load(path, allow_nonfinite=True)
    assert np.isnan(graph.parameters["b"][1]) and np.isinf(graph.parameters["W"][1, 1])
    assert main(["validate", str(path)]) == 1
    assert main(["validate", str(path), "--allow-nonfinite"]) == 0
    np.save(tmp_path / "w.npy", np.array([[np.inf, 0.0], [0.0, 1.0]]))
    doc = graph_doc([LINEAR], ["h"])
    doc["parameters"][0] = {"name": "W", "file": "w.npy"}
    (tmp_path / "file.json").write_text(json.dumps(doc))
    with pytest.raises(errors.SchemaError, match="NaN or Infinity"):
        graphengine.load(tmp_path / "file.json")
    assert np.isinf(graphengine.load(tmp_path / "file.json", allow_nonfinite=True).parameters["W"][0, 0])


def test_weight_files_convert_to_the_declared_dtype(tmp_path: Path, write_graph: Callable[..., Path]) -> None:
    np.save(tmp_path / "w.npy", np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3)))
    np.save(tmp_path / "big.npy", np.array([2**40], dtype=np.int64))
    doc = graph_doc([{"id": "s", "op": "sum", "inputs": ["W"]}], ["s"])
    doc["parameters"] = [{"name": "W", "file": "w.npy"}]
    w = graphengine.load(write_graph(doc)).parameters["W"]
    assert w.dtype == np.float64 and w.flags.c_contiguous and w.flags.writeable
    np.testing.assert_array_equal(w, np.arange(6).reshape(2, 3))
    doc["constants"] = [{"name": "c", "file": "big.npy", "dtype": "int32"}]
    with pytest.raises(errors.SchemaError, match="do not fit int32"):
        graphengine.load(write_graph(doc))


# --- 6. plugins are code -------------------------------------------------------------------------


def plugin_graph(op: OpDef) -> graphengine.Graph:
    registry = default_registry()
    registry.register(op, "test plugin")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2], "default": [0.1, 0.2]}],
        "nodes": [{"id": "e", "op": op.name, "inputs": ["x"]}, {"id": "loss", "op": "sum", "inputs": ["e"]}],
        "outputs": ["loss"],
    }
    return graphengine.load_dict(doc, registry=registry)


def test_plugin_vjp_with_the_wrong_dtype_is_named() -> None:
    op = OpDef(
        "bad_dtype",
        lambda x, *, attrs: x * 1.0,
        (lambda g, out, x, *, attrs: (g * 1.0).astype(np.float32),),
        elementwise_rule,
    )
    with pytest.raises(errors.ExecutionError, match=r"node 'e' \(op 'bad_dtype'\), input 0 \('x'\).*float32.*float64"):
        plugin_graph(op).grad(wrt=["x"])


def test_plugin_vjp_with_the_wrong_shape_is_named() -> None:
    op = OpDef("bad_shape", lambda x, *, attrs: x * 1.0, (lambda g, out, x, *, attrs: np.ones(7),), elementwise_rule)
    with pytest.raises(errors.ExecutionError, match=r"op 'bad_shape'.*input 0 \('x'\).*shape"):
        plugin_graph(op).grad(wrt=["x"])


def test_plugin_that_raises_is_named() -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("internal detail")

    forward_raises = OpDef("boom_fwd", boom, (lambda g, out, x, *, attrs: g,), elementwise_rule)
    with pytest.raises(errors.ExecutionError, match=r"node 'e' \(op 'boom_fwd'\).*KeyError"):
        plugin_graph(forward_raises).run()
    vjp_raises = OpDef("boom_vjp", lambda x, *, attrs: x * 1.0, (boom,), elementwise_rule)
    with pytest.raises(errors.ExecutionError, match=r"node 'e' \(op 'boom_vjp'\), input 0 \('x'\).*KeyError"):
        plugin_graph(vjp_raises).grad(wrt=["x"])
    rule_raises = OpDef("boom_rule", lambda x, *, attrs: x, (None,), boom)
    with pytest.raises(errors.ShapeError, match="shape rule of op 'boom_rule'.*KeyError") as info:
        plugin_graph(rule_raises)
    assert info.value.node_id == "e"
    rule_lies = OpDef("bad_rule", lambda x, *, attrs: x, (None,), lambda x, *, attrs: "(2,)")
    with pytest.raises(errors.ShapeError, match="not a TensorSpec"):
        plugin_graph(rule_lies)


LIAR = OpDef(
    "liar",
    lambda x, *, attrs: np.ones(5),
    (lambda g, out, x, *, attrs: g,),
    lambda x, *, attrs: TensorSpec(x.shape, x.dtype),
)


def test_plugin_forward_that_breaks_its_shape_rule_is_named() -> None:
    """Caught where it happens, in run and in grad, on the generated and the interpreted path."""
    message = r"node 'e' \(op 'liar'\) returned float64 \(5,\), but its shape rule promised float64 \(2,\)"
    with pytest.raises(errors.ExecutionError, match=message):
        plugin_graph(LIAR).run()
    with pytest.raises(errors.ExecutionError, match=message):
        plugin_graph(LIAR).grad(wrt=["x"])
    plan = plugin_graph(LIAR).compile()
    with pytest.raises(errors.ExecutionError, match=message):
        plan._forward(plan._schedule(("e",), None, None), plan._bind({}, plan._schedule(("e",), None, None)), None)
    not_an_array = OpDef("floaty", lambda x, *, attrs: 1.5, (None,), lambda x, *, attrs: TensorSpec((), x.dtype))
    with pytest.raises(errors.ExecutionError, match=r"node 'e' \(op 'floaty'\) did not return a numpy array"):
        plugin_graph(not_an_array).run()
