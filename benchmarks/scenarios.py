"""Benchmark scenarios A-E: a graphengine JSON graph and a hand-written numpy version of each.

Every scenario is generated as a plain graphengine v1 document (a dict, the same
thing a ``.json`` file holds), plus the feeds, the ``wrt`` names, and a
hand-written numpy function computing the same loss and gradients the way a
careful person writes vectorized backprop by hand: explicit forward, explicit
backward, in place wherever the buffer is the function's own, every value
dropped after its last use.

Scenarios (sizes can be shrunk for the smoke test with ``scale``)::

    A    the seed 2-2-2 network (examples/seed_network.json), forward + backward
    B    MLP 784-512-512-10, relu, softmax cross-entropy, batch 256 (float64 and float32)
    C    a chain of 1,000 elementwise ops (exp, neg, alternating) on a (4,) tensor
    D    one (1000,) input fanned out to 200 branches tanh(x * w_i), summed
    E    a random DAG of 10,000 cheap nodes on (16,) with many fan-outs

The hand-written version of E is an interpreter loop over the node list with
numpy calls and derivative rules written inline: that is how one writes an
arbitrary DAG by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["Scenario", "scenario_a", "scenario_b", "scenario_c", "scenario_d", "scenario_e", "all_scenarios"]

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed_network.json"

Grads = dict[str, np.ndarray]


@dataclass
class Scenario:
    """One benchmark case.

    Attributes
    ----------
    key : str
        Short name used in tables (``"A"``, ``"B64"``, ...).
    title : str
    doc : dict
        A graphengine v1 document.
    feeds : dict of str to ndarray
        Run-time inputs (parameters and constants live in ``doc``).
    wrt : list of str
        What the gradients are taken with respect to.
    numpy_grad : callable
        ``numpy_grad() -> (loss, {name: gradient})``, hand-written numpy.
    numpy_forward : callable or None
        Forward only (shown beside scenario C for information; every ratio is to ``numpy_grad``).
    rtol : float
        Tolerance when cross-checking gradients between implementations.
    """

    key: str
    title: str
    doc: dict[str, Any]
    feeds: dict[str, np.ndarray]
    wrt: list[str]
    numpy_grad: Callable[[], tuple[Any, Grads]]
    numpy_forward: Callable[[], Any] | None = None
    rtol: float = 1e-7
    notes: list[str] = field(default_factory=list)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.doc.get("dtype", "float64"))


def _param(name: str, value: np.ndarray) -> dict[str, Any]:
    return {"name": name, "value": value.tolist()}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


# --- A: the seed network -------------------------------------------------------------------


def scenario_a() -> Scenario:
    """The seed 2-2-2 network: linear + sigmoid twice, half sum of squared errors."""
    doc = json.loads(SEED.read_text())
    p = {d["name"]: np.asarray(d["value"], dtype=np.float64) for d in doc["parameters"]}
    x = np.asarray(doc["inputs"][0]["default"], dtype=np.float64)
    t = np.asarray(doc["inputs"][1]["default"], dtype=np.float64)
    W_h, b_h, W_o, b_o = p["W_h"], p["b_h"], p["W_o"], p["b_o"]

    def numpy_grad() -> tuple[Any, Grads]:
        h = _sigmoid(W_h @ x + b_h)
        y = _sigmoid(W_o @ h + b_o)
        d = y - t
        loss = 0.5 * np.dot(d, d)
        dy_pre = d * y * (1 - y)
        dh_pre = (W_o.T @ dy_pre) * h * (1 - h)
        return loss, {
            "W_h": np.outer(dh_pre, x),
            "b_h": dh_pre.sum(),
            "W_o": np.outer(dy_pre, h),
            "b_o": dy_pre.sum(),
        }

    return Scenario("A", "seed 2-2-2 net, forward+backward", doc, {}, ["W_h", "b_h", "W_o", "b_o"], numpy_grad)


# --- B: MLP ---------------------------------------------------------------------------------


def scenario_b(
    dtype: str = "float64", *, batch: int = 256, sizes: tuple[int, ...] = (784, 512, 512, 10), seed: int = 0
) -> Scenario:
    """MLP with relu hidden layers and a mean softmax cross-entropy over integer labels."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    n_layers = len(sizes) - 1
    params: dict[str, np.ndarray] = {}
    for i in range(n_layers):
        fan_in = sizes[i]
        params[f"W{i}"] = (rng.standard_normal((sizes[i + 1], fan_in)) * np.sqrt(2.0 / fan_in)).astype(dt)
        params[f"b{i}"] = (rng.standard_normal(sizes[i + 1]) * 0.1).astype(dt)
    x = rng.standard_normal((batch, sizes[0])).astype(dt)
    labels = rng.integers(0, sizes[-1], size=batch).astype(np.int64)

    nodes: list[dict[str, Any]] = []
    prev = "x"
    for i in range(n_layers):
        nodes.append({"id": f"z{i}", "op": "linear", "inputs": [prev, f"W{i}", f"b{i}"]})
        prev = f"z{i}"
        if i < n_layers - 1:
            nodes.append({"id": f"h{i}", "op": "relu", "inputs": [prev]})
            prev = f"h{i}"
    nodes.append(
        {"id": "loss", "op": "softmax_cross_entropy", "inputs": [prev, "labels"], "attrs": {"reduction": "mean"}}
    )
    doc = {
        "format": "graphengine/v1",
        "name": f"mlp_{'_'.join(map(str, sizes))}",
        "dtype": dtype,
        "inputs": [
            {"name": "x", "shape": [None, sizes[0]]},
            {"name": "labels", "shape": [None], "dtype": "int64"},
        ],
        "parameters": [_param(k, v) for k, v in params.items()],
        "nodes": nodes,
        "outputs": ["loss"],
    }
    Ws = [params[f"W{i}"] for i in range(n_layers)]
    bs = [params[f"b{i}"] for i in range(n_layers)]
    rows = np.arange(batch)

    def numpy_grad() -> tuple[Any, Grads]:
        # Lean, as a careful person writes it: bias and relu in place, softmax in place in the logits,
        # and each activation dropped right after its last use in the backward pass.
        acts = [x]
        h = x
        for i in range(n_layers - 1):
            h = h @ Ws[i].T
            h += bs[i]
            np.maximum(h, 0, out=h)
            acts.append(h)
        del h
        shifted = acts[-1] @ Ws[-1].T
        shifted += bs[-1]
        shifted -= shifted.max(axis=1, keepdims=True)
        dz = np.exp(shifted)
        s = dz.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - shifted[rows, labels])
        del shifted
        dz /= s
        dz[rows, labels] -= 1
        dz /= batch
        grads: Grads = {}
        for i in range(n_layers - 1, -1, -1):
            a = acts.pop()
            grads[f"W{i}"] = dz.T @ a
            grads[f"b{i}"] = dz.sum(axis=0)
            if i > 0:
                dz = dz @ Ws[i]
                np.multiply(dz, a > 0, out=dz)
            del a
        return loss, grads

    key = "B64" if dt == np.float64 else "B32"
    return Scenario(
        key,
        f"MLP {'-'.join(map(str, sizes))}, batch {batch}, {dtype}",
        doc,
        {"x": x, "labels": labels},
        list(params),
        numpy_grad,
        rtol=1e-7 if dt == np.float64 else 2e-3,
    )


