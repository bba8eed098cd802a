"""The result of compilation: the integer network, its core slices, and each pass's typed result.

A Mapping is what backends emit and what the placement simulator replays. Which fields are set
depends on the family's pass list (compiler/backend.py): a mesh family fills `usage` (partition),
`placement` (place) and `routing` (route); a single-CPU family (Cortex-M) fills `image` (its
memory layout) and runs every population as one slice on its one CPU. It serialises to
`manifest.json` through `summary()` (without weight arrays: the backends write those).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..targets.target import Target
from .integer import IntNetwork


class Role(StrEnum):
    """What a slice's core does. A StrEnum: it compares equal to, and serialises as, its name."""

    NEURONS = "neurons"
    SOURCE = "source"  # an input population: a spike-source core
    DELAY = "delay"  # a delay-extension slice of a source population


@dataclass
class Slice:
    """Neurons [start, stop) of one integer population, executed by one core."""

    population: str
    start: int
    stop: int
    chip: tuple[int, int] = (0, 0)
    core: int = 0
    role: Role = Role.NEURONS

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def label(self) -> str:
        tag = "" if self.role == Role.NEURONS else f"{self.role}:"
        return f"{tag}{self.population}[{self.start}:{self.stop}]"


@dataclass
class SliceUsage:
    """What one slice uses of its core's budget (partition's count)."""

    neurons: int = 0
    synapses: int = 0
    synapse_bytes: int = 0
    kernel_bytes: int = 0  # the part of synapse_bytes that is conv kernels (and their headers), stored once
    local_bytes: int = 0  # core-local memory: kernels + neuron state (targets with core.local_bytes_per_neuron)
    fan_in: int = 0  # input axons: distinct (source neuron, stage) rows
    out_axons: int = 0
    delay_slots: int = 0  # native delay slots used (max native delay + 1)
    delay_stages: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Partition:
    slices: list[Slice]
    usage: list[SliceUsage]
    notes: list[str] = field(default_factory=list)


@dataclass
class Placement:
    slices: list[Slice]  # the partition's slices with chip and core set
    traffic: sp.csr_array  # expected packets/step from slice i to slice j
    hop_traffic: float  # sum over slice pairs of traffic x hops
    method: str


@dataclass
class Emitter:
    """What sends packets: a neuron or source slice (stage 0) or a delay-extension slice (stage >= 1)."""

    slice_index: int
    stage: int
    key: int
    mask: int
    n_keys: int
    destinations: list[int]  # slice indices
    # slices its packets also reach, which hold no synapses of it and drop them (compiler/passes/over_delivery.py)
    over_delivered: list[int] = field(default_factory=list)


@dataclass
class Entry:
    """One routing-table entry: packets whose key & mask == key leave by the route word's links/cores."""

    key: int
    mask: int
    route: int  # link bits 0..5, core bits 6+
    emitter: int = -1  # -1 once merged by compression

    def matches(self, key: int) -> bool:
        return (key & self.mask) == self.key


