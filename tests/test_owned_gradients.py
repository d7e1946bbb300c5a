"""Every gradient a caller gets is an array they own, on every runner.

Owned: an exact ndarray that owns its data, is writeable, is not user data or a
parameter, and shares no memory with another gradient. The generated code
decides statically which bound values and earlier gradients a gradient could be
(``epilogue.owned_gradients``); the interpreter and the table go through
``Plan._fresh``. The graph below gives each case one VJP: one that returns its
cotangent (``add``, ``ident``), one that returns a parameter passed through an
identity forward, one value that is two ``wrt`` names, a read-only result, a
view, a numpy scalar, and the shared read-only seed of the loss. Values are
checked against central differences (or, for nodes, their known values).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import graphengine
from graphengine.engine import chunks as chunks_module
from graphengine.engine import epilogue
from graphengine.engine import runners as runners_module
from graphengine.engine.plan import _interpreted
from graphengine.ops.terse import defop
from graphengine.registry import default_registry

WRT = ["x", "W", "h", "u", "u", "z", "b", "loss"]


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _registry() -> Any:
    """Test ops whose VJPs return what a careless (but correct) plugin might."""
    registry = default_registry()
    # The forward returns its input itself, the VJP its cotangent itself.
    registry.register(defop(lambda g: g, name="ident")(lambda x: x), "test")
    # x * w; where g is all ones a VJP returns the other input itself (correct: g * w == w).
    registry.register(
        defop(
            lambda g, w: w if np.all(g == 1.0) else g * w,
            lambda g, x: x if np.all(g == 1.0) else g * x,
            name="times",
        )(lambda x, w: x * w),
        "test",
    )
    registry.register(defop(lambda g: _read_only(g * 3.0), name="triple_ro")(lambda x: x * 3.0), "test")
    registry.register(defop(lambda g, x: np.stack([2.0 * x * g, g])[0], name="square_view")(lambda x: x * x), "test")
    return registry


DOC = {
    "format": "graphengine/v1",
    "inputs": [
        {"name": "x", "shape": [2], "default": [0.3, -0.7]},
        {"name": "u", "shape": [2], "default": [1.0, 2.0]},
        {"name": "z", "shape": [2], "default": [0.5, -1.5]},
    ],
    "parameters": [{"name": "W", "shape": [2], "value": [1.5, 2.0]}, {"name": "b", "shape": [], "value": 1.0}],
    "nodes": [
        {"id": "h", "op": "ident", "inputs": ["W"]},
        {"id": "p", "op": "times", "inputs": ["x", "h"]},
        {"id": "q", "op": "triple_ro", "inputs": ["u"]},
        {"id": "v", "op": "square_view", "inputs": ["z"]},
        {"id": "pq", "op": "add", "inputs": ["p", "q"]},
        {"id": "pqv", "op": "add", "inputs": ["pq", "v"]},
        {"id": "s", "op": "sum", "inputs": ["pqv"]},
        {"id": "loss", "op": "mul", "inputs": ["s", "b"]},
    ],
    "outputs": ["loss"],
}


def _plan(dtype: str = "float64") -> graphengine.Plan:
    return graphengine.load_dict(DOC, registry=_registry()).compile().with_dtype(np.dtype(dtype))


def _feeds(dtype: str) -> dict[str, np.ndarray]:
    return {"x": np.array([0.3, -0.7], dtype), "u": np.array([1.0, 2.0], dtype), "z": np.array([0.5, -1.5], dtype)}


def _expected(plan: graphengine.Plan, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Central differences of the loss for the sources; known values for the nodes h and loss."""
    values = {**{k: np.asarray(v, np.float64) for k, v in plan.graph.parameters.items()}, **feeds}

    def loss(name: str, value: np.ndarray) -> float:
        return float(plan.with_dtype(np.dtype("float64")).run({**values, name: value})["loss"])

    expected = {}
    for name in ("x", "W", "u", "z", "b"):
        base = np.asarray(values[name], np.float64)
        grad = np.zeros_like(base)
        for i in np.ndindex(base.shape):
            step = np.zeros_like(base)
            step[i] = 1e-6
            grad[i] = (loss(name, base + step) - loss(name, base - step)) / 2e-6
        expected[name] = grad
    expected["h"] = np.asarray(values["b"]) * np.asarray(values["x"])  # d loss / d h = b * x
    expected["loss"] = np.array(1.0)
    return expected


def _assert_owned(plan: graphengine.Plan, feeds: dict[str, np.ndarray], result: Any, what: str) -> None:
    grads = result.gradients
    assert sorted(grads) == sorted(set(WRT)), what
    theirs = [*feeds.values(), *plan.graph.parameters.values(), *plan.graph.constants.values()]
    for name, g in grads.items():
        assert g.__class__ is np.ndarray and g.base is None and g.flags.owndata and g.flags.writeable, (what, name)
        assert g.dtype == plan.specs[plan.slot[name]].dtype and g.shape == plan.specs[plan.slot[name]].shape, name
        assert not any(np.shares_memory(g, a) for a in theirs), f"{what}: {name} is user data or a parameter"
        others = [o for n, o in grads.items() if n != name]
        assert not any(np.shares_memory(g, o) for o in others), f"{what}: {name} shares memory with another gradient"


