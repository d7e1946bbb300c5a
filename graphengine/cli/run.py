"""``validate``, ``run`` and ``grad``."""

from __future__ import annotations

import argparse
import json

from ..errors import counted
from .common import _load, _print_named, _to_json, parse_feeds
from .dask import plan_for


def cmd_validate(args: argparse.Namespace) -> int:
    graph = _load(args)
    print(
        f"{args.graph}: valid ({counted(len(graph.inputs), 'input')}, {counted(len(graph.parameters), 'parameter')}, "
        f"{counted(len(graph.constants), 'constant')}, {counted(len(graph.nodes), 'node')}; "
        f"{'output' if len(graph.outputs) == 1 else 'outputs'} {', '.join(graph.outputs)})"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    graph = _load(args)
    with plan_for(graph, args) as plan:
        outputs = plan.run(parse_feeds(args.feed), outputs=args.output or None)
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
    with plan_for(graph, args) as plan:
        result = plan.value_and_grad(parse_feeds(args.feed), args.wrt or None, output=args.output, cotangent=cotangent)
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
