"""Issue 10, the families that a corpus file cannot carry: the graph file as a device or pipe, clipped
messages, checkpoint state, feeds of 1e400, empty arrays, and overflow warnings on the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SEED, graph_doc

import graphengine
from graphengine import errors
from graphengine.cli import main
from graphengine.training.checkpoint import STATE_KEY


def one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("graphengine: error: "), err
    return err


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "folder"])
def test_the_graph_file_must_be_a_regular_file(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.json"
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)  # a blocking open would hang here forever
    else:
        path.mkdir()
    with pytest.raises(errors.SchemaError, match="not a regular file"):
        graphengine.load(path)
    assert "model.json" in one_line(capsys, ["validate", str(path)])


def test_a_graph_file_is_read_no_further_than_max_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(graph_doc([{"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}], ["h"])))
    with pytest.raises(errors.LimitError, match="max_file_bytes=10"):
        graphengine.load(path, limits=graphengine.Limits(max_file_bytes=10))


def test_a_weight_file_swapped_for_a_fifo_does_not_hang(tmp_path: Path) -> None:
    # The open is non-blocking and checked afterwards: a pipe in the weight file's place is refused at once.
    doc = graph_doc([{"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}], ["h"])
    doc["parameters"][0] = {"name": "W", "file": "w.npy"}
    (tmp_path / "g.json").write_text(json.dumps(doc))
    os.mkfifo(tmp_path / "w.npy")
    done: list[BaseException] = []
    worker = threading.Thread(target=lambda: done.append(_raises(tmp_path / "g.json")), daemon=True)
    worker.start()
    worker.join(20)
    assert done and isinstance(done[0], errors.UnsafePathError), done


def _raises(path: Path) -> BaseException:
    try:
        graphengine.load(path)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        return exc
    raise AssertionError("accepted")


def test_an_empty_npy_of_shape_0_3_loads(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.zeros((0, 3)))
    doc = graph_doc([{"id": "h", "op": "linear", "inputs": ["x", "W", "b"]}], ["h"])
    doc["constants"] = [{"name": "c", "file": "c.npy"}]
    (tmp_path / "g.json").write_text(json.dumps(doc))
    assert graphengine.load(tmp_path / "g.json").constants["c"].shape == (0, 3)


def test_echoed_strings_are_clipped(tmp_path: Path) -> None:
    long_id = "i" * 2**20
    doc = graph_doc([{"id": long_id, "op": "nope", "inputs": ["x"]}], [long_id])
    with pytest.raises(errors.GraphFileError) as info:
        graphengine.load_dict(doc)
    assert len(str(info.value)) <= errors.MAX_MESSAGE + 400
    doc = graph_doc([{"id": "r", "op": "reshape", "inputs": ["x"], "attrs": {"shape": [1] * 10**6}}], ["r"])
    with pytest.raises(errors.GraphFileError) as info2:
        graphengine.load_dict(doc)
    assert len(str(info2.value)) <= errors.MAX_MESSAGE + 400


def test_a_feed_of_1e400_is_refused_like_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line(capsys, ["run", str(SEED), "--feed", "x=[1e400, 0.1]"])
    assert "too large for a float" in err


def test_overflow_on_a_files_defaults_is_one_warning_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [2], "default": [1000.0, -1.0]}],
        "nodes": [
            {"id": "e", "op": "exp", "inputs": ["x"]},
            {"id": "l", "op": "log", "inputs": ["x"]},
            {"id": "d", "op": "div", "inputs": ["x", "e"]},
        ],
        "outputs": ["e", "l", "d"],
    }
    path = tmp_path / "overflow.json"
    path.write_text(json.dumps(doc))
    assert main(["run", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith(
        "graphengine: warning: results may hold Inf or NaN"
    )
    assert "RuntimeWarning" not in captured.err and "overflow encountered in exp" in captured.err
    assert "inf" in captured.out and "nan" in captured.out  # IEEE results, shown as they are


# --- checkpoints: the training state is validated before it is used ---------------------------


def _classifier(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    doc = {
        "format": "graphengine/v1",
        "inputs": [{"name": "x", "shape": [None, 2]}, {"name": "y", "shape": [None], "dtype": "int64"}],
        "parameters": [
            {"name": "W", "value": np.round(rng.normal(0, 0.5, (3, 2)), 3).tolist()},
            {"name": "b", "value": [0.0, 0.0, 0.0]},
        ],
        "nodes": [
            {"id": "z", "op": "linear", "inputs": ["x", "W", "b"]},
            {"id": "loss", "op": "softmax_cross_entropy", "inputs": ["z", "y"]},
        ],
        "outputs": ["loss"],
        "loss": "loss",
    }
    path = tmp_path / "clf.json"
    path.write_text(json.dumps(doc))
    return path


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    y = np.arange(30) % 3
    return {"x": rng.normal(0, 1, (30, 2)) + y[:, None], "y": y.astype(np.int64)}


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    ckpt = tmp_path / "ckpt.json"
    graphengine.train(
        graphengine.load(_classifier(tmp_path)),
        _data(),
        epochs=1,
        batch_size=10,
        checkpoint=ckpt,
        checkpoint_every=1,
        progress="none",
        optimizer="adam",
    )
    return ckpt


def _tamper(ckpt: Path, state: bytes | None = None, arrays: dict[str, Any] | None = None) -> None:
    """Rewrite the checkpoint's .npz with another training state or optimizer arrays, and re-pin its sha256."""
    doc = json.loads(ckpt.read_text())
    npz = ckpt.parent / doc["parameters"][0]["file"]
    with np.load(npz) as old:
        content = {k: old[k] for k in old.files}
    if state is not None:
        content[STATE_KEY] = np.frombuffer(state, dtype=np.uint8)
    content.update(arrays or {})
    np.savez(npz, **content)
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    for entry in doc["parameters"]:
        entry["sha256"] = digest
    ckpt.write_text(json.dumps(doc))


