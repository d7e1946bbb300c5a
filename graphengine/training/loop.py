"""The training loop: :func:`train` and the steps it is made of.

See :mod:`graphengine.training` for the choices it makes (determinism, losses,
Ctrl-C, NaN/Inf, checkpoints) and :class:`~graphengine.training.TrainConfig`
for its options.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from ..errors import NonFiniteError, SaveError, TrainingError
from ..format import SavedGraph, check_writable
from ..graph import Graph, load, save
from ..ops import format_shape
from .checkpoint import TrainState, resume_from, write_checkpoint
from .config import TrainConfig
from .data import Dataset, load_data, split
from .evaluation import default_of, epoch_record, evaluate, loss_of
from .guards import check_finite, trainable_names
from .metrics import Accuracy, _resolve_metric
from .optimizers import Optimizer, default_optimizers, describe, make_optimizer
from .progress import Reporter, plot_history, require_matplotlib
from .results import TrainResult, write_history

__all__ = ["train", "evaluate"]


def train(
    graph: Graph | str | os.PathLike[str],
    data: Any = None,
    *,
    config: TrainConfig | None = None,
    validation_data: Any = None,
    test_data: Any = None,
    stream: IO[str] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    handle_sigint: bool = True,
    gradient_fn: Callable[..., Any] | None = None,
    evaluate_fn: Callable[..., dict[str, float]] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a graph's parameters to minimize its loss.

    Parameters
    ----------
    graph : Graph or path
        Its ``loss`` must be a scalar. Updated in place.
    data : path, mapping, Dataset or None
        ``.npz``/``.csv`` file or arrays named after the inputs (see
        :mod:`graphengine.training.data`); default ``config.data``, and with
        neither, the inputs' defaults.
    config : TrainConfig, optional
        Everything else :func:`train` does, as data (see :class:`TrainConfig`
        for each field and its default).
    validation_data, test_data : path, mapping or Dataset, optional
        Like ``data``; default ``config.validation_data`` / ``config.test_data``.
    stream : text file, optional
        Where progress goes (default: bar on stderr, lines on stdout).
    on_step, on_epoch : callable, optional
        Called with a dict after each step / epoch record; raising
        KeyboardInterrupt there stops training like Ctrl-C.
    handle_sigint : bool
        Catch Ctrl-C to stop after the current step (main thread only).
    gradient_fn : callable, optional
        ``gradient_fn(feeds, wrt=names)`` returns what ``Plan.value_and_grad`` does; default: the
        graph's plan. :func:`graphengine.distributed.train` passes one that runs on a Dask cluster.
    evaluate_fn : callable, optional
        Like :func:`evaluate`, for the ``final`` and ``test`` figures (the cluster's, on Dask).
    **options
        Fields of :class:`TrainConfig` (``epochs=3``, ``lr=0.5``...): they
        override ``config``'s. An unknown one is a TrainingError with "did you mean".

    Returns
    -------
    TrainResult

    Raises
    ------
    DataError
        Bad data (see :func:`graphengine.training.data.load_data`).
    TrainingError
        Bad options, unknown optimizer/metric, incompatible checkpoint.
    NonFiniteError
        The loss or a gradient became NaN/Inf; ``graph`` keeps the last good values.
    SaveError
        An output could not be written, or would replace a file without permission.

    Examples
    --------
    >>> import graphengine
    >>> g = graphengine.load("examples/seed_network.json")
    >>> r = train(g, steps=100, lr=0.5, freeze=["b_h", "b_o"], progress="none")
    >>> r.steps, round(r.final["loss"], 6)
    (100, 0.020047)
    >>> r = train(g, config=TrainConfig(steps=10, lr=0.5), progress="none")
    >>> r.steps
    10
    """
    started = time.perf_counter()
    cfg = (config or TrainConfig()).replace("train()", **options)
    if cfg.dask is not None and gradient_fn is None:
        raise TrainingError(f"dask={cfg.dask!r}: train on a cluster with graphengine.distributed.train")
    run = _prepare(graph, cfg, data, validation_data, test_data, stream, started)
    run.gradient_fn, run.evaluate_fn = gradient_fn, evaluate_fn
    _loop(run, on_step, on_epoch, handle_sigint)
    return _finish(run)


