"""Synaptic events per second: neurocc's integer reference simulator against Lava, same network, same run.

For each network: build it as a NIR graph (Input -> Linear -> LIF -> ... -> Output), neurocc.load, compile
for loihi2, emit the Lava program and run it with neurocc's Lava executor (run_detailed: the emitted
run_lava.py in Loihi2SimCfg(select_tag="fixed_pt"), in a subprocess, spikes only). Emit granularity
"populations" (one Lava LIF per population, fewest Lava processes): Lava's fastest; the bench also times
"slices" on one multi-layer network (`granularity_check` in the JSON). Then run
`simulate_int(inet, raster, record=False)` on the same IntNetwork and raster (best of 3), assert that every
population's spikes are identical, and count synaptic events exactly from the reference spikes: for every
projection, the sum over steps of each pre neuron's spikes times its fan-out (the same events reach Lava's
connection processes).

Lava timing. The executor's `run_s` is the time of Lava's `run()` call inside the Lava process: it includes
Lava's compiler, the start of one OS process per Lava process and the final stop, not only the steps. To
separate them the program runs twice per repeat, T and T0 = --short-steps steps (same network, same raster
prefix): steps/s = (T - T0) / (run_s(T) - run_s(T0)) and startup = run_s(T0) - T0 x that per-step time.
Each is the best over --lava-repeats runs; every T-step run's spikes are compared. Reference and Lava runs are
interleaved (reference, Lava T0, Lava T; repeated) so that both see the same load on a shared machine.

Networks: the corpus MLP shape (20-16-8, input 20%), three multi-layer networks of >= 100k synapses
(3 x 500 at ~5% activity, 6 x 300 at ~2%, 3 x 400 at 20-50%) and one dense 1000 x 1000 layer (exactly 1M
synapses: weight magnitudes are kept away from zero so none quantizes to 0) at 10% input activity (the
issue's peer figure: Lava ~215 steps/s, ~2e7 events/s). Both simulators are event-driven for binary spikes
(Lava's fixed_pt Dense sums the weight columns of the inputs that spiked), so the ratio is set by per-step
overheads: Lava's step synchronisation of its OS processes against the reference's numpy calls, whose cost
grows with the spikes per step.

Writes bench/results/sim_throughput.json (temp file + rename). Not a test: figures, not pass/fail.

    python bench/sim_throughput.py [--steps 500] [--short-steps 50] [--lava-repeats 3] [--no-granularity-check]
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
from common import cpu_model, version, write_atomically  # bench/: the scripts run as files, so bench/ is on sys.path

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = RESULTS / "sim_throughput.json"
GOALS = {"ratio_vs_lava_multilayer": 20.0, "reference_events_per_s_1M_layer": 2e8}
ONE_M_LAYER = "layer_1000x1000_dense"


def layers_graph(sizes: list[int], seed: int, gain: float | list[float], p_excitatory: float = 0.8) -> nir.NIRGraph:
    """Dense LIF layers. Weights: sign * U(0.5, 1.5) * gain / sqrt(n_in), + with probability `p_excitatory`
    (magnitudes bounded away from zero: every synapse survives quantization). `gain` (one, or one per layer)
    sets the activity."""
    rng = np.random.default_rng(seed)
    gains = np.broadcast_to(np.asarray(gain, dtype=float), (len(sizes) - 1,))
    nodes: dict = {"in": nir.Input(input_type={"input": np.array([sizes[0]])})}
    edges: list = []
    prev = "in"
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        sign = np.where(rng.random((n_out, n_in)) < p_excitatory, 1.0, -1.0)
        w = sign * rng.uniform(0.5, 1.5, (n_out, n_in)) * gains[k] / np.sqrt(n_in)
        nodes[f"w{k}"] = nir.Linear(weight=w)
        nodes[f"lif{k}"] = nir.LIF(tau=np.full(n_out, 0.02), r=np.ones(n_out), v_leak=np.zeros(n_out),
                                   v_threshold=np.ones(n_out), v_reset=np.zeros(n_out))
        edges += [(prev, f"w{k}"), (f"w{k}", f"lif{k}")]
        prev = f"lif{k}"
    nodes["out"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    edges.append((prev, "out"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


# name -> (layer sizes, input spike probability per neuron per step, gain per layer, what it stands for).
# Gains are set for the activity named (a feed-forward LIF chain otherwise dies out or saturates with depth).
NETWORKS: dict[str, tuple[list[int], float, list[float], str]] = {
    "small_mlp_20_16_8": ([20, 16, 8], 0.2, [4.0, 6.0],
                          "the corpus MLP shape and activity (input 20%, hidden ~8%, output ~1.5%)"),
    "multilayer_3x500": ([500] * 4, 0.1, [1.2, 2.2, 2.5], "3 layers, typical activity (~5% per layer)"),
    "multilayer_6x300": ([300] * 7, 0.1, [1.1, 4.0, 4.0, 4.0, 4.0, 4.0], "6 layers, sparse activity (~2%)"),
    "multilayer_3x400_high_activity": ([400] * 4, 0.1, [4.0, 4.0, 4.0],
                                       "3 layers, high activity (19%, 36%, 53%): the reference's worst case"),
    ONE_M_LAYER: ([1000, 1000], 0.1, [1.5], "one 1M-synapse layer, 10% input activity"),
}


def synaptic_events(inet, spikes: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> int:
    """Sum over steps and projections of (spikes of each pre neuron x its fan-out in that projection).
    Input populations count their integer spike counts (0/1 here)."""
    total = 0
    for proj in inet.projections:
        fan_out = np.bincount(proj.weights.indices, minlength=proj.weights.shape[1]).astype(np.int64)
        s = inputs[proj.pre] if proj.pre in inputs else spikes[proj.pre]
        total += int(np.asarray(s, dtype=np.int64).sum(axis=0) @ fan_out)
    return total


def lava_timing(long_runs: list, short_runs: list, steps: int, short: int) -> dict:
    """Lava's per-step time from the best T-step and best T0-step run_s (start-up cancels out)."""
    best_long = min(long_runs, key=lambda r: r.times["run_s"])
    run_long = best_long.times["run_s"]
    run_short = min(r.times["run_s"] for r in short_runs)
    steps_s = run_long - run_short
    if steps_s <= 0:
        raise RuntimeError(f"Lava's {steps}-step run ({run_long:.3f} s) was not slower than its {short}-step run "
                           f"({run_short:.3f} s): too noisy to separate start-up; run more steps")
    per_step = steps_s / (steps - short)
    return {
        "steps_timed": steps - short,
        "steps_seconds": round(steps_s, 4),
        "steps_per_s": 1.0 / per_step,
        "seconds_for_all_steps": round(per_step * steps, 4),  # per-step time x T, for events/s
        "startup_s": round(run_short - short * per_step, 4),  # Lava compile + process start + stop
        "run_s_T": round(run_long, 4),  # the executor's run_s for T steps (start-up included)
        "run_s_T0": round(run_short, 4),
        "run_s_T_all": [round(r.times["run_s"], 4) for r in long_runs],
        "run_s_T0_all": [round(r.times["run_s"], 4) for r in short_runs],
        "build_s": round(best_long.times.get("build_s", 0.0), 4),  # Lava Process objects built in Python
        "wall_s": round(best_long.times.get("wall_s", 0.0), 3),  # whole subprocess: interpreter, imports, I/O
    }


