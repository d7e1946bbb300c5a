"""Reading weight files that sit beside a graph.

A graph may name ``.npy``/``.npz`` files. They are read here, and only here,
with three promises: the path stays inside the graph's folder (no ``..``,
absolute paths, symlinks or hard links, checked before any ``open()``), the
bytes are bounded before they are read or unpacked, and nothing is ever
unpickled (headers are parsed by numpy's literal-only parser).
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphFileError, LimitError
from ..errors import clip as _clip
from ..errors import show as _show
from .schema import TensorDecl

__all__ = ["NPY_HEADER_ROOM", "safe_data_path", "read_data_file", "npy_header", "npz_member"]

#: Room for a .npy header (numpy caps headers at 10,000 bytes) on top of the data it describes.
NPY_HEADER_ROOM = 16 * 1024


def safe_data_path(base_dir: Path | None, relative: str, *, error: Any) -> Path:
    """Resolve ``relative`` inside ``base_dir``, refusing anything that could leave it.

    Checked before any ``open()``: absolute paths, drive letters, backslashes,
    NUL bytes, ``..`` components, symlinks anywhere on the way, and hard links.
    ``error(detail)`` builds the exception to raise.
    """
    if base_dir is None:
        raise error(f"file {_show(relative)} cannot be read: the graph was not loaded from a file")
    if "\x00" in relative:
        raise error("path contains a NUL byte")
    if "\\" in relative or (len(relative) >= 2 and relative[1] == ":"):
        raise error(f"path {_show(relative)} must use '/' and be relative to the graph's folder")
    parts = relative.split("/")
    if relative.startswith("/") or any(p in ("..", "") for p in parts):
        raise error(
            f"path {_show(relative)} must stay inside the graph's folder (no absolute paths, '..' or empty parts)"
        )
    base = base_dir.resolve()
    current = base
    for part in parts:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError:
            raise error(f"file {_show(relative)} does not exist in {str(base_dir)!r}") from None
        if stat.S_ISLNK(info.st_mode):
            raise error(f"path {_show(relative)} goes through a symlink ({_show(part)}); symlinks are not followed")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{_show(relative)} is not a regular file")
    if info.st_nlink > 1:
        raise error(f"{_show(relative)} is a hard link; copy the file instead")
    return current


def read_data_file(
    base_dir: Path | None, relative: str, *, max_bytes: int, error: Any, limit_error: Any = None, read_error: Any = None
) -> bytes:
    """Read a file named by a graph, inside ``base_dir``, at most ``max_bytes`` long.

    :func:`safe_data_path` checks the path first. The file is then opened
    without following symlinks, one folder at a time where the OS allows it,
    and must be the same regular, single-link file that was checked, so a
    link swapped in after the check is refused too.

    Raises
    ------
    GraphFileError
        What ``error(detail)`` builds for an unsafe path, ``limit_error`` for
        a file over ``max_bytes``, ``read_error`` when reading fails (both
        default to ``error``).
    """
    limit_error, read_error = limit_error or error, read_error or error
    checked = safe_data_path(base_dir, relative, error=error)
    assert base_dir is not None
    before = os.lstat(checked)
    if before.st_size > max_bytes:
        raise limit_error(
            f"{_show(relative)} is {before.st_size} bytes, more than the {max_bytes} left under the byte limit"
        )
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0) | nofollow
    fd = -1
    try:
        if os.open in os.supports_dir_fd and nofollow and hasattr(os, "O_DIRECTORY"):
            fd = os.open(base_dir.resolve(), os.O_RDONLY | os.O_DIRECTORY)
            for part in relative.split("/")[:-1]:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=fd)
                os.close(fd)
                fd = next_fd
            file_fd = os.open(relative.split("/")[-1], flags, dir_fd=fd)
            os.close(fd)
            fd = file_fd
        else:
            fd = os.open(checked, flags)
        info = os.fstat(fd)
        same = (info.st_dev, info.st_ino) == (before.st_dev, before.st_ino)
        if not same or not stat.S_ISREG(info.st_mode) or info.st_nlink > 1 or info.st_size > max_bytes:
            raise error(f"{_show(relative)} changed while it was being opened; refusing it")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            data = fh.read(info.st_size + 1)  # read(n) reserves n bytes up front: ask for what the file holds
    except OSError as exc:  # e.g. ELOOP: a component became a symlink after the check
        raise read_error(f"cannot read {_show(relative)}: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise limit_error(f"{_show(relative)} grew past the byte limit while being read")
    return data


def npy_header(data: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) from a .npy header, read by numpy's literal-only parser."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)")
    return shape, fortran, dtype, stream.tell()


def npz_member(data: bytes, decl: TensorDecl, budget: int, max_total_bytes: int, fail: Any) -> bytes:
    """The bytes of one array of a .npz archive, decompressing at most ``budget`` bytes."""
    shown = _show(decl.file)
    key = decl.key or decl.name
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            member = key + ".npy"
            if member not in names:
                have = [n[:-4] for n in names if n.endswith(".npy")]
                listed = ", ".join(_show(n) for n in have[:10]) + (", ..." if len(have) > 10 else "")
                raise fail(f"{shown} has no array {_show(key)} (it has {listed or 'none'})", ".key")
            info = archive.getinfo(member)
            if info.file_size > budget + NPY_HEADER_ROOM:
                raise fail(
                    f"array {_show(key)} of {shown} unpacks to {info.file_size} bytes, "
                    f"over what is left of max_total_bytes={max_total_bytes}",
                    cls=LimitError,
                )
            with archive.open(info) as stream:
                # Read one byte past the declared size: a lying size is caught without unpacking a bomb.
                content = stream.read(info.file_size + 1)
    except GraphFileError:
        raise
    except Exception as exc:  # zipfile raises several types for corrupt or exotic archives
        raise fail(f"cannot read {shown} as .npz: {type(exc).__name__}: {_clip(str(exc), 160)}") from None
    if len(content) != info.file_size:
        raise fail(f"array {_show(key)} of {shown} does not match its declared size")
    return content
