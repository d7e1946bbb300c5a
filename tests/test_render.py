"""Diagrams: DOT text, real SVG/PNG renders, highlight, the CLI, and the trace they draw from."""

from __future__ import annotations

import json
import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SEED, SINE_PLUGIN, random_graph_doc

import graphengine
from graphengine import Trace
from graphengine.cli import main
from graphengine.errors import RenderError
from graphengine.render import FULL_ELEMENTS, diagram, picture, to_dot, write

FANOUT = SEED.parent / "custom_op" / "fanout.json"
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="the Graphviz 'dot' program is not installed (apt-get install graphviz)"
)


def q(name: str) -> str:
    """A value's node id as graphviz writes it."""
    from graphengine.render.safe import dot_id

    return dot_id(name)


def edges(source: str, src: str, dst: str) -> list[str]:
    """Attribute text of every edge src -> dst in DOT source."""
    pattern = re.compile(rf"^\s*{re.escape(q(src))} -> {re.escape(q(dst))} \[(.*)\]$", re.M)
    return pattern.findall(source)


def node(source: str, name: str) -> str:
    (line,) = re.findall(rf"^\s*{re.escape(q(name))} \[(.*)\]$", source, re.M)
    return line


def fmt(v: float) -> str:
    return f"{v:.4g}"


@pytest.fixture(scope="module")
def seed() -> graphengine.Graph:
    return graphengine.load(SEED)


@pytest.fixture(scope="module")
def fanout() -> graphengine.Graph:
    return graphengine.load(FANOUT, plugins=[str(SINE_PLUGIN)])


def seed_numbers(graph: graphengine.Graph) -> dict[str, np.ndarray]:
    """The seed network's backward pass worked by hand (textbook formulas, not the engine's)."""
    x, target = np.array([0.05, 0.10]), np.array([0.01, 0.99])
    W_h, b_h, W_o, b_o = (graph.parameters[k] for k in ("W_h", "b_h", "W_o", "b_o"))
    h = 1 / (1 + np.exp(-(W_h @ x + b_h)))
    y = 1 / (1 + np.exp(-(W_o @ h + b_o)))
    delta_o = (y - target) * y * (1 - y)  # dE/dy_pre
    branch = delta_o[:, None] * W_o  # [k, j]: what hidden unit j receives through output k
    return {"h": h, "y": y, "delta_o": delta_o, "branch": branch, "dh": branch.sum(axis=0)}


# --- DOT text --------------------------------------------------------------------------------


def test_seed_units_show_both_output_paths_meeting_at_each_hidden_unit(seed) -> None:
    dot, result = diagram(seed, grad=True)
    src = dot.source
    n = seed_numbers(seed)
    for j in range(2):
        # one dashed red arrow back from each output unit's pre-activation, numbered c1, c2
        for k in range(2):
            (attrs,) = [a for a in edges(src, f"h[{j}]", f"y_pre[{k}]") if "dir=back" in a]
            assert "style=dashed" in attrs and "#c0392b" in attrs
            assert f"c{'₁₂'[k]} = {fmt(n['branch'][k, j])}" in attrs
        # and the sum, with numbers, on the hidden unit
        terms = [fmt(n["branch"][k, j]) for k in range(2)]
        terms = [f"({t})" if t.startswith("-") else t for t in terms]
        assert f"Σ = c₁ + c₂ = {terms[0]} + {terms[1]} = {fmt(n['dh'][j])}" in node(src, f"h[{j}]")
        assert f"∂loss/∂h[{j}] = {fmt(n['dh'][j])}" in node(src, f"h[{j}]")
    # forward values and names; the published gradient of W_h[0,0]
    assert "value 0.5933" in node(src, "h[0]") and "value 0.7514" in node(src, "y[0]")
    assert "∂loss/∂W_h[0,0] = 0.0004386" in node(src, "W_h[0,0]")
    assert "h_pre = linear(x, W_h, b_h)" in src and "LOSS" in node(src, "loss")  # a frame caption
    # forward arrows are solid and not red
    (forward,) = [a for a in edges(src, "h[0]", "y_pre[0]") if "dir=back" not in a]
    assert "dashed" not in forward and "#c0392b" not in forward


