"""The explorer in a real browser: Debian's chromium driven by Playwright, the page opened from a file:// URL."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from conftest import SEED, SINE_PLUGIN

import graphengine
from graphengine.render import explore
from graphengine.render.safe import dot_id

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz 'dot' program is not installed"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser: Any, graph: graphengine.Graph, tmp_path: Path, **kw: Any) -> tuple[Any, list[str]]:
    path = explore(graph, **kw).save(tmp_path / "page.html")
    page = browser.new_page(viewport={"width": 1500, "height": 950})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("request", lambda r: problems.append(f"request: {r.url}") if not r.url.startswith("file://") else None)
    page.goto(path.resolve().as_uri())
    return page, problems


def lit(page: Any) -> list[str]:
    return sorted(page.eval_on_selector_all("g.node.ge-lit", "els => els.map(e => e.id)"))


def sigma_on(page: Any, name: str) -> str:
    """The Σ row drawn inside the box of ``name`` (an SVG text element the player rewrites)."""
    return page.eval_on_selector(
        f"#{dot_id(name)}", "g => [...g.querySelectorAll('text')].map(t => t.textContent).find(t => t.startsWith('Σ'))"
    )


def hand_numbers(graph: graphengine.Graph) -> dict[str, Any]:
    """The seed network's backward pass by the textbook formulas (not the engine)."""
    x, target = np.array([0.05, 0.10]), np.array([0.01, 0.99])
    W_h, b_h, W_o, b_o = (np.asarray(graph.parameters[k]) for k in ("W_h", "b_h", "W_o", "b_o"))
    h = 1 / (1 + np.exp(-(W_h @ x + b_h)))
    y = 1 / (1 + np.exp(-(W_o @ h + b_o)))
    delta_o = (y - target) * y * (1 - y)
    return {"branch": delta_o[:, None] * W_o, "dh": delta_o @ W_o}


def fmt(v: float) -> str:
    text = f"{v:.4g}"
    return f"({text})" if text.startswith("-") else text


def test_seed_network_step_by_step_with_the_keyboard(browser: Any, tmp_path: Path) -> None:
    graph = graphengine.load(SEED)
    trace = graph.compile().value_and_grad(record=True).trace
    n = hand_numbers(graph)
    page, problems = open_page(browser, graph, tmp_path)
    # the forward phase: one op node at a time, in execution order
    for node_id in graph.nodes:
        units = [f"{node_id}[{i}]" for i in range(2)] if node_id != "loss" else ["loss"]
        assert lit(page) == sorted(dot_id(u) for u in units)
        page.keyboard.press("ArrowRight")
    # the backward phase: the seed, then every unit the engine's trace visits, in its order
    expected = [["loss"]] + [
        [step.node] if step.node == "loss" else [f"{step.node}[{i}]"]
        for step in trace.steps
        for i in range(2 if step.node != "loss" else 1)
    ]
    visited: set[str] = set()
    for k, units in enumerate(expected):
        assert lit(page) == [dot_id(u) for u in units], k
        visited |= set(units)
        for j in range(2):  # h[j]'s Σ row gains one term per output unit already visited
            terms = [fmt(n["branch"][i, j]) if f"y_pre[{i}]" in visited else "?" for i in range(2)]
            want = f"Σ = c₁ + c₂ = {terms[0]} + {terms[1]}"
            if "?" not in terms:
                want += f" = {n['dh'][j]:.4g}"
            assert sigma_on(page, f"h[{j}]") == want, (k, j)
        if k < len(expected) - 1:
            page.keyboard.press("ArrowRight")
    assert "backward 10 / 10" in page.inner_text("#ge-counter")
    page.keyboard.press("ArrowLeft")
    assert lit(page) == [dot_id("h_pre[0]")]
    page.screenshot(path=str(tmp_path / "seed_last.png"))
    assert problems == []


def test_click_a_node_and_an_arrow_highlight_and_collapse(browser: Any, tmp_path: Path) -> None:
    page, problems = open_page(browser, graphengine.load(SEED), tmp_path)
    page.click(f"#{dot_id('h[0]')}")
    panel = page.inner_text("#ge-detail-body")
    assert page.get_attribute("#ge-detail-body", "data-shows").startswith("h[0]")
    assert "0.5933" in panel and "0.5969" in panel and "0.03635" in panel and "0.04137" in panel
    page.click(f"#{dot_id('W_h[0,0]')}")
    assert page.eval_on_selector_all("#ge-detail-body table.ge-heat td", "tds => tds.length") == 8  # value and gradient
    page.select_option("#ge-highlight", "W_h")
    assert page.eval_on_selector(f"#{dot_id('W_o[0,0]')}", "g => g.classList.contains('ge-dim')")
    assert not page.eval_on_selector(f"#{dot_id('h[1]')}", "g => g.classList.contains('ge-dim')")
    page.select_option("#ge-highlight", "")
    collapse_and_expand_a_layer(page)
    page.keyboard.press("End")  # every dashed arrow is there now; click the one h[0] gets from y_pre[0]
    k = page.evaluate("geExplorer.data.wires.findIndex(w => w.src === 'h[0]' && w.dst === 'y_pre[0]')")
    page.dispatch_event(f"#w-{k}-b", "click")
    n = hand_numbers(graphengine.load(SEED))
    assert page.get_attribute("#ge-detail-body", "data-shows") == "h[0] → y_pre[0]"
    assert f"{n['branch'][0, 0]:.4g}" in page.inner_text("#ge-detail-body")  # c₁ = δ_o[0] · W_o[0,0]
    page.keyboard.press("Space")  # play, then pause
    page.keyboard.press("Space")
    assert problems == []