@dataclass
class Routing:
    emitters: list[Emitter]
    index_bits: int
    tables: dict[tuple[int, int], list[Entry]]  # after default-route removal, before compression
    compressed: dict[tuple[int, int], list[Entry]]
    defaulted: dict[tuple[int, int], list[Entry]]  # entries dropped as default-routable (for checks)
    trees: list[dict[tuple[int, int], int]] = field(default_factory=list)  # per emitter: chip -> route
    # source chips whose emitters share one tree and one key block (over-delivery); empty when every table fit
    collapsed_chips: list[tuple[int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def over_delivery(self) -> bool:
        """Whether some cores receive packets they drop (the executor then tolerates and counts them)."""
        return bool(self.collapsed_chips)

    def entries_before(self) -> int:
        return sum(len(t) for t in self.tables.values())

    def entries_after(self) -> int:
        return sum(len(t) for t in self.compressed.values())


@dataclass
class MemoryImage:
    """A single-CPU target's memory layout: the packed model image and what it costs."""

    data: bytes
    arena_bytes: int  # RAM for the engine's state (u, v, rings, spike lists)
    synapses: int  # synapses of the IntNetwork (nonzero mantissas)
    synapse_bytes: int  # bytes of rows, indices, weights and segments
    flash_by_population: dict[str, int] = field(default_factory=dict)  # incoming synapses + params
    ram_by_population: dict[str, int] = field(default_factory=dict)  # state, rings, spike lists
    kernel_bytes_by_population: dict[str, int] = field(default_factory=dict)  # conv kernels (in flash), stored once
    encodings: list[dict] = field(default_factory=list)
    crc32: int = 0
    model_id: int = 0
    fit: dict[str, int] = field(default_factory=dict)  # flash/RAM needed and available

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Mapping:
    target: Target
    network: IntNetwork
    slices: list[Slice] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    usage: list[SliceUsage] | None = None  # partition: per slice
    placement: Placement | None = None  # place
    routing: Routing | None = None  # route
    image: MemoryImage | None = None  # a single-CPU family's memory layout

    def slices_of(self, population: str) -> list[Slice]:
        return [s for s in self.slices if s.population == population]

    def emit(self, out_dir: str | Path) -> Path:
        """Write this mapping's artifacts with the registered backend of its target family."""
        from ..backend import backend_for

        return backend_for(self.target.family).emit(self, Path(out_dir))

    def quantization_summary(self) -> dict[str, Any]:
        """The numeric format and, per population, the float value of one integer membrane unit."""
        net, fmt = self.network, self.target.format
        pops = {}
        for name, p in net.populations.items():
            if p.is_input or p.v_unit.size == 0:
                continue
            pops[name] = {"v_unit": [float(p.v_unit.min()), float(p.v_unit.max())], "vth": p.vth,
                          "du": p.du, "dv": p.dv}
        return {"weight_bits": fmt.weight_bits, "max_delay": fmt.max_delay, "populations": pops}

    def summary(self) -> dict[str, Any]:
        net = self.network
        pops = {}
        for name, p in net.populations.items():
            pops[name] = {
                "source": p.source, "kind": p.kind, "size": p.size, "shape": list(p.shape),
                "du": p.du, "dv": p.dv, "vth": p.vth, "spiking": p.spiking,
                "slices": [[s.start, s.stop, list(s.chip), s.core] for s in self.slices_of(name)],
            }
        projs = [{
            "pre": p.pre, "post": p.post, "synapses": p.n_synapses, "weight_exp": p.weight_exp,
            "sign_mode": p.sign_mode, "max_delay": p.max_delay,
            "weight_range": [int(p.weights.data.min()), int(p.weights.data.max())] if p.n_synapses else [0, 0],
        } for p in net.projections]
        cores = []
        for k, s in enumerate(self.slices):
            entry: dict[str, Any] = {"slice": s.label, "role": str(s.role), "chip": list(s.chip), "core": s.core}
            if self.usage is not None:
                entry["used"] = self.usage[k].as_dict()
            cores.append(entry)
        out: dict[str, Any] = {
            "target": self.target.name, "family": self.target.family, "dt": net.dt,
            "cores": cores,
            "inputs": net.inputs, "outputs": net.outputs, "source_populations": net.source_pops,
            "populations": pops, "projections": projs,
            "neurons": int(net.n_neurons), "synapses": int(net.n_synapses),
            "cores_used": len({(s.chip, s.core) for s in self.slices}),
            "chips_used": len({s.chip for s in self.slices}),
            "timings_s": {k: round(v, 6) for k, v in self.timings.items()},
            "quantization": self.quantization_summary(),
            "notes": self.notes + net.notes,
        }
        core = self.target.core
        if core is not None:
            out["core_budget"] = {"neurons": core.neurons, "synapse_memory_bytes": core.synapse_memory_bytes,
                                  "input_axons": core.input_axons, "output_axons": core.output_axons,
                                  "delay_slots": core.delay_slots}
        if self.placement is not None:
            out["placement_method"] = self.placement.method
            out["hop_weighted_traffic"] = self.placement.hop_traffic
        if self.routing is not None:
            out["routing_entries_before"] = self.routing.entries_before()
            out["routing_entries_after"] = self.routing.entries_after()
        return out


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def manifest_default(obj: Any) -> Any:
    """json_default for manifests: also the pass results (dataclasses, sets) a Mapping's summary carries;
    anything else is written as its str, so a manifest never fails to serialise."""
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    try:
        return json_default(obj)
    except TypeError:
        return str(obj)
