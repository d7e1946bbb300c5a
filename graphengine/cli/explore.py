"""``explore``: one self-contained HTML page that plays the graph's forward and backward pass step by step."""

from __future__ import annotations

import argparse
import sys
import time

from ..render import explore, missing_inputs
from ..render.explorer import COLLAPSE_AFTER
from .common import _load, parse_feeds
from .render import no_value_note


def cmd_explore(args: "argparse.Namespace") -> int:
    """``graphengine explore``: see ``graphengine explore --help``."""
    started = time.perf_counter()
    graph = _load(args)
    feeds = parse_feeds(args.feed)
    missing = missing_inputs(graph, feeds)
    if missing:
        print(no_value_note(missing, "the page shows structure only"), file=sys.stderr)
    page = explore(graph, feeds, wrt=args.wrt or None, output=args.output, units=args.units, rankdir=args.rankdir)
    page.save(args.out)
    steps = len(page.data["steps"])
    print(f"wrote {args.out} ({steps} steps, {len(page.html) // 1024} KiB, {time.perf_counter() - started:.2f} s)")
    return 0


def add_arguments(p: "argparse.ArgumentParser") -> None:
    """The options of ``graphengine explore``."""
    p.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="input value: inline JSON or a .npy file (repeatable); without values the page shows structure only",
    )
    p.add_argument(
        "--wrt",
        action="append",
        metavar="NAME",
        help="differentiate with respect to NAME (repeatable); default: every parameter",
    )
    p.add_argument("--output", metavar="NAME", help="value to differentiate; default: the graph's loss")
    p.add_argument(
        "--units",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one box per tensor element (default: only for small graphs)",
    )
    p.add_argument("--rankdir", choices=["LR", "TB"], help="layout direction (default: from the graph's shape)")
    p.add_argument(
        "-o",
        "--out",
        metavar="PAGE.html",
        required=True,
        help=f"the page to write; it opens from disk in any current browser (graphs over {COLLAPSE_AFTER} boxes open "
        "with their layers collapsed)",
    )
