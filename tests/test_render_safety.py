"""A diagram of a hostile file opens no file: every string from the file reaches DOT as data, never as markup.

Each hostile string goes into ids, names, labels, the description and the document's name, and is
rendered through every view (structure, values, the recorded backward pass, one box per element,
highlight, a title). The DOT text must carry no ``<IMG>`` and no attribute naming a file; when
``strace`` is installed, ``dot`` itself runs under ``strace -f -e trace=open,openat`` and must open
nothing outside the system's own folders (fonts, libraries).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import graphengine

pytest.importorskip("graphviz", reason="python-graphviz is not installed")

BAIT = "/tmp/graphengine-render-bait.png"
HOSTILE_STRINGS = [
    f'<<IMG SRC="{BAIT}"/>>',
    f"<<TABLE><TR><TD><IMG SRC='{BAIT}'/></TD></TR></TABLE>>",
    f'x" image="{BAIT}',
    f'"]; evil [image="{BAIT}"]; x ["',
    "<b>bold</b>",
    "lone \ud800 surrogate",
    "back\\slash\\l\\N\\G",
    "new\nline\x1b[31m",
]
SYSTEM = (
    "/usr/",
    "/lib",
    "/etc/",
    "/proc/",
    "/sys/",
    "/dev/",
    "/var/cache/fontconfig",
    str(Path.home() / ".fontconfig"),
    str(Path.home() / ".cache" / "fontconfig"),
)


def hostile_doc(text: str) -> dict[str, Any]:
    return {
        "format": "graphengine/v1",
        "name": text,
        "description": text,
        "inputs": [{"name": "x", "shape": [2], "default": [0.5, -1.0]}],
        "parameters": [{"name": "w", "value": [0.25, 2.0]}],
        "nodes": [
            {"id": "m", "op": "mul", "inputs": ["x", "w"], "label": text},
            {"id": "loss", "op": "sum", "inputs": ["m"], "label": text},
        ],
        "outputs": ["loss"],
        "loss": "loss",
    }


def views(graph: graphengine.Graph) -> dict[str, Any]:
    from graphengine.render import api

    values = graph.compile().run_all()
    result = graph.value_and_grad(wrt=["w"], record=True)
    return {
        "structure": api.to_dot(graph),
        "values": api.to_dot(graph, values=values, title=graph.document.name),
        "trace": api.to_dot(graph, values=values, gradients=result.gradients, trace=result.trace),
        "elements": api.to_dot(graph, values=values, trace=result.trace, units=True),
        "highlight": api.to_dot(graph, values=values, trace=result.trace, highlight="w"),
    }


def file_naming_markup(source: str) -> list[str]:
    """What in DOT text could make ``dot`` open a file: an ``<IMG>`` in an HTML label, or an ``image=`` attribute.

    The renderer's own HTML labels are fine; text from the file inside them is escaped (``&lt;IMG``),
    and a quoted DOT string is plain text whatever it holds, so quoted strings are blanked first.
    """
    source = re.sub(r'"(?:[^"\\]|\\.)*"', '""', source, flags=re.DOTALL)  # a quoted DOT string is plain text
    found = re.findall(r"<\s*img\b[^>]*", source, re.IGNORECASE)
    found += re.findall(r'\bimage\s*=\s*(?:""|[^\s&"\]]+)', source)
    found += re.findall(r"\b(?:shapefile|fontpath|imagepath)\s*=\s*\S+", source)
    return found


@pytest.mark.parametrize("index", range(len(HOSTILE_STRINGS)))
def test_hostile_strings_reach_dot_as_data(index: int) -> None:
    text = HOSTILE_STRINGS[index]
    graph = graphengine.load_dict(hostile_doc(text))
    for name, dot in views(graph).items():
        source = dot.source
        source.encode("utf-8")  # a lone surrogate must not survive into the text dot reads
        assert file_naming_markup(source) == [], f"{name}: markup naming a file reached DOT"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_dot_opens_no_file_outside_the_system(tmp_path: Path) -> None:
    Path(BAIT).write_bytes(b"\x89PNG\r\n\x1a\n")
    strace = shutil.which("strace")
    for index, text in enumerate(HOSTILE_STRINGS):
        graph = graphengine.load_dict(hostile_doc(text))
        for name, dot in views(graph).items():
            dot_file = tmp_path / f"{index}-{name}.dot"
            dot_file.write_text(dot.source, encoding="utf-8")
            command = ["dot", "-Tsvg", str(dot_file)]
            if strace:
                log = tmp_path / f"{index}-{name}.strace"
                command = [strace, "-f", "-qq", "-e", "trace=open,openat", "-o", str(log), *command]
            done = subprocess.run(command, capture_output=True, timeout=60)
            svg = done.stdout.decode("utf-8", "replace")
            assert BAIT not in svg and "<image" not in svg, f"{name} of case {index} embeds a file"
            if strace:
                opened = re.findall(r'open(?:at)?\([^"]*"([^"]+)"', log.read_text())
                foreign = [p for p in opened if not p.startswith(SYSTEM) and p != str(dot_file)]
                assert foreign == [], f"{name} of case {index}: dot opened {foreign}"
                assert BAIT not in opened


def test_the_corpus_renders_without_html_labels() -> None:
    # Every run-stage corpus file (they load; only running them fails), drawn: no markup naming a file.
    from graphengine.render import api

    folder = Path(__file__).resolve().parent / "data" / "hostile"
    drawn = 0
    for path in sorted(folder.glob("*.json")):
        if (
            path.name.endswith(".expect.json")
            or json.loads((folder / (path.stem + ".expect.json")).read_text())["stage"] != "run"
        ):
            continue
        try:
            graph = graphengine.load(path)
        except graphengine.GraphEngineError:
            continue
        source = api.to_dot(graph).source
        assert file_naming_markup(source) == [], path.name
        drawn += 1
    assert drawn >= 3
