"""The binder's plain feeds (an ndarray of the input's dtype and shape, taken as it is) bind what coerce binds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import graphengine
from graphengine.engine.binding import Binder
from graphengine.errors import FeedError

DOC = {
    "format": "graphengine/v1",
    "inputs": [
        {"name": "x", "shape": [None, 3]},
        {"name": "label", "shape": [None], "dtype": "int64"},
        {"name": "z", "shape": [2, None]},  # a free dimension after a fixed one: never plain
        {"name": "s", "shape": [], "default": 1.5},
    ],
    "parameters": [{"name": "w", "value": [1.0, 2.0, 3.0]}],
    "constants": [{"name": "k", "value": 2.0}],
    "nodes": [
        {"id": "xw", "op": "mul", "inputs": ["x", "w"]},
        {"id": "y", "op": "mul", "inputs": ["xw", "k"]},
        {"id": "zs", "op": "mul", "inputs": ["z", "s"]},
    ],
    "outputs": ["y", "zs", "label"],
}

FEEDS: list[dict[str, Any]] = [
    {"x": np.ones((4, 3)), "label": np.arange(4), "z": np.ones((2, 5))},  # plain (z aside)
    {"x": [[1, 2, 3]], "label": [0], "z": [[1.0], [2.0]]},  # lists
    {"x": np.ones((4, 3), np.float32), "label": np.arange(4, dtype=np.int32), "z": np.ones((2, 1), np.int64)},
    {"x": np.ones((4, 3)).T.T[::2], "label": np.arange(4)[::-1], "z": np.ones((2, 0))},  # views, empty
    {"x": np.ones((4, 3)), "label": np.arange(4), "z": np.ones((2, 5)), "w": np.zeros(3)},  # a parameter fed
    {"x": np.ones((4, 3)), "label": np.arange(4), "z": np.ones((2, 5)), "k": 3},  # a constant fed
    {"x": np.ones((4, 3)), "label": np.arange(4), "z": np.ones((2, 5)), "s": np.array(2.0)},
    {"x": np.ma.ones((4, 3)), "label": np.arange(4), "z": np.ones((2, 5))},  # a subclass
    {"x": np.ones((4, 3)), "label": np.arange(4)},  # z not fed, not needed by every request
]

BAD: list[dict[str, Any]] = [
    {"x": np.ones((4, 2))},  # wrong last dimension
    {"x": np.ones(3)},  # too few dimensions
    {"x": np.ones((1, 4, 3))},  # too many
    {"label": np.ones(4)},  # floats for an integer input
    {"x": np.array(["a"])},
    {"y": np.ones(1)},  # computed
    {"xx": np.ones((1, 3))},  # unknown
]


def _binders() -> tuple[Binder, Binder]:
    plan = graphengine.load_dict(DOC).compile()
    general = Binder(plan.graph, plan.slot, plan.specs, None)
    general.plain = {}  # every feed through coerce
    return plan._binder, general


def test_inputs_are_plain_only_when_their_free_dimensions_lead() -> None:
    plain, _ = _binders()
    assert sorted(plain.plain) == ["label", "s", "x"]


@pytest.mark.parametrize("feeds", FEEDS)
def test_a_plain_feed_binds_what_coerce_binds(feeds: dict[str, Any]) -> None:
    plain, general = _binders()
    required = frozenset(range(plain.n_slots)) - ({plain.slot["z"]} if "z" not in feeds else set())
    a, b = plain.bind(feeds, required), general.bind(feeds, required)
    assert len(a) == len(b)
    if feeds is FEEDS[0]:
        assert a[plain.slot["x"]] is feeds["x"] and a[plain.slot["label"]] is feeds["label"]  # as they are
    for u, v in zip(a, b):
        assert type(u) is type(v)
        if u is not None:
            assert u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u, v)


@pytest.mark.parametrize("feeds", BAD)
def test_a_feed_that_is_not_plain_gets_coerces_error(feeds: dict[str, Any]) -> None:
    plain, general = _binders()
    every = frozenset(range(plain.n_slots))
    with pytest.raises(FeedError) as fast:
        plain.bind({"x": np.ones((1, 3)), "label": np.arange(1), "z": np.ones((2, 1)), **feeds}, every)
    with pytest.raises(FeedError) as slow:
        general.bind({"x": np.ones((1, 3)), "label": np.arange(1), "z": np.ones((2, 1)), **feeds}, every)
    assert str(fast.value) == str(slow.value)


def test_run_and_grad_agree_on_plain_and_coerced_feeds() -> None:
    graph = graphengine.load_dict(DOC)
    feeds = {"x": np.arange(6.0).reshape(2, 3), "label": np.arange(2), "z": np.ones((2, 2))}
    listed = {k: v.tolist() for k, v in feeds.items()}
    plan = graph.compile()
    for _ in range(3):  # the first, checked call; code generation; the steady call
        a, b = plan.run(feeds), plan.run(listed)
        assert all(np.array_equal(a[k], b[k]) for k in a)
        ga = plan.grad(feeds, wrt=["w", "x"], output="y", cotangent=np.ones((2, 3)))
        gb = plan.grad(listed, wrt=["w", "x"], output="y", cotangent=np.ones((2, 3)))
        assert all(np.array_equal(ga[k], gb[k]) for k in ga)
