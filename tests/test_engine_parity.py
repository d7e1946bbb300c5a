"""The table of pre-bound calls and the generated code compute the same bits as the step interpreter.

Over random DAGs (conftest.random_graph_doc) in float64 and float32, with random
``wrt`` (sources and intermediate nodes) and outputs (the loss, or a node with a
random cotangent): outputs, gradients and recorded traces of calls 1, 2 and 3
are bitwise equal to a forced interpreter run (the reference). Call 1 runs the
checked table; calls 2 and 3 run generated code (graphs this small get it on
call 1), or, with ``table=True`` (``runners.SMALL_STEPS`` = 0), the table again, while
code is generated a slice per call. ``GRAPHENGINE_FUZZ=thorough`` runs more cases.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from conftest import random_graph_doc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphengine
from graphengine.engine import runners as runners_module
from graphengine.engine.plan import _interpreted

BUDGETS = {"ci": 150, "thorough": 3000}
PARITY = settings(
    max_examples=BUDGETS[os.environ.get("GRAPHENGINE_FUZZ", "ci")],
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def same(a: Any, b: Any) -> bool:
    """Bitwise equal: shape, dtype and bytes (so -0.0 differs from 0.0)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b) and a.tobytes() == b.tobytes()


def assert_same_result(ref: graphengine.GradResult, got: graphengine.GradResult, call: int) -> None:
    assert ref.outputs.keys() == got.outputs.keys() and ref.gradients.keys() == got.gradients.keys()
    for name in ref.outputs:
        assert same(ref.outputs[name], got.outputs[name]), f"call {call}: output {name}"
    for name in ref.gradients:
        assert same(ref.gradients[name], got.gradients[name]), f"call {call}: gradient {name}"
    if ref.trace is None:
        assert got.trace is None
        return
    assert got.trace is not None and same(ref.trace.seed, got.trace.seed)
    assert [(s.node, s.op) for s in ref.trace.steps] == [(s.node, s.op) for s in got.trace.steps]
    for r, g in zip(ref.trace.steps, got.trace.steps):
        assert same(r.cotangent, g.cotangent), f"call {call}: cotangent at {r.node}"
        assert [(n, p) for n, p, _ in r.contributions] == [(n, p) for n, p, _ in g.contributions]
        assert all(same(rc, gc) for (_, _, rc), (_, _, gc) in zip(r.contributions, g.contributions))
    assert ref.trace.fan_in.keys() == got.trace.fan_in.keys()
    for name, r_fan in ref.trace.fan_in.items():
        g_fan = got.trace.fan_in[name]
        assert [src for src, _ in r_fan.contributions] == [src for src, _ in g_fan.contributions]
        assert all(same(rc, gc) for (_, rc), (_, gc) in zip(r_fan.contributions, g_fan.contributions))
        assert same(r_fan.total, g_fan.total), f"call {call}: fan-in total at {name}"


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    seed, n_nodes = draw(st.integers(0, 2**32 - 1)), draw(st.integers(1, 16))
    doc = random_graph_doc(np.random.default_rng(seed), n_nodes)
    doc["dtype"] = draw(st.sampled_from(["float64"] * 4 + ["float32"]))
    nodes = [n["id"] for n in doc["nodes"]]
    wrt = draw(st.lists(st.sampled_from(["x", "p0", "p1", *nodes]), min_size=1, max_size=4, unique=True))
    output = draw(st.sampled_from(["loss", "loss", *nodes]))
    record, table = draw(st.booleans()), draw(st.booleans())
    return {"doc": doc, "wrt": wrt, "output": output, "record": record, "table": table, "seed": seed}


@PARITY
@given(requests())
def test_generated_code_and_the_table_are_bitwise_equal_to_the_interpreter(request: dict[str, Any]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        if request["table"]:
            patch.setattr(runners_module, "SMALL_STEPS", 0)
        _check_parity(request)


def _check_parity(request: dict[str, Any]) -> None:
    plan = graphengine.load_dict(request["doc"]).compile()
    wrt, output, record = request["wrt"], request["output"], request["record"]
    values = plan.run_all()
    cotangent = None
    if output != "loss":  # a non-scalar output needs a cotangent of its shape
        shape = np.shape(values[output])
        cotangent = (
            np.random.default_rng(request["seed"]).standard_normal(shape).astype(plan.specs[plan.slot[output]].dtype)
        )
    kwargs: dict[str, Any] = {"output": output, "cotangent": cotangent, "record": record}
    ref = _interpreted(plan, None, wrt, **kwargs)
    for call in (1, 2, 3):
        assert_same_result(ref, plan.value_and_grad(None, wrt, **kwargs), call)
    schedule = plan._grad_schedule(wrt, output)[0]
    assert record or request["table"] or schedule.programs, "calls 2 and 3 ran generated code"
    assert record or schedule.table is not None, "call 1 ran the table"
    # Forward only: call 1 (interpreter) against calls 2 and 3 (generated code).
    for call in (2, 3):
        again = plan.run_all()
        assert all(same(values[name], again[name]) for name in values), f"run_all call {call}"
