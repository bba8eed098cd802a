"""Generated networks with published shapes, for tests and benchmarks (seeded: same seed, same net).

* `shd_delay_graph`: the delay-learning SHD classifier (Hammouamri et al., ICLR 2024; shape in
  ../shared/research/loihi.md §5): 140 -> 256 -> 256 -> 20 readout, one delay of 0..24 steps
  per synapse (106,496 synapses), as NIR expresses per-synapse delays: parallel Delay -> Linear
  branches.
* `nmnist_cnn_graph`: the NIR paper's N-MNIST CNN (Pedersen et al. 2024, §3 of the same file).
* `dvs_gesture_cnn_graph`: the NeuroBench DVS-gesture example CNN (32x32x2 input, as Massa et al. 2020
  downsampled to): NeuroBench/neurobench examples/dvs_gesture/snn.py (commit e521c28), its max pools as
  average pools of the same window (NIR 1.0 has no max pool).
* `random_network`: a float Network built directly (no dense NIR matrices), for scaling runs.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

from .compiler.ir import INPUT, Network, Population, Projection, make_projection
from .compiler.ir.network import compact_int, index_dtype


def _delay_layer(nodes: dict, edges: list, pre: str, post: str, weight: np.ndarray, delay: np.ndarray,
                 dt: float, tag: str) -> None:
    import nir

    for d in np.unique(delay):
        w = np.where(delay == d, weight, 0.0)
        nodes[f"{tag}_delay{d}"] = nir.Delay(delay=np.full(weight.shape[1], float(d) * dt))
        nodes[f"{tag}_w{d}"] = nir.Linear(weight=w)
        edges += [(pre, f"{tag}_delay{d}"), (f"{tag}_delay{d}", f"{tag}_w{d}"), (f"{tag}_w{d}", post)]


def shd_delay_graph(seed: int = 0, max_delay: int = 24, dt: float = 0.01):
    """Returns a nir.NIRGraph: Input(140) -> LIF(256) -> LIF(256) -> LI(20), delays 0..max_delay."""
    import nir

    rng = np.random.default_rng(seed)
    sizes = [140, 256, 256, 20]
    nodes: dict = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}
    edges: list = []
    names = ["input", "lif1", "lif2", "readout"]
    tau = 10.05e-3  # init_tau = 10.05 ms at a 10 ms step: v ~ 0.005 v + input
    for k in range(3):
        n_in, n_out = sizes[k], sizes[k + 1]
        weight = rng.normal(0.0, 1.5 / np.sqrt(n_in), (n_out, n_in))
        delay = rng.integers(0, max_delay + 1, (n_out, n_in))
        _delay_layer(nodes, edges, names[k], names[k + 1], weight, delay, dt, f"l{k + 1}")
    for name, n in (("lif1", 256), ("lif2", 256)):
        nodes[name] = nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                              v_reset=np.zeros(n))
    nodes["readout"] = nir.LI(tau=np.full(20, 0.05), r=np.ones(20), v_leak=np.zeros(20))
    nodes["output"] = nir.Output(output_type={"output": np.array([20])})
    edges.append(("readout", "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def nmnist_cnn_graph(seed: int = 0):
    """The NIR paper's N-MNIST CNN (exported from Sinabs): IF neurons, dt = 1 step."""
    import nir

    rng = np.random.default_rng(seed)

    def conv(c_out: int, c_in: int, k: int, stride: int, pad: int, hw: int):
        w = rng.normal(0, 1.0 / np.sqrt(c_in * k * k), (c_out, c_in, k, k))
        return nir.Conv2d(input_shape=(hw, hw), weight=w, stride=stride, padding=pad, dilation=1, groups=1,
                          bias=np.zeros(c_out))

    def if_(shape: tuple[int, ...]):
        return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))

    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 34, 34])}),
        "conv1": conv(16, 2, 5, 2, 1, 34), "if1": if_((16, 16, 16)),
        "conv2": conv(16, 16, 3, 1, 1, 16), "if2": if_((16, 16, 16)),
        "pool2": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv3": conv(8, 16, 3, 1, 1, 8), "if3": if_((8, 8, 8)),
        "pool3": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([8, 4, 4])}, start_dim=0, end_dim=-1),
        "fc1": nir.Linear(weight=rng.normal(0, 1 / np.sqrt(128), (256, 128))), "if4": if_((256,)),
        "fc2": nir.Linear(weight=rng.normal(0, 1 / np.sqrt(256), (10, 256))), "if5": if_((10,)),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    chain = ["input", "conv1", "if1", "conv2", "if2", "pool2", "conv3", "if3", "pool3", "flat", "fc1", "if4",
             "fc2", "if5", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:], strict=True)), type_check=False)


