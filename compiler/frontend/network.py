"""Phase 5: populations, drives and Outputs -> the float Network (delay branches merged into projections)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError
from ..ir import INPUT, NEURON_KINDS, Network, Population, Projection, make_projection
from ..ir.conv import Conv
from .compose import Drive
from .graph import Graph
from .params import Params
from .shapes import Shapes
from .timing import Timing


def make_populations(graph: Graph, params: Params, shapes: Shapes) -> dict[str, Population]:
    """One population per Input and per neuron node, in node order; no bias yet (see `assemble`)."""
    populations: dict[str, Population] = {}
    for name, node in graph.nodes.items():
        if node.type == "Input":
            populations[name] = Population(name, INPUT, shapes.shape[name])
        elif node.type in NEURON_KINDS:
            populations[name] = Population(name, node.type, shapes.shape[name], dict(params[name]))
    return populations


def merge_delays(drives: Mapping[str, Drive], populations: Mapping[str, Population]) -> list[Projection]:
    """Each drive's terms as projections: per source, delay branches merged while no (post, pre) pair repeats."""
    projections: list[Projection] = []
    for post, drive in drives.items():
        projections.extend(_to_projections(post, populations[post].size, drive, populations))
    return projections


def _to_projections(post: str, n_post: int, drive: Drive,
                    populations: Mapping[str, Population]) -> list[Projection]:
    by_source: dict[str, list[tuple[int, sp.coo_array]]] = defaultdict(list)
    for (src, delay), mat in drive.terms.items():
        by_source[src].append((delay, sp.coo_array(mat)))
    result = []
    for src, parts in by_source.items():
        # Merge delay branches into one projection while no (post, pre) pair repeats.
        groups: list[list[tuple[int, sp.coo_array]]] = []
        used: list[set[int]] = []
        n_pre = populations[src].size
        for delay, coo in sorted(parts, key=lambda x: x[0]):
            keys = set((coo.row.astype(np.int64) * n_pre + coo.col).tolist()) if coo.nnz < 200_000 \
                else None
            for g, u in zip(groups, used, strict=True):
                if keys is not None and not (u & keys):
                    g.append((delay, coo))
                    u |= keys
                    break
            else:
                groups.append([(delay, coo)])
                used.append(keys or set())
        for g in groups:
            rows = np.concatenate([c.row for _, c in g]).astype(np.int64)
            cols = np.concatenate([c.col for _, c in g]).astype(np.int64)
            vals = np.concatenate([c.data for _, c in g]).astype(np.float64)
            dels = np.concatenate([np.full(c.nnz, d, dtype=np.int64) for d, c in g])
            proj = make_projection(src, post, rows, cols, vals, dels, (n_post, n_pre))
            if drive.conv is not None and len(parts) == 1 and g[0][0] == 0:
                proj = with_kernel(proj, drive.conv)
            if proj.n_synapses:
                result.append(proj)
    return result


def with_kernel(proj: Projection, conv: Conv) -> Projection:
    """`proj` carrying its kernel when the kernel's unrolled matrix is the composed one; else unchanged.

    This equality is what makes a kept kernel safe (a composed conv that differs at the borders stays
    sparse), and the projection takes the kernel's own values, so the two never differ by rounding.
    """
    mat = conv.unrolled()
    w = proj.weights
    if (mat.shape != w.shape or mat.nnz != w.nnz or not np.array_equal(mat.indptr, w.indptr)
            or not np.array_equal(mat.indices, w.indices) or not np.allclose(mat.data, w.data, rtol=1e-9, atol=0)):
        return proj
    weights = sp.csr_array((mat.data, w.indices, w.indptr), shape=w.shape, copy=False)
    return dataclasses.replace(proj, weights=weights, conv=conv)


def find_outputs(graph: Graph, populations: Mapping[str, Population]) -> dict[str, str]:
    """NIR Output node -> the population it reads (through Identity and Flatten nodes only)."""
    outputs: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if node.type != "Output":
            continue
        src = graph.preds[name]
        hop = src[0]
        while hop not in populations and graph.nodes[hop].type in ("Identity", "Flatten") \
                and len(graph.preds[hop]) == 1:
            hop = graph.preds[hop][0]
        if len(src) != 1 or hop not in populations:
            raise GraphError(
                f"Output {name!r} is fed by {list(src)}, not by one neuron population; neurocc reads outputs "
                "from neurons. Fix: end the graph with a neuron layer (LIF, or LI for a readout)"
            )
        outputs[name] = hop
    if not outputs:
        raise GraphError("the graph has no Output node. Fix: add a nir.Output after the last layer")
    return outputs


def assemble(graph: Graph, populations: Mapping[str, Population], drives: Mapping[str, Drive],
             projections: list[Projection], outputs: dict[str, str], timing: Timing) -> Network:
    """The Network; a population whose drive carries a constant current gets it as its bias."""
    biased = {name: dataclasses.replace(pop, bias=drives[name].bias)
              if name in drives and np.any(drives[name].bias) else pop
              for name, pop in populations.items()}
    inputs = [n for n, nd in graph.nodes.items() if nd.type == "Input"]
    return Network(biased, projections, inputs, outputs, timing.dt, timing.discretization, timing.source)
