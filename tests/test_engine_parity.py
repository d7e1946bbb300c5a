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


# --- the table's error paths give the interpreter's errors, on its checked first call and on later calls ------

WRONG = {  # what a VJP returns instead of g * 2, and the message every runner must give
    "shape": (lambda g: np.ones(7), r"VJP returned shape \(7,\), which does not reduce to the input's shape \(2,\)"),
    "dtype": (lambda g: g.astype(np.float32), r"VJP returned float32 for a float64 input"),
    "raises": (lambda g: {}["internal"], r"VJP raised KeyError: 'internal'"),
}


def _wrong_vjp_plan(form: str, wrong: Any, good_calls: int, shape: list[Any]) -> graphengine.Plan:
    """x, b -> e = scaled(x, b) -> loss = sum(e); the VJP of x goes wrong after ``good_calls`` calls.

    ``form`` is the declaration: the long form (OpDef) or the terse one (defop), whose VJP the table calls
    directly; b is a scalar, so its VJP's result is unbroadcast (the table's slow path) on every call.
    """
    from graphengine.ops import OpDef, elementwise_rule
    from graphengine.ops.terse import defop
    from graphengine.registry import default_registry

    calls: list[int] = []

    def x_bar(g: np.ndarray) -> Any:
        calls.append(1)
        return g * 2.0 if len(calls) <= good_calls else wrong(g)

    if form == "terse":
        op = defop(lambda g: x_bar(g), lambda g, x: g * x, name="scaled")(lambda x, b: x * 2.0 + b * x)
    else:
        vjps = (lambda g, out, x, b, *, attrs: x_bar(g), lambda g, out, x, b, *, attrs: g * x)
        op = OpDef("scaled", lambda x, b, *, attrs: x * 2.0 + b * x, vjps, elementwise_rule, inputs=("x", "b"))
    registry = default_registry()
    registry.register(op, "test")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": shape, "default": [0.1, 0.2]}],
        "parameters": [{"name": "b", "shape": [], "value": 0.0}],
        "nodes": [{"id": "e", "op": "scaled", "inputs": ["x", "b"]}, {"id": "loss", "op": "sum", "inputs": ["e"]}],
        "outputs": ["loss"],
    }
    return graphengine.load_dict(doc, registry=registry).compile()


@pytest.mark.parametrize("shape", [[2], [None]], ids=["static", "free"])
@pytest.mark.parametrize("form", ["long", "terse"])
@pytest.mark.parametrize("kind", sorted(WRONG))
@pytest.mark.parametrize("good_calls", [0, 1], ids=["call-1", "call-2"])
def test_the_table_names_a_wrong_vjp_as_the_interpreter_does(
    kind: str, form: str, shape: list[Any], good_calls: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphengine.ops.vjp import VJPError, VJPSite

    monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)  # the table runs every call until code is complete
    wrong, message = WRONG[kind]
    reference = _wrong_vjp_plan(form, wrong, good_calls, shape)
    plan = _wrong_vjp_plan(form, wrong, good_calls, shape)
    feeds = {"x": np.array([0.1, 0.2])}
    if good_calls:  # call 1 succeeds, on the checked table, with the interpreter's bits
        ref, got = _interpreted(reference, feeds, ["x", "b"]), plan.value_and_grad(feeds, ["x", "b"])
        assert_same_result(ref, got, 1)
        np.testing.assert_allclose(got.gradients["x"], [2.0, 2.0])  # d/dx (2x + bx) at b = 0
        np.testing.assert_allclose(got.gradients["b"], 0.1 + 0.2)  # sum of x
    errors = []  # the reference once, then the plan twice: a free shape's first call runs the interpreter
    runners = [lambda: _interpreted(reference, feeds, ["x", "b"])] + [lambda: plan.grad(feeds, ["x", "b"])] * 2
    for runner in runners:
        with pytest.raises(VJPError, match=r"^node 'e' \(op 'scaled'\), input 0 \('x'\): " + message) as info:
            runner()
        errors.append((str(info.value), info.value.site))
    assert errors[0] == errors[1] == errors[2] and errors[0][1] == VJPSite("scaled", 0, "x", node="e")
    assert plan._grad_schedule(["x", "b"], None)[0].table is not None, "the table ran"


def test_the_checked_first_call_names_an_op_that_breaks_its_shape_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from graphengine.errors import ExecutionError
    from graphengine.ops import OpDef, elementwise_rule
    from graphengine.registry import default_registry

    monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)
    registry = default_registry()
    for name, forward in (
        ("long_by_one", lambda x, *, attrs: np.append(x, 0.0)),
        ("to_f32", lambda x, *, attrs: x.astype(np.float32)),
    ):
        registry.register(OpDef(name, forward, (lambda g, out, x, *, attrs: g,), elementwise_rule), "test")
    for op, said in (("long_by_one", r"float64 \(3,\)"), ("to_f32", r"float32 \(2,\)")):
        doc = {
            "format": "graphengine/v1",
            "inputs": [{"name": "x", "shape": [2], "default": [0.1, 0.2]}],
            "nodes": [{"id": "e", "op": op, "inputs": ["x"]}],
            "outputs": ["e"],
        }
        plan = graphengine.load_dict(doc, registry=registry).compile()
        expected = rf"^node 'e' \(op '{op}'\) returned {said}, but its shape rule promised float64 \(2,\)$"
        with pytest.raises(ExecutionError, match=expected):
            plan.grad(None, ["x"], output="e", cotangent=np.ones(2))
