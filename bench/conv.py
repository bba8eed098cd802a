"""Shared conv kernels against the unrolled projections they replace, same networks, same run.

For each conv workload (the N-MNIST CNN, NeuroBench's DVS-gesture CNN, the corpus conv nets) and each target,
compile twice, interleaved, --repeats times: the shared path (`neurocc.compile`) and the unrolled path (the same
float Network with every projection's kernel dropped, so it compiles as explicit synapses, as before issue 12).
Per (workload, target, path): median compile time, cores, bytes of synaptic storage (mesh targets: the partition's
synapse bytes over all cores; Cortex-M: the model image) and bytes per connection (that storage over the network's
unrolled synapse count: a connection is one (pre, post) pair with a weight), or the named error when it does not fit.

Reference simulator: `simulate_int` on the loihi2 integer network, shared (kernel scatter) vs unrolled
(`unrolled=True`, the explicit rows), interleaved; conv synaptic events counted as every executor counts them
(runtime/conv.py ConvEvents.event_targets) and reported per second of the shared run's wall time.

Lava (N-MNIST only, --lava-steps): neurocc's Lava executor on one loihi2 mapping emitted with Lava Conv processes
(the default) and unrolled (emit conv="never"), interleaved, in Loihi2SimCfg(select_tag="fixed_pt"); run_s is
Lava's run() including its start-up; spikes compared to the reference. Speedup = unrolled s / shared s.

QEMU instructions per conv synaptic event on the M4: read from bench/results/cortexm.json (bench/cortexm.py
measures it with the QEMU instruction-count plugin), if that file has it.

Writes bench/results/conv.json (temp file + rename). Figures, not pass/fail.

    python bench/conv.py [--repeats 3] [--steps 100] [--lava-steps 20] [--no-lava]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = RESULTS / "conv.json"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
TARGETS = ["loihi1", "loihi2", "spinnaker1", "spinnaker2", "stm32f405", "nrf52840", "stm32h743"]
CORPUS_CONV = ["snntorch_conv", "sinabs_conv", "sinabs_conv_sinabs_defaults", "norse_conv_strided"]


def workloads() -> dict[str, tuple]:
    import neurocc
    from neurocc.workloads import dvs_gesture_cnn_graph, nmnist_cnn_graph

    nets = {"nmnist_cnn": (neurocc.load(nmnist_cnn_graph(seed=0), dt=1.0, discretization="exp"), 0.05),
            "dvs_gesture_cnn": (neurocc.load(dvs_gesture_cnn_graph(seed=0), dt=1e-3), 0.05)}
    for stem in CORPUS_CONV:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nets[stem] = (neurocc.load(CORPUS / f"{stem}.nir", convention=stem.split("_")[0]), 0.08)
    return nets


def unrolled(net):
    """The same network as explicit synapses: every kernel dropped (the path before shared kernels)."""
    return dataclasses.replace(net, projections=[dataclasses.replace(p, conv=None) for p in net.projections])


def storage(mapping) -> tuple[int, int]:
    """(bytes of synaptic storage, cores)."""
    if mapping.image is not None:
        return mapping.image.size, 1
    return sum(u.synapse_bytes for u in mapping.usage), len({(s.chip, s.core) for s in mapping.slices})


def compile_row(net, target: str, repeats: int) -> dict:
    import neurocc

    paths = {"shared": net, "unrolled": unrolled(net)}
    times: dict[str, list[float]] = {k: [] for k in paths}
    result: dict[str, dict] = {}
    for _ in range(repeats):  # interleaved: both paths see the same load
        for name, variant in paths.items():
            t0 = time.perf_counter()
            try:
                mapping = neurocc.compile(variant, target, progress=False)
            except neurocc.NeuroccError as exc:
                result[name] = {"fits": False, "error": str(exc).split(". Fix")[0]}
                continue
            times[name].append(time.perf_counter() - t0)
            nbytes, cores = storage(mapping)
            result[name] = {"fits": True, "bytes": nbytes, "cores": cores}
    connections = sum(p.n_synapses for p in net.projections if p.conv is not None)
    for name, row in result.items():
        if row["fits"]:
            row["compile_s"] = statistics.median(times[name])
            row["bytes_per_connection"] = row["bytes"] / max(1, sum(p.n_synapses for p in net.projections))
    result["conv_connections"] = connections
    return result


def reference_row(net, rate: float, steps: int, repeats: int) -> dict:
    import neurocc
    from neurocc.runtime.conv import ConvEvents
    from neurocc.runtime.simulator import simulate_int

    inet = neurocc.compile(net, "loihi2", progress=False).network
    n_in = inet.populations[inet.inputs[0]].size
    raster = (np.random.default_rng(0).random((steps, n_in)) < rate).astype(np.float32)
    times = {"shared": [], "unrolled": []}
    for _ in range(repeats):
        for name in times:
            t0 = time.perf_counter()
            res = simulate_int(inet, raster, record=False, unrolled=name == "unrolled")
            times[name].append(time.perf_counter() - t0)
            if name == "shared":
                shared = res
            else:
                assert all(np.array_equal(shared.spikes[k], res.spikes[k]) for k in res.spikes)
    events = 0
    for proj in inet.projections:
        if proj.conv is not None:
            scatter = ConvEvents(proj.conv)
            events += sum(scatter.event_targets(s).size for s in shared.spikes[proj.pre] if s.any())
    shared_s, unrolled_s = statistics.median(times["shared"]), statistics.median(times["unrolled"])
    return {"steps": steps, "conv_events": events, "shared_s": shared_s, "unrolled_s": unrolled_s,
            "conv_events_per_s": events / shared_s, "speedup_vs_unrolled": unrolled_s / shared_s}


def lava_row(net, steps: int, repeats: int) -> dict:
    """Lava's run() on one loihi2 mapping, emitted with Conv processes (default) and unrolled (conv="never"),
    interleaved; spikes compared with the reference."""
    import neurocc
    from neurocc.backends.lava.emit import emit
    from neurocc.runtime.executors.lava import run_detailed
    from neurocc.runtime.simulator import simulate_int

    mapping = neurocc.compile(net, "loihi2", progress=False)
    n_in = mapping.network.populations[mapping.network.inputs[0]].size
    raster = (np.random.default_rng(1).random((steps, n_in)) < 0.05).astype(np.float32)
    ref = simulate_int(mapping.network, raster, record=False)
    row: dict = {"steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {name: emit(mapping, Path(tmp) / name, conv=mode)
                for name, mode in (("shared", "auto"), ("unrolled", "never"))}
        runs: dict[str, list[float]] = {name: [] for name in outs}
        for _ in range(repeats):
            for name, out in outs.items():
                got = run_detailed(out, raster, record_v=False)
                runs[name].append(got.times["run_s"])
                row.setdefault(name, {})["identical"] = all(
                    np.array_equal(np.asarray(got.spikes[k], bool), ref.spikes[k]) for k in got.spikes)
        for name, out in outs.items():
            manifest = json.loads((out / "manifest.json").read_text())
            row[name]["run_s"] = statistics.median(runs[name])
            row[name]["lava_processes"] = manifest.get("lava_processes")
    row["speedup_shared_vs_unrolled"] = row["unrolled"]["run_s"] / row["shared"]["run_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lava-steps", type=int, default=20)
    parser.add_argument("--no-lava", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    rows: dict = {}
    for name, (net, rate) in workloads().items():
        print(f"{name}: compile", flush=True)
        rows[name] = {"neurons": net.n_neurons, "targets": {t: compile_row(net, t, args.repeats) for t in TARGETS}}
        print(f"{name}: reference", flush=True)
        rows[name]["reference"] = reference_row(net, rate, args.steps, args.repeats)
    if not args.no_lava:
        print("nmnist_cnn: lava", flush=True)
        rows["nmnist_cnn"]["lava"] = lava_row(workloads()["nmnist_cnn"][0], args.lava_steps, args.repeats)
    cortexm = RESULTS / "cortexm.json"
    summary = json.loads(cortexm.read_text()).get("summary", {}) if cortexm.exists() else {}
    qemu = {"instructions_per_conv_synaptic_event": summary.get("instructions_per_conv_synaptic_event"),
            "image_bytes": summary.get("conv_image_bytes"), "goal": 6.0, "source": "bench/results/cortexm.json"}
    out = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "method": __doc__, "workloads": rows, "qemu_conv": qemu,
        "bench_wall_s": time.perf_counter() - t_start,
    }
    RESULTS.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=RESULTS, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(out, f, indent=1, default=float)
    os.replace(tmp, OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
