"""Static diagrams that stay readable (the explorer's issue): strings as data, structure without values,
the --units limit, layout direction, numbers that keep their digits, heatmaps and tensor Σ rows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SEED
from test_render import needs_dot, node

import graphengine
from graphengine.cli import main
from graphengine.render import diagram, write

# --- strings from the file are data -----------------------------------------------------------

EVIL = '<<IMG SRC="/etc/passwd"/>>'


def hostile_doc() -> dict[str, Any]:
    """Every free string a file can carry into a diagram (names are restricted by the schema), written as markup,
    a DOT escape or a lone surrogate."""
    return {
        "format": "graphengine/v1",
        "name": EVIL,
        "description": EVIL,
        "inputs": [{"name": "x", "shape": [2], "default": [1.0, 2.0], "description": EVIL}],
        "parameters": [{"name": "w", "value": [0.5, -0.5], "description": "\ud800"}],
        "nodes": [
            {"id": "p", "op": "mul", "inputs": ["x", "w"], "label": EVIL},
            {"id": "s", "op": "sum", "inputs": ["p"], "label": "a\\N\ud800 <layer>"},
        ],
        "outputs": ["s"],
    }


@pytest.mark.parametrize("units", [True, False])
def test_file_strings_never_become_dot_markup(units: bool, write_graph) -> None:
    graph = graphengine.load(write_graph(hostile_doc()))
    dot, _ = diagram(graph, grad=True, output="s", units=units, highlight="w")
    source = dot.source
    # The only unquoted HTML labels are our own tables; the file's strings stay in quoted DOT strings.
    assert not re.search(r"(=|digraph |subgraph )\s*<(?!<TABLE)", source)
    assert "<IMG" not in source and "<layer>" not in source  # nowhere, not even quoted
    assert 'digraph "&lt;&lt;IMG SRC=&quot;/etc/passwd&quot;/&gt;&gt;"' in source  # dot decodes it: shown as text
    assert '"a\\\\N\ufffd &lt;layer&gt;"' in source
    assert "a\\\\N" in source  # a backslash is shown, not read as DOT's \N escape
    assert "\ud800" not in source and "\ufffd" in source  # a lone surrogate becomes U+FFFD
    source.encode("utf-8")


@needs_dot
def test_hostile_file_renders_to_svg_without_reading_files(write_graph, tmp_path: Path) -> None:
    graph = graphengine.load(write_graph(hostile_doc()))
    for units in (True, False):
        dot, _ = diagram(graph, grad=True, output="s", units=units)
        svg = write(dot, tmp_path / "h.svg").read_text()
        assert "<image" not in svg and "&lt;IMG" in svg and "\ufffd" in svg
        assert main(["render", str(graph.file), "--grad", "--output", "s", "-o", str(tmp_path / "h.png")]) == 0


# --- readable as graphs grow ------------------------------------------------------------------

DIGITS = SEED.parent / "digits" / "mlp.json"


def test_structure_only_when_inputs_have_no_values(capsys, tmp_path: Path) -> None:
    dot, result = diagram(graphengine.load(DIGITS), grad=True)
    assert result is None and "float64[?, 64]" in dot.source and "relu" in dot.source
    assert main(["render", str(DIGITS), "--grad", "-o", str(tmp_path / "d.dot")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inputs 'x' and 'label' have no value" in err and "structure only" in err


def test_units_past_the_limit_fall_back_with_one_note(capsys, tmp_path: Path) -> None:
    from graphengine.render import UNIT_LIMIT, RenderWarning

    graph = graphengine.load(DIGITS)
    feeds = {"x": np.zeros((2, 64)), "label": np.array([1, 2])}
    with pytest.warns(RenderWarning, match=str(UNIT_LIMIT)):
        dot, _ = diagram(graph, feeds, grad=True, units=True)
    assert dot.source.count("cluster_v") == 0  # one box per tensor
    assert str(UNIT_LIMIT) in main_help("render")


def main_help(command: str) -> str:
    from graphengine.cli.main import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return " ".join(sub.choices[command].format_help().split())  # type: ignore[attr-defined]


def test_long_chains_go_top_to_bottom_short_ones_left_to_right(write_graph) -> None:
    seed = graphengine.load(SEED)
    nodes = [{"id": f"t{k}", "op": "tanh", "inputs": [f"t{k - 1}" if k else "x"]} for k in range(9)]
    doc = {"format": "graphengine/v1", "inputs": [{"name": "x", "shape": [], "default": 0.5}], "nodes": nodes}
    doc["outputs"] = ["t8"]
    assert "rankdir=TB" in diagram(graphengine.load(write_graph(doc)))[0].source
    assert "rankdir=LR" in diagram(seed, units=False)[0].source
    assert "rankdir=LR" in diagram(graphengine.load(write_graph(doc)), rankdir="LR")[0].source


@needs_dot
def test_a_row_of_wide_boxes_is_wrapped_top_to_bottom_too() -> None:
    """The digits MLP is short (5 ranks) but its boxes are wide: left to right it came out 6.5 times wider than tall."""
    feeds = {"x": np.full((4, 64), 0.5), "label": np.array([1, 2, 3, 4])}
    dot, _ = diagram(graphengine.load(DIGITS), feeds, grad=True)
    assert "rankdir=TB" in dot.source
    # a weight's short arrow beside its reader names what it carries; the summary is in the weight's box
    assert re.findall(r'xlabel="([^"]*)"', dot.source) == [
        "∂loss/∂W1 (32, 64)",
        "∂loss/∂b1 (32,)",
        "∂loss/∂W2 (10, 32)",
        "∂loss/∂b2 (10,)",
    ]
    assert diagram(graphengine.load(DIGITS), feeds, rankdir="LR")[0].source.count("rankdir=LR") == 1


def test_numbers_keep_the_digits_that_matter() -> None:
    from graphengine.render.numbers import _number

    assert _number(0.99997) == "0.99997" and _number(0.10004) == "0.10004"
    assert _number(0.0554) == "0.0554" and _number(1.0) == "1" and _number(0.123456) == "0.1235"
    for v in np.random.default_rng(0).normal(size=200) * 10.0 ** np.random.default_rng(1).integers(-6, 6, 200):
        shown = float(_number(float(v)))
        assert shown == pytest.approx(v, rel=1e-3)  # 4 digits at least, always close


def test_matrices_are_heatmaps_and_tensor_sums_have_numbers(write_graph) -> None:
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2], "default": [1.0, 2.0]}],
        "parameters": [{"name": "W", "value": [[1.0, -2.0], [3.0, 0.5]]}],
        "nodes": [
            {"id": "a", "op": "matmul", "inputs": ["W", "x"]},
            {"id": "b", "op": "matmul", "inputs": ["W", "x"]},
            {"id": "s", "op": "add", "inputs": ["a", "b"]},
            {"id": "l", "op": "sum", "inputs": ["s"]},
        ],
        "outputs": ["l"],
    }
    graph = graphengine.load(write_graph(doc))
    dot, result = diagram(graph, grad=True, units=False)
    w = node(dot.source, "W")
    assert w.count("<TD BGCOLOR=") >= 8 and ">-2<" in w  # 4 value cells and 4 gradient cells, numbers inside
    # W is read by a and b: each sends x as rows, ∂l/∂W = 2 * [x, x]
    assert "Σ = c₁ + c₂ = [[1, 2], [1, 2]] + [[1, 2], [1, 2]] = [[2, 4], [2, 4]]" in w
    np.testing.assert_allclose(result.gradients["W"], [[2, 4], [2, 4]])


def _element_positions(source: str) -> dict[str, tuple[float, float]]:
    import subprocess

    plain = subprocess.run(["dot", "-Tplain"], input=source, capture_output=True, text=True, check=True).stdout
    return {
        p[1]: (float(p[2]), float(p[3])) for p in (line.split() for line in plain.splitlines()) if p and p[0] == "node"
    }


def _chain(n: int = 7) -> dict[str, Any]:
    """x (2) through a weight and ``n`` tanh ops: long enough to be laid out top to bottom by default."""
    nodes = [{"id": "z", "op": "matmul", "inputs": ["W", "x"]}]
    nodes += [{"id": f"t{k}", "op": "tanh", "inputs": [f"t{k - 1}" if k else "z"]} for k in range(n)]
    nodes += [{"id": "r", "op": "add", "inputs": [f"t{n - 1}", "z"]}, {"id": "l", "op": "sum", "inputs": ["r"]}]
    return {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2], "default": [0.3, -0.8]}],
        "parameters": [{"name": "W", "value": [[0.5, -1.0], [0.25, 0.75]]}],
        "nodes": nodes,
        "outputs": ["l"],
    }


def _order_faults(graph: graphengine.Graph, source: str) -> list[str]:
    """Tensors whose element boxes are not in index order: LR top to bottom, TB left to right (element 0 first)."""
    from graphengine.render.picture import _unit_ids
    from graphengine.render.safe import dot_id

    pos = _element_positions(source)
    values = graph.compile().run_all()
    tb = "rankdir=TB" in source
    faults = []
    for name in graph.digraph.nodes:
        ids = [dot_id(u) for u in _unit_ids(name, np.shape(values[name]))]
        if len(ids) > 1 and sorted(ids, key=lambda k: pos[k][0] if tb else -pos[k][1]) != ids:
            faults.append(name)
    return faults


@needs_dot
@pytest.mark.parametrize("which", ["seed LR", "seed TB", "chain (TB by default)"])
def test_one_element_order_in_every_view(which: str, write_graph) -> None:
    """The forward-only and the gradient view lay out every tensor's elements in index order, element 0 first."""
    g = graphengine.load(SEED if which.startswith("seed") else write_graph(_chain()))
    rankdir = {"seed LR": "LR", "seed TB": "TB"}.get(which)
    for grad in (False, True):
        dot, _ = diagram(g, grad=grad, rankdir=rankdir, units=True)
        assert f"rankdir={rankdir or 'TB'}" in dot.source
        assert _order_faults(g, dot.source) == [], f"grad={grad}"


def test_summaries_count_in_the_singular_and_the_plural(capsys) -> None:
    fanout = SEED.parent / "custom_op" / "fanout.json"
    assert main(["validate", str(fanout), "--plugin", str(SEED.parent / "custom_op" / "sine.py")]) == 0
    out = capsys.readouterr().out
    assert "(1 input, 1 parameter, 0 constants, 5 nodes; output y)" in out
    assert main(["validate", str(SEED)]) == 0
    assert "(2 inputs, 4 parameters, 0 constants, 5 nodes; outputs loss, y)" in capsys.readouterr().out
