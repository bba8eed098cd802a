"""Hypothesis strategies: random valid NIR networks with the features the targets must handle.

Sizes, per-synapse delays up to a limit, recurrence, mixed-sign and single-sign weights, and
parameters near the format's edges (weights far above and below threshold, tau close to dt). edge_networks
puts them on a target's edges to the bit: the largest weight the format holds, the largest delay, threshold
mantissa 1 and 2^14, the largest bias.
"""

from __future__ import annotations

from typing import NamedTuple

import nir
import numpy as np
from hypothesis import strategies as st

from neurocc.compiler.targets.target import load_target


@st.composite
def networks(draw: st.DrawFn, max_delay: int = 10, max_size: int = 24) -> tuple[nir.NIRGraph, np.ndarray]:
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_layers = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, max_size)) for _ in range(n_layers + 1)]
    recurrent = draw(st.booleans())
    delays_on = draw(st.booleans())
    scale = draw(st.sampled_from([0.05, 0.5, 3.0, 40.0]))  # weights relative to threshold
    sign = draw(st.sampled_from(["mixed", "excitatory", "inhibitory_some"]))
    kind = draw(st.sampled_from(["LIF", "CubaLIF", "IF"]))
    dt = 1e-3
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}
    edges: list = []
    prev = "input"
    for k in range(n_layers):
        n_in, n_out = sizes[k], sizes[k + 1]
        w = rng.normal(0.0, scale, (n_out, n_in))
        if sign == "excitatory":
            w = np.abs(w)
        elif sign == "inhibitory_some":
            w = np.abs(w) * np.where(rng.random(w.shape) < 0.2, -1, 1)
        w[rng.random(w.shape) < 0.3] = 0.0
        name = f"layer{k}"
        if delays_on:
            d = rng.integers(0, max_delay + 1, (n_out, n_in))
            for value in np.unique(d):
                nodes[f"{name}_d{value}"] = nir.Delay(delay=np.full(n_in, value * dt))
                nodes[f"{name}_w{value}"] = nir.Linear(weight=np.where(d == value, w, 0.0))
                edges += [(prev, f"{name}_d{value}"), (f"{name}_d{value}", f"{name}_w{value}"),
                          (f"{name}_w{value}", name)]
        else:
            nodes[f"{name}_w"] = nir.Affine(weight=w, bias=rng.normal(0, 0.05 * scale, n_out))
            edges += [(prev, f"{name}_w"), (f"{name}_w", name)]
        tau = rng.uniform(1.2 * dt, 0.05, n_out)  # down to just above dt: decays at the edge
        thr = np.full(n_out, float(draw(st.sampled_from([0.01, 1.0, 5.0]))))
        if kind == "LIF":
            nodes[name] = nir.LIF(tau=tau, r=np.ones(n_out), v_leak=np.zeros(n_out), v_threshold=thr,
                                  v_reset=np.zeros(n_out))
        elif kind == "CubaLIF":
            nodes[name] = nir.CubaLIF(tau_syn=rng.uniform(1.5 * dt, 0.02, n_out), tau_mem=tau, r=np.ones(n_out),
                                      v_leak=np.zeros(n_out), v_threshold=thr, v_reset=np.zeros(n_out),
                                      w_in=np.ones(n_out))
        else:
            nodes[name] = nir.IF(r=np.full(n_out, 1.0 / dt), v_threshold=thr, v_reset=np.zeros(n_out))
        if recurrent and k == 0:
            nodes[f"{name}_rec"] = nir.Linear(weight=rng.normal(0, scale / 3, (n_out, n_out)))
            edges += [(name, f"{name}_rec"), (f"{name}_rec", name)]
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    edges.append((prev, "output"))
    steps = draw(st.integers(20, 60))
    p = draw(st.sampled_from([0.05, 0.3, 0.8]))
    raster = (rng.random((steps, sizes[0])) < p).astype(np.float32)
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), raster


def weight_edge(target: str) -> float:
    """The largest weight, in threshold units, the target's format represents: the mixed-sign mantissa maximum at
    the largest exponent, reached at threshold mantissa 1 (compiler/passes/quantize.py _choose_scale)."""
    fmt = load_target(target).format
    return float((fmt.weight_max - 1) * 2**fmt.weight_exp_max)


# Largest weight / weight_edge: at the edge (threshold mantissa 1, mantissas at their maximum, exponent at its
# maximum), one ulp-ish past it (refused), well inside, and tiny (threshold mantissa at its maximum, 2^14).
EDGE_FACTORS = (1.0, 1.0 + 2.0**-20, 0.75, 2.0**-16)