GOOD = {
    "version": 1,
    "epoch": 1,
    "batch": 0,
    "step": 3,
    "loss_sum": 1.0,
    "examples": 30,
    "correct": 0,
    "counted": 0,
    "seconds": 0.1,
    "history": [],
    "config": {"optimizer": "adam"},
}


@pytest.mark.parametrize(
    "state, match",
    [
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2, 3]", "training state"),
        (json.dumps({**GOOD, "step": "3"}).encode(), "step"),
        (json.dumps({**GOOD, "step": -1}).encode(), "step"),
        (json.dumps({**GOOD, "history": 5}).encode(), "history"),
        (json.dumps({**GOOD, "loss_sum": 1e400}).encode(), "Infinity is not allowed"),
        (json.dumps({**GOOD, "seconds": -1.0}).encode(), "seconds"),
        (b'{"step": NaN}', "not valid JSON"),
    ],
)
def test_a_bad_training_state_is_a_training_error(
    checkpoint: Path, tmp_path: Path, state: bytes, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper(checkpoint, state=state)
    with pytest.raises(errors.TrainingError, match=match):
        graphengine.train(
            graphengine.load(_classifier(tmp_path)),
            _data(),
            epochs=2,
            batch_size=10,
            resume=checkpoint,
            progress="none",
            optimizer="adam",
        )
    data = tmp_path / "d.npz"
    np.savez(data, **_data())
    err = one_line(
        capsys,
        [
            "train",
            str(_classifier(tmp_path)),
            "--data",
            str(data),
            "--resume",
            str(checkpoint),
            "--optimizer",
            "adam",
            "--epochs",
            "2",
            "--quiet",
            "-o",
            str(tmp_path / "out.json"),
        ],
    )
    assert "ckpt.json" in err


@pytest.mark.parametrize(
    "arrays",
    [{"__optimizer__/t": np.zeros(3)}, {"__optimizer__/W/m": np.zeros((7, 7))}, {"__optimizer__/t": np.array(-4)}],
)
def test_optimizer_state_of_the_wrong_shape_is_a_training_error(checkpoint: Path, tmp_path: Path, arrays: Any) -> None:
    _tamper(checkpoint, arrays=arrays)
    with pytest.raises(errors.TrainingError):
        graphengine.train(
            graphengine.load(_classifier(tmp_path)),
            _data(),
            epochs=2,
            batch_size=10,
            resume=checkpoint,
            progress="none",
            optimizer="adam",
        )


def test_a_checkpoint_member_compressed_with_bzip2_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    doc = json.loads(checkpoint.read_text())
    npz = checkpoint.parent / doc["parameters"][0]["file"]
    with zipfile.ZipFile(npz) as old:
        members = {i.filename: old.read(i) for i in old.infolist()}
    with zipfile.ZipFile(npz, "w") as new:
        for name, data in members.items():
            new.writestr(name, data, compress_type=zipfile.ZIP_BZIP2 if name.startswith(STATE_KEY) else None)
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    for entry in doc["parameters"]:
        entry["sha256"] = digest
    checkpoint.write_text(json.dumps(doc))
    with pytest.raises(errors.TrainingError, match="neither stored nor deflated"):
        graphengine.train(
            graphengine.load(_classifier(tmp_path)),
            _data(),
            epochs=2,
            batch_size=10,
            resume=checkpoint,
            progress="none",
            optimizer="adam",
        )


def _deflate_state(checkpoint: Path, padding: int) -> None:
    """Rewrite the training state as a deflated member padded with JSON whitespace: a small file that unpacks big."""
    doc = json.loads(checkpoint.read_text())
    npz = checkpoint.parent / doc["parameters"][0]["file"]
    with zipfile.ZipFile(npz) as old:
        members = {i.filename: old.read(i) for i in old.infolist()}
    state = np.load(npz)[STATE_KEY].tobytes() + b" " * padding
    buffer = __import__("io").BytesIO()
    np.lib.format.write_array(buffer, np.frombuffer(state, dtype=np.uint8))
    members[STATE_KEY + ".npy"] = buffer.getvalue()
    with zipfile.ZipFile(npz, "w") as new:
        for name, data in members.items():
            new.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    for entry in doc["parameters"]:
        entry["sha256"] = digest
    checkpoint.write_text(json.dumps(doc))


def test_the_checkpoint_is_bounded_by_the_callers_limits(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _deflate_state(checkpoint, padding=300_000)  # unpacks to ~300 kB from a file of a few kB
    assert (checkpoint.parent / json.loads(checkpoint.read_text())["parameters"][0]["file"]).stat().st_size < 20_000
    limits = graphengine.Limits(max_total_bytes=100_000)
    options: dict[str, Any] = dict(epochs=2, batch_size=10, progress="none", optimizer="adam")
    with pytest.raises(errors.TrainingError, match=r"unpacks to \d+ bytes, over the limit max_total_bytes=100000"):
        graphengine.train(graphengine.load(_classifier(tmp_path), limits=limits), _data(), resume=checkpoint, **options)
    data = tmp_path / "d.npz"
    np.savez(data, **_data())
    argv = ["train", str(_classifier(tmp_path)), "--data", str(data), "--resume", str(checkpoint)]
    argv += ["--optimizer", "adam", "--epochs", "2", "--quiet", "-o", str(tmp_path / "out.json")]
    assert "max_total_bytes=100000" in one_line(capsys, [*argv, "--max-total-bytes", "100000"])
    # Under the default limits the same (valid) checkpoint resumes and finishes.
    result = graphengine.train(graphengine.load(_classifier(tmp_path)), _data(), resume=checkpoint, **options)
    assert np.isfinite(result.history[-1]["loss"])


def test_a_stored_checkpoint_over_the_callers_limit_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    # The classifier's parameters take 72 bytes; its checkpoint (with Adam's moments) takes more than 1,000.
    limits = graphengine.Limits(max_total_bytes=1_000)
    with pytest.raises(errors.GraphEngineError, match="byte limit|max_total_bytes=1000"):
        graphengine.train(
            graphengine.load(_classifier(tmp_path), limits=limits),
            _data(),
            epochs=2,
            batch_size=10,
            resume=checkpoint,
            progress="none",
            optimizer="adam",
        )


def _npy_claiming(shape: tuple[int, ...], payload: bytes) -> bytes:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + repr(shape) + ", }"
    text = header.encode() + b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + payload


def test_optimizer_state_whose_header_lies_allocates_nothing(checkpoint: Path, tmp_path: Path) -> None:
    # numpy's own reader would allocate the header's 8 GB for this 64-byte member before reading it.
    doc = json.loads(checkpoint.read_text())
    npz = checkpoint.parent / doc["parameters"][0]["file"]
    with zipfile.ZipFile(npz) as old:
        members = {i.filename: old.read(i) for i in old.infolist()}
    members["__optimizer__/W/m.npy"] = _npy_claiming((10**9,), b"\0" * 64)
    with zipfile.ZipFile(npz, "w") as new:
        for name, data in members.items():
            new.writestr(name, data)
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    for entry in doc["parameters"]:
        entry["sha256"] = digest
    checkpoint.write_text(json.dumps(doc))
    tracemalloc = __import__("tracemalloc")
    tracemalloc.start()
    try:
        with pytest.raises(errors.TrainingError, match=r"state '__optimizer__/W/m' is \d+ bytes, which does not fit"):
            graphengine.training.read_checkpoint(checkpoint, graphengine.load(_classifier(tmp_path)))
        assert tracemalloc.get_traced_memory()[1] < 50 * 2**20
    finally:
        tracemalloc.stop()


def test_a_checkpoint_swapped_after_its_graph_file_was_read_is_refused(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphengine.training import checkpoint as module

    real_load = module.load

    def load_then_swap(*args: Any, **kwargs: Any) -> Any:
        graph = real_load(*args, **kwargs)
        npz = checkpoint.parent / json.loads(checkpoint.read_text())["parameters"][0]["file"]
        npz.unlink()
        os.mkfifo(npz)  # a FIFO in its place: a blocking open would hang
        return graph

    monkeypatch.setattr(module, "load", load_then_swap)
    done = threading.Event()
    result: list[BaseException] = []

    def read() -> None:
        try:
            module.read_checkpoint(checkpoint, graphengine.load(_classifier(tmp_path)))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append(exc)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(30), "read_checkpoint hung on a FIFO"
    assert isinstance(result[0], errors.TrainingError) and "not a regular file" in str(result[0]), result
