"""Resource limits of a graph file, checked before anything large is allocated."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds checked while loading, before anything large is allocated.

    Attributes
    ----------
    max_nodes : int
        Inputs, parameters, constants and nodes together. The default admits a
        million-node graph with room for its declared values; a chain at the
        limit validates in under 10 s of CPU and 1 GB (see
        docs/performance-load.md). Raise it on purpose for larger graphs.
    max_elements : int
        Elements of any one tensor: declared, stored, or produced by a node
        (free dimensions count as 1).
    max_total_bytes : int
        Bytes of all parameters, constants and input defaults together,
        counted before each is allocated (also bounds what a weight file
        may hold, or a .npz member may unpack to).
    max_ndim : int
        Dimensions of any one tensor.
    max_file_bytes : int
        Size of the graph file itself.
    """

    max_nodes: int = 1_100_000
    max_elements: int = 100_000_000
    max_total_bytes: int = 2 * 1024**3
    max_ndim: int = 32
    max_file_bytes: int = 512 * 1024**2