# --- C: a long chain of elementwise ops -------------------------------------------------------

#: exp and neg: cheap ops whose hand-written backward costs about as much as their
#: forward (one ufunc each), so hand-written forward+backward is about 2x forward, the
#: reference the issue quotes. (tanh's backward is three ufuncs, which would put the
#: hand-written reference itself near 4x.)
CHAIN_OPS = ("exp", "neg")


def scenario_c(n: int = 1000, size: int = 4, seed: int = 0) -> Scenario:
    """A chain of ``n`` elementwise ops alternating exp and neg, then a sum."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size)
    ops = [CHAIN_OPS[i % len(CHAIN_OPS)] for i in range(n)]
    nodes = [{"id": f"n{i}", "op": op, "inputs": ["x" if i == 0 else f"n{i - 1}"]} for i, op in enumerate(ops)]
    nodes.append({"id": "loss", "op": "sum", "inputs": [f"n{n - 1}"]})
    doc = {
        "format": "graphengine/v1",
        "name": f"chain_{n}",
        "inputs": [{"name": "x", "shape": [size]}],
        "nodes": nodes,
        "outputs": ["loss"],
    }
    fwd = {"exp": np.exp, "neg": np.negative}
    fns = [fwd[op] for op in ops]
    codes = [CHAIN_OPS.index(op) for op in ops]

    def numpy_forward() -> Any:
        v = x
        for f in fns:
            v = f(v)
        return v.sum()

    def numpy_grad() -> tuple[Any, Grads]:
        outs = []
        v = x
        for f in fns:
            v = f(v)
            outs.append(v)
        loss = v.sum()
        g = np.ones_like(v)
        for k in range(n - 1, -1, -1):  # in place: one buffer for the whole backward pass
            if codes[k] == 0:  # exp
                g *= outs[k]
            else:  # neg
                np.negative(g, out=g)
        return loss, {"x": g}

    return Scenario("C", f"chain of {n} elementwise ops on ({size},)", doc, {"x": x}, ["x"], numpy_grad, numpy_forward)


# --- D: fan-out -------------------------------------------------------------------------------


def scenario_d(branches: int = 200, size: int = 1000, seed: int = 0) -> Scenario:
    """x fanned out to ``branches`` branches tanh(x * w_i), added up, then summed."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size)
    ws = [rng.standard_normal(size) * 0.5 for _ in range(branches)]
    nodes: list[dict[str, Any]] = []
    for i in range(branches):
        nodes.append({"id": f"u{i}", "op": "mul", "inputs": ["x", f"w{i}"]})
        nodes.append({"id": f"t{i}", "op": "tanh", "inputs": [f"u{i}"]})
        if i == 1:
            nodes.append({"id": "s1", "op": "add", "inputs": ["t0", "t1"]})
        elif i > 1:
            nodes.append({"id": f"s{i}", "op": "add", "inputs": [f"s{i - 1}", f"t{i}"]})
    last = f"s{branches - 1}" if branches > 1 else "t0"
    nodes.append({"id": "loss", "op": "sum", "inputs": [last]})
    doc = {
        "format": "graphengine/v1",
        "name": f"fanout_{branches}",
        "inputs": [{"name": "x", "shape": [size]}],
        "parameters": [_param(f"w{i}", w) for i, w in enumerate(ws)],
        "nodes": nodes,
        "outputs": ["loss"],
    }

    def numpy_grad() -> tuple[Any, Grads]:
        # In place wherever the value is ours: tanh into the product, the sum into one buffer,
        # 1 - t*t and the products for x into t itself.
        ts = []
        for w in ws:
            u = x * w
            np.tanh(u, out=u)
            ts.append(u)
        s = ts[0] + ts[1] if len(ts) > 1 else ts[0].copy()
        for t in ts[2:]:
            s += t
        loss = s.sum()
        del s
        grads: Grads = {}
        gx = np.zeros_like(x)
        for i, (w, t) in enumerate(zip(ws, ts)):
            np.multiply(t, t, out=t)
            np.subtract(1, t, out=t)  # the incoming cotangent is all ones
            grads[f"w{i}"] = t * x
            t *= w
            gx += t
        ts.clear()
        grads["x"] = gx
        return loss, grads

    return Scenario(
        "D",
        f"one ({size},) input fanned out to {branches} branches",
        doc,
        {"x": x},
        ["x"] + [f"w{i}" for i in range(branches)],
        numpy_grad,
    )