@dataclass
class _Run:
    """Everything one call of :func:`train` works with."""

    graph: Graph
    cfg: TrainConfig
    loss_name: str
    names: list[str]
    out_path: Path | None
    ckpt_path: Path | None
    dataset: Dataset
    val: Dataset | None
    test: Dataset | None
    batch_size: int
    epochs: int
    opt: Optimizer
    acc: Accuracy | None
    resume_config: dict[str, Any]
    state: TrainState
    reporter: Reporter
    started: float
    stop: threading.Event = field(default_factory=threading.Event)
    last_checkpoint: SavedGraph | None = None
    base_seconds: float = 0.0  # training time of the runs before a resume
    gradient_fn: Callable[..., Any] | None = None  # default: plan.value_and_grad
    evaluate_fn: Callable[..., dict[str, float]] | None = None  # default: evaluate

    def __post_init__(self) -> None:
        self.base_seconds = self.state.seconds

    def seconds(self) -> float:
        """Training time in all, counting the runs before a resume."""
        return self.base_seconds + time.perf_counter() - self.started

    def snapshot(self) -> SavedGraph | None:
        if self.ckpt_path is None:
            return None
        self.state.seconds = self.seconds()
        return write_checkpoint(self.ckpt_path, self.graph, self.opt, self.state.to_json(self.resume_config))


def _prepare(
    graph: Graph | str | os.PathLike[str],
    cfg: TrainConfig,
    data: Any,
    validation_data: Any,
    test_data: Any,
    stream: IO[str] | None,
    started: float,
) -> _Run:
    """Check everything that could fail (before training, not after), read the data, build the optimizer."""
    if not isinstance(graph, Graph):
        graph = load(graph, plugins=cfg.plugins)
    loss_name = loss_of(graph)
    names = trainable_names(graph, cfg.trainable, cfg.freeze)
    out_path, ckpt_path = _output_paths(graph, cfg)
    if cfg.plot is not None:
        require_matplotlib()
    dataset, val, test = _datasets(
        graph,
        cfg,
        cfg.data if data is None else data,
        cfg.validation_data if validation_data is None else validation_data,
        cfg.test_data if test_data is None else test_data,
    )
    batch_size, epochs = _batching(graph, cfg, dataset)

    # Own writable copies: the optimizer updates in place, and arrays read from files may be shared.
    for name in graph.parameters:
        graph.parameters[name] = np.array(graph.parameters[name], copy=True)
    hyper = {**cfg.hyper, **({"lr": cfg.lr} if cfg.lr is not None else {})}
    params = {n: graph.parameters[n] for n in names}
    opt = make_optimizer(cfg.optimizer, hyper, params, default_optimizers(cfg.plugins))
    acc = _resolve_metric(cfg.metric, graph)
    resume_config = {
        "optimizer": cfg.optimizer,
        "batch_size": batch_size,
        "seed": cfg.seed,
        "shuffle": cfg.shuffle,
        "examples": dataset.size,
        "trainable": names,
    }
    state = resume_from(cfg.resume, graph, opt, resume_config) if cfg.resume is not None else TrainState()
    mode = cfg.progress
    if mode == "auto":
        mode = "bar" if (stream or sys.stderr).isatty() else "log"
    every = cfg.log_every or (1 if epochs <= 50 else math.ceil(epochs / 50))
    reporter = Reporter(mode, epochs, every, stream)
    return _Run(
        graph, cfg, loss_name, names, out_path, ckpt_path, dataset, val, test, batch_size, epochs, opt, acc,
        resume_config, state, reporter, started,
    )  # fmt: skip


def _output_paths(graph: Graph, cfg: TrainConfig) -> tuple[Path | None, Path | None]:
    """The output and checkpoint paths, checked writable now rather than after training."""
    output = cfg.output
    out_path = (
        check_writable(output, graph.file, overwrite=cfg.overwrite, overwrite_input=cfg.in_place) if output else None
    )
    ckpt_path = (
        Path(cfg.checkpoint)
        if cfg.checkpoint
        else (out_path.with_name(out_path.name[:-5] + ".ckpt.json") if out_path else None)
    )
    if ckpt_path is not None:
        check_writable(ckpt_path, graph.file, overwrite=True, overwrite_input=False)
        if out_path is not None and ckpt_path.resolve() == out_path.resolve():
            raise SaveError(f"the checkpoint and the output are the same file {str(ckpt_path)!r}")
    if cfg.checkpoint_every and ckpt_path is None:
        raise TrainingError("checkpoint_every needs a checkpoint path (or an output to derive it from)")
    return out_path, ckpt_path


