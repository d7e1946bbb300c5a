"""A forward that saves an intermediate for its VJPs (``defop(saving=)`` / ``OpDef.forward_saving``).

The generated code keeps what ``forward_saving`` returns beside the output and passes it to the
node's VJPs as ``saved``; everything else (the interpreter, the checked table, forward-only runs)
runs the plain forward and passes None. Both paths must give central differences, and the same
bits. The cross-entropy loss saves its log-softmax this way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import classifier_doc
from graphengine_std import OPS

import graphengine
from graphengine.engine import chunks
from graphengine.engine.plan import _interpreted
from graphengine.errors import PluginError
from graphengine.ops import OpDef, TensorSpec
from graphengine.ops.terse import defop

CROSS_ENTROPY = next(op for op in OPS if op.name == "softmax_cross_entropy")


def _central(f: Any, x: np.ndarray, g: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d <g, f(x)> / dx by central differences, element by element."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (np.vdot(g, f(up)) - np.vdot(g, f(down))) / (2 * eps)
    return grad


@pytest.mark.parametrize("case", range(9))
def test_cross_entropy_vjp_from_the_saved_log_softmax_is_central_differences(case: int) -> None:
    samples = CROSS_ENTROPY.samples(np.random.default_rng(0))
    assert len(samples) == 9
    (logits, labels), attrs_dict = samples[case]
    attrs = CROSS_ENTROPY.attrs(**attrs_dict)
    out, saved = CROSS_ENTROPY.forward_saving(logits, labels, attrs=attrs)
    np.testing.assert_array_equal(out, CROSS_ENTROPY.forward(logits, labels, attrs=attrs))
    g = np.random.default_rng(case).standard_normal(np.shape(out))
    vjp = CROSS_ENTROPY.vjps[0]
    with_saved = vjp(g, out, logits, labels, attrs=attrs, saved=saved)
    np.testing.assert_array_equal(with_saved, vjp(g, out, logits, labels, attrs=attrs))  # the same bits
    numeric = _central(lambda x: CROSS_ENTROPY.forward(x, labels, attrs=attrs), logits, g)
    np.testing.assert_allclose(with_saved, numeric, rtol=1e-6, atol=1e-8)


def _mlp(dtype: str = "float64") -> tuple[graphengine.Plan, dict[str, np.ndarray], list[str]]:
    """The 4-6-3 tanh classifier of the training tests, with softmax cross-entropy, and a batch of 6."""
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((6, 4)).astype(dtype), "y": rng.integers(0, 3, 6)}
    return graphengine.load_dict(classifier_doc(dtype)).compile(), feeds, ["W1", "b1", "W2", "b2"]


def test_generated_code_passes_the_saved_value_and_gives_the_interpreters_bits() -> None:
    plan, feeds, wrt = _mlp()
    reference = _interpreted(plan, feeds, wrt)  # runs the plain forward: saved is None
    for _ in range(3):  # the checked table, then the generated code
        result = plan.value_and_grad(feeds, wrt)
        for name in wrt:
            np.testing.assert_array_equal(result.gradients[name], reference.gradients[name])
        np.testing.assert_array_equal(result.outputs["loss"], reference.outputs["loss"])
    source = plan._grad_schedule(tuple(wrt), None)[0].programs[False].source
    assert "saved=r" in source and "del r" in source
    W2 = plan.graph.parameters["W2"]

    def loss_at(w: np.ndarray) -> np.ndarray:
        plan.graph.parameters["W2"] = w
        try:
            return plan.run(feeds)["loss"]
        finally:
            plan.graph.parameters["W2"] = W2

    numeric = _central(loss_at, W2.copy(), np.ones(()))
    np.testing.assert_allclose(result.gradients["W2"], numeric, rtol=1e-6, atol=1e-9)


def test_chunked_generated_code_carries_the_saved_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks, "CHUNK_LINES", 3)
    plan, feeds, wrt = _mlp("float32")
    plan.prepare(wrt)
    program = plan._grad_schedule(tuple(wrt), None)[0].programs[False]
    assert program.source.count("def _chunk") > 3 and "saved=r" in program.source
    reference = _interpreted(plan, feeds, wrt).gradients
    for _ in range(2):
        result = plan.value_and_grad(feeds, wrt)
        for name in wrt:
            np.testing.assert_array_equal(result.gradients[name], reference[name])


def _square_sum(calls: list[bool]) -> OpDef:
    """sum(x**2), long form: its VJP reuses 2x when the engine saved it, and notes which path ran."""

    def forward(x: np.ndarray, *, attrs: Any) -> np.ndarray:
        return np.asarray(np.sum(x * x))

    def forward_saving(x: np.ndarray, *, attrs: Any) -> tuple[np.ndarray, np.ndarray]:
        return forward(x, attrs=attrs), 2 * x

    def vjp(g: np.ndarray, out: Any, x: np.ndarray, *, attrs: Any, saved: np.ndarray | None = None) -> np.ndarray:
        calls.append(saved is not None)
        return g * (2 * x if saved is None else saved)

    def rule(x: TensorSpec, *, attrs: Any) -> TensorSpec:
        return TensorSpec((), x.dtype)

    return OpDef("square_sum", forward, (vjp,), rule, forward_saving=forward_saving, vjp_needs=frozenset({"x"}))


def test_a_long_form_op_gets_saved_only_from_generated_code() -> None:
    calls: list[bool] = []
    op = _square_sum(calls)
    registry = graphengine.default_registry().copy()
    registry.register(op, "tests")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [3]}],
        "nodes": [{"id": "t", "op": "tanh", "inputs": ["x"]}, {"id": "loss", "op": "square_sum", "inputs": ["t"]}],
        "outputs": ["loss"],
        "loss": "loss",
    }
    plan = graphengine.load_dict(doc, registry=registry).compile()
    x = np.array([0.3, -1.2, 2.0])
    grads = [plan.value_and_grad({"x": x}, ["x"]).gradients["x"] for _ in range(3)]
    assert calls == [False, True, True]  # the checked first call runs the plain forward; generated code saves
    expected = 2 * np.tanh(x) * (1 - np.tanh(x) ** 2)  # d/dx sum(tanh(x)**2)
    for grad in grads:
        np.testing.assert_allclose(grad, expected, rtol=1e-12)
    np.testing.assert_array_equal(grads[0], grads[2])


def test_saving_declarations_that_cannot_work_are_named() -> None:
    with pytest.raises(PluginError, match=r"op 'f' .*saving takes \(y\), not the forward's inputs \(x\)"):
        defop(lambda g, saved: g * saved, name="f", saving=lambda y: (y, y))(lambda x: x)
    with pytest.raises(PluginError, match="the VJP of input 'x' names 'saved', which it cannot read"):
        defop(lambda g, saved: g * saved, name="f")(lambda x: x)
    with pytest.raises(PluginError, match="an input may not be named 'saved'"):

        def h(saved: np.ndarray) -> np.ndarray:
            return saved

        defop(lambda g: g, saving=lambda saved: (saved, saved))(h)
    with pytest.raises(PluginError, match="forward_saving must be callable"):
        OpDef("k", lambda x, attrs: x, (None,), lambda x, attrs: x, forward_saving=3)  # type: ignore[arg-type]
