"""The ``graphengine`` command line.

Every command takes ``--plugin`` (repeatable). Errors print one line,
``graphengine: error: ...``, and exit with status 1 (2 for usage errors);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

import numpy as np

from .errors import FeedError, GraphEngineError

__all__ = ["main", "build_parser", "parse_feeds"]


def parse_feeds(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``NAME=VALUE`` feeds: VALUE is inline JSON (number or nested list) or a ``.npy`` file.

    Raises
    ------
    FeedError
        On a malformed item, unreadable file, or invalid JSON.

    Examples
    --------
    >>> parse_feeds(["x=[0.05, 0.1]", "t=2"])
    {'x': [0.05, 0.1], 't': 2}
    """
    feeds: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise FeedError(f"--feed {item!r}: expected NAME=VALUE (inline JSON or a .npy file)")
        if text.endswith(".npy"):
            try:
                feeds[name] = np.load(text, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise FeedError(f"--feed {name}: cannot read {text!r}: {exc}") from None
            continue
        try:
            feeds[name] = json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            raise FeedError(f"--feed {name}: {text!r} is neither JSON nor a .npy file ({exc})") from None
    return feeds


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a feed")


def _load(args: argparse.Namespace) -> Any:
    from .graph import Limits, load

    limits = Limits(**{k: v for k, v in vars(args).items() if k.startswith("max_") and v is not None})
    return load(args.graph, plugins=args.plugin, limits=limits, allow_nonfinite=args.allow_nonfinite)


def _to_json(value: Any) -> Any:
    return np.asarray(value).tolist()


def _fmt(value: Any) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        return f"{array.item():.9g}"
    return np.array2string(
        array, separator=", ", max_line_width=100, threshold=200, formatter={"float_kind": lambda v: f"{v:.9g}"}
    )


def _print_named(title: str, items: dict[str, Any]) -> None:
    print(title)
    width = max((len(n) for n in items), default=0)
    for name, value in items.items():
        shape = np.shape(value)
        text = _fmt(value).replace("\n", "\n" + " " * (width + 4 + len(str(shape)) + 3))
        print(f"  {name:<{width}}  {shape} = {text}" if shape else f"  {name:<{width}}  = {text}")


# --- commands --------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    graph = _load(args)
    print(
        f"{args.graph}: valid ({len(graph.inputs)} inputs, {len(graph.parameters)} parameters, "
        f"{len(graph.constants)} constants, {len(graph.nodes)} nodes; outputs {', '.join(graph.outputs)})"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    graph = _load(args)
    outputs = graph.compile().run(parse_feeds(args.feed), outputs=args.output or None)
    if args.format == "json":
        print(json.dumps({"outputs": {k: _to_json(v) for k, v in outputs.items()}}))
    else:
        _print_named("outputs", outputs)
    return 0


def cmd_grad(args: argparse.Namespace) -> int:
    graph = _load(args)
    cotangent = None
    if args.cotangent is not None:
        cotangent = parse_feeds([f"cotangent={args.cotangent}"])["cotangent"]
    result = graph.compile().value_and_grad(
        parse_feeds(args.feed), args.wrt or None, output=args.output, cotangent=cotangent
    )
    if args.format == "json":
        print(
            json.dumps(
                {
                    "outputs": {k: _to_json(v) for k, v in result.outputs.items()},
                    "gradients": {k: _to_json(v) for k, v in result.gradients.items()},
                }
            )
        )
    else:
        _print_named("outputs", result.outputs)
        _print_named(f"gradients of {args.output or graph.loss}", result.gradients)
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    from .registry import default_registry

    registry = default_registry(args.plugin)
    rows = []
    for name in registry:
        op = registry[name]
        inputs = [
            f"{n}{'' if v is not None else ' (no grad)'}" + ("..." if op.variadic and i == len(op.inputs) - 1 else "")
            for i, (n, v) in enumerate(zip(op.inputs, op.vjps))
        ]
        rows.append({"op": name, "inputs": inputs, "attrs": list(op.attrs.model_fields), "source": registry.sources[name], "doc": op.doc})
    if args.format == "json":
        print(json.dumps({"ops": rows, "problems": [{"source": s, "reason": r} for s, r in registry.problems]}))
        return 0
    width = max(len(r["op"]) for r in rows) if rows else 0
    for r in rows:
        attrs = f" [{', '.join(r['attrs'])}]" if r["attrs"] else ""
        print(f"{r['op']:<{width}}  ({', '.join(r['inputs'])}){attrs}  {r['doc']}  <- {r['source']}")
    for source, reason in registry.problems:
        print(f"warning: {source} failed to load: {reason}", file=sys.stderr)
    return 0


def cmd_check_op(args: argparse.Namespace) -> int:
    from .gradcheck import check_op_samples
    from .registry import default_registry

    registry = default_registry(args.plugin)
    if args.name not in registry:
        close = registry.suggest(args.name)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "; see `graphengine ops`"
        raise FeedError(f"unknown op {args.name!r}{hint}")
    count = check_op_samples(registry[args.name], rng=np.random.default_rng(args.seed))
    print(f"{args.name}: {count} sample{'s' if count != 1 else ''} checked, every VJP agrees with finite differences")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .registry import default_registry
    from .schema import document_json_schema

    print(json.dumps(document_json_schema(default_registry(args.plugin)), indent=2, sort_keys=True))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .render import cmd_render as run  # lazy: the rendering code only for this command

    return run(args)


def cmd_train(args: argparse.Namespace) -> int:
    from .train import cmd_train as run

    return run(args)


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``graphengine`` command."""
    parser = argparse.ArgumentParser(prog="graphengine", description="Run, differentiate and diagram computation graphs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plugin", action="append", default=[], metavar="P", help="op plugin: a .py file or a module name (repeatable)")
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
    feed_args.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE", help="input value: inline JSON or a .npy file (repeatable)")
    feed_args.add_argument("--format", choices=["text", "json"], default="text")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=parents)
        p.set_defaults(func=func)
        return p

    add("validate", cmd_validate, "check a graph file without running it", [graph_args])
    p = add("run", cmd_run, "run a graph forward", [graph_args, feed_args])
    p.add_argument("--output", action="append", metavar="NAME", help="value to print (repeatable); default: the graph's outputs")
    p = add("grad", cmd_grad, "gradients of the loss with respect to parameters", [graph_args, feed_args])
    p.add_argument("--wrt", action="append", metavar="NAME", help="differentiate with respect to NAME (repeatable); default: every parameter")
    p.add_argument("--output", metavar="NAME", help="value to differentiate; default: the graph's loss")
    p.add_argument("--cotangent", metavar="VALUE", help="output cotangent for a non-scalar output: inline JSON or .npy")
    p = add("ops", cmd_ops, "list registered ops, where each came from, and which inputs have VJPs", [common])
    p.add_argument("--format", choices=["text", "json"], default="text")
    p = add("check-op", cmd_check_op, "check an op's VJPs against finite differences on its samples", [common])
    p.add_argument("name", help="op name")
    p.add_argument("--seed", type=int, default=0)
    add("schema", cmd_schema, "print the JSON Schema of graph files (with the registered ops)", [common])
    from .render import add_arguments as add_render_arguments
    from .train import add_arguments as add_train_arguments

    p = add("render", cmd_render, "draw the graph with forward values and (--grad) the backward pass: SVG, PNG, PDF or DOT", [graph_args])
    add_render_arguments(p)
    p = add("train", cmd_train, "train the parameters on data and write the trained graph", [graph_args])
    add_train_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphengine`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
