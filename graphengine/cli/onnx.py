"""``import-onnx``, ``export-onnx`` and ``conformance``: ONNX in and out (needs ``pip install "graphengine[onnx]"``)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any, Callable

from ..errors import GraphEngineError, counted
from .common import _load


class MissingOnnxError(GraphEngineError):
    """The onnx package is not installed."""


def _need_onnx() -> None:
    if importlib.util.find_spec("onnx") is None:
        raise MissingOnnxError('this command needs the onnx package: pip install "graphengine[onnx]"')


def cmd_import_onnx(args: argparse.Namespace) -> int:
    _need_onnx()
    from ..onnx import import_model

    imported = import_model(args.model)
    out = Path(args.output) if args.output else Path(args.model).with_suffix(".json")
    imported.save(out)
    imported.graph()  # the written graph loads and its shapes check, or this raises naming the node
    doc = imported.document
    extra = f" and {out.with_suffix('.npz').name}" if imported.arrays else ""
    print(
        f"{args.model} -> {out}{extra}: {counted(len(doc['inputs']), 'input')}, "
        f"{counted(len(doc['parameters']), 'parameter')}, {counted(len(doc['nodes']), 'node')}; "
        f"{'output' if len(doc['outputs']) == 1 else 'outputs'} {', '.join(doc['outputs'])}"
    )
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    _need_onnx()
    from ..onnx.exporter import save_model

    graph = _load(args)
    out = Path(args.output) if args.output else Path(args.graph).with_suffix(".onnx")
    save_model(graph, out, opset=args.opset)
    print(f"{args.graph} -> {out} (checked by onnx.checker)")
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    _need_onnx()
    from ..onnx import conformance

    return conformance.command(args)


def register(add: Callable[..., argparse.ArgumentParser], common: Any, graph_args: Any) -> None:
    """Add the three commands to the ``graphengine`` parser (``add(name, func, help, parents)``)."""
    p = add(
        "import-onnx", cmd_import_onnx, "translate an ONNX model into a graph file (+ .npz of large weights)", [common]
    )
    p.add_argument("model", help="the .onnx file; external data must sit in its folder")
    p.add_argument("-o", "--output", help="graph file to write; default: the model's name with .json")
    p = add("export-onnx", cmd_export_onnx, "write a graph as an ONNX model (checked by onnx.checker)", [graph_args])
    p.add_argument("-o", "--output", help="model file to write; default: the graph's name with .onnx")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18, or 20 with gelu)")
    p = add("conformance", cmd_conformance, "run ONNX's backend node tests and print the per-op table", [common])
    from ..onnx.conformance import add_arguments

    add_arguments(p)
