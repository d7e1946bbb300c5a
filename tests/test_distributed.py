"""graphengine.distributed on a real LocalCluster (loopback, 2 worker processes): the same numbers as one process.

Tolerance: float64 results may differ from one process only by the order of
summation over shards, so every comparison is ``atol=1e-12`` (gradients,
losses, outputs); trained parameters after many steps, ``1e-9``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the distributed tests need the optional extra 'dask' (distributed)")
pytest.importorskip("dask.array", reason="the distributed tests need the optional extra 'dask' (dask[array])")

import distributed

import graphengine
from graphengine.cli import main
from graphengine.distributed import DataParallel, DistributedError, evaluate, portable_text, shard_sizes
from graphengine.distributed import train as train_on_dask
from graphengine.distributed.worker import worker_pid

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SINE = EXAMPLES / "custom_op" / "sine.py"
ATOL = 1e-12
QUIET = {"progress": "none", "handle_sigint": False}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as local:
        yield local


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)  # a killed worker is restarted by its nanny
        yield c


# --- graphs ---------------------------------------------------------------------------------


def seed_batched() -> dict[str, Any]:
    """The seed network with a named batch dimension; its half_sum loss is a sum over the batch."""
    doc = json.loads((EXAMPLES / "seed_network.json").read_text())
    doc["inputs"] = [{"name": "x", "shape": ["batch", 2]}, {"name": "target", "shape": ["batch", 2]}]
    return doc


def fanout_batched() -> dict[str, Any]:
    """examples/custom_op/fanout.json over a batch (x feeds two branches), with a mean loss; needs sine.py."""
    doc = json.loads((EXAMPLES / "custom_op" / "fanout.json").read_text())
    doc["inputs"] = [{"name": "x", "shape": ["batch"]}, {"name": "t", "shape": ["batch"]}]
    doc["nodes"].append({"id": "loss", "op": "squared_error", "inputs": ["y", "t"], "attrs": {"reduction": "mean"}})
    doc["outputs"], doc["loss"] = ["loss", "y"], "loss"
    return doc


HINGE = """
import numpy as np
from graphengine import LossInfo, OpDef, TensorSpec

def _margins(labels, scores):
    rows = np.arange(scores.shape[0])
    margins = 1 + scores - scores[rows, labels][:, None]
    margins[rows, labels] = 0
    return rows, margins

def hinge(labels, scores, *, attrs):
    _, margins = _margins(labels, scores)
    return np.asarray(np.maximum(margins, 0).sum() / scores.shape[0], dtype=scores.dtype)

def hinge_vjp(g, out, labels, scores, *, attrs):
    rows, margins = _margins(labels, scores)
    active = (margins > 0).astype(scores.dtype)
    active[rows, labels] = -active.sum(axis=1)
    return g * active / scores.shape[0]

def rule(labels, scores, *, attrs):
    return TensorSpec((), scores.dtype)

OPS = [OpDef("multiclass_hinge", hinge, (None, hinge_vjp), rule, inputs=("labels", "scores"),
             loss=LossInfo(prediction="scores", target="labels", class_labels=True, reduction="mean"))]
"""

SLOW = """
import time
from graphengine import NoAttrs, OpDef, elementwise_rule

def forward(x, *, attrs):
    time.sleep(0.4)  # a window for the test to kill the worker mid-step
    return x + 0.0

