"""Saving never deletes a file it cannot prove is its own and unused; temp files of killed saves do not pile up."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES

import graphengine
from graphengine.format.save import remove_dead_temp_files
from graphengine.graph import save

fcntl = pytest.importorskip("fcntl", reason="temp-file locks need fcntl (POSIX)")


def _seed() -> graphengine.Graph:
    return graphengine.load(EXAMPLES / "seed_network.json")


def test_a_copy_of_the_graph_keeps_its_weights_alive(tmp_path: Path) -> None:
    # The case: train -o model.json; cp model.json best.json; train -o model.json --overwrite.
    g = _seed()
    first = save(g, tmp_path / "model.json", weights="npz")
    shutil.copy(first.path, tmp_path / "best.json")
    g.parameters["W_h"] = g.parameters["W_h"] + 1.0
    second = save(g, tmp_path / "model.json", weights="npz", overwrite=True)
    assert first.npz != second.npz and first.npz is not None and first.npz.exists()
    assert graphengine.load(tmp_path / "best.json").parameters["W_h"].tolist() == [[0.15, 0.2], [0.25, 0.3]]
    assert graphengine.load(tmp_path / "model.json").parameters["W_h"].tolist() == [[1.15, 1.2], [1.25, 1.3]]


def test_a_graph_in_the_folder_above_keeps_its_weights_alive(tmp_path: Path) -> None:
    sub = tmp_path / "runs"
    sub.mkdir()
    g = _seed()
    first = save(g, sub / "model.json", weights="npz")
    assert first.npz is not None
    text = first.path.read_text().replace(first.npz.name, f"runs/{first.npz.name}")
    (tmp_path / "outer.json").write_text(text)
    g.parameters["W_h"] = g.parameters["W_h"] * 2
    save(g, sub / "model.json", weights="npz", overwrite=True)
    assert graphengine.load(tmp_path / "outer.json").parameters["W_h"].tolist() == [[0.15, 0.2], [0.25, 0.3]]


def test_files_the_old_graph_did_not_name_are_never_deleted(tmp_path: Path) -> None:
    g = _seed()
    bystander = tmp_path / "model.0123456789ab.npz"  # the same form, but no graph named it
    bystander.write_bytes(b"not ours")
    linked = save(g, tmp_path / "model.json", weights="npz")
    assert linked.npz is not None
    os.link(linked.npz, tmp_path / "elsewhere.npz")  # a second link: someone else uses it
    g.parameters["b_h"] = g.parameters["b_h"] + 1
    save(g, tmp_path / "model.json", weights="npz", overwrite=True)
    assert bystander.read_bytes() == b"not ours" and linked.npz.exists()


def test_the_replaced_weights_go_when_nothing_else_names_them(tmp_path: Path) -> None:
    g = _seed()
    first = save(g, tmp_path / "model.json", weights="npz")
    g.parameters["b_h"] = g.parameters["b_h"] + 1
    second = save(g, tmp_path / "model.json", weights="npz", overwrite=True)
    assert first.npz is not None and not first.npz.exists() and second.npz is not None and second.npz.exists()


def test_dead_temp_files_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    dead = tmp_path / ".model.json.abc123xy.tmp"
    dead_npz = tmp_path / ".model.0123456789ab.npz.q1w2e3r4.tmp"
    live = tmp_path / ".model.json.live0001.tmp"
    young = tmp_path / ".model.json.young001.tmp"
    other = tmp_path / ".notes.txt.abc123xy.tmp"
    for path in (dead, dead_npz, live, young, other):
        path.write_bytes(b"half a file")
        os.chmod(path, 0o600)
    old = time.time() - 3600
    for path in (dead, dead_npz, live, other):
        os.utime(path, (old, old))
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a save that is still writing
    try:
        removed = remove_dead_temp_files(target)
    finally:
        os.close(fd)
    assert sorted(p.name for p in removed) == sorted([dead.name, dead_npz.name])
    assert live.exists() and young.exists() and other.exists()


def test_a_save_cleans_up_after_a_killed_one(tmp_path: Path) -> None:
    g = _seed()
    leftover = tmp_path / ".model.json.k9k9k9k9.tmp"
    leftover.write_bytes(b"{")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    save(g, tmp_path / "model.json")
    assert not leftover.exists()
