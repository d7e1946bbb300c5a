"""``train``: fit the parameters to data, write the trained graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..distributed import train as train_on_dask
from ..errors import TrainingError
from ..training import TrainConfig, train
from ..training.loop import _base
from ..training.metrics import METRICS
from .common import _load


def add_arguments(p: Any) -> None:
    """Add the ``graphengine train`` options to an argparse parser."""
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="training options as TOML (keys as in TrainConfig, see docs/training.md); flags override them",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="FILE",
        help=".npz or .csv with arrays/columns named after the inputs; default: the inputs' defaults",
    )
    g.add_argument("--val", metavar="FILE", help="validation data, evaluated after each epoch")
    g.add_argument(
        "--validation-split",
        type=float,
        metavar="F",
        help="hold out this fraction of --data for validation",
    )
    g.add_argument("--test", metavar="FILE", help="test data, evaluated once at the end")
    g = p.add_argument_group("loop")
    g.add_argument("--epochs", type=int, help="epochs in total (default 1, or what --steps needs)")
    g.add_argument("--steps", type=int, help="stop after this many optimizer steps in total")
    g.add_argument("--batch-size", type=int, help="default 32 (1 when an input takes one example at a time)")
    g.add_argument("--no-shuffle", dest="shuffle", action="store_false", default=None, help="keep the data's order")
    g.add_argument("--seed", type=int, help="seed of shuffling and of the validation split")
    g.add_argument("--optimizer", metavar="NAME", help="sgd, momentum, adam, or one from a --plugin (default sgd)")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument(
        "--hyper",
        action="append",
        metavar="KEY=VALUE",
        help="optimizer hyper-parameter, e.g. momentum=0.9 (repeatable)",
    )
    g.add_argument("--train", action="append", metavar="PARAM", help="update only these parameters (repeatable)")
    g.add_argument("--freeze", action="append", metavar="PARAM", help="keep this parameter fixed (repeatable)")
    g.add_argument("--metric", choices=sorted(METRICS), help="also report this metric")
    g = p.add_argument_group("files")
    g.add_argument(
        "-o", "--output", metavar="FILE", help="trained graph (default: GRAPH's name + .trained.json, beside it)"
    )
    g.add_argument(
        "--weights",
        choices=["auto", "inline", "npz"],
        help="values inline in the JSON, or a .npz beside it (auto: inline up to 10,000)",
    )
    g.add_argument("--overwrite", action="store_true", default=None, help="replace an existing output file")
    g.add_argument(
        "--in-place", action="store_true", default=None, help="write the trained values back into GRAPH itself"
    )
    g.add_argument("--checkpoint", metavar="FILE", help="checkpoint file (default: OUTPUT's name + .ckpt.json)")
    g.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="write a checkpoint every N epochs (Ctrl-C always writes one)",
    )
    g.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint")
    g.add_argument("--history", metavar="FILE", help="history JSON (default: OUTPUT's name + .history.json)")
    g.add_argument("--plot", metavar="IMAGE", help="draw loss/metric curves (needs matplotlib)")
    g = p.add_argument_group("output")
    g.add_argument("--quiet", action="store_true", help="print only the summary")
    g.add_argument("--log-format", choices=["text", "json"], help="json: one JSON object per line, for machines")
    g.add_argument(
        "--log-every", type=int, metavar="N", help="epochs between log lines (default 1, or about 50 lines in all)"
    )


def _parse_hyper(items: Sequence[str]) -> dict[str, Any]:
    hyper: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise TrainingError(f"--hyper {item!r}: expected KEY=VALUE")
        try:
            hyper[key] = json.loads(text)
        except json.JSONDecodeError:
            hyper[key] = text
    return hyper


#: TrainConfig key -> the argparse destination of its flag.
_FLAGS = {
    "data": "data",
    "validation_data": "val",
    "validation_split": "validation_split",
    "test_data": "test",
    "epochs": "epochs",
    "steps": "steps",
    "batch_size": "batch_size",
    "shuffle": "shuffle",
    "seed": "seed",
    "optimizer": "optimizer",
    "lr": "lr",
    "trainable": "train",
    "freeze": "freeze",
    "metric": "metric",
    "output": "output",
    "weights": "weights",
    "overwrite": "overwrite",
    "in_place": "in_place",
    "checkpoint": "checkpoint",
    "checkpoint_every": "checkpoint_every",
    "resume": "resume",
    "history_path": "history",
    "plot": "plot",
    "log_every": "log_every",
    "dask": "dask",
    "shards": "shards",
}


def build_config(args: Any) -> TrainConfig:
    """The TrainConfig of a ``graphengine train`` command: ``--config`` FILE, then the flags given, then defaults.

    Raises
    ------
    TrainingError
        One line naming the file (or the command line) and the key.
    """
    base = TrainConfig.from_toml(args.config) if args.config else TrainConfig()
    flags: dict[str, Any] = {
        key: getattr(args, dest) for key, dest in _FLAGS.items() if getattr(args, dest) is not None
    }
    if args.hyper:
        flags["hyper"] = {**base.hyper, **_parse_hyper(args.hyper)}
    if args.plugin:
        flags["plugins"] = args.plugin
    if args.log_format == "json":
        flags["progress"] = "json"
    elif args.quiet:
        flags["progress"] = "quiet"
    cfg = base.replace("command line", **flags)
    source = Path(args.graph)
    defaults: dict[str, Any] = {}
    output = cfg.output
    if output is None:
        output = defaults["output"] = source if cfg.in_place else source.with_name(_base(source) + ".trained.json")
    if cfg.history_path is None:
        defaults["history_path"] = output.with_name(_base(output) + ".history.json")
    return cfg.replace("command line", **defaults)


def cmd_train(args: Any) -> int:
    """``graphengine train GRAPH``: returns 0, or 130 when interrupted (a checkpoint is written)."""
    cfg = build_config(args)
    args.plugin = list(cfg.plugins)  # the graph's ops may come from the config file's plugins
    result = (train_on_dask if cfg.dask else train)(_load(args), config=cfg)
    return 130 if result.status == "interrupted" else 0
