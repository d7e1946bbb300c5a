"""The ``graphengine`` command: the parser, and one line per error."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable, Sequence

from ..errors import GraphEngineError
from ..format.save import SaveWarning
from . import dask as dask_commands
from . import explore as explore_commands
from . import onnx as onnx_commands
from . import ops as ops_commands
from . import render as render_commands
from . import run as run_commands
from . import train as train_commands


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``graphengine`` command."""
    parser = argparse.ArgumentParser(
        prog="graphengine", description="Run, differentiate and diagram computation graphs."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--plugin", action="append", default=[], metavar="P", help="op plugin: a .py file or a module name (repeatable)"
    )
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")

    graph_args = argparse.ArgumentParser(add_help=False, parents=[common])
    graph_args.add_argument("graph", help="graph file (JSON)")
    graph_args.add_argument("--allow-nonfinite", action="store_true", help="accept NaN/Infinity literals in the file")
    graph_args.add_argument("--max-nodes", type=int, help="limit on entries in the graph")
    graph_args.add_argument("--max-elements", type=int, help="limit on elements of one tensor")
    graph_args.add_argument("--max-total-bytes", type=int, help="limit on bytes of all parameters and constants")
    graph_args.add_argument("--max-ndim", type=int, help="limit on dimensions of one tensor")
    graph_args.add_argument("--max-file-bytes", type=int, help="limit on the size of the graph file")

    feed_args = argparse.ArgumentParser(add_help=False)
    feed_args.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="input value: inline JSON or a .npy file (repeatable)",
    )
    feed_args.add_argument("--format", choices=["text", "json"], default="text")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help: str, parents: list[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=parents)
        p.set_defaults(func=func)
        return p

    add("validate", run_commands.cmd_validate, "check a graph file without running it", [graph_args])
    p = add("run", run_commands.cmd_run, "run a graph forward", [graph_args, feed_args])
    p.add_argument(
        "--output", action="append", metavar="NAME", help="value to print (repeatable); default: the graph's outputs"
    )
    dask_commands.add_arguments(p)
    p = add("grad", run_commands.cmd_grad, "gradients of the loss with respect to parameters", [graph_args, feed_args])
    p.add_argument(
        "--wrt",
        action="append",
        metavar="NAME",
        help="differentiate with respect to NAME (repeatable); default: every parameter",
    )
    p.add_argument("--output", metavar="NAME", help="value to differentiate; default: the graph's loss")
    p.add_argument("--cotangent", metavar="VALUE", help="output cotangent for a non-scalar output: inline JSON or .npy")
    dask_commands.add_arguments(p)
    p = add(
        "ops", ops_commands.cmd_ops, "list registered ops, where each came from, and which inputs have VJPs", [common]
    )
    p.add_argument("--format", choices=["text", "json"], default="text")
    p = add(
        "check-op", ops_commands.cmd_check_op, "check an op's VJPs against finite differences on its samples", [common]
    )
    p.add_argument("name", help="op name")
    p.add_argument("--seed", type=int, default=0)
    add("schema", ops_commands.cmd_schema, "print the JSON Schema of graph files (with the registered ops)", [common])
    onnx_commands.register(add, common, graph_args)
    p = add(
        "render",
        render_commands.cmd_render,
        "draw the graph with forward values and (--grad) the backward pass: SVG, PNG, PDF or DOT",
        [graph_args],
    )
    render_commands.add_arguments(p)
    p = add(
        "explore",
        explore_commands.cmd_explore,
        "write a web page that plays the backward pass step by step",
        [graph_args],
    )
    explore_commands.add_arguments(p)
    p = add("train", train_commands.cmd_train, "train the parameters on data and write the trained graph", [graph_args])
    train_commands.add_arguments(p)
    dask_commands.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphengine`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            warnings.simplefilter("always", SaveWarning)
            code = int(args.func(args) or 0)
        _numeric_warning(caught)
        for note in (w for w in caught if issubclass(w.category, SaveWarning)):  # a file a save kept, and why
            print(f"graphengine: note: {' '.join(str(note.message).split())}", file=sys.stderr)
        return code
    except GraphEngineError as exc:
        if args.debug:
            raise
        print(f"graphengine: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("graphengine: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug or an untidy plugin: still one line, never a traceback
        if args.debug:
            raise
        print(
            f"graphengine: internal error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 70


def _numeric_warning(caught: list[warnings.WarningMessage]) -> None:
    """numpy's overflow/invalid-value warnings (exp, log, div on a file's values) as one line, not a stack of them."""
    numeric = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if numeric:
        kinds = sorted({" ".join(str(w.message).split())[:80] for w in numeric})
        print(
            f"graphengine: warning: results may hold Inf or NaN (numpy: {'; '.join(kinds[:3])})",
            file=sys.stderr,
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
