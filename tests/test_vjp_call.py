"""The one VJP call (graphengine.ops.vjp.call_vjp): reduce, check, and name what went wrong, on every call."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import graphengine
from graphengine import OpDef, default_registry, elementwise_rule
from graphengine.errors import ExecutionError
from graphengine.ops.vjp import VJPError, VJPSite, call_vjp, fit_cotangent, unbroadcast

F64 = np.dtype("float64")
SITE = VJPSite("mul", 1, "b", node="h")


def vjp_returning(value: Any) -> Callable[..., Any]:
    return lambda g, out, *inputs, attrs: value


def test_a_broadcast_cotangent_is_reduced_to_the_input_shape() -> None:
    g = np.arange(6.0).reshape(2, 3)
    reduced = call_vjp(lambda g, out, a, b, *, attrs: g, g, None, [None, None], None, shape=(3,), dtype=F64, site=SITE)
    np.testing.assert_array_equal(reduced, [3.0, 5.0, 7.0])
    kept = call_vjp(lambda g, out, a, b, *, attrs: g, g, None, [None, None], None, shape=(2, 1), dtype=F64, site=SITE)
    np.testing.assert_array_equal(kept, [[3.0], [12.0]])


# Every path of unbroadcast (a few numbers to a scalar, many to a scalar, leading axes, stretched axes, both),
# against the definition: sum over the added axes, then over the stretched ones with keepdims.
UNBROADCAST_CASES = [
    ((2,), ()), ((7,), ()), ((8,), ()), ((1000,), ()), ((2, 3), ()), ((5, 2, 3), (2, 3)), ((4, 5, 2, 3), (2, 3)),
    ((2, 3), (1, 3)), ((2, 3), (2, 1)), ((4, 2, 3), (1, 3)), ((4, 2, 3), (3,)), ((0, 3), (3,)), ((0,), ()),
]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("have", "shape"), UNBROADCAST_CASES, ids=str)
def test_unbroadcast_sums_exactly_the_broadcast_axes(have: tuple[int, ...], shape: tuple[int, ...], dtype: str) -> None:
    cotangent = np.random.default_rng(len(have) + sum(have)).standard_normal(have).astype(dtype)
    lead = len(have) - len(shape)
    expected = cotangent.astype(np.float64).sum(axis=tuple(range(lead)))
    expected = expected.sum(
        axis=tuple(i for i, n in enumerate(shape) if n == 1 and expected.shape[i] != 1), keepdims=True
    )
    reduced = unbroadcast(cotangent, shape)
    assert reduced.__class__ is np.ndarray and reduced.shape == shape and reduced.dtype == np.dtype(dtype)
    np.testing.assert_allclose(reduced, expected, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)


@pytest.mark.parametrize(("have", "shape"), [((2, 3), (2,)), ((2, 3), (4, 2, 3)), ((3,), (2,)), ((2,), (1, 3))])
def test_unbroadcast_refuses_a_shape_broadcasting_could_not_have_made(
    have: tuple[int, ...], shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match="cotangent shape"):
        unbroadcast(np.ones(have), shape)


def test_a_few_numbers_summed_to_a_scalar_keep_infinities_and_nan() -> None:
    assert np.isnan(unbroadcast(np.array([np.inf, -np.inf]), ()))
    assert unbroadcast(np.array([1e308, 1e308]), ()) == np.inf


def test_a_fitting_result_comes_back_as_it_is() -> None:
    exact = np.ones(3)
    assert call_vjp(vjp_returning(exact), exact, None, [], None, shape=(3,), dtype=F64, site=SITE) is exact
    scalar = np.float64(2.0)  # what arithmetic on 0-d arrays gives
    assert fit_cotangent(scalar, (), F64, SITE) is scalar


def test_the_arguments_are_passed_in_order() -> None:
    seen: list[Any] = []

    def vjp(g: Any, out: Any, a: Any, b: Any, *, attrs: Any) -> Any:
        seen.extend([g, out, a, b, attrs])
        return g

    g = np.ones(2)
    call_vjp(vjp, g, "out", ["a", "b"], "attrs", shape=(2,), dtype=F64, site=SITE)
    assert seen == [g, "out", "a", "b", "attrs"]


def test_a_wrong_shape_is_a_typed_error_naming_node_op_input_and_both_shapes() -> None:
    with pytest.raises(VJPError) as info:
        call_vjp(vjp_returning(np.ones((2, 4))), np.ones(3), None, [], None, shape=(2, 3), dtype=F64, site=SITE)
    assert isinstance(info.value, ExecutionError)
    message = str(info.value)
    assert message.startswith("node 'h' (op 'mul'), input 1 ('b'): ")
    assert "(2, 4)" in message and "(2, 3)" in message
    assert info.value.site == SITE and info.value.site.node == "h" and info.value.site.input == "b"
    with pytest.raises(VJPError, match=r"input 1 \('b'\).*shape \(3,\).*input's shape \(2,\)"):
        fit_cotangent(np.ones(3), (2,), F64, SITE)
    with pytest.raises(VJPError, match=r"shape \(\).*input's shape \(2,\)"):
        fit_cotangent(np.float64(1.0), (2,), F64, SITE)


def test_a_wrong_dtype_is_a_typed_error_naming_both_dtypes() -> None:
    with pytest.raises(
        VJPError, match=r"^node 'h' \(op 'mul'\), input 1 \('b'\): VJP returned float32 for a float64 input$"
    ):
        call_vjp(vjp_returning(np.ones(3, np.float32)), np.ones(3), None, [], None, shape=(3,), dtype=F64, site=SITE)
    with pytest.raises(VJPError, match="returned int64 for a float64"):  # checked before any summing
        fit_cotangent(np.ones((2, 3), np.int64), (3,), F64, SITE)


@pytest.mark.parametrize("value", [[1.0, 2.0, 3.0], 1.5, None, "abc"])
def test_a_non_array_result_is_a_typed_error(value: Any) -> None:
    with pytest.raises(VJPError, match=rf"input 1 \('b'\): VJP returned a {type(value).__name__}, not a numpy array"):
        call_vjp(vjp_returning(value), np.ones(3), None, [], None, shape=(3,), dtype=F64, site=SITE)


def test_a_raising_vjp_is_a_typed_error_chained_to_the_original() -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("internal detail")

    with pytest.raises(
        VJPError, match=r"^node 'h' \(op 'mul'\), input 1 \('b'\): VJP raised KeyError: 'internal detail'$"
    ) as info:
        call_vjp(boom, np.ones(3), None, [], None, shape=(3,), dtype=F64, site=SITE)
    assert isinstance(info.value.__cause__, KeyError)


def test_a_site_without_a_node_names_the_op() -> None:
    with pytest.raises(VJPError, match=r"^op 'mul', input 1 \('b'\): VJP returned float32"):
        fit_cotangent(np.ones(3, np.float32), (3,), F64, VJPSite("mul", 1, "b"))


# --- the same errors from a plan, on its first (interpreted) and later (generated) calls -----------

BAD = {
    "shape": (lambda g: np.ones(7), r"VJP returned shape \(7,\), which does not reduce to the input's shape \(2,\)"),
    "broadcast-shape": (
        lambda g: np.ones((2, 3)),
        r"VJP returned shape \(2, 3\), which does not reduce to the input's shape \(2,\)",
    ),
    "dtype": (lambda g: g.astype(np.float32), r"VJP returned float32 for a float64 input"),
    "non-array": (lambda g: g.tolist(), r"VJP returned a list, not a numpy array"),
    "raises": (lambda g: {}["internal"], r"VJP raised KeyError: 'internal'"),
}


def flaky_plan(bad: Callable[[np.ndarray], Any], good_calls: int, shape: list[Any]) -> graphengine.Plan:
    """x -> e = flaky(x) -> loss = sum(e), where flaky's VJP goes wrong after ``good_calls`` calls."""
    calls: list[int] = []

    def vjp(g: np.ndarray, out: Any, x: Any, *, attrs: Any) -> Any:
        calls.append(1)
        return g * 2.0 if len(calls) <= good_calls else bad(g)

    registry = default_registry()
    registry.register(OpDef("flaky", lambda x, *, attrs: x * 2.0, (vjp,), elementwise_rule), "test")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": shape, "default": [0.1, 0.2]}],
        "nodes": [{"id": "e", "op": "flaky", "inputs": ["x"]}, {"id": "loss", "op": "sum", "inputs": ["e"]}],
        "outputs": ["loss"],
    }
    return graphengine.load_dict(doc, registry=registry).compile()


