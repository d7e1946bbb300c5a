"""Tests of the standard op library (graphengine_std).

Every op is checked against finite differences on its own samples; the rest
checks forward values against independent numpy expressions, float32 end to
end, the ``vjp_needs`` declarations, shape-rule errors, attribute validation,
and that the gradient checker itself catches a wrong VJP.
"""

from __future__ import annotations

import warnings

import graphengine_std
import numpy as np
import pytest
from graphengine_std import arithmetic
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp
from pydantic import ValidationError

import graphengine
from graphengine.engine import check_op, check_op_samples
from graphengine.errors import FeedError, GradcheckError, ShapeError
from graphengine.ops import NoAttrs, OpDef, TensorSpec, elementwise_rule, identity_vjp

OPS = {op.name: op for op in graphengine_std.OPS}

REQUIRED = {
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs",
    "matmul", "linear",
    "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "gelu",
    "softmax", "log_softmax",
    "sum", "mean", "max",
    "reshape", "transpose", "concat", "slice", "identity",
    "squared_error", "softmax_cross_entropy",
    # issue 11 (ONNX)
    "erf", "clip", "where", "maximum", "minimum", "cast_like", "dropout",
    "gather", "expand", "flatten", "squeeze", "unsqueeze",
    "conv", "max_pool", "average_pool", "global_average_pool", "batch_normalization", "layer_normalization",
}  # fmt: skip

F32 = np.dtype("float32")
F64 = np.dtype("float64")


def run(name, *inputs, **attrs):
    """Forward of op ``name`` on ``inputs``."""
    op = OPS[name]
    return op.forward(*[np.asarray(x) for x in inputs], attrs=op.attrs.model_validate(attrs))


def rule(name, *specs, **attrs):
    """Shape rule of op ``name`` on ``(shape, dtype)`` pairs (dtype defaults to float64)."""
    op = OPS[name]
    tensor_specs = [
        TensorSpec(tuple(s[0]), np.dtype(s[1])) if len(s) == 2 and isinstance(s[1], str) else TensorSpec(tuple(s), F64)
        for s in specs
    ]
    return op.shape_rule(*tensor_specs, attrs=op.attrs.model_validate(attrs))


def call_vjp(op, i, g, out, xs, attrs, *, only_declared):
    """VJP of input ``i``; with ``only_declared`` the values not in ``vjp_needs`` are None."""
    if only_declared:
        xs = [x if op.needs_input(j) else None for j, x in enumerate(xs)]
        out = out if op.needs_output() else None
    extra = {"argnum": i} if op.variadic and i >= len(op.inputs) - 1 else {}
    return op.vjp_for(i)(g, out, *xs, attrs=attrs, **extra)


# --- the library as a whole ----------------------------------------------------------------


def test_op_names_are_exactly_the_required_set():
    names = [op.name for op in graphengine_std.OPS]
    assert len(names) == len(set(names)), "duplicate op names"
    assert set(names) == REQUIRED


@pytest.mark.parametrize("op", graphengine_std.OPS, ids=lambda op: op.name)
def test_declaration_follows_the_rules(op):
    assert isinstance(op, OpDef)
    assert op.doc and "\n" not in op.doc
    assert op.samples is not None
    assert op.vjp_needs is not None, "declare vjp_needs precisely"
    for fn in [op.forward, *[v for v in op.vjps if v is not None]]:  # the library's own code (lambdas welcome)
        assert fn.__module__.startswith("graphengine_std") or getattr(fn, "__wrapped__", None) is identity_vjp, fn
    assert op.shape_rule is elementwise_rule or op.shape_rule.__module__.startswith("graphengine_std")
    # Samples are the library's own, or the terse API's elementwise defaults.
    assert op.samples.__module__.startswith("graphengine_std") or op.samples.__module__ in (
        "graphengine.ops.terse",
        "graphengine.ops.samples",
    )
    config = op.attrs.model_config
    assert config.get("extra") == "forbid" and config.get("frozen") is True
    for field, schema in op.attrs.model_json_schema().get("properties", {}).items():
        assert schema.get("description"), f"{op.name}.{field} has no description"


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("op", graphengine_std.OPS, ids=lambda op: op.name)
def test_vjps_match_finite_differences(op):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings on the samples
        assert check_op_samples(op, rng=np.random.default_rng(1)) >= 2


