"""Sweep throughput: points per second at 1 vs 2 Dask workers, and Dask's per-point overhead over a plain loop.

The points are a sweep spec's (default: neurocc/examples/sweep.toml, 18 points: the SHD delay network and
the N-MNIST CNN x loihi2 / spinnaker2 / stm32f405 x core.neurons 256..2048). Three ways to run the same
points, interleaved in each repeat (the order rotates per repeat, so no way always runs first or last on a
shared machine):

  serial   a plain loop in this process: [run_point(p) for p in points]
  dask-1   neurocc.sweep.run.sweep(spec, client=C1) on a LocalCluster of 1 worker process (1 thread)
  dask-2   the same on a LocalCluster of 2 worker processes
  dask-1-notrim  a diagnostic: dask-1 without the MALLOC_TRIM_THRESHOLD_=65536 that Dask's nanny puts in
           each worker's environment (distributed.nanny.pre-spawn-environ; glibc then trims the heap on
           frees): does that allocator setting cost the points?

The clusters are started by run.py's own `_local_client` (what `neurocc sweep` runs on).

Both clusters are started once, before the repeats, and warmed with one untimed sweep (worker imports,
first-compile caches); their start-up time is reported on its own (`neurocc sweep` pays it once per
command). Per-point overhead of Dask = (dask-1 s - serial s) / points: the same points, one at a time, once
through submit / pickle / scheduler / as_completed and once in a loop. `dispatch_overhead_ms` is the same
for a no-op task over the same Point objects (pure Dask round trip, no work). Figures are medians over
--repeats (>= 3). speedup = serial s / dask s: above 1 means the Dask run is faster.

The machine's load average is recorded before and after the bench and at each repeat: on a shared 2-core
host another process's work shows up as a lower dask-2 speedup.

Writes bench/results/sweep.json (temp file + os.replace). Not a test: figures, not pass/fail.

    python bench/sweep.py [--spec neurocc/examples/sweep.toml] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import cpu_model, version, write_atomically  # bench/: the scripts run as files, so bench/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
OUTPUT = RESULTS / "sweep.json"
DEFAULT_SPEC = REPO / "neurocc" / "examples" / "sweep.toml"


def machine() -> dict:
    return {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "cpu": cpu_model(),
            "loadavg_before": list(os.getloadavg()), "python": platform.python_version(),
            "dask": version("dask"), "distributed": version("distributed"), "pandas": version("pandas"),
            "platform": platform.platform()}


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "uncommitted": git("status", "--porcelain").splitlines()}


def _noop(point: object) -> str:
    return getattr(point, "point_id", "")


def start_cluster(n_workers: int, trim: bool = True) -> tuple[object, float]:
    """The embedded cluster exactly as `neurocc sweep` starts it (run.py); trim=False: the same without the
    nanny's MALLOC_TRIM_THRESHOLD_ (a diagnostic: what that allocator setting costs the points)."""
    import dask
    import distributed  # noqa: F401 - registers the distributed.* config defaults

    from neurocc.sweep.run import _local_client

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    if not trim:
        env["MALLOC_TRIM_THRESHOLD_"] = None  # None unsets it (distributed.nanny._get_env_variables)
    t = time.perf_counter()
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        client = _local_client(n_workers)
    client.wait_for_workers(n_workers)
    return client, time.perf_counter() - t


