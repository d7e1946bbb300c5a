"""Per-step time of ``graphengine.train`` on the digits MLP (Adam, batch 32) beside a numpy and a torch loop.

Run from the repository root (needs scikit-learn for the data; torch is an optional peer)::

    python -m benchmarks.training_step                      # float64 and float32, 6 rounds of 2 epochs
    python -m benchmarks.training_step --rounds 10 --dtype float32
    python -m benchmarks.training_step --instructions       # instruction counts per step (valgrind)
    python -m benchmarks.training_step --bits               # SHA-256 of the parameters after 3 epochs

Every implementation does the same work per step: the same shuffled order
(``default_rng([seed, 0, epoch]).permutation``), batches by index slices of it, forward, backward,
Adam (PyTorch's bias-corrected form), the running loss and accuracy of the epoch, and a check
that the loss is finite. ``graphengine.train`` does all that and keeps every check of its own on:
the engine's shape/dtype check of every VJP result, the NaN/Inf check of loss and gradients,
progress (``log`` into a string, what the CLI does off a terminal), the epoch records.

- ``numpy``: the lean loop a careful person writes: the softmax computed once for the loss and
  its gradient, in-place Adam per parameter.
- ``torch``: ``torch.nn.functional`` and ``torch.optim.Adam``, eager, one thread.

Each round runs every implementation for ``--epochs`` epochs from the same initial weights, in a
shuffled order; a step's time is the time between the ends of consecutive steps (for step 1: from
the call of the training function, so it includes ``train()``'s preparation and the engine's
first, checked call; step 2 includes the engine's code generation). The table shows the median
step time over every step of every round, its ratio to numpy, the mean step (the epoch ends
included) and steps 1, 2 and 3 of the first round. All in one process, one BLAS thread.
Before timing, the final parameters of every implementation are checked to agree with numpy's.

``--instructions`` counts instructions instead of time, which a shared machine does not disturb:
each loop runs in a fresh process under ``valgrind --tool=callgrind``, collecting only inside the
timed call (``--toggle-collect=starmap_next``: the call is made through ``itertools.starmap``), for
1 and for 4 epochs after a warm-up epoch; the difference divided by the 135 steps of the 3 extra
epochs is the steady step, epoch ends and the first calls of ``train()`` excluded.

``--bits`` trains 3 epochs with ``graphengine.train`` from the example's weights and prints, per
dtype, the SHA-256 of the final parameters' bytes (in the order W1, b1, W2, b2) and their largest
difference from the numpy loop's: a change that must leave training's results as they are is
checked by running it before and after (same machine, same BLAS: the bits are the machine's).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

import graphengine

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"
HYPER = {"lr": 0.003, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
BATCH, SEED = 32, 0
PARAMS = ("W1", "b1", "W2", "b2")

#: ``loop(params, x, labels, epochs) -> (final params, step end times)``; params are changed in place.
Loop = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray, int], list[float]]


def digits(dtype: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The example's graph document in ``dtype``, and its training images and labels."""
    sys.path.insert(0, str(DIGITS))
    try:
        from prepare_data import prepare
    finally:
        sys.path.remove(str(DIGITS))
    with tempfile.TemporaryDirectory() as tmp:
        train_file, _ = prepare(Path(tmp))
        with np.load(train_file) as npz:
            x, labels = npz["x"].astype(dtype), npz["label"]
    doc = json.loads((DIGITS / "mlp.json").read_text())
    doc["dtype"] = dtype
    return doc, x, labels


def initial_params(doc: dict[str, Any], dtype: str) -> dict[str, np.ndarray]:
    return {p["name"]: np.array(p["value"], dtype=dtype) for p in doc["parameters"]}


