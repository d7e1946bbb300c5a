"""Training configuration as data: :class:`TrainConfig`, and reading it from a TOML file.

Every choice :func:`graphengine.train` makes from data lives here: what to
read, how long and how to train, what to write. Callbacks and streams are not
data and stay arguments of :func:`~graphengine.train`.

A TOML file holds the same keys at the top level, and the optimizer's
hyper-parameters in a ``[hyper]`` table::

    data = "train.npz"
    epochs = 40
    batch_size = 32
    optimizer = "adam"
    lr = 0.003
    metric = "accuracy"

    [hyper]
    beta1 = 0.85

Relative paths in a file are relative to the file's folder.

Examples
--------
>>> cfg = TrainConfig(steps=100, lr=0.5, freeze=["b_h", "b_o"])
>>> cfg.optimizer, cfg.steps, cfg.freeze
('sgd', 100, ['b_h', 'b_o'])
>>> TrainConfig.from_toml_text('epochs = 3\\noptimizer = "adam"\\n').epochs
3
>>> TrainConfig(epoch=3)
Traceback (most recent call last):
...
graphengine.training.config.ConfigError: TrainConfig: unknown key 'epoch'; did you mean 'epochs'?
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import TrainingError, did_you_mean, show
from .metrics import METRICS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["TrainConfig", "ConfigError", "PATH_FIELDS"]


class ConfigError(TrainingError):
    """A training option is unknown or has a bad value.

    Attributes
    ----------
    where : str
        What held it: ``TrainConfig``, ``train()``, ``config 'run.toml'``, ``command line``.
    key : str
        The option (``epochs``; ``hyper.lr`` for a nested one).
    detail : str
        The problem, without ``where``.
    """

    def __init__(self, where: str, key: str, detail: str) -> None:
        self.where, self.key, self.detail = where, key, detail
        super().__init__(f"{where}: {detail}")


#: Fields that name files: in a TOML file they are relative to the file's folder.
PATH_FIELDS = ("data", "validation_data", "test_data", "output", "checkpoint", "resume", "history_path", "plot")


class TrainConfig(BaseModel):
    """What :func:`graphengine.train` does, as data.

    Build it in Python, read it from TOML (:meth:`from_toml`), or let
    :func:`~graphengine.train` build it from keyword arguments. Every field
    has a default; unknown keys are refused. Invalid values raise
    :class:`~graphengine.errors.TrainingError` naming the key.

    Parameters
    ----------
    data, validation_data, test_data : path, optional
        ``.npz``/``.csv`` files (see :mod:`graphengine.training.data`).
    validation_split : float
        Fraction of ``data`` held out for validation.
    epochs, steps, batch_size, shuffle, seed :
        The loop.
    optimizer, hyper, lr :
        The optimizer and its hyper-parameters.
    trainable, freeze :
        Which parameters change.
    metric :
        ``"accuracy"`` or None.
    output, weights, overwrite, in_place, checkpoint, checkpoint_every, resume, history_path, plot :
        Files.
    progress, log_every :
        Output.
    plugins :
        Plugins for ops and optimizers.
    dask, shards :
        Data-parallel training on a Dask cluster (:func:`graphengine.distributed.train`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # --- data
    data: Path | None = Field(
        None, description="Training data: a .npz or .csv file named after the inputs; None: the inputs' defaults."
    )
    validation_data: Path | None = Field(None, description="Validation data, evaluated after each epoch.")
    validation_split: float = Field(
        0.0, ge=0, lt=1, description="Fraction of the training data held out at random (from seed) for validation."
    )
    test_data: Path | None = Field(None, description="Test data, evaluated once at the end.")
    # --- the loop
    epochs: int | None = Field(
        None,
        ge=1,
        description="Epochs in total, counting those before a resume; default 1, or as many as steps needs.",
    )
    steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps in total.")
    batch_size: int | None = Field(
        None, ge=1, description="Examples per step; default 32, or 1 when an input takes one example at a time."
    )
    shuffle: bool = Field(True, description="Shuffle each epoch, deterministically from seed.")
    seed: int = Field(0, description="Seed of the shuffling and of the validation split.")
    optimizer: str = Field("sgd", min_length=1, description="sgd, momentum, adam, or one a plugin adds.")
    hyper: dict[str, Any] = Field(
        default_factory=dict, description="The optimizer's hyper-parameters, e.g. {momentum = 0.9}."
    )
    lr: float | None = Field(None, description="Learning rate: a shortcut for hyper.lr, which it overrides.")
    trainable: list[str] | None = Field(None, description="Parameters to update; default all floating-point ones.")
    freeze: list[str] = Field(default_factory=list, description="Parameters to keep fixed.")
    metric: str | None = Field(None, description="A metric reported beside the loss: accuracy.")
    # --- files
    output: Path | None = Field(None, description="Write the trained graph here.")
    weights: Literal["auto", "inline", "npz"] = Field(
        "auto", description="Values inline in the JSON, or in a .npz beside it (auto: inline up to 10,000)."
    )
    overwrite: bool = Field(False, description="Allow replacing an existing output file.")
    in_place: bool = Field(False, description="Allow the output to be the input graph file itself.")
    checkpoint: Path | None = Field(
        None, description="Checkpoint file; default <output>.ckpt.json when there is an output."
    )
    checkpoint_every: int = Field(
        0, ge=0, description="Write a checkpoint every N epochs (0: only on Ctrl-C, and at the end when N > 0)."
    )
    resume: Path | None = Field(
        None, description="Continue from this checkpoint (parameters, optimizer state, position, history)."
    )
    history_path: Path | None = Field(None, description="Write the history (one record per epoch) as JSON here.")
    plot: Path | None = Field(None, description="Draw the loss/metric curves into this image (needs matplotlib).")
    # --- output
    progress: Literal["auto", "bar", "log", "json", "quiet", "none"] = Field(
        "auto", description="auto: a bar on a terminal, plain lines otherwise; quiet: only the summary."
    )
    log_every: int | None = Field(
        None, ge=1, description="Epochs between log lines; default 1, or about 50 lines for long runs."
    )
    plugins: list[str] = Field(
        default_factory=list, description="Plugins (file paths or module names) for ops and optimizers."
    )
    # --- scale-out (graphengine.distributed.train)
    dask: str | None = Field(
        None, description="A Dask scheduler address, or local:N for N local worker processes; None: this process."
    )
    shards: int | None = Field(None, ge=1, description="Shards per batch on Dask; default one per worker thread.")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise explain(exc, "TrainConfig", type(self)) from None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS:
            raise ValueError(f"unknown metric {value!r} (known: {', '.join(METRICS)}){did_you_mean(value, METRICS)}")
        return value

    # --- building one from data -------------------------------------------------------------

    @classmethod
    def parse(cls, values: Mapping[str, Any], where: str = "TrainConfig") -> "TrainConfig":
        """Validate ``values``; a :class:`ConfigError` names ``where`` and the key."""
        try:
            return cls.model_validate(dict(values))  # runs __init__, which raises ConfigError
        except ConfigError as exc:
            raise ConfigError(where, exc.key, exc.detail) from None

    def replace(self, where: str = "TrainConfig", **changes: Any) -> "TrainConfig":
        """A copy with ``changes``, validated like a new config (an unknown key is an error)."""
        if not changes:
            return self
        return self.parse({**self.model_dump(exclude_unset=True), **changes}, where)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> "TrainConfig":
        """Read a TOML file; relative paths in it are relative to its folder.

        Raises
        ------
        TrainingError
            One line naming the file and the problem: unreadable, not TOML, an
            unknown key (with "did you mean") or a value of the wrong type.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainingError(f"config {str(path)!r}: cannot read: {exc}") from None
        return cls.from_toml_text(text, str(path), base=path.parent)

    @classmethod
    def from_toml_text(cls, text: str, source: str = "<config>", base: Path | None = None) -> "TrainConfig":
        """Parse TOML text (``source`` names it in messages)."""
        return cls.parse(read_toml_values(text, source, base), f"config {source!r}")

    def to_toml(self) -> str:
        """The fields that differ from their defaults, as TOML that :meth:`from_toml_text` reads back."""
        values = self.model_dump(mode="json", exclude_defaults=True)
        hyper = values.pop("hyper", {})
        lines = [f"{key} = {_toml_value(value)}" for key, value in values.items() if value is not None]
        if hyper:
            lines += ["", "[hyper]", *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in hyper.items())]
        return "\n".join(lines) + "\n"


def read_toml_values(text: str, source: str, base: Path | None = None) -> dict[str, Any]:
    """The key/value pairs of a TOML config, with relative paths resolved against ``base``."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TrainingError(f"config {source!r}: not valid TOML: {exc}") from None
    if base is not None:
        for key in PATH_FIELDS:
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = str(base / values[key])
        plugins = values.get("plugins")
        if isinstance(plugins, list):
            values["plugins"] = [
                str(base / p) if isinstance(p, str) and _is_path(p) and not Path(p).is_absolute() else p
                for p in plugins
            ]
    return values


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def explain(exc: ValidationError, where: str, model: type[BaseModel]) -> ConfigError:
    """One line for the first error of ``exc``: where, the key, and what is wrong with it."""
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "?"
    if first["type"] == "extra_forbidden":
        return ConfigError(where, key, f"unknown key {key!r}{did_you_mean(key, model.model_fields)}")
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(where, key, f"key {key!r}: {message} (got {show(first.get('input'))})")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf")
            if not math.isfinite(value)
            else repr(value)
        )
    if isinstance(value, (int, str)):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TrainingError(f"TrainConfig: cannot write {type(value).__name__} as TOML")