def _runs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[[graphengine.Plan, Any], list[Any]]]:
    """Per runner: the results of a few calls of one fresh plan."""

    def interpreter(plan: graphengine.Plan, feeds: Any) -> list[Any]:
        return [_interpreted(plan, feeds, WRT) for _ in range(2)]

    def table(plan: graphengine.Plan, feeds: Any) -> list[Any]:
        monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)  # no code on call 1: calls 1 and 2 run the table
        results = [plan.value_and_grad(feeds, WRT) for _ in range(2)]
        assert plan._grad_schedule(WRT, None)[0].table is not None
        return results

    def generated(plan: graphengine.Plan, feeds: Any) -> list[Any]:
        results = [plan.value_and_grad(feeds, WRT)]  # the checked table; the code is generated meanwhile
        schedule = plan._grad_schedule(WRT, None)[0]
        assert False in schedule.programs and False in schedule.ran, "the next calls run generated code"
        return results + [plan.value_and_grad(feeds, WRT) for _ in range(2)]

    def chunked(plan: graphengine.Plan, feeds: Any) -> list[Any]:
        monkeypatch.setattr(chunks_module, "CHUNK_LINES", 3)  # the epilogue spread over several chunks
        plan.prepare(WRT)
        results = [plan.value_and_grad(feeds, WRT) for _ in range(3)]
        assert plan._grad_schedule(WRT, None)[0].programs[False].source.count("def _chunk") > 5
        return results

    def recorded(plan: graphengine.Plan, feeds: Any) -> list[Any]:
        plan.prepare(WRT, record=True)  # generated code with the recorder, from call 2
        return [plan.value_and_grad(feeds, WRT, record=True) for _ in range(3)]

    return {"interpreter": interpreter, "table": table, "generated": generated, "chunked": chunked, "record": recorded}


@pytest.mark.parametrize("identity_tests", ["inline", "set of ids"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", ["interpreter", "table", "generated", "chunked", "record"])
def test_every_gradient_is_owned_and_right_on_every_runner(
    runner: str, dtype: str, identity_tests: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The generated code tests identity inline where few arrays are candidates, else against a set of ids.
    monkeypatch.setattr(epilogue, "INLINE_ALIAS_TESTS", 100 if identity_tests == "inline" else 0)
    plan, feeds = _plan(dtype), _feeds(dtype)
    expected = _expected(plan, feeds)
    reference = _interpreted(_plan(dtype), feeds, WRT)
    results = _runs(monkeypatch)[runner](plan, feeds)
    tol = 1e-6 if dtype == "float64" else 1e-4
    for call, result in enumerate(results, 1):
        what = f"{runner}, call {call}"
        _assert_owned(plan, feeds, result, what)
        for name, g in result.gradients.items():
            np.testing.assert_allclose(g, expected[name], rtol=tol, atol=tol, err_msg=f"{what}: {name}")
            assert g.tobytes() == reference.gradients[name].tobytes(), f"{what}: {name}: the interpreter's bits"
        assert result.outputs["loss"].tobytes() == reference.outputs["loss"].tobytes()
    # A caller may write into what it got: the next call, the parameters and the feeds are unchanged.
    parameters = {k: np.array(v) for k, v in plan.graph.parameters.items()}
    fed = {k: v.copy() for k, v in feeds.items()}
    for g in results[-1].gradients.values():
        g[...] = 42.0
    assert all(np.array_equal(plan.graph.parameters[k], v) for k, v in parameters.items())
    assert all(np.array_equal(feeds[k], v) for k, v in fed.items())
    again = _runs(monkeypatch)[runner](plan, feeds)[-1]
    assert all(again.gradients[n].tobytes() == reference.gradients[n].tobytes() for n in again.gradients)


def test_the_generated_code_tests_only_the_arrays_a_gradient_could_be(monkeypatch: pytest.MonkeyPatch) -> None:
    """Identity tests only against bound values and earlier gradients of the same dtype and shape."""
    monkeypatch.setattr(epilogue, "INLINE_ALIAS_TESTS", 100)  # inline tests here, not the set of ids
    plan = _plan()
    plan.prepare(WRT)
    source = plan._grad_schedule(WRT, None)[0].programs[False].source
    b = plan.slot["b"]
    (line,) = [row for row in source.splitlines() if row.strip().startswith(f"if g{b}.__class__")]
    others = [plan.slot[n] for n in ("x", "u", "z", "W")]  # shape (2,): b's gradient (shape ()) cannot be one
    assert not any(f"values[{s}]" in line for s in others) and f"values[{b}]" in line
    tests = [row for row in source.splitlines() if row.strip().startswith("if g") and "_copy(" in row]
    assert len(tests) == len(set(WRT))  # one test per gradient; u's second name is a copy, in the return line


def _vector_plan() -> graphengine.Plan:
    """y = ident(x) * 2 (a vector output: its cotangent is the caller's)."""
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2], "default": [0.5, -1.0]}],
        "nodes": [{"id": "i", "op": "ident", "inputs": ["x"]}, {"id": "y", "op": "add", "inputs": ["i", "i"]}],
        "outputs": ["y"],
    }
    return graphengine.load_dict(doc, registry=_registry()).compile()


