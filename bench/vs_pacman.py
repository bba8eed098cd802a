"""neurocc's mapper against PACMAN (sPyNNaker's) on the same graphs, in one run.

PACMAN runs through ../shared/anchors/pacman_harness.py in its own venv (bench/.venv-pacman,
created on first use with `pip install spinnaker-pacman`). neurocc maps the same population
graph: populations of 250 neurons, a projection between each ordered pair with probability p
(same seeded draw as the harness), `atoms-per-core` neurons per core, on a SpiNNaker-1 mesh of
the size PACMAN's virtual machine had. Each projection connects every source slice to every
destination slice (one synapse per slice pair), as an application edge does in PACMAN.
Writes bench/results/vs_pacman.json with both sides' figures and their ratios. Not a test.

    python bench/vs_pacman.py [--configs A C D]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HARNESS = HERE.parents[1] / "shared" / "anchors" / "pacman_harness.py"
PACMAN_VENV = HERE / ".venv-pacman"
CONFIGS = {
    "A": {"pops": 200, "neurons": 250, "atoms_per_core": 256, "p_conn": 0.1},
    "C": {"pops": 1000, "neurons": 250, "atoms_per_core": 64, "p_conn": 0.1},
    "D": {"pops": 1600, "neurons": 250, "atoms_per_core": 256, "p_conn": 0.1},
}


def pacman_python() -> str:
    py = PACMAN_VENV / "bin" / "python"
    if not py.exists():
        venv.create(PACMAN_VENV, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "spinnaker-pacman"], check=True)
    return str(py)


def run_pacman(cfg: dict, seed: int) -> dict:
    cmd = [pacman_python(), str(HARNESS), "--pops", str(cfg["pops"]), "--neurons", str(cfg["neurons"]),
           "--atoms-per-core", str(cfg["atoms_per_core"]), "--p-conn", str(cfg["p_conn"]), "--seed", str(seed),
           "--compressors", "pair"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - start
    times = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"\[(.+?)\]\s+([\d.]+) s", out)}
    machine = re.search(r"machine: .*? (\d+)x(\d+), (\d+) chips", out)
    placed = re.search(r"placed (\d+) cores on (\d+) chips", out)
    unc = re.search(r"uncompressed: chips=\s*(\d+) total=\s*(\d+) max=\s*(\d+)", out)
    pair = re.search(r"pair: chips=\s*(\d+) total=\s*(\d+) max=\s*(\d+) .*chips_over_limit=(\d+)", out)
    n_edges = int(re.search(r"(\d+) projections", out).group(1))
    mapping_s = sum(v for k, v in times.items() if not k.startswith("compress"))
    return {
        "mapping_s": mapping_s, "compress_s": times.get("compress:pair"), "wall_s": wall, "projections": n_edges,
        "machine": [int(machine.group(1)), int(machine.group(2))], "cores": int(placed.group(1)),
        "chips": int(placed.group(2)), "entries_total": int(unc.group(2)), "entries_max": int(unc.group(3)),
        "compressed_total": int(pair.group(2)) if pair else None,
        "compressed_max": int(pair.group(3)) if pair else None,
        "chips_over_limit_after": int(pair.group(4)) if pair else None, "stage_times_s": times,
    }


def same_graph(cfg: dict, seed: int):
    """The harness's population graph (same RNG draw order) as a neurocc Network."""
    from neurocc.compiler.ir import INPUT, Network, Population, make_projection

    rng = random.Random(seed)
    n = cfg["neurons"]
    per = cfg["atoms_per_core"]
    reps = np.arange(0, n, per)  # one representative neuron per slice
    pops = {"input": Population("input", INPUT, (1,))}
    for i in range(cfg["pops"]):
        pops[f"pop{i}"] = Population(f"pop{i}", "LIF", (n,), {
            "tau": np.full(n, 0.02), "r": np.ones(n), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
            "v_reset": np.zeros(n)})
    rows, cols = np.meshgrid(reps, reps, indexing="ij")
    projections = []
    for s in range(cfg["pops"]):
        for t in range(cfg["pops"]):
            if rng.random() < cfg["p_conn"]:
                projections.append(make_projection(f"pop{s}", f"pop{t}", rows.ravel(), cols.ravel(),
                                                   np.full(rows.size, 0.1), np.zeros(rows.size, np.int64), (n, n)))
    return Network(pops, projections, ["input"], {"out": "pop0"}, 1e-3)


def run_neurocc(cfg: dict, seed: int, machine: list[int]) -> dict:
    from neurocc.compiler.passes.lower import lower
    from neurocc.compiler.passes.partition import partition
    from neurocc.compiler.passes.place import place
    from neurocc.compiler.passes.quantize import quantize
    from neurocc.compiler.passes.route import route
    from neurocc.compiler.targets.target import Mesh, load_target

    net = same_graph(cfg, seed)
    t = load_target("spinnaker1")
    target = dataclasses.replace(
        t, mesh=Mesh(t.mesh.topology, machine[0], machine[1], t.mesh.cores_per_chip),
        core=dataclasses.replace(t.core, neurons=cfg["atoms_per_core"]))
    times = {}
    start = time.perf_counter()
    inet = quantize(lower(net), target)
    times["lower+quantize"] = time.perf_counter() - start
    start = time.perf_counter()
    part = partition(inet, target)
    times["partition"] = time.perf_counter() - start
    # The input population (one spike source) has no counterpart in the harness: drop it.
    start = time.perf_counter()
    placement = place(inet, part, target)
    times["place"] = time.perf_counter() - start
    start = time.perf_counter()
    routing = route(inet, placement.slices, target, strict=False)  # report tables over the limit
    times["route+keys+tables+compress"] = time.perf_counter() - start
    before = [len(v) for v in routing.tables.values()]
    after = [len(v) for v in routing.compressed.values()]
    return {
        "mapping_s": sum(v for k, v in times.items() if k != "lower+quantize"), "stage_times_s": times,
        "cores": len([s for s in placement.slices if s.population != "input"]),
        "chips": len({s.chip for s in placement.slices if s.population != "input"}),
        "entries_total": sum(before), "entries_max": max(before),
        "compressed_total": sum(after), "compressed_max": max(after),
        "chips_over_limit_after": sum(1 for a in after if a > target.router.entries_per_chip),
        "placement": placement.method,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    results = {}
    for name in args.configs:
        cfg = CONFIGS[name]
        print(f"config {name}: {cfg}", flush=True)
        pac = run_pacman(cfg, args.seed)
        print(f"  PACMAN  {json.dumps({k: v for k, v in pac.items() if k != 'stage_times_s'})}", flush=True)
        ours = run_neurocc(cfg, args.seed, pac["machine"])
        print(f"  neurocc {json.dumps({k: v for k, v in ours.items() if k != 'stage_times_s'})}", flush=True)
        ratio = {
            "mapping_speedup": pac["mapping_s"] / ours["mapping_s"],
            "cores": ours["cores"] / pac["cores"], "chips": ours["chips"] / pac["chips"],
            "entries_total": ours["entries_total"] / pac["entries_total"],
            "entries_max": ours["entries_max"] / pac["entries_max"],
        }
        if pac["compressed_total"]:
            ratio["compressed_total"] = ours["compressed_total"] / pac["compressed_total"]
            ratio["compressed_max"] = ours["compressed_max"] / pac["compressed_max"]
        results[name] = {"config": cfg, "pacman": pac, "neurocc": ours, "ratio_neurocc_over_pacman": ratio}
        print(f"  ratios {json.dumps(ratio)}", flush=True)
    out = HERE / "results" / "vs_pacman.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