def _datasets(
    graph: Graph, cfg: TrainConfig, data: Any, validation_data: Any, test_data: Any
) -> tuple[Dataset, Dataset | None, Dataset | None]:
    dataset = load_data(data, graph)
    val = load_data(validation_data, graph, what="validation data") if validation_data is not None else None
    if cfg.validation_split:
        if val is not None:
            raise TrainingError("give a validation file or a validation split, not both")
        dataset, val = split(dataset, cfg.validation_split, cfg.seed)
    test = load_data(test_data, graph, what="test data") if test_data is not None else None
    return dataset, val, test


def _batching(graph: Graph, cfg: TrainConfig, dataset: Dataset) -> tuple[int, int]:
    """The batch size and the number of epochs."""
    batch_size = cfg.batch_size
    if batch_size is None:
        batch_size = 1 if dataset.per_example else 32
    if dataset.per_example and batch_size != 1:
        name = next(n for n, b in dataset.batched.items() if not b)
        raise TrainingError(
            f"input {name!r} is declared {format_shape(graph.inputs[name].spec.shape)} with no free first dimension, so it takes "
            f"one example per step: use batch size 1, or declare it with a leading null dimension"
        )
    batches_per_epoch = math.ceil(dataset.size / batch_size)
    epochs = cfg.epochs
    if epochs is None:
        epochs = math.ceil(cfg.steps / batches_per_epoch) if cfg.steps else 1
    return batch_size, epochs


def _loop(
    run: _Run,
    on_step: Callable[[dict[str, Any]], None] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    handle_sigint: bool,
) -> None:
    """Run epochs until done, out of steps, or stopped (Ctrl-C or a callback's KeyboardInterrupt)."""
    state, steps = run.state, run.cfg.steps

    def on_sigint(signum: int, frame: Any) -> None:
        if run.stop.is_set():
            raise KeyboardInterrupt
        run.stop.set()
        run.reporter.note("interrupt: stopping after this step (Ctrl-C again to abort)")

    previous = None
    if handle_sigint and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        plan = run.graph.compile()
        while state.epoch < run.epochs and (steps is None or state.step < steps) and not run.stop.is_set():
            if not _epoch(run, plan, on_step):
                break  # stopped inside the epoch; the checkpoint keeps the position
            _end_epoch(run, on_epoch)
    except NonFiniteError:
        write_history(run.cfg.history_path, run.graph, state, "nonfinite", describe(run.opt), run.seconds())
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _epoch(run: _Run, plan: Any, on_step: Callable[[dict[str, Any]], None] | None) -> bool:
    """Run (the rest of) one epoch; False when it stopped before its last batch."""
    state, cfg, acc = run.state, run.cfg, run.acc
    epoch = state.epoch + 1
    order = np.random.default_rng([cfg.seed, 0, epoch]).permutation(run.dataset.size) if cfg.shuffle else None
    batches = list(run.dataset.batches(run.batch_size, order))
    n_batches = len(batches)
    need_logits_run = acc is not None and acc.logits not in run.graph.outputs
    # Looked up once per epoch, not per step: on a small model the step's Python calls are its time.
    value_and_grad = run.gradient_fn or plan.value_and_grad
    feeds_of, update, report = run.dataset.feeds, run.opt.update, run.reporter.step
    params, names, loss_name, stop = run.graph.parameters, run.names, run.loss_name, run.stop
    # Overflow is reported by the guard, by step number. errstate decorates the step once an epoch (numpy sets
    # the state around each call): a new `with np.errstate(...)` per step cost 10.8 k interpreter instructions.
    checked = np.errstate(over="ignore", invalid="ignore")(_checked_gradient)
    for b in range(state.batch, n_batches):
        feeds = feeds_of(batches[b])
        grad, loss = checked(value_and_grad, feeds, names, loss_name, state.step + 1, epoch, b + 1, n_batches, run)
        update(params, grad.gradients)
        n = len(batches[b])
        state.step, state.batch = state.step + 1, b + 1
        state.loss_sum, state.examples = state.loss_sum + loss * n, state.examples + n
        if acc is not None:
            logits = plan.run(feeds, outputs=[acc.logits])[acc.logits] if need_logits_run else grad.outputs[acc.logits]
            labels = feeds[acc.labels] if acc.labels in feeds else default_of(run.graph, acc.labels)
            c, k = acc.count(logits, labels)
            state.correct, state.counted = state.correct + c, state.counted + k
        report(epoch, b + 1, n_batches, state.loss_sum / state.examples)
        try:
            if on_step is not None:
                on_step({"epoch": epoch, "batch": b + 1, "step": state.step, "loss": loss})
        except KeyboardInterrupt:
            stop.set()
        if stop.is_set() or (cfg.steps is not None and state.step >= cfg.steps):
            break
    return state.batch >= n_batches


