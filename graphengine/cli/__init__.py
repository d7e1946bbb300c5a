"""The ``graphengine`` command line.

Every command takes ``--plugin`` (repeatable). Errors print one line,
``graphengine: error: ...``, and exit with status 1 (2 for usage errors);
``--debug`` shows the traceback instead.

Layer: the top. It is the only place that parses argv or prints, and nothing
imports it. One module per command group.
"""

from .common import parse_feeds
from .main import build_parser, main

__all__ = ["main", "build_parser", "parse_feeds"]
