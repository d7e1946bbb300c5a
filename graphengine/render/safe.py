"""Strings from a graph file reach DOT, SVG and HTML as data, never as markup.

python-graphviz passes a string that starts with ``<`` and ends with ``>`` to
``dot`` unquoted, as an HTML label, and ``dot`` reads ``\\N``-style escapes in
quoted strings. A file's ids, labels, names and descriptions therefore go
through :func:`dot_text` (plain DOT strings) or :func:`html_text` (inside our
own HTML-like labels and web pages). Lone surrogates, which JSON allows
(``"\\ud800"``) but UTF-8 cannot encode, become U+FFFD so that rendering never
crashes on them.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: object) -> str:
    """``text`` as a str that UTF-8 can encode: lone surrogates and control characters become U+FFFD.

    Examples
    --------
    >>> clean("a\\ud800b")
    'a\\ufffdb'
    """
    return _CONTROL.sub("\ufffd", _SURROGATE.sub("\ufffd", str(text)))


def _entities(text: str) -> str:
    """``& < > " '`` as character references, which ``dot`` decodes in every string: no markup; and the ``=`` of
    anything that reads like a file-opening attribute (``image=``), so that not even its text is in the DOT source."""
    escaped = text.translate(_ENTITY_TABLE)
    return _FILE_ATTRIBUTE.sub(lambda m: m.group(1) + "&#61;", escaped)


_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
_ENTITY_TABLE = str.maketrans(_ENTITY)  # one pass in C: tooltips hold up to 10 000 numbers
_FILE_ATTRIBUTE = re.compile(r"(?i)(\b(?:image|shapefile|fontpath|imagepath|fontname)\s*)=")


def dot_text(text: object) -> str:
    """A plain (quoted) DOT string showing ``text`` literally: never an HTML label, no escapes, no markup.

    ``dot`` decodes character references in every string, so the text is shown
    as written while the DOT source holds no ``<``, ``>`` or ``"`` from it.

    Examples
    --------
    >>> from graphviz.quoting import quote
    >>> quote(dot_text('<<IMG SRC="/etc/passwd"/>>'))
    '"&lt;&lt;IMG SRC=&quot;/etc/passwd&quot;/&gt;&gt;"'
    >>> dot_text("a" + chr(92) + "N").count(chr(92))  # a backslash is doubled: dot shows it, not "\\N"
    2
    """
    from graphviz import nohtml

    return nohtml(_entities(clean(text).replace("\\", "\\\\")))


def html_text(text: object) -> str:
    """``text`` escaped for an HTML-like DOT label or an HTML page.

    Examples
    --------
    >>> html_text('<B x="1">&')
    '&lt;B x=&quot;1&quot;&gt;&amp;'
    """
    return _entities(clean(text))


def dot_id(name: object) -> str:
    """The DOT node id of a value: letters and digits kept, every other character spelt ``_<hex>_``.

    Names can hold ``:`` (which python-graphviz reads as a port, and writes a
    compass point unquoted), quotes or markup; these ids hold none of that, are
    distinct for distinct names, and are the ``id`` of the node in the SVG.

    Examples
    --------
    >>> dot_id("h[0]")
    'h_5b_0_5d_'
    >>> dot_id("W_h")
    'W_5f_h'
    """
    return "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):x}_" for c in clean(name))


def dot_multiline(text: object) -> str:
    """A tooltip: like :func:`dot_text`, with line breaks kept as DOT ``\\n``."""
    from graphviz import nohtml

    return nohtml(_entities(clean(text).replace("\\", "\\\\")).replace("\n", "\\n"))