def one(name: str, sizes: list[int], p_in: float, gain: list[float], about: str, args: argparse.Namespace) -> dict:
    import neurocc
    from neurocc.backends.lava import emit
    from neurocc.runtime.executors.lava import run_detailed
    from neurocc.runtime.simulator import integer_inputs, simulate_int

    steps, short = args.steps, args.short_steps
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(layers_graph(sizes, seed=1, gain=gain), dt=1e-3)
    mapping = neurocc.compile(net, "loihi2", progress=False)
    compile_s = time.perf_counter() - t0
    inet = mapping.network
    raster = (np.random.default_rng(2).random((steps, sizes[0])) < p_in).astype(np.float32)

    # Reference and Lava runs interleaved, so that both see the same (shared, bursty) machine load.
    ref = None
    ref_times: list[float] = []
    setup_times: list[float] = []
    long_runs: list = []
    short_runs: list = []
    with tempfile.TemporaryDirectory(prefix="neurocc-bench-") as tmp:
        out = emit(mapping, Path(tmp) / "lava", granularity=args.granularity)
        manifest = json.loads((out / "manifest.json").read_text())
        for k in range(max(args.ref_repeats, args.lava_repeats)):
            if k < args.ref_repeats:
                start = time.perf_counter()
                ref = simulate_int(inet, raster, record=False)
                ref_times.append(time.perf_counter() - start)
                # Context: simulate_int's own set-up (EventProjection tables, dense blocks), timed on a 1-step
                # raster. It is inside the reference's seconds (unlike Lava's start-up in Lava's).
                start = time.perf_counter()
                simulate_int(inet, raster[:1], record=False)
                setup_times.append(time.perf_counter() - start)
            if k < args.lava_repeats:
                short_runs.append(run_detailed(out, raster, steps=short, record_v=False))
                long_runs.append(run_detailed(out, raster, steps=steps, record_v=False))
    assert ref is not None
    ref_s = min(ref_times)
    events = synaptic_events(inet, ref.spikes, integer_inputs(inet, raster))
    lava_t = lava_timing(long_runs, short_runs, steps, short)
    for run in long_runs:
        for pop, spikes in ref.spikes.items():
            assert np.array_equal(run.spikes[pop], spikes), f"{name}: Lava and the reference differ in {pop!r}"
    identical = True

    lava_s = lava_t["seconds_for_all_steps"]
    lif_activity = {k: float(v.mean()) for k, v in ref.spikes.items() if k not in inet.inputs}
    row = {
        "network": name, "about": about, "layers": sizes, "gain": gain, "input_rate": p_in, "steps": steps,
        "neurons": int(inet.n_neurons), "synapses": int(inet.n_synapses), "synaptic_events": events,
        "events_per_step": events / steps,
        "activity": {"input": float(raster.mean()), **lif_activity,
                     "lif_mean": float(np.mean(list(lif_activity.values())))},
        "identical": identical,
        "loadavg_1min_before": load,
        "compile_s": round(compile_s, 3),
        "lava_granularity": args.granularity,
        "lava_processes": manifest.get("lava_processes"),
        "reference": {"seconds": round(ref_s, 6), "seconds_all": [round(x, 6) for x in ref_times],
                      "events_per_s": events / ref_s, "steps_per_s": steps / ref_s,
                      "setup_s_1_step_run": round(min(setup_times), 6)},
        "lava": {**lava_t, "events_per_s": events / lava_s},
    }
    row["ratio_reference_over_lava"] = row["reference"]["events_per_s"] / row["lava"]["events_per_s"]
    # For context only: against the executor's whole run_s (start-up included), as a user of `verify` sees it.
    row["ratio_including_lava_startup"] = lava_t["run_s_T"] / ref_s
    return row