@pytest.mark.parametrize("op", graphengine_std.OPS, ids=lambda op: op.name)
def test_vjp_needs_is_sufficient(op):
    """The VJPs give the same answer when undeclared values are passed as None."""
    rng = np.random.default_rng(2)
    for inputs, attrs in op.samples(rng):
        xs = [np.asarray(x) for x in inputs]
        model = op.attrs.model_validate(attrs)
        out = np.asarray(op.forward(*xs, attrs=model))
        g = rng.standard_normal(out.shape)
        for i in range(len(xs)):
            if op.vjp_for(i) is None:
                continue
            full = call_vjp(op, i, g, out, xs, model, only_declared=False)
            lean = call_vjp(op, i, g, out, xs, model, only_declared=True)
            np.testing.assert_array_equal(lean, full)


def test_samples_include_broadcasting():
    for name in ["add", "sub", "mul", "div", "pow", "linear", "matmul", "squared_error"]:
        shapes = [tuple(np.shape(x) for x in inputs) for inputs, _ in OPS[name].samples(np.random.default_rng(0))]
        assert any(len(set(s)) > 1 for s in shapes), name


def test_gradcheck_catches_a_wrong_vjp():
    def twice_exp_vjp(g, out, x, *, attrs):
        return 2 * g * out

    wrong = OpDef("exp", arithmetic.exp.forward, (twice_exp_vjp,), elementwise_rule, inputs=("x",))
    with pytest.raises(GradcheckError, match="'exp'.*'x'"):
        check_op(wrong, [np.array([0.5, -1.0, 2.0])])
    check_op(OPS["exp"], [np.array([0.5, -1.0, 2.0])])  # the real one passes at the same point


def test_gradcheck_catches_a_wrong_broadcast_vjp():
    def add_vjp_b_forgets_nothing(g, out, a, b, *, attrs):
        return g[0]  # takes one row instead of letting the engine sum the rows

    wrong = OpDef("add", arithmetic.add.forward, (arithmetic.add.vjps[0], add_vjp_b_forgets_nothing), elementwise_rule,
                  inputs=("a", "b"))  # fmt: skip
    with pytest.raises(GradcheckError, match="'b'"):
        check_op(wrong, [np.ones((4, 3)), np.ones(3)])


# --- float32 end to end ------------------------------------------------------------------------


@pytest.mark.parametrize("op", graphengine_std.OPS, ids=lambda op: op.name)
def test_float32_in_float32_out(op):
    rng = np.random.default_rng(3)
    for inputs, attrs in op.samples(rng):
        xs = [np.asarray(x) for x in inputs]
        xs = [x.astype(F32) if x.dtype.kind == "f" else x for x in xs]
        model = op.attrs.model_validate(attrs)
        out = np.asarray(op.forward(*xs, attrs=model))
        assert out.dtype == F32
        spec = op.shape_rule(*(TensorSpec(x.shape, x.dtype) for x in xs), attrs=model)
        assert spec.dtype == F32 and spec.shape == out.shape
        g = rng.standard_normal(out.shape).astype(F32)
        for i, x in enumerate(xs):
            if op.vjp_for(i) is not None and x.dtype.kind == "f":
                assert np.asarray(call_vjp(op, i, g, out, xs, model, only_declared=True)).dtype == F32


def test_float32_check_op_and_values():
    x = np.array([[0.5, -1.0, 2.0], [3.0, 0.25, -0.75]], dtype=F32)
    w = np.array([[0.1, 0.2, 0.3], [-0.4, 0.5, -0.6]], dtype=F32)
    out = run("linear", x, w, np.float32(0.35))
    assert out.dtype == F32
    np.testing.assert_allclose(out, x.astype(F64) @ w.T.astype(F64) + 0.35, rtol=1e-6)
    for name, inputs in [("linear", [x, w, np.float32(0.35)]), ("softmax", [x]), ("gelu", [x]), ("mean", [x])]:
        check_op(OPS[name], inputs)


