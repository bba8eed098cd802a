"""Targets are data: a TOML file per chip, loaded into a typed `Target`.

Schema (every key required unless a default is shown; which sections a target has is its family's:
the family's Backend record names its required and optional sections):

    name = "loihi2"
    family = "loihi" | "spinnaker" | "cortexm" | ...   # a registered backend (compiler/backend.py)
    [mesh]      topology = "mesh2d" | "triangular" | "single"; chips_x; chips_y; cores_per_chip
    [core]      neurons; synapse_memory_bytes; input_axons; output_axons; delay_slots; local_memory_bytes = 0;
                local_bytes_per_neuron = 0; source_neurons = 0
    [router]    entries_per_chip; default_routing (bool)
    [format]    weight_bits; weight_exp_min; weight_exp_max; decay_bits; state_bits;
                threshold_bits; bias_mant_bits; bias_exp_max; max_delay; activation_shift = 6;
                threshold_shift = 6; conv_weight_exp_min = weight_exp_min
    [encoding]  synapse_word_bits; delay_bits; index_bits; row_header_bits; delay_extension_slots = 0
    [cost]      time_per_synaptic_event_s; time_per_neuron_update_s; time_per_spike_s; time_per_hop_s;
                energy_per_synaptic_event_j; energy_per_neuron_update_j; energy_per_spike_j;
                energy_per_hop_j; timestep_budget_s
    [memory]    flash_bytes; ram_bytes                       (a single-CPU part)
    [board]     name; board_id; firmware_flash_bytes; firmware_ram_bytes; qemu_machine = ""
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
    # Per-core data memory for neuron state, rings and tables (SpiNNaker's DTCM); 0 = not modelled.
    local_memory_bytes: int = 0
    # Local memory one neuron's state takes beside the conv kernels (which also live there); 0: not budgeted.
    local_bytes_per_neuron: int = 0
    # Input neurons one spike-source core plays back; 0: one source per input, unbounded and outside the
    # neuron cores' budgets (sPyNNaker's SpikeSourceArray: _model_based_max_atoms_per_core = sys.maxint;
    # Lava feeds input from the host, not from a neurocore).
    source_neurons: int = 0


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
    # Lava's PyLifModelBitAcc: a_in << act_shift enters u, and a neuron fires when v > vth << vth_shift.
    activation_shift: int = 6
    threshold_shift: int = 6
    # Lowest weight exponent a conv projection may get (None: weight_exp_min). Lava's Conv process
    # ignores weight_exp (lava/proc/conv/models.py), so Loihi targets fold a non-negative one into the kernel.
    conv_weight_exp_min: int | None = None

    @property
    def conv_exp_min(self) -> int:
        return self.weight_exp_min if self.conv_weight_exp_min is None else self.conv_weight_exp_min

    @property
    def decay_unity(self) -> int:
        """A decay of 0 keeps the state: x * (decay_unity - d) >> decay_bits (Lava decay_unity = 2**12)."""
        return 1 << self.decay_bits

    @property
    def decay_max(self) -> int:
        return (1 << self.decay_bits) - 1

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
class Board:
    """A microcontroller board the firmware runs on."""

    name: str  # firmware/boards/<name>
    board_id: int  # SNN_BOARD_* in firmware/engine/snn_image.h: an image runs only on its board
    firmware_flash_bytes: int  # app code + constants, without the model
    firmware_ram_bytes: int  # frame buffers, stack, engine struct, without the arena
    qemu_machine: str = ""  # qemu-system-arm -M, when QEMU models the board

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Target:
    name: str
    family: str
    format: NumericFormat
    cost: CostModel
    mesh: Mesh | None = None
    core: CoreBudget | None = None
    router: Router | None = None
    encoding: Encoding | None = None
    memory: Memory | None = None
    board: Board | None = None
    # Neuron kinds the target runs (optional top-level key `neuron_kinds`; default: all NIR kinds).
    neuron_kinds: tuple[str, ...] = ("LIF", "CubaLIF", "IF", "LI", "CubaLI", "I", "Threshold")
    source: str = field(default="", compare=False)

    @property
    def n_cores(self) -> int:
        return self.mesh.n_chips * self.mesh.cores_per_chip if self.mesh is not None else 1

    @property
    def one_cpu(self) -> bool:
        """A single-CPU part (a microcontroller): no mesh, every population runs on its one core."""
        return self.mesh is None


_SECTIONS: dict[str, type] = {
    "mesh": Mesh, "core": CoreBudget, "router": Router, "format": NumericFormat,
    "encoding": Encoding, "cost": CostModel, "memory": Memory, "board": Board,
}
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
    from ..backend import backend_for

    for key in ("name", "family"):
        if key not in data:
            raise TargetError(f"{where}: missing key '{key}'")
    family = data["family"]
    if not isinstance(family, str):
        raise TargetError(f"{where}: family {family!r} should be a name such as \"loihi\"")
    try:
        backend = backend_for(family)
    except TargetError as exc:
        raise TargetError(f"{where}: {exc}") from None
    allowed = backend.required_sections | backend.optional_sections
    for key in _SECTIONS:
        if key in data and key not in allowed:
            raise TargetError(f"{where}: section [{key}] means nothing to a {family} target (its sections: "
                              f"{', '.join(sorted(allowed))}). Fix: remove it")
        if key not in data and key in backend.required_sections:
            raise TargetError(f"{where}: missing section [{key}]. Fix: add it (see compiler/targets/target.py)")
    unknown = set(data) - set(_SECTIONS) - {"name", "family", "neuron_kinds"}
    if unknown:
        raise TargetError(f"{where}: unknown key(s) or section(s) {sorted(unknown)}")
    sections = {key: _section(data, key, where) for key in _SECTIONS if key in data}
    mesh = sections.get("mesh")
    if mesh is not None and mesh.topology not in _TOPOLOGIES:
        raise TargetError(f"{where}: mesh.topology {mesh.topology!r} is not one of {_TOPOLOGIES}")
    target = Target(
        name=str(data["name"]), family=family, source=where, **sections,
        **({"neuron_kinds": _kinds(data["neuron_kinds"], where)} if "neuron_kinds" in data else {}),
    )
    _check_format(target.format, where)
    if backend.check_target is not None:
        backend.check_target(target)
    return target


# Widths the integer model's int64 arithmetic (compiler/ir/lif.py) holds exactly: |x| < 2**32 times a
# decay factor <= 2**24, a_in << 16 and vth << 16 stay far inside int64. Key -> inclusive (lo, hi); the
# first four are the step's widths, in the order executors read them.
FORMAT_BOUNDS: dict[str, tuple[int, int]] = {
    "decay_bits": (1, 24), "state_bits": (2, 32), "activation_shift": (0, 16), "threshold_shift": (0, 16),
    "weight_bits": (1, 24), "threshold_bits": (1, 31),
}


def _check_format(fmt: NumericFormat, where: str) -> None:
    """Widths the integer model's int64 arithmetic (compiler/ir/lif.py) can hold (FORMAT_BOUNDS)."""
    for key, (lo, hi) in FORMAT_BOUNDS.items():
        value = getattr(fmt, key)
        if not lo <= value <= hi:
            raise TargetError(f"{where}: 'format.{key}' = {value} is outside {lo}..{hi}, the widths the integer "
                              "model computes exactly. Fix: a value in that range")


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
