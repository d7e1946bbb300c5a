"""Optional peers: the same graphs run by PyTorch (eager), HIPS autograd and jax (jit).

Each peer interprets the scenario's graphengine document with its own op table
(a loop over the node list, which is how one writes an arbitrary graph in those
libraries) and returns ``(loss, {name: gradient})`` as numpy arrays. A peer
that is not installed is reported, never required.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import numpy as np

from .scenarios import Grads, Scenario

__all__ = ["PEERS", "available", "make_peer"]

PEERS = ("torch", "autograd", "jax")
_MODULE = {"torch": "torch", "autograd": "autograd", "jax": "jax"}


def available(name: str) -> bool:
    """Whether the peer's package is importable."""
    return importlib.util.find_spec(_MODULE[name]) is not None


def _start_values(scenario: Scenario) -> dict[str, np.ndarray]:
    dtype = scenario.dtype
    values: dict[str, np.ndarray] = {}
    for decl in scenario.doc.get("inputs", []):
        if decl["name"] in scenario.feeds:
            values[decl["name"]] = np.asarray(scenario.feeds[decl["name"]])
        else:
            values[decl["name"]] = np.asarray(decl["default"], dtype=decl.get("dtype", dtype))
    for section in ("parameters", "constants"):
        for decl in scenario.doc.get(section, []):
            values[decl["name"]] = np.asarray(decl["value"], dtype=decl.get("dtype", dtype))
    return values


def _program(
    scenario: Scenario, table: dict[str, Callable[..., Any]]
) -> list[tuple[str, Callable[..., Any], tuple[str, ...], dict[str, Any]]]:
    missing = sorted({nd["op"] for nd in scenario.doc["nodes"]} - set(table))
    if missing:
        raise NotImplementedError(f"no peer rule for ops {missing}")
    return [(nd["id"], table[nd["op"]], tuple(nd["inputs"]), nd.get("attrs", {})) for nd in scenario.doc["nodes"]]


def _loss_name(scenario: Scenario) -> str:
    return scenario.doc.get("loss") or scenario.doc["outputs"][0]


# --- torch ----------------------------------------------------------------------------------


def _torch(scenario: Scenario) -> Callable[[], tuple[Any, Grads]]:
    import torch
    import torch.nn.functional as F

    def squared_error(p: Any, t: Any, reduction: str = "mean") -> Any:
        d = (p - t) ** 2
        return 0.5 * d.sum() if reduction == "half_sum" else d.sum() if reduction == "sum" else d.mean()

    table: dict[str, Callable[..., Any]] = {
        "linear": lambda x, W, b: x @ W.T + b,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "exp": torch.exp,
        "neg": torch.neg,
        "relu": torch.relu,
        "add": torch.add,
        "sub": torch.sub,
        "mul": torch.mul,
        "sum": lambda x: x.sum(),
        "squared_error": squared_error,
        "softmax_cross_entropy": lambda z, y, reduction="mean": F.cross_entropy(z, y, reduction=reduction),
    }
    program = _program(scenario, table)
    start = {k: torch.from_numpy(np.array(v, order="C")) for k, v in _start_values(scenario).items()}
    wrt = scenario.wrt
    loss_name = _loss_name(scenario)

    def run() -> tuple[Any, Grads]:
        values = dict(start)
        leaves = []
        for name in wrt:
            leaf = values[name].detach().requires_grad_(True)
            values[name] = leaf
            leaves.append(leaf)
        for node_id, fn, ins, attrs in program:
            values[node_id] = fn(*[values[i] for i in ins], **attrs)
        loss = values[loss_name]
        grads = torch.autograd.grad(loss, leaves)
        return loss.detach().numpy(), {n: g.numpy() for n, g in zip(wrt, grads)}

    return run


# --- autograd and jax share a numpy-like op table -----------------------------------------------


def _numpy_like_table(np_: Any, take_along: Callable[..., Any]) -> dict[str, Callable[..., Any]]:
    def squared_error(p: Any, t: Any, reduction: str = "mean") -> Any:
        d = (p - t) ** 2
        return 0.5 * np_.sum(d) if reduction == "half_sum" else np_.sum(d) if reduction == "sum" else np_.mean(d)

    def cross_entropy(z: Any, y: Any, reduction: str = "mean") -> Any:
        shifted = z - np_.max(z, axis=-1, keepdims=True)
        logp = shifted - np_.log(np_.sum(np_.exp(shifted), axis=-1, keepdims=True))
        picked = take_along(logp, y)
        return -np_.mean(picked) if reduction == "mean" else -np_.sum(picked)

    return {
        "linear": lambda x, W, b: np_.dot(x, W.T) + b,
        "sigmoid": lambda x: 0.5 * (np_.tanh(0.5 * x) + 1),
        "tanh": np_.tanh,
        "exp": np_.exp,
        "neg": np_.negative,
        "relu": lambda x: np_.maximum(x, 0.0),
        "add": np_.add,
        "sub": np_.subtract,
        "mul": np_.multiply,
        "sum": np_.sum,
        "squared_error": squared_error,
        "softmax_cross_entropy": cross_entropy,
    }


def _functional(
    scenario: Scenario, table: dict[str, Callable[..., Any]]
) -> tuple[Callable[..., Any], list[Any], dict[str, Any]]:
    program = _program(scenario, table)
    start = _start_values(scenario)
    wrt = scenario.wrt
    fixed = {k: v for k, v in start.items() if k not in wrt}
    loss_name = _loss_name(scenario)

    def loss_fn(*args: Any) -> Any:
        values = dict(fixed)
        values.update(zip(wrt, args))
        for node_id, fn, ins, attrs in program:
            values[node_id] = fn(*[values[i] for i in ins], **attrs)
        return values[loss_name]

    return loss_fn, [start[n] for n in wrt], fixed


def _autograd(scenario: Scenario) -> Callable[[], tuple[Any, Grads]]:
    import autograd.numpy as anp
    from autograd import value_and_grad

    def take_along(logp: Any, y: Any) -> Any:
        return logp[np.arange(y.shape[0]), y]

    loss_fn, args, _ = _functional(scenario, _numpy_like_table(anp, take_along))
    argnums = tuple(range(len(args)))
    vg = value_and_grad(loss_fn, argnums)
    wrt = scenario.wrt

    def run() -> tuple[Any, Grads]:
        loss, grads = vg(*args)
        return loss, dict(zip(wrt, grads))

    return run


def _jax(scenario: Scenario) -> Callable[[], tuple[Any, Grads]]:
    import jax

    if scenario.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def take_along(logp: Any, y: Any) -> Any:
        return jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]

    loss_fn, args, _ = _functional(scenario, _numpy_like_table(jnp, take_along))
    argnums = tuple(range(len(args)))
    vg = jax.jit(jax.value_and_grad(loss_fn, argnums))
    dev_args = [jnp.asarray(a) for a in args]
    wrt = scenario.wrt

    def run() -> tuple[Any, Grads]:
        loss, grads = vg(*dev_args)
        jax.block_until_ready(grads)
        return np.asarray(loss), {n: np.asarray(g) for n, g in zip(wrt, grads)}

    return run


_MAKERS = {"torch": _torch, "autograd": _autograd, "jax": _jax}


def make_peer(name: str, scenario: Scenario) -> Callable[[], tuple[Any, Grads]]:
    """A zero-argument function computing the scenario's loss and gradients with peer ``name``.

    Raises
    ------
    ImportError
        When the peer is not installed.
    NotImplementedError
        When the scenario uses an op the peer table does not cover.
    """
    return _MAKERS[name](scenario)
