"""``ops``, ``check-op`` and ``schema``: what the plugins provide."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..errors import FeedError, did_you_mean, show


def cmd_ops(args: argparse.Namespace) -> int:
    from ..registry import default_registry

    registry = default_registry(args.plugin)
    rows = []
    for name in registry:
        op = registry[name]
        inputs = [
            f"{n}{'' if v is not None else ' (no grad)'}" + ("..." if op.variadic and i == len(op.inputs) - 1 else "")
            for i, (n, v) in enumerate(zip(op.inputs, op.vjps))
        ]
        rows.append(
            {
                "op": name,
                "inputs": inputs,
                "attrs": list(op.attrs.model_fields),
                "source": registry.sources[name],
                "doc": op.doc,
            }
        )
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
    from ..engine import check_op_samples
    from ..registry import default_registry

    registry = default_registry(args.plugin)
    if args.name not in registry:
        raise FeedError(
            f"unknown op {show(args.name)}{did_you_mean(args.name, registry.ops, otherwise='; see `graphengine ops`')}"
        )
    count = check_op_samples(registry[args.name], rng=np.random.default_rng(args.seed))
    print(f"{args.name}: {count} sample{'s' if count != 1 else ''} checked, every VJP agrees with finite differences")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from ..format import document_json_schema
    from ..registry import default_registry

    print(json.dumps(document_json_schema(default_registry(args.plugin)), indent=2, sort_keys=True))
    return 0
