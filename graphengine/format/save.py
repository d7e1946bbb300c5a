"""Writing graphs back to disk, safely.

:func:`save` writes a graph with its current parameter values as a new graph
file that :func:`graphengine.load` reads like any other. Values go inline
(exact: float64 values are written with ``repr`` precision) or into a ``.npz``
beside the JSON.

Every write is atomic (:func:`atomic_write`): a temp file in the same folder,
``fsync``, then ``os.replace`` and an ``fsync`` of the folder. A crash or
Ctrl-C leaves either the old file or the new one, never half of one.

A JSON file and its ``.npz`` must change together, and two renames are not one.
So the ``.npz`` is *content-addressed*: ``model.json`` refers to
``model.<first 12 hex digits of its sha256>.npz`` and pins the full sha256.
The new ``.npz`` is written first, then the JSON is replaced; until that
rename the old JSON still points at the old, intact ``.npz``. Afterwards the
``.npz`` the old JSON named is removed, but only when no graph file
anywhere could load it: the only ones that can sit in its folder or above
it, and all of those are searched (``cp model.json best.json`` keeps it
alive; one that cannot be checked is kept and named in a
:class:`SaveWarning`). Temp files of saves that were killed are removed
once provably dead (unlocked and a minute old).

The graph's own file is never overwritten unless ``overwrite_input=True``, and
an existing file only with ``overwrite=True``.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping

import numpy as np

from ..errors import SaveError, clip
from .references import why_kept

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write", "atomic_write_bytes", "SavedGraph", "SaveWarning", "npz_bytes", "check_writable"]

#: Above this many parameter elements, ``weights="auto"`` writes a .npz instead of inline values.
INLINE_LIMIT = 10_000


@dataclass(frozen=True)
class SavedGraph:
    """Where :func:`save` wrote: the graph file and its .npz (or None when inline)."""

    path: Path
    npz: Path | None


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write a file atomically: temp file in the same folder, fsync, rename, fsync the folder.

    Parameters
    ----------
    path : str or PathLike
    write : callable
        Called with the open binary temp file; whatever it writes becomes the file.

    Raises
    ------
    SaveError
        When the folder is missing or not writable, or ``write`` fails; the old
        file (if any) is left as it was and the temp file is removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> atomic_write(target, lambda f: f.write(b"hello"))
    >>> target.read_bytes()
    b'hello'
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SaveError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    try:
        if fcntl is not None:  # held until the rename: a clean-up never takes a live save's temp file
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.chmod(tmp, _mode_for(target))  # mkstemp makes 0600; a saved graph should be as readable as any file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:  # including KeyboardInterrupt: never leave the temp file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise SaveError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
        raise
    _fsync_dir(folder)


def _mode_for(target: Path) -> int:
    try:
        return os.stat(target).st_mode & 0o777  # keep the mode of the file we replace
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """:func:`atomic_write` of a bytes object."""

    def write(f: IO[bytes]) -> None:
        f.write(data)

    atomic_write(path, write)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of an uncompressed .npz holding ``arrays`` (deterministic for equal input)."""
    buffer = io.BytesIO()
    savez: Any = np.savez  # numpy's stubs do not type **arrays
    savez(
        buffer, **{k: np.asarray(v, order="C") for k, v in arrays.items()}
    )  # ascontiguousarray would make 0-d arrays 1-d
    return buffer.getvalue()


def check_writable(
    path: str | os.PathLike[str], graph_file: str | None, *, overwrite: bool, overwrite_input: bool
) -> Path:
    """Refuse to replace the graph's own file, or an existing file, unless asked; return the path.

    Raises
    ------
    SaveError
    """
    target = Path(path)
    if target.suffix.lower() != ".json":
        raise SaveError(f"output {str(target)!r}: a graph file must end in .json")
    if not target.parent.is_dir() and str(target.parent):
        raise SaveError(f"output {str(target)!r}: folder {str(target.parent)!r} does not exist")
    if target.exists():
        same = graph_file is not None and Path(graph_file).exists() and os.path.samefile(target, graph_file)
        if same and not overwrite_input:
            raise SaveError(
                f"output {str(target)!r} is the input graph file; it is only replaced when asked (--in-place)"
            )
        if not same and not overwrite:
            raise SaveError(f"output {str(target)!r} exists; pass --overwrite (overwrite=True) to replace it")
    return target


