"""What every command shares: loading the graph from its arguments, parsing feeds, printing arrays."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any, Sequence

import numpy as np

from ..errors import FeedError, clip


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
    >>> parse_feeds(["x=[1e400]"])
    Traceback (most recent call last):
    ...
    graphengine.errors.FeedError: --feed x: '[1e400]' is neither JSON nor a .npy file (1e400 is too large for a float)
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
            feeds[name] = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (json.JSONDecodeError, ValueError) as exc:
            raise FeedError(f"--feed {name}: {clip(text)!r} is neither JSON nor a .npy file ({exc})") from None
    return feeds


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a feed")


def _finite_float(text: str) -> float:
    """A JSON number as a float; one too large for a float (``1e400``) is refused, as NaN is, not made inf."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{clip(text, 40)} is too large for a float")
    return value


def _load(args: argparse.Namespace) -> Any:
    from ..graph import Limits, load

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
