"""``render``: a diagram of the graph, its values and its backward pass."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from ..errors import RenderError
from ..render import UNIT_LIMIT, RenderWarning, diagram, missing_inputs, write
from .common import _load, parse_feeds


def no_value_note(missing: list[str], outcome: str) -> str:
    """One line naming the inputs that have neither a feed nor a default.

    Examples
    --------
    >>> no_value_note(["x"], "drawing structure only")
    "graphengine: note: input 'x' has no value (--feed x=...); drawing structure only"
    >>> no_value_note(["x", "label"], "the page shows structure only")
    "graphengine: note: inputs 'x' and 'label' have no value (--feed x=... --feed label=...); the page shows structure only"
    """
    names = ", ".join(repr(n) for n in missing[:-1]) + (" and " if len(missing) > 1 else "") + repr(missing[-1])
    feeds = " ".join(f"--feed {n}=..." for n in missing)
    verb = "input {} has" if len(missing) == 1 else "inputs {} have"
    return f"graphengine: note: {verb.format(names)} no value ({feeds}); {outcome}"


def cmd_render(args: "argparse.Namespace") -> int:
    """``graphengine render``: see ``graphengine render --help``."""

    started = time.perf_counter()
    graph = _load(args)
    grad = args.grad or args.trace is not None or bool(args.wrt) or args.output is not None
    feeds = parse_feeds(args.feed)
    missing = missing_inputs(graph, feeds)
    if missing:
        print(no_value_note(missing, "drawing structure only"), file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RenderWarning)
        dot, result = diagram(
            graph,
            feeds,
            grad=grad,
            wrt=args.wrt or None,
            output=args.output,
            highlight=args.highlight,
            units=args.units,
            rankdir=args.rankdir,
        )
    for warning in caught:
        print(f"graphengine: note: {warning.message}", file=sys.stderr)
    if args.trace is not None and result is not None and result.trace is not None:
        try:
            Path(args.trace).write_text(json.dumps(result.trace.to_json(), indent=1) + "\n")
        except OSError as exc:
            raise RenderError(f"cannot write {args.trace!r}: {exc.strerror or exc}") from None
    if args.out is None or args.out == "-":
        print(dot.source)
        return 0
    write(dot, args.out)
    extra = f"; trace in {args.trace}" if args.trace else ""
    print(f"wrote {args.out} ({time.perf_counter() - started:.2f} s{extra})")
    return 0


def add_arguments(p: "argparse.ArgumentParser") -> None:
    """The options of ``graphengine render``."""
    import argparse

    p.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="input value: inline JSON or a .npy file (repeatable)",
    )
    p.add_argument("--grad", action="store_true", help="also run a recorded backward pass and draw it")
    p.add_argument(
        "--wrt",
        action="append",
        metavar="NAME",
        help="differentiate with respect to NAME (repeatable; implies --grad); default: every parameter",
    )
    p.add_argument(
        "--output", metavar="NAME", help="value to differentiate (implies --grad); default: the graph's loss"
    )
    p.add_argument(
        "--highlight", metavar="NAME", help="draw every path from the output back to NAME bold, dim the rest"
    )
    p.add_argument(
        "--units",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"one box per tensor element (default: only for small graphs; past {UNIT_LIMIT} elements in all, "
        "--units falls back to one box per tensor with a note)",
    )
    p.add_argument(
        "--rankdir", choices=["LR", "TB"], help="layout direction (default: LR; TB for large graphs and long chains)"
    )
    p.add_argument(
        "--trace", metavar="FILE.json", help="also write the recorded backward pass as JSON (implies --grad)"
    )
    p.add_argument("-o", "--out", metavar="FILE", help="diagram file: .svg, .png, .pdf or .dot; default: DOT on stdout")
