"""Training: the loop, progress, history, checkpoints and Ctrl-C.

:func:`train` is to a graph what Keras ``fit`` is to a model: it feeds batches
of data, asks the compiled plan for the gradients of the loss, lets an
optimizer (:mod:`graphengine.optimizers`) update ``graph.parameters`` in
place, reports progress, and can write the result (:mod:`graphengine.save`).
What it does is data: a :class:`TrainConfig` (fields, TOML files: docs/training.md).

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

Layer: above :mod:`graphengine.engine`, beside :mod:`graphengine.render`.
"""

from .checkpoint import read_checkpoint, write_checkpoint
from .config import TrainConfig
from .loop import evaluate, train
from .metrics import Accuracy
from .results import TrainResult

__all__ = ["train", "evaluate", "TrainConfig", "TrainResult", "Accuracy", "read_checkpoint", "write_checkpoint"]
