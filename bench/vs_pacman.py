"""neurocc's mapper against PACMAN (sPyNNaker's) on the same graphs, interleaved in one run.

Graphs. The harness's population graphs (../shared/anchors/pacman_harness.py): populations of
250 neurons, a projection between each ordered pair with probability p (same seeded draw on
both sides), `atoms_per_core` neurons per core, mapped onto a SpiNNaker-1 mesh of the size
PACMAN's virtual machine has. On neurocc's side each projection connects every source slice to
every destination slice (one synapse per slice pair), as an application edge does in PACMAN.

Method. For each config, `--repeats` rounds of: PACMAN, then neurocc, each in a fresh child
process (so neither side inherits the other's heap, caches or imports). PACMAN runs in its own
venv (bench/.venv-pacman, created on first use with `pip install spinnaker-pacman`), through
this file's `--pacman-worker`, which loads the harness with runpy, runs its main() and reports
the harness's own stage times at full precision. neurocc runs through `--neurocc-worker`, which
calls lower, quantize, partition, place and route from neurocc.compiler.passes and times each
call. Every child reports its own peak RSS (VmHWM of its address space, from
/proc/self/status; getrusage(RUSAGE_SELF).ru_maxrss where /proc is missing) and CPU time; the
parent records each child's wall time (process start to exit, so interpreter start, imports
and building the graph are in it) and the load average before and after each child. The
parent imports neither numpy nor neurocc, so the children start small. Graph construction is
outside the stage times on both sides.

Stages. PACMAN: partition, place, route, keys, tables, compress (pair compressor with
accept_overflow, as sPyNNaker's default). Creating the virtual machine is not timed by the
harness. neurocc: lower, quantize, partition, place, and route (keys, trees, tables and
compression are one call, timed as one stage).
    mapping: neurocc partition + place + route   vs  PACMAN partition .. tables + compress
    total:   neurocc lower + quantize + mapping  vs  PACMAN mapping (it has no lower/quantize)
    process_wall: the two child processes' wall times.
lower + quantize have no PACMAN counterpart; they are reported on their own and in the total.

Reading the figures. speedup = PACMAN seconds / neurocc seconds, from the medians over the
repeats: above 1 means neurocc is faster (2.0 = neurocc takes half PACMAN's time), below 1 means
PACMAN is faster. Every figure's median is taken on its own, so stage medians need not add up
to the mapping median. Each repeat's raw figures and paired speedups are kept under "repeats";
compare each child's cpu_s with its process_wall_s and the load averages to see how contended
the machine was.
Entries are per-chip routing-table entries before and after compression; a chip is over the
limit when it holds more than the router's 1,023 entries.

Code measured. By default neurocc's working tree. With `--neurocc-rev REV` (e.g. HEAD) the
workers import a `git archive` snapshot of that commit instead, so edits made in the checkout
while the benchmark runs cannot change (or break) what is measured; the JSON records which.

    python bench/vs_pacman.py [--configs A C D] [--repeats 3] [--neurocc-rev HEAD] [--out PATH]

Writes bench/results/vs_pacman.json (atomically). Not a test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import resource
import runpy
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HARNESS = HERE.parents[1] / "shared" / "anchors" / "pacman_harness.py"
PACMAN_VENV = HERE / ".venv-pacman"
DEFAULT_OUT = HERE / "results" / "vs_pacman.json"
CONFIGS = {
    "A": {"pops": 200, "neurons": 250, "atoms_per_core": 256, "p_conn": 0.1},
    "C": {"pops": 1000, "neurons": 250, "atoms_per_core": 64, "p_conn": 0.1},
    "D": {"pops": 1600, "neurons": 250, "atoms_per_core": 256, "p_conn": 0.1},
}
# Harness stopwatch names -> stage, matched by substring (the key allocator and table
# generator names depend on the harness's --allocator / --generator).
PACMAN_STAGES = {
    "partition": "splitter_partitioner", "place": "place_application_graph",
    "route": "route_application_graph", "keys": "_allocate", "tables": "_routing_table_gen",
    "compress": "compress:",
}
NEUROCC_STAGES = ["lower", "quantize", "partition", "place", "route+keys+tables+compress"]
SIDES = ("pacman", "neurocc")
RESULT_MARK = "@@vs_pacman-result "  # prefixes the one JSON line a worker prints


# ---------------------------------------------------------------- helpers for both processes

def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM belongs to the current address space, so
    unlike ru_maxrss it does not inherit the parent's peak across fork + exec."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit_result(result: dict) -> None:
    print(RESULT_MARK + json.dumps(result), flush=True)


# ---------------------------------------------------------------- PACMAN worker (its own venv)

def harness_args(cfg: dict, seed: int) -> list[str]:
    return ["--pops", str(cfg["pops"]), "--neurons", str(cfg["neurons"]),
            "--atoms-per-core", str(cfg["atoms_per_core"]), "--p-conn", str(cfg["p_conn"]),
            "--seed", str(seed), "--compressors", "pair"]


def pacman_worker(config: str, seed: int) -> None:
    """Runs the harness's main() in this process and reports its stopwatch and peak RSS."""
    from importlib.metadata import version

    harness = runpy.run_path(str(HARNESS), run_name="pacman_harness")
    watches = []  # the harness keeps its Stopwatch local to main(): record it when built
    stopwatch = harness["Stopwatch"]
    plain_init = stopwatch.__init__

    def recording_init(self):
        plain_init(self)
        watches.append(self)

    stopwatch.__init__ = recording_init
    rc = harness["main"](harness_args(CONFIGS[config], seed))
    emit_result({"rc": rc, "harness_times_s": watches[0].times, "peak_rss_mb": peak_rss_mb(),
                 "cpu_s": cpu_s(), "pacman_version": version("SpiNNaker_PACMAN")})


