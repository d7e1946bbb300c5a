"""The op registry and plugin loading.

A plugin is a Python module (or any object reachable from an entry point) that
exports ``OPS``, an iterable of :class:`~graphengine.ops.OpDef`. Ops come from
three places, and only these: installed packages' entry points in the group
``graphengine.ops`` (the built-in library is one of them), a Python file path,
or an importable module name given explicitly by the user. A graph file can
never add a plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import DuplicateOpError, PluginImportError, close_matches
from .ops import OpDef

__all__ = ["Registry", "default_registry", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "graphengine.ops"


@dataclass
class Registry:
    """Ops by name, with where each came from.

    Examples
    --------
    >>> reg = default_registry()
    >>> reg["sigmoid"].name
    'sigmoid'
    >>> reg.suggest("sigmod")
    ['sigmoid']
    """

    ops: dict[str, OpDef] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    #: Entry-point plugins that failed to load: (source, reason). They do not
    #: stop the program unless one of their ops is needed.
    problems: list[tuple[str, str]] = field(default_factory=list)

    def __getitem__(self, name: str) -> OpDef:
        return self.ops[name]

    def __contains__(self, name: object) -> bool:
        return name in self.ops

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self.ops))

    def __len__(self) -> int:
        return len(self.ops)

    def copy(self) -> "Registry":
        return Registry(dict(self.ops), dict(self.sources), list(self.problems))

    def register(self, op: OpDef, source: str = "<python>") -> None:
        """Add ``op``.

        Raises
        ------
        DuplicateOpError
            When an op of the same name is registered already; names both sources.
        """
        if not isinstance(op, OpDef):
            raise PluginImportError(f"plugin {source}: OPS holds {type(op).__name__!s}, not an OpDef")
        if op.name in self.ops:
            raise DuplicateOpError(f"op {op.name!r} is defined twice: by {self.sources[op.name]} and by {source}")
        self.ops[op.name] = op
        self.sources[op.name] = source

    def register_all(self, ops: Iterable[OpDef], source: str) -> None:
        try:
            items = list(ops)
        except TypeError:
            raise PluginImportError(f"plugin {source}: OPS must be an iterable of OpDef") from None
        for op in items:
            self.register(op, source)

    def suggest(self, name: str) -> list[str]:
        """Registered names close to ``name``, for "did you mean"."""
        return close_matches(name, self.ops)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register the ops of every installed package's entry point in ``group``.

        A plugin that fails to import is recorded in :attr:`problems` and skipped.
        """
        for ep in importlib.metadata.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.name!r}" + (
                f" of {dist.name} {dist.version}" if dist is not None else f" ({ep.value})"
            )
            try:
                exported = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take us down
                self.problems.append((source, f"{type(exc).__name__}: {exc}"))
                continue
            self.register_all(_ops_of(exported, source), source)

    def load_plugin(self, spec: str) -> None:
        """Register the ops of a plugin named by a file path or a module name.

        Parameters
        ----------
        spec : str
            ``path/to/file.py`` or ``package.module``; the module must export ``OPS``.

        Raises
        ------
        PluginImportError
            When the plugin cannot be found or imported, or exports no ``OPS``.
        DuplicateOpError
            When it defines an op that is already registered.
        """
        module = _import_plugin(spec)
        self.register_all(_ops_of(module, f"plugin {spec!r}"), f"plugin {spec!r}")


def _ops_of(exported: Any, source: str) -> Iterable[OpDef]:
    if isinstance(exported, OpDef):
        return [exported]
    if hasattr(exported, "OPS"):
        return exported.OPS  # type: ignore[no-any-return]
    if hasattr(exported, "OPTIMIZERS"):
        return []  # an optimizer-only plugin (see graphengine.optimizers) brings no ops, and that is fine
    if hasattr(exported, "__iter__") and not isinstance(exported, (str, bytes)):
        return exported  # type: ignore[no-any-return]
    raise PluginImportError(f"{source} exports neither OPS (a list of graphengine.OpDef) nor OPTIMIZERS")


def _import_plugin(spec: str) -> Any:
    looks_like_path = spec.endswith(".py") or "/" in spec or "\\" in spec
    if looks_like_path:
        path = Path(spec)
        if not path.is_file():
            raise PluginImportError(f"plugin {spec!r}: no such file")
        name = "graphengine_plugin_" + "".join(c if c.isalnum() else "_" for c in path.stem)
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise PluginImportError(f"plugin {spec!r}: not a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise PluginImportError(f"plugin {spec!r} failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(spec)
    except Exception as exc:
        raise PluginImportError(f"plugin {spec!r} failed to import: {type(exc).__name__}: {exc}") from exc


@lru_cache(maxsize=1)
def _installed_registry() -> Registry:
    registry = Registry()
    registry.load_entry_points()
    return registry


def default_registry(plugins: Sequence[str] = ()) -> Registry:
    """A fresh registry: every installed entry-point plugin, plus ``plugins``.

    Entry points are read once per process; each call returns an independent copy.

    Raises
    ------
    PluginImportError, DuplicateOpError
        From any of ``plugins``.
    """
    registry = _installed_registry().copy()
    for spec in plugins:
        registry.load_plugin(spec)
    return registry
