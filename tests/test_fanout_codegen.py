"""Fan-out and fan-in in the generated code: VJPs declared as data (``identity_vjp``).

A test-local op, declared as a third-party plugin would (terse and long form), uses each
declaration. The generated code's results are bitwise equal to the step interpreter's,
with broadcasting, free dimensions, float32 and float64, and recorded traces; its gradients
agree with central differences; a declaration the op does not keep is named as the
interpreter names it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_engine_parity import assert_same_result

import graphengine
from graphengine.engine import runners as runners_module
from graphengine.engine.plan import _interpreted
from graphengine.errors import PluginError
from graphengine.ops import OpDef, defop, elementwise_rule, identity_vjp
from graphengine.ops.vjp import VJPError
from graphengine.registry import default_registry


def _plus_terse() -> OpDef:
    @defop(identity_vjp, identity_vjp, doc="a + b (a third party's add)")
    def plus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    return plus


def _plus_long() -> OpDef:
    def vjp(g: np.ndarray, out: Any, a: Any, b: Any, *, attrs: Any) -> np.ndarray:
        return g

    forward = lambda a, b, *, attrs: a + b  # noqa: E731
    return OpDef("plus", forward, (vjp, vjp), elementwise_rule, inputs=("a", "b"), vjp_needs=frozenset(),
                 identity_vjps=frozenset({0, 1}))  # fmt: skip


FORMS = {"terse": _plus_terse, "long": _plus_long}

# (x's shape in the file, x's value, w's value): same shapes, broadcasting both ways, a scalar, a free dimension.
CASES = {
    "same": ([4], np.linspace(-1, 1, 4), np.linspace(0.5, 1.5, 4)),
    "broadcast-w": ([2, 3], np.linspace(-1, 1, 6).reshape(2, 3), np.linspace(0.5, 1.5, 3)),
    "broadcast-both": ([2, 1], np.array([[0.3], [-0.4]]), np.linspace(0.5, 1.5, 3).reshape(1, 3)),
    "scalar-w": ([3], np.array([0.1, -0.2, 0.3]), np.array(0.7)),
    "free": ([None, 3], np.linspace(-1, 1, 6).reshape(2, 3), np.linspace(0.5, 1.5, 3)),
}


def _fanout_plan(op: OpDef, shape: list[Any], w: np.ndarray, dtype: str) -> graphengine.Plan:
    """x fanned out to three branches tanh(x * w), tanh(plus(x, w)), x; added up with ``plus``; then summed."""
    registry = default_registry()
    registry.register(op, "test")
    doc = {
        "format": "graphengine/v1",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": shape}],
        "parameters": [{"name": "w", "value": w.tolist()}],
        "nodes": [
            {"id": "u", "op": "mul", "inputs": ["x", "w"]},
            {"id": "t", "op": "tanh", "inputs": ["u"]},
            {"id": "v", "op": "plus", "inputs": ["x", "w"]},
            {"id": "r", "op": "tanh", "inputs": ["v"]},
            {"id": "s1", "op": "plus", "inputs": ["t", "r"]},
            {"id": "s2", "op": "plus", "inputs": ["s1", "x"]},
            {"id": "s3", "op": "plus", "inputs": ["s2", "t"]},
            {"id": "loss", "op": "sum", "inputs": ["s3"]},
        ],
        "outputs": ["loss"],
    }
    return graphengine.load_dict(doc, registry=registry).compile()


@pytest.mark.parametrize("table", [False, True], ids=["generated", "table-first"])
@pytest.mark.parametrize("record", [False, True], ids=["plain", "record"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("form", sorted(FORMS))
def test_identity_vjps_give_the_interpreters_bits(
    form: str, case: str, dtype: str, record: bool, table: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if table:
        monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)  # the table first, code a slice per call
    shape, x, w = CASES[case]
    plan = _fanout_plan(FORMS[form](), shape, w, dtype)
    feeds = {"x": x.astype(dtype)}
    ref = _interpreted(plan, feeds, ["x", "w", "s1", "v"], record=record)
    for call in range(1, 8):
        got = plan.value_and_grad(feeds, ["x", "w", "s1", "v"], record=record)
        assert_same_result(ref, got, call)
        assert got.gradients["x"].dtype == np.dtype(dtype) and got.gradients["w"].shape == w.shape
    schedule = plan._grad_schedule(["x", "w", "s1", "v"], None)[0]
    assert record or schedule.programs, "generated code ran"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("form", sorted(FORMS))
def test_generated_gradients_match_central_differences(form: str, case: str) -> None:
    shape, x, w = CASES[case]
    plan = _fanout_plan(FORMS[form](), shape, w, "float64")
    for _ in range(3):  # past the checked first call: generated code
        got = plan.value_and_grad({"x": x}, ["x", "w"]).gradients
    assert plan._grad_schedule(["x", "w"], None)[0].programs

    def loss(x_value: np.ndarray, w_value: np.ndarray) -> float:  # w is a parameter: a plan per value
        return float(_fanout_plan(FORMS[form](), shape, w_value, "float64").run({"x": x_value})["loss"])

    eps = 1e-6
    for name, value in (("x", x), ("w", w)):
        numeric = np.zeros(value.shape)
        for index in np.ndindex(value.shape):
            up, down = value.copy(), value.copy()
            up[index] += eps
            down[index] -= eps
            args_up = (up, w) if name == "x" else (x, up)
            args_down = (down, w) if name == "x" else (x, down)
            numeric[index] = (loss(*args_up) - loss(*args_down)) / (2 * eps)
        np.testing.assert_allclose(got[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_the_generated_code_calls_no_identity_vjp() -> None:
    shape, x, w = CASES["same"]
    plan = _fanout_plan(_plus_terse(), shape, w, "float64")
    for _ in range(3):
        plan.value_and_grad({"x": x}, ["x", "w"])
    (program,) = plan._grad_schedule(["x", "w"], None)[0].programs.values()
    # Four plus nodes, two VJPs each, all declared x_bar = g: sum's VJP is the only call (mul's and tanh's
    # are inline expressions, written out as ufunc calls: tests/test_inline_ops.py).
    calls = [line for line in program.source.splitlines() if line.strip().startswith("c = v")]
    assert len(calls) == 1, program.source
    assert "_u_tanh(" in program.source and "_u_multiply(" in program.source


def test_a_broken_identity_promise_is_named_as_the_interpreter_names_it() -> None:
    """An op that changes the dtype cannot pass g through as it is: the shared check says so, naming the node."""

    @defop(identity_vjp, doc="x in float32, with a VJP that wrongly keeps g's dtype")
    def to32(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)

    def rule(spec: Any, *, attrs: Any) -> Any:
        return graphengine.ops.TensorSpec(spec.shape, np.dtype(np.float32))

    to32 = OpDef(to32.name, to32.forward, to32.vjps, rule, identity_vjps=to32.identity_vjps, vjp_needs=frozenset())
    registry = default_registry()
    registry.register(to32, "test")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2]}],
        "nodes": [{"id": "h", "op": "to32", "inputs": ["x"]}, {"id": "loss", "op": "sum", "inputs": ["h"]}],
        "outputs": ["loss"],
    }
    plan = graphengine.load_dict(doc, registry=registry).compile()
    feeds = {"x": np.array([0.1, 0.2])}
    messages = []
    for runner in [lambda: _interpreted(plan, feeds, ["x"])] + [lambda: plan.grad(feeds, ["x"])] * 3:
        with pytest.raises(VJPError, match=r"^node 'h' \(op 'to32'\), input 0 \('x'\): VJP returned float32") as info:
            runner()
        messages.append(str(info.value))
    assert len(set(messages)) == 1


@pytest.mark.parametrize(
    "identity, said",
    [
        (frozenset({2}), "identity_vjps must be a frozenset of indices of given VJPs"),
        (frozenset({1}), "identity_vjps must be a frozenset of indices of given VJPs"),  # VJP 1 is None
        ({0}, "identity_vjps must be a frozenset"),
    ],
)
def test_a_malformed_identity_declaration_is_named(identity: Any, said: str) -> None:
    vjps = (lambda g, out, a, b, *, attrs: g, None)
    with pytest.raises(PluginError, match=r"^op 'plus' \(declared in .*\): " + said):
        OpDef("plus", lambda a, b, *, attrs: a + b, vjps, elementwise_rule, inputs=("a", "b"), identity_vjps=identity)


# --- tanh's and sigmoid's VJPs subtract from a 0-d one of the dtype (cheaper for numpy than a Python 1) ---------


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("shape", [(7,), (2, 3), ()])
def test_tanh_and_sigmoid_vjps_give_the_plain_formulas_bits(dtype: str, shape: tuple[int, ...]) -> None:
    from graphengine_std import activations

    rng = np.random.default_rng(3)
    x, g = (np.asarray(rng.standard_normal(shape) * 2, dtype=dtype) for _ in range(2))
    y = np.tanh(x)
    got = activations.tanh_vjp(g, y)
    want = g * (1 - y * y)
    assert got.dtype == np.dtype(dtype) and np.asarray(got).tobytes() == np.asarray(want).tobytes()
    s = 1 / (1 + np.exp(-x))
    got, want = activations.sigmoid_vjp(g, s), g * (s * (1 - s))
    assert got.dtype == np.dtype(dtype) and np.asarray(got).tobytes() == np.asarray(want).tobytes()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_variadic_identity_vjp_serves_every_input(dtype: str) -> None:
    @defop(identity_vjp, doc="the sum of one or more inputs, with broadcasting")
    def total(*xs: np.ndarray) -> np.ndarray:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    assert total.identity_vjps == frozenset({0}) and total.vjp_is_identity(5)
    registry = default_registry()
    registry.register(total, "test")
    w = np.linspace(0.5, 1.5, 3)
    doc = {
        "format": "graphengine/v1",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": [2, 3]}],
        "parameters": [{"name": "w", "value": w.tolist()}, {"name": "b", "value": 0.25}],
        "nodes": [
            {"id": "t", "op": "tanh", "inputs": ["x"]},
            {"id": "s", "op": "total", "inputs": ["x", "w", "t", "b", "x"]},
            {"id": "loss", "op": "sum", "inputs": ["s"]},
        ],
        "outputs": ["loss"],
    }
    plan = graphengine.load_dict(doc, registry=registry).compile()
    x = np.linspace(-1, 1, 6).reshape(2, 3).astype(dtype)
    ref = _interpreted(plan, {"x": x}, ["x", "w", "b"])
    for call in range(1, 5):
        assert_same_result(ref, plan.value_and_grad({"x": x}, ["x", "w", "b"]), call)
    assert plan._grad_schedule(["x", "w", "b"], None)[0].programs
    rtol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(ref.gradients["x"], 2 + (1 - np.tanh(x.astype(float)) ** 2), rtol=rtol)  # d/dx
    np.testing.assert_allclose(ref.gradients["w"], [2, 2, 2])  # summed over x's two rows
    np.testing.assert_allclose(ref.gradients["b"], 6)  # summed over all six