def _close(client: object) -> None:
    from neurocc.sweep.run import _close as close_client  # the client, then its cluster, as the sweep does

    close_client(client)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="sweep spec whose points are timed")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median taken); >= 3")
    ap.add_argument("--out", type=Path, default=OUTPUT)
    args = ap.parse_args()
    if args.repeats < 3:
        ap.error("--repeats must be >= 3 (the figures are medians)")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    info = machine()
    git_at_start = git_state()

    from neurocc.sweep.point import run_point
    from neurocc.sweep.run import sweep
    from neurocc.sweep.spec import parse_spec

    spec = parse_spec(args.spec)
    points = spec.points
    n = len(points)
    clients: dict[str, object] = {}
    startup_s: dict[str, float] = {}
    try:
        for name, k, trim in (("dask-1", 1, True), ("dask-2", 2, True), ("dask-1-notrim", 1, False)):
            clients[name], startup_s[name] = start_cluster(k, trim)
        t = time.perf_counter()
        ref = [run_point(p) for p in points]  # warm this process too
        warm = {"serial": time.perf_counter() - t}
        for name, c in clients.items():
            t = time.perf_counter()
            sweep(spec, client=c, progress=False)
            warm[name] = time.perf_counter() - t
        print(f"{n} points; cluster start-up {startup_s}; warm-up runs {warm}", flush=True)
        ways = ["serial", "dask-1", "dask-2", "dask-1-notrim"]
        times: dict[str, list[float]] = {w: [] for w in ways}
        dispatch: list[float] = []
        loads = []
        for r in range(args.repeats):
            order = ways[r % len(ways):] + ways[:r % len(ways)]
            loads.append(os.getloadavg()[0])
            for way in order:
                t = time.perf_counter()
                if way == "serial":
                    rows = [run_point(p) for p in points]
                else:
                    df = sweep(spec, client=clients[way], progress=False)
                    rows = df.to_dict("records")
                times[way].append(time.perf_counter() - t)
                assert len(rows) == n and all(a["point_id"] == b["point_id"] for a, b in zip(rows, ref, strict=True))
            # pure Dask round trip: the same Point objects through a no-op task, one worker
            c1 = clients["dask-1"]
            t = time.perf_counter()
            futs = [c1.submit(_noop, p, pure=False) for p in points]
            assert c1.gather(futs) == [p.point_id for p in points]
            dispatch.append(time.perf_counter() - t)
            del futs
            print(f"repeat {r + 1} (order {order}, load {loads[-1]:.2f}): "
                  + ", ".join(f"{w} {times[w][-1]:.2f} s" for w in ways), flush=True)
    finally:
        for c in clients.values():
            _close(c)
    med = {w: statistics.median(v) for w, v in times.items()}
    info["loadavg_after"] = list(os.getloadavg())
    result = {
        "how_to_read": ("points_per_s = points / median wall time of one whole sweep; speedup = serial s / dask s "
                        "(above 1 = the Dask run is faster); dask_overhead_per_point_ms = (dask-1 s - serial s) "
                        "/ points; dispatch_overhead_ms = a no-op task over the same points on the 1-worker "
                        "cluster, per point. Medians over interleaved repeats (order rotated per repeat)."),
        "started_utc": started,
        "spec": str(args.spec.relative_to(REPO) if args.spec.resolve().is_relative_to(REPO) else args.spec),
        "points": n,
        "repeats": args.repeats,
        "host": info,
        "loadavg_1min_per_repeat": loads,
        "neurocc_git_at_start": git_at_start,
        "cluster_startup_s": startup_s,
        "warmup_s": warm,
        "wall_s": times,
        "median_s": med,
        "points_per_s": {w: n / s for w, s in med.items()},
        "speedup_serial_over": {"dask-1": med["serial"] / med["dask-1"], "dask-2": med["serial"] / med["dask-2"]},
        "scaling_dask1_over_dask2": med["dask-1"] / med["dask-2"],
        "dask_overhead_per_point_ms": (med["dask-1"] - med["serial"]) / n * 1e3,
        "dask_overhead_per_point_ms_without_malloc_trim": (med["dask-1-notrim"] - med["serial"]) / n * 1e3,
        "dispatch_overhead_ms": statistics.median(dispatch) / n * 1e3,
        "mean_point_s_serial": med["serial"] / n,
        "notes": [
            "dask-1 - serial is not Dask's scheduling (dispatch_overhead_ms: a no-op task); whether the "
            "nanny's MALLOC_TRIM_THRESHOLD_ is part of it: dask_overhead_per_point_ms_without_malloc_trim.",
            "2 worker processes on a host with nproc CPUs shared with other work: the dask-2 speedup is bounded "
            "by the load average recorded per repeat, not only by Dask.",
            "Points differ in cost (an N-MNIST CNN point on 256-neuron cores takes several times an SHD point), "
            "so 2 workers also lose to the longest point at the end of a short sweep.",
        ],
    }
    write_atomically(args.out, json.dumps(result, indent=1) + "\n")
    print("points/s: " + ", ".join(f"{w} {v:.2f}" for w, v in result["points_per_s"].items())
          + f"; Dask overhead {result['dask_overhead_per_point_ms']:.1f} ms/point "
          f"(no-op dispatch {result['dispatch_overhead_ms']:.1f} ms); wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
