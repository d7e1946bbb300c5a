"""kill -9 soak: training killed at random moments while it writes checkpoints leaves only files that
load (each .npz passes its pinned sha256), and a resume from the last checkpoint finishes."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import graphengine
from graphengine.format.save import remove_dead_temp_files

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals (SIGKILL)")

TRIALS = 20


def classifier(folder: Path) -> Path:
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None, 2]}, {"name": "y", "shape": [None], "dtype": "int64"}],
        "parameters": [
            {"name": "W", "value": [[0.1, -0.2], [0.3, 0.1], [-0.1, 0.2]]},
            {"name": "b", "value": [0.0, 0.0, 0.0]},
        ],
        "nodes": [
            {"id": "z", "op": "linear", "inputs": ["x", "W", "b"]},
            {"id": "loss", "op": "softmax_cross_entropy", "inputs": ["z", "y"]},
        ],
        "outputs": ["loss"],
        "loss": "loss",
    }
    path = folder / "clf.json"
    path.write_text(json.dumps(doc))
    return path


def _train_forever(folder: Path) -> None:
    """In a forked child: train with a checkpoint after every epoch (a few milliseconds each) until killed."""
    try:
        graph = graphengine.load(folder / "clf.json")
        graphengine.train(
            graph,
            _data(),
            epochs=10**6,
            batch_size=6,
            checkpoint=folder / "ckpt.json",
            checkpoint_every=1,
            progress="none",
            optimizer="adam",
        )
    finally:
        os._exit(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_kill_9_during_checkpoint_writes_leaves_only_loadable_files(tmp_path: Path) -> None:
    classifier(tmp_path)
    rng = random.Random(10)
    killed_with_checkpoint = 0
    for _ in range(TRIALS):
        pid = os.fork()  # graphengine is imported already: a trial costs the kill's delay, not an interpreter start
        if pid == 0:
            _train_forever(tmp_path)
        time.sleep(rng.uniform(0.02, 0.25))  # checkpoints every few milliseconds: kills land mid-write
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        for path in tmp_path.glob("*.json"):
            graph = graphengine.load(path)  # a pinned sha256 that does not match is a SchemaError: the test fails
            assert all(np.isfinite(v).all() for v in graph.parameters.values())
        killed_with_checkpoint += (tmp_path / "ckpt.json").exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= TRIALS, "temp files of killed saves pile up"
    # Every one left is known as a dead save's (its form, unlocked, ours): the clean-up takes it once old enough.
    removed = remove_dead_temp_files(tmp_path / "ckpt.json", min_age=0)
    assert sorted(removed) == sorted(leftovers) and not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert killed_with_checkpoint > 0
    resumed = graphengine.train(
        graphengine.load(tmp_path / "clf.json"),
        _data(),
        epochs=_epochs(tmp_path) + 1,
        batch_size=6,
        resume=tmp_path / "ckpt.json",
        progress="none",
        optimizer="adam",
    )
    assert resumed.status == "completed"


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    y = np.arange(60) % 3
    return {"x": rng.normal(0, 1, (60, 2)) + y[:, None], "y": y.astype(np.int64)}


def _epochs(folder: Path) -> int:
    from graphengine.training import read_checkpoint

    graph = graphengine.load(folder / "clf.json")
    _, _, state = read_checkpoint(folder / "ckpt.json", graph)
    return int(state["epoch"])
