"""Late-bound services: a lower layer calls them, a higher layer provides them.

A :class:`~graphengine.graph.Graph` can ``compile()`` itself and a graph or a
result can draw itself in Jupyter, yet the graph layer must not import the
engine, nor the engine the renderer. So the engine and the renderer register
their entry points here when they are imported (``import graphengine`` imports
both), and the lower layers look them up at call time.

Layer: the bottom, beside :mod:`graphengine.errors`.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["set_compiler", "compiler", "set_display", "display"]

_compiler: Callable[[Any], Any] | None = None
_display: Callable[[Any], dict[str, str]] | None = None


def set_compiler(make_plan: Callable[[Any], Any]) -> None:
    """Register the function that compiles a Graph into a Plan (the engine does)."""
    global _compiler
    _compiler = make_plan


def compiler() -> Callable[[Any], Any]:
    """The registered compiler; importing :mod:`graphengine.engine` registers it."""
    if _compiler is None:  # `import graphengine` imports the engine, so only a broken install gets here
        raise RuntimeError("graphengine.engine is not imported: no compiler is registered")
    return _compiler


def set_display(mimebundle: Callable[[Any], dict[str, str]]) -> None:
    """Register the Jupyter display of graphs and results (the renderer does)."""
    global _display
    _display = mimebundle


def display(obj: Any) -> dict[str, str]:
    """A Jupyter mime bundle for ``obj``: the registered renderer's, or plain text without one."""
    if _display is None:
        return {"text/plain": repr(obj)}
    return _display(obj)
