"""The result of compilation: the integer network, how it is cut into core slices, and where they go.

A Mapping is what backends emit and what the placement simulator replays. It serialises to
`manifest.json` (without the weight arrays, which the backends write in their own formats).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .passes.quantize import IntNetwork
from .targets.target import Target


@dataclass
class Slice:
    """Neurons [start, stop) of one integer population, executed by one core."""

    population: str
    start: int
    stop: int
    chip: tuple[int, int] = (0, 0)
    core: int = 0
    role: str = "neurons"  # "neurons", "source" (an input population) or "delay" (delay extension)

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def label(self) -> str:
        tag = "" if self.role == "neurons" else f"{self.role}:"
        return f"{tag}{self.population}[{self.start}:{self.stop}]"


@dataclass
class Mapping:
    target: Target
    network: IntNetwork
    slices: list[Slice]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # per-pass results (routes, tables, loads)

    def slices_of(self, population: str) -> list[Slice]:
        return [s for s in self.slices if s.population == population]

    def emit(self, out_dir: str | Path) -> Path:
        """Write this mapping's artifacts with the backend of its target family."""
        # Backends import the compiler, never the reverse: resolve the backend at call time.
        import importlib

        module = {"loihi": "lava", "spinnaker": "spinnaker", "cortexm": "cortexm"}[self.target.family]
        backend = importlib.import_module(f"neurocc.backends.{module}")
        return backend.emit(self, Path(out_dir))

    def quantization_summary(self) -> dict[str, Any]:
        """The numeric format and, per population, the float value of one integer membrane unit."""
        net, fmt = self.network, self.target.format
        pops = {}
        for name, p in net.populations.items():
            if p.kind == "input" or p.v_unit.size == 0:
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
        usage = self.extra.get("usage")
        cores = []
        for k, s in enumerate(self.slices):
            entry: dict[str, Any] = {"slice": s.label, "role": s.role, "chip": list(s.chip), "core": s.core}
            if usage is not None:
                entry["used"] = usage[k].as_dict()
            cores.append(entry)
        core = self.target.core
        return {
            "target": self.target.name, "family": self.target.family, "dt": net.dt,
            "core_budget": {"neurons": core.neurons, "synapse_memory_bytes": core.synapse_memory_bytes,
                            "input_axons": core.input_axons, "output_axons": core.output_axons,
                            "delay_slots": core.delay_slots},
            "cores": cores,
            "inputs": net.inputs, "outputs": net.outputs, "source_populations": net.source_pops,
            "populations": pops, "projections": projs,
            "neurons": int(net.n_neurons), "synapses": int(net.n_synapses),
            "cores_used": len({(s.chip, s.core) for s in self.slices}),
            "chips_used": len({s.chip for s in self.slices}),
            "timings_s": {k: round(v, 6) for k, v in self.timings.items()},
            "quantization": self.quantization_summary(),
            "notes": self.notes + net.notes,
            **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str, list, dict))},
        }


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


# ---- the integer network as a file: every backend ships it so `verify` can rerun the reference ----

NETWORK_FILE = "network.npz"


def save_int_network(inet: IntNetwork, path: str | Path) -> None:
    import json

    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "target": inet.target, "dt": inet.dt, "inputs": inet.inputs, "outputs": inet.outputs,
        "source_pops": inet.source_pops, "notes": inet.notes, "format": inet.format.__dict__,
        "populations": [], "projections": [],
    }
    for k, (name, p) in enumerate(inet.populations.items()):
        meta["populations"].append({"name": name, "source": p.source, "shape": list(p.shape), "kind": p.kind,
                                    "du": p.du, "dv": p.dv, "vth": p.vth, "spiking": p.spiking})
        arrays[f"pop{k}_index"] = p.index
        if p.kind != "input":
            arrays[f"pop{k}_bias_mant"] = p.bias_mant
            arrays[f"pop{k}_bias_exp"] = p.bias_exp
            arrays[f"pop{k}_v_unit"] = p.v_unit
            arrays[f"pop{k}_v_offset"] = p.v_offset
    for k, proj in enumerate(inet.projections):
        meta["projections"].append({"pre": proj.pre, "post": proj.post, "shape": list(proj.weights.shape),
                                    "weight_exp": proj.weight_exp, "sign_mode": proj.sign_mode})
        arrays[f"proj{k}_data"] = proj.weights.data
        arrays[f"proj{k}_indices"] = proj.weights.indices
        arrays[f"proj{k}_indptr"] = proj.weights.indptr
        arrays[f"proj{k}_delays"] = proj.delays
    arrays["meta"] = np.array(json.dumps(meta, default=json_default))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_int_network(path: str | Path) -> IntNetwork:
    import json

    import scipy.sparse as sp

    from .errors import ArtifactError
    from .passes.quantize import IntPopulation, IntProjection
    from .targets.target import NumericFormat

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read the network file ({exc}). Fix: compile again") from None
    pops = {}
    for k, m in enumerate(meta["populations"]):
        p = IntPopulation(m["name"], m["source"], arrays[f"pop{k}_index"], tuple(m["shape"]), m["kind"],
                          m["du"], m["dv"], m["vth"], spiking=m["spiking"])
        if p.kind != "input":
            p.bias_mant, p.bias_exp = arrays[f"pop{k}_bias_mant"], arrays[f"pop{k}_bias_exp"]
            p.v_unit, p.v_offset = arrays[f"pop{k}_v_unit"], arrays[f"pop{k}_v_offset"]
        pops[p.name] = p
    projs = []
    for k, m in enumerate(meta["projections"]):
        w = sp.csr_array((arrays[f"proj{k}_data"], arrays[f"proj{k}_indices"], arrays[f"proj{k}_indptr"]),
                         shape=tuple(m["shape"]))
        projs.append(IntProjection(m["pre"], m["post"], w, arrays[f"proj{k}_delays"], m["weight_exp"],
                                   m["sign_mode"]))
    return IntNetwork(pops, projs, meta["inputs"], meta["outputs"], meta["source_pops"],
                      NumericFormat(**meta["format"]), meta["target"], meta["dt"], meta["notes"])