def test_node_level_fan_out_sum(fanout) -> None:
    """y = sin(sin(wx) + sin(wx)): wx is read by left and right; its gradient is the sum of two contributions."""
    plan = fanout.compile()
    result = plan.value_and_grad(wrt=["w", "x"], record=True)
    src = to_dot(fanout, values=plan.run_all(), gradients=result.gradients, trace=result.trace, units=False).source
    wx = 1.3 * 0.7
    both = 2 * np.sin(wx)
    c = np.cos(both) * np.cos(wx)  # what each sin branch sends back to wx
    assert f"Σ = c₁ + c₂ = ({fmt(c)}) + ({fmt(c)}) = {fmt(2 * c)}" in node(src, "wx")
    for branch, tag in (("left", "c₁"), ("right", "c₂")):  # numbered in the file's order of readers
        (back,) = [a for a in edges(src, "wx", branch) if "dir=back" in a]
        assert f"{tag} = {fmt(c)}" in back
    (back,) = [a for a in edges(src, "w", "wx") if "dir=back" in a]
    assert fmt(2 * c * 0.7) in back  # w's contribution: the sum times x
    assert "∂y/∂w = " + fmt(2 * c * 0.7) in node(src, "w")
    assert "(parameter)" in node(src, "w") and "(input)" in node(src, "x")


def test_structure_only_without_grad(seed) -> None:
    src = to_dot(seed, values=seed.compile().run_all(), units=False).source
    assert "dir=back" not in src and "∂" not in src.split('label=<<TABLE BORDER="0"')[0]
    assert "value [0.7514, 0.7729]" in node(src, "y")
    assert "shape (2, 2)" in node(src, "W_h")
    # without values at all (an input with no default): names and ops only
    bare = to_dot(seed, units=False).source
    assert "<B>h</B> = sigmoid(h_pre)" in node(bare, "h") and "float64[2]" in node(bare, "h")


def test_kinds_and_loss_are_distinct(seed) -> None:
    src = to_dot(seed, values=seed.compile().run_all(), units=False).source
    fills = {name: re.search(r'BGCOLOR="(#\w+)"', node(src, name)).group(1) for name in ("x", "W_h", "h", "loss")}
    assert len(set(fills.values())) == 4
    assert 'BORDER="3"' in node(src, "loss") and 'STYLE="ROUNDED"' in node(src, "h")


def test_highlight_marks_every_path_and_dims_the_rest(seed) -> None:
    dot, _ = diagram(seed, grad=True, highlight="W_h")
    src = dot.source
    for name in ("W_h[0,1]", "h_pre[0]", "h[0]", "h[1]", "y_pre[0]", "y_pre[1]", "y[0]", "y[1]", "loss"):
        assert "class=highlight" in node(src, name), name
    for name in ("W_o[0,0]", "b_o", "b_h", "x[0]", "target[1]"):
        assert "class=dimmed" in node(src, name), name
    # both routes into hidden unit 0 are bold, forward and backward
    for k in range(2):
        for attrs in edges(src, "h[0]", f"y_pre[{k}]"):
            assert "class=highlight" in attrs
        (back,) = [a for a in edges(src, "h[0]", f"y_pre[{k}]") if "dir=back" in a]
        assert "penwidth=3" in back
    for attrs in edges(src, "W_o[0,0]", "y_pre[0]") + edges(src, "x[0]", "h_pre[0]"):
        assert "class=dimmed" in attrs and "#d1d5db" in attrs
    assert "bold: every path from loss back to W_h" in src


def test_highlight_errors(seed, write_graph) -> None:
    with pytest.raises(RenderError, match=r"'W_hh'.*did you mean 'W_h'"):
        diagram(seed, highlight="W_hh")
    doc = json.loads(SEED.read_text())
    doc["parameters"].append({"name": "unused", "value": 1.0})
    doc["nodes"].append({"id": "side", "op": "mul", "inputs": ["unused", "b_h"]})
    doc["outputs"].append("side")
    with pytest.raises(RenderError, match="no path from 'loss' back to 'unused'"):
        diagram(graphengine.load(write_graph(doc)), highlight="unused")


