"""Inline expression ops: tracing, declaration, and the numbers (graphengine/ops/expr.py, engine/inline.py).

The generated code of every std op declared inline is bitwise equal to the step
interpreter's (which calls the rules as written) on every runner, in float32
and float64, with broadcasting, 0-d values and a free batch dimension; its
gradients agree with central differences. The generated code runs in
tests/test_inline_codegen.py: what it leaves out, errors, bound values.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from test_engine_parity import assert_same_result

import graphengine
from graphengine.engine import chunks as chunks_module
from graphengine.engine import runners as runners_module
from graphengine.engine.inline import Facts, _constant
from graphengine.engine.plan import _interpreted
from graphengine.errors import PluginError
from graphengine.ops import OpDef, defop, elementwise_rule, inline_as
from graphengine.ops.expr import Apply, Const, Leaf, TraceError, evaluate, trace
from graphengine.registry import default_registry

# --- tracing ---------------------------------------------------------------------------------------

SUPPORTED: list[tuple[Callable[..., Any], str]] = [
    (lambda a, b: a + b, "add(a, b)"),
    (lambda a, b: a - b, "subtract(a, b)"),
    (lambda a, b: a * b, "multiply(a, b)"),
    (lambda a, b: a / b, "divide(a, b)"),
    (lambda a, b: a**b, "(a ** b)"),
    (lambda a, b: -a, "negative(a)"),
    (lambda a, b: +a, "positive(a)"),
    (lambda a, b: abs(a), "absolute(a)"),
    (lambda a, b: 2 + a, "add(2, a)"),  # reflected forms keep the operand order
    (lambda a, b: 1 - a, "subtract(1, a)"),
    (lambda a, b: 0.5 * a, "multiply(0.5, a)"),
    (lambda a, b: 3.0 / a, "divide(3.0, a)"),
    (lambda a, b: 2.0**a, "(2.0 ** a)"),
    (lambda a, b: a**2, "(a ** 2)"),
    (lambda a, b: a < b, "less(a, b)"),
    (lambda a, b: a <= 0, "less_equal(a, 0)"),
    (lambda a, b: a > b, "greater(a, b)"),
    (lambda a, b: a >= 1.5, "greater_equal(a, 1.5)"),
    (lambda a, b: a == b, "equal(a, b)"),
    (lambda a, b: a != b, "not_equal(a, b)"),
    (lambda a, b: np.tanh(a) * np.maximum(b, 0), "multiply(tanh(a), maximum(b, 0))"),
    (lambda a, b: np.multiply(a, b), "multiply(a, b)"),
    (lambda a, b: b * (a > 0), "multiply(b, greater(a, 0))"),
]


@pytest.mark.parametrize("index", range(len(SUPPORTED)))
def test_each_supported_form_is_recorded_and_evaluates_to_the_rules_bits(index: int) -> None:
    fn, shown = SUPPORTED[index]
    expr = trace(fn, ["a", "b"])
    assert repr(expr) == shown
    rng = np.random.default_rng(index)
    for dtype in ("float64", "float32"):
        a, b = (rng.uniform(0.5, 2.0, 5).astype(dtype) for _ in range(2))
        want, got = fn(a, b), evaluate(expr, {"a": a, "b": b})
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_a_shared_sub_expression_is_one_node() -> None:
    expr = trace(lambda x: (lambda t: t + t * x)(x * x), ["x"])
    assert len([n for n in expr.nodes() if isinstance(n, Apply)]) == 3  # x*x once, t*x, the sum
    assert expr.leaves() == {"x"}


REFUSED: list[tuple[Callable[..., Any], str]] = [
    (lambda x: x.dtype, r"reads the attribute \.dtype of a value"),
    (lambda x: x if x else -x, r"tests a value \(if, and, or"),
    (lambda x: 0 < x < 1, r"tests a value"),
    (lambda x: np.where(x > 0, x, 0), r"calls np\.where, which is not a ufunc"),
    (lambda x: np.broadcast_to(x, (3,)), r"calls np\.broadcast_to, which is not a ufunc"),
    (lambda x: np.multiply(x, x, out=x), r"passes out= to np\.multiply; an expression takes no keyword"),
    (lambda x: np.add(x, 1, dtype=np.float32), r"passes dtype= to np\.add"),
    (lambda x: np.add.reduce(x), r"calls np\.add\.reduce; an expression records only plain ufunc calls"),
    (lambda x: np.modf(x), r"calls np\.modf, which has 2 outputs"),
    (lambda x: x * np.float64(2.0), r"passes a float64 constant .* write it as a Python number"),
    (lambda x: x * np.ones(3), r"passes a ndarray constant"),
    (lambda x: np.asarray(x), r"turns a value into an array"),
    (lambda x: x[0], r"indexes a value"),
    (lambda x: x @ x, r"uses @"),
    (lambda x: x, r"returns its argument 'x' itself; declare identity_vjp"),
    (lambda x: 2.0, r"returns a float, not an expression"),
    (lambda x: 1 / 0, r"raised ZeroDivisionError when traced"),
]


@pytest.mark.parametrize("index", range(len(REFUSED)))
def test_each_refused_form_says_what_the_rule_did(index: int) -> None:
    fn, said = REFUSED[index]
    with pytest.raises(TraceError, match=said):
        trace(fn, ["x"])


# --- constants: 0-d arrays of the operand's dtype give the Python number's bits (NEP 50) ------------

CONSTANTS = [1, 2, 7, -3, 0, 2**53, 0.5, 0.1, 1 / 3, -0.0, 1e-30, 1e-310, 3e38, 1e300, float("inf")]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ufunc", [np.add, np.subtract, np.multiply, np.divide, np.maximum, np.greater, np.power])
def test_a_hoisted_constant_gives_the_python_numbers_bits(ufunc: np.ufunc, dtype: str) -> None:
    class Writer:
        ns: dict[str, Any] = {}

    writer, facts = Writer(), Facts()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(50) * 10, [0.0, -0.0, 1.0, 3e38, 1e-40]]).astype(dtype)
    with np.errstate(all="ignore"):
        for value in CONSTANTS:
            constant = writer.ns[_constant(writer, facts, value, np.dtype(dtype))]
            assert constant.shape == () and constant.dtype == np.dtype(dtype) and not constant.flags.writeable
            for want, got in ((ufunc(x, value), ufunc(x, constant)), (ufunc(value, x), ufunc(constant, x))):
                assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (ufunc, value)
    assert _constant(writer, facts, 2**60 + 1, np.dtype(dtype)) not in [
        k for k, v in writer.ns.items() if isinstance(v, np.ndarray)
    ]  # a large int stays a Python number: one rounding, as numpy's


# --- declaration -------------------------------------------------------------------------------------


def test_defop_inline_traces_the_forward_and_each_vjp() -> None:
    @defop(lambda g, b: g * b, lambda g, a: g * a, inline=True)
    def times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    assert repr(times.forward_expr) == "multiply(a, b)"
    assert [repr(e) for e in times.vjp_exprs] == ["multiply(g, b)", "multiply(g, a)"]

    @defop(lambda g, out: g * out, inline="vjps")
    def grow(x: np.ndarray) -> np.ndarray:
        return np.exp(np.clip(x, -50, 50))  # not an expression: np.clip is a function

    assert grow.forward_expr is None and repr(grow.vjp_expr(0)) == "multiply(g, out)"


@pytest.mark.parametrize(
    "declare, said",
    [
        (lambda: defop(lambda g, out: g * out.dtype.type(1), inline=True, name="grow")(lambda x: np.exp(x)),
         r"inline: the VJP of input 'x' is not an expression: it reads the attribute \.dtype of a value"),
        (lambda: defop(lambda g: -g, inline=True, name="flip")(lambda x: np.where(x > 0, x, -x)),
         r"inline: the forward is not an expression: it calls np\.where, which is not a ufunc"),
        (lambda: defop(lambda g, x, attrs: g * x, inline="vjps", name="sq")(lambda x: x * x),
         r"inline: the VJP of input 'x' reads attrs; an expression reads only g, out and the inputs"),
        (lambda: defop(lambda g: g, inline="yes", name="inc")(lambda x: x + 1),
         r"inline must be True, 'vjps' or False, got 'yes'"),
        (lambda: defop(lambda g, argnum: g, inline=True, name="total")(lambda *xs: xs[0]),
         r"inline: a variadic op cannot be inline"),
    ],
)  # fmt: skip
def test_a_rule_that_is_not_an_expression_is_named_with_its_op(declare: Callable[[], Any], said: str) -> None:
    with pytest.raises(PluginError, match=r"^op '\w+' \(declared in [\w.]+\): " + said):
        declare()


def test_inline_as_traces_its_expression_and_leaves_the_vjp_to_the_runners_that_call_it() -> None:
    calls = []

    @inline_as(lambda g, out: g * (1 - out * out))
    def slope(g: np.ndarray, out: np.ndarray) -> np.ndarray:
        calls.append("called")
        s = out * out
        np.subtract(np.ones((), out.dtype), s, out=s)  # out=: not an expression, so not traceable itself
        s *= g
        return s

    @defop(slope, inline=True, name="my_tanh")
    def my_tanh(x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    assert repr(my_tanh.vjp_expr(0)) == "multiply(g, subtract(1, multiply(out, out)))"
    assert calls == [], "declaring traced the expression, not the VJP"
    g, out = np.array([0.5, -2.0]), np.tanh(np.array([0.3, 1.2]))
    assert np.array_equal(my_tanh.vjps[0](g, out, out, attrs=None), g * (1 - out * out)) and calls == ["called"]


@pytest.mark.parametrize(
    "expression, said",
    [
        (lambda g, y: g * y, r"inline_as: the VJP of input 'x' takes \(g, out\), but its expression takes \(g, y\)"),
        (lambda g, out: g * out.T, r"inline: the VJP of input 'x' is not an expression: it reads the attribute \.T"),
    ],
)  # fmt: skip
def test_an_inline_as_expression_that_does_not_fit_its_vjp_is_named(expression: Any, said: str) -> None:
    vjp = inline_as(expression)(lambda g, out: g * out)
    with pytest.raises(PluginError, match=r"^op 'grow' \(declared in [\w.]+\): " + said):
        defop(vjp, inline=True, name="grow")(lambda x: np.exp(x))


def test_an_inline_as_expression_without_a_signature_is_left_to_tracing() -> None:
    # A ufunc has no Python signature to compare: tracing it on the VJP's parameters decides.
    @defop(inline_as(np.negative)(lambda g: -g), inline=True, name="flip")
    def flip(x: np.ndarray) -> np.ndarray:
        return -x

    assert repr(flip.vjp_expr(0)) == "negative(g)"


def test_the_std_vjps_written_for_the_runners_give_their_expressions_bits() -> None:
    """sigmoid's and tanh's VJPs work in place with a 0-d 1 (inline_as): the same bits as the expression."""
    rng = np.random.default_rng(3)
    registry = default_registry()
    for name in ("sigmoid", "tanh"):
        op = registry[name]
        for dtype in (np.float64, np.float32):
            for shape in ((), (5,), (3, 4)):
                x, g = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
                out = op.forward(x, attrs=op.attrs())
                got = op.vjps[0](g, out, x, attrs=op.attrs())
                want = evaluate(op.vjp_expr(0), {"g": g, "out": out, "x": x})
                assert got.dtype == want.dtype == dtype and got.shape == shape, (name, dtype, shape)
                assert np.array_equal(np.asarray(got), np.asarray(want)), (name, dtype, shape)


def test_a_rule_that_is_one_ufunc_of_its_parameters_is_called_as_that_ufunc_by_the_table() -> None:
    """``__ge_direct__`` (what the table and generated code call) names the ufunc itself where the rule's
    expression is that ufunc of the rule's parameters in order; the interpreter still calls the rule."""
    registry = default_registry()
    direct = {name: [registry[name].forward.__ge_direct__[0]] + [v.__ge_direct__[0] for v in registry[name].vjps]
              for name in ("mul", "exp", "neg", "log")}  # fmt: skip
    assert direct == {
        "mul": [np.multiply, np.multiply, np.multiply],
        "exp": [np.exp, np.multiply],
        "neg": [np.negative, np.negative],
        "log": [np.log, np.divide],
    }

    def swapped(g: np.ndarray, b: np.ndarray) -> np.ndarray:
        return b * g  # multiply(b, g): not the parameters' order, so the rule is called

    @defop(swapped, lambda g, a: g * a, inline=True)
    def times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    assert times.vjps[0].__ge_direct__[0] is swapped and times.vjps[1].__ge_direct__[0] is np.multiply
    assert registry["div"].vjps[1].__ge_direct__[0] is not np.divide  # -g * a / (b * b): more than one ufunc


