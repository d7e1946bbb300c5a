"""Training: the loop, progress, history, checkpoints and Ctrl-C.

:func:`train` is to a graph what Keras ``fit`` is to a model: it feeds batches
of data, asks the compiled plan for the gradients of the loss, lets an
optimizer (:mod:`graphengine.optimizers`) update ``graph.parameters`` in
place, reports progress, and can write the result (:mod:`graphengine.save`).

Choices worth knowing:

- **Determinism.** Epoch ``e`` is shuffled by ``default_rng([seed, 0, e])``
  and the validation split drawn by ``default_rng([seed, 1])``, so a run is
  fully determined by its seed, and a resumed run continues bit for bit.
- **Losses.** The history's ``loss`` is the mean of the per-batch losses over
  the epoch, weighted by batch size (the dataset mean for a ``"mean"`` loss).
  ``final`` and ``test`` are evaluated with the trained parameters.
- **Ctrl-C** (SIGINT, in the main thread) sets a flag; the loop stops after
  the current step and writes a checkpoint. A second Ctrl-C aborts at once;
  files are still never half-written. ``KeyboardInterrupt`` raised by an
  ``on_step``/``on_epoch`` callback is treated like the first Ctrl-C.
- **NaN/Inf.** A non-finite loss or gradient stops training *before* that
  update with :class:`~graphengine.errors.NonFiniteError` naming the step;
  the last good checkpoint is left as it was.
- **Checkpoints** are graph files (loadable with :func:`graphengine.load`)
  whose ``.npz`` also holds the optimizer state and the loop's position
  (``__optimizer__/...`` and ``__train_state__``).
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
from typing import IO, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import NonFiniteError, SaveError, TrainingError, did_you_mean
from ..format import SavedGraph, atomic_write_bytes, check_writable, format_document
from ..graph import Graph, load, save
from ..ops import format_shape
from .checkpoint import read_checkpoint, write_checkpoint
from .data import Dataset, load_data
from .metrics import Accuracy, _resolve_metric
from .optimizers import Optimizer, default_optimizers, describe, make_optimizer
from .progress import Reporter, plot_history, require_matplotlib
from .results import TrainResult


def evaluate(graph: Graph, data: Any = None, *, metric: Any = None, batch_size: int = 256) -> dict[str, float]:
    """Loss (and metric) of ``graph`` over ``data``, with its current parameters.

    The loss is the batch-size-weighted mean of per-batch losses.

    Raises
    ------
    DataError, TrainingError, ExecutionError

    Examples
    --------
    >>> import graphengine
    >>> g = graphengine.load("examples/seed_network.json")
    >>> round(evaluate(g)["loss"], 9)
    0.298371109
    """
    dataset = data if isinstance(data, Dataset) else load_data(data, graph)
    acc = _resolve_metric(metric, graph)
    loss_name = _loss_name(graph)
    plan = graph.compile()
    wanted = [loss_name] + ([acc.logits] if acc else [])
    total = correct = seen = 0.0
    size = 1 if dataset.per_example else batch_size
    for index in dataset.batches(size):
        feeds = dataset.feeds(index)
        out = plan.run(feeds, outputs=wanted)
        total += float(out[loss_name]) * len(index)
        if acc is not None:
            c, n = acc.count(out[acc.logits], feeds[acc.labels] if acc.labels in feeds else _default(graph, acc.labels))
            correct, seen = correct + c, seen + n
    result = {"loss": total / dataset.size}
    if acc is not None:
        result[acc.name] = correct / max(seen, 1)
    return result


def _default(graph: Graph, name: str) -> np.ndarray:
    default = graph.inputs[name].default
    assert default is not None
    return default


def _loss_name(graph: Graph) -> str:
    if graph.loss is None:
        raise TrainingError(
            f"the graph has several outputs {graph.outputs} and no 'loss'; name the scalar to minimize in its \"loss\" field"
        )
    return graph.loss


@dataclass
class _State:
    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the current epoch
    step: int = 0
    loss_sum: float = 0.0
    examples: int = 0
    correct: int = 0
    counted: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"version": 1, **self.__dict__, "config": dict(config)}


def train(
    graph: Graph | str | os.PathLike[str],
    data: Any = None,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    validation_data: Any = None,
    validation_split: float = 0.0,
    test_data: Any = None,
    optimizer: str = "sgd",
    hyper: Mapping[str, Any] | None = None,
    lr: float | None = None,
    trainable: Sequence[str] | None = None,
    freeze: Sequence[str] = (),
    metric: str | Accuracy | None = None,
    output: str | os.PathLike[str] | None = None,
    weights: str = "auto",
    overwrite: bool = False,
    in_place: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike[str] | None = None,
    history_path: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
    progress: str = "auto",
    log_every: int | None = None,
    stream: IO[str] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    plugins: Sequence[str] = (),
    handle_sigint: bool = True,
) -> TrainResult:
    """Train a graph's parameters to minimize its loss.

    Parameters
    ----------
    graph : Graph or path
        Its ``loss`` must be a scalar. Updated in place.
    data : path, mapping or None
        ``.npz``/``.csv`` file or arrays named after the inputs (see
        :mod:`graphengine.data`); None trains on the inputs' defaults.
    epochs, steps : int, optional
        Stop after this many epochs (total, counting those before a resume)
        or optimizer steps, whichever comes first; default one epoch, or as
        many as ``steps`` needs.
    batch_size : int, optional
        Default 32, or 1 when an input takes one example at a time.
    shuffle, seed :
        Shuffle each epoch, deterministically from ``seed``.
    validation_data, validation_split :
        Evaluated after each epoch: a separate dataset, or a fraction of
        ``data`` held out at random (from ``seed``).
    test_data :
        Evaluated once at the end.
    optimizer, hyper, lr :
        Optimizer name (``sgd``, ``momentum``, ``adam`` or a plugin's) and its
        hyper-parameters; ``lr`` is a shortcut for ``hyper["lr"]``.
    trainable, freeze :
        Parameters to update (default all), minus ``freeze``.
    metric : "accuracy" or None
    output : path, optional
        Write the trained graph here (``weights``: ``"auto"``, ``"inline"``, ``"npz"``).
    overwrite, in_place :
        Allow replacing an existing ``output``; allow it to be the input graph file.
    checkpoint, checkpoint_every :
        Checkpoint file (default ``<output>.ckpt.json`` when ``output`` is
        given), written every N epochs (0: never), on Ctrl-C, and at the end.
    resume : path, optional
        Continue from a checkpoint (parameters, optimizer state, position, history).
    history_path, plot : path, optional
        Write the history as JSON; draw loss/metric curves (needs matplotlib).
    progress : {"auto", "bar", "log", "json", "quiet", "none"}
        ``auto``: a bar on a terminal, plain lines otherwise. ``quiet`` prints
        only the summary.
    log_every : int, optional
        Epochs between log lines; default 1, or about 50 lines for long runs.
    stream : text file, optional
        Where progress goes (default: bar on stderr, lines on stdout).
    on_step, on_epoch : callable, optional
        Called with a dict after each step / epoch record; raising
        KeyboardInterrupt there stops training like Ctrl-C.
    plugins : sequence of str
        Plugins for ops (when ``graph`` is a path) and optimizers.
    handle_sigint : bool
        Catch Ctrl-C to stop after the current step (main thread only).

    Returns
    -------
    TrainResult

    Raises
    ------
    DataError
        Bad data (see :func:`graphengine.data.load_data`).
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
    """
    started = time.perf_counter()
    if not isinstance(graph, Graph):
        graph = load(graph, plugins=plugins)
    loss_name = _loss_name(graph)
    names = _trainable(graph, trainable, freeze)
    if progress not in ("auto", "bar", "log", "json", "quiet", "none"):
        raise TrainingError(f"progress must be auto, bar, log, json, quiet or none, not {progress!r}")
    if not 0 <= validation_split < 1:
        raise TrainingError(f"validation split must be in [0, 1), not {validation_split}")

    # Fail fast on anything that would otherwise only fail after training.
    out_path = check_writable(output, graph.file, overwrite=overwrite, overwrite_input=in_place) if output else None
    ckpt_path = (
        Path(checkpoint)
        if checkpoint
        else (out_path.with_name(out_path.name[:-5] + ".ckpt.json") if out_path else None)
    )
    if ckpt_path is not None:
        check_writable(ckpt_path, graph.file, overwrite=True, overwrite_input=False)
        if out_path is not None and ckpt_path.resolve() == out_path.resolve():
            raise SaveError(f"the checkpoint and the output are the same file {str(ckpt_path)!r}")
    if checkpoint_every and ckpt_path is None:
        raise TrainingError("checkpoint_every needs a checkpoint path (or an output to derive it from)")
    if plot is not None:
        require_matplotlib()

    dataset = load_data(data, graph)
    val = load_data(validation_data, graph, what="validation data") if validation_data is not None else None
    if validation_split:
        if val is not None:
            raise TrainingError("give a validation file or a validation split, not both")
        dataset, val = _split(dataset, validation_split, seed)
    test = load_data(test_data, graph, what="test data") if test_data is not None else None
    if batch_size is None:
        batch_size = 1 if dataset.per_example else 32
    if batch_size < 1:
        raise TrainingError(f"batch size must be at least 1, not {batch_size}")
    if dataset.per_example and batch_size != 1:
        name = next(n for n, b in dataset.batched.items() if not b)
        raise TrainingError(
            f"input {name!r} is declared {format_shape(graph.inputs[name].spec.shape)} with no free first dimension, so it takes "
            f"one example per step: use batch size 1, or declare it with a leading null dimension"
        )
    batches_per_epoch = math.ceil(dataset.size / batch_size)
    if epochs is None:
        epochs = math.ceil(steps / batches_per_epoch) if steps else 1
    if epochs < 1 or (steps is not None and steps < 1):
        raise TrainingError("epochs and steps must be at least 1")

    # Own writable copies: the optimizer updates in place, and arrays read from files may be shared.
    for name in graph.parameters:
        graph.parameters[name] = np.array(graph.parameters[name], copy=True)
    opt_hyper = dict(hyper or {})
    if lr is not None:
        opt_hyper["lr"] = lr
    opt = make_optimizer(optimizer, opt_hyper, {n: graph.parameters[n] for n in names}, default_optimizers(plugins))
    acc = _resolve_metric(metric, graph)
    config = {
        "optimizer": optimizer,
        "batch_size": batch_size,
        "seed": seed,
        "shuffle": shuffle,
        "examples": dataset.size,
        "trainable": names,
    }
    state = _State()
    if resume is not None:
        state = _resume(resume, graph, opt, config)

    mode = progress
    if mode == "auto":
        mode = "bar" if (stream or sys.stderr).isatty() else "log"
    every = log_every or (1 if epochs <= 50 else math.ceil(epochs / 50))
    reporter = Reporter(mode, epochs, every, stream)
    plan = graph.compile()
    need_logits_run = acc is not None and acc.logits not in graph.outputs
    stop = threading.Event()
    status = "completed"
    last_checkpoint: SavedGraph | None = None
    base_seconds = state.seconds

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        reporter.note("interrupt: stopping after this step (Ctrl-C again to abort)")

    def snapshot() -> SavedGraph | None:
        if ckpt_path is None:
            return None
        state.seconds = base_seconds + time.perf_counter() - started
        return write_checkpoint(ckpt_path, graph, opt, state.to_json(config))

    previous = None
    if handle_sigint and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        while state.epoch < epochs and (steps is None or state.step < steps) and not stop.is_set():
            epoch = state.epoch + 1
            order = np.random.default_rng([seed, 0, epoch]).permutation(dataset.size) if shuffle else None
            batches = list(dataset.batches(batch_size, order))
            for b in range(state.batch, len(batches)):
                feeds = dataset.feeds(batches[b])
                with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, by step number
                    grad = plan.value_and_grad(feeds, wrt=names)
                loss = float(grad.outputs[loss_name])
                _check_finite(
                    loss, grad.gradients, state.step + 1, epoch, b + 1, len(batches), last_checkpoint, ckpt_path
                )
                opt.update(graph.parameters, grad.gradients)
                n = len(batches[b])
                state.step, state.batch = state.step + 1, b + 1
                state.loss_sum, state.examples = state.loss_sum + loss * n, state.examples + n
                if acc is not None:
                    logits = (
                        plan.run(feeds, outputs=[acc.logits])[acc.logits]
                        if need_logits_run
                        else grad.outputs[acc.logits]
                    )
                    c, k = acc.count(logits, feeds[acc.labels] if acc.labels in feeds else _default(graph, acc.labels))
                    state.correct, state.counted = state.correct + c, state.counted + k
                reporter.step(epoch, b + 1, len(batches), state.loss_sum / state.examples)
                try:
                    if on_step is not None:
                        on_step({"epoch": epoch, "batch": b + 1, "step": state.step, "loss": loss})
                except KeyboardInterrupt:
                    stop.set()
                if stop.is_set() or (steps is not None and state.step >= steps):
                    break
            if state.batch < len(batches):
                break  # stopped inside the epoch; the checkpoint keeps the position
            record = _epoch_record(state, epoch, acc, val, graph, base_seconds + time.perf_counter() - started)
            state.history.append(record)
            state.epoch, state.batch = epoch, 0
            state.loss_sum = state.examples = state.correct = state.counted = 0
            reporter.epoch(record)
            try:
                if on_epoch is not None:
                    on_epoch(dict(record))
            except KeyboardInterrupt:
                stop.set()
            if checkpoint_every and epoch % checkpoint_every == 0 and not stop.is_set():
                last_checkpoint = snapshot()
    except NonFiniteError:
        _write_history(
            history_path, graph, state, "nonfinite", describe(opt), base_seconds + time.perf_counter() - started
        )
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    if stop.is_set():
        status = "interrupted"
    elif state.epoch < epochs:
        status = "steps"
    if ckpt_path is not None and (status == "interrupted" or checkpoint_every):
        last_checkpoint = snapshot()
    if status == "interrupted":
        where = f"; checkpoint: {last_checkpoint.path} (resume with --resume)" if last_checkpoint else ""
        reporter.note(f"interrupted at step {state.step} (epoch {state.epoch + (1 if state.batch else 0)}){where}")
    final = evaluate(graph, dataset, metric=acc, batch_size=max(batch_size, 256)) if status != "interrupted" else {}
    test_result = (
        evaluate(graph, test, metric=acc, batch_size=max(batch_size, 256))
        if test is not None and status != "interrupted"
        else None
    )
    saved = None
    if out_path is not None and status != "interrupted":
        saved = save(graph, out_path, weights=weights, overwrite=overwrite, overwrite_input=in_place)  # type: ignore[arg-type]
    result = TrainResult(
        graph,
        state.history,
        status,
        state.step,
        state.epoch,
        final,
        test_result,
        time.perf_counter() - started,
        describe(opt),
        saved,
        last_checkpoint,
    )
    if history_path is not None:
        result.history_path = _write_history(history_path, graph, state, status, describe(opt), result.seconds, result)
    if plot is not None and state.history:
        result.plot_path = plot_history(state.history, plot)
    reporter.summary(result)
    return result


def _trainable(graph: Graph, trainable: Sequence[str] | None, freeze: Sequence[str]) -> list[str]:

    for name in [*(trainable or []), *freeze]:
        if name not in graph.parameters:
            hint = did_you_mean(name, graph.parameters)
            raise TrainingError(
                f"{name!r} is not a parameter of the graph (parameters: {', '.join(graph.parameters)}){hint}"
            )
    names = [n for n in (trainable if trainable is not None else graph.parameters) if n not in set(freeze)]
    names = [n for n in names if graph.parameters[n].dtype.kind == "f"]
    if not names:
        raise TrainingError("nothing to train: no floating-point parameter is left after --train/--freeze")
    return names


def _split(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    order = np.random.default_rng([seed, 1]).permutation(dataset.size)
    n_val = int(round(dataset.size * fraction))
    if not dataset.arrays or n_val < 1 or n_val >= dataset.size:
        raise TrainingError(
            f"validation split {fraction} of {dataset.size} example(s) leaves no validation or no training data"
        )
    return (
        dataset.subset(np.sort(order[n_val:]), dataset.source),
        dataset.subset(np.sort(order[:n_val]), f"validation split of {dataset.source}"),
    )


def _check_finite(
    loss: float,
    grads: Mapping[str, np.ndarray],
    step: int,
    epoch: int,
    batch: int,
    batches: int,
    last: SavedGraph | None,
    ckpt_path: Path | None,
) -> None:
    bad = None if math.isfinite(loss) else f"the loss became {loss}"
    if bad is None:
        for name, g in grads.items():
            if not np.isfinite(g).all():
                bad = f"the gradient of {name!r} holds {'NaN' if np.isnan(g).any() else 'Inf'}"
                break
    if bad is None:
        return
    if last is not None:
        kept = f"the last good checkpoint {str(last.path)!r} is intact"
    elif ckpt_path is not None and ckpt_path.exists():
        kept = f"the existing checkpoint {str(ckpt_path)!r} was not touched"
    else:
        kept = "no checkpoint was written this run (use --checkpoint-every)"
    raise NonFiniteError(
        f"{bad} at step {step} (epoch {epoch}, batch {batch}/{batches}); training stopped before applying it, "
        f"so the parameters are those after step {step - 1}; {kept}. Try a smaller learning rate.",
        step=step,
        checkpoint=str(last.path) if last else None,
    )


def _epoch_record(
    state: _State, epoch: int, acc: Accuracy | None, val: Dataset | None, graph: Graph, seconds: float
) -> dict[str, Any]:
    record: dict[str, Any] = {"epoch": epoch, "step": state.step, "loss": state.loss_sum / max(state.examples, 1)}
    if acc is not None:
        record[acc.name] = state.correct / max(state.counted, 1)
    if val is not None:
        for key, value in evaluate(graph, val, metric=acc).items():
            record[f"val_{key}"] = value
    record["seconds"] = round(seconds, 4)
    return record


def _resume(path: str | os.PathLike[str], graph: Graph, opt: Optimizer, config: Mapping[str, Any]) -> _State:
    params, opt_state, saved = read_checkpoint(path, graph)
    theirs = saved.get("config", {})
    if theirs.get("optimizer") != config["optimizer"]:
        raise TrainingError(
            f"checkpoint {str(path)!r} was made with optimizer {theirs.get('optimizer')!r}, not {config['optimizer']!r}"
        )
    if saved.get("batch"):
        for key in ("batch_size", "seed", "shuffle", "examples"):
            if theirs.get(key) != config[key]:
                raise TrainingError(
                    f"checkpoint {str(path)!r} stopped inside an epoch with {key}={theirs.get(key)!r}; resuming needs the same "
                    f"{key} (got {config[key]!r})"
                )
    for name, value in params.items():
        graph.parameters[name] = np.array(value, dtype=graph.parameters[name].dtype, copy=True)
    opt.load_state_arrays(opt_state)
    fields = {k: v for k, v in saved.items() if k in _State.__dataclass_fields__}
    return _State(**fields)


def _write_history(
    path: str | os.PathLike[str] | None,
    graph: Graph,
    state: _State,
    status: str,
    optimizer: dict[str, Any],
    seconds: float,
    result: TrainResult | None = None,
) -> Path | None:
    if path is None:
        return None
    content = (
        result.to_json()
        if result is not None
        else {
            "format": "graphengine/history-v1",
            "graph": graph.file,
            "status": status,
            "optimizer": optimizer,
            "steps": state.step,
            "epochs": state.history,
            "seconds": seconds,
        }
    )
    atomic_write_bytes(path, format_document(content).encode())  # one line per epoch
    return Path(path)


def _base(path: Path) -> str:
    return path.name[:-5] if path.name.lower().endswith(".json") else path.name