def test_big_tensors_are_summarised_with_a_nan_flag_and_full_tooltips(write_graph) -> None:
    n = FULL_ELEMENTS + 4
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [n]}],
        "nodes": [{"id": "y", "op": "tanh", "inputs": ["x"]}, {"id": "loss", "op": "sum", "inputs": ["y"]}],
        "outputs": ["loss"],
    }
    g = graphengine.load(write_graph(doc))
    x = np.linspace(-1, 1, n)
    x[3] = np.nan
    dot, _ = diagram(g, {"x": x}, grad=True, wrt=["x"])
    src = dot.source
    finite = x[np.isfinite(x)]
    # the shape is said once: "shape (10,)   value mean ... max 1"
    assert f"shape ({n},)   value mean {fmt(finite.mean())} std {fmt(finite.std())} min -1 max 1" in node(src, "x")
    assert "⚠ 1 NaN" in node(src, "x") and "#f59e0b" in node(src, "x")
    assert "⚠ gradient: 1 NaN" in node(src, "x")
    tooltip = re.search(r'tooltip="([^"]*)"', node(src, "x")).group(1)
    assert "0.55555556" in tooltip and "nan" in tooltip  # every element, more digits than the label


def test_layers_become_clusters_and_big_graphs_go_top_to_bottom(seed) -> None:
    src = to_dot(seed, values=seed.compile().run_all(), units=False).source
    assert "subgraph cluster_layer0" in src and "label=hidden" in src and "label=output" in src
    assert "rankdir=LR" in src
    mlp = _mlp(60)
    assert "rankdir=TB" in to_dot(mlp, units=False).source


# --- the trace the diagrams draw --------------------------------------------------------------


