"""The generated code of inline expression ops: what it leaves out, what it keeps, how it fails.

No result check where a result is certain to fit, a check where a leaf is an
opaque op's output or a shape is free; an error raised on an inline line is
the interpreter's error; a parameter replaced by one of another shape is named;
gradients made by inline expressions are the caller's own; a long-form op with
hand-written expressions gives its rules' bits.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from test_engine_parity import assert_same_result
from test_inline_ops import _square_long

import graphengine
from graphengine.engine.plan import _interpreted
from graphengine.errors import ExecutionError
from graphengine.ops import defop
from graphengine.registry import default_registry


def _fanout(branches: int, shape: list[Any], opaque: bool = False, dtype: str = "float64") -> graphengine.Plan:
    """Scenario D in small: x fanned out to tanh(x * w_i) (or tanh(opaque(x * w_i))), added up, summed."""
    registry = default_registry()
    registry.register(defop(lambda g: g * 1.0, name="opaque")(lambda x: x * 1.0), "test")  # not inline
    rng = np.random.default_rng(0)
    size = [2 if d is None else d for d in shape]
    nodes: list[dict[str, Any]] = []
    for i in range(branches):
        nodes.append({"id": f"u{i}", "op": "mul", "inputs": ["x", f"w{i}"]})
        if opaque:
            nodes.append({"id": f"o{i}", "op": "opaque", "inputs": [f"u{i}"]})
        nodes.append({"id": f"t{i}", "op": "tanh", "inputs": [f"o{i}" if opaque else f"u{i}"]})
        if i:
            nodes.append({"id": f"s{i}", "op": "add", "inputs": [f"s{i - 1}" if i > 1 else "t0", f"t{i}"]})
    nodes.append({"id": "loss", "op": "sum", "inputs": [f"s{branches - 1}"]})
    doc = {
        "format": "graphengine/v1",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": shape}],
        "parameters": [{"name": f"w{i}", "value": rng.standard_normal(size[-1:]).tolist()} for i in range(branches)],
        "nodes": nodes,
        "outputs": ["loss"],
    }
    return graphengine.load_dict(doc, registry=registry).compile()


WRT = ["x", "w0", "w1", "w2"]


def _source(plan: graphengine.Plan, wrt: list[str] = WRT) -> str:
    plan.prepare(wrt)
    return plan._grad_schedule(wrt, None)[0].programs[False].source


def test_certain_results_get_no_check_and_no_frame() -> None:
    source = _source(_fanout(3, [5]))
    # sum's VJP is the only call and the only check; tanh and mul run as ufunc lines, into their own arrays.
    assert source.count("c = v") == 1 and source.count("c.__class__ is not nd") == 1
    assert len(re.findall(r"= f\d+\(", source)) == 1  # no forward call but sum's
    assert "_u_tanh(" in source and "c = _u_subtract(_k0, c, c)" in source
    # The gradients are the program's own arrays: no ownership test, no set of ids.
    assert "_copy(" not in source and "taken" not in source
    # x's fan-in: the first contribution is an inline result, so every later one is added into it in place.
    assert "g0 = _u_add(g0, c, g0)" in source and "g0 + c" not in source


def test_an_opaque_forward_output_keeps_the_check() -> None:
    # tanh's output is computed from an opaque op's output (checked on call 1 only): not certain.
    source = _source(_fanout(3, [5], opaque=True))
    lines = source.splitlines()
    tanh_vjp = [i for i, row in enumerate(lines) if "_u_subtract(_k0" in row]
    assert len(tanh_vjp) == 3
    for i in tanh_vjp:  # fresh temporaries (none is certain to be an array to write into), then the usual check
        assert lines[i].strip() == "t1 = _u_subtract(_k0, t0)" and lines[i + 1].strip().startswith("c = _u_multiply(g")
        assert lines[i + 2].strip() == "del t0, t1" and "c.__class__ is not nd" in lines[i + 3]
    # mul's VJPs read only certain leaves (bound values, checked cotangents): no check for them.
    assert source.count("c.__class__ is not nd") == 1 + 3 * 2  # sum's, and per branch tanh's and opaque's


def test_one_op_meeting_other_facts_at_two_nodes_is_written_for_each() -> None:
    """The lines of an expression are worked out once per form (the op's expression, what is known of
    each leaf): a certain and an uncertain tanh in one program each get their own."""
    registry = default_registry()
    registry.register(defop(lambda g: g * 1.0, name="opaque")(lambda x: x * 1.0), "test")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [4]}],
        "parameters": [{"name": "w0", "value": [0.5, -1.0, 2.0, 0.25]}, {"name": "w1", "value": [1.0, 2.0, -0.5, 3.0]}],
        "nodes": [
            {"id": "u0", "op": "mul", "inputs": ["x", "w0"]},
            {"id": "t0", "op": "tanh", "inputs": ["u0"]},
            {"id": "u1", "op": "mul", "inputs": ["x", "w1"]},
            {"id": "o1", "op": "opaque", "inputs": ["u1"]},
            {"id": "t1", "op": "tanh", "inputs": ["o1"]},
            {"id": "s", "op": "add", "inputs": ["t0", "t1"]},
            {"id": "loss", "op": "sum", "inputs": ["s"]},
        ],
        "outputs": ["loss"],
    }
    plan = graphengine.load_dict(doc, registry=registry).compile()
    source = _source(plan, ["x", "w0", "w1"])
    assert source.count("c = _u_subtract(_k0, c, c)") == 1  # t0's: certain, into its own temporary
    assert source.count("t1 = _u_subtract(_k0, t0)") == 1  # t1's: fresh temporaries, then the check
    feeds = {"x": np.array([0.1, -0.3, 0.7, 1.1])}
    ref = _interpreted(plan, feeds, ["x", "w0", "w1"])
    assert_same_result(ref, plan.value_and_grad(feeds, ["x", "w0", "w1"]), 3)


def test_a_free_dimension_keeps_the_check_and_writes_nothing_in_place() -> None:
    source = _source(_fanout(3, [None, 4]))
    # sum's; per branch tanh's and mul's two; the two adds' identity VJPs (a run-time shape to test)
    assert source.count("c.__class__ is not nd") == 1 + 3 * 3 + 2 * 2
    assert ", c, c)" not in source  # the shapes are not known here: no temporary is written into


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opaque", [False, True])
@pytest.mark.parametrize("shape", [[5], [None, 4]])
def test_the_fanout_gives_the_interpreters_bits_and_owned_gradients(shape: list[Any], opaque: bool, dtype: str) -> None:
    plan = _fanout(4, shape, opaque, dtype)
    feeds = {"x": np.linspace(-1, 1, 5 if shape == [5] else 8).reshape([5] if shape == [5] else [2, 4]).astype(dtype)}
    wrt = ["x", "w0", "w1", "w2", "w3", "t1"]
    ref = _interpreted(plan, feeds, wrt)
    for call in range(1, 5):
        got = plan.value_and_grad(feeds, wrt)
        assert_same_result(ref, got, call)
        arrays = list(got.gradients.values())
        assert all(a.__class__ is np.ndarray and a.base is None and a.flags.writeable for a in arrays)
        assert len({id(a) for a in arrays}) == len(arrays)
        assert not any(np.shares_memory(a, b) for a in arrays for b in [*plan.graph.parameters.values(), feeds["x"]])
        for a in arrays:
            a[...] = 42.0  # the caller's own: the next call is unchanged
    assert plan._grad_schedule(wrt, None)[0].programs


def test_an_error_on_an_inline_forward_line_is_the_interpreters() -> None:
    plan, x = _fanout(2, [3]), np.array([1.0, 2.0, 3.0])
    plan.graph.parameters["w0"] = np.array([1e200, 1.0, 1.0])
    plan.graph.parameters["w1"] = np.array([1e200, 1.0, 1.0])
    messages = []
    with np.errstate(all="raise"):
        for call in range(4):  # call 1 on the interpreter or the table, then generated code
            with pytest.raises(ExecutionError) as raised:
                plan.value_and_grad({"x": x * 1e200}, WRT[:3])
            messages.append(str(raised.value))
        with pytest.raises(ExecutionError) as interpreted:
            _interpreted(plan, {"x": x * 1e200}, WRT[:3])
    assert plan._grad_schedule(WRT[:3], None)[0].programs
    assert set(messages) == {str(interpreted.value)}
    assert str(interpreted.value) == "node 'u0' (op 'mul') failed: FloatingPointError: overflow encountered in multiply"


def test_an_error_on_an_inline_vjp_line_names_the_node_as_the_interpreter_does() -> None:
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "a", "shape": [2]}],
        "parameters": [{"name": "b", "value": [1e200, 2.0]}],
        "nodes": [{"id": "q", "op": "div", "inputs": ["a", "b"]}, {"id": "loss", "op": "sum", "inputs": ["q"]}],
        "outputs": ["loss"],
    }
    plan, feeds = graphengine.load_dict(doc).compile(), {"a": np.array([1.0, 1.0])}
    with np.errstate(over="raise"):  # b * b overflows in b's VJP, -g * a / (b * b); the forward is finite
        with pytest.raises(ExecutionError) as interpreted:
            _interpreted(plan, feeds, ["a", "b"])
        for _ in range(4):
            with pytest.raises(ExecutionError) as raised:
                plan.value_and_grad(feeds, ["a", "b"])
            assert str(raised.value) == str(interpreted.value)
    assert str(interpreted.value) == (
        "node 'q' (op 'div'), input 1 ('b'): VJP raised FloatingPointError: overflow encountered in multiply"
    )
    assert "_u_multiply(s1, s1)" in plan._grad_schedule(["a", "b"], None)[0].programs[False].source


def test_a_parameter_replaced_by_another_shape_is_named() -> None:
    plan, x = _fanout(3, [5]), np.linspace(-1, 1, 5)
    for _ in range(3):
        plan.value_and_grad({"x": x}, WRT)
    assert plan._grad_schedule(WRT, None)[0].programs
    plan.graph.parameters["w1"] = np.ones(4)
    with pytest.raises(ExecutionError, match=r"^value 'w1': the graph declares float64 of shape \(5,\), but it holds a float64 array of shape \(4,\)"):
        plan.value_and_grad({"x": x}, WRT)
    plan.graph.parameters["w1"] = np.full(5, 0.5, dtype=np.float32)
    with pytest.raises(ExecutionError, match=r"^value 'w1': .* but it holds a float32 array of shape \(5,\)"):
        plan.value_and_grad({"x": x}, WRT)
    plan.graph.parameters["w1"] = np.full(5, 0.5)  # a new array that fits: verified once, then used
    want = _interpreted(plan, {"x": x}, WRT)
    for call in range(3):
        assert_same_result(want, plan.value_and_grad({"x": x}, WRT), call)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_long_form_op_with_hand_written_expressions_gives_its_rules_bits(dtype: str) -> None:
    registry = default_registry()
    registry.register(_square_long(), "test")
    doc = {
        "format": "graphengine/v1",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": [3]}],
        "parameters": [{"name": "k", "value": [0.5, -1.5, 2.0]}],
        "nodes": [
            {"id": "y", "op": "square", "inputs": ["x"]},
            {"id": "z", "op": "mul", "inputs": ["y", "k"]},
            {"id": "loss", "op": "sum", "inputs": ["z"]},
        ],
        "outputs": ["loss"],
    }
    plan = graphengine.load_dict(doc, registry=registry).compile()
    feeds = {"x": np.array([0.3, -1.7, 2.9], dtype=dtype)}
    ref = _interpreted(plan, feeds, ["x", "k"])
    for call in range(1, 4):
        assert_same_result(ref, plan.value_and_grad(feeds, ["x", "k"]), call)
    source = plan._grad_schedule(["x", "k"], None)[0].programs[False].source
    assert "_u_multiply(s0, s0)" in source and "_u_multiply(_k" in source
    np.testing.assert_allclose(ref.gradients["x"], 2 * feeds["x"] * np.array([0.5, -1.5, 2.0]), rtol=1e-6)
