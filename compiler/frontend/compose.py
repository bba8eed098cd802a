"""Phase 4: compose the linear nodes between neurons into one drive per population.

A population's drive is what reaches it through Affine, Linear, Scale, Conv, Pool, Flatten,
Delay and Identity nodes: one sparse matrix per (source population, delay in steps), plus the
constant bias those nodes add. A drive coming straight out of one convolution (or pool, or a pool
next to a conv) of one population keeps that `Conv`, so targets store the kernel once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError, UnsupportedNodeError
from ..ir import INPUT, Population
from ..ir.conv import Conv
from .conv import conv_of_node, linear_after_pool, pool_of_node, then
from .diagnostics import guard
from .graph import Graph
from .params import Params
from .shapes import Layout, Shapes

# (source population, delay in steps) -> matrix (out x source) of what that source contributes.
Terms = Mapping[tuple[str, int], sp.csr_array]


@dataclass(frozen=True)
class Drive:
    """A node's output as a linear function of the populations: sum of terms @ spikes, plus bias.

    `identity`: this is a population's own output. `conv`: the drive is one conv of one population's
    output (the kernel a target can store once), else None.
    """

    terms: Terms
    bias: np.ndarray
    identity: bool = False
    conv: Conv | None = None


def compose_chains(graph: Graph, params: Params, shapes: Shapes,
                   populations: Mapping[str, Population]) -> dict[str, Drive]:
    """The drive of every population that is not an Input, in population order."""
    memo: dict[str, Drive] = {}
    visiting: set[str] = set()

    def contrib(name: str) -> Drive:
        """Terms (source population, delay) -> matrix, and a constant bias, of `name`'s output."""
        if name in populations:
            n = populations[name].size
            return Drive({(name, 0): sp.identity(n, format="csr")}, np.zeros(n), identity=True)
        if name in memo:
            return memo[name]
        if name in visiting:
            raise GraphError(
                f"cycle through {name!r} has no neuron in it, so its value is undefined at every "
                "step. Fix: put a neuron (e.g. LIF) in the loop"
            )
        visiting.add(name)
        summed = _sum_inputs(graph.preds[name], contrib)
        node = graph.nodes[name]
        with guard(name, node.type, "composing it with its inputs"):
            result = _apply(name, node.type, params[name], shapes.layout.get(name), summed)
        visiting.discard(name)
        memo[name] = result
        return result

    return {post: _sum_inputs(graph.preds[post], contrib)
            for post, pop in populations.items() if pop.kind != INPUT}


def _sum_inputs(preds: tuple[str, ...], contrib: Callable[[str], Drive]) -> Drive:
    terms: dict[tuple[str, int], sp.csr_array] = {}
    bias = None
    for pred in preds:
        d = contrib(pred)
        for key, mat in d.terms.items():
            terms[key] = terms[key] + mat if key in terms else mat
        bias = d.bias if bias is None else bias + d.bias
    bias = bias if bias is not None else np.zeros(0)
    if len(preds) == 1:
        return Drive(terms, bias, d.identity, d.conv)
    return Drive(terms, bias)


def _apply(name: str, t: str, p: Mapping[str, Any], layout: Layout | None, drive: Drive) -> Drive:
    """The drive of node `name` (type `t`) given the sum of its inputs' drives."""
    terms, bias = drive.terms, drive.bias
    if t in ("Identity", "Flatten", "Output"):  # C-order flattening: the same neuron order, no copy
        return drive
    if t == "Delay":
        steps = np.broadcast_to(p["steps"].reshape(-1) if p["steps"].size > 1 else p["steps"],
                                (bias.size,))
        out: dict[tuple[str, int], sp.csr_array] = {}
        for value in np.unique(steps):
            mask = sp.diags((steps == value).astype(np.float64), format="csr")
            for (src, d), mat in terms.items():
                key = (src, d + int(value))
                part = (mask @ mat).tocsr()
                out[key] = out[key] + part if key in out else part
        return Drive(out, bias)
    if t in ("Affine", "Linear"):
        mat = sp.csr_array(p["weight"])
        new_bias = mat @ bias + (p["bias"] if t == "Affine" else 0.0)
        kept = linear_after_pool(drive.conv, p["weight"]) if drive.conv is not None else None
        return Drive({k: (mat @ m).tocsr() for k, m in terms.items()}, new_bias, conv=kept)
    if t == "Scale":
        s = np.broadcast_to(p["scale"].reshape(-1) if p["scale"].size > 1 else p["scale"], (bias.size,))
        mat = sp.diags(s, format="csr")
        return Drive({k: (mat @ m).tocsr() for k, m in terms.items()}, s * bias)
    if t in ("Conv1d", "Conv2d", "SumPool2d", "AvgPool2d"):
        assert layout is not None  # infer_shapes gives every Conv and Pool node one
        if t.startswith("Conv"):
            conv = conv_of_node(p, layout.in_shape, layout.padding, layout.out_shape)
            node_bias = np.repeat(p["bias"], conv.n_out // conv.out_shape[0])
        else:
            conv = pool_of_node(t == "AvgPool2d", p, layout.in_shape, layout.padding, layout.out_shape)
            node_bias = 0.0
        mat = conv.unrolled()
        kept = conv if drive.identity else (then(drive.conv, conv) if drive.conv is not None else None)
        return Drive({k: (mat @ m).tocsr() for k, m in terms.items()}, mat @ bias + node_bias, conv=kept)
    raise UnsupportedNodeError(f"node {name!r}: {t} cannot sit between neurons. Fix: only linear nodes "
                               "(Affine, Linear, Scale, Conv, Pool, Flatten, Delay) connect neurons")