def _square_long(**fields: Any) -> OpDef:
    def forward(x: np.ndarray, *, attrs: Any) -> np.ndarray:
        return x * x

    def vjp(g: np.ndarray, out: Any, x: np.ndarray, *, attrs: Any) -> np.ndarray:
        return 2.0 * x * g

    exprs: dict[str, Any] = {
        "forward_expr": Apply(np.multiply, (Leaf("x"), Leaf("x"))),
        "vjp_exprs": (Apply(np.multiply, (Apply(np.multiply, (Const(2.0), Leaf("x"))), Leaf("g"))),),
    }
    exprs.update(fields)
    return OpDef("square", forward, (vjp,), elementwise_rule, inputs=("x",), vjp_needs=frozenset({"x"}), **exprs)


@pytest.mark.parametrize(
    "fields, said",
    [
        ({"forward_expr": Leaf("g")}, r"forward_expr reads \['g'\]; the forward may read only the inputs \['x'\]"),
        ({"forward_expr": "x * x"}, r"forward_expr must be an expression"),
        ({"vjp_exprs": (None, None)}, r"vjp_exprs has 2 entries for 1 VJP; give one per VJP"),
        ({"vjp_exprs": (Apply(np.multiply, (Leaf("g"), Leaf("out"))),)},
         r"the VJP expression of input 'x' reads \['out'\]; it may read \['g', 'x'\]"),
        ({"vjp_exprs": (lambda g: g,)}, r"the VJP expression of input 'x' must be an expression"),
    ],
)  # fmt: skip
def test_a_malformed_long_form_declaration_is_named(fields: dict[str, Any], said: str) -> None:
    with pytest.raises(PluginError, match=r"^op 'square' \(declared in [\w.]+\): " + said):
        _square_long(**fields)


