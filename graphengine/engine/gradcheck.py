"""Gradient checking by central finite differences in a random direction.

For a function ``f`` with VJP ``f*``, a random output cotangent ``u`` and a
random input direction ``v``, the identity ``<u, J v> = <J^T u, v>`` lets one
scalar finite difference check a whole VJP:

    <u, f(x + eps v) - f(x - eps v)> / (2 eps)   ≈   <vjp(u), v>

Everything runs in float64 so the finite difference is meaningful.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ValidationError

from ..errors import ExecutionError, GradcheckError, OpAttributeError
from ..ops import FLOAT_DTYPES, OpDef, TensorSpec
from ..ops.vjp import VJPError, VJPSite, call_vjp

if TYPE_CHECKING:
    from ..registry import Registry
    from .plan import Plan

__all__ = ["check_op", "check_op_samples", "gradcheck"]


def _agree(analytic: float, numeric: float, rtol: float, atol: float) -> bool:
    return abs(analytic - numeric) <= atol + rtol * max(abs(analytic), abs(numeric))


def _resolve(op: OpDef | str, registry: "Registry | None") -> OpDef:
    if isinstance(op, OpDef):
        return op
    from ..registry import default_registry

    return (registry or default_registry())[op]


def check_op(
    op: OpDef | str,
    inputs: Sequence[Any],
    attrs: Mapping[str, Any] | BaseModel | None = None,
    *,
    rng: np.random.Generator | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    registry: "Registry | None" = None,
) -> dict[str, tuple[float, float]]:
    """Check every VJP of one op against a central finite difference.

    Also checks that the op's shape rule predicts the forward output, that each
    VJP's cotangent reduces to its input's shape, that float32 inputs give
    float32 outputs and cotangents, and that the VJPs work when given ``None``
    for every value the op's ``vjp_needs`` says they don't read.

    Parameters
    ----------
    op : OpDef or str
        The op, or its registered name.
    inputs : sequence of array_like
        A point at which to check. Float inputs are checked in float64.
    attrs : mapping or attribute model, optional
    rng : numpy.random.Generator, optional
    eps, rtol, atol : float
        Step and tolerances of the comparison.

    Returns
    -------
    dict
        ``{input name: (analytic, numeric)}`` for each differentiable input.

    Raises
    ------
    GradcheckError
        When a VJP disagrees; names the op, the input and both numbers.
    ExecutionError
        When a VJP returns the wrong shape or dtype, or the shape rule is wrong.
    ShapeError
        When the op's shape rule rejects ``inputs``.

    Examples
    --------
    >>> import numpy as np
    >>> result = check_op("mul", [np.ones(3), np.full((2, 1), 2.0)])
    >>> sorted(result)
    ['a', 'b']
    """
    op = _resolve(op, registry)
    rng = rng or np.random.default_rng(0)
    try:
        attr_model = attrs if isinstance(attrs, BaseModel) else op.attrs.model_validate(dict(attrs or {}))
    except ValidationError as exc:
        raise OpAttributeError(f"op {op.name!r}: bad attrs: {exc.errors()[0]['msg']}") from None
    xs = [_as_float64(np.asarray(x)) for x in inputs]

    def forward(args: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(op.forward(*args, attrs=attr_model))

    predicted = op.shape_rule(*(TensorSpec(x.shape, x.dtype) for x in xs), attrs=attr_model)
    out = forward(xs)
    _check_shape_rule(op, predicted, out)
    _check_float32(op, xs, attr_model)
    u = rng.standard_normal(out.shape)
    results: dict[str, tuple[float, float]] = {}
    for i, x in enumerate(xs):
        vjp = op.vjp_for(i)
        if vjp is None or x.dtype not in FLOAT_DTYPES:
            continue
        name = op.input_name(i)
        v = rng.standard_normal(x.shape)
        plus, minus = list(xs), list(xs)
        plus[i], minus[i] = x + eps * v, x - eps * v
        numeric = float(np.vdot(u, forward(plus) - forward(minus)) / (2 * eps))
        cot = _call_vjp(op, i, u, out, xs, attr_model)
        analytic = float(np.vdot(cot, v))
        results[name] = (analytic, numeric)
        if not _agree(analytic, numeric, rtol, atol):
            raise GradcheckError(
                f"op {op.name!r}, input {name!r}: VJP gives {analytic:.10g} but finite differences give {numeric:.10g}"
            )
    return results


def check_op_samples(
    op: OpDef | str, *, rng: np.random.Generator | None = None, registry: "Registry | None" = None
) -> int:
    """Run :func:`check_op` on every sample the op declares; return how many.

    Raises
    ------
    GradcheckError
        As :func:`check_op`, or when the op declares no samples.
    """
    op = _resolve(op, registry)
    if op.samples is None:
        raise GradcheckError(f"op {op.name!r} declares no samples; call check_op with inputs")
    rng = rng or np.random.default_rng(0)
    samples = op.samples(rng)
    for inputs, attrs in samples:
        check_op(op, inputs, attrs, rng=rng)
    return len(samples)


def gradcheck(
    plan: "Plan",
    feeds: Mapping[str, Any] | None = None,
    wrt: Sequence[str] | None = None,
    *,
    output: str | None = None,
    rng: np.random.Generator | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
) -> dict[str, tuple[float, float]]:
    """Check a whole graph's gradients against finite differences.

    The graph runs in float64 whatever its declared dtype. On failure every
    node's VJPs are checked at the values they saw, to name the culprit.

    Parameters
    ----------
    plan : Plan
        A compiled graph (``graphengine.load(...).compile()``).
    feeds : mapping, optional
        Input values; inputs with defaults may be left out.
    wrt : sequence of str, optional
        Names to differentiate with respect to; default: every parameter.
    output : str, optional
        The scalar output; default: the graph's loss.

    Returns
    -------
    dict
        ``{name: (analytic, numeric)}``.

    Raises
    ------
    GradcheckError
        Names the node and input whose VJP is wrong, with both numbers; or, if
        no single node is to blame, the parameter and both numbers.
    """
    plan64 = plan.with_dtype(np.dtype("float64"))
    rng = rng or np.random.default_rng(0)
    wrt = list(wrt) if wrt is not None else list(plan.graph.parameter_names)
    output = output or plan.graph.loss
    if output is None:
        raise GradcheckError(f"the graph has several outputs {plan.graph.outputs} and no 'loss'; pass output=...")
    feeds = dict(feeds or {})
    grads = plan64.grad(feeds, wrt, output=output)
    base = plan64.run(feeds, outputs=wrt)  # the point: fed, default or stored values
    results: dict[str, tuple[float, float]] = {}
    for name in wrt:
        v = rng.standard_normal(np.shape(grads[name]))

        def loss_at(t: float) -> float:
            overrides = _perturb(base, feeds, name, t * v)
            return float(np.sum(plan64.run(overrides, outputs=[output])[output]))

        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        analytic = float(np.vdot(grads[name], v))
        results[name] = (analytic, numeric)
        if not _agree(analytic, numeric, rtol, atol):
            _blame_node(plan64, feeds, rng)
            raise GradcheckError(
                f"gradient of {output!r} with respect to {name!r}: engine gives {analytic:.10g} "
                f"but finite differences give {numeric:.10g}"
            )
    return results


def _perturb(base: Mapping[str, np.ndarray], feeds: Mapping[str, Any], name: str, delta: np.ndarray) -> dict[str, Any]:
    merged = dict(feeds)
    merged[name] = np.asarray(base[name], dtype=np.float64) + delta
    return merged


def _blame_node(plan: "Plan", feeds: Mapping[str, Any], rng: np.random.Generator) -> None:
    values = plan.run_all(feeds)
    for step in plan.steps:
        op = step.op
        inputs = [values[name] for name in step.input_names]
        try:
            check_op(op, inputs, step.attrs, rng=rng)
        except GradcheckError as exc:
            raise GradcheckError(f"node {step.node_id!r}: {exc}") from None


def _call_vjp(op: OpDef, i: int, g: np.ndarray, out: np.ndarray, xs: Sequence[np.ndarray], attrs: Any) -> np.ndarray:
    vjp = op.vjp_for(i)
    assert vjp is not None
    if op.variadic and i >= len(op.inputs) - 1:
        vjp = functools.partial(vjp, argnum=i)
    site = VJPSite(op.name, i, op.input_name(i))
    # Pass None for what the op says its VJPs don't read, as the engine may: a wrong vjp_needs fails here.
    args = [x if op.needs_input(j) else None for j, x in enumerate(xs)]
    try:
        return call_vjp(
            vjp, g, out if op.needs_output() else None, args, attrs, shape=xs[i].shape, dtype=xs[i].dtype, site=site
        )
    except VJPError as exc:
        if op.vjp_needs is None or exc.__cause__ is None:  # not a VJP that raised, or nothing to hint at
            raise
        raise VJPError(f"{exc} (does vjp_needs list everything the VJP reads?)", site) from exc.__cause__


def _as_float64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) if x.dtype.kind == "f" else x


def _check_shape_rule(op: OpDef, predicted: TensorSpec, out: np.ndarray) -> None:
    if tuple(predicted.shape) != out.shape or predicted.dtype != out.dtype:
        raise ExecutionError(
            f"op {op.name!r}: shape rule predicts {predicted} but forward returned {out.dtype.name}{list(out.shape)}"
        )


def _check_float32(op: OpDef, xs: Sequence[np.ndarray], attrs: Any) -> None:
    xs32 = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in xs]
    out = np.asarray(op.forward(*xs32, attrs=attrs))
    if out.dtype != np.float32:
        raise ExecutionError(f"op {op.name!r}: float32 inputs gave a {out.dtype.name} output")
    g = np.ones_like(out)
    for i, x in enumerate(xs32):
        if op.vjp_for(i) is not None and x.dtype.kind == "f":
            _call_vjp(op, i, g, out, xs32, attrs)
