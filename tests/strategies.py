"""Hypothesis strategies: random valid NIR networks with the features the targets must handle.

Sizes, per-synapse delays up to a limit, recurrence, mixed-sign and single-sign weights, and
parameters at the format's edges (weights far above and below threshold, tau close to dt).
"""

from __future__ import annotations

import nir
import numpy as np
from hypothesis import strategies as st


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
