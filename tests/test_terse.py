"""The terse op API (graphengine.defop): it builds plain OpDefs that behave like the long form."""

from __future__ import annotations

import dataclasses
import functools
import json
import textwrap

import graphengine_std
import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, StrictFloat

import graphengine
from graphengine import LossInfo, NoAttrs, OpDef, PluginError, PluginImportError, defop, elementwise_rule
from graphengine.engine import check_op, check_op_samples
from graphengine.ops import TensorSpec, elementwise_samples

STD = {op.name: op for op in graphengine_std.OPS}
MODULE = __name__  # what a declaration error must name as the plugin


# --- mul, both ways ------------------------------------------------------------------------------
# The long form, as plugins/graphengine_std/arithmetic.py declared it before the terse API.


def mul_long(a, b, *, attrs: NoAttrs):
    return a * b


def mul_vjp_a(g, out, a, b, *, attrs: NoAttrs):
    """a_bar = g * b."""
    return g * b


def mul_vjp_b(g, out, a, b, *, attrs: NoAttrs):
    """b_bar = g * a."""
    return g * a


MUL_LONG = OpDef("mul", mul_long, (mul_vjp_a, mul_vjp_b), elementwise_rule, inputs=("a", "b"),
                 vjp_needs=frozenset({"a", "b"}), samples=STD["mul"].samples, doc="a * b, elementwise with broadcasting")  # fmt: skip


@defop(lambda g, b: g * b, lambda g, a: g * a, doc="a * b, elementwise with broadcasting")
def mul(a, b):
    return a * b


@pytest.mark.parametrize("terse", [mul, STD["mul"]], ids=["here", "graphengine_std"])
def test_mul_written_both_ways_agrees_bitwise(terse):
    assert isinstance(terse, OpDef) and terse.name == MUL_LONG.name
    for field in ["inputs", "variadic", "vjp_needs", "attrs", "doc", "shape_rule", "loss"]:
        assert getattr(terse, field) == getattr(MUL_LONG, field), field
    rng = np.random.default_rng(0)
    for dtype in [np.float64, np.float32]:
        for inputs, attrs in terse.samples(rng):
            xs = [np.asarray(x, dtype=dtype) for x in inputs]
            model = terse.attrs.model_validate(attrs)
            out_long, out_terse = MUL_LONG.forward(*xs, attrs=model), terse.forward(*xs, attrs=model)
            assert out_terse.dtype == out_long.dtype
            np.testing.assert_array_equal(out_terse, out_long, strict=True)
            g = rng.standard_normal(out_long.shape).astype(dtype)
            for i in range(2):
                long_ = MUL_LONG.vjps[i](g, out_long, *xs, attrs=model)
                short = terse.vjps[i](g, None, *xs, attrs=model)  # the terse VJPs do not read out
                np.testing.assert_array_equal(short, long_, strict=True)
            specs = [TensorSpec(x.shape, x.dtype) for x in xs]
            assert terse.shape_rule(*specs, attrs=model) == MUL_LONG.shape_rule(*specs, attrs=model)


def test_the_generated_functions_have_the_long_signatures_and_wrap_yours():
    import inspect

    assert str(inspect.signature(mul.forward)) == "(a, b, *, attrs)"
    assert str(inspect.signature(mul.vjps[0])) == "(g, out, a, b, *, attrs)"
    assert inspect.signature(mul.vjps[0].__wrapped__).parameters.keys() == {"g", "b"}
    assert mul.forward.__name__ == "mul" and mul.forward.__module__ == MODULE
    assert inspect.signature(inspect.unwrap(mul.forward)).parameters.keys() == {"a", "b"}


# --- vjp_needs follows from the names -----------------------------------------------------------


class ScaleAttrs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    k: StrictFloat = 2.0


@pytest.mark.parametrize(
    "vjps, needs",
    [
        ((lambda g: g, lambda g: -g), set()),
        ((lambda g, out: g * out, None), {"out"}),
        ((lambda g, b: g * b, lambda g, a, out: g * a), {"a", "b", "out"}),
        ((lambda g, attrs, argnum: g, lambda attrs, g: g), set()),  # attrs and argnum are not values
        ((None, lambda b, g: g), {"b"}),
    ],
)
def test_vjp_needs_is_the_union_of_what_the_vjps_name(vjps, needs):
    op = defop(*vjps, name="two")(lambda a, b: a + b)
    assert op.vjp_needs == frozenset(needs)
    assert [v is None for v in op.vjps] == [v is None for v in vjps]