def pacman_python() -> str:
    py = PACMAN_VENV / "bin" / "python"
    if not py.exists():
        venv.create(PACMAN_VENV, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "spinnaker-pacman"], check=True)
    return str(py)


# ---------------------------------------------------------------- neurocc worker

def same_graph(cfg: dict, seed: int):
    """The harness's population graph (same RNG draw order) as a neurocc Network whose projections are
    stored end to end (FloatProjections: how a PyNN-style frontend with 10^5 projections hands them over)."""
    import random

    import numpy as np

    from neurocc.compiler.ir import INPUT, Blocks, Network, Population, make_projection, make_projections

    rng = random.Random(seed)
    n = cfg["neurons"]
    reps = np.arange(0, n, cfg["atoms_per_core"])  # one representative neuron per slice
    pops = {"input": Population("input", INPUT, (1,))}
    for i in range(cfg["pops"]):
        pops[f"pop{i}"] = Population(f"pop{i}", "LIF", (n,), {
            "tau": np.full(n, 0.02), "r": np.ones(n), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
            "v_reset": np.zeros(n)})
    rows, cols = np.meshgrid(reps, reps, indexing="ij")
    pairs = [(f"pop{s}", f"pop{t}") for s in range(cfg["pops"]) for t in range(cfg["pops"])
             if rng.random() < cfg["p_conn"]]
    # Every projection has the same matrix (one synapse per slice pair): build it once, repeat its arrays.
    one = make_projection("pop0", "pop0", rows.ravel(), cols.ravel(), np.full(rows.size, 0.1),
                          np.zeros(rows.size, np.int64), (n, n))
    w, p = one.weights, len(pairs)
    rows = np.repeat(np.arange(n, dtype=w.indices.dtype), np.diff(w.indptr))
    blocks = Blocks(np.full(p, n, np.int64), np.full(p, n, np.int64), np.arange(p + 1, dtype=np.int64) * w.nnz,
                    np.tile(w.indices, p), np.tile(w.data, p), np.tile(one.delays, p), rows=np.tile(rows, p))
    projections = make_projections(list(pops), [a for a, _ in pairs], [b for _, b in pairs], blocks)
    return Network(pops, projections, ["input"], {"out": "pop0"}, 1e-3)


