"""The explorer's player: plain JavaScript and CSS, embedded in every page (no network, no libraries).

The script reads the page's JSON data and only ever writes ``textContent``,
classes and styles: no string from the graph file becomes markup or code.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .safe import html_text

PLAYER_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#111827;background:#fff}
header{padding:8px 16px 0}h1{font-size:18px;margin:0}header p{margin:2px 0 0;color:#4b5563;font-size:13px}
#ge-controls{display:flex;flex-wrap:wrap;gap:6px;align-items:center;padding:8px 16px;border-bottom:1px solid #e5e7eb;
position:sticky;top:0;background:#fff;z-index:2}
#ge-controls button{font:inherit;padding:3px 9px;border:1px solid #cbd5e1;border-radius:5px;background:#f8fafc;cursor:pointer}
#ge-controls button:hover{background:#e2e8f0}#ge-slider{width:220px}#ge-counter{min-width:150px;color:#334155}
#ge-main{display:flex;align-items:flex-start}#ge-diagram{flex:1;overflow:auto;padding:8px;max-height:calc(100vh - 110px)}
#ge-panel{width:400px;flex:none;padding:4px 14px;border-left:1px solid #e5e7eb;max-height:calc(100vh - 110px);overflow:auto}
#ge-panel h2{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:#64748b;margin:12px 0 4px}
#ge-step-text{font-size:14px;margin:0;white-space:pre-wrap}.ge-phase{font-weight:700;color:#c0392b}
.ge-phase.forward{color:#15803d}#ge-sum-list{margin:0;padding-left:18px;font-size:13px}
#ge-sum-list li{margin:2px 0;color:#6b7280}#ge-sum-list li.ge-partial{color:#c0392b}
#ge-sum-list li.ge-done{color:#7f1d1d;font-weight:600}.ge-hint{color:#94a3b8;margin:0}
table.ge-heat{border-collapse:collapse;font-size:11px;margin:4px 0}table.ge-heat td{border:1px solid #e5e7eb;
padding:1px 4px;text-align:right;font-variant-numeric:tabular-nums}
.ge-arr{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
#ge-diagram.ge-fit svg{max-width:100%;height:auto}
g.node,g.edge{cursor:pointer;transition:opacity .2s}g.node polygon,g.node path,g.node text{pointer-events:all}
g.cluster>text{cursor:pointer;text-decoration:underline dotted}
g.ge-future{opacity:.22}g.ge-dim{opacity:.18}g.ge-gone{display:none}
g.ge-lit{filter:drop-shadow(0 0 5px #f97316) drop-shadow(0 0 2px #f97316)}
g.ge-lit>polygon:last-of-type,g.ge-lit>path:last-of-type{stroke:#f97316;stroke-width:3}
g.edge.ge-current path{stroke:#f97316;stroke-width:3.5}g.edge.ge-current polygon{stroke:#f97316;fill:#f97316}
g.edge.ge-current text{fill:#9a3412;font-weight:700}
g.ge-hl path{stroke-width:2.6}g.node.ge-hl{filter:drop-shadow(0 0 3px #2563eb)}
g.ge-selected{filter:drop-shadow(0 0 4px #2563eb)}
g.ge-layer-box{cursor:zoom-in}
"""

