"""Compile time and peak memory per pass for 10k, 100k and 1M neurons (~100 synapses each).

Writes bench/results/compile_scaling.json. Each size runs in two processes of its own (clean peak
memory): an untraced run gives the wall time per pass (`seconds`, `total_s`), the process's peak RSS
(`peak_rss_mb`, ru_maxrss) and each pass's peak RSS (`peak_rss_mb` per pass, Linux: VmHWM reset
before the pass); a run under tracemalloc (which slows allocation-heavy passes) gives the peak of
Python-traced memory per pass (`peak_traced_mb`, allocations since the network was built, so the
float network itself is not in it) and its own times (`seconds_traced`). The float network stays
alive through the passes, as it does in a caller of compile(). The machine is the target's chips
and cores, with the mesh grown to hold the network (a user's own target file would do the same).
Not a test: figures, not pass/fail.

    python bench/compile_scaling.py [--sizes 10000 100000 1000000] [--targets spinnaker2 loihi2]
                                    [--large 4000000] [--large-targets spinnaker2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _hwm_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) so the next pass's own peak can be read (Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(size: int, target_name: str, synapses: int, traced: bool) -> dict:
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
    build_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    passes = {}
    value = net
    # As compile_network runs them (nothing holds the lowered network once quantize has made the integer one).
    steps = [("lower", lambda v: lower(v)), ("quantize", lambda v: quantize(v, target)),
             ("partition", lambda v: (v, partition(v, target))),
             ("place", lambda v: (v[0], place(v[0], v[1], target))),
             ("route", lambda v: route(v[0], v[1].slices, target))]
    if traced:
        tracemalloc.start()
    for name, fn in steps:
        hwm = not traced and _hwm_reset()
        if traced:
            tracemalloc.reset_peak()
        start = time.perf_counter()
        value = fn(value)
        seconds = round(time.perf_counter() - start, 3)
        if traced:
            passes[name] = {"seconds": seconds, "peak_traced_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1)}
        else:
            passes[name] = {"seconds": seconds, "peak_rss_mb": round(_hwm_mb(), 1) if hwm else None}
        if name == "place":
            cores, chips = len(value[1].slices), len({s.chip for s in value[1].slices})
    if traced:
        tracemalloc.stop()
    # Resetting VmHWM also resets ru_maxrss (the kernel's hiwater): the process's peak is the largest of
    # the build's and every pass's.
    peak = max([build_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]
               + [p["peak_rss_mb"] for p in passes.values() if p.get("peak_rss_mb") is not None])
    return {
        "target": target_name, "neurons": size, "synapses": int(net.n_synapses), "build_network_s": round(build_s, 2),
        "passes": passes, "total_s": round(sum(p["seconds"] for p in passes.values()), 2),
        "total_with_build_s": round(build_s + sum(p["seconds"] for p in passes.values()), 2),
        "cores": cores, "chips": chips, "routing_entries": [value.entries_before(), value.entries_after()],
        "peak_rss_mb": round(peak, 1),
        "build_peak_rss_mb": round(build_rss, 1),
    }


def _child(size: int, target: str, synapses: int, traced: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(size), target, "--synapses", str(synapses)]
    proc = subprocess.run(cmd + (["--traced"] if traced else []), capture_output=True, text=True)
    if proc.returncode:
        return {"target": target, "neurons": size, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(size: int, target: str, synapses: int, traced_run: bool = True) -> dict:
    """Untraced run for times and RSS, traced run for per-pass traced peaks, merged into one row."""
    row = _child(size, target, synapses, traced=False)
    if "error" in row or not traced_run:
        return row
    traced = _child(size, target, synapses, traced=True)
    if "error" in traced:
        row["traced_error"] = traced["error"]
        return row
    for name, p in row["passes"].items():
        p["peak_traced_mb"] = traced["passes"][name]["peak_traced_mb"]
        p["seconds_traced"] = traced["passes"][name]["seconds"]
    row["total_traced_s"] = traced["total_s"]
    row["peak_rss_traced_mb"] = traced["peak_rss_mb"]
    row["timing"] = "seconds, total_s, peak_rss_mb: run without tracemalloc; peak_traced_mb: tracemalloc run"
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--targets", nargs="+", default=["spinnaker2", "loihi2"])
    ap.add_argument("--synapses", type=int, default=100)
    # Issue 14's large row: 4M neurons / 400M synapses on spinnaker2, untraced (tracemalloc would add
    # minutes; the row is about time and peak RSS within the machine's 24 GB).
    ap.add_argument("--large", type=int, nargs="*", default=[4_000_000])
    ap.add_argument("--large-targets", nargs="+", default=["spinnaker2"])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(int(args.child[0]), args.child[1], args.synapses, args.traced)))
        return 0
    rows = []
    for target in args.targets:
        for size in args.sizes:
            rows.append(measure(size, target, args.synapses))
            print(json.dumps(rows[-1]), flush=True)
    for target in args.large_targets:
        for size in args.large:
            rows.append(measure(size, target, args.synapses, traced_run=False))
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "compile_scaling.json"
    goal = ("1M neurons / 100M synapses in <= 15 s including the network build, <= 2 GB peak RSS, 2 cores; "
            "4M / 400M on spinnaker2 within 24 GB (issue 14)")
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"goal": goal, "loadavg_start": os.getloadavg(), "runs": rows}, indent=1))
    os.replace(tmp, out)  # atomically: a cut run leaves the previous results
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
