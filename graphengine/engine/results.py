""":class:`GradResult`: what a gradient call returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .. import hooks
from .trace import Trace

if TYPE_CHECKING:
    from .plan import Plan


@dataclass
class GradResult:
    """What :meth:`Plan.value_and_grad` returns.

    Attributes
    ----------
    outputs : dict of str to ndarray
        The graph's outputs from the same forward pass, and the differentiated
        value (the loss) even when the file does not list it as an output.
    gradients : dict of str to ndarray
        One per ``wrt`` name, with that value's shape and dtype.
    trace : Trace or None
        The recorded backward pass when ``record=True``.
    plan, feeds
        Where the result came from, so that it can draw itself (Jupyter).
    """

    outputs: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray]
    trace: Trace | None = None
    plan: "Plan | None" = field(default=None, repr=False, compare=False)
    feeds: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return hooks.display(self)

    def _repr_svg_(self) -> str | None:
        return self._repr_mimebundle_().get("image/svg+xml")