def test_std_vjp_needs_are_inferred_as_they_were_declared():
    declared = {
        "add": set(), "sub": set(), "mul": {"a", "b"}, "div": {"a", "b"}, "neg": set(),
        "pow": {"base", "exponent", "out"}, "exp": {"out"}, "log": {"x"}, "sqrt": {"out"}, "abs": {"x"},
        "matmul": {"a", "b"}, "linear": {"x", "W"}, "sigmoid": {"out"}, "tanh": {"out"}, "relu": {"out"},
        "leaky_relu": {"x"}, "softplus": {"x"}, "gelu": {"x"}, "softmax": {"out"}, "log_softmax": {"out"},
        "sum": {"x"}, "mean": {"x"}, "max": {"x", "out"}, "reshape": {"x"}, "transpose": set(), "concat": {"xs"},
        "slice": {"x"}, "identity": set(), "squared_error": {"prediction", "target"},
        "softmax_cross_entropy": {"logits", "labels"},
        # issue 11 (ONNX)
        "erf": {"x"}, "clip": {"x"}, "where": {"cond"}, "maximum": {"xs", "out"}, "minimum": {"xs", "out"},
        "cast_like": {"x"}, "dropout": set(), "gather": {"x", "indices"}, "expand": set(), "flatten": {"x"},
        "squeeze": {"x"}, "unsqueeze": {"x"}, "conv": {"x", "W", "b"}, "max_pool": {"x"}, "average_pool": {"x"},
        "global_average_pool": {"x"}, "batch_normalization": {"x", "scale", "mean", "var"},
        "layer_normalization": {"x", "scale"},
    }  # fmt: skip
    assert {name: set(op.vjp_needs) for name, op in STD.items()} == declared


def test_the_engine_passes_none_for_what_no_vjp_reads():
    @defop(lambda g, out: g * (1 - out * out), doc="tanh, differentiated through its output")
    def tanh2(x):
        return np.tanh(x)

    seen = []
    inner = tanh2.vjps[0]

    def spy(g, out, x, *, attrs):
        seen.append((out is None, x is None))
        return inner(g, out, x, attrs=attrs)

    registry = graphengine.default_registry().copy()
    registry.register(dataclasses.replace(tanh2, vjps=(spy,)), "test")
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [3]}],
        "nodes": [{"id": "y", "op": "tanh2", "inputs": ["x"]}, {"id": "loss", "op": "sum", "inputs": ["y"]}],
        "outputs": ["loss"],
    }
    g = graphengine.load_dict(doc, registry=registry)
    x = np.array([0.1, -0.5, 2.0])
    for _ in range(3):  # the checked interpreter, then generated code
        grads = g.value_and_grad({"x": x}, wrt=["x"]).gradients
        np.testing.assert_allclose(grads["x"], 1 - np.tanh(x) ** 2)
    # The checked first call may pass every value; the generated code passes out, and None for x.
    assert len(seen) == 3 and seen[1:] == [(False, True)] * 2
    check_op(tanh2, [x])  # check_op passes None for x too: the inferred needs are honest


def test_check_op_still_catches_a_long_form_op_that_lies_about_vjp_needs():
    def vjp(g, out, x, *, attrs):
        return g * (1 - out * out)

    lying = OpDef("tanh3", lambda x, *, attrs: np.tanh(x), (vjp,), elementwise_rule, vjp_needs=frozenset({"x"}))
    with pytest.raises(graphengine.ExecutionError, match="vjp_needs"):
        check_op(lying, [np.array([0.5])])
    terse = defop(lambda g, out: g * (1 - out * out), name="tanh3")(lambda x: np.tanh(x))
    check_op(terse, [np.array([0.5])])


# --- lambdas, attrs, argnum, variadic ------------------------------------------------------------


def test_lambdas_everywhere():
    cube = defop(lambda g, x: 3 * x * x * g, name="cube", doc="x ** 3")(lambda x: x**3)
    assert cube.name == "cube" and cube.inputs == ("x",) and cube.vjp_needs == {"x"}
    assert check_op_samples(cube) == 3
    np.testing.assert_array_equal(cube.forward(np.array([2.0]), attrs=NoAttrs()), [8.0])