# --- E: a random DAG --------------------------------------------------------------------------

E_UNARY = ("tanh", "sigmoid", "neg")
E_BINARY = ("add", "mul", "sub")


def random_dag(n: int, size: int = 16, n_params: int = 4, seed: int = 0) -> dict[str, Any]:
    """A random DAG of ``n`` cheap nodes; every node without a reader is added into the loss.

    Inputs are drawn mostly from the last 32 values and sometimes from anywhere
    before, so many values fan out, some of them to far-away readers. Each
    binary node is followed by a squashing unary node half of the time, which
    keeps the values finite over 10,000 nodes.
    """
    rng = np.random.default_rng(seed)
    names = ["x"] + [f"p{i}" for i in range(n_params)]
    readers = {name: 0 for name in names}
    nodes: list[dict[str, Any]] = []

    def pick() -> str:
        if rng.random() < 0.8:
            return names[max(0, len(names) - 1 - int(rng.integers(32)))]
        return names[int(rng.integers(len(names)))]

    for i in range(n_params):  # every parameter is read at least once
        nodes.append({"id": f"n{i}", "op": "mul", "inputs": ["x", f"p{i}"]})
        readers["x"] += 1
        readers[f"p{i}"] += 1
        readers[f"n{i}"] = 0
        names.append(f"n{i}")
    i = n_params
    while len(nodes) < n:
        prev_binary = bool(nodes) and nodes[-1]["op"] in E_BINARY
        if rng.random() < 0.5 or (prev_binary and rng.random() < 0.5):
            op = E_UNARY[int(rng.integers(2))] if prev_binary else E_UNARY[int(rng.integers(len(E_UNARY)))]
            ins = [names[-1] if prev_binary else pick()]
        else:
            op, ins = E_BINARY[int(rng.integers(len(E_BINARY)))], [pick(), pick()]
        node_id = f"n{i}"
        nodes.append({"id": node_id, "op": op, "inputs": ins})
        for s in ins:
            readers[s] += 1
        readers[node_id] = 0
        names.append(node_id)
        i += 1
    sinks = [nd["id"] for nd in nodes if readers[nd["id"]] == 0]
    total = sinks[0]
    for k, s in enumerate(sinks[1:]):
        nodes.append({"id": f"acc{k}", "op": "add", "inputs": [total, s]})
        total = f"acc{k}"
    nodes.append({"id": "loss", "op": "sum", "inputs": [total]})
    return {
        "format": "graphengine/v1",
        "name": f"random_dag_{n}",
        "inputs": [{"name": "x", "shape": [size]}],
        "parameters": [_param(f"p{i}", rng.standard_normal(size) * 0.5) for i in range(n_params)],
        "nodes": nodes,
        "outputs": ["loss"],
    }


