"""Generate the bundled example network (neurocc/examples/delay_rnn.nir) and its input raster.

A small network with what the corpus lacks: per-synapse delays (as parallel Delay branches, the
way NIR expresses them), a recurrent LIF layer, and a CubaLIF output layer. Seeded: re-running it
writes the same files.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

DT = 1e-3


def build(seed: int = 7) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out, max_delay = 32, 48, 10, 6
    w_in = rng.normal(0, 0.35, (n_hid, n_in))
    delay = rng.integers(0, max_delay + 1, (n_hid, n_in))
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges = []
    for d in range(max_delay + 1):
        w = np.where(delay == d, w_in, 0.0)
        nodes[f"delay{d}"] = nir.Delay(delay=np.full(n_in, d * DT))
        nodes[f"w{d}"] = nir.Linear(weight=w)
        edges += [("input", f"delay{d}"), (f"delay{d}", f"w{d}"), (f"w{d}", "hidden")]
    nodes["hidden"] = nir.LIF(tau=np.full(n_hid, 0.02), r=np.ones(n_hid), v_leak=np.zeros(n_hid),
                              v_threshold=np.full(n_hid, 0.1), v_reset=np.zeros(n_hid))
    nodes["recurrent"] = nir.Linear(weight=rng.normal(0, 0.05, (n_hid, n_hid)))
    edges += [("hidden", "recurrent"), ("recurrent", "hidden")]
    nodes["readout"] = nir.Affine(weight=rng.normal(0.05, 0.4, (n_out, n_hid)), bias=np.full(n_out, 0.0))
    nodes["output_lif"] = nir.CubaLIF(tau_syn=np.full(n_out, 0.005), tau_mem=np.full(n_out, 0.01),
                                      r=np.ones(n_out), v_leak=np.zeros(n_out), v_threshold=np.full(n_out, 0.05),
                                      v_reset=np.zeros(n_out), w_in=np.ones(n_out))
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    edges += [("hidden", "readout"), ("readout", "output_lif"), ("output_lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "neurocc" / "examples"
    out.mkdir(parents=True, exist_ok=True)
    nir.write(out / "delay_rnn.nir", build())
    rng = np.random.default_rng(1234)
    np.savez(out / "delay_rnn_input.npz", input=(rng.random((200, 32)) < 0.15).astype(np.float32))


if __name__ == "__main__":
    main()