def test_attrs_are_passed_to_a_forward_and_vjps_that_name_them():
    @defop(lambda g, attrs: g * attrs.k, attrs=ScaleAttrs, sample_attrs=[{}, {"k": -0.5}], doc="k * x")
    def scale(x, *, attrs: ScaleAttrs):
        return x * attrs.k

    assert scale.forward.__name__ == "scale" and not hasattr(scale.forward, "__wrapped__")  # used as it is
    assert scale.vjp_needs == frozenset()
    samples = scale.samples(np.random.default_rng(0))
    assert {s[1].get("k") for s in samples} == {None, -0.5}
    assert check_op_samples(scale) == len(samples) == 6


def test_argnum_on_a_fixed_arity_op_is_the_input_position():
    weights = (2.0, -3.0)
    vjp = lambda g, argnum: weights[argnum] * g  # noqa: E731
    op = defop(vjp, vjp, name="combo")(lambda a, b: 2.0 * a - 3.0 * b)
    assert op.vjp_needs == frozenset()
    assert check_op_samples(op) == 7


def _product(arrays):
    return functools.reduce(np.multiply, arrays, 1.0)


def test_variadic_ops_receive_argnum_and_their_inputs_as_a_tuple_or_spread():
    def stack_vjp(g, argnum):
        return g[argnum]

    def stack_rule(*specs, attrs):
        return TensorSpec((len(specs),) + specs[0].shape, specs[0].dtype)

    @defop(
        stack_vjp, shape_rule=stack_rule, samples=lambda rng: [([rng.standard_normal(3)] * k, {}) for k in (1, 2, 4)]
    )
    def stack(*xs):
        return np.stack(xs)

    assert stack.variadic and stack.inputs == ("xs",) and stack.arity == (1, None)
    assert stack.vjp_needs == frozenset()
    assert check_op_samples(stack) == 3

    # A fixed input before the variadic one: xs arrive as a tuple, or spread (*xs); argnum counts from w (0).
    @defop(
        lambda g, xs: g * _product(xs),
        lambda g, w, *xs, argnum: g * w * _product(x for i, x in enumerate(xs, 1) if i != argnum),
    )
    def weighted_product(w, *xs):
        return w * _product(xs)

    assert weighted_product.inputs == ("w", "xs") and weighted_product.vjp_needs == {"w", "xs"}
    assert [len(inputs) for inputs, _ in weighted_product.samples(np.random.default_rng(0))] == [3] * 7
    assert check_op_samples(weighted_product) == 7  # default elementwise samples: w and two xs, broadcasting
    check_op(weighted_product, [np.array(2.0), np.ones(3), np.arange(3.0), np.full((2, 1), 0.5)])

    concat = STD["concat"]
    assert concat.variadic and concat.vjp_needs == {"xs"} and check_op_samples(concat) >= 2


# --- elementwise defaults ---------------------------------------------------------------------------


def test_elementwise_defaults_shape_rule_and_broadcasting_samples():
    op = defop(lambda g, b: g * b, lambda g, a: g * a, name="m")(lambda a, b: a * b)
    assert op.shape_rule is elementwise_rule
    shapes = [tuple(np.shape(x) for x in inputs) for inputs, _ in op.samples(np.random.default_rng(0))]
    assert ((3,), (3,)) in shapes and ((2, 3), (2, 3)) in shapes and ((2, 1), (1, 3)) in shapes
    assert ((2, 3), (3,)) in shapes and ((), (3,)) in shapes
    unary = defop(lambda g: -g, name="n")(lambda x: -x)
    assert [tuple(np.shape(x) for x in i) for i, _ in unary.samples(np.random.default_rng(0))] == [
        ((3,),),
        ((2, 3),),
        ((),),
    ]
    assert check_op_samples(op) == 7 and check_op_samples(unary) == 3


def test_domains_keep_samples_where_the_op_is_smooth():
    rng = np.random.default_rng(0)
    log = defop(lambda g, x: g / x, domain="positive", name="log")(lambda x: np.log(x))
    assert all(np.all(x > 0) for inputs, _ in log.samples(rng) for x in inputs)
    assert check_op_samples(log) == 3
    div = defop(lambda g, b: g / b, lambda g, a, b: -g * a / b**2, domain={"b": "nonzero"}, name="div")(
        lambda a, b: a / b
    )
    cases = div.samples(rng)
    assert all(np.all(np.abs(inputs[1]) >= 0.3) for inputs, _ in cases)
    assert any(np.any(inputs[0] < 0) for inputs, _ in cases)  # the numerator stays "real"
    custom = defop(lambda g: g, domain=lambda rng, shape: np.full(shape, 7.0), name="id")(lambda x: x)
    assert all(np.all(x == 7.0) for inputs, _ in custom.samples(rng) for x in inputs)
    assert len(elementwise_samples("real", "real", "positive")(rng)) == 7