def _checked_gradient(
    value_and_grad: Callable[..., Any],
    feeds: dict[str, Any],
    names: list[str],
    loss_name: str,
    step: int,
    epoch: int,
    batch: int,
    n_batches: int,
    run: _Run,
) -> tuple[Any, float]:
    """One step's loss and gradients, checked finite (NonFiniteError names the step) before anything is applied."""
    grad = value_and_grad(feeds, wrt=names)
    loss = float(grad.outputs[loss_name])
    check_finite(loss, grad.gradients, step, epoch, batch, n_batches, run.last_checkpoint, run.ckpt_path)
    return grad, loss


def _end_epoch(run: _Run, on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
    """Record the epoch just completed, report it, and write a checkpoint when one is due."""
    state = run.state
    epoch = state.epoch + 1
    record = epoch_record(state, epoch, run.acc, run.val, run.graph, run.seconds())
    state.history.append(record)
    state.epoch, state.batch = epoch, 0
    state.loss_sum = state.examples = state.correct = state.counted = 0
    run.reporter.epoch(record)
    try:
        if on_epoch is not None:
            on_epoch(dict(record))
    except KeyboardInterrupt:
        run.stop.set()
    every = run.cfg.checkpoint_every
    if every and epoch % every == 0 and not run.stop.is_set():
        run.last_checkpoint = run.snapshot()


def _finish(run: _Run) -> TrainResult:
    """The final checkpoint, evaluations, output, history, plot and summary."""
    cfg, state, graph = run.cfg, run.state, run.graph
    status = "interrupted" if run.stop.is_set() else "steps" if state.epoch < run.epochs else "completed"
    if run.ckpt_path is not None and (status == "interrupted" or cfg.checkpoint_every):
        run.last_checkpoint = run.snapshot()
    if status == "interrupted":
        where = f"; checkpoint: {run.last_checkpoint.path} (resume with --resume)" if run.last_checkpoint else ""
        run.reporter.note(f"interrupted at step {state.step} (epoch {state.epoch + (1 if state.batch else 0)}){where}")
    final: dict[str, float] = {}
    test_result = saved = None
    if status != "interrupted":
        size = max(run.batch_size, 256)
        figures = run.evaluate_fn or evaluate
        final = figures(graph, run.dataset, metric=run.acc, batch_size=size)
        test_result = figures(graph, run.test, metric=run.acc, batch_size=size) if run.test is not None else None
        if run.out_path is not None:
            saved = save(
                graph, run.out_path, weights=cfg.weights, overwrite=cfg.overwrite, overwrite_input=cfg.in_place
            )
    seconds = time.perf_counter() - run.started
    result = TrainResult(
        graph, state.history, status, state.step, state.epoch, final, test_result, seconds, describe(run.opt),
        saved, run.last_checkpoint,
    )  # fmt: skip
    if cfg.history_path is not None:
        result.history_path = write_history(cfg.history_path, graph, state, status, describe(run.opt), seconds, result)
    if cfg.plot is not None and state.history:
        result.plot_path = plot_history(state.history, cfg.plot)
    run.reporter.summary(result)
    return result


def _base(path: Path) -> str:
    return path.name[:-5] if path.name.lower().endswith(".json") else path.name
