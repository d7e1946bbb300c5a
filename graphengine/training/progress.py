"""Progress output and loss curves for :func:`graphengine.train`.

:class:`Reporter` prints one of: a bar per epoch with the running loss
(``bar``, on a terminal, to stderr), plain log lines (``log``), one JSON object
per line (``json``: ``{"event": "epoch" | "note" | "summary", ...}``), only
the final summary (``quiet``), or nothing (``none``). Long runs log every
``log_every`` epochs, plus the first and the last.

:func:`plot_history` draws the curves with matplotlib, an optional extra.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

from ..errors import SaveError, TrainingError
from ..format import atomic_write

__all__ = ["Reporter", "plot_history", "require_matplotlib", "fmt_metrics"]


def fmt_metrics(values: Mapping[str, float]) -> str:
    return "  ".join(f"{k} {v:.6g}" for k, v in values.items())


class Reporter:
    """Progress output: ``bar`` (terminal), ``log`` (plain lines), ``json`` (JSON lines), ``quiet``, ``none``."""

    def __init__(self, mode: str, epochs: int, log_every: int, stream: IO[str] | None) -> None:
        self.mode = mode
        self.epochs = epochs
        self.log_every = log_every
        self.out = stream or sys.stdout
        self.bar_out = stream or sys.stderr
        self._last_draw = 0.0

    def logged(self, epoch: int) -> bool:
        return epoch % self.log_every == 0 or epoch == self.epochs or epoch == 1

    def step(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        if self.mode != "bar":
            return
        now = time.perf_counter()
        if batch < batches and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 24
        done = width * batch // batches
        bar = "=" * done + (">" if done < width else "") + " " * (width - done - 1)
        self.bar_out.write(f"\repoch {epoch}/{self.epochs} [{bar[:width]}] {batch}/{batches} loss {loss:.4g}   ")
        self.bar_out.flush()

    def epoch(self, record: Mapping[str, Any]) -> None:
        if self.mode in ("quiet", "none") or not self.logged(record["epoch"]):
            return
        if self.mode == "json":
            self.out.write(json.dumps({"event": "epoch", **record}) + "\n")
        else:
            text = (
                f"epoch {record['epoch']}/{self.epochs}  step {record['step']}  "
                + fmt_metrics({k: v for k, v in record.items() if k not in ("epoch", "step", "seconds")})
                + f"  ({record['seconds']:.2f}s)"
            )
            if self.mode == "bar":
                self.bar_out.write("\r" + text + " " * 8 + "\n")
                self.bar_out.flush()
                return
            self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        if self.mode == "none":
            return
        if self.mode == "json":
            self.out.write(json.dumps({"event": "note", "message": text}) + "\n")
        else:
            (self.bar_out if self.mode == "bar" else self.out).write(("\n" if self.mode == "bar" else "") + text + "\n")
        self.out.flush()

    def summary(self, result: Any) -> None:
        if self.mode == "none":
            return
        if self.mode == "json":
            self.out.write(
                json.dumps({"event": "summary", **{k: v for k, v in result.to_json().items() if k != "epochs"}}) + "\n"
            )
        else:
            self.out.write(result.summary() + "\n")
        self.out.flush()


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise TrainingError(
            "--plot needs matplotlib, which is not installed: pip install 'graphengine[plot]'"
        ) from None


def plot_history(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Draw loss (and metric) curves per epoch to an image file (format from its suffix).

    Raises
    ------
    TrainingError
        When matplotlib is missing.
    SaveError
        When the file cannot be written.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    keys = [k for k in history[0] if k not in ("epoch", "step", "seconds") and not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    epochs = [r["epoch"] for r in history]
    for ax, key in zip(axes[0], keys):
        ax.plot(epochs, [r[key] for r in history], label=f"train {key}")
        if f"val_{key}" in history[0]:
            ax.plot(epochs, [r[f"val_{key}"] for r in history], label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        if key == "loss" and min(r[key] for r in history) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    target = Path(path)
    fmt = target.suffix[1:].lower() or "png"
    try:
        atomic_write(target, lambda f: fig.savefig(f, format=fmt))
    except ValueError as exc:  # unknown image format
        raise SaveError(f"cannot write plot {str(target)!r}: {exc}") from None
    finally:
        plt.close(fig)
    return target