def test_std_elementwise_ops_use_the_defaults():
    for name in ["add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "abs", "relu", "leaky_relu"]:
        assert STD[name].samples.__module__ == "graphengine.ops.samples", name
        assert check_op_samples(STD[name]) >= 3


# --- malformed declarations ---------------------------------------------------------------------


class NotAModel:
    pass


def _forward_with_kwargs(x, **options):
    return x


def _forward_with_keyword(x, *, scale):
    return x


def _forward_with_default(x, y=1.0):
    return x


def _forward_no_inputs(*, attrs):
    return np.zeros(())


def _forward_g(g):
    return g


def _forward_attrs_first(attrs, x):
    return x


def _forward(x):
    return x


def _same_rule(x, *, attrs):
    return x


def _binary(a, b):
    return a + b


MALFORMED = [
    ("a VJP names an argument that does not exist", lambda: defop(lambda g, y: g * y)(_forward), r"op '_forward'.*VJP of input 'x' names 'y'.*may name g, out, x"),
    ("a misspelt input", lambda: defop(lambda g, bb: g, lambda g: g)(_binary), r"names 'bb'.*did you mean 'b'"),
    ("too many VJPs", lambda: defop(lambda g: g, lambda g: g)(_forward), r"2 VJPs for 1 input \(x\)"),
    ("too few VJPs", lambda: defop(lambda g: g)(_binary), r"1 VJP for 2 inputs \(a, b\)"),
    ("no VJPs at all", lambda: defop()(_forward), r"0 VJPs for 1 input"),
    ("a VJP that is not callable", lambda: defop("g * b", None)(_binary), r"VJP of input 'a' must be callable"),
    ("a forward that is not callable", lambda: defop(lambda g: g, name="nothing")(3), r"'nothing'.*forward must be callable"),
    ("attrs not a model class", lambda: defop(lambda g: g, attrs=dict)(_forward), r"attrs must be a pydantic model class"),
    ("attrs a model instance", lambda: defop(lambda g: g, attrs=NoAttrs())(_forward), r"attrs must be a pydantic model class"),
    ("attrs some other class", lambda: defop(lambda g: g, attrs=NotAModel)(_forward), r"attrs must be a pydantic"),
    ("a forward with **kwargs", lambda: defop(lambda g: g)(_forward_with_kwargs), r"'options'.*positional"),
    ("a forward keyword other than attrs", lambda: defop(lambda g: g)(_forward_with_keyword), r"'scale'"),
    ("an input with a default", lambda: defop(lambda g: g, lambda g: g)(_forward_with_default), r"'y' has a default"),
    ("a forward without inputs", lambda: defop()(_forward_no_inputs), r"takes no inputs"),
    ("an input named g", lambda: defop(lambda g: g)(_forward_g), r"may not be named 'g'"),
    ("attrs before the inputs", lambda: defop(lambda g: g)(_forward_attrs_first), r"'x' comes after attrs"),
    ("a lambda forward without a name", lambda: defop(lambda g: g)(lambda x: x), r"give it a name="),
    ("a VJP with **kwargs", lambda: defop(lambda g, **kw: g)(_forward), r"names 'kw'|takes \*\*kw"),
    ("a VJP with *args on a fixed-arity op", lambda: defop(lambda g, *x: g)(_forward), r"takes \*x"),
    ("a builtin without a signature", lambda: defop(lambda g: g, name="biggest")(max), r"cannot read the parameters"),
    ("a ufunc, whose signature has out=", lambda: defop(lambda g: g, name="sin")(np.sin), r"may not be named 'out'"),
    ("an unknown domain", lambda: defop(lambda g: g, domain="positve")(_forward), r"positve.*did you mean 'positive'"),
    ("a domain for an unknown input", lambda: defop(lambda g: g, domain={"y": "positive"})(_forward), r"domain names 'y'"),
    ("a domain with explicit samples", lambda: defop(lambda g: g, domain="positive", samples=lambda rng: [])(_forward), r"only shape the default samples"),
    ("a domain without default samples", lambda: defop(lambda g: g, domain="positive", shape_rule=_same_rule)(_forward), r"a shape_rule is given"),
    ("a loss naming an unknown input", lambda: defop(lambda g: g, lambda g: g, loss=LossInfo("pred", "b"))(_binary), r"loss.prediction 'pred'"),
    ("a loss with an unknown reduction attribute", lambda: defop(lambda g: g, lambda g: g, loss=LossInfo("a", "b", reduction_attr="reduction"))(_binary), r"reduction_attr 'reduction'"),
]  # fmt: skip


@pytest.mark.parametrize("declare, pattern", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_declaration_names_the_op_and_its_plugin(declare, pattern):
    with pytest.raises(PluginError, match=pattern) as info:
        declare()
    message = str(info.value)
    assert f"(declared in {MODULE})" in message, message
    assert message.startswith("op '") or "without a name" in message, message


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"vjps": (mul_vjp_a,)}, r"1 VJP for 2 inputs"),
        ({"inputs": ("a", "a")}, r"input names repeat: 'a'"),
        ({"inputs": ("a", "out")}, r"named 'out'"),
        ({"vjp_needs": frozenset({"c"})}, r"vjp_needs names unknown values \['c'\]"),
        ({"forward": "a * b"}, r"forward must be callable"),
        ({"vjps": (mul_vjp_a, "b")}, r"VJP of input 'b' must be callable"),
        ({"attrs": NoAttrs()}, r"attrs must be a pydantic model class"),
        ({"shape_rule": None}, r"shape_rule must be callable"),
        ({"loss": LossInfo("a", "a")}, r"both 'a'"),
        ({"loss": LossInfo("a", "b", reduction="avg")}, r"reduction 'avg'"),
    ],
)
def test_the_long_form_raises_plugin_error_too(kwargs, pattern):
    with pytest.raises(PluginError, match=pattern) as info:
        dataclasses.replace(MUL_LONG, **kwargs)
    assert str(info.value).startswith("op 'mul' (declared in ")