def _stem(path: Path) -> str:
    return path.name[: -len(".json")] if path.name.lower().endswith(".json") else path.stem


class SaveWarning(UserWarning):
    """A save kept a replaced ``.npz`` that it could not prove unused; the message says which file and why."""


def npz_names(doc_bytes: bytes) -> set[str]:
    """The ``file`` names a graph document refers to (empty when it is not a readable graph document)."""
    try:
        doc = json.loads(doc_bytes)
    except (ValueError, RecursionError):
        return set()
    names: set[str] = set()
    if isinstance(doc, dict):
        for section in ("parameters", "constants"):
            entries = doc.get(section)
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                    names.add(entry["file"])
    return names


def remove_replaced_npz(target: Path, old_names: set[str], keep: Path | None) -> list[Path]:
    """Remove the .npz files the replaced ``target`` referred to, when provably unused; return those removed.

    Only a file that (1) the old version of ``target`` named, beside it,
    (2) has this graph's ``NAME.<12 hex>.npz`` form, (3) is a regular,
    single-link file of this user and (4) no graph file anywhere can load
    (see :func:`graphengine.format.references.why_kept`) is deleted. Anything else is left alone, and a
    file that passes (1)-(3) but not (4) is named in a :class:`SaveWarning`
    (one line: which file and why). A kept file costs disk space; a deleted
    one can cost another graph its weights.
    """
    pattern = re.compile(re.escape(_stem(target)) + r"\.[0-9a-f]{12}\.npz")
    removed = []
    for name in sorted(old_names):
        if not pattern.fullmatch(name) or (keep is not None and name == keep.name):
            continue
        candidate = target.parent / name
        try:
            info = os.lstat(candidate)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1 or info.st_uid != _uid():
            continue
        reason = why_kept(candidate)
        if reason is not None:
            shown = clip(str(candidate), 200)
            warnings.warn(
                SaveWarning(
                    f"kept {shown!r}, which the replaced graph used: {clip(reason, 300)}; delete it once unused"
                ),
                stacklevel=3,
            )
            continue
        try:
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            pass
    return removed


def _uid() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0  # Windows reports st_uid 0 for every file


def remove_dead_temp_files(target: Path, min_age: float = 60.0) -> list[Path]:
    """Remove temp files that a killed save of ``target`` (or its .npz) left behind; return those removed.

    A save holds an exclusive ``flock`` on its temp file until the rename. A
    temp file of this graph's form whose lock can be taken, and which is
    older than ``min_age`` seconds (a save that has created but not yet
    locked its file is younger), belongs to a save that died. Without
    ``fcntl`` (Windows) nothing is removed.
    """
    if fcntl is None:
        return []
    pattern = re.compile(
        r"\." + re.escape(_stem(target)) + r"\.(json|[0-9a-f]{12}\.npz)\.[A-Za-z0-9_]{6,12}\.tmp", re.IGNORECASE
    )
    removed = []
    try:
        names = [p for p in target.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return []
    now = time.time()
    for candidate in names:
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < min_age or info.st_uid != _uid():
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError while a live save holds it
            if (os.lstat(candidate).st_ino, os.lstat(candidate).st_dev) == (info.st_ino, info.st_dev):
                os.unlink(candidate)
                removed.append(candidate)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def format_document(doc: Mapping[str, Any]) -> str:
    """JSON with one line per top-level list item, like the hand-written examples."""
    lines = ["{"]
    items = list(doc.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"  {json.dumps(key)}: [")
            for j, item in enumerate(value):
                lines.append("    " + json.dumps(item, allow_nan=False) + ("," if j < len(value) - 1 else ""))
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, allow_nan=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"