@pytest.mark.parametrize("table", [False, True], ids=["generated", "table"])
def test_bad_seeds_and_feeds_give_the_interpreters_errors_on_every_call(
    table: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if table:
        monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)
    plan, reference = _vector_plan(), _vector_plan()
    bad: list[tuple[dict[str, Any], type, str]] = [
        ({}, graphengine.FeedError, r"^output 'y' has shape \(2,\), not a scalar; pass a cotangent"),
        ({"cotangent": [1.0, 2.0, 3.0]}, graphengine.FeedError, r"^cotangent has shape \(3,\) but output 'y'"),
        ({"feeds": {"x": [1.0]}}, graphengine.FeedError, r"feed 'x': shape \(1,\) does not match the declared \(2,\)"),
    ]
    good = {"wrt": ["x", "i", "y"], "output": "y", "cotangent": np.array([1.0, 3.0])}
    for call in range(4):  # good and bad calls in turn: the later good ones run generated code (or the table)
        ref = _interpreted(reference, None, **good)
        got = plan.value_and_grad(None, **good)
        for name, expected in {"x": [2.0, 6.0], "i": [2.0, 6.0], "y": [1.0, 3.0]}.items():
            g = got.gradients[name]
            np.testing.assert_array_equal(g, expected)
            assert g.tobytes() == ref.gradients[name].tobytes() and g.flags.writeable and g.base is None
            assert not np.shares_memory(g, good["cotangent"]), "the caller's cotangent is never a gradient"
        assert not np.shares_memory(got.gradients["x"], got.gradients["i"])
        for kwargs, error, message in bad:
            kwargs = {"wrt": ["x"], "output": "y", **kwargs}
            feeds = kwargs.pop("feeds", None)
            with pytest.raises(error, match=message) as expected_error:
                _interpreted(reference, feeds, **kwargs)
            with pytest.raises(error, match=message) as raised:
                plan.value_and_grad(feeds, **kwargs)
            assert str(raised.value) == str(expected_error.value), f"call {call}"
    schedule = plan._grad_schedule(good["wrt"], "y")[0]
    assert table or False in schedule.programs, "generated code ran the later calls"


def test_many_parameters_of_one_shape_share_one_set_of_ids_and_stay_owned() -> None:
    # With 40 parameters of one shape, inline `is` tests would grow as wrt x bound; the set keeps the source linear.
    n = 40
    doc = {
        "format": "graphengine/v1",
        "name": "many",
        "inputs": [{"name": "x", "shape": [3]}],
        "parameters": [{"name": f"w{i}", "value": [0.5 + i, -1.0, 2.0]} for i in range(n)],
        # times, not the std mul: an inline op's gradients are the program's own arrays and need no test at all
        "nodes": [{"id": f"u{i}", "op": "times", "inputs": ["x", f"w{i}"]} for i in range(n)]
        + [{"id": "s", "op": "add", "inputs": [f"u{i}" for i in range(2)]}]
        + [{"id": f"s{i}", "op": "add", "inputs": [f"s{i - 1}" if i > 2 else "s", f"u{i}"]} for i in range(2, n)]
        + [{"id": "loss", "op": "sum", "inputs": [f"s{n - 1}"]}],
        "outputs": ["loss"],
    }
    plan = graphengine.load_dict(doc, registry=_registry()).compile()
    x = np.array([0.3, -0.2, 0.7])
    wrt = ["x", "x", *(f"w{i}" for i in range(n))]
    schedule, _, _ = plan._grad_schedule(wrt, None)
    source = plan._generate(schedule, False).source
    assert "id(g" in source and "is values[" not in source
    want_x = sum(np.array([0.5 + i, -1.0, 2.0]) for i in range(n))
    for _ in range(4):  # the first calls run the table, later ones the generated code
        grads = plan.grad({"x": x}, wrt)
        np.testing.assert_allclose(grads["x"], want_x, rtol=1e-12)
        for i in range(n):
            np.testing.assert_array_equal(grads[f"w{i}"], x)  # d sum(x * w_i) / d w_i = x
        arrays = [*grads.values()]
        assert all(a.flags.writeable and a.base is None for a in arrays)
        assert len({id(a) for a in arrays}) == len(arrays) == n + 1
        assert not any(np.shares_memory(a, x) for a in arrays)
        assert not any(np.shares_memory(a, p) for a in arrays for p in plan.graph.parameters.values())
