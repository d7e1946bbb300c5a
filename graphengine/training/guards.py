"""What stops training before it starts or before a bad step: no trainable parameter, a NaN/Inf loss or gradient."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import NonFiniteError, TrainingError, did_you_mean
from ..format import SavedGraph
from ..graph import Graph

_add_reduce = np.add.reduce


def trainable_names(graph: Graph, trainable: Sequence[str] | None, freeze: Sequence[str]) -> list[str]:

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


def check_finite(
    loss: float,
    grads: Mapping[str, np.ndarray],
    step: int,
    epoch: int,
    batch: int,
    batches: int,
    last: SavedGraph | None,
    ckpt_path: Path | None,
) -> None:
    # Fast path: a sum is finite only if every term is, so one test of the loss plus every gradient's sum
    # clears them all (a finite sum that overflows takes the exact check below, which passes).
    total = loss
    for g in grads.values():
        total += _add_reduce(g, None)  # ndarray.sum's reduction without its Python wrapper
    if math.isfinite(total):
        return
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
