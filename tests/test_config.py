"""TrainConfig: training options as data, in Python, in TOML files and on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SEED

import graphengine
import graphengine.cli
from graphengine.errors import TrainingError
from graphengine.training import TrainConfig
from graphengine.training.config import ConfigError


def test_validation_errors_are_typed_and_name_the_key() -> None:
    with pytest.raises(
        ConfigError, match=r"^TrainConfig: key 'epochs': Input should be greater than or equal to 1 \(got 0\)$"
    ) as info:
        TrainConfig(epochs=0)
    assert isinstance(info.value, TrainingError) and info.value.key == "epochs"
    with pytest.raises(ConfigError, match=r"key 'batch_size': Input should be a valid integer.*\(got 'big'\)") as info:
        TrainConfig(batch_size="big")
    assert info.value.key == "batch_size"
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rate'") as info:
        TrainConfig(learning_rate=0.1)
    assert info.value.key == "learning_rate"
    with pytest.raises(ConfigError, match=r"key 'progress': Input should be 'auto', 'bar'"):
        TrainConfig(progress="loud")
    with pytest.raises(
        ConfigError, match=r"key 'metric': unknown metric 'acuracy' \(known: accuracy\); did you mean 'accuracy'\?"
    ):
        TrainConfig(metric="acuracy")
    with pytest.raises(ConfigError, match=r"key 'validation_split': Input should be less than 1"):
        TrainConfig(validation_split=1.0)


def test_train_keywords_are_checked_like_the_config() -> None:
    g = graphengine.load(SEED)
    with pytest.raises(ConfigError, match=r"^train\(\): unknown key 'stpes'; did you mean 'steps'\?$"):
        graphengine.train(g, stpes=3, progress="none")
    with pytest.raises(ConfigError, match=r"^train\(\): key 'steps': Input should be greater than or equal to 1"):
        graphengine.train(g, steps=0, progress="none")


def test_every_field_is_documented() -> None:
    for name, info in TrainConfig.model_fields.items():
        assert info.description, name
    assert TrainConfig.model_config["extra"] == "forbid"


def test_toml_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(
        data=tmp_path / "train.npz", epochs=3, batch_size=16, shuffle=False, seed=7, optimizer="adam", lr=0.01,
        hyper={"beta1": 0.8, "eps": 1e-7}, freeze=["b_h", "b_o"], trainable=["W_h", "W_o", "b_h", "b_o"],
        weights="npz", checkpoint_every=2, progress="json", plugins=["my.module", str(tmp_path / "p.py")],
    )  # fmt: skip
    text = cfg.to_toml()
    assert "[hyper]" in text and 'optimizer = "adam"' in text
    assert TrainConfig.from_toml_text(text) == cfg
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert TrainConfig.from_toml(path) == cfg
    assert TrainConfig().to_toml() == "\n"  # only what differs from the defaults


def test_relative_paths_in_a_file_are_relative_to_it(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "run.toml").write_text('data = "d.npz"\noutput = "out/model.json"\nplugins = ["ops.py", "some.module"]\n')
    cfg = TrainConfig.from_toml(folder / "run.toml")
    assert cfg.data == folder / "d.npz" and cfg.output == folder / "out" / "model.json"
    assert cfg.plugins == [str(folder / "ops.py"), "some.module"]


def cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    code = graphengine.cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_reads_a_config_and_flags_override_it(tmp_path: Path, capsys: Any) -> None:
    source = tmp_path / "seed.json"
    source.write_bytes(SEED.read_bytes())
    np.savez(tmp_path / "seed.npz", x=np.array([[0.05, 0.1]]), target=np.array([[0.01, 0.99]]))
    (tmp_path / "run.toml").write_text(
        'data = "seed.npz"\nsteps = 50\noptimizer = "momentum"\nlr = 0.1\nfreeze = ["b_h", "b_o"]\n'
        'output = "seed.out.json"\nprogress = "quiet"\n\n[hyper]\nmomentum = 0.5\n'
    )
    code, out, err = cli(
        capsys,
        "train",
        str(source),
        "--config",
        str(tmp_path / "run.toml"),
        "--steps",
        "20",
        "--hyper",
        "nesterov=true",
    )
    assert code == 0, err
    assert out.startswith("training completed") or out.startswith("training steps")
    history = json.loads(
        (tmp_path / "seed.out.history.json").read_text()
    )  # the default history follows the file's output
    assert history["steps"] == 20  # the flag overrides the file
    assert history["optimizer"] == {
        **history["optimizer"],
        "name": "momentum",
        "lr": 0.1,
        "momentum": 0.5,
        "nesterov": True,
    }
    trained = graphengine.load(tmp_path / "seed.out.json")
    assert trained.run()["loss"] < 0.298371109
    np.testing.assert_array_equal(
        trained.parameters["b_h"], graphengine.load(SEED).parameters["b_h"]
    )  # frozen by the file


def test_cli_config_errors_are_one_line_naming_the_file_and_key(tmp_path: Path, capsys: Any) -> None:
    config = tmp_path / "run.toml"
    config.write_text("epochs = 2\nbatch_sise = 8\n")
    code, out, err = cli(capsys, "train", str(SEED), "--config", str(config))
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert f"graphengine: error: config {str(config)!r}: unknown key 'batch_sise'; did you mean 'batch_size'?" in err
    config.write_text('epochs = "ten"\n')
    code, _, err = cli(capsys, "train", str(SEED), "--config", str(config))
    assert (
        code == 1
        and err.count("\n") == 1
        and f"config {str(config)!r}: key 'epochs': Input should be a valid integer" in err
    )
    config.write_text("epochs = \n")
    code, _, err = cli(capsys, "train", str(SEED), "--config", str(config))
    assert code == 1 and err.count("\n") == 1 and f"config {str(config)!r}: not valid TOML: " in err
    code, _, err = cli(capsys, "train", str(SEED), "--config", str(tmp_path / "missing.toml"))
    assert code == 1 and err.count("\n") == 1 and "missing.toml" in err and "cannot read" in err
    code, _, err = cli(capsys, "train", str(SEED), "--epochs", "0")
    assert code == 1 and "command line: key 'epochs': Input should be greater than or equal to 1" in err