@pytest.mark.parametrize("shape", [[2], [None]], ids=["static", "free"])
@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("record", [False, True])
def test_a_vjp_that_goes_wrong_after_the_first_call_is_caught_on_every_call(
    kind: str, shape: list[Any], record: bool
) -> None:
    bad, message = BAD[kind]
    plan = flaky_plan(bad, good_calls=1, shape=shape)
    first = plan.value_and_grad(wrt=["x"], record=record)  # the checked table (the interpreter with record)
    np.testing.assert_array_equal(first.gradients["x"], [2.0, 2.0])
    for _ in range(3):  # generated code (the interpreter with record), every call
        with pytest.raises(VJPError, match=r"^node 'e' \(op 'flaky'\), input 0 \('x'\): " + message) as info:
            plan.value_and_grad(wrt=["x"], record=record)
        assert info.value.site == VJPSite("flaky", 0, "x", node="e")
    ran_code = False in plan._grad_schedule(["x"], None)[0].programs
    assert ran_code is not record, "the later calls ran generated code (without record)"


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_vjp_that_is_wrong_from_the_start_is_caught_on_the_first_call_too(kind: str) -> None:
    bad, message = BAD[kind]
    plan = flaky_plan(bad, good_calls=0, shape=[2])
    for _ in range(3):  # the first call never succeeds, so every call is a first call
        with pytest.raises(VJPError, match=r"^node 'e' \(op 'flaky'\), input 0 \('x'\): " + message):
            plan.grad(wrt=["x"])


def test_gradcheck_uses_the_same_call() -> None:
    bad, message = BAD["dtype"]
    op = OpDef("bad_dtype", lambda x, *, attrs: x * 1.0, (lambda g, out, x, *, attrs: bad(g),), elementwise_rule)
    with pytest.raises(VJPError, match=r"^op 'bad_dtype', input 0 \('x'\): " + message):
        graphengine.check_op(op, [np.array([0.1, 0.2])])
