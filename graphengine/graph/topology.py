"""The wiring of a graph over integer ids: topological order without networkx, and the networkx view on demand.

Loading a large graph spent most of its time building a networkx DiGraph that the
run path never reads. Here every name gets an integer id (declared values first,
then nodes, in file order); wires are lists of ints, and the order is computed by
the same generation-by-generation Kahn loop as ``networkx.topological_sort``, so
the order (and everything scheduled from it) is exactly what it was.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import networkx as nx


def distinct_sources(sources: Sequence[int]) -> list[int]:
    """``sources`` without repeats, in first-use order (one edge per source, as in a DiGraph)."""
    if len(sources) < 2:
        return list(sources)
    return list(dict.fromkeys(sources))


def topological_order(first_node: int, count: int, wires: list[list[int]]) -> list[int] | None:
    """Ids in the order ``networkx.topological_sort`` gives for the same insertion order; None on a cycle.

    ``wires[k]`` are the ids node ``first_node + k`` reads, in input order (a
    repeat is one edge, as in a DiGraph); ids below ``first_node`` are declared
    values, which read nothing.
    """
    successors: list[list[int]] = [[] for _ in range(count)]
    indegree = [0] * count
    for k, sources in enumerate(wires):
        node = first_node + k
        if len(sources) > 1:
            sources = distinct_sources(sources)
        indegree[node] = len(sources)
        for src in sources:
            successors[src].append(node)
    generation = [v for v in range(count) if not indegree[v]]
    order: list[int] = []
    while generation:
        order.extend(generation)
        following: list[int] = []
        for v in generation:
            for child in successors[v]:
                indegree[child] -= 1
                if not indegree[child]:
                    following.append(child)
        generation = following
    return order if len(order) == count else None


def build_digraph(
    declared: Iterable[tuple[str, str, Any]],
    nodes: Iterable[tuple[str, str, Any, Sequence[str]]],
) -> nx.DiGraph:
    """The public networkx view: ``declared`` are ``(name, kind, spec)``; ``nodes`` are ``(id, op name, spec, inputs)``.

    ``spec`` may be None (a graph being checked for a cycle has no specs yet);
    the attribute is then left out.
    """
    digraph = nx.DiGraph()
    digraph.add_nodes_from((name, {"kind": kind, "spec": spec}) for name, kind, spec in declared)
    wires: dict[tuple[str, str], list[int]] = {}
    op_nodes = []
    for node_id, op_name, spec, inputs in nodes:
        op_nodes.append((node_id, {"kind": "op", "op": op_name} | ({"spec": spec} if spec is not None else {})))
        for position, src in enumerate(inputs):
            wires.setdefault((src, node_id), []).append(position)
    digraph.add_nodes_from(op_nodes)
    digraph.add_edges_from((src, dst, {"positions": positions}) for (src, dst), positions in wires.items())
    return digraph