# --- the std ops declared inline: the interpreter's bits on every runner --------------------------

INLINE_OPS = sorted(
    name for name, op in default_registry().ops.items() if op.forward_expr is not None or any(op.vjp_exprs)
)
# Per input name: a value domain the op is smooth on (log, sqrt need > 0; div's b, abs, relu != 0).
DOMAIN = {"log": "positive", "sqrt": "positive", "abs": "nonzero", "relu": "nonzero", "div": "nonzero"}
SHAPES = {  # (a's declared shape, b's shape), a fed, b a parameter
    "same": ([2, 3], (2, 3)),
    "broadcast": ([2, 3], (3,)),
    "scalar-b": ([4], ()),
    "0-d": ([], ()),
    "free": ([None, 3], (3,)),
}


def test_the_std_ops_declared_inline() -> None:
    wanted = {"add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu"}
    assert wanted <= set(INLINE_OPS)
    assert default_registry()["sigmoid"].forward_expr is None  # overflow-safe: only its VJP is inline


def _values(rng: np.random.Generator, shape: tuple[int, ...], domain: str) -> np.ndarray:
    magnitude = rng.uniform(0.5, 2.0, shape)
    return magnitude if domain == "positive" else magnitude * rng.choice([-1.0, 1.0], shape)


def op_plan(name: str, case: str, dtype: str, seed: int = 0) -> tuple[graphengine.Plan, dict[str, Any], list[str]]:
    """y = op(a[, b]); loss = sum(mul(y, k)): k makes the cotangent of y other than ones."""
    op = default_registry()[name]
    a_shape, b_shape = SHAPES[case]
    rng = np.random.default_rng(seed)
    a_value = _values(rng, tuple(2 if d is None else d for d in a_shape), DOMAIN.get(name, "real"))
    inputs = ["a"] if len(op.inputs) == 1 else ["a", "b"]
    y_shape = a_value.shape if len(inputs) == 1 else np.broadcast_shapes(a_value.shape, b_shape)
    params = [{"name": "k", "value": rng.uniform(-2, 2, y_shape).tolist()}]
    if len(inputs) == 2:
        params.append({"name": "b", "value": _values(rng, b_shape, DOMAIN.get(name, "real")).tolist()})
    if case == "free":  # k must follow the free dimension: a (3,) k broadcast over the batch instead
        params[0] = {"name": "k", "value": rng.uniform(-2, 2, (3,)).tolist()}
    doc = {
        "format": "graphengine/v1",
        "dtype": dtype,
        "inputs": [{"name": "a", "shape": a_shape}],
        "parameters": params,
        "nodes": [
            {"id": "y", "op": name, "inputs": inputs},
            {"id": "z", "op": "mul", "inputs": ["y", "k"]},
            {"id": "loss", "op": "sum", "inputs": ["z"]},
        ],
        "outputs": ["loss"],
    }
    plan = graphengine.load_dict(doc).compile()
    return plan, {"a": a_value.astype(dtype)}, ["a", *inputs[1:], "k", "y"]


