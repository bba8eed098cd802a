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


class ConvCase(NamedTuple):
    graph: nir.NIRGraph
    raster: np.ndarray
    pool: str  # "none" | "before" | "after" | "linear" (pool -> Flatten -> Linear)
    conv1d: bool


@st.composite
def conv_networks(draw: st.DrawFn, max_channels: int = 16) -> ConvCase:
    """Input -> [pool] -> Conv -> [pool] -> IF/LIF (-> [pool -> Flatten -> Linear -> LIF]): kernel 1-7, stride
    1-3, padding as int, tuple, 'same' or 'valid', dilation 1-3, groups dividing both channel counts."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    conv1d = draw(st.booleans()) and draw(st.booleans())  # a quarter of the examples
    groups = draw(st.sampled_from([1, 1, 2, 3, 4]))
    c_in = groups * draw(st.integers(1, max(1, max_channels // groups)))
    c_out = groups * draw(st.integers(1, max(1, max_channels // groups)))
    small = c_in * c_out > 48  # keep the unrolled cross-check small
    nd = 1 if conv1d else 2
    kernel = tuple(draw(st.integers(1, 3 if small else 7)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    extent = [dilation[d] * (kernel[d] - 1) + 1 for d in range(nd)]
    pool = "none" if conv1d else draw(st.sampled_from(["none", "before", "after", "linear"]))
    pool_k = draw(st.integers(2, 3))
    spatial = [draw(st.integers(max(1, extent[d] - 2), extent[d] + (6 if small else 10))) for d in range(nd)]
    if pool == "before":
        spatial = [s * pool_k for s in spatial]
    stride_one = draw(st.booleans())
    stride = tuple(1 if stride_one else draw(st.integers(1, 3)) for _ in range(nd))
    pad_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"] if stride_one else ["int", "tuple", "valid"]))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(nd))
    padding: object = {"int": pads[0], "tuple": pads, "same": "same", "valid": "valid"}[pad_kind]
    conv_in = [s // pool_k if pool == "before" else s for s in spatial]
    lead = {"int": (pads[0],) * nd, "tuple": pads, "valid": (0,) * nd,
            "same": tuple((e - 1) // 2 for e in extent)}[pad_kind]
    trail = {"same": tuple(e - 1 - (e - 1) // 2 for e in extent)}.get(pad_kind, lead)
    out = [(conv_in[d] + lead[d] + trail[d] - extent[d]) // stride[d] + 1 for d in range(nd)]
    if min(out) < 1 or (pool in ("after", "linear") and min(out) < pool_k):
        # An empty output is refused by name (tested in test_conv.py); redraw a shape that has one.
        from hypothesis import assume
        assume(False)
    weight = rng.normal(0.0, 1.5 / np.sqrt(c_in // groups * int(np.prod(kernel))), (c_out, c_in // groups, *kernel))
    weight[rng.random(weight.shape) < 0.2] = 0.0
    weight.flat[rng.integers(weight.size)] = 1.0  # never all zero: the projection would not exist
    conv_cls = nir.Conv1d if conv1d else nir.Conv2d
    nodes: dict = {
        "input": nir.Input(input_type={"input": np.array([c_in, *spatial])}),
        # nir's own __post_init__ types the node from a square kernel and int padding only; set input_shape after
        "conv": conv_cls(input_shape=None, weight=weight, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=rng.normal(0, 0.05, c_out)),
    }
    nodes["conv"].input_shape = tuple(conv_in) if nd == 2 else conv_in[0]
    edges: list = []
    thr = float(draw(st.sampled_from([0.3, 1.0, 3.0])))
    dt = 1e-3

    def neuron(shape: tuple[int, ...]) -> nir.NIRNode:
        if draw(st.booleans()):
            return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))
        return nir.LIF(tau=np.full(shape, 0.02), r=np.ones(shape), v_leak=np.zeros(shape),
                       v_threshold=np.full(shape, thr * 0.1), v_reset=np.zeros(shape))

    def sum_pool(name: str) -> None:
        nodes[name] = nir.SumPool2d(kernel_size=np.array([pool_k, pool_k]), stride=np.array([pool_k, pool_k]),
                                    padding=np.array([0, 0]))

    prev = "input"
    if pool == "before":
        sum_pool("pool_in")
        edges.append(("input", "pool_in"))
        prev = "pool_in"
    edges.append((prev, "conv"))
    prev = "conv"
    out_shape = (c_out, *out)
    if pool == "after":
        sum_pool("pool_out")
        edges.append(("conv", "pool_out"))
        prev = "pool_out"
        out_shape = (c_out, *[o // pool_k for o in out])
    nodes["lif1"] = neuron(out_shape)
    edges.append((prev, "lif1"))
    last, last_shape = "lif1", out_shape
    if pool == "linear":
        pooled = (c_out, *[o // pool_k for o in out])
        n_fc = draw(st.integers(1, 12))
        sum_pool("pool_fc")
        nodes["flat"] = nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array(pooled)})
        nodes["fc"] = nir.Linear(weight=rng.normal(0, 1.0 / np.sqrt(np.prod(pooled)), (n_fc, int(np.prod(pooled)))))
        nodes["lif2"] = neuron((n_fc,))
        edges += [("lif1", "pool_fc"), ("pool_fc", "flat"), ("flat", "fc"), ("fc", "lif2")]
        last, last_shape = "lif2", (n_fc,)
    nodes["output"] = nir.Output(output_type={"output": np.array(last_shape)})
    edges.append((last, "output"))
    steps = draw(st.integers(8, 20))
    p = draw(st.sampled_from([0.05, 0.2, 0.5]))
    raster = (rng.random((steps, c_in, *spatial)) < p).astype(np.float32)
    return ConvCase(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), raster, pool, conv1d)
