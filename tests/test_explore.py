"""The explorer page's data: the embedded trace replays to the right gradients, every Σ is right, strings are data."""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SEED, SINE_PLUGIN

import graphengine
from graphengine.cli import main
from graphengine.render import Explorer, explore

pytestmark = pytest.mark.skipif(
    shutil.which("dot") is None, reason="the Graphviz 'dot' program is not installed (apt-get install graphviz)"
)
FANOUT = SEED.parent / "custom_op" / "fanout.json"
DIGITS = SEED.parent / "digits" / "mlp.json"


def page_json(page: Explorer) -> dict[str, Any]:
    """The data as the browser reads it: parsed back out of the page's <script type="application/json">."""
    (text,) = re.findall(r'<script type="application/json" id="ge-data">(.*?)</script>', page.html, re.S)
    return json.loads(text)


def finite_difference_gradients(graph: graphengine.Graph, h: float = 1e-6) -> dict[str, np.ndarray]:
    """∂loss/∂parameter by central differences of the forward pass (not the engine's backward pass)."""
    plan = graph.compile()
    out = graph.loss or graph.outputs[0]
    grads = {}
    for name, value in graph.parameters.items():
        base = np.array(value, dtype=float)
        grad = np.zeros_like(base)
        for i in np.ndindex(base.shape):
            for sign in (1, -1):
                shifted = base.copy()
                shifted[i] += sign * h
                graph.parameters[name] = shifted
                grad[i] += sign * float(plan.run_all()[out]) / (2 * h)
        graph.parameters[name] = value
        grads[name] = grad
    return grads


def replay(data: dict[str, Any]) -> dict[str, float]:
    """Add up, in step order, what the page's backward steps send along each arrow: one total per box."""
    totals: dict[str, float] = {}
    for step in data["steps"]:
        for k in step["sends"]:
            wire = data["wires"][k]
            totals[wire["src"]] = totals.get(wire["src"], 0.0) + float(np.sum(wire["array"]["flat"]))
    return totals


@pytest.mark.parametrize("which", ["seed", "fanout"])
def test_the_embedded_trace_replays_to_the_finite_difference_gradients(which: str) -> None:
    graph = graphengine.load(SEED) if which == "seed" else graphengine.load(FANOUT, plugins=[str(SINE_PLUGIN)])
    data = page_json(explore(graph))
    totals = replay(data)
    for name, expected in finite_difference_gradients(graph).items():
        for index in np.ndindex(expected.shape):
            box = name if expected.size == 1 else f"{name}[{','.join(map(str, index))}]"
            box = box if box in data["boxes"] else name  # node-level drawing: one box per tensor
            got = totals[box] if box != name or expected.size == 1 else None
            if got is None:
                got = np.asarray(data["tensors"][name]["grad"]["flat"]).reshape(expected.shape)[index]
            assert got == pytest.approx(expected[index], rel=1e-6, abs=1e-10), (name, index)


def test_every_sigma_on_the_page_equals_the_gradient_worked_by_hand() -> None:
    graph = graphengine.load(SEED)
    data = page_json(explore(graph))
    x, target = np.array([0.05, 0.10]), np.array([0.01, 0.99])
    W_h, b_h, W_o, b_o = (np.asarray(graph.parameters[k]) for k in ("W_h", "b_h", "W_o", "b_o"))
    h = 1 / (1 + np.exp(-(W_h @ x + b_h)))
    y = 1 / (1 + np.exp(-(W_o @ h + b_o)))
    delta_o = (y - target) * y * (1 - y)
    delta_h = (delta_o @ W_o) * h * (1 - h)
    by_hand = {
        "h[0]": (delta_o * W_o[:, 0], (delta_o @ W_o)[0]),
        "h[1]": (delta_o * W_o[:, 1], (delta_o @ W_o)[1]),
        "b_o": (delta_o, delta_o.sum()),
        "b_h": (delta_h, delta_h.sum()),
    }
    sums = {name: box["sigma"] for name, box in data["boxes"].items() if "sigma" in box}
    assert set(sums) == set(by_hand)
    for name, (terms, total) in by_hand.items():
        numbers = [float(t.strip("()")) for t in sums[name][-1].split(" = ")[2].split(" + ")]
        assert numbers == pytest.approx(terms, rel=1e-3)
        assert float(sums[name][-1].rsplit(" = ", 1)[1]) == pytest.approx(total, rel=1e-3)
        assert sums[name][0].endswith("= ? + ?") and sums[name][1].endswith(" + ?")  # filling up term by term
    assert by_hand["h[0]"][1] == pytest.approx(0.036350306, rel=1e-6)  # Mazur's ∂E/∂out_h1


def test_steps_follow_the_engine_and_explain_each_product() -> None:
    graph = graphengine.load(SEED)
    result = graph.compile().value_and_grad(record=True)
    data = page_json(explore(graph))
    forward = [s for s in data["steps"] if s["phase"] == "forward"]
    backward = [s for s in data["steps"] if s["phase"] == "backward"]
    assert [s["tensor"] for s in forward] == list(graph.nodes)
    assert [s["tensor"] for s in backward] == ["loss"] + [
        step.node for step in result.trace.steps for _ in range(max(1, int(np.size(step.cotangent))))
    ]
    (step,) = [s for s in backward if s["lit"] == ["y_pre[0]"]]
    assert "→ h[0]: c₁ = 0.1385 × 0.4 = 0.0554" in step["text"]


