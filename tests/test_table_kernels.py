"""The table's written-out kernels (engine/kernels.py, round six) compute the generated kernels' bits.

Two ways of building a table's VJP entries exist: a kernel written out in
``engine/kernels.py`` for the common forms, and one generated and compiled per
form (``table._source``) for the rest. Forcing every VJP through the generated
form (``kernels.vjp_form`` answering None) must give the same outputs and
gradients, bit for bit, as the written-out kernels and as the step interpreter
(the reference), on random DAGs in float64 and float32, with static and free
input shapes.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from conftest import random_graph_doc
from test_engine_parity import assert_same_result

import graphengine
from graphengine.engine import kernels
from graphengine.engine import runners as runners_module
from graphengine.engine import table as table_module
from graphengine.engine.plan import _interpreted


def _doc(seed: int, dtype: str, free: bool) -> dict[str, Any]:
    doc = copy.deepcopy(random_graph_doc(np.random.default_rng(seed), 30))
    doc["dtype"] = dtype
    if not free:
        doc["inputs"][0]["shape"] = [2, 3]
    return doc


def _first_call(doc: dict[str, Any], wrt: list[str]) -> tuple[graphengine.GradResult, list[Any]]:
    """The first call that runs the table (call 1, checked; call 2 when a free shape's call 1 was interpreted)."""
    plan = graphengine.load_dict(doc).compile()
    result = plan.value_and_grad(None, wrt)
    table = plan._grad_schedule(wrt, None)[0].table
    if table is None:  # free dimensions measured just now: call 1 ran the interpreter
        result = plan.value_and_grad(None, wrt)
        table = plan._grad_schedule(wrt, None)[0].table
    assert table is not None
    return result, [entry[0] for entry in table.backward]


@pytest.mark.parametrize("free", [False, True], ids=["static", "free"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", range(6))
def test_written_out_and_generated_kernels_give_the_interpreters_bits(
    seed: int, dtype: str, free: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)  # calls 2 and 3 run the table too
    doc = _doc(seed, dtype, free)
    wrt = ["x", "p0", "p1"]
    reference = _interpreted(graphengine.load_dict(doc).compile(), None, wrt)
    written, written_kernels = _first_call(doc, wrt)
    # Static shapes: every VJP here (terse, g then values) is written out; free ones are generated.
    assert not free or set(written_kernels) - set(kernels.VJP.values())
    assert free or set(written_kernels) <= set(kernels.VJP.values()) | {table_module._clear}
    with monkeypatch.context() as m:
        m.setattr(kernels, "vjp_form", lambda spec: None)
        generated, generated_kernels = _first_call(doc, wrt)
    assert not set(generated_kernels) & set(kernels.VJP.values()), "every VJP ran a generated kernel"
    assert_same_result(reference, written, 1)
    assert_same_result(reference, generated, 1)
    plan = graphengine.load_dict(doc).compile()
    for call in (1, 2, 3):  # later (unchecked) table calls too
        assert_same_result(reference, plan.value_and_grad(None, wrt), call)


def test_vjp_form_writes_out_only_g_then_values_then_one_constant() -> None:
    assert kernels.vjp_form(((None, "g"),)) == (kernels.VJP[(0, False)], (), None)
    assert kernels.vjp_form(((None, "g"), (None, "out"), (None, 1))) == (kernels.VJP[(2, False)], (0, 2), None)
    assert kernels.vjp_form(((None, "g"), (None, 0), (None, "attrs"))) == (kernels.VJP[(1, True)], (1,), "attrs")
    assert kernels.vjp_form(((None, "g"), (None, ("argnum", 2)))) == (kernels.VJP[(0, True)], (), "argnum")
    for other in [
        ((None, 0), (None, "g")),  # g not first
        ((None, "g"), ("x", 0)),  # a keyword
        ((None, "g"), (None, "attrs"), (None, 0)),  # a value after the constant
        ((None, "g"), (None, 0), (None, 1), (None, 2), (None, 3)),  # four values
        ((None, "g"), (None, "saved")),
    ]:
        assert kernels.vjp_form(other) is None, other


def _four_input_plan(fail: list[bool]) -> graphengine.Plan:
    """A terse op of four inputs (the forward kernel of any input count) between two ops of three and one."""
    from graphengine.ops.terse import defop
    from graphengine.registry import default_registry

    def f4(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        if fail[0]:
            raise ValueError("four went wrong")
        return a * b + c * d

    vjps = (lambda g, b: g * b, lambda g, a: g * a, lambda g, d: g * d, lambda g, c: g * c)
    op4 = defop(*vjps, name="four")(f4)
    op3 = defop(lambda g, b, c: g * b * c, lambda g, a, c: g * a * c, lambda g, a, b: g * a * b, name="three")(
        lambda a, b, c: a * b * c
    )
    registry = default_registry()
    registry.register(op4, "test")
    registry.register(op3, "test")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [3], "default": [0.5, -1.0, 2.0]}],
        "parameters": [{"name": "w", "shape": [3], "value": [1.5, 0.25, -0.75]}],
        "nodes": [
            {"id": "t", "op": "three", "inputs": ["x", "w", "x"]},
            {"id": "q", "op": "four", "inputs": ["t", "w", "x", "t"]},
            {"id": "loss", "op": "sum", "inputs": ["q"]},
        ],
        "outputs": ["loss"],
    }
    return graphengine.load_dict(doc, registry=registry).compile()


def test_a_forward_of_any_input_count_gives_the_interpreters_bits_and_names_its_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from graphengine.errors import ExecutionError

    monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)
    fail = [False]
    plan = _four_input_plan(fail)
    reference = _interpreted(_four_input_plan(fail), None, ["x", "w"])
    got = plan.value_and_grad(None, ["x", "w"])
    assert_same_result(reference, got, 1)
    forward = plan._grad_schedule(["x", "w"], None)[0].table.forward
    assert [entry[0] for entry in forward] == [kernels.FORWARD[(True, 3)], kernels.FORWARD_ANY[True], forward[2][0]]
    x, w = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -0.75])
    t = x * w * x  # loss = sum(t * w + x * t): d/dx and d/dw by central differences
    np.testing.assert_allclose(got.outputs["loss"], np.sum(t * w + x * t))

    def loss(xv: np.ndarray, wv: np.ndarray) -> float:
        tv = xv * wv * xv
        return float(np.sum(tv * wv + xv * tv))

    eps = 1e-6
    for name, at in (("x", 0), ("w", 1)):
        numeric = []
        for k in range(3):
            step = np.zeros(3)
            step[k] = eps
            args_hi, args_lo = [x, w], [x, w]
            args_hi[at], args_lo[at] = args_hi[at] + step, args_lo[at] - step
            numeric.append((loss(*args_hi) - loss(*args_lo)) / (2 * eps))
        np.testing.assert_allclose(got.gradients[name], numeric, rtol=1e-6)
    fail[0] = True
    with pytest.raises(ExecutionError, match=r"^node 'q' \(op 'four'\) failed: ValueError: four went wrong"):
        plan.grad(None, ["x", "w"])