def box_size(page: Any, selector: str) -> tuple[float, float]:
    """Width and height on screen, in the layout's own units (the SVG's viewBox), whatever the zoom."""
    return tuple(page.eval_on_selector(selector, "g => { const b = g.getBBox(); return [b.width, b.height]; }"))


def collapse_and_expand_a_layer(page: Any) -> None:
    """Clicking the layer's name lays the graph out again with the layer as one compact box; clicking the box opens it."""
    frame = box_size(page, "#layer-0")
    page.keyboard.press("End")  # the last backward step lights h_pre[1], inside the hidden layer
    page.click("#layer-0 text >> nth=0")  # the frame's caption, "hidden"
    layer_box = f"#{dot_id('layer box 0')}"
    assert page.locator(f"#{dot_id('h[0]')}").count() == 0 and page.locator(layer_box).is_visible()
    assert page.locator(f"#{dot_id('y_pre[0]')}").is_visible()  # the output layer stays open
    width, height = box_size(page, layer_box)
    assert width < frame[0] / 2 and height < frame[1] / 3, (width, height, frame)
    assert page.eval_on_selector(layer_box, "g => g.classList.contains('ge-lit')")  # the step inside it lights it
    caption = page.eval_on_selector(layer_box, "g => g.textContent")
    assert "hidden" in caption and "9 boxes inside" in caption
    page.click(layer_box)
    assert page.locator(layer_box).count() == 0 and page.locator(f"#{dot_id('h[0]')}").is_visible()
    assert box_size(page, "#layer-0") == frame  # the same layout as before
    assert lit(page) == [dot_id("h_pre[1]")] and sigma_on(page, "h[0]").endswith("= 0.03635")
    page.click("#ge-collapse")  # every layer
    assert page.locator("g.ge-layer-box").count() == 2 and page.inner_text("#ge-collapse") == "expand layers"
    page.click("#ge-collapse")
    assert page.locator("g.ge-layer-box").count() == 0
    page.keyboard.press("Home")


@pytest.mark.parametrize("which", ["fanout", "digits"])
def test_other_examples_open_without_errors(which: str, browser: Any, tmp_path: Path) -> None:
    if which == "fanout":
        graph = graphengine.load(SEED.parent / "custom_op" / "fanout.json", plugins=[str(SINE_PLUGIN)])
        feeds = None
    else:
        graph = graphengine.load(SEED.parent / "digits" / "mlp.json")
        rng = np.random.default_rng(0)
        feeds = {"x": rng.random((8, 64)), "label": rng.integers(0, 10, 8)}
    page, problems = open_page(browser, graph, tmp_path, feeds=feeds)
    page.keyboard.press("End")
    text = page.inner_text("#ge-step-text")
    assert "Backward" in text
    if which == "fanout":
        assert "Σ = c₁ + c₂ = (-0.00504) + (-0.00504) = -0.01008" in sigma_on(page, "wx")
    page.screenshot(path=str(tmp_path / f"{which}.png"))
    assert problems == []


def test_a_502_value_graph_opens_collapsed_to_its_layers(browser: Any, tmp_path: Path) -> None:
    from test_render import _mlp

    page, problems = open_page(browser, _mlp(125), tmp_path)
    assert page.locator("g.ge-layer-box").count() == 125 and page.locator(f"#{dot_id('z7')}").count() == 0
    page.keyboard.press("End")
    assert "Backward" in page.inner_text("#ge-step-text")
    assert page.eval_on_selector(f"#{dot_id('layer box 0')}", "g => g.classList.contains('ge-lit')")  # z0 is inside
    page.click(f"#{dot_id('layer box 3')}")  # past 3 layers there are two layouts: opening one opens all
    assert page.locator("g.ge-layer-box").count() == 0 and page.locator(f"#{dot_id('z7')}").is_visible()
    assert lit(page) == [dot_id("z0")]
    page.click("#layer-5 text >> nth=0")
    assert page.locator("g.ge-layer-box").count() == 125
    assert problems == []