def _hand_interpreter(
    doc: dict[str, Any], feeds: dict[str, np.ndarray], wrt: list[str]
) -> Callable[[], tuple[Any, Grads]]:
    """Hand-written numpy forward and backward over a node list (scenario E)."""
    codes = {"tanh": 0, "sigmoid": 1, "neg": 2, "add": 3, "mul": 4, "sub": 5, "sum": 6}
    names = list(feeds) + [p["name"] for p in doc["parameters"]]
    index = {name: k for k, name in enumerate(names)}
    program = []
    for nd in doc["nodes"]:
        index[nd["id"]] = len(index)
        ins = [index[s] for s in nd["inputs"]]
        program.append((codes[nd["op"]], index[nd["id"]], ins[0], ins[1] if len(ins) > 1 else -1))
    start = [feeds[k] for k in feeds] + [np.asarray(p["value"], dtype=np.float64) for p in doc["parameters"]]
    n_values = len(index)
    wrt_index = [(name, index[name]) for name in wrt]
    tanh, exp, ones_like = np.tanh, np.exp, np.ones_like

    def numpy_grad() -> tuple[Any, Grads]:
        v: list[Any] = start + [None] * (n_values - len(start))
        for code, o, a, b in program:
            if code == 0:
                v[o] = tanh(v[a])
            elif code == 1:
                v[o] = 1 / (1 + exp(-v[a]))
            elif code == 2:
                v[o] = -v[a]
            elif code == 3:
                v[o] = v[a] + v[b]
            elif code == 4:
                v[o] = v[a] * v[b]
            elif code == 5:
                v[o] = v[a] - v[b]
            else:
                v[o] = v[a].sum()
        loss = v[program[-1][1]]
        g: list[Any] = [None] * n_values
        g[program[-1][1]] = ones_like(loss)

        def acc(k: int, c: np.ndarray) -> None:
            if g[k] is None:
                g[k] = c
            else:
                g[k] = g[k] + c

        for code, o, a, b in reversed(program):
            go = g[o]
            if go is None:
                continue
            if code == 0:
                y = v[o]
                acc(a, go * (1 - y * y))
            elif code == 1:
                y = v[o]
                acc(a, go * y * (1 - y))
            elif code == 2:
                acc(a, -go)
            elif code == 3:
                acc(a, go)
                acc(b, go)
            elif code == 4:
                acc(a, go * v[b])
                acc(b, go * v[a])
            elif code == 5:
                acc(a, go)
                acc(b, -go)
            else:
                acc(a, ones_like(v[a]) * go)
        return loss, {name: g[k] for name, k in wrt_index}

    return numpy_grad


def scenario_e(n: int = 10_000, size: int = 16, seed: int = 0) -> Scenario:
    """A random DAG of ``n`` cheap nodes on ``(size,)``."""
    doc = random_dag(n, size, seed=seed)
    rng = np.random.default_rng(seed + 1)
    feeds = {"x": rng.standard_normal(size)}
    wrt = ["x"] + [p["name"] for p in doc["parameters"]]
    return Scenario(
        "E",
        f"random DAG of {n:,} cheap nodes on ({size},)",
        doc,
        feeds,
        wrt,
        _hand_interpreter(doc, feeds, wrt),
        rtol=1e-6,
    )


def all_scenarios(small: bool = False) -> list[Scenario]:
    """Every scenario at full size, or tiny (``small``) for the smoke test."""
    if small:
        return [
            scenario_a(),
            scenario_b("float64", batch=8, sizes=(12, 7, 5, 3)),
            scenario_b("float32", batch=8, sizes=(12, 7, 5, 3)),
            scenario_c(n=30),
            scenario_d(branches=6, size=10),
            scenario_e(n=200),
        ]
    return [scenario_a(), scenario_b("float64"), scenario_b("float32"), scenario_c(), scenario_d(), scenario_e()]