def granularity_check(args: argparse.Namespace, name: str = "multilayer_3x400_high_activity", steps: int = 100) -> dict:
    """Lava run_s for both emit granularities on one network (start-up included: the choice is about both)."""
    import neurocc
    from neurocc.backends.lava import emit
    from neurocc.runtime.executors.lava import run_detailed

    sizes, p_in, gain, _ = NETWORKS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(layers_graph(sizes, seed=1, gain=gain), dt=1e-3)
    mapping = neurocc.compile(net, "loihi2", progress=False)
    raster = (np.random.default_rng(2).random((steps, sizes[0])) < p_in).astype(np.float32)
    out: dict = {"network": name, "steps": steps}
    with tempfile.TemporaryDirectory(prefix="neurocc-bench-") as tmp:
        for gran in ("populations", "slices"):
            d = emit(mapping, Path(tmp) / gran, granularity=gran)
            procs = json.loads((d / "manifest.json").read_text()).get("lava_processes")
            r = run_detailed(d, raster, record_v=False)
            out[gran] = {"lava_processes": procs, "run_s": round(r.times["run_s"], 3),
                         "wall_s": round(r.times["wall_s"], 3)}
    out["fastest"] = min(("populations", "slices"), key=lambda g: out[g]["run_s"])
    return out


