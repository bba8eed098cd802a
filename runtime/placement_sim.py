"""Placement simulation: replay the reference simulator's spikes over a Mapping.

Per core: synaptic events, neuron updates and spikes per step, and the time they take against
the target's real-time budget. Per link: packets per step (every spike crosses each link of its
emitter's multicast tree once). Per spike: hops and latency. Energy per inference from the
target's cost model. All counts are exact replays; times and energies are the cost model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..compiler.ir import IntNetwork, Mapping, Role, Routing
from ..compiler.targets.mesh import N_LINKS, step
from .conv import ConvEvents
from .simulator import SimResult, simulate_int


@dataclass
class PlacementReport:
    target: str
    steps: int
    cores: list[dict[str, Any]]  # per slice/core: chip, core, label, events, updates, spikes, time per step
    links: dict[tuple[tuple[int, int], int], np.ndarray]  # (chip, link) -> packets per step [T]
    step_time_s: np.ndarray  # [T] slowest core's time per step
    budget_s: float
    energy_j: float
    energy_breakdown_j: dict[str, float]
    mean_hops: float
    max_hops: int
    max_latency_s: float
    chips_used: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bottleneck(self) -> dict[str, Any]:
        return max(self.cores, key=lambda c: c["time_per_step_s"]) if self.cores else {}

    def link_totals(self) -> dict[str, int]:
        return {f"{chip[0]},{chip[1]}:{'E NE N W SW S'.split()[link]}": int(v.sum())
                for (chip, link), v in self.links.items()}

    def text(self) -> str:
        from .report import table

        rows = sorted(self.cores, key=lambda c: -c["time_per_step_s"])[:12]
        body = table(
            ["chip", "core", "slice", "neurons", "syn events/step", "spikes/step", "time/step (us)",
             "synapse B"],
            [[f"{c['chip'][0]},{c['chip'][1]}", c["core"], c["label"], c["neurons"], f"{c['events_per_step']:.1f}",
              f"{c['spikes_per_step']:.2f}", f"{c['time_per_step_s'] * 1e6:.3f}", c["synapse_bytes"]] for c in rows],
        )
        busiest = sorted(self.link_totals().items(), key=lambda kv: -kv[1])[:8]
        b = self.bottleneck
        if self.extra.get("one_cpu"):
            mean = float(self.step_time_s.mean())
            where = [f"placement on {self.target}: {len(self.cores)} slices on one CPU, {self.steps} steps",
                     f"one CPU runs every slice in turn: {mean * 1e6:.3f} us/step of a {self.budget_s * 1e6:.0f} us "
                     f"budget ({100 * mean / self.budget_s:.2f}%); largest slice {b.get('label')}"]
        else:
            where = [f"placement on {self.target}: {len(self.cores)} cores on {self.chips_used} chip(s), "
                     f"{self.steps} steps",
                     f"bottleneck: core {b.get('core')} on chip {b.get('chip')} ({b.get('label')}), "
                     f"{b.get('time_per_step_s', 0) * 1e6:.3f} us/step of a {self.budget_s * 1e6:.0f} us budget "
                     f"({100 * b.get('time_per_step_s', 0) / self.budget_s:.2f}%)"]
        lines = [
            *where,
            f"slowest step: {self.step_time_s.max() * 1e6:.3f} us; mean {self.step_time_s.mean() * 1e6:.3f} us",
            f"spikes: mean {self.mean_hops:.2f} link hops per packet, max {self.max_hops}, "
            f"worst latency {self.max_latency_s * 1e9:.1f} ns",
            f"energy per inference: {self.energy_j * 1e6:.4f} uJ "
            + ", ".join(f"{k} {v * 1e6:.4f} uJ" for k, v in self.energy_breakdown_j.items()),
            *([f"over-delivery: {self.extra['dropped_packets']} packets reached cores with no synapse for them, "
               "which dropped them (counted in core time and energy)"] if self.extra.get("dropped_packets") else []),
            "", "cores by time per step (top 12):", body, "",
            "busiest links (packets, whole run): " + (", ".join(f"{k} {v}" for k, v in busiest) or "none (one chip)"),
        ]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "steps": self.steps, "chips_used": self.chips_used,
            "cores": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items()} for c in self.cores],
            "links_packets_total": self.link_totals(),
            "step_time_s": {"max": float(self.step_time_s.max()), "mean": float(self.step_time_s.mean())},
            "budget_s": self.budget_s, "energy_j": self.energy_j, "energy_breakdown_j": self.energy_breakdown_j,
            "mean_hops": self.mean_hops, "max_hops": self.max_hops, "max_latency_s": self.max_latency_s,
        }


def _tree_links(tree: dict[tuple[int, int], int]) -> list[tuple[tuple[int, int], int]]:
    return [(chip, link) for chip, word in tree.items() for link in range(N_LINKS) if word >> link & 1]


def _depths(tree: dict[tuple[int, int], int], root: tuple[int, int]) -> dict[tuple[int, int], int]:
    depth = {root: 0}
    frontier = [root]
    while frontier:
        chip = frontier.pop()
        for link in range(N_LINKS):
            if tree.get(chip, 0) >> link & 1:
                nxt = step(chip, link)
                if nxt not in depth:
                    depth[nxt] = depth[chip] + 1
                    frontier.append(nxt)
    return depth


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """x delayed by k steps (zeros in front), same length."""
    if k == 0:
        return x
    out = np.zeros_like(x)
    if k < x.shape[0]:
        out[k:] = x[:-k]
    return out


def _stage_neurons(inet: IntNetwork, population: str, start: int, stop: int, stage: int, slots: int) -> np.ndarray:
    """Which neurons of population[start:stop] have a synapse with delay // slots == stage (bool [stop - start])."""
    need = np.zeros(stop - start, dtype=bool)
    for proj in inet.projections:
        if proj.pre != population:
            continue
        cols = proj.weights.indices
        sel = (cols >= start) & (cols < stop) & (proj.delays // slots == stage)
        need[cols[sel] - start] = True
    return need


@dataclass
class PlacementCounts:
    """The exact counts a replay finds, per step: everything a PlacementReport is computed from.

    runtime/placement_window.py concatenates the counts of time windows and reports them as one run's.
    """

    steps: int
    events: np.ndarray  # [T, slices] synaptic events landing on each slice (conv events included)
    conv_events: np.ndarray  # [T, slices] the part of `events` that conv kernels deliver
    dropped: np.ndarray  # [T, slices] over-delivered packets each core drops
    spikes: dict[int, np.ndarray]  # slice -> [T] spikes it emits per step (int64)
    links: dict[tuple[tuple[int, int], int], np.ndarray]  # (chip, link) -> packets per step [T]
    hop_total: float  # link crossings of all packets (integer-valued)
    packets_total: float  # packets sent by all emitters (integer-valued)
    max_hops: int  # deepest destination of an emitter that sent anything


def _slots(mapping: Mapping) -> int:
    # Delays at or beyond a core's slots are re-sent by delay extensions; one CPU's rings hold them all.
    target = mapping.target
    return target.core.delay_slots if target.core is not None else target.format.max_delay + 1


def delay_context(mapping: Mapping) -> int:
    """How many steps before a step its events and packets can come from: delay extensions re-send a
    spike stage x slots steps late (0 when every delay fits a core's slots)."""
    slots = _slots(mapping)
    return max((int(p.delays.max()) // slots * slots for p in mapping.network.projections
                if p.conv is None and p.delays.size), default=0)


def simulate_placement(mapping: Mapping, raster: np.ndarray | None = None, result: SimResult | None = None
                       ) -> PlacementReport:
    """Replay a reference run (given, or computed from `raster`) over the mapping."""
    if result is None:
        if raster is None:
            raise ValueError("simulate_placement needs a raster or a reference result")
        result = simulate_int(mapping.network, raster, record=False)
    return report_from_counts(mapping, replay_counts(mapping, result))


def replay_counts(mapping: Mapping, result: SimResult, context: int = 0) -> PlacementCounts:
    """The per-step counts of a reference run over the mapping.

    The first `context` steps of `result` are history only (at least `delay_context(mapping)` steps of a
    time window's past, or zeros before step 0): their spikes land, late, in the steps after them, which
    are the ones counted.
    """
    inet = mapping.network
    routing: Routing | None = mapping.routing  # None on one CPU: no packets leave it
    slots = _slots(mapping)
    steps = result.steps - context
    slices = mapping.slices
    spikes = {k: result.spikes[s.population][:, s.start:s.stop].astype(np.int64) for k, s in enumerate(slices)}
    per_step_spikes = {k: v.sum(axis=1) for k, v in spikes.items()}
    events = np.zeros((result.steps, len(slices)))
    conv_events = np.zeros((result.steps, len(slices)))  # the part of `events` that conv kernels deliver
    # Synaptic events: a spike of neuron j at stage s lands on every synapse from j with
    # delay // slots == s in the destination slice, s x slots steps later.
    neuron_slices: dict[str, list[int]] = {}
    for k, sl in enumerate(slices):
        if sl.role != Role.DELAY:
            neuron_slices.setdefault(sl.population, []).append(k)
    for proj in inet.projections:
        if proj.conv is not None:  # the kernel's events, as the executors scatter it (a pool prefix pools first)
            dst_ks = neuron_slices[proj.post]
            stops = np.asarray([slices[k].stop for k in dst_ks])
            scatter = ConvEvents(proj.conv)
            pre_all = result.spikes[proj.pre]
            for t in range(context, pre_all.shape[0]):  # history steps land no conv events in the window
                pre = pre_all[t]
                if pre.any():
                    dst = np.searchsorted(stops, scatter.event_targets(pre), side="right")
                    conv_events[t, dst_ks] += np.bincount(dst, minlength=len(dst_ks))
            continue
        csr = proj.weights
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        dst_ks = neuron_slices[proj.post]
        dst = np.searchsorted(np.asarray([slices[k].stop for k in dst_ks]), rows, side="right")
        stage = proj.delays // slots
        pre_spikes = result.spikes[proj.pre].astype(np.float64)
        for st in np.unique(stage):
            sel = stage == st
            counts = sp.csr_array((np.ones(int(sel.sum())), (csr.indices[sel], dst[sel])),
                                  shape=(csr.shape[1], len(dst_ks)))
            landed = _shift(np.asarray(pre_spikes @ counts), int(st) * slots)
            events[:, dst_ks] += landed
    events += conv_events
    events, conv_events = events[context:], conv_events[context:]
    links: dict[tuple[tuple[int, int], int], np.ndarray] = {}
    hop_total = 0.0
    packets_total = 0.0
    max_hops = 0
    dropped = np.zeros((steps, len(slices)))  # over-delivered packets per core per step
    for e_idx, em in enumerate(routing.emitters if routing is not None else []):
        tree = routing.trees[e_idx]
        src = slices[em.slice_index]
        # A delay-extension emitter re-sends, `stage` x slots steps later, the spikes of those source
        # neurons that have a synapse at that stage (its per-stage bit field, as sPyNNaker's delay_blocks):
        # a neuron without one would send a packet no core has a row for.
        if src.role == Role.DELAY:
            needed = _stage_neurons(inet, src.population, src.start, src.stop, em.stage, slots)
            per_stage = spikes[em.slice_index][:, needed].sum(axis=1)
            sent = _shift(per_stage, em.stage * slots).astype(float)
        else:
            sent = per_step_spikes[em.slice_index].astype(float)
        sent = sent[context:]
        tree_links = _tree_links(tree)
        for key in tree_links:
            links[key] = links.get(key, np.zeros(steps)) + sent
        depth = _depths(tree, src.chip)
        dest_depth = max((depth.get(slices[d].chip, 0) for d in em.destinations), default=0)
        max_hops = max(max_hops, dest_depth) if sent.any() else max_hops
        hop_total += sent.sum() * len(tree_links)
        packets_total += sent.sum()
        for d in em.over_delivered:  # over-delivery: these cores receive the packet and drop it
            dropped[:, d] += sent
    return PlacementCounts(steps, events, conv_events, dropped, {k: v[context:] for k, v in per_step_spikes.items()},
                           links, hop_total, packets_total, max_hops)


def report_from_counts(mapping: Mapping, counts: PlacementCounts) -> PlacementReport:
    """Per-core load, step time, energy, hops and latency from a replay's counts."""
    target, slices, usage, cost = mapping.target, mapping.slices, mapping.usage, mapping.target.cost
    steps, events, conv_events, dropped = counts.steps, counts.events, counts.conv_events, counts.dropped
    per_step_spikes, links = counts.spikes, counts.links
    hop_total, packets_total, max_hops = counts.hop_total, counts.packets_total, counts.max_hops
    cores = []
    step_time = np.zeros(steps)
    # A "single" mesh is one CPU (an MCU) that runs every slice in turn: its step takes the sum.
    one_cpu = target.one_cpu or target.mesh.topology == "single"
    e_syn = e_upd = e_spk = e_drop = 0.0
    for k, s in enumerate(slices):
        neurons = s.size if s.role == "neurons" else 0
        out_spikes = per_step_spikes[k] if s.role != Role.DELAY else np.zeros(steps)
        # A dropped packet costs its core one master population table search that finds nothing; no primary
        # figure for that: charged as one synaptic event (time and energy) [U].
        t = (events[:, k] + dropped[:, k]) * cost.time_per_synaptic_event_s \
            + neurons * cost.time_per_neuron_update_s + out_spikes * cost.time_per_spike_s
        step_time = step_time + t if one_cpu else np.maximum(step_time, t)
        e_syn += events[:, k].sum() * cost.energy_per_synaptic_event_j
        e_drop += dropped[:, k].sum() * cost.energy_per_synaptic_event_j
        e_upd += neurons * steps * cost.energy_per_neuron_update_j
        e_spk += out_spikes.sum() * cost.energy_per_spike_j
        cores.append({
            "chip": s.chip, "core": s.core, "label": s.label, "role": s.role, "neurons": s.size,
            "events_per_step": float(events[:, k].mean()), "events_max": float(events[:, k].max()),
            "dropped_per_step": float(dropped[:, k].mean()),
            "conv_events_per_step": float(conv_events[:, k].mean()),
            "kernel_bytes": int(usage[k].kernel_bytes) if usage is not None else
            (mapping.image.kernel_bytes_by_population.get(s.population, 0) if mapping.image is not None else 0),
            "spikes_per_step": float(out_spikes.mean()), "time_per_step_s": float(t.mean()),
            "time_max_s": float(t.max()),
            "synapse_bytes": int(usage[k].synapse_bytes) if usage is not None else
            (mapping.image.flash_by_population.get(s.population, 0) if mapping.image is not None else 0),
        })
    e_hop = sum(v.sum() for v in links.values()) * cost.energy_per_hop_j
    breakdown = {"synaptic": e_syn, "neuron": e_upd, "spike": e_spk, "links": e_hop}
    if dropped.any():
        breakdown["dropped"] = e_drop
    return PlacementReport(
        target.name, steps, cores, links, step_time, cost.timestep_budget_s, sum(breakdown.values()), breakdown,
        hop_total / packets_total if packets_total else 0.0, max_hops,
        max_hops * cost.time_per_hop_s + cost.time_per_spike_s,
        len({s.chip for s in slices}), {"one_cpu": one_cpu, "dropped_packets": int(dropped.sum())},
    )


def plot_placement(report: PlacementReport, mapping: Mapping, out_dir: str | Path) -> list[Path]:
    """Core-load heatmap over the mesh, link-traffic map, per-step time. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [_plot_one_cpu(report, out) if mapping.target.mesh is None else _plot_mesh(report, mapping, out)]
    if mapping.target.mesh is not None:
        files.append(_plot_links(report, out))
    # Per-step time.
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(report.step_time_s * 1e6, lw=1, label="one CPU (all slices)" if report.extra.get("one_cpu")
            else "slowest core")
    ax.axhline(report.budget_s * 1e6, color="r", ls="--", lw=1, label="real-time budget")
    ax.set_xlabel("timestep")
    ax.set_ylabel("us")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("time per step")
    fig.tight_layout()
    path = out / "step_time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)
    return files


def _plot_one_cpu(report: PlacementReport, out: Path) -> Path:
    """One CPU runs every population in turn: its load is a bar per population."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [c["label"] for c in report.cores]
    ax.barh(labels, [c["time_per_step_s"] * 1e6 for c in report.cores], color="tab:blue")
    ax.set_xlabel("mean time per step (us)")
    ax.set_title(f"CPU load on {report.target}, by population")
    fig.tight_layout()
    path = out / "core_load.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_mesh(report: PlacementReport, mapping: Mapping, out: Path) -> Path:
    import matplotlib.pyplot as plt

    mesh = mapping.target.mesh
    # Core load: one cell per core, chips tiled over the mesh.
    side = int(np.ceil(np.sqrt(mesh.cores_per_chip)))
    grid = np.full((mesh.chips_y * side, mesh.chips_x * side), np.nan)
    for c in report.cores:
        (x, y), core = c["chip"], c["core"]
        grid[y * side + core // side, x * side + core % side] = c["time_per_step_s"] * 1e6
    used_y = max(c["chip"][1] for c in report.cores) + 1
    used_x = max(c["chip"][0] for c in report.cores) + 1
    grid = grid[: used_y * side, : used_x * side]
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(grid, origin="lower", cmap="viridis")
    for k in range(1, used_x):
        ax.axvline(k * side - 0.5, color="w", lw=0.8)
    for k in range(1, used_y):
        ax.axhline(k * side - 0.5, color="w", lw=0.8)
    fig.colorbar(im, ax=ax, label="mean time per step (us)")
    ax.set_title(f"core load on {report.target} ({side}x{side} cores per chip cell)")
    path = out / "core_load.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_links(report: PlacementReport, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    chips = {c["chip"] for c in report.cores} | {chip for chip, _ in report.links}
    xs, ys = zip(*chips, strict=True) if chips else ((0,), (0,))
    ax.scatter(xs, ys, s=200, c="lightgray", edgecolors="k", zorder=2)
    peak = max((v.mean() for v in report.links.values()), default=0.0) or 1.0
    for (chip, link), v in report.links.items():
        nxt = step(chip, link)
        ax.annotate("", xy=nxt, xytext=chip, zorder=1,
                    arrowprops={"arrowstyle": "->", "lw": 0.5 + 5 * v.mean() / peak, "color": "tab:red"})
    ax.set_title(f"link traffic (packets/step), peak {peak:.2f}")
    ax.set_xlabel("chip x")
    ax.set_ylabel("chip y")
    ax.set_aspect("equal")
    path = out / "link_traffic.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep(configs: list[dict[str, Any]], fn: Any, client: Any = None) -> list[Any]:
    """Run independent placement configurations; with a Dask `client`, on its workers.

    The one door to an existing engine (ARCHITECTURE: never a home-made scheduler).
    """
    if client is None:
        return [fn(**cfg) for cfg in configs]
    futures = client.map(lambda cfg: fn(**cfg), configs)
    return client.gather(futures)
