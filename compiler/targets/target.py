"""Targets are data: a TOML file per chip family, loaded into a typed `Target`.

Schema (every key required unless a default is shown):

    name = "loihi2"
    family = "loihi" | "spinnaker" | "cortexm"        # which backend emits it
    [mesh]      topology = "mesh2d" | "triangular" | "single"; chips_x; chips_y; cores_per_chip
    [core]      neurons; synapse_memory_bytes; input_axons; output_axons; delay_slots
    [router]    entries_per_chip; default_routing (bool)
    [format]    weight_bits; weight_exp_min; weight_exp_max; decay_bits; state_bits;
                threshold_bits; bias_mant_bits; bias_exp_max; max_delay
    [encoding]  synapse_word_bits; delay_bits; index_bits; row_header_bits; delay_extension_slots = 0
    [cost]      time_per_synaptic_event_s; time_per_neuron_update_s; time_per_spike_s; time_per_hop_s;
                energy_per_synaptic_event_j; energy_per_neuron_update_j; energy_per_spike_j;
                energy_per_hop_j; timestep_budget_s
    [memory]    (cortexm only) flash_bytes; ram_bytes
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import TargetError

TARGET_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Mesh:
    topology: str
    chips_x: int
    chips_y: int
    cores_per_chip: int

    @property
    def n_chips(self) -> int:
        return self.chips_x * self.chips_y


@dataclass(frozen=True)
class CoreBudget:
    neurons: int
    synapse_memory_bytes: int
    input_axons: int
    output_axons: int
    delay_slots: int


@dataclass(frozen=True)
class Router:
    entries_per_chip: int
    default_routing: bool


@dataclass(frozen=True)
class NumericFormat:
    weight_bits: int  # magnitude bits of a weight mantissa (Loihi 8, SpiNNaker 16)
    weight_exp_min: int
    weight_exp_max: int
    decay_bits: int
    state_bits: int
    threshold_bits: int
    bias_mant_bits: int
    bias_exp_max: int
    max_delay: int

    @property
    def weight_max(self) -> int:
        """Largest weight mantissa magnitude. Mixed-sign projections use even values up to
        weight_max - 1 (Loihi's 9-bit signed mantissa drops its LSB: Lava weightutils)."""
        return (1 << self.weight_bits) - 1

    @property
    def threshold_max(self) -> int:
        return (1 << self.threshold_bits) - 1

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1


@dataclass(frozen=True)
class Encoding:
    synapse_word_bits: int
    delay_bits: int
    index_bits: int
    row_header_bits: int
    delay_extension_slots: int = 0


@dataclass(frozen=True)
class CostModel:
    time_per_synaptic_event_s: float
    time_per_neuron_update_s: float
    time_per_spike_s: float
    time_per_hop_s: float
    energy_per_synaptic_event_j: float
    energy_per_neuron_update_j: float
    energy_per_spike_j: float
    energy_per_hop_j: float
    timestep_budget_s: float


@dataclass(frozen=True)
class Memory:
    flash_bytes: int
    ram_bytes: int


@dataclass(frozen=True)
class Target:
    name: str
    family: str
    mesh: Mesh
    core: CoreBudget
    router: Router
    format: NumericFormat
    encoding: Encoding
    cost: CostModel
    memory: Memory | None = None
    # Neuron kinds the target runs (optional top-level key `neuron_kinds`; default: all NIR kinds).
    neuron_kinds: tuple[str, ...] = ("LIF", "CubaLIF", "IF", "LI", "CubaLI", "I", "Threshold")
    source: str = field(default="", compare=False)

    @property
    def n_cores(self) -> int:
        return self.mesh.n_chips * self.mesh.cores_per_chip


_SECTIONS: dict[str, type] = {
    "mesh": Mesh, "core": CoreBudget, "router": Router, "format": NumericFormat,
    "encoding": Encoding, "cost": CostModel, "memory": Memory,
}
_FAMILIES = ("loihi", "spinnaker", "cortexm")
_TOPOLOGIES = ("mesh2d", "triangular", "single")


def _section(data: dict[str, Any], key: str, where: str) -> Any:
    cls = _SECTIONS[key]
    if key not in data:
        raise TargetError(f"{where}: missing section [{key}]. Fix: add it (see compiler/targets/target.py)")
    raw = data[key]
    values = {}
    for f in fields(cls):
        if f.name not in raw:
            if f.default is not MISSING:
                continue
            raise TargetError(f"{where}: missing key '{key}.{f.name}'. Fix: add it with its public source")
        val = raw[f.name]
        want = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str,
                                                        "bool": bool}.get(str(f.type), object)
        if want is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if want is not object and not isinstance(val, want) or (want is int and isinstance(val, bool)):
            raise TargetError(f"{where}: '{key}.{f.name}' = {val!r} should be {want.__name__}")
        if want in (int, float) and val < 0 and not f.name.startswith("weight_exp"):
            raise TargetError(f"{where}: '{key}.{f.name}' = {val!r} must be >= 0")
        values[f.name] = val
    unknown = set(raw) - {f.name for f in fields(cls)}
    if unknown:
        raise TargetError(f"{where}: unknown key(s) {sorted(unknown)} in [{key}]")
    return cls(**values)


def parse_target(data: dict[str, Any], where: str) -> Target:
    for key in ("name", "family"):
        if key not in data:
            raise TargetError(f"{where}: missing key '{key}'")
    if data["family"] not in _FAMILIES:
        raise TargetError(f"{where}: family {data['family']!r} is not one of {_FAMILIES}")
    mesh = _section(data, "mesh", where)
    if mesh.topology not in _TOPOLOGIES:
        raise TargetError(f"{where}: mesh.topology {mesh.topology!r} is not one of {_TOPOLOGIES}")
    memory = _section(data, "memory", where) if "memory" in data else None
    if data["family"] == "cortexm" and memory is None:
        raise TargetError(f"{where}: a cortexm target needs a [memory] section (flash_bytes, ram_bytes)")
    return Target(
        name=str(data["name"]), family=str(data["family"]), mesh=mesh,
        core=_section(data, "core", where), router=_section(data, "router", where),
        format=_section(data, "format", where), encoding=_section(data, "encoding", where),
        cost=_section(data, "cost", where), memory=memory, source=where,
        **({"neuron_kinds": _kinds(data["neuron_kinds"], where)} if "neuron_kinds" in data else {}),
    )


def _kinds(value: Any, where: str) -> tuple[str, ...]:
    from ..ir import NEURON_KINDS

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TargetError(f"{where}: 'neuron_kinds' must be a list of names, e.g. [\"LIF\", \"IF\"]")
    unknown = [v for v in value if v not in NEURON_KINDS]
    if unknown:
        raise TargetError(f"{where}: 'neuron_kinds' has unknown kind(s) {unknown}; known: {list(NEURON_KINDS)}")
    return tuple(value)


def shipped_targets() -> list[str]:
    return sorted(p.stem for p in TARGET_DIR.glob("*.toml"))


def load_target(name_or_path: str | Path | Target) -> Target:
    """A shipped target by name ('loihi2'), or a user's TOML file by path."""
    if isinstance(name_or_path, Target):
        return name_or_path
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = TARGET_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise TargetError(
                f"unknown target {str(name_or_path)!r}. Shipped: {', '.join(shipped_targets())}; "
                "or pass the path of your own .toml"
            )
    if not path.exists():
        raise TargetError(f"target file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: not valid TOML ({exc})") from None
    return parse_target(data, str(path))
