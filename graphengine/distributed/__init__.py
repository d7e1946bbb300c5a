"""Data-parallel ``run``, ``grad``, ``evaluate`` and ``train`` on a Dask cluster.

The batch (or the dataset) is split into shards along its batch axis (the
axis named ``batch`` in an input's shape, else a leading free one). Each
worker builds the graph once from its JSON text with the same safe loader,
computes its shard, and the pieces come back combined by a tree reduction.
A mean loss weights each shard by its size, a sum does not: the reduction is
what the loss op declares (:class:`~graphengine.ops.LossInfo`). See
docs/distributed.md.

Needs the ``dask`` extra: ``pip install "graphengine[dask]"``.

Layer: above :mod:`graphengine.training` (it passes the training loop a
gradient function), below :mod:`graphengine.cli`.
"""

from .cluster import DistributedError, connect, upload_plugins
from .parallel import DataParallel, batch_axes, portable_text, shard_sizes
from .training import evaluate, train

__all__ = [
    "DataParallel",
    "DistributedError",
    "connect",
    "upload_plugins",
    "batch_axes",
    "shard_sizes",
    "portable_text",
    "evaluate",
    "train",
]
