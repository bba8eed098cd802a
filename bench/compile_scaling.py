"""Compile time and peak memory per pass for 10k, 100k and 1M neurons (~100 synapses each).

Writes bench/results/compile_scaling.json. Each size runs in its own process (clean peak memory).
The machine is the target's chips and cores, with the mesh grown to hold the network (a user's
own target file would do the same). Not a test: figures, not pass/fail.

    python bench/compile_scaling.py [--sizes 10000 100000 1000000] [--targets spinnaker2 loihi2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def one(size: int, target_name: str, synapses: int) -> dict:
    from neurocc.compiler.passes.lower import lower
    from neurocc.compiler.passes.partition import partition
    from neurocc.compiler.passes.place import place
    from neurocc.compiler.passes.quantize import quantize
    from neurocc.compiler.passes.route import route
    from neurocc.compiler.targets.target import Mesh, load_target
    from neurocc.workloads import random_network

    target = load_target(target_name)
    side = max(target.mesh.chips_x, math.ceil(math.sqrt(max(1, size * 40 // 1024 // target.mesh.cores_per_chip))))
    target = dataclasses.replace(target, mesh=Mesh(target.mesh.topology, side, side, target.mesh.cores_per_chip))
    t0 = time.perf_counter()
    net = random_network(size, synapses, n_populations=max(1, size // 10_000), n_inputs=1000, seed=0)
    build_s = time.perf_counter() - t0
    passes = {}
    value = net
    steps = [("lower", lambda v: lower(v)), ("quantize", lambda v: quantize(v, target)),
             ("partition", lambda v: (v, partition(v, target))),
             ("place", lambda v: (v[0], place(v[0], v[1], target))),
             ("route", lambda v: route(v[0], v[1].slices, target))]
    tracemalloc.start()
    for name, fn in steps:
        tracemalloc.reset_peak()
        start = time.perf_counter()
        value = fn(value)
        passes[name] = {"seconds": round(time.perf_counter() - start, 3),
                        "peak_traced_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1)}
        if name == "place":
            cores, chips = len(value[1].slices), len({s.chip for s in value[1].slices})
    tracemalloc.stop()
    return {
        "target": target_name, "neurons": size, "synapses": int(net.n_synapses), "build_network_s": round(build_s, 2),
        "passes": passes, "total_s": round(sum(p["seconds"] for p in passes.values()), 2),
        "cores": cores, "chips": chips, "routing_entries": [value.entries_before(), value.entries_after()],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--targets", nargs="+", default=["spinnaker2", "loihi2"])
    ap.add_argument("--synapses", type=int, default=100)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(int(args.child[0]), args.child[1], args.synapses)))
        return 0
    rows = []
    for target in args.targets:
        for size in args.sizes:
            proc = subprocess.run([sys.executable, __file__, "--child", str(size), target,
                                   "--synapses", str(args.synapses)], capture_output=True, text=True)
            if proc.returncode:
                rows.append({"target": target, "neurons": size, "error": proc.stderr.strip().splitlines()[-1:]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "compile_scaling.json"
    out.write_text(json.dumps({"goal": "1M neurons / 100M synapses in < 60 s and < 4 GB on 2 cores",
                               "runs": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