# --- forward values against independent expressions --------------------------------------------


def test_softmax_and_log_softmax_values():
    x = np.random.default_rng(4).standard_normal((3, 5)) * 10
    p = run("softmax", x)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    np.testing.assert_allclose(p, np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(run("log_softmax", x), np.log(p), atol=1e-12)
    np.testing.assert_allclose(run("softmax", x, axis=0).sum(axis=0), 1.0)
    big = np.array([1000.0, 1001.0, 1002.0])
    np.testing.assert_allclose(run("softmax", big), run("softmax", big - 1000))
    assert np.all(np.isfinite(run("log_softmax", big)))


def test_cross_entropy_index_and_one_hot_labels_agree():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 1])
    one_hot = np.eye(3)[labels]
    expected = -np.mean(np.log(np.exp(logits[np.arange(4), labels]) / np.exp(logits).sum(axis=1)))
    for reduction, factor in [("mean", 1), ("sum", 4)]:
        by_index = run("softmax_cross_entropy", logits, labels, reduction=reduction)
        by_one_hot = run("softmax_cross_entropy", logits, one_hot, reduction=reduction)
        np.testing.assert_allclose(by_index, expected * factor)
        np.testing.assert_allclose(by_one_hot, expected * factor)
    op, model = OPS["softmax_cross_entropy"], OPS["softmax_cross_entropy"].attrs()
    g = np.array(1.0)
    np.testing.assert_allclose(
        op.vjps[0](g, None, logits, labels, attrs=model), op.vjps[0](g, None, logits, one_hot, attrs=model)
    )
    assert op.vjps[1] is None


@pytest.mark.parametrize("bad", [-1, 3])
def test_cross_entropy_rejects_out_of_range_labels(bad):
    logits = np.zeros((4, 3))
    labels = np.array([0, 1, bad, 2])
    with pytest.raises(ValueError, match=rf"label {bad}\b.*\[0, 3\)"):
        run("softmax_cross_entropy", logits, labels)
    op = OPS["softmax_cross_entropy"]
    with pytest.raises(ValueError, match=rf"label {bad}\b"):
        op.vjps[0](np.array(1.0), None, logits, labels, attrs=op.attrs())


def test_cross_entropy_label_shape_and_dtype_rules():
    assert rule("softmax_cross_entropy", ((None, 3), "float32"), ((None,), "int64")) == TensorSpec((), F32)
    assert rule("softmax_cross_entropy", ((2, 3), "float32"), ((2, 3), "float32")).shape == ()
    with pytest.raises(ShapeError, match=r"\(4, 3\).*\(5,\)"):
        rule("softmax_cross_entropy", ((4, 3), "float64"), ((5,), "int64"))
    with pytest.raises(ShapeError, match="int32/int64"):
        rule("softmax_cross_entropy", ((4, 3), "float64"), ((4,), "bool"))
    with pytest.raises(ShapeError, match="dtype"):
        rule("softmax_cross_entropy", ((4, 3), "float64"), ((4, 3), "float32"))
    with pytest.raises(ValueError, match="do not match"):
        run("softmax_cross_entropy", np.zeros((4, 3)), np.array([0]))