def order_of(epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([SEED, 0, epoch]).permutation(n)


def numpy_loop(params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray, epochs: int) -> list[float]:
    """Forward, backward and Adam by hand, as lean as numpy allows."""
    ends = [time.perf_counter()]
    W1, b1, W2, b2 = (params[k] for k in PARAMS)
    plist = [W1, b1, W2, b2]
    m = [np.zeros_like(p) for p in plist]
    v = [np.zeros_like(p) for p in plist]
    lr, beta1, beta2, eps = HYPER["lr"], HYPER["beta1"], HYPER["beta2"], HYPER["eps"]
    n_examples, t = len(labels), 0
    for epoch in range(1, epochs + 1):
        order = order_of(epoch, n_examples)
        loss_sum = 0.0
        correct = 0
        for start in range(0, n_examples, BATCH):
            index = order[start : start + BATCH]
            xb, yb = x[index], labels[index]
            n = len(index)
            rows = np.arange(n)
            h_pre = xb @ W1.T + b1
            h = np.maximum(h_pre, 0)
            logits = h @ W2.T + b2
            shifted = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            total = e.sum(axis=1, keepdims=True)
            loss = float(np.log(total).sum() / n - shifted[rows, yb].sum() / n)
            if loss != loss or loss in (float("inf"), float("-inf")):
                raise FloatingPointError(f"loss {loss} at epoch {epoch}")
            d_logits = e / total
            d_logits[rows, yb] -= 1
            d_logits /= n
            d_h = d_logits @ W2
            d_h[h_pre <= 0] = 0
            grads = [d_h.T @ xb, d_h.sum(axis=0), d_logits.T @ h, d_logits.sum(axis=0)]
            t += 1
            step = lr / (1 - beta1**t)
            correct2 = np.sqrt(1 - beta2**t)
            for p, g, mp, vp in zip(plist, grads, m, v):
                mp *= beta1
                mp += (1 - beta1) * g
                vp *= beta2
                vp += (1 - beta2) * (g * g)
                p -= step * mp / (np.sqrt(vp) / correct2 + eps)
            loss_sum += loss * n
            correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
            ends.append(time.perf_counter())
    return ends


def torch_loop(params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray, epochs: int) -> list[float]:
    """The same with torch.nn.functional and torch.optim.Adam (eager)."""
    import torch
    import torch.nn.functional as F

    ends = [time.perf_counter()]
    tensors = {k: torch.from_numpy(params[k]) for k in PARAMS}  # shares memory: params end trained
    for tensor in tensors.values():
        tensor.requires_grad_(True)
    W1, b1, W2, b2 = (tensors[k] for k in PARAMS)
    opt = torch.optim.Adam(
        list(tensors.values()), lr=HYPER["lr"], betas=(HYPER["beta1"], HYPER["beta2"]), eps=HYPER["eps"]
    )
    tx, ty = torch.from_numpy(x), torch.from_numpy(labels)
    n_examples = len(labels)
    for epoch in range(1, epochs + 1):
        order = torch.from_numpy(order_of(epoch, n_examples))
        loss_sum, correct = 0.0, 0
        for start in range(0, n_examples, BATCH):
            index = order[start : start + BATCH]
            xb, yb = tx[index], ty[index]
            opt.zero_grad(set_to_none=True)
            logits = F.linear(F.relu(F.linear(xb, W1, b1)), W2, b2)
            loss_t = F.cross_entropy(logits, yb)
            loss_t.backward()
            loss = loss_t.item()
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss {loss} at epoch {epoch}")
            with torch.no_grad():
                opt.step()
            loss_sum += loss * len(index)
            correct += int((logits.detach().argmax(dim=1) == yb).sum())
            ends.append(time.perf_counter())
    with torch.no_grad():
        for k, tensor in tensors.items():
            params[k][...] = tensor.numpy()
    return ends


def engine_loop(doc: dict[str, Any]) -> Loop:
    """``graphengine.train`` with the example's settings (no validation split: per-step work only)."""

    def run(params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray, epochs: int) -> list[float]:
        graph = graphengine.load_dict({**doc, "parameters": [{"name": k, "value": params[k].tolist()} for k in PARAMS]})
        ends = [time.perf_counter()]
        graphengine.train(
            graph, {"x": x, "label": labels}, epochs=epochs, batch_size=BATCH, optimizer="adam", hyper=HYPER,
            metric="accuracy", seed=SEED, progress="log", stream=io.StringIO(),
            on_step=lambda _: ends.append(time.perf_counter()),
        )  # fmt: skip
        for k in PARAMS:
            params[k][...] = graph.parameters[k]
        return ends

    return run


def check_agreement(loops: dict[str, Loop], doc: dict[str, Any], x: np.ndarray, labels: np.ndarray, dtype: str) -> None:
    """Every loop ends one epoch at numpy's parameters (to rounding: the loops sum in different orders)."""
    reference = initial_params(doc, dtype)
    loops["numpy"](reference, x, labels, 1)
    tol = 1e-9 if dtype == "float64" else 2e-4
    for name, loop in loops.items():
        params = initial_params(doc, dtype)
        loop(params, x, labels, 1)
        for k in PARAMS:
            err = float(np.max(np.abs(params[k] - reference[k])))
            if err > tol:
                raise AssertionError(f"{name}: {k} differs from numpy's by {err:.3g} after one epoch (dtype {dtype})")


def measure(dtype: str, rounds: int, epochs: int, peers: list[str]) -> dict[str, dict[str, float]]:
    doc, x, labels = digits(dtype)
    loops: dict[str, Loop] = {"numpy": numpy_loop, "graphengine": engine_loop(doc)}
    if "torch" in peers:
        loops["torch"] = torch_loop
    check_agreement(loops, doc, x, labels, dtype)
    steps: dict[str, list[float]] = {name: [] for name in loops}
    firsts: dict[str, list[float]] = {}
    means: dict[str, list[float]] = {name: [] for name in loops}
    rng = random.Random(0)
    for _ in range(rounds):
        names = list(loops)
        rng.shuffle(names)
        for name in names:
            ends = loops[name](initial_params(doc, dtype), x, labels, epochs)
            per_step = np.diff(ends)
            firsts.setdefault(name, per_step[:3].tolist())
            steps[name] += per_step[3:].tolist()
            means[name].append((ends[-1] - ends[0]) / len(per_step))
    base = statistics.median(steps["numpy"])
    table = {}
    for name in loops:
        median = statistics.median(steps[name])
        table[name] = {
            "median_us": median * 1e6,
            "ratio": median / base,
            "mean_us": statistics.median(means[name]) * 1e6,
            "step1_us": firsts[name][0] * 1e6,
            "step2_us": firsts[name][1] * 1e6,
            "step3_us": firsts[name][2] * 1e6,
        }
    return table


def print_table(dtype: str, table: dict[str, dict[str, float]], steps: int) -> None:
    print(f"\n### digits MLP 64-32-10, Adam, batch {BATCH}, {dtype} ({steps} timed steps each)\n")
    print("| loop | median step | / numpy | mean step (epoch ends in) | step 1 | step 2 | step 3 |")
    print("|---|---|---|---|---|---|---|")
    for name, row in table.items():
        print(
            f"| {name} | {row['median_us']:.1f} us | {row['ratio']:.2f} | {row['mean_us']:.1f} us | "
            f"{row['step1_us'] / 1e3:.2f} ms | {row['step2_us'] / 1e3:.2f} ms | {row['step3_us']:.0f} us |"
        )


def _count_one(impl: str, dtype: str, epochs: int) -> None:
    """The process ``--instructions`` runs under callgrind: a warm-up epoch, then ``epochs`` inside starmap."""
    doc, x, labels = digits(dtype)
    loops: dict[str, Loop] = {"numpy": numpy_loop, "graphengine": engine_loop(doc), "torch": torch_loop}
    loop = loops[impl]
    loop(initial_params(doc, dtype), x, labels, 1)
    list(itertools.starmap(loop, [(initial_params(doc, dtype), x, labels, epochs)]))  # collected: starmap_next


def count_instructions(dtype: str, impls: list[str]) -> dict[str, float]:
    """Instructions per steady step of each loop (see the module docstring), in millions."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for impl in impls:
            totals = []
            for epochs in (1, 4):
                out = Path(tmp) / f"{impl}.{epochs}"
                subprocess.run(
                    ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=starmap_next",
                     f"--callgrind-out-file={out}", sys.executable, "-m", "benchmarks.training_step",
                     "--count-one", impl, dtype, str(epochs)],
                    cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                totals.append(
                    next(int(line.split()[1]) for line in out.read_text().splitlines() if line.startswith("totals:"))
                )
            counts[impl] = (totals[1] - totals[0]) / (3 * 45) / 1e6
    return counts


def print_counts(dtype: str, counts: dict[str, float]) -> None:
    print(f"\n### digits MLP 64-32-10, Adam, batch {BATCH}, {dtype}: instructions per step (callgrind)\n")
    print("| loop | instructions per step | / numpy |")
    print("|---|---|---|")
    for name, count in counts.items():
        print(f"| {name} | {count:.3f} M | {count / counts['numpy']:.2f} |")


def parameter_bits(dtype: str, epochs: int = 3) -> tuple[str, float]:
    """SHA-256 of the parameters after ``epochs`` of ``graphengine.train``, and their largest difference from numpy's."""
    import hashlib

    doc, x, labels = digits(dtype)
    params, reference = initial_params(doc, dtype), initial_params(doc, dtype)
    engine_loop(doc)(params, x, labels, epochs)
    numpy_loop(reference, x, labels, epochs)
    digest = hashlib.sha256(b"".join(params[k].tobytes() for k in PARAMS)).hexdigest()
    return digest, max(float(np.max(np.abs(params[k] - reference[k]))) for k in PARAMS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    parser.add_argument("--rounds", type=int, default=6, help="rounds of every loop, in a shuffled order")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per round (45 steps each)")
    parser.add_argument("--no-torch", action="store_true", help="leave the torch loop out")
    parser.add_argument("--instructions", action="store_true", help="count instructions per step (valgrind)")
    parser.add_argument("--bits", action="store_true", help="SHA-256 of the parameters after 3 epochs")
    parser.add_argument("--count-one", nargs=3, metavar=("LOOP", "DTYPE", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count_one:
        impl, dtype, epochs = args.count_one
        _count_one(impl, dtype, int(epochs))
        return
    if args.bits:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            for dtype in args.dtype:
                digest, diff = parameter_bits(dtype)
                print(f"{dtype}: sha256 {digest} (largest difference from the numpy loop's: {diff:.3g})")
        return
    if args.instructions:
        for dtype in args.dtype:
            print_counts(dtype, count_instructions(dtype, ["numpy", "graphengine"]))  # torch: wall-clock only
        return
    peers = []
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(1)
            peers.append("torch")
        except ImportError:
            print("torch is not installed: no torch loop")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        for dtype in args.dtype:
            table = measure(dtype, args.rounds, args.epochs, peers)
            print_table(dtype, table, args.rounds * (args.epochs * 45 - 3))


if __name__ == "__main__":
    main()
