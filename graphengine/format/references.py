"""Which graph files could load a weight file: the proof a save needs before it deletes one.

A graph names its weight files by relative paths that go only down from its
own folder and never through a symlink, and a weight file with a second hard
link is refused (:func:`graphengine.format.weights.safe_data_path`). So the
only graph files that can load a ``.npz`` sit in its real folder or in one of
that folder's ancestors, up to the root. :func:`why_kept` lists each of those
folders and searches every regular file in it (any name, symlinks followed)
that could be a JSON object for a string whose last path component is the
``.npz``'s name. Anything it cannot search counts as a reference.

What a file could name is remembered per file identity (device, inode, size,
mtime and ctime, in nanoseconds), so a training loop that checkpoints every
epoch reads each unrelated file once. An entry is only trusted for a file
whose last change (ctime) was at least :data:`SETTLED_SECONDS` before it was
read: any later change sets a ctime past that read even on file systems
with 2-second timestamps, so a changed file is always read again.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

__all__ = ["why_kept", "SCAN_LIMIT", "SCAN_BUDGET", "SCAN_FILES"]

#: A file larger than this is not searched for a reference to a .npz: it may hold one, so the .npz is kept.
SCAN_LIMIT = 64 * 1024**2
#: At most this many bytes are read per .npz looking for graph files that name it; past that it is kept.
SCAN_BUDGET = 256 * 1024**2
#: At most this many files are opened per .npz looking for graph files that name it; past that it is kept.
SCAN_FILES = 10_000
#: How much of a file is read first to see whether it could be a graph document at all.
HEAD = 4096
#: A remembered answer holds only for a file unchanged this long before it was read (coarse timestamps).
SETTLED_SECONDS = 3.0
#: Files remembered at most; past this the memory starts afresh.
CACHE_SIZE = 65_536

#: The last component of every JSON string ending in ``.npz`` (written without escapes).
_NPZ_TAIL = re.compile(rb'([^"/]*\.npz)"')

_Key = tuple[int, int, int, int, int]
_cache: dict[_Key, frozenset[bytes] | None] = {}


def why_kept(npz: Path) -> str | None:
    """Why ``npz`` might still be used by some graph file, or None when provably no graph file can load it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "m.0123456789ab.npz").write_bytes(b"")
    0
    >>> why_kept(folder / "m.0123456789ab.npz") is None
    True
    >>> _ = (folder / "best.json").write_text('{"parameters": [{"name": "W", "file": "m.0123456789ab.npz"}]}')
    >>> why_kept(folder / "m.0123456789ab.npz").endswith("best.json' names it")
    True
    """
    name = npz.name.encode()
    try:
        place = npz.parent.resolve(strict=True)
        own = os.stat(npz)
    except OSError as exc:
        return f"cannot find its folder ({exc.strerror or exc})"
    budget = [SCAN_BUDGET, SCAN_FILES]
    while True:
        try:
            entries = [entry.path for entry in os.scandir(place)]
        except OSError as exc:
            return f"cannot list {str(place)!r} ({exc.strerror or exc}) to check that no graph file there names it"
        for path in entries:
            try:
                info = os.stat(path)  # follows a symlink: a linked graph file loads what it points at
            except OSError:
                continue  # a dangling symlink loads nothing
            if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) != (own.st_dev, own.st_ino):
                names = _npz_names_in(path, info, budget)
                if isinstance(names, str):
                    return names
                if names is not None and name in names:
                    return f"{path!r} names it"
        if place.parent == place:
            return None
        place = place.parent


def _npz_names_in(path: str, info: os.stat_result, budget: list[int]) -> frozenset[bytes] | str | None:
    """The .npz names a file could refer to (None: it is no JSON object), or why it cannot be searched."""
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if key in _cache:
        return _cache[key]
    if info.st_size == 0:
        return None  # an empty file is not a graph document
    if info.st_size > SCAN_LIMIT or info.st_size > budget[0]:
        return f"{path!r} is too large to search for its name"
    budget[1] -= 1
    if budget[1] < 0:
        return f"the folders above it hold more than {SCAN_FILES} files to search for its name"
    read_at = time.time()
    try:
        raw = _read(path, info.st_size)
    except OSError as exc:
        return f"cannot read {path!r} ({exc.strerror or exc}) to check that it does not name it"
    budget[0] -= len(raw or b"")
    names = None if raw is None else _tails(raw)
    if read_at - info.st_ctime_ns / 1e9 >= SETTLED_SECONDS:
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[key] = names
    return names


def _read(path: str, size: int) -> bytes | None:
    """The file's bytes, or None when its head shows it is not a JSON object (then the rest is not read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        head = os.read(fd, HEAD)
        start = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
        start = start.lstrip(b" \t\r\n")
        if start and not start.startswith(b"{"):
            return None
        chunks = [head]
        left = size - len(head) + 1  # one byte more: a file that grew is still read whole, within the limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _tails(raw: bytes) -> frozenset[bytes]:
    """The last path component of every string in ``raw`` that ends in ``.npz`` (escapes decoded when present)."""
    if b"\\" not in raw:
        return frozenset(_NPZ_TAIL.findall(raw))
    try:
        stack = [json.loads(raw)]
    except (ValueError, RecursionError):
        return frozenset()  # not JSON, so not a graph document
    found = set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.endswith(".npz"):
                found.add(item.rsplit("/", 1)[-1].encode("utf-8", "surrogatepass"))
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return frozenset(found)
