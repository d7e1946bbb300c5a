"""Tensors declared in a graph file (inputs, parameters, constants) read into arrays, within the limits."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import (
    GraphFileError,
    LimitError,
    SchemaError,
    ShapeError,
    UnsafePathError,
)
from ..errors import clip as _clip
from ..errors import show as _show
from ..ops import TensorSpec, format_shape
from .limits import Limits
from .literals import check_numbers, index_path
from .schema import GraphV1, TensorDecl
from .weights import NPY_HEADER_ROOM, npy_header, npz_member, read_data_file

_DTYPES = {name: np.dtype(name) for name in ("float32", "float64", "int32", "int64")}


@dataclass(frozen=True)
class InputInfo:
    """A run-time input: its spec, optional default value, and declared dimensions.

    ``spec.shape`` holds ``None`` for every free dimension, named or not: shape
    rules see a named dimension as free. ``dims`` keeps the names (a size, a
    name, or None per axis); the plan binds each name to one size per call.
    """

    spec: TensorSpec
    default: np.ndarray | None
    json_path: str
    dims: tuple[int | str | None, ...] = ()


def _digits(size: int) -> str:
    """A size for a message: the number itself, or how many digits it has when that is unreadable."""
    return str(size) if size < 10**30 else f"a {len(str(size)) if size < 10**4000 else 'many'}-digit number"


def _header_shape(shape: Any) -> str | None:
    """What is wrong with a .npy header's shape (numpy's parser lets booleans and negative sizes through)."""
    if not isinstance(shape, tuple):
        return f"a shape that is not a tuple ({type(shape).__name__})"
    for d in shape:
        if type(d) is not int:
            return f"a shape with a {type(d).__name__} size ({_clip(repr(d), 20)}); sizes are integers"
        if d < 0:
            return "a shape with a negative size"
    return None


def _fits(shape: Sequence[int], declared: Sequence[int | None]) -> bool:
    return len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared))


class TensorReader:
    """Reads one document's tensors; counts their bytes against ``max_total_bytes``."""

    def __init__(
        self, doc: GraphV1, file: str | None, base_dir: Path | None, limits: Limits, allow_nonfinite: bool
    ) -> None:
        self.doc, self.file, self.base_dir = doc, file, base_dir
        self.limits, self.allow_nonfinite = limits, allow_nonfinite
        self.total_bytes = 0

    def error(self, cls: type[GraphFileError], detail: str, path: str, node_id: str | None = None) -> GraphFileError:
        return cls(detail, file=self.file, json_path=path, node_id=node_id)

    def _dtype(self, name: str | None) -> np.dtype:
        return _DTYPES[name or self.doc.dtype]

    def check_shape(self, shape: Sequence[int | None], path: str, name: str) -> int:
        """Check ndim and element count (free dimensions count as 1); return the element count."""
        if len(shape) > self.limits.max_ndim:
            raise self.error(
                LimitError, f"{len(shape)} dimensions, over the limit max_ndim={self.limits.max_ndim}", path, name
            )
        for d in shape:  # each size alone first: a size of thousands of digits is never multiplied or printed
            if d is not None and d > self.limits.max_elements:
                raise self.error(
                    LimitError,
                    f"a dimension of {_digits(d)} is over the limit max_elements={self.limits.max_elements}",
                    path,
                    name,
                )
        elements = math.prod(1 if d is None else d for d in shape)  # Python ints: a product past int64 is caught
        if elements > self.limits.max_elements:
            raise self.error(
                LimitError,
                f"shape {format_shape(shape)} has {elements} elements, over the limit max_elements={self.limits.max_elements}",
                path,
                name,
            )
        return elements

    def _reserve(self, nbytes: int, path: str, name: str) -> None:
        """Count ``nbytes`` against max_total_bytes, before they are allocated."""
        self.total_bytes += nbytes
        if self.total_bytes > self.limits.max_total_bytes:
            raise self.error(
                LimitError,
                f"{name!r} needs {nbytes} bytes, which takes parameters, constants and defaults to {self.total_bytes} bytes, "
                f"over the limit max_total_bytes={self.limits.max_total_bytes}",
                path,
                name,
            )

    def _literal(self, value: Any, dtype: np.dtype, path: str, name: str) -> np.ndarray:
        """An inline value as an array; every element is checked before numpy sees it."""
        problem = check_numbers(value, dtype, self.limits)
        if problem is not None:
            where, detail = problem
            deep = "nested deeper" in detail  # the index path would be as long as the nesting
            cls = LimitError if "limit" in detail else SchemaError
            raise self.error(cls, detail, path if deep else path + index_path(where[1:]), name)
        try:
            with np.errstate(over="ignore"):  # a value too big for float32 becomes inf: reported below, by index
                array = np.array(value, dtype=dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise self.error(
                SchemaError, f"not a rectangular array of numbers ({exc})".replace("\n", " "), path, name
            ) from None
        self.check_shape(array.shape, path, name)
        self._reserve(array.nbytes, path, name)
        if array.dtype.kind == "f":
            bad = np.argwhere(~np.isfinite(array))
            if len(bad):
                where = tuple(int(i) for i in bad[0])
                source = value
                for i in where:
                    source = source[i]
                if math.isfinite(source):  # finite in the file, infinite after conversion
                    raise self.error(
                        SchemaError,
                        f"element {_clip(str(source), 40)} does not fit {dtype.name}",
                        path + index_path(where),
                        name,
                    )
                if not self.allow_nonfinite:
                    raise self.error(
                        SchemaError,
                        f"element is {source!r}; NaN and Infinity are not allowed (load with allow_nonfinite=True / --allow-nonfinite to accept them)",
                        path + index_path(where),
                        name,
                    )
        return array

    def read_input(self, index: int, decl: Any) -> InputInfo:
        path = f"$.inputs[{index}]"
        dims = tuple(decl.shape)
        free = tuple(d if isinstance(d, int) else None for d in dims)  # a named dimension is free to shape rules
        self.check_shape(free, f"{path}.shape", decl.name)
        spec = TensorSpec(free, self._dtype(decl.dtype))
        default = None
        if decl.default is not None:
            default = self._literal(decl.default, spec.dtype, f"{path}.default", decl.name)
            if not _fits(default.shape, spec.shape):
                raise self.error(
                    ShapeError,
                    f"default has shape {format_shape(default.shape)} but the input is declared {format_shape(dims)}",
                    f"{path}.default",
                    decl.name,
                )
        return InputInfo(spec, default, path, dims)

    def read_tensor(self, section: str, index: int, decl: TensorDecl) -> np.ndarray:
        path = f"$.{section}[{index}]"
        dtype = self._dtype(decl.dtype)
        if decl.shape is not None:
            self.check_shape(decl.shape, f"{path}.shape", decl.name)
        if decl.file is not None:
            array = self._read_array_file(decl, dtype, path)
        else:
            array = self._literal(decl.value, dtype, f"{path}.value", decl.name)
        if decl.shape is not None and tuple(decl.shape) != array.shape:
            raise self.error(
                ShapeError,
                f"value has shape {format_shape(array.shape)} but shape {format_shape(decl.shape)} is declared",
                path,
                decl.name,
            )
        return array

    def _read_array_file(self, decl: TensorDecl, dtype: np.dtype, path: str) -> np.ndarray:
        """Read a .npy/.npz weight file without numpy's loader: header first, limits, then data.

        Never unpickles (object arrays are refused), never trusts a header's
        shape or a zip member's size before checking them against the limits.
        """
        assert decl.file is not None
        shown = _show(decl.file)

        def fail(detail: str, suffix: str = ".file", cls: type[GraphFileError] = SchemaError) -> GraphFileError:
            return self.error(cls, detail, f"{path}{suffix}", decl.name)

        budget = self.limits.max_total_bytes - self.total_bytes
        data = read_data_file(
            self.base_dir,
            decl.file,
            max_bytes=budget + NPY_HEADER_ROOM,
            error=lambda d: fail(d, cls=UnsafePathError),
            limit_error=lambda d: fail(f"{d} (max_total_bytes={self.limits.max_total_bytes})", cls=LimitError),
            read_error=fail,
        )
        if decl.sha256 is not None:
            digest = hashlib.sha256(data).hexdigest()
            if digest != decl.sha256.lower():
                raise fail(f"{shown} has sha256 {digest}, but {decl.sha256.lower()} is declared", ".sha256")
        if data[:4] == b"PK\x03\x04":
            data = npz_member(data, decl, budget, self.limits.max_total_bytes, fail)
        elif decl.key is not None:
            raise fail("'key' only applies to .npz files", ".key")
        if data[:6] != b"\x93NUMPY":
            raise fail(f"{shown} is not a .npy or .npz file")
        try:
            shape, fortran, stored, offset = npy_header(data)
        except Exception as exc:  # numpy raises several types for corrupt headers
            raise fail(f"{shown} has a corrupt .npy header: {_clip(str(exc), 160)}") from None
        if stored.hasobject or stored.kind not in "fiu":
            raise fail(f"{shown} holds {stored} values, not numbers (object arrays are never unpickled)")
        if dtype.kind in "iu" and stored.kind == "f":
            raise fail(f"{shown} holds {stored} values for a {dtype.name} tensor")
        if len(shape) > self.limits.max_ndim:  # before the sizes are looked at: a 10,000-entry shape is refused whole
            raise fail(
                f"{shown} has {len(shape)} dimensions, over the limit max_ndim={self.limits.max_ndim}", cls=LimitError
            )
        bad_shape = _header_shape(shape)
        if bad_shape is not None:
            raise fail(f"{shown} has a corrupt .npy header: {bad_shape}")
        elements = self.check_shape(shape, f"{path}.file", decl.name)
        if len(data) != offset + elements * stored.itemsize:
            raise fail(
                f"{shown} is {len(data)} bytes, which does not fit its header's shape {format_shape(shape)} of {stored}"
            )
        self._reserve(elements * dtype.itemsize, path, decl.name)
        flat = np.frombuffer(data, dtype=stored, count=elements, offset=offset)
        with np.errstate(over="ignore", invalid="ignore"):  # float64 too big for float32 becomes inf: reported below
            array = np.array(flat.reshape(shape, order="F" if fortran else "C"), dtype=dtype, order="C")
        if dtype.kind == "f" and stored.kind == "f" and stored.itemsize > dtype.itemsize:
            overflow = np.isfinite(flat) & ~np.isfinite(array.reshape(-1, order="F" if fortran else "C"))
            if overflow.any():
                raise fail(f"{shown} holds {stored} values too large for {dtype.name} (e.g. {flat[overflow][0]:.6g})")
        if not self.allow_nonfinite and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise fail(
                f"{shown} holds NaN or Infinity (load with allow_nonfinite=True / --allow-nonfinite to accept it)"
            )
        if (
            dtype.kind in "iu"
            and stored != dtype
            and not np.array_equal(flat, array.reshape(-1, order="F" if fortran else "C"))
        ):
            raise fail(f"{shown} holds {stored} values that do not fit {dtype.name}")
        return array