def test_file_strings_are_data_on_the_page(write_graph) -> None:
    evil = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"
    doc = {
        "format": "graphengine/v1",
        "name": evil + "\ud800",
        "description": evil,
        "inputs": [{"name": "x", "shape": [2], "default": [1.0, 2.0], "description": evil}],
        "parameters": [{"name": "w", "value": [0.5, -0.5]}],
        "nodes": [
            {"id": "p", "op": "mul", "inputs": ["x", "w"], "label": evil},
            {"id": "s", "op": "sum", "inputs": ["p"], "label": '<<IMG SRC="/etc/passwd"/>>'},
        ],
        "outputs": ["s"],
    }
    page = explore(graphengine.load(write_graph(doc)))
    page.html.encode("utf-8")  # the lone surrogate did not survive as one
    assert page.html.count("<script") == 2 and "<img" not in page.html.lower().replace("&lt;img", "")
    assert "onerror=alert(2)>" not in page.html.replace("onerror=alert(2)&gt;", "")
    assert "<image" not in page.html
    assert page_json(page)["description"] == evil  # shown as text, intact
    assert "Content-Security-Policy" in page.html and "default-src 'none'" in page.html


def test_structure_only_without_values_and_one_note(capsys, tmp_path: Path) -> None:
    page = explore(graphengine.load(DIGITS))
    data = page_json(page)
    assert not data["has_values"] and not data["has_trace"]
    assert all(s["phase"] == "forward" for s in data["steps"]) and "float64[?, 64]" in page.html
    out = tmp_path / "digits.html"
    assert main(["explore", str(DIGITS), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert out.read_text().startswith("<!DOCTYPE html>") and captured.out.startswith(f"wrote {out}")
    assert captured.err.count("\n") == 1 and "structure only" in captured.err


def test_digits_mlp_with_data_and_a_500_node_graph(capsys, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((32, 64)))
    np.save(tmp_path / "label.npy", rng.integers(0, 10, 32))
    started = time.perf_counter()
    code = main(
        [
            "explore",
            str(DIGITS),
            "--feed",
            f"x={tmp_path / 'x.npy'}",
            "--feed",
            f"label={tmp_path / 'label.npy'}",
            "-o",
            str(tmp_path / "d.html"),
        ]
    )
    seconds = time.perf_counter() - started
    assert code == 0, capsys.readouterr().err
    data = page_json_from(tmp_path / "d.html")
    assert data["has_trace"] and "W1" in data["highlight"] and data["tensors"]["W2"]["grad"]["shape"] == [10, 32]
    from test_render import _mlp

    started = time.perf_counter()
    big = explore(_mlp(125))
    print(f"\nexplore: digits MLP batch 32 in {seconds:.2f} s; 502-value MLP in {time.perf_counter() - started:.2f} s")
    assert page_json(big)["collapsed"] and len(page_json(big)["layers"]) == 125


def page_json_from(path: Path) -> dict[str, Any]:
    return page_json(Explorer(path.read_text(), {}))


def test_jupyter_shows_the_page_in_a_sandboxed_iframe() -> None:
    page = explore(graphengine.load(SEED))
    shown = page._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in shown
    assert html.unescape(re.search(r'srcdoc="([^"]*)"', shown).group(1)) == page.html  # type: ignore[union-attr]


def test_cli_errors_are_one_line(capsys, tmp_path: Path) -> None:
    assert main(["explore", str(SEED), "--feed", "x=[1, 2, 3]", "-o", str(tmp_path / "p.html")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x" in err
    assert main(["explore", str(SEED), "-o", str(tmp_path / "missing" / "p.html")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_page_json_cannot_close_its_script_and_ids_are_distinct() -> None:
    from graphengine.render.player import _json_for_script
    from graphengine.render.safe import dot_id

    text = _json_for_script({"s": "</script><!-- \u2028 & \ud800"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text)["s"] == "</script><!-- \u2028 & \ud800"
    names = ["h[0]", "h_5b_0_5d_", "a.b", "a-b", "a_b", "ab", "a_2e_b", "W_h[0,1]", "W_h[01]"]
    assert len({dot_id(n) for n in names}) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", dot_id(n)) for n in names)


def test_collapsed_layouts_are_laid_out_again_with_one_box_per_layer() -> None:
    """One dot layout per set of collapsed layers (2 layers: 4); in each, a collapsed layer is one box."""
    from graphengine.render.collapse import layer_box_id
    from graphengine.render.safe import dot_id

    page = explore(graphengine.load(SEED))
    assert page.data["layouts"] == ["", "0", "1", "0-1"]
    found = re.findall(r'<template id="ge-layout-([^"]+)">(.*?)</template>', page.html, flags=re.S)
    layouts = {key: html.unescape(svg) for key, svg in found}  # dot writes "-" in ids as &#45;
    assert sorted(layouts) == ["0", "0-1", "1", "open"]
    hidden, output = (set(layer["boxes"]) for layer in page.data["layers"])
    for key, svg in layouts.items():
        ids = set(re.findall(r'<g id="([^"]+)" class="node', svg))
        shut = {int(k) for k in key.split("-")} if key != "open" else set()
        for k, members in enumerate((hidden, output)):
            assert (dot_id(layer_box_id(k)) in ids) == (k in shut), key
            assert (members <= ids) == (k not in shut) and (members & ids == set()) == (k in shut), key
        width = float(re.search(r'<svg width="([0-9.]+)pt', svg).group(1))
        assert width < float(re.search(r'<svg width="([0-9.]+)pt', layouts["open"]).group(1)) or not shut
        every_id = re.findall(r' id="([^"]+)"', svg)
        assert len(every_id) == len(set(every_id)), key  # a tensor's frame no longer inherits its layer's id
    # arrows between boxes that stay keep their ids, so the player finds them in every layout
    assert 'id="w-0-f"' in layouts["open"] and re.search(r'id="lw-\d+-f"', layouts["0-1"])
