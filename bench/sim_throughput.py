"""Synaptic events per second: neurocc's integer reference simulator against Lava, same network, same run.

For each network: compile for loihi2, emit the Lava program, run it in Lava's Loihi2SimCfg(fixed_pt)
(its own step loop, timed inside the Lava process: `run_s`, build and process start-up excluded),
run simulate_int on the same IntNetwork and raster (best of 3), check the spikes are identical, and
count synaptic events exactly: for every step, each spike of a pre neuron times its fan-out.

Networks: a small MLP (the corpus shape), a multi-layer network of >= 100k synapses, and one dense
1000 x 1000 layer (1M synapses) at 10% input activity (the issue's peer figure: Lava ~215 steps/s).

Writes bench/results/sim_throughput.json. Not a test: figures, not pass/fail.

    python bench/sim_throughput.py [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import nir
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"ratio_vs_lava_multilayer": 20.0, "reference_events_per_s_1M_layer": 2e8}


def _layers(sizes: list[int], seed: int, density: float = 1.0, gain: float = 2.5) -> nir.NIRGraph:
    """Dense (or random sparse) LIF layers; `gain` sets how active they are."""
    rng = np.random.default_rng(seed)
    nodes: dict = {"in": nir.Input(input_type={"input": np.array([sizes[0]])})}
    edges: list = []
    prev = "in"
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = rng.normal(gain / np.sqrt(n_in * density), gain / np.sqrt(n_in * density), (n_out, n_in))
        if density < 1:
            w *= rng.random(w.shape) < density
        nodes[f"w{k}"] = nir.Linear(weight=w)
        nodes[f"lif{k}"] = nir.LIF(tau=np.full(n_out, 0.02), r=np.ones(n_out), v_leak=np.zeros(n_out),
                                   v_threshold=np.ones(n_out), v_reset=np.zeros(n_out))
        edges += [(prev, f"w{k}"), (f"w{k}", f"lif{k}")]
        prev = f"lif{k}"
    nodes["out"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    edges.append((prev, "out"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


# name -> (layer sizes, density, input spike probability, gain). The multi-layer pair spans typical SNN
# activity (a few % of neurons per step) and a saturated one (~25%), where Lava's dense matmul does best.
NETWORKS = {
    "small_mlp_20_16_8": ([20, 16, 8], 1.0, 0.2, 2.5),
    "multilayer_6x300_sparse_activity": ([300] * 7, 1.0, 0.1, 1.2),
    "multilayer_400x3_high_activity": ([400, 400, 400, 400], 1.0, 0.1, 2.5),
    "layer_1000x1000_dense": ([1000, 1000], 1.0, 0.1, 2.5),
}


def synaptic_events(inet, spikes: dict[str, np.ndarray]) -> int:
    total = 0
    for proj in inet.projections:
        fan_out = np.bincount(proj.weights.indices, minlength=proj.weights.shape[1])
        total += int(spikes[proj.pre].astype(np.int64).sum(axis=0) @ fan_out)
    return total


def one(name: str, sizes: list[int], density: float, p_in: float, gain: float, steps: int,
        granularity: str) -> dict:
    import neurocc
    from neurocc.backends.lava import emit, run_detailed
    from neurocc.runtime.simulator import simulate_int

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(_layers(sizes, seed=1, density=density, gain=gain), dt=1e-3)
    mapping = neurocc.compile(net, "loihi2", progress=False)
    inet = mapping.network
    raster = (np.random.default_rng(2).random((steps, sizes[0])) < p_in).astype(np.float32)
    best = float("inf")
    ref = None
    for _ in range(3):
        start = time.perf_counter()
        ref = simulate_int(inet, raster, record=False)
        best = min(best, time.perf_counter() - start)
    assert ref is not None
    events = synaptic_events(inet, ref.spikes)
    with tempfile.TemporaryDirectory(prefix="neurocc-bench-") as tmp:
        out = emit(mapping, Path(tmp) / "lava", granularity=granularity)
        lava = run_detailed(out, raster, record_v=False)
    identical = all(np.array_equal(lava.spikes[k], ref.spikes[k]) for k in ref.spikes)
    lava_s = lava.times["run_s"]
    row = {
        "network": name, "layers": sizes, "density": density, "input_rate": p_in, "steps": steps,
        "neurons": int(inet.n_neurons), "synapses": int(inet.n_synapses), "synaptic_events": events,
        "mean_activity": float(np.mean([ref.spikes[k].mean() for k in ref.spikes if k not in inet.inputs])),
        "identical_spikes": identical, "lava_granularity": granularity, "lava_processes_lif": len(sizes) - 1,
        "reference": {"seconds": round(best, 6), "events_per_s": events / best, "steps_per_s": steps / best},
        "lava": {"seconds": round(lava_s, 4), "events_per_s": events / lava_s, "steps_per_s": steps / lava_s,
                 "build_s": round(lava.times.get("build_s", 0.0), 3),
                 "wall_s": round(lava.times.get("wall_s", 0.0), 3)},
    }
    row["ratio_reference_over_lava"] = row["reference"]["events_per_s"] / row["lava"]["events_per_s"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--granularity", default="populations", choices=["populations", "slices"],
                    help="one Lava LIF per population (fewest Lava processes: Lava's fastest) or per core slice")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    runs = []
    for name, (sizes, density, p_in, gain) in NETWORKS.items():
        row = one(name, sizes, density, p_in, gain, args.steps, args.granularity)
        print(json.dumps({k: row[k] for k in ("network", "synapses", "synaptic_events", "identical_spikes",
                                              "ratio_reference_over_lava")}),
              f"ref {row['reference']['events_per_s']:.3g} ev/s, lava {row['lava']['events_per_s']:.3g} ev/s",
              flush=True)
        runs.append(row)
    multi = [r["ratio_reference_over_lava"] for r in runs if len(r["layers"]) > 2]
    big = next(r for r in runs if r["network"] == "layer_1000x1000_dense")
    result = {
        "machine": {"nproc": os.cpu_count(), "loadavg_at_start": load0, "python": platform.python_version(),
                    "numpy": np.__version__},
        "goals": GOALS,
        "met": {"ratio_vs_lava_multilayer": min(multi) >= GOALS["ratio_vs_lava_multilayer"],
                "reference_events_per_s_1M_layer": big["reference"]["events_per_s"]
                >= GOALS["reference_events_per_s_1M_layer"]},
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / "sim_throughput.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, RESULTS / "sim_throughput.json")
    print(f"wrote {RESULTS / 'sim_throughput.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