def neurocc_worker(config: str, seed: int, machine: list[int]) -> None:
    """Maps the graph with neurocc's passes, timing each call, and reports as pacman_worker."""
    import dataclasses

    from neurocc.compiler.passes.lower import lower
    from neurocc.compiler.passes.partition import partition
    from neurocc.compiler.passes.place import place
    from neurocc.compiler.passes.quantize import quantize
    from neurocc.compiler.passes.route import route
    from neurocc.compiler.targets.target import Mesh, load_target

    cfg = CONFIGS[config]
    net = same_graph(cfg, seed)
    t = load_target("spinnaker1")
    target = dataclasses.replace(
        t, mesh=Mesh(t.mesh.topology, machine[0], machine[1], t.mesh.cores_per_chip),
        core=dataclasses.replace(t.core, neurons=cfg["atoms_per_core"]))
    times = {}

    def timed(stage, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times[stage] = time.perf_counter() - start
        return out

    lowered = timed("lower", lower, net)
    inet = timed("quantize", quantize, lowered, target)
    del lowered
    part = timed("partition", partition, inet, target)
    placement = timed("place", place, inet, part, target)
    # strict=False: tables over the router's limit come back as they are, to be counted.
    routing = timed("route+keys+tables+compress", route, inet, placement.slices, target, strict=False)
    limit = target.router.entries_per_chip
    before = [len(v) for v in routing.tables.values()]
    after = [len(v) for v in routing.compressed.values()]
    # The input population (one spike source) has no counterpart in the harness: not counted.
    ours = [s for s in placement.slices if s.population != "input"]
    import neurocc

    made = getattr(inet.projections, "_items", None)  # a table makes a projection object only when one is read
    emit_result({
        "neurocc_imported_from": str(Path(neurocc.__file__).parent),
        "projections_stored_as": type(inet.projections).__name__,
        "projection_objects_made": sum(item is not None for item in made) if made is not None else None,
        "stage_times_s": times, "peak_rss_mb": peak_rss_mb(), "cpu_s": cpu_s(),
        "cores": len(ours), "chips": len({s.chip for s in ours}), "placement_method": placement.method,
        "entries": {
            "limit_per_chip": limit, "chips_with_tables": len(before),
            "before_compression_total": sum(before), "before_compression_max": max(before),
            "after_compression_total": sum(after), "after_compression_max": max(after),
            "chips_over_limit_before": sum(1 for b in before if b > limit),
            "chips_over_limit_after": sum(1 for a in after if a > limit),
        },
        # Over-delivery (compiler/passes/over_delivery.py): what fitting the tables costs in packets. Per spike
        # of each emitter: deliveries to cores holding its synapses, and to cores that drop it; tree link hops.
        "over_delivery": {
            "collapsed_source_chips": len(getattr(routing, "collapsed_chips", [])),
            "deliveries_exact": sum(len(e.destinations) for e in routing.emitters),
            "deliveries_dropped": sum(len(getattr(e, "over_delivered", [])) for e in routing.emitters),
            "tree_link_hops": sum(bin(w & 0x3F).count("1") for tree in routing.trees for w in tree.values()),
        },
    })


# ---------------------------------------------------------------- parent: run, parse, summarise

def snapshot(rev: str, dest: Path) -> Path:
    """neurocc at commit `rev`, laid out as installed (compiler/ etc. become neurocc.compiler)."""
    tar = subprocess.run(["git", "archive", rev, "neurocc", "compiler", "backends", "runtime", "firmware"],
                         cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data")
    for sub in ("compiler", "backends", "runtime", "firmware"):
        os.replace(dest / sub, dest / "neurocc" / sub)
    return dest


def run_child(cmd: list[str], env: dict | None = None) -> tuple[str, dict]:
    """Runs one worker; returns its stdout and its result line with wall time and load added."""
    load_start = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - start
    load_end = os.getloadavg()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith(RESULT_MARK))
    result = json.loads(line[len(RESULT_MARK):])
    result.update(process_wall_s=wall, loadavg_start=list(load_start), loadavg_end=list(load_end))
    return proc.stdout, result


def table_line(name: str, out: str) -> dict:
    m = re.search(rf"{name}: chips=\s*(\d+) total=\s*(\d+) max=\s*(\d+) .*chips_over_limit=(\d+)", out)
    return {"chips": int(m.group(1)), "total": int(m.group(2)), "max": int(m.group(3)), "over": int(m.group(4))}


def run_pacman(config: str, seed: int) -> dict:
    out, res = run_child([pacman_python(), str(Path(__file__).resolve()), "--pacman-worker", config, str(seed)])
    stages = dict.fromkeys(PACMAN_STAGES, 0.0)
    for name, seconds in res.pop("harness_times_s").items():
        stage = next((s for s, marker in PACMAN_STAGES.items() if marker in name), None)
        if stage is None:
            raise RuntimeError(f"harness stage {name!r} matches none of {list(PACMAN_STAGES)}")
        stages[stage] += seconds
    machine = re.search(r"machine: .*? (\d+)x(\d+), (\d+) chips.*?, (\d+) router entries/chip", out)
    placed = re.search(r"placed (\d+) cores on (\d+) chips", out)
    before, after = table_line("uncompressed", out), table_line("pair", out)
    res.update(
        stage_times_s=stages, projections=int(re.search(r"(\d+) projections", out).group(1)),
        machine=[int(machine.group(1)), int(machine.group(2))],
        cores=int(placed.group(1)), chips=int(placed.group(2)),
        entries={
            "limit_per_chip": int(machine.group(4)), "chips_with_tables": before["chips"],
            "before_compression_total": before["total"], "before_compression_max": before["max"],
            "after_compression_total": after["total"], "after_compression_max": after["max"],
            "chips_over_limit_before": before["over"], "chips_over_limit_after": after["over"],
        })
    return res


def run_neurocc(config: str, seed: int, machine: list[int], code: Path | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--neurocc-worker", config, str(seed),
           f"{machine[0]}x{machine[1]}"]
    # PYTHONPATH precedes the editable install's finder (appended to sys.meta_path).
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    return run_child(cmd, env)[1]


def pacman_seconds(res: dict) -> dict:
    st = res["stage_times_s"]
    mapping = sum(st.values())  # partition .. tables + compress
    return {**st, "mapping_without_compress": mapping - st["compress"], "mapping": mapping,
            "total": mapping, "process_wall": res["process_wall_s"]}


def neurocc_seconds(res: dict) -> dict:
    st = res["stage_times_s"]
    lq = st["lower"] + st["quantize"]
    mapping = st["partition"] + st["place"] + st["route+keys+tables+compress"]
    return {**st, "lower+quantize": lq, "mapping": mapping, "total": lq + mapping,
            "process_wall": res["process_wall_s"]}


def speedups(pac: dict, ours: dict) -> dict:
    """PACMAN s / neurocc s for every comparable figure (above 1 = neurocc faster)."""
    pairs = {
        "mapping": ("mapping", "mapping"), "total": ("total", "total"),
        "process_wall": ("process_wall", "process_wall"),
        "partition": ("partition", "partition"), "place": ("place", "place"),
        "route+keys+tables+compress": ("route+keys+tables+compress", "route+keys+tables+compress"),
        "mapping_vs_pacman_mapping_without_compress": ("mapping_without_compress", "mapping"),
    }
    pac = {**pac, "route+keys+tables+compress": pac["route"] + pac["keys"] + pac["tables"] + pac["compress"]}
    return {name: pac[p] / ours[o] if ours[o] > 0 else None for name, (p, o) in pairs.items()}


def medians(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def run_config(name: str, seed: int, repeats: int, code: Path | None) -> dict:
    cfg = CONFIGS[name]
    print(f"config {name}: {cfg}, {repeats} interleaved repeats", flush=True)
    runs = []
    for r in range(repeats):
        pac = run_pacman(name, seed)
        ours = run_neurocc(name, seed, pac["machine"], code)
        pac_s, our_s = pacman_seconds(pac), neurocc_seconds(ours)
        runs.append({"pacman": pac, "neurocc": ours, "pacman_s": pac_s, "neurocc_s": our_s,
                     "speedup": speedups(pac_s, our_s)})
        print(f"  repeat {r + 1}: PACMAN mapping {pac_s['mapping']:.3f} s (compress {pac_s['compress']:.3f}), "
              f"{pac['peak_rss_mb']:.0f} MB | neurocc lower+quantize {our_s['lower+quantize']:.3f} s, "
              f"mapping {our_s['mapping']:.3f} s, {ours['peak_rss_mb']:.0f} MB | speedup mapping "
              f"{runs[-1]['speedup']['mapping']:.2f}x, total {runs[-1]['speedup']['total']:.2f}x | "
              f"load {pac['loadavg_start'][0]:.2f} -> {ours['loadavg_end'][0]:.2f}", flush=True)
    pac_med, our_med = medians([r["pacman_s"] for r in runs]), medians([r["neurocc_s"] for r in runs])
    first = runs[0]
    summary = {
        "config": cfg, "projections": first["pacman"]["projections"], "machine": first["pacman"]["machine"],
        "repeats_n": repeats,
        "median_pacman_s": pac_med, "median_neurocc_s": our_med,
        "speedup_pacman_s_over_neurocc_s": speedups(pac_med, our_med),
        "speedup_per_repeat": {k: [r["speedup"][k] for r in runs] for k in ("mapping", "total")},
        "median_peak_rss_mb": {side: statistics.median(r[side]["peak_rss_mb"] for r in runs) for side in SIDES},
        # CPU time well below process wall time means the child was starved (load above nproc).
        "median_cpu_s": {side: statistics.median(r[side]["cpu_s"] for r in runs) for side in SIDES},
        "entries": {side: first[side]["entries"] for side in SIDES},
        "entries_same_every_repeat": all(r[side]["entries"] == first[side]["entries"] for r in runs for side in SIDES),
        "placement": {"pacman": {"cores": first["pacman"]["cores"], "chips": first["pacman"]["chips"]},
                      "neurocc": {"cores": first["neurocc"]["cores"], "chips": first["neurocc"]["chips"],
                                  "method": first["neurocc"]["placement_method"]}},
        "repeats": [{"pacman": r["pacman"], "neurocc": r["neurocc"], "speedup": r["speedup"]} for r in runs],
    }
    sp = summary["speedup_pacman_s_over_neurocc_s"]
    print(f"  median: speedup mapping {sp['mapping']:.2f}x, total {sp['total']:.2f}x, "
          f"process wall {sp['process_wall']:.2f}x; entries after compression PACMAN "
          f"{summary['entries']['pacman']['after_compression_total']} / neurocc "
          f"{summary['entries']['neurocc']['after_compression_total']}", flush=True)
    return summary


def git_state(rev: str = "HEAD") -> dict:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    return {"commit": git("rev-parse", rev), "uncommitted": git("status", "--porcelain").splitlines()}


def write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(obj, f, indent=1)
    os.replace(f.name, path)


def main() -> int:
    ap = argparse.ArgumentParser(description="neurocc vs PACMAN mapping, interleaved repeats")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--neurocc-rev", help="measure this commit's neurocc (a git archive snapshot), "
                                          "not the working tree")
    ap.add_argument("--pacman-worker", nargs=2, metavar=("CONFIG", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("--neurocc-worker", nargs=3, metavar=("CONFIG", "SEED", "WxH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pacman_worker:
        pacman_worker(args.pacman_worker[0], int(args.pacman_worker[1]))
        return 0
    if args.neurocc_worker:
        config, seed, machine = args.neurocc_worker
        neurocc_worker(config, int(seed), [int(v) for v in machine.split("x")])
        return 0
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    git_at_start = git_state()  # HEAD may move while the benchmark runs: resolve it now
    measured = git_state(args.neurocc_rev)["commit"] if args.neurocc_rev else None
    with tempfile.TemporaryDirectory(prefix="vs_pacman-neurocc-") as tmp:
        code = snapshot(measured, Path(tmp)) if measured else None
        results = {name: run_config(name, args.seed, args.repeats, code) for name in args.configs}
    write_json_atomic(args.out, {
        "how_to_read": "speedup = PACMAN s / neurocc s from medians over interleaved repeats; "
                       "above 1 = neurocc faster. mapping: neurocc partition+place+route vs PACMAN "
                       "partition..tables + compress; total adds neurocc's lower+quantize. "
                       "Each figure's median is taken on its own.",
        "started_utc": started, "seed": args.seed, "repeats": args.repeats,
        "host": {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                 "platform": platform.platform(), "python": platform.python_version(),
                 "pacman_version": next(iter(results.values()))["repeats"][0]["pacman"]["pacman_version"]},
        "neurocc_git_at_start": git_at_start,
        "neurocc_code_measured": (f"git archive of {args.neurocc_rev} = {measured}" if measured
                                  else "working tree (see neurocc_git_at_start.uncommitted)"),
        "configs": results,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