def test_linear_is_x_at_W_transposed_plus_b():
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((5, 4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    np.testing.assert_allclose(run("linear", x, w, b), np.einsum("...i,oi->...o", x, w) + b)
    np.testing.assert_allclose(run("linear", x[0, 0], w, 0.35), w @ x[0, 0] + 0.35)


def test_matmul_follows_numpy():
    rng = np.random.default_rng(7)
    for sa, sb in [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3, 5)), ((1, 2, 3), (4, 3, 2))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        expected = np.matmul(a, b)
        np.testing.assert_allclose(run("matmul", a, b), expected)
        assert rule("matmul", sa, sb).shape == expected.shape


def test_squared_error_values():
    p, t = np.array([1.0, 2.0]), np.array([0.0, 0.0])
    assert run("squared_error", p, t, reduction="half_sum") == pytest.approx(2.5)
    assert run("squared_error", p, t, reduction="sum") == pytest.approx(5.0)
    assert run("squared_error", p, t) == pytest.approx(2.5)
    assert run("squared_error", p, t).shape == ()


def test_squared_error_refuses_different_shapes_unless_asked_to_broadcast():
    p, t = np.zeros((1, 1)), np.ones((2, 1))
    with pytest.raises(ValueError, match=r"prediction of shape \(1, 1\) and target of shape \(2, 1\) differ"):
        run("squared_error", p, t)
    assert run("squared_error", p, t, broadcast=True, reduction="sum") == pytest.approx(2.0)
    assert rule("squared_error", (None, 1), (None, 1)).shape == ()  # free dimensions: checked at run time
    assert rule("squared_error", (1, 1), (2, 1), broadcast=True).shape == ()
    with pytest.raises(ShapeError, match=r"\(\?, 1\) and target \(\?,\)"):
        rule("squared_error", (None, 1), (None,))


def test_losses_declare_their_training_data():
    se, ce = OPS["squared_error"].loss, OPS["softmax_cross_entropy"].loss
    assert (se.prediction, se.target, se.class_labels, se.batch_axis) == ("prediction", "target", False, 0)
    assert [se.reduction_of({"reduction": r}) for r in ["mean", "sum", "half_sum"]] == ["mean", "sum", "sum"]
    assert se.reduction_of(OPS["squared_error"].attrs()) == "mean"
    assert (ce.prediction, ce.target, ce.class_labels, ce.batch_axis) == ("logits", "labels", True, 0)
    assert [ce.reduction_of({"reduction": r}) for r in ["mean", "sum"]] == ["mean", "sum"]
    assert ce.reduction_of(OPS["softmax_cross_entropy"].attrs()) == "mean"
    assert {op.name for op in graphengine_std.OPS if op.loss is not None} == {"squared_error", "softmax_cross_entropy"}


def test_reductions_follow_numpy():
    x = np.random.default_rng(8).standard_normal((2, 3, 4))
    for attrs in [{}, {"axis": 1}, {"axis": [0, -1]}, {"axis": -1, "keepdims": True}]:
        axis = tuple(attrs["axis"]) if isinstance(attrs.get("axis"), list) else attrs.get("axis")
        keep = attrs.get("keepdims", False)
        for name, fn in [("sum", np.sum), ("mean", np.mean), ("max", np.max)]:
            np.testing.assert_allclose(run(name, x, **attrs), fn(x, axis=axis, keepdims=keep))
            assert rule(name, x.shape, **attrs).shape == fn(x, axis=axis, keepdims=keep).shape


def test_max_splits_the_gradient_among_ties():
    op = OPS["max"]
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    model = op.attrs(axis=1)
    out = op.forward(x, attrs=model)
    grad = op.vjps[0](np.array([1.0, 1.0]), out, x, attrs=model)
    np.testing.assert_array_equal(grad, [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_activation_values_and_stability():
    x = np.array([-800.0, -3.0, 0.0, 2.0, 800.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # sigmoid(-800) is below the smallest normal float64; the clamped formula may return a
        # value at that scale (3e-308) instead of 0, which atol=1e-300 allows and nothing else does.
        np.testing.assert_allclose(
            run("sigmoid", x), [0.0, 1 / (1 + np.exp(3.0)), 0.5, 1 / (1 + np.exp(-2.0)), 1.0], atol=1e-300
        )
        assert run("sigmoid", np.array([-80.0]))[0] == pytest.approx(np.exp(-80.0) / (1 + np.exp(-80.0)), rel=1e-14)
        expected = [0.0, np.log1p(np.exp(-3.0)), np.log(2), np.log1p(np.exp(2.0)), 800.0]
        np.testing.assert_allclose(run("softplus", x), expected)
        np.testing.assert_allclose(run("relu", x), [0, 0, 0, 2, 800])
        np.testing.assert_allclose(run("leaky_relu", x, negative_slope=0.1), [-80, -0.3, 0, 2, 800])
    # gelu is the tanh approximation: gelu(1) = 0.5 (1 + tanh(sqrt(2/pi) * 1.044715))
    assert run("gelu", np.array(1.0)) == pytest.approx(0.8411919906082768)
    assert run("gelu", np.array(-10.0)) == pytest.approx(0.0, abs=1e-12)


def test_pow_exponent_gradient_at_zero_base_is_zero():
    op = OPS["pow"]
    base, exponent = np.array([0.0, 2.0]), np.array([3.0, 3.0])
    out = op.forward(base, exponent, attrs=NoAttrs())
    grad = op.vjps[1](np.ones(2), out, base, exponent, attrs=NoAttrs())
    np.testing.assert_allclose(grad, [0.0, 8 * np.log(2)])


def test_shape_ops_values():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(run("reshape", x, shape=[-1, 4]), x.reshape(6, 4))
    np.testing.assert_array_equal(run("transpose", x), x.T)
    np.testing.assert_array_equal(run("transpose", x, axes=[0, 2, 1]), x.transpose(0, 2, 1))
    np.testing.assert_array_equal(run("slice", x, axis=1, start=0, stop=2), x[:, 0:2])
    np.testing.assert_array_equal(run("slice", x, axis=-1, start=1, step=2), x[..., 1::2])
    np.testing.assert_array_equal(run("slice", x, axis=2, start=-2), x[..., -2:])
    np.testing.assert_array_equal(run("concat", x, x[:, :1], axis=1), np.concatenate([x, x[:, :1]], axis=1))
    np.testing.assert_array_equal(run("identity", x), x)
    labels = np.array([[1, 2], [0, 1]])
    assert run("reshape", labels, shape=[-1]).dtype == labels.dtype  # data movement keeps integer dtypes


# --- shape rules -------------------------------------------------------------------------------


def test_shape_rules_with_free_batch_dimension():
    assert rule("matmul", (None, 3), (3, 2)).shape == (None, 2)
    assert rule("linear", (None, 2), (2, 2), ()).shape == (None, 2)
    assert rule("add", (None, 3), (3,)).shape == (None, 3)
    assert rule("concat", (None, 3), (2, 3)).shape == (None, 3)
    assert rule("concat", (None, 3), (None, 2), axis=1).shape == (None, 5)
    assert rule("reshape", (None, 3, 4), shape=[-1, 12]).shape == (None, 12)
    assert rule("reshape", (None, 3), shape=[2, 6]).shape == (2, 6)
    assert rule("slice", (None, 3), axis=0, start=0, stop=2).shape == (2, 3)
    assert rule("slice", (None, 3), axis=0, start=1).shape == (None, 3)
    assert rule("sum", (None, 3), axis=0).shape == (3,)
    assert rule("softmax_cross_entropy", (None, 3), ((None,), "int32")).shape == ()


@pytest.mark.parametrize(
    "name, specs, attrs, pattern",
    [
        ("matmul", [(2, 3), (4, 2)], {}, r"inner dimensions differ: a \(2, 3\) and b \(4, 2\)"),
        ("matmul", [(None, 3), (4, 2)], {}, r"a \(\?, 3\) and b \(4, 2\)"),
        ("matmul", [(2, 2, 3), (3, 3, 2)], {}, r"batch.*\(2, 2, 3\).*\(3, 3, 2\)"),
        ("matmul", [(), (3,)], {}, r"at least 1 dimension"),
        ("add", [(2, 3), (4,)], {}, r"\(2, 3\) and \(4,\)"),
        ("mul", [((2, 3), "float32"), ((2, 3), "float64")], {}, r"float32.*float64"),
        ("exp", [((3,), "int64")], {}, r"int64"),
        ("linear", [(4, 3), (2, 5), (2,)], {}, r"x \(4, 3\), W \(2, 5\)"),
        ("linear", [(4, 3), (2, 3), (3,)], {}, r"b \(3,\)"),
        ("concat", [(2, 3), (2, 4)], {"axis": 0}, r"dimension 1.*\(2, 3\), \(2, 4\)"),
        ("concat", [(2, 3), (2, 3, 1)], {}, r"numbers of dimensions"),
        ("concat", [(2, 3), (2, 3)], {"axis": 2}, r"axis 2 is out of range"),
        ("slice", [(4, 3)], {"axis": 1, "start": 5}, r"start 5 .*length 3.*\(4, 3\)"),
        ("slice", [(4, 3)], {"axis": 1, "start": 0, "stop": 4}, r"stop 4 .*length 3"),
        ("slice", [(4, 3)], {"axis": 0, "start": -5}, r"start -5 "),
        ("slice", [(4, 3)], {"axis": 0, "start": 2, "stop": 1}, r"select nothing"),
        ("slice", [(4, 3)], {"axis": 2, "start": 0}, r"axis 2 is out of range"),
        ("reshape", [(2, 3)], {"shape": [4, 2]}, r"\(2, 3\) into \[4, 2\]: 6 elements"),
        ("reshape", [(2, 3)], {"shape": [-1, 4]}, r"\(2, 3\) into \[-1, 4\]"),
        ("reshape", [(None, 5)], {"shape": [2, 6]}, r"\(\?, 5\) into \[2, 6\]"),
        ("transpose", [(2, 3, 4)], {"axes": [0, 1]}, r"not a permutation.*\(2, 3, 4\)"),
        ("transpose", [(2, 3, 4)], {"axes": [0, 1, 1]}, r"not a permutation"),
        ("softmax", [(2, 3)], {"axis": 2}, r"axis 2 .*\(2, 3\)"),
        ("sum", [(2, 3)], {"axis": 2}, r"sum: axis 2 .*\(2, 3\)"),
        ("max", [(2, 3)], {"axis": [1, -1]}, r"repeats"),
        ("squared_error", [(2, 3), (4,)], {}, r"squared_error: prediction \(2, 3\) and target \(4,\)"),
        ("squared_error", [(1, 1), (2, 1)], {}, r"prediction \(1, 1\) and target \(2, 1\).*broadcast: true"),
        ("squared_error", [(2, 3), (4,)], {"broadcast": True}, r"squared_error.*\(2, 3\) and \(4,\)"),
    ],
)
def test_shape_rule_errors_name_the_shapes(name, specs, attrs, pattern):
    with pytest.raises(ShapeError, match=pattern):
        rule(name, *specs, **attrs)


def test_slice_range_is_checked_at_run_time_on_free_axes():
    assert rule("slice", (None, 3), axis=0, start=0, stop=4).shape == (4, 3)
    with pytest.raises(ValueError, match="stop 4 is out of range"):
        run("slice", np.zeros((2, 3)), axis=0, start=0, stop=4)


@settings(max_examples=50, deadline=None)
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
def test_elementwise_rule_matches_numpy_broadcasting(shapes):
    a, b = (np.ones(s) for s in shapes.input_shapes)
    assert rule("add", *shapes.input_shapes).shape == run("add", a, b).shape


@settings(max_examples=50, deadline=None)
@given(hnp.mutually_broadcastable_shapes(signature="(m?,n),(n,p?)->(m?,p?)", max_dims=2, max_side=3))
def test_matmul_rule_matches_numpy(shapes):
    a, b = (np.ones(s) for s in shapes.input_shapes)
    assert rule("matmul", *shapes.input_shapes).shape == np.matmul(a, b).shape == shapes.result_shape


# --- attribute models --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, attrs",
    [
        ("softmax", {"axis": "1"}),
        ("softmax", {"axis": 1.5}),
        ("softmax", {"axis": True}),
        ("softmax", {"dim": 1}),
        ("sum", {"axis": ["0"]}),
        ("sum", {"keepdims": "yes"}),
        ("sum", {"keepdims": 1}),
        ("leaky_relu", {"negative_slope": "0.1"}),
        ("leaky_relu", {"negative_slope": float("nan")}),
        ("reshape", {"shape": [-1, -1]}),
        ("reshape", {"shape": [-2, 3]}),
        ("reshape", {}),
        ("slice", {"axis": 0, "step": 0}),
        ("slice", {"start": 0}),
        ("squared_error", {"reduction": "avg"}),
        ("squared_error", {"broadcast": "yes"}),
        ("squared_error", {"broadcast": 1}),
        ("softmax_cross_entropy", {"reduction": "half_sum"}),
        ("softmax_cross_entropy", {"axis": -1}),
        ("add", {"alpha": 1}),
    ],
)
def test_attribute_models_reject_bad_values(name, attrs):
    with pytest.raises(ValidationError):
        OPS[name].attrs.model_validate(attrs)


def test_attribute_defaults():
    assert OPS["leaky_relu"].attrs().negative_slope == 0.01
    assert OPS["leaky_relu"].attrs(negative_slope=0).negative_slope == 0.0  # an integer is a number
    assert OPS["softmax"].attrs().axis == -1
    assert OPS["sum"].attrs().axis is None and OPS["sum"].attrs().keepdims is False
    assert OPS["squared_error"].attrs().reduction == "mean"
    assert OPS["softmax_cross_entropy"].attrs().reduction == "mean"
    assert OPS["slice"].attrs(axis=1).model_dump() == {"axis": 1, "start": 0, "stop": None, "step": 1}


# --- losses refuse mismatched shapes: at load time when known, at run time when free --------------


def loss_doc(op, pred_shape, target_shape, target_dtype="float64", **attrs):
    return {
        "format": "graphengine/v1",
        "inputs": [
            {"name": "p", "shape": pred_shape},
            {"name": "t", "shape": target_shape, "dtype": target_dtype},
        ],
        "nodes": [{"id": "loss", "op": op, "inputs": ["p", "t"], "attrs": attrs}],
        "outputs": ["loss"],
    }


def test_squared_error_shapes_known_at_load_time():
    with pytest.raises(ShapeError, match=r"prediction \(1, 1\) and target \(2, 1\)") as info:
        graphengine.load_dict(loss_doc("squared_error", [1, 1], [2, 1]))
    assert info.value.node_id == "loss"
    g = graphengine.load_dict(loss_doc("squared_error", [1, 1], [2, 1], broadcast=True, reduction="sum"))
    assert float(g.run({"p": [[1.0]], "t": [[0.0], [2.0]]})["loss"]) == pytest.approx(2.0)


@pytest.mark.parametrize("shapes", [([None, 1], [None, 1]), (["batch", 1], ["rows", 1]), ([None, 1], ["batch", 1])])
def test_squared_error_free_shapes_checked_at_run_time(shapes):
    g = graphengine.load_dict(loss_doc("squared_error", *shapes))
    feeds = {"p": np.zeros((1, 1)), "t": np.ones((2, 1))}
    for _ in range(3):  # the rule refuses the fed shapes before anything runs (run-time limits), on every call
        for call in (lambda: g.run(feeds), lambda: g.value_and_grad(feeds, wrt=["p"])):
            with pytest.raises(FeedError, match=r"'loss'.*\(1, 1\).*\(2, 1\).*broadcast: true"):
                call()
        assert float(g.run({"p": np.zeros((2, 1)), "t": np.ones((2, 1))})["loss"]) == pytest.approx(1.0)


def test_cross_entropy_is_as_strict():
    with pytest.raises(ShapeError, match=r"\(4, 3\).*\(5,\)") as info:
        graphengine.load_dict(loss_doc("softmax_cross_entropy", [4, 3], [5], "int64"))
    assert info.value.node_id == "loss"
    with pytest.raises(ShapeError, match=r"\(4, 3\).*\(1, 3\)"):  # probabilities are not broadcast either
        graphengine.load_dict(loss_doc("softmax_cross_entropy", [4, 3], [1, 3]))
    g = graphengine.load_dict(loss_doc("softmax_cross_entropy", [None, 3], [None], "int64"))
    feeds = {"p": np.zeros((4, 3)), "t": np.zeros(5, dtype=np.int64)}
    for _ in range(3):
        for call in (lambda: g.run(feeds), lambda: g.value_and_grad(feeds, wrt=["p"])):
            with pytest.raises(FeedError, match=r"'loss'.*labels must have shape \(4,\).*int64\(5,\)"):
                call()
        assert float(g.run({"p": np.zeros((4, 3)), "t": np.zeros(4, dtype=np.int64)})["loss"]) == pytest.approx(
            np.log(3)
        )
