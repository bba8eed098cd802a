"""The integer IR: the network in the target's integer CUBA-LIF, as `quantize` makes it.

What it means, step by step, is compiler/ir/lif.py: every executor runs exactly that arithmetic.
The widths (weight bits, decay bits, state bits, shifts) are the target's `NumericFormat`, carried
in `IntNetwork.format`. `save_int_network`/`load_int_network` are its file form (network.npz), which
every backend ships so `verify` can rerun the reference simulator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ArtifactError
from ..targets.target import NumericFormat
from .conv import Conv, Pool
from .lif import effective_bias
from .network import INPUT, SparseSynapses
from .table import ProjectionTable

LIF = "lif"  # the kind of every non-input integer population


@dataclass
class IntPopulation:
    name: str
    source: str
    index: np.ndarray
    shape: tuple[int, ...]
    kind: str  # INPUT or LIF
    du: int = 0
    dv: int = 0
    vth: int = 0
    bias_mant: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bias_exp: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    spiking: bool = True
    # float NIR membrane = v_int * v_unit + v_offset (per neuron); for reports
    v_unit: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_offset: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def size(self) -> int:
        return int(self.index.size)

    @property
    def is_input(self) -> bool:
        return self.kind == INPUT

    def bias_effective(self) -> np.ndarray:
        return effective_bias(self.bias_mant, self.bias_exp)


@dataclass
class IntProjection(SparseSynapses):
    pre: str
    post: str
    weights: sp.csr_array  # integer mantissas (int16/int32: the format's width), post x pre
    delays: np.ndarray  # integer (int16 when they fit), aligned with weights.data
    weight_exp: int
    sign_mode: str  # "excitatory" | "inhibitory" | "mixed" (Lava SignMode)
    conv: Conv | None = None  # the shared kernel (integer mantissas in the IntNetwork); weights == unrolled


SIGN_MODES = ("excitatory", "inhibitory", "mixed")


@dataclass(eq=False)
class IntProjections(ProjectionTable[IntProjection]):
    """An integer network's projections end to end (compiler/ir/table.py): `blocks.data` are the mantissas;
    per projection its weight exponent and its sign mode (an index into SIGN_MODES)."""

    weight_exp: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sign_mode: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))

    def _make(self, k: int) -> IntProjection:
        return IntProjection(self.pre_name(k), self.post_name(k), self.blocks.matrix(k), self.blocks.delays_of(k),
                             int(self.weight_exp[k]), SIGN_MODES[int(self.sign_mode[k])], self.conv.get(k))


@dataclass
class IntNetwork:
    populations: dict[str, IntPopulation]
    projections: list[IntProjection] | IntProjections
    inputs: list[str]
    outputs: dict[str, list[str]]
    source_pops: dict[str, list[str]]
    format: NumericFormat
    target: str
    dt: float
    notes: list[str] = field(default_factory=list)

    def incoming(self, post: str) -> list[IntProjection]:
        if isinstance(self.projections, ProjectionTable):
            return self.projections.where_post(post)
        return [p for p in self.projections if p.post == post]

    @property
    def n_synapses(self) -> int:
        if isinstance(self.projections, ProjectionTable):
            return self.projections.n_synapses
        return sum(p.n_synapses for p in self.projections)

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations.values() if not p.is_input)


def sign_mode_of(data: np.ndarray) -> str:
    if data.size == 0 or data.min() >= 0:
        return "excitatory"
    if data.max() <= 0:
        return "inhibitory"
    return "mixed"




def _json_scalar(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ---- the integer network as a file: every backend ships it so `verify` can rerun the reference ----

NETWORK_FILE = "network.npz"


_CONV_FIELDS = ("in_shape", "out_shape", "stride", "padding", "dilation")


def _conv_meta(conv: Conv | None) -> dict[str, Any] | None:
    if conv is None:
        return None
    pool = None if conv.pool is None else [list(conv.pool.kernel), list(conv.pool.stride), list(conv.pool.padding)]
    return {**{f: list(getattr(conv, f)) for f in _CONV_FIELDS}, "groups": conv.groups, "pool": pool}


def _conv_of(meta: dict[str, Any], kernel: np.ndarray) -> Conv:
    pool = meta.get("pool")
    return Conv(kernel, *(tuple(meta[f]) for f in _CONV_FIELDS), meta["groups"],
                None if pool is None else Pool(*(tuple(v) for v in pool)))


def save_int_network(inet: IntNetwork, path: str | Path) -> None:
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
        if not p.is_input:
            arrays[f"pop{k}_bias_mant"] = p.bias_mant
            arrays[f"pop{k}_bias_exp"] = p.bias_exp
            arrays[f"pop{k}_v_unit"] = p.v_unit
            arrays[f"pop{k}_v_offset"] = p.v_offset
    for k, proj in enumerate(inet.projections):
        meta["projections"].append({"pre": proj.pre, "post": proj.post, "shape": list(proj.weights.shape),
                                    "weight_exp": proj.weight_exp, "sign_mode": proj.sign_mode,
                                    "conv": _conv_meta(proj.conv)})
        if proj.conv is not None:
            arrays[f"proj{k}_kernel"] = proj.conv.kernel
        arrays[f"proj{k}_data"] = proj.weights.data
        arrays[f"proj{k}_indices"] = proj.weights.indices
        arrays[f"proj{k}_indptr"] = proj.weights.indptr
        arrays[f"proj{k}_delays"] = proj.delays
    arrays["meta"] = np.array(json.dumps(meta, default=_json_scalar))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_int_network(path: str | Path) -> IntNetwork:
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
        if not p.is_input:
            p.bias_mant, p.bias_exp = arrays[f"pop{k}_bias_mant"], arrays[f"pop{k}_bias_exp"]
            p.v_unit, p.v_offset = arrays[f"pop{k}_v_unit"], arrays[f"pop{k}_v_offset"]
        pops[p.name] = p
    projs = []
    for k, m in enumerate(meta["projections"]):
        w = sp.csr_array((arrays[f"proj{k}_data"], arrays[f"proj{k}_indices"], arrays[f"proj{k}_indptr"]),
                         shape=tuple(m["shape"]))
        conv = m.get("conv")
        projs.append(IntProjection(m["pre"], m["post"], w, arrays[f"proj{k}_delays"], m["weight_exp"],
                                   m["sign_mode"], None if conv is None else _conv_of(conv, arrays[f"proj{k}_kernel"])))
    return IntNetwork(pops, projs, meta["inputs"], meta["outputs"], meta["source_pops"],
                      NumericFormat(**meta["format"]), meta["target"], meta["dt"], meta["notes"])