RUNNERS = ["generated", "table-first", "chunked", "record"]


# A unary op has no b: its "scalar-b" case would be its "same" case again.
OP_CASES = [(n, c) for n in INLINE_OPS for c in sorted(SHAPES) if c != "scalar-b" or len(default_registry()[n].inputs) == 2]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, case", OP_CASES)
def test_every_inline_std_op_gives_the_interpreters_bits(
    name: str, case: str, dtype: str, runner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, feeds, wrt = op_plan(name, case, dtype)
    record = runner == "record"
    if runner == "table-first":
        monkeypatch.setattr(runners_module, "SMALL_STEPS", 0)  # the table first, code a slice per call
    if runner == "chunked":
        monkeypatch.setattr(chunks_module, "CHUNK_LINES", 2)
    if runner in ("chunked", "record"):
        plan.prepare(wrt, record=record)
    ref = _interpreted(plan, feeds, wrt, record=record)
    for call in range(1, 6):
        got = plan.value_and_grad(feeds, wrt, record=record)
        assert_same_result(ref, got, call)
    (program,) = plan._grad_schedule(wrt, None)[0].programs.values()
    assert "_u_" in program.source, "the expressions were written out"
    if runner == "chunked":
        assert program.source.count("def _chunk") > 3


@pytest.mark.parametrize("name", INLINE_OPS)
def test_inline_gradients_match_central_differences(name: str) -> None:
    plan, feeds, wrt = op_plan(name, "broadcast", "float64", seed=1)
    for _ in range(3):
        got = plan.value_and_grad(feeds, wrt).gradients
    assert plan._grad_schedule(wrt, None)[0].programs
    values = {"a": feeds["a"], **{k: np.array(v) for k, v in plan.graph.parameters.items()}}
    parameters = plan.graph.parameters
    eps = 1e-6
    for wrt_name in ("a", "b", "k"):
        if wrt_name not in values:
            continue
        numeric = np.zeros(values[wrt_name].shape)
        for index in np.ndindex(numeric.shape):
            sides = []
            for step in (eps, -eps):
                moved = values[wrt_name].copy()
                moved[index] += step
                for k in parameters:  # new arrays on every call: the generated code verifies them
                    parameters[k] = moved if k == wrt_name else values[k].copy()
                sides.append(float(plan.run({"a": moved if wrt_name == "a" else values["a"]})["loss"]))
            numeric[index] = (sides[0] - sides[1]) / (2 * eps)
        np.testing.assert_allclose(got[wrt_name], numeric, rtol=1e-6, atol=1e-8, err_msg=f"{name}: {wrt_name}")