class EdgeCase(NamedTuple):
    graph: nir.NIRGraph
    raster: np.ndarray
    factor: float  # largest weight / weight_edge, in every layer
    bias_edge: bool  # a bias at the bias format's edge (then it, not the weights, sets the threshold)
    delays: bool  # every layer has a synapse at the target's largest delay

    @property
    def fits(self) -> bool:
        return self.factor <= 1.0


@st.composite
def edge_networks(draw: st.DrawFn, target: str, max_size: int = 16) -> EdgeCase:
    """IF layers on the edges of `target`'s integer format.

    IF with r = 1/dt integrates w / threshold exactly (threshold units), and power-of-two thresholds keep
    that exact, so the largest weight lands on the format's edge to the bit: weights at weight_edge * factor,
    every layer has a synapse at the target's largest delay, thresholds from 2^-7 to 2^3, optionally a bias
    at its own edge (mantissa and exponent at their maxima). Just past the weight edge (not .fits), compiling
    must raise QuantizationError."""
    fmt = load_target(target).format
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    factor = draw(st.sampled_from(EDGE_FACTORS))
    n_layers = draw(st.integers(1, 2))
    sizes = [draw(st.integers(1, max_size)) for _ in range(n_layers + 1)]
    sign = draw(st.sampled_from(["mixed", "excitatory", "inhibitory"]))
    delays_on = draw(st.booleans())
    recurrent = draw(st.booleans())
    bias_edge = draw(st.booleans()) and factor <= 1.0 and not delays_on
    dt = 1e-3
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}
    edges: list = []
    prev = "input"
    for k in range(n_layers):
        n_in, n_out = sizes[k], sizes[k + 1]
        thr = 2.0 ** draw(st.integers(-7, 3))
        peak = weight_edge(target) * factor * thr  # NIR units: threshold units x threshold
        w = rng.uniform(-1.0, 1.0, (n_out, n_in)) * peak
        if sign != "mixed":
            w = np.abs(w) * (1 if sign == "excitatory" else -1)
        w[rng.random(w.shape) < 0.3] = 0.0
        i, j = rng.integers(n_out), rng.integers(n_in)
        w[i, j] = -peak if sign == "inhibitory" else peak
        name = f"layer{k}"
        if delays_on:
            d = rng.integers(0, fmt.max_delay + 1, (n_out, n_in))
            d[i, j] = fmt.max_delay
            for value in np.unique(d):
                nodes[f"{name}_d{value}"] = nir.Delay(delay=np.full(n_in, value * dt))
                nodes[f"{name}_w{value}"] = nir.Linear(weight=np.where(d == value, w, 0.0))
                edges += [(prev, f"{name}_d{value}"), (f"{name}_d{value}", f"{name}_w{value}"),
                          (f"{name}_w{value}", name)]
        elif bias_edge:
            # the bias's own edge: bias_mant_max << bias_exp_max at scale 1, in threshold units (ACT_SHIFT 6)
            b_edge = fmt.bias_mant_max * 2.0**fmt.bias_exp_max / 64 * thr
            bias = rng.uniform(-b_edge, b_edge, n_out)
            bias[rng.integers(n_out)] = b_edge * draw(st.sampled_from([1.0, -1.0]))
            nodes[f"{name}_w"] = nir.Affine(weight=w, bias=bias)
            edges += [(prev, f"{name}_w"), (f"{name}_w", name)]
        else:
            nodes[f"{name}_w"] = nir.Linear(weight=w)
            edges += [(prev, f"{name}_w"), (f"{name}_w", name)]
        nodes[name] = nir.IF(r=np.full(n_out, 1.0 / dt), v_threshold=np.full(n_out, thr), v_reset=np.zeros(n_out))
        if recurrent and k == 0:  # a second incoming projection, below the edge
            nodes[f"{name}_rec"] = nir.Linear(weight=rng.uniform(-0.5, 0.5, (n_out, n_out)) * peak)
            edges += [(name, f"{name}_rec"), (f"{name}_rec", name)]
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    edges.append((prev, "output"))
    steps = draw(st.integers(20, 60)) + (fmt.max_delay + 2 if delays_on else 0)  # long enough to see the delay
    p = draw(st.sampled_from([0.05, 0.3, 0.8]))
    raster = (rng.random((steps, sizes[0])) < p).astype(np.float32)
    return EdgeCase(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), raster, factor, bias_edge, delays_on)
