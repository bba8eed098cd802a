"""Phase 1: raw nodes and edges -> a flat, validated graph (nested NIRGraphs dissolved)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import GraphError, UnsupportedNodeError
from ..ir import NEURON_KINDS
from .reader import KNOWN_TYPES, RawGraph, RawNode


@dataclass(frozen=True)
class Graph:
    """Flat nodes (no NIRGraph; nested Input/Output became Identity) and their edges.

    `preds` and `succs` hold every node, in edge order; `succs` lists edge sources first, in
    the order the edges name them (the cycle check walks the edges in that order).
    """

    nodes: Mapping[str, RawNode]
    preds: Mapping[str, tuple[str, ...]]
    succs: Mapping[str, tuple[str, ...]]


def flatten_structure(raw: RawGraph) -> Graph:
    """Check node types and edges, dissolve subgraphs; every cycle must pass through a neuron."""
    subgraphs = {n for n, node in raw.nodes.items() if node.type == "NIRGraph"}
    nodes: dict[str, RawNode] = {}
    for name, node in raw.nodes.items():
        if node.type not in KNOWN_TYPES:
            raise UnsupportedNodeError(
                f"node {name!r} has type {node.type!r}, which NIR 1.0 does not define. Supported: "
                f"{', '.join(sorted(KNOWN_TYPES))}. Fix: export it as one of these"
            )
        if node.type == "NIRGraph":
            continue
        nested = any(name.startswith(g + ".") for g in subgraphs)
        if nested and node.type in ("Input", "Output"):
            node = RawNode(name, "Identity", {"_was": node.type})
        nodes[name] = node

    def ends(g: str, kind: str) -> list[str]:
        return [n for n, nd in raw.nodes.items()
                if n.startswith(g + ".") and nd.type == kind and n.count(".") == g.count(".") + 1]

    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for src, dst in raw.edges:
        srcs = ends(src, "Output") if src in subgraphs else [src]
        dsts = ends(dst, "Input") if dst in subgraphs else [dst]
        for s in srcs:
            for d in dsts:
                for end in (s, d):
                    if end not in nodes:
                        raise GraphError(
                            f"edge {src!r} -> {dst!r} refers to node {end!r}, which does not exist. "
                            f"Nodes are: {', '.join(sorted(nodes))}. Fix: correct the edge list"
                        )
                out = succs.setdefault(s, [])
                if d not in out:
                    out.append(d)
                    preds.setdefault(d, []).append(s)
    for name, node in nodes.items():
        node_preds, node_succs = preds.get(name, []), succs.get(name, [])
        if node.type == "Input" and node_preds:
            raise GraphError(f"Input node {name!r} has incoming edges from {node_preds}. "
                             "Fix: an Input only feeds the graph; remove those edges")
        if node.type == "Output" and node_succs:
            raise GraphError(f"Output node {name!r} has outgoing edges to {node_succs}. "
                             "Fix: an Output ends the graph; remove those edges")
        if node.type not in ("Input",) and not node_preds:
            raise GraphError(
                f"node {name!r} ({node.type}) has no incoming edge, so nothing drives it. "
                "Fix: connect it or remove it"
            )
    if not any(n.type == "Input" for n in nodes.values()):
        raise GraphError("the graph has no Input node. Fix: add a nir.Input feeding the first layer")
    graph = Graph(
        nodes,
        {n: tuple(preds.get(n, ())) for n in [*preds, *nodes] if n in nodes},
        {n: tuple(succs.get(n, ())) for n in [*succs, *nodes] if n in nodes},
    )
    _check_neuron_free_cycles(graph)
    return graph


def _check_neuron_free_cycles(graph: Graph) -> None:
    """Every cycle must pass through a neuron; one that does not has no value at any step."""
    import networkx as nx

    kinds = graph.nodes
    g = nx.DiGraph()
    g.add_edges_from((s, d) for s, succ in graph.succs.items() for d in succ
                     if kinds[s].type not in NEURON_KINDS and kinds[d].type not in NEURON_KINDS)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
    path = " -> ".join(repr(s) for s, _ in cycle) + f" -> {cycle[0][0]!r}"
    raise GraphError(
        f"cycle through {cycle[0][0]!r} has no neuron in it ({path}), so its value is undefined at every "
        "step. Fix: put a neuron (e.g. LIF) in the loop"
    )