def machine() -> dict:
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "loadavg_at_start": list(os.getloadavg()),
            "python": platform.python_version(), "numpy": np.__version__, "scipy": version("scipy"),
            "lava-nc": version("lava-nc"), "platform": platform.platform()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=500, help="steps T per run")
    ap.add_argument("--short-steps", type=int, default=50, help="T0: the short Lava run that measures start-up")
    ap.add_argument("--ref-repeats", type=int, default=3, help="reference runs per network (best taken)")
    ap.add_argument("--lava-repeats", type=int, default=3, help="Lava (T, T0) run pairs per network (best taken)")
    ap.add_argument("--granularity", default="populations", choices=["populations", "slices"],
                    help="emit granularity: one Lava LIF per population (fewest Lava processes) or per core slice")
    ap.add_argument("--no-granularity-check", action="store_true",
                    help="skip timing both granularities on one multi-layer network")
    ap.add_argument("--only", nargs="*", choices=list(NETWORKS), help="run only these networks (no JSON written)")
    args = ap.parse_args()
    if not 0 < args.short_steps < args.steps:
        ap.error("need 0 < --short-steps < --steps")
    start = time.perf_counter()
    info = machine()
    runs = []
    for name, (sizes, p_in, gain, about) in NETWORKS.items():
        if args.only and name not in args.only:
            continue
        row = one(name, sizes, p_in, gain, about, args)
        print(f"{name}: {row['synapses']} synapses, {row['synaptic_events']} events, lif activity "
              f"{row['activity']['lif_mean']:.3f}; reference {row['reference']['events_per_s']:.3g} ev/s "
              f"({row['reference']['steps_per_s']:.0f} steps/s), Lava {row['lava']['events_per_s']:.3g} ev/s "
              f"({row['lava']['steps_per_s']:.0f} steps/s, start-up {row['lava']['startup_s']:.2f} s): "
              f"{row['ratio_reference_over_lava']:.1f}x", flush=True)
        runs.append(row)
    if args.only:
        return 0
    check = None if args.no_granularity_check else granularity_check(args)
    multi = {r["network"]: r["ratio_reference_over_lava"] for r in runs if len(r["layers"]) > 3}
    big = next(r for r in runs if r["network"] == ONE_M_LAYER)
    info["loadavg_at_end"] = list(os.getloadavg())
    result = {
        "machine": info,
        "method": {
            "reference": f"simulate_int(inet, raster, record=False), best of {args.ref_repeats}",
            "lava": ("neurocc.backends.lava.run_detailed (Loihi2SimCfg fixed_pt, spikes only): steps/s from "
                     f"run_s(T) - run_s(T0), T={args.steps}, T0={args.short_steps}, best of {args.lava_repeats}; "
                     "start-up = run_s(T0) - T0 x per-step time (Lava compile, process start, stop)"),
            "events": "sum over projections and steps of pre spikes x fan-out, from the reference run's spikes",
            "granularity": args.granularity,
        },
        "goals": GOALS,
        "identical": all(r["identical"] for r in runs),
        "notes": [
            "Lava's per-step time is mostly its per-step synchronisation of one OS process per Lava process "
            "(RingBuffer, Dense and LIF per layer, a recorder per LIF), nearly independent of activity; its "
            "fixed_pt Dense sums the weight columns of the inputs that spiked (event-driven, no full product).",
            "The reference's per-step time is numpy call overhead (LIF update, per-projection gather and sum, "
            "ring-buffer add) plus work growing with spikes per step, so the ratio falls as activity rises.",
            "2 shared cores: see loadavg per run; repeated runs of this bench vary by up to ~2x per figure.",
        ],
        "met": {
            "ratio_vs_lava_multilayer": min(multi.values()) >= GOALS["ratio_vs_lava_multilayer"],
            "ratio_vs_lava_multilayer_by_network": {k: v >= GOALS["ratio_vs_lava_multilayer"]
                                                    for k, v in multi.items()},
            "reference_events_per_s_1M_layer": big["reference"]["events_per_s"]
            >= GOALS["reference_events_per_s_1M_layer"],
        },
        "summary": {r["network"]: {"reference_events_per_s": r["reference"]["events_per_s"],
                                   "lava_events_per_s": r["lava"]["events_per_s"],
                                   "ratio": r["ratio_reference_over_lava"], "identical": r["identical"]}
                    for r in runs},
        "runs": runs,
        "granularity_check": check,
        "bench_wall_s": round(time.perf_counter() - start, 1),
    }
    write_atomically(OUTPUT, json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUTPUT} ({result['bench_wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
