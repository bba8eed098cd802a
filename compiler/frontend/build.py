"""Raw NIR nodes -> float Network: validate, infer shapes, compose linear chains into projections.

Each phase is a function from the values before it to a new one; none changes what it is given:

    resolve_timing      RawGraph, dt, convention, discretization -> Timing: given,
                        recorded, inferred from a signature, or assumed with one warning (timing.py)
    flatten_structure   RawGraph -> Graph: flat nodes, preds, succs; checked   (graph.py)
    read_params         Graph, Timing -> Params: checked parameter arrays      (params.py)
    infer_shapes        Graph, Params, Timing -> Shapes: shapes, Conv layouts  (shapes.py)
    check_edges         Graph, Params, Shapes -> None: sizes agree, or raise   (shapes.py)
    broadcast_neuron_params  -> Params: one value per neuron                   (shapes.py)
    make_populations    Graph, Params, Shapes -> {name: Population}            (network.py)
    compose_chains      ... -> {population: Drive}: terms per (source, delay)  (compose.py)
    merge_delays        drives, populations -> [Projection]                    (network.py)
    find_outputs        Graph, populations -> {Output: population}             (network.py)
    assemble            ... -> Network, biases set; then every population's
                        coefficients are checked at dt

Fix-up warnings go to one `Warner` per load, passed to the phases that may warn.
"""

from __future__ import annotations

from ..ir import INPUT, Network
from ..neuron import coefficients
from .compose import compose_chains
from .diagnostics import NeuroccWarning, Warner
from .graph import flatten_structure
from .network import assemble, find_outputs, make_populations, merge_delays
from .params import read_params
from .reader import RawGraph
from .shapes import broadcast_neuron_params, check_edges, infer_shapes
from .timing import CONVENTIONS, resolve_timing

__all__ = ["CONVENTIONS", "LINEAR_TYPES", "NeuroccWarning", "build_network"]

LINEAR_TYPES = frozenset({
    "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Delay", "Identity",
})


def build_network(raw: RawGraph, dt: float | None = None, convention: str | None = None,
                  discretization: str | None = None) -> Network:
    warn = Warner(raw.source, anchor=__name__)  # fix-up warnings point at this function
    timing = resolve_timing(raw, dt, convention, discretization, warn)
    warn.seen.update(timing.explains)  # the dt warning already said these: one warning, not three
    graph = flatten_structure(raw)
    params = read_params(graph, timing, warn)
    shapes = infer_shapes(graph, params, timing, warn)
    check_edges(graph, params, shapes, warn)
    params = broadcast_neuron_params(graph, params, shapes)
    populations = make_populations(graph, params, shapes)
    drives = compose_chains(graph, params, shapes, populations)
    projections = merge_delays(drives, populations)
    outputs = find_outputs(graph, populations)
    net = assemble(graph, populations, drives, projections, outputs, timing)
    for pop in net.populations.values():
        if pop.kind != INPUT:
            coefficients(pop, net.dt, net.discretization)  # ParameterError when dt is too long for Euler
    return net
