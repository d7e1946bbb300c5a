"""The graph: a validated document built into a networkx DAG, with names resolved and shapes inferred.

:func:`load` turns a graph file into a :class:`Graph`. Everything that can be
checked without data is checked here, before any value is fed: schema,
duplicate names, unknown ops, arity, attributes, dangling references, cycles,
file paths, and every op's shape/dtype rule.

Layer: above :mod:`graphengine.format`; imports it and the layers below.
"""

from ..format import InputInfo, Limits, parse_json
from .graph import Graph, NodeInfo
from .load import load, load_dict
from .save import save

__all__ = ["Graph", "NodeInfo", "InputInfo", "Limits", "load", "load_dict", "parse_json", "save"]