PLAYER_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("ge-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var keys = Object.keys(D.boxes);
  var el = {}, gradText = {}, sigmaText = {}, needs = {}, layerOf = {}, boxById = {}, wireById = {}, layerById = {};
  var nForward = D.steps.filter(function (s) { return s.phase === "forward"; }).length;
  var current = 0, timer = null, selected = null, shut = {};

  function findText(g, wanted) {
    if (!g || !wanted) return null;
    var texts = g.getElementsByTagName("text");
    for (var i = 0; i < texts.length; i++) if (texts[i].textContent === wanted) return texts[i];
    return null;
  }
  keys.forEach(function (k) { needs[k] = 0; boxById[D.boxes[k].id] = k; });
  D.wires.forEach(function (w, k) { if (w.back) needs[w.src] += 1; wireById[w.fwd] = k; if (w.back) wireById[w.back] = k; });
  D.layers.forEach(function (L, i) { L.boxes.forEach(function (id) { layerOf[id] = i; }); layerById[L.id] = i; layerById[L.box] = i; });

  // The layout on screen is one of several (one per set of collapsed layers): find its elements again after a switch.
  function bind() {
    keys.forEach(function (k) {
      var b = D.boxes[k];
      el[k] = document.getElementById(b.id);
      gradText[k] = findText(el[k], b.grad_row);
      sigmaText[k] = b.sigma ? findText(el[k], b.sigma[b.sigma.length - 1]) : null;
    });
    D.layers.forEach(function (L) { L.cover = document.getElementById(L.box); });
  }
  function layout(set) {
    var key = D.layers.map(function (L, i) { return i; }).filter(function (i) { return set[i]; }).join("-");
    if (D.layouts.indexOf(key) < 0) {  // many layers: only all open and all collapsed are laid out
      var all = D.layers.some(function (L, i) { return set[i] && !shut[i]; });
      set = {}; D.layers.forEach(function (L, i) { set[i] = all; });
      key = all ? D.layouts[D.layouts.length - 1] : "";
    }
    shut = set;
    $("ge-diagram").replaceChildren(document.getElementById("ge-layout-" + (key || "open")).content.cloneNode(true));
    selected = null;
    bind();
    var any = D.layers.some(function (L, i) { return shut[i]; });
    $("ge-collapse").textContent = any ? "expand layers" : "collapse layers";
    highlight();
    if (D.steps.length) show(current);
  }
  function setCollapsed(i, on) { var set = {}; D.layers.forEach(function (L, j) { set[j] = j === i ? on : !!shut[j]; }); layout(set); }

  function wireEls(w) { return [document.getElementById(w.fwd), w.back ? document.getElementById(w.back) : null]; }
  function cls(node, name, on) { if (node) node.classList.toggle(name, !!on); }
  function minStep() { return $("ge-forward").checked ? 0 : Math.min(nForward, D.steps.length - 1); }

  function arrivedUpTo(s) {
    var arrived = {};
    for (var i = nForward; i <= s && i < D.steps.length; i++) D.steps[i].sends.forEach(function (k) { arrived[k] = true; });
    return arrived;
  }

  function show(s) {
    if (!D.steps.length) { $("ge-counter").textContent = "structure only"; renderSums({}, -1); return; }
    s = Math.max(minStep(), Math.min(D.steps.length - 1, s));
    current = s;
    var step = D.steps[s], backward = step.phase === "backward";
    var arrived = backward ? arrivedUpTo(s) : {};
    var count = {};
    D.wires.forEach(function (w, k) { if (arrived[k]) count[w.src] = (count[w.src] || 0) + 1; });
    var computed = {};
    for (var i = 0; i < nForward && (backward || i <= s); i++) computed[D.steps[i].tensor] = true;
    var lit = {};
    step.lit.forEach(function (k) { lit[k] = true; });
    keys.forEach(function (k) {
      var b = D.boxes[k], known = backward && (b.tensor === D.output || (needs[k] > 0 && count[k] === needs[k]));
      cls(el[k], "ge-future", b.kind === "op" && !backward && !computed[b.tensor]);
      cls(el[k], "ge-lit", lit[k]);
      if (gradText[k]) gradText[k].textContent = known ? b.grad_row : b.grad_pending;
      if (sigmaText[k]) sigmaText[k].textContent = b.sigma[Math.min(count[k] || 0, b.sigma.length - 1)];
    });
    var sends = {};
    step.sends.forEach(function (k) { sends[k] = true; });
    D.wires.forEach(function (w, k) {
      var pair = wireEls(w);
      cls(pair[0], "ge-current", !backward && lit[w.dst]);
      if (pair[1]) { cls(pair[1], "ge-gone", !arrived[k]); cls(pair[1], "ge-current", sends[k]); }
    });
    D.layers.forEach(function (L, i) { cls(L.cover, "ge-lit", step.lit.some(function (k) { return layerOf[D.boxes[k].id] === i; })); });
    $("ge-slider").min = minStep(); $("ge-slider").max = D.steps.length - 1; $("ge-slider").value = s;
    var n = backward ? s - nForward + 1 : s + 1, total = backward ? D.steps.length - nForward : nForward;
    $("ge-counter").textContent = (backward ? "backward " : "forward ") + n + " / " + total;
    var phase = document.createElement("span");
    phase.className = "ge-phase " + step.phase;
    phase.textContent = backward ? "Backward · " : "Forward · ";
    $("ge-step-text").replaceChildren(phase, document.createTextNode(step.text));
    $("ge-step-text").setAttribute("data-lit", step.lit.join(" "));
    renderSums(count, backward ? s : -1);
  }

  function renderSums(count, s) {
    var items = [];
    keys.forEach(function (k) {
      var b = D.boxes[k];
      if (!b.sigma) return;
      var c = s < 0 ? 0 : Math.min(count[k] || 0, b.sigma.length - 1), li = document.createElement("li");
      li.textContent = b.name + ":  " + b.sigma[c];
      li.setAttribute("data-box", b.name);
      li.className = c === b.sigma.length - 1 ? "ge-done" : c > 0 ? "ge-partial" : "";
      items.push(li);
    });
    if (!items.length) { var none = document.createElement("li"); none.textContent = "no value here is read twice"; items.push(none); }
    $("ge-sum-list").replaceChildren.apply($("ge-sum-list"), items);
  }

  function arrayView(a) {
    var box = document.createElement("div");
    if (!a) { box.textContent = "—"; return box; }
    var shape = "shape (" + a.shape.join(", ") + (a.shape.length === 1 ? ",)" : ")");
    if (a.flat && a.shape.length === 2 && a.shape[0] <= 16 && a.shape[1] <= 16) {
      var t = document.createElement("table"), scale = 0;
      t.className = "ge-heat";
      a.flat.forEach(function (v) { if (v !== null) scale = Math.max(scale, Math.abs(v)); });
      for (var r = 0; r < a.shape[0]; r++) {
        var tr = document.createElement("tr");
        for (var c = 0; c < a.shape[1]; c++) {
          var i = r * a.shape[1] + c, v = a.flat[i], td = document.createElement("td");
          td.textContent = a.shown[i];
          var u = v === null || !scale ? 0 : 0.6 * v / scale;
          td.style.background = u >= 0 ? "rgb(255," + Math.round(255 * (1 - u)) + "," + Math.round(255 * (1 - u)) + ")"
            : "rgb(" + Math.round(255 * (1 + u)) + "," + Math.round(255 * (1 + u)) + ",255)";
          tr.appendChild(td);
        }
        t.appendChild(tr);
      }
      var cap = document.createElement("div"); cap.textContent = shape; box.append(cap, t);
    } else if (a.shown && a.shown.length <= 64) {
      box.className = "ge-arr"; box.textContent = shape + "  [" + a.shown.join(", ") + "]";
    } else {
      box.className = "ge-arr";
      var st = a.stats || {};
      box.textContent = shape + "  mean " + st.mean + "  std " + st.std + "  min " + st.min + "  max " + st.max +
        (a.nonfinite ? "  (" + a.nonfinite + " NaN/Inf)" : "");
    }
    return box;
  }

  function detail(title, rows) {
    var body = $("ge-detail-body"), h = document.createElement("h3");
    h.textContent = title; h.style.margin = "4px 0";
    var parts = [h];
    rows.forEach(function (r) { var p = document.createElement("div"); p.textContent = r[0]; p.style.marginTop = "6px";
      p.style.fontWeight = "600"; parts.push(p, r[1] instanceof Node ? r[1] : arrayView(r[1])); });
    body.replaceChildren.apply(body, parts);
    body.setAttribute("data-shows", title);
  }

  function select(g) { if (selected) cls(selected, "ge-selected", false); selected = g; cls(g, "ge-selected", true); }
  function boxPanel(k) {
    var b = D.boxes[k], t = D.tensors[b.tensor] || {}, rows = [];
    select(el[k]);
    if (b.tensor !== b.name) rows.push(["this element: value " + b.value + (b.grad ? ",  gradient " + b.grad : ""), document.createElement("span")]);
    rows.push(["value of " + b.tensor + "  (" + t.spec + ")", t.value]);
    rows.push(["gradient ∂" + D.output + "/∂" + b.tensor + " (at the end of the pass)", t.grad]);
    if (b.sigma) rows.push([b.sigma[b.sigma.length - 1] + "   (from " + b.sources.join(", ") + ")", document.createElement("span")]);
    detail(b.name + (b.formula ? " = " + b.formula : "  (" + b.kind + ")"), rows);
  }
  function wirePanel(g, w) {
    select(g);
    var rows = [["forward: " + w.dst + " reads " + w.src, document.createElement("span")]];
    if (w.back) rows.push(["backward: " + (w.tag ? w.tag + ", " : "") + "the contribution " + w.dst + " sends to " + w.src, w.array]);
    detail(w.src + " → " + w.dst, rows);
  }
  // One listener for whatever layout is on screen: a box, an arrow, a collapsed layer, or a layer's name.
  $("ge-diagram").addEventListener("click", function (e) {
    for (var g = e.target.closest("g"); g; g = g.parentElement && g.parentElement.closest("g")) {
      if (g.classList.contains("node")) {
        if (g.id in boxById) boxPanel(boxById[g.id]);
        else if (g.id in layerById) setCollapsed(layerById[g.id], false);
        return;
      }
      if (g.classList.contains("edge")) { if (g.id in wireById) wirePanel(g, D.wires[wireById[g.id]]); return; }
      if (g.classList.contains("cluster")) {
        if (g.id in layerById && e.target.tagName === "text") setCollapsed(layerById[g.id], true);  // the layer's name
        return;
      }
    }
  });
  $("ge-collapse").addEventListener("click", function () {
    var any = D.layers.some(function (L, i) { return !shut[i]; }), set = {};
    D.layers.forEach(function (L, i) { set[i] = any; });
    layout(set);
  });
  if (!D.layers.length) $("ge-collapse").disabled = true;

  Object.keys(D.highlight).forEach(function (name) {
    var o = document.createElement("option"); o.value = name; o.textContent = name; $("ge-highlight").appendChild(o);
  });
  function highlight() {
    var h = D.highlight[$("ge-highlight").value], onBox = {}, onWire = {};
    if (h) { h.boxes.forEach(function (id) { onBox[id] = true; }); h.wires.forEach(function (k) { onWire[k] = true; }); }
    keys.forEach(function (k) { var id = D.boxes[k].id; cls(el[k], "ge-dim", h && !onBox[id]); cls(el[k], "ge-hl", h && onBox[id]); });
    D.wires.forEach(function (w, k) { wireEls(w).forEach(function (g) { cls(g, "ge-dim", h && !onWire[k]); cls(g, "ge-hl", h && onWire[k]); }); });
  }
  $("ge-highlight").addEventListener("change", highlight);

  function stop() { if (timer) { clearInterval(timer); timer = null; } $("ge-play").textContent = "▶ play"; }
  function play() {
    if (timer) { stop(); return; }
    if (current >= D.steps.length - 1) show(minStep());
    $("ge-play").textContent = "⏸ pause";
    timer = setInterval(function () { if (current >= D.steps.length - 1) stop(); else show(current + 1); }, 1100);
  }
  $("ge-play").addEventListener("click", play);
  $("ge-next").addEventListener("click", function () { stop(); show(current + 1); });
  $("ge-back").addEventListener("click", function () { stop(); show(current - 1); });
  $("ge-first").addEventListener("click", function () { stop(); show(minStep()); });
  $("ge-last").addEventListener("click", function () { stop(); show(D.steps.length - 1); });
  $("ge-slider").addEventListener("input", function () { stop(); show(parseInt(this.value, 10)); });
  $("ge-forward").addEventListener("change", function () { show(this.checked ? current : Math.max(current, nForward)); });
  document.addEventListener("keydown", function (e) {
    if (e.target && (e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "checkbox" || e.target.tagName === "SELECT")) return;
    if (e.key === "ArrowRight") { stop(); show(current + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { stop(); show(current - 1); e.preventDefault(); }
    else if (e.key === " ") { play(); e.preventDefault(); }
    else if (e.key === "Home") { stop(); show(minStep()); e.preventDefault(); }
    else if (e.key === "End") { stop(); show(D.steps.length - 1); e.preventDefault(); }
  });
  $("ge-zoom").addEventListener("click", function () {
    var fit = $("ge-diagram").classList.toggle("ge-fit");
    this.textContent = fit ? "zoom: fit" : "zoom: 100%";
  });
  $("ge-description").textContent = D.description;
  if (!D.has_values) $("ge-step-text").textContent = "Structure only: an input has no value. Feed the inputs (--feed NAME=VALUE) to see the passes.";
  var start = {};
  D.layers.forEach(function (L, i) { start[i] = D.collapsed; });
  layout(start);
  if (!D.steps.length) renderSums({}, -1);
  window.geExplorer = { data: D, step: function () { return current; }, show: show };
})();
"""


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element: ``<``, ``>`` and ``&`` as escapes, everything non-ASCII too."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(layouts: dict[str, str], data: dict[str, Any]) -> str:
    """The page: ``layouts`` (SVG by :func:`~graphengine.render.collapse.layout_key`) in ``<template>`` elements."""
    digest = base64.b64encode(hashlib.sha256(PLAYER_JS.encode()).digest()).decode()
    csp = f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:"
    title = html_text(data["title"])
    templates = "\n".join(f'<template id="ge-layout-{key or "open"}">{svg}</template>' for key, svg in layouts.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · graphengine explorer</title>
<style>{PLAYER_CSS}</style></head>
<body>
<header><h1>{title}</h1><p id="ge-description"></p></header>
<div id="ge-controls">
<button id="ge-first" title="first step (Home)">|◀</button><button id="ge-back" title="step back (←)">◀</button>
<button id="ge-play" title="play / pause (space)">▶ play</button><button id="ge-next" title="step forward (→)">▶</button>
<button id="ge-last" title="last step (End)">▶|</button>
<input id="ge-slider" type="range" min="0" max="0" value="0" aria-label="step">
<span id="ge-counter"></span>
<label><input id="ge-forward" type="checkbox" checked> forward pass first</label>
<label>highlight paths to <select id="ge-highlight"><option value="">(none)</option></select></label>
<button id="ge-collapse" title="collapse or expand every labelled layer">collapse layers</button>
<button id="ge-zoom" title="fit the diagram to the window, or show it at full size">zoom: fit</button>
</div>
<div id="ge-main"><div id="ge-diagram" class="ge-fit"></div>
<aside id="ge-panel"><section id="ge-step"><h2>Step</h2><p id="ge-step-text"></p></section>
<section id="ge-sums"><h2>Sums (Σ): where branches meet</h2><ul id="ge-sum-list"></ul></section>
<section id="ge-detail"><h2>Details</h2><p class="ge-hint">Click a box or an arrow.</p><div id="ge-detail-body"></div></section>
</aside></div>
{templates}
<script type="application/json" id="ge-data">{_json_for_script(data)}</script>
<script>{PLAYER_JS}</script>
</body></html>
"""