# --- a third-party plugin file in the terse form ------------------------------------------------

PLUGIN = textwrap.dedent(
    '''
    """A third-party plugin written in the terse form."""
    import numpy as np
    from graphengine import defop


    @defop(lambda g, x: g * np.cos(x), doc="elementwise sine")
    def sine(x):
        return np.sin(x)


    @defop(lambda g, a, out: g * a / out, lambda g, b, out: g * b / out, domain="nonzero", doc="sqrt(a**2 + b**2)")
    def hypot(a, b):
        return np.hypot(a, b)


    OPS = [sine, hypot]
    '''
)


def test_a_terse_plugin_file_loads_and_differentiates(tmp_path):
    plugin = tmp_path / "terse_ops.py"
    plugin.write_text(PLUGIN)
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None, 3]}],
        "parameters": [{"name": "w", "value": [0.3, -1.2, 0.8]}, {"name": "c", "value": [[0.5], [-2.0]]}],
        "nodes": [
            {"id": "s", "op": "sine", "inputs": ["x"]},
            {"id": "h", "op": "hypot", "inputs": ["s", "w"]},
            {"id": "k", "op": "hypot", "inputs": ["h", "c"]},
            {"id": "loss", "op": "sum", "inputs": ["k"]},
        ],
        "outputs": ["loss"],
    }
    (tmp_path / "g.json").write_text(json.dumps(doc))
    g = graphengine.load(tmp_path / "g.json", plugins=[str(plugin)])
    assert g.registry["hypot"].vjp_needs == {"a", "b", "out"}
    feeds = {"x": np.array([[0.1, 0.7, -1.3], [2.0, -0.4, 0.9]])}
    results = graphengine.gradcheck(g.compile(), feeds)
    assert set(results) == {"w", "c"}
    for name in ["sine", "hypot"]:
        assert check_op_samples(name, registry=g.registry) >= 3


def test_a_malformed_terse_plugin_file_is_reported_naming_the_op(tmp_path):
    plugin = tmp_path / "broken_ops.py"
    plugin.write_text(PLUGIN.replace("lambda g, x: g * np.cos(x)", "lambda g, y: g * np.cos(y)"))
    with pytest.raises(PluginImportError, match=r"op 'sine' \(declared in graphengine_plugin_broken_ops\).*names 'y'"):
        graphengine.default_registry([str(plugin)])