def test_a_vjp_reading_three_values_runs_its_written_out_kernel_and_a_raising_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``f(g, a, b, c)`` runs ``kernels.VJP[(3, False)]`` (no standard VJP reads three values): the
    interpreter's bits, central differences, and a VJP that raises named with its node and input."""
    from graphengine.ops.terse import defop
    from graphengine.ops.vjp import VJPError
    from graphengine.registry import default_registry

    monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)
    fail = [False]

    def a_bar(g: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        if fail[0]:
            raise ArithmeticError("a_bar went wrong")
        return g * b * c + 0.0 * a  # reads all three values

    op = defop(a_bar, lambda g, a, c: g * a * c, lambda g, a, b: g * a * b, name="triple")(lambda a, b, c: a * b * c)
    registry = default_registry()
    registry.register(op, "test")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [3], "default": [0.5, -1.0, 2.0]}],
        "parameters": [{"name": "w", "shape": [3], "value": [1.5, 0.25, -0.75]}],
        "nodes": [{"id": "t", "op": "triple", "inputs": ["x", "w", "w"]}, {"id": "loss", "op": "sum", "inputs": ["t"]}],
        "outputs": ["loss"],
    }
    plan = graphengine.load_dict(doc, registry=registry).compile()
    reference = _interpreted(graphengine.load_dict(doc, registry=registry).compile(), None, ["x", "w"])
    got = plan.value_and_grad(None, ["x", "w"])
    assert_same_result(reference, got, 1)
    assert kernels.VJP[(3, False)] in [e[0] for e in plan._grad_schedule(["x", "w"], None)[0].table.backward]
    x, w = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -0.75])
    np.testing.assert_allclose(got.gradients["x"], w * w, rtol=1e-12)  # d/dx sum(x w w), exact
    eps = 1e-6
    numeric = [(np.sum(x * (w + e) ** 2) - np.sum(x * (w - e) ** 2)) / (2 * eps) for e in np.eye(3) * eps]
    np.testing.assert_allclose(got.gradients["w"], numeric, rtol=1e-6)
    fail[0] = True
    with pytest.raises(VJPError, match=r"node 't' \(op 'triple'\), input 0 \('x'\): VJP raised ArithmeticError"):
        plan.grad(None, ["x", "w"])
