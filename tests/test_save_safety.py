"""Saving never deletes a file it cannot prove is its own and unused; temp files of killed saves do not pile up."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import pytest
from conftest import EXAMPLES

import graphengine
from graphengine import errors
from graphengine.cli import main
from graphengine.format.save import SaveWarning, remove_dead_temp_files
from graphengine.graph import save

fcntl = pytest.importorskip("fcntl", reason="temp-file locks need fcntl (POSIX)")


def _seed() -> graphengine.Graph:
    return graphengine.load(EXAMPLES / "seed_network.json")


def test_a_copy_of_the_graph_keeps_its_weights_alive(tmp_path: Path) -> None:
    # The issue's case: train -o model.json; cp model.json best.json; train -o model.json --overwrite.
    g = _seed()
    first = save(g, tmp_path / "model.json", weights="npz")
    shutil.copy(first.path, tmp_path / "best.json")
    g.parameters["W_h"] = g.parameters["W_h"] + 1.0
    with pytest.warns(SaveWarning, match=r"kept .*model\.[0-9a-f]{12}\.npz.*best\.json' names it"):
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
    with pytest.warns(SaveWarning, match="outer.json"):
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


W_H = [[0.15, 0.2], [0.25, 0.3]]


def _save_twice(folder: Path, between: object = None) -> tuple[Path, list[str]]:
    """Save the seed network to folder/model.json (.npz weights), call ``between(npz)``, save changed weights over
    it; return the first .npz and the SaveWarnings of the second save."""
    g = _seed()
    first = save(g, folder / "model.json", weights="npz")
    assert first.npz is not None
    if callable(between):
        between(first.npz)
    g.parameters["W_h"] = g.parameters["W_h"] * 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SaveWarning)
        save(g, folder / "model.json", weights="npz", overwrite=True)
    return first.npz, [str(w.message) for w in caught if issubclass(w.category, SaveWarning)]


def _graph_naming(npz: Path, where: Path, relative: str, name: str = "g.json") -> Path:
    """A copy of the first model.json placed at ``where``, naming the .npz as ``relative``."""
    text = (npz.parent / "model.json").read_text().replace(f'"file": "{npz.name}"', f'"file": "{relative}"')
    path = where / name
    path.write_text(text)
    return path


def test_a_graph_two_folders_up_keeps_its_weights_and_the_user_is_told(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    outer: list[Path] = []
    npz, notes = _save_twice(deep, lambda npz: outer.append(_graph_naming(npz, tmp_path, f"a/b/{npz.name}")))
    assert npz.exists() and graphengine.load(outer[0]).parameters["W_h"].tolist() == W_H
    assert len(notes) == 1 and npz.name in notes[0] and "g.json" in notes[0] and "names it" in notes[0]


def test_graphs_in_sibling_or_lower_folders_cannot_load_it_so_it_goes(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "sibling").mkdir()
    (tmp_path / "run" / "sub").mkdir()
    made: list[Path] = []

    def place(npz: Path) -> None:
        made.append(_graph_naming(npz, tmp_path / "sibling", f"../run/{npz.name}"))
        made.append(_graph_naming(npz, tmp_path / "run" / "sub", npz.name))
        for path in made:  # neither could ever load it: '..' is refused, and sub/ has no such file
            with pytest.raises(errors.GraphFileError):
                graphengine.load(path)

    npz, notes = _save_twice(tmp_path / "run", place)
    assert not npz.exists() and notes == []


def test_a_graph_reached_through_a_symlinked_folder_keeps_its_weights(tmp_path: Path) -> None:
    real = tmp_path / "store" / "real"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    kept: list[Path] = []
    # Saved through the link; a graph above the real folder names it by its real path.
    npz, notes = _save_twice(
        tmp_path / "link", lambda npz: kept.append(_graph_naming(npz, tmp_path / "store", f"real/{npz.name}"))
    )
    assert npz.exists() and graphengine.load(kept[0]).parameters["W_h"].tolist() == W_H and len(notes) == 1


def test_a_name_found_above_keeps_it_even_when_the_path_goes_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    made: list[Path] = []

    def place(npz: Path) -> None:
        made.append(_graph_naming(npz, tmp_path, f"link/{npz.name}"))
        with pytest.raises(errors.UnsafePathError, match="symlink"):
            graphengine.load(made[0])  # the loader never follows it, so deleting cannot break it

    npz, notes = _save_twice(real, place)
    # The graph could never load it, but the name is in a file above the real folder: kept (the search is by name).
    assert npz.exists() and len(notes) == 1


@pytest.mark.parametrize(
    "spelling",
    ["escaped", "not_json_suffix", "symlinked_graph", "too_large"],
)
def test_references_in_any_spelling_keep_the_weights(tmp_path: Path, spelling: str) -> None:
    run = tmp_path / "run"
    run.mkdir()

    def place(npz: Path) -> None:
        if spelling == "escaped":  # JSON escapes hide the name from a byte search: the file is parsed
            relative = "run\\/" + "".join(f"\\u{ord(c):04x}" for c in npz.name)
            path = _graph_naming(npz, tmp_path, relative)
            assert npz.name not in path.read_text()
            assert graphengine.load(path).parameters["W_h"].tolist() == W_H
        elif spelling == "not_json_suffix":  # load() takes any file name
            _graph_naming(npz, tmp_path, f"run/{npz.name}", name="best.graph")
        elif spelling == "symlinked_graph":  # the graph above is a symlink to a file elsewhere
            elsewhere = tmp_path / "elsewhere"
            elsewhere.mkdir()
            target = _graph_naming(npz, elsewhere, f"run/{npz.name}")
            (tmp_path / "best.json").symlink_to(target)
        else:  # a file too large to search (sparse, so cheap) might name it
            big = tmp_path / "huge.json"
            with open(big, "wb") as fh:
                fh.write(b"{")
                fh.truncate(65 * 2**20)

    npz, notes = _save_twice(run, place)
    assert npz.exists() and len(notes) == 1, notes
    if spelling == "too_large":
        assert "too large to search" in notes[0]


def test_files_that_cannot_be_graphs_do_not_keep_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()

    def place(npz: Path) -> None:
        (tmp_path / "notes.txt").write_text(f"I saved {npz.name} yesterday")  # not a JSON object
        (tmp_path / "list.json").write_text(json.dumps([npz.name]))  # JSON, but not an object
        os.mkfifo(tmp_path / "pipe.json")  # a FIFO: never opened, never waited on

    npz, notes = _save_twice(run, place)
    assert not npz.exists() and notes == []


def test_the_issues_scenario_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # train -o model.json; cp model.json best.json; train -o model.json --overwrite: best.json still loads.
    args = ["train", str(EXAMPLES / "seed_network.json"), "--epochs", "1", "--quiet", "--weights", "npz"]
    assert main([*args, "-o", str(tmp_path / "model.json")]) == 0
    shutil.copy(tmp_path / "model.json", tmp_path / "best.json")
    before = graphengine.load(tmp_path / "best.json").parameters["W_h"].tolist()
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "-o", str(tmp_path / "model.json"), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert graphengine.load(tmp_path / "best.json").parameters["W_h"].tolist() == before
    notes = [line for line in err.splitlines() if line.startswith("graphengine: note: kept")]
    assert len(notes) == 1 and "best.json" in notes[0], err


def test_too_many_files_to_search_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphengine.format import references

    monkeypatch.setattr(references, "SCAN_FILES", 3)
    run = tmp_path / "run"
    run.mkdir()

    def place(npz: Path) -> None:
        for i in range(5):
            (tmp_path / f"other{i}.json").write_text("{}")

    npz, notes = _save_twice(run, place)
    assert npz.exists() and len(notes) == 1 and "more than 3 files" in notes[0]


def test_unchanged_files_are_read_once_and_a_changed_one_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphengine.format import references

    monkeypatch.setattr(references, "SETTLED_SECONDS", 0.0)  # trust answers at once (files here are seconds old)
    monkeypatch.setattr(references, "_cache", {})
    reads: list[str] = []
    real_read = references._read
    monkeypatch.setattr(references, "_read", lambda path, size: reads.append(Path(path).name) or real_read(path, size))
    run = tmp_path / "run"
    run.mkdir()
    notes_file = tmp_path / "notes.json"
    notes_file.write_text('{"about": "nothing"}')
    g = _seed()
    save(g, run / "model.json", weights="npz")
    for k in range(2):  # each save replaces the last .npz, and searches for it
        g.parameters["b_h"] = g.parameters["b_h"] + 1
        save(g, run / "model.json", weights="npz", overwrite=True)
    assert reads.count("notes.json") == 1, reads
    # The unrelated file now names the current .npz: changed, so read again, and the .npz is kept.
    current = save(g, run / "model.json", weights="npz", overwrite=True).npz
    assert current is not None
    notes_file.write_text(json.dumps({"parameters": [{"name": "W_h", "file": f"run/{current.name}"}]}))
    g.parameters["b_h"] = g.parameters["b_h"] + 1
    with pytest.warns(SaveWarning, match="notes.json' names it"):
        save(g, run / "model.json", weights="npz", overwrite=True)
    assert current.exists() and reads.count("notes.json") == 2
