"""SpiNNaker tables: bytes per synapse, routing entries before/after compression, executor speed.

Writes bench/results/spinnaker_tables.json. Per (network, target):

* bytes per synapse of the emitted synaptic matrices (synapses.bin: words + row pointers + headers),
  and with the master population tables;
* routing entries: generated (one per emitter and chip of its tree), after dropping what default
  routing carries, after compression as the target needs it (only tables over the router's limit
  are compressed), and after compressing every table as far as the pair compressor goes;
* executor speed: synaptic events (words processed) per second of wall time over the step loop,
  against simulate_int on the same raster in the same run (its events counted the same way), and
  a check that the spikes are identical.

Not a test: figures, not pass/fail.

    python bench/spinnaker_tables.py [--steps 200] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _networks(quick: bool) -> list[tuple[str, object, np.ndarray | None]]:
    import neurocc
    from neurocc.workloads import random_network, shd_delay_graph

    rng = np.random.default_rng(0)
    out: list[tuple[str, object, np.ndarray | None]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv = CORPUS / "snntorch_conv.nir"
        if conv.exists():
            x = np.load(conv.with_suffix(".npz"))["input"]
            out.append(("corpus snntorch_conv", neurocc.load(conv, convention="snntorch"), x))
        out.append(("shd_delay_graph (delays 0..24)", neurocc.load(shd_delay_graph(), dt=0.01), None))
        size = 20_000 if quick else 50_000
        net = random_network(size, 50, n_populations=5, n_inputs=1000, max_delay=20, seed=0)
        for proj in net.projections:  # random_network's weights do not make its layers fire; drive them
            proj.weights.data *= 6.0
        out.append((f"random_network {size} neurons x 50 synapses, delays 0..20", net, None))
    del rng
    return out


def _raster(inet, steps: int, given: np.ndarray | None, seed: int) -> np.ndarray:
    if given is not None:
        reps = -(-steps // given.shape[0])
        return np.concatenate([given] * reps)[:steps]
    n = inet.populations[inet.inputs[0]].size
    return (np.random.default_rng(seed).random((steps, n)) < 0.05).astype(np.float32)


def _reference_events(inet, result) -> int:
    """Synaptic events the reference performs: spikes x out-degree, per projection (delays included)."""
    total = 0
    for proj in inet.projections:
        out_degree = np.bincount(proj.weights.indices, minlength=proj.weights.shape[1])
        counts = result.spikes[proj.pre].sum(axis=0)
        total += int((counts * out_degree).sum())
    return total


def one(name: str, net, given: np.ndarray | None, target_name: str, steps: int) -> dict:
    from neurocc.backends.spinnaker import emit
    from neurocc.compiler.errors import TargetError
    from neurocc.compiler.passes.compress import compress
    from neurocc.compiler.pipeline import compile_network
    from neurocc.compiler.targets.target import Mesh, load_target
    from neurocc.runtime.executors.spinnaker import run
    from neurocc.runtime.simulator import simulate_int

    target = load_target(target_name)
    while True:  # the shipped board; grown (as a user's own target file would be) only if the net needs it
        try:
            t0 = time.perf_counter()
            mapping = compile_network(net, target, progress=False)
            compile_s = time.perf_counter() - t0
            break
        except TargetError as exc:
            if "cores" not in str(exc):
                raise
            m = target.mesh
            target = dataclasses.replace(target, mesh=Mesh(m.topology, m.chips_x + 2, m.chips_y + 2, m.cores_per_chip))
    routing = mapping.routing
    forced = sum(len(compress(t, routing.defaulted.get(c, []), 0, force=True)) for c, t in routing.tables.items())
    raster = _raster(mapping.network, steps, given, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        t0 = time.perf_counter()
        emit(mapping, out)
        emit_s = time.perf_counter() - t0
        manifest = json.loads((out / "manifest.json").read_text())
        t0 = time.perf_counter()
        got = run(out, raster)
        run_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = simulate_int(mapping.network, raster, record=False)
    ref_s = time.perf_counter() - t0
    exact = all(np.array_equal(ref.spikes[k], got.spikes[k]) for k in ref.spikes)
    ref_events = _reference_events(mapping.network, ref)
    storage = manifest["synapse_storage"]
    entries = manifest["routing_entries"]
    return {
        "network": name, "target": target_name, "mesh": [target.mesh.chips_x, target.mesh.chips_y],
        "neurons": int(mapping.network.n_neurons),
        "synapses": int(mapping.network.n_synapses), "cores": len(mapping.slices),
        "chips": len({s.chip for s in mapping.slices}), "delay_extension_cores": sum(s.role == "delay"
                                                                                   for s in mapping.slices),
        "compile_s": round(compile_s, 3), "emit_s": round(emit_s, 3),
        "bytes_per_synapse": round(storage["bytes_per_synapse"], 3),
        "bytes_per_synapse_with_poptable": round(storage["bytes_per_synapse_with_poptable"], 3),
        "synaptic_matrix_bytes": storage["synapses_bytes"], "poptable_bytes": storage["poptable_bytes"],
        "routing_entries": {
            "generated": entries["generated"], "after_default_routing": entries["after_default_routing"],
            "after_compression_as_needed": entries["after_compression"],
            "after_compression_forced": forced, "max_per_chip": entries["max_per_chip"],
            "limit_per_chip": entries["limit_per_chip"],
        },
        "executor": {
            "steps": steps, "synaptic_events": got.synaptic_events, "packets": got.packets,
            "step_loop_s": round(got.wall_s, 3), "total_s_with_loading": round(run_s, 3),
            "events_per_s": round(got.synaptic_events / got.wall_s), "bit_exact_vs_simulate_int": exact,
        },
        "peer_simulate_int": {  # counted at send time, so it includes delayed events landing after the last step
            "seconds": round(ref_s, 3), "synaptic_events": ref_events,
            "events_per_s": round(ref_events / ref_s) if ref_s else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--targets", nargs="+", default=["spinnaker1", "spinnaker2"])
    ap.add_argument("--quick", action="store_true", help="a smaller random network")
    args = ap.parse_args(argv)
    rows = []
    for name, net, given in _networks(args.quick):
        for target in args.targets:
            row = one(name, net, given, target, args.steps)
            rows.append(row)
            ex = row["executor"]
            print(f"{name} on {target}: {row['synapses']} synapses, {row['bytes_per_synapse']} B/synapse, "
                  f"entries {row['routing_entries']['generated']} -> {row['routing_entries']['after_default_routing']}"
                  f" -> {row['routing_entries']['after_compression_as_needed']} (forced "
                  f"{row['routing_entries']['after_compression_forced']}), {ex['events_per_s']:,} events/s, "
                  f"exact={ex['bit_exact_vs_simulate_int']}", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "spinnaker_tables", "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor(), "steps": args.steps, "results": rows}
    path = RESULTS / "spinnaker_tables.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