# NeuroBench examples/dvs_gesture/snn.py (e521c28): the trained snnTorch Leaky betas and thresholds.
DVS_GESTURE_BETAS = (0.9999903192467171, 0.7291118090686332, 0.9364650136740154, 0.8348241794080301)
DVS_GESTURE_THRESHOLDS = (3.511291184386264, 3.494437965584431, 1.5986853560315544, 0.3641469130041378)


def dvs_gesture_cnn_graph(seed: int = 0, dt: float = 1e-3):
    """NeuroBench's DVS-gesture CNN: three (5x5 'same' conv -> 2x2 pool -> LIF) stages of 16, 32, 64 channels on
    a 2x32x32 input, then Linear(64*4*4 -> 11) -> LIF. Weights are seeded random (the trained ones are a
    torch checkpoint); betas and thresholds are the published ones, as snnTorch exports them (tau =
    dt / (1 - beta), r = tau / dt, so Euler at dt gives v = beta v + I)."""
    import nir

    rng = np.random.default_rng(seed)

    def lif(shape: tuple[int, ...], beta: float, threshold: float):
        tau = dt / (1.0 - beta)
        return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / dt), v_leak=np.zeros(shape),
                       v_threshold=np.full(shape, threshold), v_reset=np.zeros(shape))

    def conv(c_out: int, c_in: int, hw: int, gain: float):
        w = rng.normal(0, gain / np.sqrt(c_in * 25), (c_out, c_in, 5, 5))
        return nir.Conv2d(input_shape=(hw, hw), weight=w, stride=1, padding=2, dilation=1, groups=1,
                          bias=rng.normal(0, 0.01, c_out))

    def pool():
        return nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))

    nodes = {"input": nir.Input(input_type={"input": np.array([2, 32, 32])})}
    chain = ["input"]
    channels, hw = [2, 16, 32, 64], 32
    for k in range(3):
        nodes[f"conv{k + 1}"] = conv(channels[k + 1], channels[k], hw, 12.0)
        nodes[f"pool{k + 1}"] = pool()
        hw //= 2
        nodes[f"lif{k + 1}"] = lif((channels[k + 1], hw, hw), DVS_GESTURE_BETAS[k], DVS_GESTURE_THRESHOLDS[k])
        chain += [f"conv{k + 1}", f"pool{k + 1}", f"lif{k + 1}"]
    nodes["flat"] = nir.Flatten(input_type={"input": np.array([64, 4, 4])}, start_dim=0, end_dim=-1)
    nodes["linear1"] = nir.Affine(weight=rng.normal(0, 2.0 / np.sqrt(1024), (11, 1024)), bias=np.zeros(11))
    nodes["lif4"] = lif((11,), DVS_GESTURE_BETAS[3], DVS_GESTURE_THRESHOLDS[3])
    nodes["output"] = nir.Output(output_type={"output": np.array([11])})
    chain += ["flat", "linear1", "lif4", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:], strict=True)), type_check=False)


