"""Colours and sizes of a diagram: one meaning each, also explained in the legend."""

from __future__ import annotations

#: Tensors with at most this many elements are printed in full.
FULL_ELEMENTS = 6


#: Tooltips hold the full value up to this many elements.
TOOLTIP_ELEMENTS = 10_000


#: Output formats, by file suffix.
FORMATS = ("dot", "gv", "svg", "png", "pdf")


#: Unit (per-element) drawing is chosen automatically below these sizes.
UNIT_MAX_ELEMENTS = 8


UNIT_MAX_TOTAL = 48


#: Graphs with more boxes than this are laid out top to bottom.
TALL_AFTER = 40


#: Chains longer than this many ranks (boxes on the longest path) are laid out top to bottom, not as a strip.
LONG_AFTER = 6


#: A left-to-right diagram wider than this many times its height is redone top to bottom (it would be a strip).
#: The explorer uses 3 (its window is shared with a panel); the seed network per tensor is 3.5 and stays a row.
STRIP_ASPECT = 4.0


#: ``units=True`` falls back to one box per tensor (with a warning) above this many element boxes.
UNIT_LIMIT = 300


INSTALL_HINT = (
    "the Graphviz 'dot' program is needed for {fmt} output but was not found on PATH; install Graphviz "
    "(Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz; conda: conda install graphviz) "
    "or write DOT instead (-o diagram.dot)"
)


# Colours: one meaning each, also explained in the legend.
FORWARD = "#4b5563"


BACKWARD = "#c0392b"


DIM = "#d1d5db"


DIM_TEXT = "#9ca3af"


WARN = "#f59e0b"


KIND_FILL = {"input": "#dbeafe", "parameter": "#fde68a", "constant": "#e5e7eb", "op": "#dcfce7", "layer": "#e2e8f0"}


KIND_BORDER = {"input": "#1d4ed8", "parameter": "#b45309", "constant": "#6b7280", "op": "#15803d", "layer": "#475569"}
LOSS_FILL, LOSS_BORDER = "#fecaca", "#b91c1c"
SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
