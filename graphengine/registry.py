"""Plugin registries: one generic :class:`PluginRegistry`, for ops and for optimizers.

A plugin is a Python module (or any object reachable from an entry point) that
exports ``OPS``, an iterable of :class:`~graphengine.ops.OpDef`, or
``OPTIMIZERS``, an iterable of optimizer classes
(:class:`graphengine.training.optimizers.Optimizer`), or both. Plugins come
from three places, and only these: installed packages' entry points (group
``graphengine.ops`` or ``graphengine.optimizers``; the built-in op library is
one of them), a Python file path, or an importable module name given
explicitly by the user. A graph file can never add a plugin.

Every kind of plugin item goes through the same code: one entry-point loader
(:meth:`PluginRegistry.load_entry_points`), one plugin importer
(:meth:`PluginRegistry.load_plugin`), one duplicate check naming both sources,
one "did you mean". A registry is told what it holds (kind name, entry-point
group, exported attribute, an item check), so this module knows no layer above
:mod:`graphengine.ops`: the optimizer registry lives in the training layer.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

from .errors import DuplicateOpError, PluginImportError, clip, close_matches, did_you_mean
from .ops import OpDef

__all__ = ["PluginRegistry", "Registry", "default_registry", "import_plugin", "ENTRY_POINT_GROUP", "PLUGIN_EXPORTS"]

ENTRY_POINT_GROUP = "graphengine.ops"

#: What a plugin module may export, and what each holds (for messages).
PLUGIN_EXPORTS: dict[str, str] = {
    "OPS": "a list of graphengine.OpDef",
    "OPTIMIZERS": "a list of graphengine.training.Optimizer subclasses",
}

T = TypeVar("T")
R = TypeVar("R", bound="PluginRegistry[Any]")


class PluginRegistry(Generic[T]):
    """Named plugin items of one kind, with where each came from.

    Parameters
    ----------
    kind : str
        What the items are called in messages: ``"op"``, ``"optimizer"``.
    group : str
        The entry-point group installed packages register them in.
    attribute : str
        The name a plugin module exports them under: ``"OPS"``, ``"OPTIMIZERS"``.
    accepts : callable
        ``accepts(obj) -> bool``: whether ``obj`` is one item of this kind.
    name_of : callable
        ``name_of(item) -> str``: the name it is registered under.
    described : str
        What an item is, for messages (``"an OpDef"``).

    Attributes
    ----------
    entries : dict of str to item
    sources : dict of str to str
        Where each name came from (``entry point 'std' of graphengine 0.1.0``).
    problems : list of (str, str)
        Entry-point plugins that failed to load: (source, reason). They do not
        stop the program unless one of their items is needed.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        attribute: str,
        accepts: Callable[[Any], bool],
        name_of: Callable[[T], str],
        described: str,
    ) -> None:
        self.kind, self.group, self.attribute = kind, group, attribute
        self.accepts, self.name_of, self.described = accepts, name_of, described
        self.entries: dict[str, T] = {}
        self.sources: dict[str, str] = {}
        self.problems: list[tuple[str, str]] = []

    # --- a read-only mapping of names ---------------------------------------------------------

    def __getitem__(self, name: str) -> T:
        return self.entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def copy(self: R) -> R:
        """An independent registry with the same entries, sources and problems."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.entries, other.sources, other.problems = dict(self.entries), dict(self.sources), list(self.problems)
        return other

    def suggest(self, name: str) -> list[str]:
        """Registered names close to ``name``, for "did you mean"."""
        return close_matches(name, self.entries)

    def unknown(self, name: str) -> str:
        """The message for an unknown name: the known ones, and "did you mean"."""
        return f"unknown {self.kind} {name!r} (known: {', '.join(self)}){did_you_mean(name, self.entries)}"

    # --- adding items -------------------------------------------------------------------------

    def register(self, item: Any, source: str = "<python>") -> None:
        """Add one item.

        Raises
        ------
        PluginImportError
            When ``item`` is not of this registry's kind.
        DuplicateOpError
            When another item of the same name is registered already; names both sources.
        """
        self.register_all([item], source)

    def register_all(self, items: Iterable[Any], source: str) -> None:
        """Add every item of ``items``, or none of them (all are checked first)."""
        try:
            listed = list(items)
        except TypeError:
            raise PluginImportError(f"{source}: {self.attribute} must be an iterable of {self.kind}s") from None
        named: dict[str, T] = {}
        for item in listed:
            if not self.accepts(item):
                shown = item.__name__ if isinstance(item, type) else f"{type(item).__name__} {clip(repr(item), 40)}"
                raise PluginImportError(f"{source}: {self.attribute} holds {shown}, not {self.described}")
            name = self.name_of(item)
            if name in named or (name in self.entries and self.entries[name] is not item):
                first = source if name in named else self.sources[name]
                raise DuplicateOpError(f"{self.kind} {name!r} is defined twice: by {first} and by {source}")
            named[name] = item
        for name, item in named.items():
            if name not in self.entries:
                self.entries[name], self.sources[name] = item, source

    def items_of(self, exported: Any, source: str) -> list[Any]:
        """The items a plugin exports: one item, a module's attribute, or an iterable.

        A module that exports only another kind's attribute (``OPTIMIZERS`` for
        the op registry) brings no items here, and that is fine.
        """
        if self.accepts(exported):
            return [exported]
        if hasattr(exported, self.attribute):
            found = getattr(exported, self.attribute)
            try:
                return list(found)
            except TypeError:
                raise PluginImportError(f"{source}: {self.attribute} must be an iterable of {self.kind}s") from None
        if any(hasattr(exported, attribute) for attribute in PLUGIN_EXPORTS):
            return []
        if isinstance(exported, types.ModuleType) or isinstance(exported, (str, bytes)):
            exports = " nor ".join(f"{a} ({what})" for a, what in PLUGIN_EXPORTS.items())
            raise PluginImportError(f"{source} exports neither {exports}")
        try:
            return list(exported)
        except TypeError:
            raise PluginImportError(f"{source}: exports {type(exported).__name__}, not {self.attribute}") from None

    def load_entry_points(self, group: str | None = None) -> None:
        """Register the items of every installed package's entry point in ``group`` (default: the registry's).

        An entry point that fails to import, or exports something that is not
        of this kind, is recorded in :attr:`problems` and skipped. Two
        definitions of one name are an error (:class:`DuplicateOpError`).
        """
        for ep in importlib.metadata.entry_points(group=group or self.group):
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.name!r}" + (
                f" of {dist.name} {dist.version}" if dist is not None else f" ({ep.value})"
            )
            try:
                items = self.items_of(ep.load(), source)
            except Exception as exc:  # a broken third-party plugin must not take us down
                self.problems.append((source, f"{type(exc).__name__}: {exc}"))
                continue
            self.register_all(items, source)

    def load_plugin(self, spec: str) -> None:
        """Register the items of a plugin named by a file path or a module name.

        Parameters
        ----------
        spec : str
            ``path/to/file.py`` or ``package.module``; the module must export
            this registry's attribute, or another kind's (then it adds nothing).

        Raises
        ------
        PluginImportError
            When the plugin cannot be found or imported, or exports nothing usable.
        DuplicateOpError
            When it defines a name that is already registered.
        """
        source = f"plugin {spec!r}"
        self.register_all(self.items_of(import_plugin(spec), source), source)


def import_plugin(spec: str) -> Any:
    """Import the plugin module named by a file path or a module name.

    Raises
    ------
    PluginImportError
        Naming the plugin and the reason.
    """
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


_import_plugin = import_plugin  # the old private name


def _op_name(op: OpDef) -> str:
    return op.name


class Registry(PluginRegistry[OpDef]):
    """Ops by name, with where each came from.

    Examples
    --------
    >>> reg = default_registry()
    >>> reg["sigmoid"].name
    'sigmoid'
    >>> reg.suggest("sigmod")
    ['sigmoid']
    """

    def __init__(self) -> None:
        super().__init__("op", ENTRY_POINT_GROUP, "OPS", _is_op, _op_name, "an OpDef")

    @property
    def ops(self) -> dict[str, OpDef]:
        """Ops by name (the registry's entries)."""
        return self.entries


def _is_op(obj: Any) -> bool:
    return isinstance(obj, OpDef)


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