def random_network(n_neurons: int, synapses_per_neuron: int = 100, n_populations: int = 10, n_inputs: int = 1000,
                   max_delay: int = 0, seed: int = 0, dt: float = 1e-3) -> Network:
    """A layered random network built directly as a float Network (scales to 1M neurons).

    Population k receives `synapses_per_neuron` uniform random draws per neuron from population k-1
    (the input for k = 0), a repeated draw kept once, with weights ~ N(threshold / 20, threshold / 20)
    (float32, 4 bytes per synapse at 100M synapses) and delays 0..max_delay.
    """
    rng = np.random.default_rng(seed)
    sizes = np.full(n_populations, n_neurons // n_populations)
    sizes[: n_neurons % n_populations] += 1
    pops: dict[str, Population] = {"input": Population("input", INPUT, (n_inputs,))}
    projections = []
    prev, prev_size = "input", n_inputs
    for k, n in enumerate(sizes):
        name = f"p{k}"
        n = int(n)
        pops[name] = Population(name, "LIF", (n,), {
            "tau": np.full(n, 0.02), "r": np.ones(n), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
            "v_reset": np.zeros(n)})
        projections.append(_random_projection(rng, prev, name, n, prev_size, min(synapses_per_neuron, prev_size),
                                               max_delay))
        prev, prev_size = name, n
    return Network(pops, projections, ["input"], {"output": prev}, dt)


@functools.lru_cache(maxsize=4)
def _normal_table(mean: float, sd: float) -> np.ndarray:
    """The 2^16 quantiles (i + 0.5) / 2^16 of N(mean, sd) as float32, none zero: indexing it with uniform
    16-bit draws samples the normal 4x faster than rng.standard_normal (weights are quantized to at most
    16 bits anyway)."""
    from scipy.special import ndtri

    table = (mean + sd * ndtri((np.arange(1 << 16) + 0.5) / (1 << 16))).astype(np.float32)
    table[table == 0] = np.float32(mean)  # canonical CSR stores no zero weight
    table.flags.writeable = False  # shared between calls
    return table


def _random_projection(rng: np.random.Generator, pre: str, post: str, n_post: int, n_pre: int, fan_in: int,
                       max_delay: int) -> Projection:
    """fan_in uniform draws of a pre neuron per post neuron, each row's distinct ones, straight into
    canonical CSR (rows sorted, distinct): a sort of each row's few draws in place, no global sort; weights from
    `_normal_table`."""
    itype = index_dtype(n_post, n_pre, n_post * fan_in)
    draws = rng.integers(0, n_pre, (n_post, fan_in), dtype=itype)
    draws.sort(axis=1)
    keep = np.empty(draws.shape, dtype=bool)
    keep[:, 0] = True
    np.not_equal(draws[:, 1:], draws[:, :-1], out=keep[:, 1:])
    indptr = np.zeros(n_post + 1, dtype=itype)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    indices = draws[keep]
    del draws, keep
    weights = _normal_table(0.05, 0.05)[rng.integers(0, 1 << 16, indices.size, dtype=np.uint16)]
    delays = (rng.integers(0, max_delay + 1, indices.size,
                            dtype=np.int16 if max_delay <= np.iinfo(np.int16).max else np.int64) if max_delay
              else np.zeros(indices.size, dtype=np.int16))
    w = sp.csr_array((weights, indices, indptr), shape=(n_post, n_pre), copy=False)
    return Projection(pre, post, w, compact_int(delays))


def density(matrix: sp.csr_array) -> float:
    return matrix.nnz / max(1, matrix.shape[0] * matrix.shape[1])


def population_graph(n_populations: int, neurons: int, p_connect: float, synapse_density: float = 0.05,
                     n_inputs: int = 64, seed: int = 0, dt: float = 1e-3) -> Network:
    """Many populations, a projection between each ordered pair with probability `p_connect`: the
    PyNN-style graph of PACMAN's benchmarks (bench/vs_pacman.py's configs), with real synapses.

    Each projection connects a random `synapse_density` of its neuron pairs (at least one synapse); every
    population also gets sparse input. Weights are a few times threshold (NIR's LIF scales input by
    dt / tau), a fifth of them inhibitory, so the network spikes without saturating.
    """
    rng = np.random.default_rng(seed)
    lif = {"tau": np.full(neurons, 0.02), "r": np.ones(neurons), "v_leak": np.zeros(neurons),
           "v_threshold": np.ones(neurons), "v_reset": np.zeros(neurons)}
    pops = {"input": Population("input", INPUT, (n_inputs,))}
    pops.update({f"pop{i}": Population(f"pop{i}", "LIF", (neurons,), {k: v.copy() for k, v in lif.items()})
                 for i in range(n_populations)})

    def synapses(n_post: int, n_pre: int, density: float, scale: float) -> tuple[np.ndarray, ...]:
        keep = np.flatnonzero(rng.random(n_post * n_pre) < density)
        if not keep.size:
            keep = rng.integers(0, n_post * n_pre, 1)
        sign = np.where(rng.random(keep.size) < 0.2, -1.0, 1.0)
        return keep // n_pre, keep % n_pre, sign * rng.uniform(0.5, 1.5, keep.size) * scale

    projections = []
    for i in range(n_populations):
        rows, cols, vals = synapses(neurons, n_inputs, 0.1, 5.0)
        projections.append(make_projection("input", f"pop{i}", rows, cols, np.abs(vals), np.zeros(rows.size, int),
                                           (neurons, n_inputs)))
    pairs = np.argwhere(rng.random((n_populations, n_populations)) < p_connect)
    for s, t in pairs.tolist():
        rows, cols, vals = synapses(neurons, neurons, synapse_density, 1.0)
        projections.append(make_projection(f"pop{s}", f"pop{t}", rows, cols, vals, np.zeros(rows.size, int),
                                           (neurons, neurons)))
    return Network(pops, projections, ["input"], {"out": "pop0"}, dt)