@pytest.mark.parametrize("seed_", range(10))
def test_trace_sums_equal_gradients_on_random_graphs(seed_: int) -> None:
    rng = np.random.default_rng(seed_)
    g = graphengine.load_dict(random_graph_doc(rng, 14))
    wrt = ["x", "p0", "p1"]
    result = g.value_and_grad(wrt=wrt, record=True)
    trace = result.trace
    assert isinstance(trace, Trace) and trace.output == "loss"
    # gradient of every value: the cotangent its step received, or (leaves) the returned gradient
    grad = {step.node: np.asarray(step.cotangent) for step in trace.steps}
    grad.update(result.gradients)
    received: dict[str, list[np.ndarray]] = {}
    for step in trace.steps:
        for name, _, c in step.contributions:
            assert np.shape(c) == np.shape(grad[name])  # already unbroadcast to the input's shape
            received.setdefault(name, []).append(np.asarray(c))
    assert set(trace.fan_in) == {name for name, parts in received.items() if len(parts) > 1}
    for name, parts in received.items():
        np.testing.assert_allclose(sum(parts), grad[name], rtol=1e-12, atol=1e-15)
    for name, fan in trace.fan_in.items():
        np.testing.assert_allclose(sum(c for _, c in fan.contributions), grad[name], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(fan.total, grad[name], rtol=1e-12, atol=1e-15)
    # the gradients themselves are right (finite differences), so the sums are too
    graphengine.gradcheck(g.compile(), wrt=wrt, rng=rng)
    # JSON round trip keeps every number
    data = json.loads(json.dumps(trace.to_json()))
    for name, fan in data["fan_in"].items():
        np.testing.assert_allclose(
            np.sum([c["value"] for c in fan["contributions"]], axis=0), grad[name], rtol=1e-12, atol=1e-15
        )
    assert [s["node"] for s in data["steps"]] == [s.node for s in trace.steps]


@pytest.mark.parametrize("seed_", range(4))
def test_unit_split_adds_up_to_the_recorded_contributions(seed_: int) -> None:

    rng = np.random.default_rng(100 + seed_)
    g = graphengine.load_dict(random_graph_doc(rng, 8))
    plan = g.compile()
    values = plan.run_all()
    result = plan.value_and_grad(wrt=["x", "p0", "p1"], record=True)
    nodes = picture._node_picture(g, values, result.gradients, result.trace)
    units = picture._unit_picture(g, nodes, values, result.trace)
    for wire in nodes.wires:
        if wire.contribution is None:
            continue
        total = np.zeros(np.size(values[wire.src]))
        for unit in units.wires:
            if (
                units.boxes[unit.src].value_name == wire.src
                and units.boxes[unit.dst].value_name == wire.dst
                and unit.position == wire.position
            ):
                k = picture._unit_ids(wire.src, np.shape(values[wire.src])).index(unit.src)
                total[k] += unit.contribution
        np.testing.assert_allclose(total, np.ravel(wire.contribution), rtol=1e-10, atol=1e-14)


# --- real renders ----------------------------------------------------------------------------


@needs_dot
@pytest.mark.parametrize("which", ["seed", "fanout"])
def test_real_svg_and_png(which: str, seed, fanout, tmp_path: Path) -> None:
    graph = seed if which == "seed" else fanout
    dot, _ = diagram(graph, grad=True, highlight="W_h" if which == "seed" else None)
    svg = write(dot, tmp_path / "d.svg").read_text()
    root = ET.fromstring(svg)
    titles = {el.text for el in root.iter("{http://www.w3.org/2000/svg}title")}
    assert q("h[0]" if which == "seed" else "wx") in titles
    assert "Σ = c₁ + c₂" in svg and "xlink:title" in svg  # tooltips survive into SVG
    png = write(dot, tmp_path / "d.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert write(dot, tmp_path / "d.pdf").read_bytes()[:5] == b"%PDF-"


def _mlp(layers: int, width: int = 4) -> graphengine.Graph:
    """A deep narrow MLP: per layer a weight, a bias, a linear node and a tanh node."""
    rng = np.random.default_rng(0)
    params, nodes, prev = [], [], "x"
    for i in range(layers):
        params += [
            {"name": f"W{i}", "value": (rng.standard_normal((width, width)) * 0.5).tolist()},
            {"name": f"b{i}", "value": (rng.standard_normal(width) * 0.1).tolist()},
        ]
        nodes += [
            {"id": f"z{i}", "op": "linear", "inputs": [prev, f"W{i}", f"b{i}"], "label": f"layer {i}"},
            {"id": f"a{i}", "op": "tanh", "inputs": [f"z{i}"], "label": f"layer {i}"},
        ]
        prev = f"a{i}"
    nodes.append({"id": "loss", "op": "sum", "inputs": [prev]})
    return graphengine.load_dict(
        {
            "format": "graphengine/v1",
            "inputs": [{"name": "x", "shape": [None, width], "default": [[0.1] * width]}],
            "parameters": params,
            "nodes": nodes,
            "outputs": ["loss"],
        }
    )


@needs_dot
def test_500_node_mlp_renders_to_svg(tmp_path: Path) -> None:
    g = _mlp(125)  # 1 input + 250 parameters + 250 op nodes + loss = 502 values
    assert len(g.digraph) == 502
    started = time.perf_counter()
    dot, _ = diagram(g, grad=True)
    svg = write(dot, tmp_path / "mlp.svg").read_text()
    seconds = time.perf_counter() - started
    print(f"\n500-node MLP: DOT + SVG in {seconds:.2f} s, {len(svg) / 1e6:.1f} MB")  # measured, not asserted
    root = ET.fromstring(svg)
    groups = [el for el in root.iter("{http://www.w3.org/2000/svg}g") if el.get("class") == "cluster"]
    assert len(groups) == 125  # one frame per layer label
    assert "∂loss/∂W0" in svg


# --- CLI and Jupyter -------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_render_dot_and_trace(capsys, tmp_path: Path) -> None:
    out, trace_file = tmp_path / "seed.dot", tmp_path / "trace.json"
    code, stdout, err = run_cli(
        capsys, "render", str(SEED), "--grad", "--highlight", "W_h", "--trace", str(trace_file), "-o", str(out)
    )
    assert code == 0, err
    assert "wrote" in stdout and str(trace_file) in stdout
    assert "Σ = c₁ + c₂" in out.read_text() and "class=highlight" in out.read_text()
    trace = json.loads(trace_file.read_text())
    assert trace["output"] == "loss" and [s["node"] for s in trace["steps"]] == ["loss", "y", "y_pre", "h", "h_pre"]
    (h_pre,) = [s for s in trace["steps"] if s["node"] == "h_pre"]
    (to_w,) = [c for c in h_pre["contributions"] if c["to"] == "W_h"]
    np.testing.assert_allclose(to_w["value"], graphengine.load(SEED).grad()["W_h"], rtol=1e-12)


def test_cli_render_structure_to_stdout(capsys) -> None:
    code, stdout, _ = run_cli(capsys, "render", str(FANOUT), "--plugin", str(SINE_PLUGIN))
    assert code == 0 and stdout.startswith("digraph fanout {") and "dir=back" not in stdout


def test_cli_render_errors_are_one_line(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "render", str(SEED), "-o", str(tmp_path / "x.jpeg"))
    assert code == 1 and err.count("\n") == 1 and "use a .svg, .png, .pdf or .dot" in err
    code, _, err = run_cli(capsys, "render", str(SEED), "--highlight", "Wh")
    assert code == 1 and err.startswith("graphengine: error:") and "did you mean 'W_h'" in err


def test_without_dot_program_dot_works_and_svg_says_how_to_install(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no 'dot' anywhere
    code, _, err = run_cli(capsys, "render", str(SEED), "--grad", "-o", str(tmp_path / "d.dot"))
    assert code == 0, err
    for suffix in ("svg", "png"):
        code, _, err = run_cli(capsys, "render", str(SEED), "--grad", "-o", str(tmp_path / f"d.{suffix}"))
        assert code == 1 and err.count("\n") == 1
        assert err.startswith("graphengine: error:") and "install Graphviz" in err and "apt-get install graphviz" in err
        assert not (tmp_path / f"d.{suffix}").exists()
    # Jupyter falls back to text
    assert set(graphengine.load(SEED)._repr_mimebundle_()) == {"text/plain"}


@needs_dot
def test_jupyter_display(seed) -> None:
    bundle = seed._repr_mimebundle_()
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml") and "h = sigmoid(h_pre)" in bundle["image/svg+xml"]
    result = seed.value_and_grad(record=True)
    svg = result._repr_svg_()
    assert svg is not None and "Σ = c₁ + c₂" in svg and "∂loss/∂W_h[0,0]" in svg
    assert "plan" not in repr(result)  # the back-reference stays out of the repr


def test_committed_seed_diagram_shows_the_hidden_unit_sum(seed) -> None:
    """examples/seed_network.svg (linked from the README) carries today's numbers."""
    svg = (SEED.parent / "seed_network.svg").read_text()
    n = seed_numbers(seed)
    line = f"Σ = c₁ + c₂ = {fmt(n['branch'][0, 0])} + (&#45;{fmt(-n['branch'][1, 0])}) = {fmt(n['dh'][0])}"
    assert line in svg
    assert "∂loss/∂W_h[0,0] = 0.0004386" in svg


def test_docstring_examples(monkeypatch) -> None:
    import doctest

    from graphengine.render import api

    monkeypatch.chdir(SEED.parent.parent)
    result = doctest.testmod(api, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0


def test_render_error_is_public() -> None:
    namespace: dict[str, Any] = {}
    exec("from graphengine import *", namespace)  # every name in __all__ must exist
    assert namespace["RenderError"] is RenderError and issubclass(RenderError, graphengine.GraphEngineError)


def test_write_names_a_wrong_argument(tmp_path) -> None:
    from graphengine.render import diagram, write

    pair = diagram(graphengine.load(SEED))
    with pytest.raises(graphengine.RenderError, match=r"diagram\(\) returns \(dot, result\)"):
        write(pair, tmp_path / "x.svg")  # type: ignore[arg-type]