OPS = [OpDef("slow_identity", forward, (lambda g, out, x, *, attrs: g,), elementwise_rule, inputs=("x",))]
"""


def hinge_doc() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return {
        "format": "graphengine/v1",
        "dtype": "float64",
        "inputs": [{"name": "x", "shape": ["batch", 4]}, {"name": "y", "shape": ["batch"], "dtype": "int64"}],
        "parameters": [
            {"name": "W", "value": rng.standard_normal((3, 4)).tolist()},
            {"name": "b", "value": [0.1, -0.2, 0.3]},
        ],
        "nodes": [
            {"id": "logits", "op": "linear", "inputs": ["x", "W", "b"]},
            {"id": "loss", "op": "multiclass_hinge", "inputs": ["y", "logits"]},
        ],
        "outputs": ["loss", "logits"],
        "loss": "loss",
    }


def feeds_for(name: str, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if name == "seed":
        return {"x": rng.random((n, 2)), "target": rng.random((n, 2))}
    if name == "fanout":
        return {"x": rng.standard_normal(n), "t": rng.standard_normal(n)}
    if name == "digits":
        return {"x": rng.random((n, 64)), "label": rng.integers(0, 10, n)}
    return {"x": rng.standard_normal((n, 4)), "y": rng.integers(0, 3, n)}


def load_case(name: str, tmp_path: Path) -> tuple[graphengine.Graph, list[str]]:
    if name == "seed":
        return graphengine.load_dict(seed_batched()), []
    if name == "fanout":
        return graphengine.load_dict(fanout_batched(), plugins=[str(SINE)]), [str(SINE)]
    if name == "digits":
        return graphengine.load(EXAMPLES / "digits" / "mlp.json"), []
    plugin = tmp_path / "hinge.py"
    plugin.write_text(HINGE)
    return graphengine.load_dict(hinge_doc(), plugins=[str(plugin)]), [str(plugin)]


def assert_same(got: dict[str, Any], want: dict[str, Any], atol: float = ATOL) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert np.shape(got[key]) == np.shape(want[key]), key
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=atol, err_msg=key)


# --- equality with one process ----------------------------------------------------------------


@pytest.mark.parametrize("case", ["seed", "digits", "fanout", "hinge"])
@pytest.mark.parametrize("n, shards", [(7, None), (7, 3), (5, [4, 1]), (1, 2), (10, 10)])
def test_gradients_equal_one_process(case: str, n: int, shards: Any, client: Any, tmp_path: Path) -> None:
    graph, plugins = load_case(case, tmp_path)
    feeds = feeds_for(case, n)
    want = graph.compile().value_and_grad(feeds)
    parallel = DataParallel(graph, client, shards=shards, plugins=plugins)
    got = parallel.value_and_grad(feeds)
    assert_same(got.gradients, want.gradients)
    batched = {k: v for k, v in want.outputs.items() if k == graph.loss or np.ndim(v) > 0}
    assert_same(got.outputs, batched)
    assert_same(parallel.run(feeds), batched)


def test_a_mean_loss_weights_shards_by_size_and_a_sum_does_not(client: Any, tmp_path: Path) -> None:
    # Shards of 4 and 1: an unweighted mean of shard means would be far off.
    for case, reduction in (("digits", "mean"), ("seed", "sum")):
        graph, _ = load_case(case, tmp_path)
        parallel = DataParallel(graph, client, shards=[4, 1])
        assert parallel.reduction_of("loss") == reduction
        feeds = feeds_for(case, 5)
        np.testing.assert_allclose(parallel.run(feeds)["loss"], graph.run(feeds)["loss"], rtol=0, atol=ATOL)


def test_dask_array_inputs_are_used_where_they_lie(client: Any, tmp_path: Path) -> None:
    import dask.array as da

    graph, _ = load_case("digits", tmp_path)
    feeds = feeds_for("digits", 9)
    lazy = {"x": da.from_array(feeds["x"], chunks=(2, 64)), "label": feeds["label"]}
    got = DataParallel(graph, client, shards=[5, 4]).grad(lazy)
    assert_same(got, graph.compile().grad(feeds))


def test_gradients_of_a_batched_input_are_concatenated(client: Any, tmp_path: Path) -> None:
    graph, _ = load_case("seed", tmp_path)
    feeds = feeds_for("seed", 5)
    got = DataParallel(graph, client, shards=[2, 3]).grad(feeds, wrt=["x", "W_h"])
    assert_same(got, graph.compile().grad(feeds, wrt=["x", "W_h"]))


def test_a_graph_without_a_batch_axis_runs_as_one_shard(client: Any) -> None:
    graph = graphengine.load(EXAMPLES / "seed_network.json")
    assert_same(DataParallel(graph, client).grad(), graph.grad())


def test_evaluate_gives_the_same_figures(client: Any, tmp_path: Path) -> None:
    graph, _ = load_case("digits", tmp_path)
    data = feeds_for("digits", 23)
    want = graphengine.evaluate(graph, data, metric="accuracy", batch_size=5)
    got = evaluate(graph, data, client=client, metric="accuracy", batch_size=5)
    assert got.keys() == want.keys() and got["accuracy"] == want["accuracy"]
    assert abs(got["loss"] - want["loss"]) <= ATOL


def test_shard_sizes_are_checked() -> None:
    assert shard_sizes(3, 5) == [1, 1, 1]
    with pytest.raises(DistributedError, match=r"add up to the batch size 5"):
        shard_sizes(5, [2, 2])


# --- training -------------------------------------------------------------------------------


def digits_files(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("sklearn", reason="the digits example needs scikit-learn (optional extra 'digits')")
    sys.path.insert(0, str(EXAMPLES / "digits"))
    try:
        from prepare_data import prepare
    finally:
        sys.path.remove(str(EXAMPLES / "digits"))
    return prepare(tmp_path)  # type: ignore[no-any-return]


TRAIN = {"epochs": 3, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "metric": "accuracy", "seed": 4}


def test_training_digits_on_the_cluster_matches_one_process(client: Any, tmp_path: Path) -> None:
    train_file, test_file = digits_files(tmp_path)
    local = graphengine.train(EXAMPLES / "digits" / "mlp.json", train_file, test_data=test_file, **TRAIN, **QUIET)
    remote = train_on_dask(
        EXAMPLES / "digits" / "mlp.json", train_file, client=client, test_data=test_file, **TRAIN, **QUIET
    )
    assert remote.test is not None and local.test is not None
    assert remote.test["accuracy"] == local.test["accuracy"] and local.test["accuracy"] > 0.8
    assert_same(remote.graph.parameters, local.graph.parameters, atol=1e-9)
    assert [r["step"] for r in remote.history] == [r["step"] for r in local.history]


def test_killing_a_worker_during_training_retries_and_leaves_a_resumable_checkpoint(
    client: Any, tmp_path: Path
) -> None:
    train_file, _ = digits_files(tmp_path)
    options = {**TRAIN, "checkpoint": tmp_path / "run.ckpt.json", "checkpoint_every": 1}
    local = graphengine.train(EXAMPLES / "digits" / "mlp.json", train_file, **TRAIN, **QUIET)
    pids = list(client.run(worker_pid).values())

    def kill_once(record: dict[str, Any]) -> None:
        if record["step"] == 30:  # inside epoch 2, after the first checkpoint
            os.kill(pids[0], signal.SIGKILL)

    result = train_on_dask(
        EXAMPLES / "digits" / "mlp.json", train_file, client=client, on_step=kill_once, **options, **QUIET
    )
    assert_same(result.graph.parameters, local.graph.parameters, atol=1e-9)
    # The checkpoint is a loadable graph, and resuming from it runs the remaining epochs to the same end.
    graphengine.load(tmp_path / "run.ckpt.json")
    more = graphengine.train(
        EXAMPLES / "digits" / "mlp.json",
        train_file,
        resume=tmp_path / "run.ckpt.json",
        **{**TRAIN, "epochs": 4},
        **QUIET,
    )
    assert more.steps > result.steps


def test_train_with_dask_in_the_config_needs_the_distributed_layer() -> None:
    with pytest.raises(graphengine.TrainingError, match=r"graphengine.distributed.train"):
        graphengine.train(EXAMPLES / "seed_network.json", dask="local:2", steps=1, **QUIET)


# --- failures -------------------------------------------------------------------------------


def slow_graph(tmp_path: Path) -> tuple[graphengine.Graph, list[str]]:
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW)
    doc = seed_batched()
    doc["nodes"].insert(0, {"id": "x_slow", "op": "slow_identity", "inputs": ["x"]})
    doc["nodes"][1]["inputs"][0] = "x_slow"
    return graphengine.load_dict(doc, plugins=[str(plugin)]), [str(plugin)]


@pytest.mark.parametrize("retries", [2, 0])
def test_killing_a_worker_during_grad_gives_the_right_gradient_or_a_clean_error(
    retries: int, client: Any, tmp_path: Path
) -> None:
    graph, plugins = slow_graph(tmp_path)
    feeds = feeds_for("seed", 6)
    want = graph.compile().grad(feeds)
    parallel = DataParallel(graph, client, shards=2, plugins=plugins, retries=retries)
    pids = client.run(worker_pid)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["grads"] = parallel.grad(feeds)
        except DistributedError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 30
    while not any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    busy = next(addr for addr, tasks in client.processing().items() if tasks)
    os.kill(pids[busy], signal.SIGKILL)
    thread.join(120)
    if retries:
        assert "grads" in outcome, outcome.get("error")
    if "grads" in outcome:
        assert_same(outcome["grads"], want)
    else:
        assert "worker" in str(outcome["error"]) or "attempts" in str(outcome["error"])


def test_a_worker_without_the_plugin_names_the_op_and_the_worker(client: Any) -> None:
    graph = graphengine.load_dict(fanout_batched(), plugins=[str(SINE)])
    with pytest.raises(DistributedError, match=r"worker tcp://127\.0\.0\.1:\d+: UnknownOpError: .*'sin'"):
        DataParallel(graph, client).grad(feeds_for("fanout", 4))


def test_a_plugin_given_with_plugin_works_on_the_workers(cluster: Any, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "fanout.json"
    path.write_text(json.dumps(fanout_batched()))
    feeds = ["--feed", "x=[0.1, 0.5, -0.3]", "--feed", "t=[0.2, 0.1, 0.0]", "--format", "json"]
    assert main(["grad", str(path), "--plugin", str(SINE), *feeds]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["grad", str(path), "--plugin", str(SINE), "--dask", cluster.scheduler_address, *feeds]) == 0
    got = json.loads(capsys.readouterr().out)
    assert_same(got["gradients"], want["gradients"])
    assert_same(got["outputs"], want["outputs"])


def test_a_client_made_from_an_address_is_closed_and_a_client_passed_in_is_not(cluster: Any, client: Any) -> None:
    # Left open, a client to an address reconnects in a loop once its scheduler is gone (a traceback at exit).
    graph = graphengine.load_dict(seed_batched())
    with DataParallel(graph, cluster.scheduler_address) as parallel:
        made = parallel.client
        assert made.status == "running"
    assert made.status == "closed"
    with DataParallel(graph, client) as parallel:
        assert parallel.client is client
    assert client.status == "running"


def test_cli_errors_are_one_line(capsys: Any) -> None:
    assert main(["grad", str(EXAMPLES / "seed_network.json"), "--dask", "local:none"]) == 1
    assert capsys.readouterr().err.strip() == (
        "graphengine: error: --dask 'local:none': expected local:N with N >= 1 worker processes"
    )


def test_the_graph_text_is_self_contained(tmp_path: Path) -> None:
    graph, _ = load_case("digits", tmp_path)
    graph.parameters["W1"] = graph.parameters["W1"] * 2
    rebuilt = graphengine.load_dict(json.loads(portable_text(graph)))
    assert_same(rebuilt.parameters, graph.parameters, atol=0)


# --- Ctrl-C and the NaN stop on the cluster ---------------------------------------------------

CTRL_C = {"epochs": 5, "batch_size": 128, "optimizer": "adam", "lr": 0.003, "seed": 4}


def cli_options(options: dict[str, Any]) -> list[str]:
    return [arg for key, value in options.items() for arg in (f"--{key.replace('_', '-')}", str(value))]


def test_ctrl_c_on_the_cluster_stops_after_the_step_and_a_resume_finishes(client: Any, tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group, LocalCluster workers included: start a session
    of our own and send SIGINT to all of it."""
    import subprocess

    train_file, _ = digits_files(tmp_path)
    mlp, ckpt, out = EXAMPLES / "digits" / "mlp.json", tmp_path / "run.ckpt.json", tmp_path / "run.trained.json"
    args = [sys.executable, "-m", "graphengine", "train", str(mlp), "--data", str(train_file), *cli_options(CTRL_C)]
    args += ["--dask", "local:2", "--log-format", "json", "--log-every", "1", "--checkpoint", str(ckpt), "-o", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        events = []
        for line in proc.stdout:  # wait until an epoch is logged, then press Ctrl-C
            events.append(json.loads(line))
            if sum(e["event"] == "epoch" for e in events) == 1:
                os.killpg(proc.pid, signal.SIGINT)
                break
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert proc.returncode == 130, err
    summary = next(e for e in events if e["event"] == "summary")
    assert summary["status"] == "interrupted" and 12 <= summary["steps"] < 5 * 12, summary
    assert not out.exists()
    graphengine.load(ckpt)  # a whole, loadable graph
    # Resumed on the cluster, it ends where an uninterrupted cluster run with the same seed ends: the same
    # shards sum in the same order, so the figures agree to 1e-12 (float64).
    assert main(["train", str(mlp), "--data", str(train_file), *cli_options(CTRL_C), "--resume", str(ckpt),
                 "--dask", client.scheduler.address, "-o", str(out), "--quiet"]) == 0  # fmt: skip
    whole = train_on_dask(mlp, train_file, client=client, **CTRL_C, **QUIET)
    assert_same(graphengine.load(out).parameters, whole.graph.parameters, atol=ATOL)


def diverging_doc() -> dict[str, Any]:
    """Least squares: with a huge learning rate each step multiplies the error, until the loss overflows."""
    return {
        "format": "graphengine/v1",
        "dtype": "float64",
        "inputs": [{"name": "x", "shape": ["batch", 2]}, {"name": "t", "shape": ["batch", 1]}],
        "parameters": [{"name": "W", "value": [[0.5, -0.5]]}, {"name": "b", "value": [0.0]}],
        "nodes": [
            {"id": "y", "op": "linear", "inputs": ["x", "W", "b"]},
            {"id": "loss", "op": "squared_error", "inputs": ["y", "t"], "attrs": {"reduction": "mean"}},
        ],
        "outputs": ["loss"],
        "loss": "loss",
    }


def test_the_nan_stop_on_the_cluster_names_the_step_and_keeps_the_checkpoint(client: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((8, 2)), "t": rng.standard_normal((8, 1))}
    options = {"epochs": 40, "batch_size": 4, "lr": 1e30, "checkpoint_every": 1}
    local = graphengine.load_dict(diverging_doc())
    with pytest.raises(graphengine.NonFiniteError) as one_process:
        graphengine.train(local, data, checkpoint=tmp_path / "local.ckpt.json", **options, **QUIET)
    graph, ckpt = graphengine.load_dict(diverging_doc()), tmp_path / "run.ckpt.json"
    with pytest.raises(graphengine.NonFiniteError, match=r"at step \d+ .*is intact") as caught:
        train_on_dask(graph, data, client=client, checkpoint=ckpt, **options, **QUIET)
    step = caught.value.step
    assert step == one_process.value.step and step is not None and step > 2, str(caught.value)
    # The loop ended epoch 3 (step 6) with a checkpoint and blew up at step 7 before applying it.
    saved = graphengine.load(ckpt)
    assert_same(saved.parameters, graph.parameters, atol=0)
    assert all(np.isfinite(v).all() for v in saved.parameters.values())


def test_final_and_test_figures_of_cluster_training_come_from_the_cluster(
    client: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import graphengine.training.loop as loop

    graph, _ = load_case("digits", tmp_path)
    data, test = feeds_for("digits", 37, seed=1), feeds_for("digits", 19, seed=2)

    def not_on_the_client(*args: Any, **kwargs: Any) -> dict[str, float]:
        raise AssertionError("final/test figures were computed on the client")

    monkeypatch.setattr(loop, "evaluate", not_on_the_client)
    result = train_on_dask(
        graph, data, client=client, test_data=test, epochs=2, batch_size=8, metric="accuracy", **QUIET
    )
    assert result.test is not None
    for got, on in ((result.final, data), (result.test, test)):
        want = graphengine.evaluate(result.graph, on, metric="accuracy", batch_size=256)
        assert got.keys() == want.keys() and got["accuracy"] == want["accuracy"]
        assert abs(got["loss"] - want["loss"]) <= ATOL
