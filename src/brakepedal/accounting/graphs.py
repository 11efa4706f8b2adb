"""Graph helpers shared by the ownership and lineage graphs."""

from __future__ import annotations

import networkx as nx

__all__ = ["component_roots", "describe_cycle"]


def describe_cycle(graph: nx.DiGraph[str]) -> str | None:
    """``"a -> b -> a"`` for some cycle of ``graph``, or None if it has none."""
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return None
    return " -> ".join([str(edge[0]) for edge in cycle] + [str(cycle[0][0])])


def component_roots(graph: nx.DiGraph[str]) -> dict[str, str]:
    """Each node of an acyclic ``graph`` mapped to the name of its weakly connected component:
    the first, in sorted order, of the component's nodes that have no predecessor."""
    names: dict[str, str] = {}
    for component in nx.weakly_connected_components(graph):
        root = min(node for node in component if graph.in_degree(node) == 0)
        for node in component:
            names[node] = root
    return names
