"""The wiring of a graph over integer ids: topological order without networkx, and the networkx view on demand.

Loading a large graph spent most of its time building a networkx DiGraph that the
run path never reads. Here every name gets an integer id (declared values first,
then nodes, in file order); wires are lists of ints, and the order is computed by
the same generation-by-generation Kahn loop as ``networkx.topological_sort``, so
the order (and everything scheduled from it) is exactly what it was.
"""

from __future__ import annotations

from operator import le, lt, sub
from typing import Any, Iterable, Sequence

import networkx as nx


def distinct_sources(sources: Sequence[int]) -> list[int]:
    """``sources`` without repeats, in first-use order (one edge per source, as in a DiGraph)."""
    if len(sources) < 2:
        return list(sources)
    return list(dict.fromkeys(sources))


def topological_order(first_node: int, sources: list[int], starts: list[int]) -> Sequence[int] | None:
    """Ids in the order ``networkx.topological_sort`` gives for the same insertion order; None on a cycle.

    Node ``k`` (id ``first_node + k``) reads the ids ``sources[starts[k]:starts[k + 1]]``,
    in input order (a repeat is one edge, as in a DiGraph); ids below
    ``first_node`` are declared values, which read nothing. When that order is
    id order (a chain, and most files written in order), the answer is a
    ``range``, found by one pass with no successor lists.
    """
    count = first_node + len(starts) - 1
    if _id_order_is_kahn_order(first_node, sources, starts):
        return range(count)
    successors: list[list[int]] = [[] for _ in range(count)]
    indegree = [0] * count
    node = first_node
    for start, stop in zip(starts, starts[1:]):  # pairs, not two index lookups per node
        if stop - start == 1:  # most nodes read one or two ids: no slice, no de-duplication call
            successors[sources[start]].append(node)
            indegree[node] = 1
        elif stop - start == 2 and sources[start] != sources[start + 1]:
            successors[sources[start]].append(node)
            successors[sources[start + 1]].append(node)
            indegree[node] = 2
        else:
            read = distinct_sources(sources[start:stop])
            indegree[node] = len(read)
            for src in read:
                successors[src].append(node)
        node += 1
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


def _id_order_is_kahn_order(first_node: int, sources: list[int], starts: list[int]) -> bool:
    """Whether the generation-by-generation Kahn loop would list every id in id order.

    It does exactly when every node reads only earlier ids, and (level, latest
    source) never decreases from one node to the next, where a node's level is
    one more than its sources' highest (0 for declared values): Kahn's generation
    g is the level-g ids, and a node joins its generation when its latest source
    (the highest id, processed last) is processed, after the earlier children of
    that source. One pass, no successor lists.
    """
    if set(map(sub, starts[1:], starts)) == {1}:  # one input each: the test runs at C speed
        # Levels then never decrease along id order where the sources do not (by induction), so the
        # condition is: sources in non-decreasing order, each read before the node that reads it.
        ids = range(first_node, first_node + len(sources))
        return all(map(le, sources, sources[1:])) and all(map(lt, sources, ids))
    level = [0] * first_node
    last_level, last_source = 0, -1
    try:
        for k in range(len(starts) - 1):
            start, stop = starts[k], starts[k + 1]
            if stop - start == 1:
                latest = sources[start]
                this_level = level[latest] + 1  # IndexError when it reads itself or a later id
            elif stop == start:
                latest, this_level = -1, 0
            else:
                read = sources[start:stop]
                latest = max(read)
                if latest >= len(level):
                    return False
                this_level = max([level[i] for i in read]) + 1
            if this_level < last_level or (this_level == last_level and latest < last_source):
                return False
            last_level, last_source = this_level, latest
            level.append(this_level)
    except IndexError:
        return False
    return True


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
