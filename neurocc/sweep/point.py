"""One sweep point: compile, replay the input over the placement, measure quantization; one flat row.

The row's metric columns (COLUMNS) are fixed, so every row of a sweep has the same ones, error rows
included (None there). Definitions:

* cores: (chip, core) pairs the mapping uses (spike sources and delay extensions included: the placer
  gives each a core); a one-CPU target (Cortex-M) counts 1. chips: chips used (1 on one CPU).
* routing_entries: router entries after compression, summed over chips; routing_entries_max_chip: the
  fullest chip's count. Both 0 on one CPU (no router).
* bottleneck_step_s: mean time per step of the slowest core (on one CPU: of the CPU, which runs every
  slice in turn); worst_latency_s: the slowest step's time (its slowest core; on one CPU every slice in
  turn) plus the longest spike's transit: how long a step takes until its last spike has landed, so
  targets with and without a network compare (transit alone is 0 on one CPU). spike_latency_s: that
  transit alone, the longest spike's hops and send time (runtime/placement_sim.py).
* energy_per_inference_j: the whole input recording counts as one inference; energy.<component>_j its
  breakdown (synaptic, neuron, spike, links, dropped; dropped is 0.0 without over-delivery).
* link_load_max_packets: packets over the busiest link in the whole recording; link_load_total_packets:
  summed over links (one packet crossing 3 links counts 3). dropped_packets: over-delivered packets.
* spike_agreement: equal (step, neuron) cells of the float (hardware timing) and integer runs over every
  spiking population, as a fraction of all of them; argmax_agree: every output's winner agrees.
* compile_s: wall time of the target's pass list (not the input's float rate run, nor the simulations).
* peak_mem_mb: the process's peak resident memory during the point above its resident memory when the
  point started, sampled every 5 ms by a thread (psutil, which distributed depends on). At the start,
  gc.collect() and glibc's malloc_trim(0) hand earlier points' freed heap back to the OS, so a warm
  worker's leftovers do not hide this point's growth (without them the same point read 1-48 MB by
  position in the sweep; with them 32-34 MB, close to tracemalloc's 34 MB). Unlike ru_maxrss, which only
  grows, this is per point inside a long-lived Dask worker; it is the point's own when one point runs
  per worker process at a time. tracemalloc counts allocations exactly but slowed points ~1.5x,
  compile_s included. It includes building the network and the simulations, not only the compile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from typing import Any

import numpy as np

from ..compiler.errors import NeuroccError
from ..compiler.ir import Mapping, Network
from ..compiler.pipeline import compile_network
from ..runtime.placement_sim import PlacementReport, simulate_placement
from ..runtime.report import argmax_agree, gather, output_scores
from ..runtime.simulator import simulate_float, simulate_int
from .spec import Point, build_input, build_network, build_target

MEASUREMENT_COLUMNS = ("compile_s", "peak_mem_mb")  # the only columns allowed to differ run to run
ENERGY_COMPONENTS = ("synaptic", "neuron", "spike", "links", "dropped")
COLUMNS = (
    "cores", "chips", "routing_entries", "routing_entries_max_chip", "steps", "bottleneck_step_s",
    "worst_latency_s", "spike_latency_s", "energy_per_inference_j", *(f"energy.{c}_j" for c in ENERGY_COMPONENTS),
    "link_load_max_packets", "link_load_total_packets", "dropped_packets", "spike_agreement", "argmax_agree",
    *MEASUREMENT_COLUMNS,
)


def _head(point: Point) -> dict[str, Any]:
    row: dict[str, Any] = {"point_id": point.point_id, "network": point.network.get("label"),
                           "target": point.target, "status": "ok", "error": None}
    row.update({f"params.{k}": v for k, v in point.params.items()})
    row.update(dict.fromkeys(COLUMNS))
    return row


def _placement(mapping: Mapping, raster: Any, window: int | None, int_run: Any) -> PlacementReport:
    if window is None:
        return simulate_placement(mapping, result=int_run)
    from ..runtime.placement_window import simulate_placement_windowed  # H-window's module, loaded on use

    return simulate_placement_windowed(mapping, raster, window)


def _needs_traces(net: Network) -> bool:
    """Membrane traces are recorded only for a non-spiking output (a readout scores by them): [T, n] each."""
    return any(not net.populations[src].spiking for src in net.outputs.values())


def _agreement(net: Network, mapping: Mapping, raster: Any, int_run: Any) -> tuple[float | None, bool]:
    """Float (hardware timing) vs integer spikes, pooled over spiking populations; output argmax."""
    inet = mapping.network
    f = simulate_float(net, raster, latency="hardware", record=_needs_traces(net))
    equal = cells = 0
    for name, pop in net.populations.items():
        if pop.kind == "input" or not pop.spiking:
            continue
        i = gather(inet, int_run, name, pop.size)
        equal += int((f.spikes[name] == i).sum())
        cells += i.size
    fs, is_ = output_scores(net, inet, f, integer=False), output_scores(net, inet, int_run, integer=True)
    return (equal / cells if cells else None), all(argmax_agree(fs[k], is_[k]) for k in fs)


def _metrics(mapping: Mapping, report: PlacementReport) -> dict[str, Any]:
    one_cpu = bool(report.extra.get("one_cpu"))
    routing = mapping.routing
    per_link = [float(v.sum()) for v in report.links.values()]
    bottleneck = float(report.step_time_s.mean()) if one_cpu else float(report.bottleneck.get("time_per_step_s", 0.0))
    row = {
        "cores": 1 if one_cpu else len({(s.chip, s.core) for s in mapping.slices}),
        "chips": 1 if one_cpu else int(report.chips_used),
        "routing_entries": routing.entries_after() if routing is not None else 0,
        "routing_entries_max_chip": max((len(t) for t in routing.compressed.values()), default=0)
        if routing is not None else 0,
        "steps": int(report.steps),
        "bottleneck_step_s": bottleneck,
        "worst_latency_s": float(report.step_time_s.max(initial=0.0)) + float(report.max_latency_s),
        "spike_latency_s": float(report.max_latency_s),
        "energy_per_inference_j": float(report.energy_j),
        "link_load_max_packets": int(max(per_link, default=0.0)),
        "link_load_total_packets": int(sum(per_link)),
        "dropped_packets": int(report.extra.get("dropped_packets", 0)),
    }
    row.update({f"energy.{c}_j": float(report.energy_breakdown_j.get(c, 0.0)) for c in ENERGY_COMPONENTS})
    return row


def _rates(net: Network, raster: Any) -> dict[str, np.ndarray]:
    """Per-neuron spike rates of a float run, as neurocc.compile(inputs=...) weighs placement."""
    run = simulate_float(net, raster, record=False)
    return {name: s.mean(axis=0) for name, s in run.spikes.items()}


def _run(point: Point, row: dict[str, Any]) -> None:
    target = build_target(point)
    net = build_network(point)
    raster = build_input(point, net)
    rates = _rates(net, raster) if point.options.get("rates", "input") == "input" else None
    start = time.perf_counter()
    try:
        mapping = compile_network(net, target, progress=False, rates=rates, seed=int(point.options.get("seed", 0)))
    finally:
        row["compile_s"] = time.perf_counter() - start
    int_run = simulate_int(mapping.network, raster, record=_needs_traces(net))
    report = _placement(mapping, raster, point.window, int_run)
    row.update(_metrics(mapping, report))
    row["spike_agreement"], row["argmax_agree"] = _agreement(net, mapping, raster, int_run)


def _trim_heap() -> None:
    """glibc's malloc_trim(0): return free heap memory to the OS (a no-op elsewhere)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _PeakRSS:
    """Peak resident memory above the starting one, sampled by a daemon thread while the block runs."""

    INTERVAL_S = 0.005

    def __enter__(self) -> _PeakRSS:
        import psutil

        gc.collect()  # cycles first: their memory is what malloc_trim can then return
        _trim_heap()  # hand freed heap pages back, so earlier points' leftovers do not hide this one's growth
        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="neurocc-peak-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def run_point(point: Point) -> dict[str, Any]:
    """One flat row of scalars. A NeuroccError (the network does not fit, a bad file) becomes the row's
    status="error" and error="ClassName: message"; any other exception is a bug and propagates."""
    row = _head(point)
    with _PeakRSS() as mem:
        try:
            _run(point, row)
        except NeuroccError as exc:
            row.update(dict.fromkeys(c for c in COLUMNS if c != "compile_s"))
            row["status"], row["error"] = "error", f"{type(exc).__name__}: {exc}"
    row["peak_mem_mb"] = mem.mb
    return row
