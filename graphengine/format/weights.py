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

__all__ = ["NPY_HEADER_ROOM", "safe_data_path", "read_data_file", "read_bounded", "npy_header", "npz_member"]

#: Opening flags: never block (a FIFO swapped in after the check would hang a blocking open), never follow
#: a final symlink, never leak the descriptor to a child process.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)

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
    try:
        before = os.lstat(checked)
    except OSError:  # renamed or removed since the check
        raise error(f"{_show(relative)} changed while it was being opened; refusing it") from None
    if before.st_size > max_bytes:
        raise limit_error(
            f"{_show(relative)} is {before.st_size} bytes, more than the {max_bytes} left under the byte limit"
        )
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    fd = -1
    try:
        if os.open in os.supports_dir_fd and nofollow and hasattr(os, "O_DIRECTORY"):
            fd = os.open(base_dir.resolve(), os.O_RDONLY | os.O_DIRECTORY)
            for part in relative.split("/")[:-1]:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=fd)
                os.close(fd)
                fd = next_fd
            file_fd = os.open(relative.split("/")[-1], _OPEN_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = file_fd
        else:
            fd = os.open(checked, _OPEN_FLAGS)
        info = os.fstat(fd)
        same = (info.st_dev, info.st_ino) == (before.st_dev, before.st_ino)
        if not same or not stat.S_ISREG(info.st_mode) or info.st_nlink > 1 or info.st_size > max_bytes:
            raise error(f"{_show(relative)} changed while it was being opened; refusing it")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            data = fh.read(info.st_size + 1)  # read(n) reserves n bytes up front: ask for what the file holds
    except FileNotFoundError:  # renamed or removed between the check and the open
        raise error(f"{_show(relative)} changed while it was being opened; refusing it") from None
    except OSError as exc:  # e.g. ELOOP: a component became a symlink after the check
        raise read_error(f"cannot read {_show(relative)}: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise limit_error(f"{_show(relative)} grew past the byte limit while being read")
    return data


#: Zip methods whose readers never unpack more than asked for (zipfile's bzip2 and LZMA readers do).
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def read_bounded(
    path: str | os.PathLike[str], max_bytes: int, *, error: Any, limit_error: Any, what: str = "graph file"
) -> bytes:
    """The bytes of a file a user named (e.g. the graph file): a regular file, at most ``max_bytes`` long.

    The path may be a symlink (the user chose it), but what it opens must be
    a regular file: the open never blocks (a FIFO would hang it) and the read
    stops one byte past ``max_bytes`` (``/dev/zero`` would never end).

    Examples
    --------
    >>> len(read_bounded("examples/seed_network.json", 10**6, error=OSError, limit_error=OSError)) > 0
    True
    """
    flags = _OPEN_FLAGS & ~getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"not a regular file (a folder, a pipe or a device); a {what} is read from a regular file")
        if info.st_size > max_bytes:
            raise limit_error(f"file is {info.st_size} bytes, over the limit max_file_bytes={max_bytes}")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            data = fh.read(min(info.st_size, max_bytes) + 1)
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise limit_error(f"file grew past the limit max_file_bytes={max_bytes} while being read")
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
            if names.count(member) > 1:
                raise fail(f"{shown} holds array {_show(key)} twice; which one is meant is ambiguous", ".key")
            info = archive.getinfo(member)
            if info.compress_type not in _ZIP_METHODS or info.flag_bits & 0x1:
                method = "is encrypted" if info.flag_bits & 0x1 else f"uses compression method {info.compress_type}"
                raise fail(
                    f"array {_show(key)} of {shown} {method}; only stored and deflated members are read "
                    "(the bzip2 and LZMA readers cannot bound what they unpack, and others are not needed)"
                )
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
