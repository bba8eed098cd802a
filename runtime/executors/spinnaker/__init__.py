"""Run emitted SpiNNaker tables, and nothing else: routers, master population tables, synaptic rows.

The executor reads only the files `backends/spinnaker.emit` wrote (manifest.json for the file
list, then the binary tables of docs/spinnaker-format.md); never the Mapping or the Network.
Each step, in this order:

1. every neuron core updates its neurons with the integer CUBA-LIF (runtime/simulator.simulate_int's
   arithmetic, docs/neuron-model.md §2), consuming its ring-buffer slot for this step;
2. every spike leaves as a multicast packet with its key (spike sources: one packet per active input
   channel, the count as payload; delay extensions: the neurons of each stage's bit field that
   spiked stage x slots steps ago);
3. routers forward each packet hop by hop: the first entry of the chip's table whose key/mask matches
   wins; no match means the default route (out of the link opposite the one it came in by), and is
   an error for a packet from a local core;
4. each receiving core binary-searches its master population table, reads the row of the source
   neuron from its synaptic matrix, and adds each word's weight into its delay ring buffer. As in
   Lava, a projection's weight exponent shifts the *sum* of one send step's weights per (post
   neuron, delay), so sums are kept per (synapse type, stage, delay) until the step's packets are in.

Tables are static, so the cores a (source chip, key) reaches and the links it crosses are traced
once and cached; a step is then a handful of numpy operations over all of its packets.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ....backends.spinnaker.format import (
    FILE_OF_KIND,
    HEADER_BYTES,
    MACHINE_FILE,
    MAGIC_DELAY,
    MAGIC_MACHINE,
    MAGIC_NEURONS,
    MAGIC_POPTABLE,
    MAGIC_ROUTING,
    MAGIC_SOURCE,
    MAGIC_SYNAPSES,
    MANIFEST,
    MODE_NEGATIVE,
    MODE_POSITIVE,
    MODES,
    TOPOLOGIES,
    Reader,
    check_file,
    core_dir,
    routing_path,
)
from ....compiler.errors import ArtifactError, InputError
from ....compiler.ir.lif import LifNeurons, Widths
from ....compiler.targets.target import FORMAT_BOUNDS

N_LINKS = 6
LINK_VECTORS = ((1, 0), (1, 1), (0, 1), (-1, 0), (-1, -1), (0, -1))  # E NE N W SW S (SpiNNaker route word)
LINK_NAMES = ("E", "NE", "N", "W", "SW", "S")
MASK32 = 0xFFFFFFFF

Chip = tuple[int, int]
CoreId = tuple[Chip, int]


@dataclass
class ExecResult:
    """Spikes per population ([T, n] bool), packets per (chip, link) per step, lookups per core."""

    spikes: dict[str, np.ndarray]
    link_packets: dict[tuple[Chip, int], np.ndarray]
    lookups: dict[CoreId, int]  # packets each core looked up (master population table or delay key)
    steps: int
    events: dict[CoreId, int] = field(default_factory=dict)  # synaptic words each neuron core processed
    packets: int = 0  # multicast packets sent (all sources)
    synaptic_events: int = 0  # synaptic words processed
    wall_s: float = 0.0  # time spent in the step loop
    stats: dict[str, Any] = field(default_factory=dict)


# ---- parsed files ----------------------------------------------------------------------------------------

@dataclass
class _Neurons:
    label: str
    name: str
    pop_size: int
    start: int
    n: int
    key: int
    mask: int
    has_key: bool
    decay_bits: int
    state_bits: int
    activation_shift: int
    threshold_shift: int
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    v0: np.ndarray
    u0: np.ndarray


@dataclass
class _PopTable:
    label: str
    keys: np.ndarray
    masks: np.ndarray
    start: np.ndarray
    count: np.ndarray
    first_row: np.ndarray
    n_rows: np.ndarray
    stage: np.ndarray
    type_base: np.ndarray
    entries_offset: int  # file offset of the entry array (for messages)
    addr_offset: int


@dataclass
class _Synapses:
    label: str
    weight_bits: int
    delay_bits: int
    type_bits: int
    index_bits: int
    slots: int
    type_exp: np.ndarray
    type_mode: np.ndarray
    rowptr: np.ndarray
    words: np.ndarray
    words_offset: int


@dataclass
class _Delay:
    label: str
    in_key: int
    in_mask: int
    has_in: bool
    n: int
    slots: int
    stage_keys: np.ndarray  # [n_stages] (stage s at index s - 1)
    stage_has_key: np.ndarray
    stage_bits: np.ndarray  # [n_stages, n] bool


@dataclass
class _Source:
    label: str
    name: str
    pop_size: int
    start: int
    n: int
    has_key: bool
    keys: np.ndarray


def _where(r: Reader, chip: Chip, core: int, named: bool = False) -> None:
    """The (x, y, p) every core file starts with; a u16 name length or padding follows."""
    x, y, p = r.unpack("HHH", "chip x, chip y, core")
    if not named:
        r.align4("core id")
    if (x, y, p) != (chip[0], chip[1], core):
        raise r.fail(f"core id ({x},{y},{p}), expected ({chip[0]},{chip[1]},{core}) from its directory",
                     HEADER_BYTES)


def _parse_neurons(r: Reader, chip: Chip, core: int) -> _Neurons:
    _where(r, chip, core, named=True)
    name = r.name("population name")
    r.align4("population name")
    at = r.file_offset
    pop_size, start, n, key, mask, has_key, dbits, sbits, ashift, tshift, du, dv, vth = r.unpack(
        "IIIIIBBBBB3xiii", "neuron parameters")
    if start + n > pop_size or n == 0:
        raise r.fail(f"slice [{start}, {start + n}) of a population of {pop_size}, expected a non-empty slice "
                     "inside it", at)
    if has_key and (key & ~mask & MASK32 or n > (~mask & MASK32) + 1):
        raise r.fail(f"key {key:#x}/mask {mask:#x} cannot carry {n} neuron ids, expected a key block of >= {n}",
                     at + 12)
    step_widths = list(FORMAT_BOUNDS.items())[:4]  # decay_bits, state_bits, activation_shift, threshold_shift
    for value, (key_name, (lo, hi)), offset in zip((dbits, sbits, ashift, tshift), step_widths, range(21, 25),
                                                    strict=True):
        if not lo <= value <= hi:
            raise r.fail(f"{key_name} {value}, expected {lo}..{hi}", at + offset)
    bias_mant = r.array("i4", n, "bias mantissas").astype(np.int64)
    bias_exp = r.array("i1", n, "bias exponents").astype(np.int64)
    r.align4("bias exponents")
    v0 = r.array("i4", n, "initial v").astype(np.int64)
    u0 = r.array("i4", n, "initial u").astype(np.int64)
    r.done()
    return _Neurons(r.label, name, pop_size, start, n, key, mask, bool(has_key), dbits, sbits, ashift, tshift, du,
                    dv, vth, bias_mant, bias_exp, v0, u0)


def _parse_poptable(r: Reader, chip: Chip, core: int) -> _PopTable:
    _where(r, chip, core)
    n_entries, n_addr = r.unpack("II", "entry counts")
    entries_offset = r.file_offset
    ent = r.array("u4", 3 * n_entries, "master population table").reshape(-1, 3) if n_entries else \
        np.zeros((0, 3), np.uint32)
    addr_offset = r.file_offset
    adr = r.array("u4", 2 * n_addr, "address list").reshape(-1, 2) if n_addr else np.zeros((0, 2), np.uint32)
    r.done()
    keys = ent[:, 0].astype(np.int64)
    masks = ent[:, 1].astype(np.int64)
    start = (ent[:, 2] & 0xFFFF).astype(np.int64)
    count = (ent[:, 2] >> 16).astype(np.int64)
    bad = np.flatnonzero(np.diff(keys) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise r.fail(f"entry {i} key {int(keys[i]):#x} after {int(keys[i - 1]):#x}, expected keys in ascending "
                     "order (binary search)", entries_offset + 12 * i)
    bad = np.flatnonzero((keys & ~masks & MASK32) != 0)
    if bad.size:
        i = int(bad[0])
        raise r.fail(f"entry {i} key {int(keys[i]):#x} has bits outside its mask {int(masks[i]):#x}, expected "
                     "key & ~mask == 0", entries_offset + 12 * i)
    bad = np.flatnonzero((count == 0) | (start + count > n_addr))
    if bad.size:
        i = int(bad[0])
        raise r.fail(f"entry {i} points at address entries [{int(start[i])}, {int(start[i] + count[i])}), expected "
                     f"a non-empty range within the {n_addr} address entries", entries_offset + 12 * i + 8)
    return _PopTable(r.label, keys, masks, start, count, adr[:, 0].astype(np.int64),
                     (adr[:, 1] & 0xFFFF).astype(np.int64), ((adr[:, 1] >> 16) & 0xFF).astype(np.int64),
                     (adr[:, 1] >> 24).astype(np.int64), entries_offset, addr_offset)


def _parse_synapses(r: Reader, chip: Chip, core: int, n_neurons: int) -> _Synapses:
    _where(r, chip, core)
    at = r.file_offset
    wb, db, tb, ib, slots, n_types, n_rows, n_words = r.unpack("BBBBHHII", "synapse layout")
    if wb + db + tb + ib != 32 or wb == 0:
        raise r.fail(f"field widths weight {wb} + delay {db} + type {tb} + index {ib} = {wb + db + tb + ib}, "
                     "expected 32 (one synaptic word)", at)
    if slots == 0 or slots > 1 << db:
        raise r.fail(f"{slots} delay slots, expected 1..{1 << db} ({db} delay bits)", at + 4)
    types = r.array("u4", n_types, "synapse-type table")
    type_exp = (types & 0xFF).astype(np.int8).astype(np.int64)
    type_mode = ((types >> 8) & 0xFF).astype(np.int64)
    bad = np.flatnonzero(~np.isin(type_mode, MODES))
    if bad.size:
        raise r.fail(f"synapse type {int(bad[0])} has weight mode {int(type_mode[bad[0]])}, expected one of "
                     f"{list(MODES)}", r.file_offset - 4 * n_types + 4 * int(bad[0]) + 1)
    rp_offset = r.file_offset
    rowptr = r.array("u4", n_rows + 1, "row pointers").astype(np.int64)
    words_offset = r.file_offset
    words = r.array("u4", n_words, "synaptic words").astype(np.int64)
    r.done()
    bad = np.flatnonzero((np.diff(rowptr) < 0) | (rowptr[1:] > n_words))
    if rowptr[0] != 0:
        raise r.fail(f"row 0 starts at word {int(rowptr[0])}, expected 0", rp_offset)
    if bad.size:
        i = int(bad[0])
        raise r.fail(f"row {i} spans words [{int(rowptr[i])}, {int(rowptr[i + 1])}), outside the matrix of "
                     f"{n_words} words (expected {int(rowptr[i])} <= end <= {n_words})", rp_offset + 4 * (i + 1))
    if rowptr[-1] != n_words:
        raise r.fail(f"the last row ends at word {int(rowptr[-1])}, expected {n_words} (every word in a row)",
                     rp_offset + 4 * n_rows)
    index = words & ((1 << ib) - 1)
    bad = np.flatnonzero(index >= n_neurons)
    if bad.size:
        i = int(bad[0])
        raise r.fail(f"synaptic word {i} targets neuron {int(index[i])}, expected < {n_neurons} (this core's "
                     "neurons)", words_offset + 4 * i)
    delay = (words >> (ib + tb)) & ((1 << db) - 1)
    bad = np.flatnonzero(delay >= slots)
    if bad.size:
        i = int(bad[0])
        raise r.fail(f"synaptic word {i} has delay {int(delay[i])}, expected < {slots} slots", words_offset + 4 * i)
    return _Synapses(r.label, wb, db, tb, ib, slots, type_exp, type_mode, rowptr, words, words_offset)


def _parse_delay(r: Reader, chip: Chip, core: int) -> _Delay:
    _where(r, chip, core)
    at = r.file_offset
    in_key, in_mask, has_in, n, slots, n_stages = r.unpack("IIIIHH", "delay parameters")
    if has_in > 1 or n == 0 or slots == 0:
        raise r.fail(f"has_in {has_in}, {n} neurons, {slots} slots per stage; expected 0/1, > 0, > 0", at + 8)
    if has_in and (in_key & ~in_mask & MASK32 or n > (~in_mask & MASK32) + 1):
        raise r.fail(f"incoming key {in_key:#x}/mask {in_mask:#x} cannot carry {n} neuron ids", at)
    words = (n + 31) // 32
    keys = np.zeros(n_stages, np.int64)
    has = np.zeros(n_stages, bool)
    bits = np.zeros((n_stages, n), bool)
    for s in range(n_stages):
        at = r.file_offset
        key, flag = r.unpack("II", f"stage {s + 1} key")
        field_ = r.array("u4", words, f"stage {s + 1} neuron bit field")
        if flag > 1:
            raise r.fail(f"stage {s + 1} has_key {flag}, expected 0 or 1", at + 4)
        unpacked = np.unpackbits(field_.astype("<u4").view(np.uint8), bitorder="little")
        if unpacked[n:].any():
            raise r.fail(f"stage {s + 1} bit field sets neurons beyond {n}, expected 0 bits there", at + 8)
        if flag and key & ~in_mask & MASK32:
            raise r.fail(f"stage {s + 1} key {key:#x} overlaps the neuron-id bits of mask {in_mask:#x}", at)
        keys[s], has[s], bits[s] = key, bool(flag), unpacked[:n].astype(bool)
    r.done()
    return _Delay(r.label, in_key, in_mask, bool(has_in), n, slots, keys, has, bits)


def _parse_source(r: Reader, chip: Chip, core: int) -> _Source:
    _where(r, chip, core, named=True)
    name = r.name("population name")
    r.align4("population name")
    at = r.file_offset
    pop_size, start, n, has_key = r.unpack("IIII", "source parameters")
    if start + n > pop_size or n == 0 or has_key > 1:
        raise r.fail(f"slice [{start}, {start + n}) of {pop_size} channels, has_key {has_key}; expected a non-empty "
                     "slice inside the population and has_key 0/1", at)
    keys = r.array("u4", n, "channel keys").astype(np.int64)
    r.done()
    return _Source(r.label, name, pop_size, start, n, bool(has_key), keys)


# ---- loading ---------------------------------------------------------------------------------------------

@dataclass
class _Table:
    label: str
    keys: np.ndarray
    masks: np.ndarray
    routes: np.ndarray  # [n, route words] u32 words of each route word, least significant first
    entries_offset: int


class Machine:
    """Everything the executor needs, built from the files alone."""

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        manifest_path = self.dir / MANIFEST
        if not manifest_path.is_file():
            raise ArtifactError(f"{manifest_path}: no manifest; {self.dir} is not a neurocc output. "
                                "Fix: run neurocc compile")
        try:
            manifest = json.loads(manifest_path.read_text())
            listed = {f["path"]: f for f in manifest["files"]}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{manifest_path}: corrupt manifest ({exc}). Fix: compile again") from None
        if manifest.get("backend") != "spinnaker":
            raise ArtifactError(f"{manifest_path}: backend {manifest.get('backend')!r}, expected 'spinnaker'")
        self.listed = listed
        if MACHINE_FILE not in listed:
            raise ArtifactError(f"{manifest_path}: lists no {MACHINE_FILE}. Fix: compile again")
        r = self._open(MACHINE_FILE, MAGIC_MACHINE)
        cx, cy, cpc, topo, default, n_tables, n_cores = r.unpack("HHHBBII", "machine description")
        r.done()
        if topo >= len(TOPOLOGIES) or default > 1 or cx == 0 or cy == 0 or cpc == 0:
            raise r.fail(f"mesh {cx}x{cy}, {cpc} cores/chip, topology {topo}, default routing {default}; expected "
                         f"non-zero sizes, topology < {len(TOPOLOGIES)}, default 0/1", HEADER_BYTES)
        self.chips_x, self.chips_y, self.cores_per_chip = cx, cy, cpc
        self.default_routing = bool(default)
        self.topology = TOPOLOGIES[topo]
        # links that exist: all six on SpiNNaker's triangular mesh; E, N, W, S on a 2-D mesh; none on one chip
        self.link_mask = {"triangular": 0b111111, "mesh2d": 0b101101, "single": 0}[self.topology]
        self.tables: dict[int, _Table] = {}
        core_kinds: dict[CoreId, dict[str, str]] = {}
        for rel, f in listed.items():
            kind = f.get("kind")
            if kind == "routing":
                chip = self._chip_of(f, rel)
                if rel != routing_path(chip):
                    raise ArtifactError(f"{rel}: routing table of chip {chip} should be {routing_path(chip)}")
                self.tables[self._chip_id(chip, rel)] = self._parse_table(rel, chip)
            elif kind in FILE_OF_KIND:
                chip = self._chip_of(f, rel)
                core = f.get("core")
                if not isinstance(core, int) or not 0 <= core < cpc or rel != f"{core_dir(chip, core)}/" \
                        f"{FILE_OF_KIND[kind]}":
                    raise ArtifactError(f"{manifest_path}: file {rel} has core {core!r}, expected its directory's "
                                        f"core < {cpc}")
                core_kinds.setdefault((chip, core), {})[kind] = rel
            elif kind != "machine":
                raise ArtifactError(f"{manifest_path}: file {rel} has unknown kind {kind!r}")
        if len(self.tables) != n_tables or len(core_kinds) != n_cores:
            raise ArtifactError(f"{manifest_path}: lists {len(self.tables)} routing tables and {len(core_kinds)} "
                                f"cores, {MACHINE_FILE} says {n_tables} and {n_cores}. Fix: compile again")
        self.neurons: dict[CoreId, tuple[_Neurons, _PopTable, _Synapses]] = {}
        self.delays: dict[CoreId, _Delay] = {}
        self.sources: dict[CoreId, _Source] = {}
        for cid in sorted(core_kinds):
            kinds = core_kinds[cid]
            chip, core = cid
            if set(kinds) == {"neurons", "poptable", "synapses"}:
                nr = _parse_neurons(self._open(kinds["neurons"], MAGIC_NEURONS), chip, core)
                pt = _parse_poptable(self._open(kinds["poptable"], MAGIC_POPTABLE), chip, core)
                sy = _parse_synapses(self._open(kinds["synapses"], MAGIC_SYNAPSES), chip, core, nr.n)
                self._check_rows(pt, sy)
                self.neurons[cid] = (nr, pt, sy)
            elif set(kinds) == {"delay"}:
                self.delays[cid] = _parse_delay(self._open(kinds["delay"], MAGIC_DELAY), chip, core)
            elif set(kinds) == {"source"}:
                self.sources[cid] = _parse_source(self._open(kinds["source"], MAGIC_SOURCE), chip, core)
            else:
                raise ArtifactError(f"{core_dir(chip, core)}: files {sorted(kinds)}, expected neurons+poptable+"
                                    "synapses, delay, or source. Fix: compile again")
        self._check_coverage()

    # -- helpers for loading --
    def _open(self, rel: str, magic: bytes) -> Reader:
        """A listed file, its header checked (size, magic, version, CRC), then checked against the manifest."""
        path = self.dir / rel
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{rel}: cannot read ({exc.strerror}; listed in {MANIFEST}). Fix: compile again") \
                from None
        r = check_file(data, rel, magic)
        f = self.listed[rel]
        if f.get("bytes") != len(data) or f.get("crc32") != zlib.crc32(data):
            raise ArtifactError(f"{rel}: byte offset 0: {len(data)} bytes with file CRC32 {zlib.crc32(data):#010x}, "
                                f"expected {f.get('bytes')} bytes with CRC32 {f.get('crc32')} as {MANIFEST} records: "
                                "the file was replaced after compilation. Fix: compile again")
        return r

    def _chip_of(self, f: dict[str, Any], rel: str) -> Chip:
        chip = f.get("chip")
        if not (isinstance(chip, list) and len(chip) == 2 and all(isinstance(c, int) for c in chip)):
            raise ArtifactError(f"{self.dir / MANIFEST}: file {rel} has chip {chip!r}, expected [x, y]")
        return (chip[0], chip[1])

    def _chip_id(self, chip: Chip, what: str) -> int:
        if not (0 <= chip[0] < self.chips_x and 0 <= chip[1] < self.chips_y):
            raise ArtifactError(f"{what}: chip {chip} is outside the {self.chips_x}x{self.chips_y} mesh")
        return chip[1] * self.chips_x + chip[0]

    def _parse_table(self, rel: str, chip: Chip) -> _Table:
        r = self._open(rel, MAGIC_ROUTING)
        x, y, limit, n, words, reserved = r.unpack("HHIIHH", "table header")
        if (x, y) != chip:
            raise r.fail(f"chip ({x},{y}), expected {chip} from its path", HEADER_BYTES)
        if n > limit:
            raise r.fail(f"{n} entries, expected at most the router's {limit}", HEADER_BYTES + 8)
        need = (N_LINKS + self.cores_per_chip + 31) // 32
        if words != need or reserved:
            raise r.fail(f"{words} words per route (reserved {reserved}), expected {need} for 6 links + "
                         f"{self.cores_per_chip} cores (reserved 0)", HEADER_BYTES + 12)
        entries_offset = r.file_offset
        arr = r.array("u4", (2 + words) * n, "routing entries").reshape(-1, 2 + words).astype(np.int64)
        r.done()
        routes = arr[:, 2:]
        top = N_LINKS + self.cores_per_chip  # bits at or above are not links or cores
        beyond = routes[:, top // 32] >> (top % 32) if top % 32 else np.zeros(n, np.int64)
        bad = np.flatnonzero(beyond)
        if bad.size:
            i = int(bad[0])
            raise r.fail(f"entry {i}'s route word names a core >= {self.cores_per_chip}, expected only bits below "
                         f"{top}", entries_offset + (8 + 4 * words) * i + 8 + 4 * (top // 32))
        bad = np.flatnonzero(routes[:, 0] & ~self.link_mask & ((1 << N_LINKS) - 1))
        if bad.size:
            i = int(bad[0])
            raise r.fail(f"entry {i} route word {int(routes[i, 0]):#x} uses a link a {self.topology} mesh does not "
                         f"have, expected link bits within {self.link_mask:#04x}",
                         entries_offset + (8 + 4 * words) * i + 8)
        return _Table(rel, arr[:, 0], arr[:, 1], routes, entries_offset)

    @staticmethod
    def _check_rows(pt: _PopTable, sy: _Synapses) -> None:
        n_rows = sy.rowptr.size - 1
        bad = np.flatnonzero(pt.first_row + pt.n_rows > n_rows)
        if bad.size:
            i = int(bad[0])
            raise ArtifactError(
                f"{pt.label}: byte offset {pt.addr_offset + 8 * i}: address entry {i} points at rows "
                f"[{int(pt.first_row[i])}, {int(pt.first_row[i] + pt.n_rows[i])}), outside the synaptic matrix's "
                f"{n_rows} rows (expected first_row + n_rows <= {n_rows}). Fix: compile again")
        bad = np.flatnonzero(pt.type_base >= sy.type_exp.size)
        if bad.size:
            i = int(bad[0])
            raise ArtifactError(f"{pt.label}: byte offset {pt.addr_offset + 8 * i + 7}: address entry {i} type base "
                                f"{int(pt.type_base[i])}, expected < {sy.type_exp.size} synapse types. Fix: compile "
                                "again")

    def _check_coverage(self) -> None:
        seen: dict[str, tuple[int, np.ndarray]] = {}
        for label, name, size, start, n in [(nr.label, nr.name, nr.pop_size, nr.start, nr.n)
                                            for nr, _, _ in self.neurons.values()] + \
                [(s.label, s.name, s.pop_size, s.start, s.n) for s in self.sources.values()]:
            size0, cover = seen.setdefault(name, (size, np.zeros(size, np.int64)))
            if size0 != size:
                raise ArtifactError(f"{label}: population {name!r} has {size} neurons, another core says {size0}")
            cover[start:start + n] += 1
        for name, (_, cover) in seen.items():
            if not (cover == 1).all():
                i = int(np.flatnonzero(cover != 1)[0])
                raise ArtifactError(f"population {name!r}: neuron {i} is on {int(cover[i])} cores, expected exactly "
                                    "one. Fix: compile again")
        self.populations = {name: size for name, (size, _) in seen.items()}
        self.inputs = sorted({s.name for s in self.sources.values()})


# ---- running ---------------------------------------------------------------------------------------------

class _Traces:
    """Cores reached and links crossed by each (source chip, key), traced through the tables once."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.ids: dict[int, int] = {}
        self.n = 0
        # per batch of traces: cores reached and links crossed per trace, as (counts, values)
        self.cores: list[tuple[np.ndarray, np.ndarray]] = []
        self.links: list[tuple[np.ndarray, np.ndarray]] = []
        self.link_ids: dict[int, int] = {}  # chip_id * 6 + link -> compact index
        self.link_list: list[int] = []
        self._csr: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def lookup(self, src_chip: np.ndarray, keys: np.ndarray) -> np.ndarray:
        comp = (src_chip.astype(np.int64) << 32) | keys
        uniq, inv = np.unique(comp, return_inverse=True)
        new = [int(c) for c in uniq.tolist() if c not in self.ids]
        if new:
            self._trace(np.asarray(new, np.int64))
            self._csr = None
        ids = np.fromiter((self.ids[int(c)] for c in uniq.tolist()), np.int64, uniq.size)
        return ids[inv]

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._csr is None:
            def pack(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
                ptr = np.zeros(self.n + 1, np.int64)
                if parts:
                    np.cumsum(np.concatenate([c for c, _ in parts]), out=ptr[1:])
                    return ptr, np.concatenate([v for _, v in parts])
                return ptr, np.zeros(0, np.int64)

            self._csr = (*pack(self.cores), *pack(self.links))
        return self._csr

    def _trace(self, comp: np.ndarray) -> None:
        m = self.m
        n = comp.size
        keys = comp & MASK32
        pkt = np.arange(n)
        chip = comp >> 32
        entered = np.full(n, -1, np.int64)
        reached: list[tuple[np.ndarray, np.ndarray]] = []
        crossed: list[tuple[np.ndarray, np.ndarray]] = []
        n_chips = m.chips_x * m.chips_y
        for _hop in range(4 * n_chips + 8):
            if pkt.size == 0:
                break
            route = np.zeros((pkt.size, (N_LINKS + m.cores_per_chip + 31) // 32), np.int64)
            for c in np.unique(chip).tolist():
                sel = np.flatnonzero(chip == c)
                k = keys[pkt[sel]]
                tab = m.tables.get(c)
                first = _first_match(k, tab) if tab is not None else np.full(sel.size, -1, np.int64)
                hit = first >= 0
                if hit.any():
                    route[sel[hit]] = tab.routes[first[hit]]
                miss = sel[~hit]
                if miss.size:
                    local = entered[miss] < 0
                    if local.any() or not m.default_routing:
                        i = int(miss[np.flatnonzero(local)[0]] if local.any() else miss[0])
                        where = tab.label if tab is not None else routing_path((c % m.chips_x, c // m.chips_x))
                        at = f"byte offset {tab.entries_offset}" if tab is not None else "no table file"
                        why = "from a local core" if entered[i] < 0 else "and the router has no default routing"
                        raise ArtifactError(
                            f"{where}: {at}: key {int(keys[pkt[i]]):#010x} {why} matches none of the chip's "
                            f"{0 if tab is None else tab.keys.size} entries; expected an entry whose key/mask "
                            "covers it. Fix: compile again")
                    route[miss, 0] = np.left_shift(1, (entered[miss] + 3) % N_LINKS)
            for p in range(m.cores_per_chip):
                bit = N_LINKS + p
                on = np.flatnonzero((route[:, bit // 32] >> (bit % 32)) & 1)
                if on.size:
                    reached.append((pkt[on], chip[on] * m.cores_per_chip + p))
            nxt_pkt, nxt_chip, nxt_in = [], [], []
            for link in range(N_LINKS):
                on = np.flatnonzero((route[:, 0] >> link) & 1)
                if not on.size:
                    continue
                crossed.append((pkt[on], chip[on] * N_LINKS + link))
                x = chip[on] % m.chips_x + LINK_VECTORS[link][0]
                y = chip[on] // m.chips_x + LINK_VECTORS[link][1]
                out = (x < 0) | (x >= m.chips_x) | (y < 0) | (y >= m.chips_y)
                if out.any():
                    i = int(on[np.flatnonzero(out)[0]])
                    c = int(chip[i])
                    src = (c % m.chips_x, c // m.chips_x)
                    tab = m.tables.get(c)
                    raise ArtifactError(
                        f"{tab.label if tab else routing_path(src)}: key {int(keys[pkt[i]]):#010x} leaves the "
                        f"{m.chips_x}x{m.chips_y} machine by link {LINK_NAMES[link]} of chip {src}; expected routes "
                        "that stay on the mesh. Fix: compile again")
                nxt_pkt.append(pkt[on])
                nxt_chip.append(y * m.chips_x + x)
                nxt_in.append(np.full(on.size, (link + 3) % N_LINKS))
            if not nxt_pkt:
                pkt = pkt[:0]
                break
            pkt = np.concatenate(nxt_pkt)
            chip = np.concatenate(nxt_chip)
            entered = np.concatenate(nxt_in)
        else:
            i = int(pkt[0])
            src = (int(comp[i] >> 32) % m.chips_x, int(comp[i] >> 32) // m.chips_x)
            raise ArtifactError(f"key {int(keys[i]):#010x} from chip {src} loops in the routing tables (still "
                                f"travelling after {4 * n_chips + 8} hops). Fix: compile again")
        r_pkt = np.concatenate([a for a, _ in reached]) if reached else np.zeros(0, np.int64)
        r_core = np.concatenate([b for _, b in reached]) if reached else np.zeros(0, np.int64)
        l_pkt = np.concatenate([a for a, _ in crossed]) if crossed else np.zeros(0, np.int64)
        l_id = np.concatenate([b for _, b in crossed]) if crossed else np.zeros(0, np.int64)
        for lid in np.unique(l_id).tolist():
            if lid not in self.link_ids:
                self.link_ids[lid] = len(self.link_list)
                self.link_list.append(lid)
        compact = np.fromiter((self.link_ids[int(x)] for x in l_id.tolist()), np.int64, l_id.size)
        r_order = np.argsort(r_pkt, kind="stable")
        l_order = np.argsort(l_pkt, kind="stable")
        self.cores.append((np.bincount(r_pkt, minlength=n), r_core[r_order]))
        self.links.append((np.bincount(l_pkt, minlength=n), compact[l_order]))
        for i, c in enumerate(comp.tolist()):
            self.ids[c] = self.n + i
        self.n += n


MATCH_CELLS = 1 << 22  # keys x entries compared at once (bounds memory on 16,384-entry tables)


def _first_match(keys: np.ndarray, tab: _Table) -> np.ndarray:
    """Index of the first entry whose key/mask matches each key (table order, as the router), or -1."""
    out = np.full(keys.size, -1, np.int64)
    if tab.keys.size == 0:
        return out
    step = max(1, MATCH_CELLS // tab.keys.size)
    for lo in range(0, keys.size, step):
        match = (keys[lo:lo + step, None] & tab.masks[None, :]) == tab.keys[None, :]
        first = match.argmax(axis=1)
        out[lo:lo + step] = np.where(match[np.arange(first.size), first], first, -1)
    return out


def _ranges(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indices of [starts[i], starts[i] + lens[i]) for every i, concatenated, and the i of each."""
    owner = np.repeat(np.arange(starts.size), lens)
    offs = np.arange(owner.size) - np.repeat(np.cumsum(lens) - lens, lens)
    return starts[owner] + offs, owner


def _gather(ptr: np.ndarray, data: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """data[ptr[i]:ptr[i+1]] for every i in ids, concatenated; and which position of ids each came from."""
    idx, owner = _ranges(ptr[ids], ptr[ids + 1] - ptr[ids])
    return data[idx], owner


def integer_raster(m: Machine, raster: np.ndarray | dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Per input population [T, n] int64 counts; the integer model takes non-negative integer spike counts."""
    if isinstance(raster, dict):
        parts = dict(raster)
    else:
        arr = np.asarray(raster)
        if len(m.inputs) != 1:
            raise InputError(f"the network has {len(m.inputs)} inputs {m.inputs}; pass a dict name -> raster")
        parts = {m.inputs[0]: arr}
    out: dict[str, np.ndarray] = {}
    steps = None
    for name in m.inputs:
        if name not in parts:
            raise InputError(f"no input raster for {name!r}")
        arr = np.asarray(parts[name])
        if arr.ndim < 2:
            raise InputError(f"input {name!r} must be [T, *shape]; got shape {list(arr.shape)}")
        flat = arr.reshape(arr.shape[0], -1)
        if flat.shape[1] != m.populations[name]:
            raise InputError(f"input {name!r} has {flat.shape[1]} channels per step, the network expects "
                             f"{m.populations[name]}")
        if not np.all(np.isfinite(flat)) or np.any(flat != np.rint(flat)) or np.any(flat < 0):
            raise InputError(f"input {name!r}: the integer model takes non-negative integer spike counts. "
                             "Fix: binarise or bin the input")
        if steps is not None and flat.shape[0] != steps:
            raise InputError("input rasters have different numbers of steps")
        steps = flat.shape[0]
        out[name] = flat.astype(np.int64)
    if steps is None:
        raise InputError("the network has no input population; nothing drives it")
    return out, steps


def _widths(cores: list[_Neurons]) -> Widths:
    """The integer model's widths, which every neuron core's file states; they must agree."""
    if not cores:
        return Widths(12, 24, 6, 6)  # no neurons: nothing is stepped
    first = cores[0]
    want = Widths(first.decay_bits, first.state_bits, first.activation_shift, first.threshold_shift)
    for nr in cores[1:]:
        got = Widths(nr.decay_bits, nr.state_bits, nr.activation_shift, nr.threshold_shift)
        if got != want:
            raise ArtifactError(f"{nr.label}: integer widths {got}, but {first.label} has {want}; expected one "
                                "numeric format on every core. Fix: compile again")
    return want


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class _Runner:
    """Global arrays over all cores, so one step is a few vectorised operations."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        cpc = m.cores_per_chip
        self.gid = {cid: (cid[0][1] * m.chips_x + cid[0][0]) * cpc + cid[1]
                    for cid in list(m.neurons) + list(m.delays) + list(m.sources)}
        n_gid = m.chips_x * m.chips_y * cpc
        self.role = np.zeros(n_gid, np.int8)  # 0 none, 1 neurons, 2 delay, 3 source
        # neurons, in global core order so the concatenated master population tables stay sorted
        cores = sorted(m.neurons.items(), key=lambda kv: self.gid[kv[0]])
        self.ncores = cores
        sizes = np.asarray([nr.n for _, (nr, _, _) in cores], np.int64)
        self.n_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(self.n_off[-1])
        self.N = n

        def per_neuron(vals: list[int]) -> np.ndarray:
            return np.repeat(np.asarray(vals, np.int64), sizes) if cores else np.zeros(0, np.int64)

        self.neurons = LifNeurons(per_neuron([nr.du for _, (nr, _, _) in cores]),
                                  per_neuron([nr.dv for _, (nr, _, _) in cores]),
                                  per_neuron([nr.vth for _, (nr, _, _) in cores]),
                                  np.left_shift(_cat([nr.bias_mant for _, (nr, _, _) in cores]),
                                                _cat([nr.bias_exp for _, (nr, _, _) in cores])),
                                  _widths([nr for _, (nr, _, _) in cores]))
        self.v = _cat([nr.v0 for _, (nr, _, _) in cores])
        self.u = _cat([nr.u0 for _, (nr, _, _) in cores])
        self.n_core = np.repeat(np.arange(len(cores)), sizes)
        self.n_local = np.arange(n) - self.n_off[self.n_core] if n else np.zeros(0, np.int64)
        self.n_key = per_neuron([nr.key if nr.has_key else 0 for _, (nr, _, _) in cores]) | self.n_local
        self.n_sends = per_neuron([int(nr.has_key) for _, (nr, _, _) in cores]).astype(bool)
        self.n_chip = per_neuron([cid[0][1] * m.chips_x + cid[0][0] for cid, _ in cores])
        slots = max((sy.slots for _, (_, _, sy) in cores), default=1)
        self.R = slots + 1
        self.ring = np.zeros((self.R, n), np.int64)
        # master population tables, address lists, synaptic matrices: concatenated, offsets per core
        pt_comp, pt_mask, pt_start, pt_count, pt_core = [], [], [], [], []
        a_row, a_nrows, a_stage, a_tbase, a_tend, a_core = [], [], [], [], [], []
        rp_all, w_post, w_tfield, w_delay, w_raw, w_signed2 = [], [], [], [], [], []
        t_exp, t_mode = [], []
        a_off = row_off = word_off = type_off = 0
        for c, (cid, (_nr, pt, sy)) in enumerate(cores):
            g = self.gid[cid]
            self.role[g] = 1
            pt_comp.append((np.int64(g) << 32) | pt.keys)
            pt_mask.append(pt.masks)
            pt_start.append(pt.start + a_off)
            pt_count.append(pt.count)
            pt_core.append(np.full(pt.keys.size, c))
            a_row.append(pt.first_row + row_off)
            a_nrows.append(pt.n_rows)
            a_stage.append(pt.stage)
            a_tbase.append(pt.type_base + type_off)
            a_tend.append(np.full(pt.first_row.size, type_off + sy.type_exp.size))
            a_core.append(np.full(pt.first_row.size, c))
            rp_all.append(sy.rowptr[:-1] + word_off)
            w = sy.words
            w_post.append((w & ((1 << sy.index_bits) - 1)) + self.n_off[c])
            w_tfield.append((w >> sy.index_bits) & ((1 << sy.type_bits) - 1))
            w_delay.append((w >> (sy.index_bits + sy.type_bits)) & ((1 << sy.delay_bits) - 1))
            raw = w >> (32 - sy.weight_bits)
            w_raw.append(raw)
            half = 1 << (sy.weight_bits - 1)
            w_signed2.append(2 * (raw - ((raw & half) << 1)))
            t_exp.append(sy.type_exp)
            t_mode.append(sy.type_mode)
            a_off += pt.first_row.size
            row_off += sy.rowptr.size - 1
            word_off += w.size
            type_off += sy.type_exp.size
        self.pt_comp, self.pt_mask = _cat(pt_comp), _cat(pt_mask)
        self.pt_start, self.pt_count, self.pt_core = _cat(pt_start), _cat(pt_count), _cat(pt_core)
        self.a_row, self.a_nrows, self.a_stage = _cat(a_row), _cat(a_nrows), _cat(a_stage)
        self.a_tbase, self.a_tend, self.a_core = _cat(a_tbase), _cat(a_tend), _cat(a_core)
        self.rowptr = np.append(_cat(rp_all), word_off).astype(np.int64)
        self.w_post, self.w_tfield, self.w_delay = _cat(w_post), _cat(w_tfield), _cat(w_delay)
        self.w_raw, self.w_signed2 = _cat(w_raw), _cat(w_signed2)
        self.t_exp, self.t_mode = _cat(t_exp), _cat(t_mode)
        self.n_types = max(type_off, 1)
        self.max_stage = int(self.a_stage.max()) if self.a_stage.size else 0
        # delay extensions
        dcores = list(m.delays.items())
        self.dcores = dcores
        dsizes = np.asarray([d.n for _, d in dcores], np.int64)
        self.d_off = np.concatenate([[0], np.cumsum(dsizes)]).astype(np.int64)
        nd = int(self.d_off[-1])
        self.d_core_of_gid = np.full(n_gid, -1, np.int64)
        for i, (cid, _) in enumerate(dcores):
            self.role[self.gid[cid]] = 2
            self.d_core_of_gid[self.gid[cid]] = i
        n_st = max((d.stage_keys.size for _, d in dcores), default=0)
        self.d_stages = n_st
        self.d_slots = np.repeat(np.asarray([d.slots for _, d in dcores], np.int64), dsizes)
        self.d_chip = np.repeat(np.asarray([cid[0][1] * m.chips_x + cid[0][0] for cid, _ in dcores], np.int64),
                                dsizes)
        self.d_local = np.arange(nd) - np.repeat(self.d_off[:-1], dsizes) if nd else np.zeros(0, np.int64)
        self.d_send = np.zeros((n_st, nd), bool)
        self.d_key = np.zeros((n_st, nd), np.int64)
        for i, (_, d) in enumerate(dcores):
            sl = slice(int(self.d_off[i]), int(self.d_off[i + 1]))
            for s in range(d.stage_keys.size):
                if d.stage_has_key[s]:
                    self.d_send[s, sl] = d.stage_bits[s]
                    self.d_key[s, sl] = d.stage_keys[s] | np.arange(d.n)
        self.H = max((d.stage_keys.size * d.slots for _, d in dcores), default=0) + 1
        self.hist = np.zeros((self.H, nd), np.int64)
        # spike sources
        scores = list(m.sources.items())
        self.scores = scores
        for cid, _ in scores:
            self.role[self.gid[cid]] = 3
        self.traces = _Traces(m)

    def _fail_lookup(self, gids: np.ndarray, keys: np.ndarray, bad: np.ndarray) -> ArtifactError:
        i = int(np.flatnonzero(bad)[0])
        g, key = int(gids[i]), int(keys[i])
        cid = ((g // self.m.cores_per_chip) % self.m.chips_x, (g // self.m.cores_per_chip) // self.m.chips_x), \
            g % self.m.cores_per_chip
        if self.role[g] == 1:
            _, pt, _ = self.m.neurons[cid]
            return ArtifactError(f"{pt.label}: byte offset {pt.entries_offset}: key {key:#010x} matches none of the "
                                 f"{pt.keys.size} master population table entries; expected an entry whose key/mask "
                                 "covers it (the router delivered it here). Fix: compile again")
        if self.role[g] == 2:
            d = self.m.delays[cid]
            return ArtifactError(f"{d.label}: byte offset {HEADER_BYTES + 8}: key {key:#010x} does not match the "
                                 f"incoming key {d.in_key:#010x}/mask {d.in_mask:#010x} (or its neuron id is beyond "
                                 f"{d.n}). Fix: compile again")
        what = "a spike source" if self.role[g] == 3 else "no program"
        return ArtifactError(f"core {cid[1]} of chip {cid[0]} receives key {key:#010x} but runs {what}; "
                             f"expected routes to neuron and delay cores only (the routing tables of "
                             f"{routing_path(cid[0])} and the chips before it). Fix: compile again")

    def run(self, inputs: dict[str, np.ndarray], steps: int) -> ExecResult:
        m = self.m
        R, H = self.R, self.H
        spikes = {name: np.zeros((steps, size), bool) for name, size in m.populations.items()}
        # spike sources: channel columns of every source core, side by side
        s_cols, s_keys, s_chip, s_send = [], [], [], []
        src_counts = np.zeros((steps, 0), np.int64)
        if self.scores:
            cols = []
            for cid, s in self.scores:
                cols.append(inputs[s.name][:, s.start:s.start + s.n])
                s_keys.append(s.keys)
                s_chip.append(np.full(s.n, cid[0][1] * m.chips_x + cid[0][0]))
                s_send.append(np.full(s.n, s.has_key))
                spikes[s.name][:, s.start:s.start + s.n] = cols[-1] != 0
            src_counts = np.concatenate(cols, axis=1)
            s_cols = [np.concatenate(s_keys), np.concatenate(s_chip), np.concatenate(s_send)]
        fired_all = np.zeros((steps, self.N), bool)
        link_rows: list[np.ndarray] = []
        lookups = np.zeros(self.role.size, np.int64)
        self.core_events = np.zeros(len(self.ncores), np.int64)
        packets = events = 0
        t0 = time.perf_counter()
        for t in range(steps):
            slot = t % R
            # 1. neuron updates (simulate_int's arithmetic, literally)
            a_in = self.ring[slot].copy()
            self.ring[slot] = 0
            self.u, self.v, fired = self.neurons.step(self.u, self.v, a_in)
            fired_all[t] = fired
            f_idx = np.flatnonzero(fired)
            # 2. packets: neurons, spike sources, delay extensions
            f_send = f_idx[self.n_sends[f_idx]]
            keys = [self.n_key[f_send]]
            chips = [self.n_chip[f_send]]
            pay = [np.ones(f_send.size, np.int64)]
            if src_counts.shape[1]:
                row = src_counts[t]
                nz = np.flatnonzero((row > 0) & s_cols[2])
                keys.append(s_cols[0][nz])
                chips.append(s_cols[1][nz])
                pay.append(row[nz])
            for s in range(self.d_stages):
                back = t - (s + 1) * self.d_slots
                ok = (back >= 0) & self.d_send[s]
                if not ok.any():
                    continue
                idx = np.flatnonzero(ok)
                cnt = self.hist[back[idx] % H, idx]
                nz = cnt > 0
                keys.append(self.d_key[s, idx[nz]])
                chips.append(self.d_chip[idx[nz]])
                pay.append(cnt[nz])
            key = np.concatenate(keys)
            chip = np.concatenate(chips)
            payload = np.concatenate(pay)
            packets += key.size
            if self.hist.shape[1]:
                self.hist[t % H] = 0
            if key.size == 0:
                link_rows.append(np.zeros(len(self.traces.link_list), np.int64))
                continue
            # 3. routers
            tid = self.traces.lookup(chip, key)
            cptr, cdata, lptr, ldata = self.traces.csr()
            crossed, _ = _gather(lptr, ldata, tid)
            link_rows.append(np.bincount(crossed, minlength=len(self.traces.link_list)))
            dest, owner = _gather(cptr, cdata, tid)
            d_key, d_pay = key[owner], payload[owner]
            np.add.at(lookups, dest, 1)
            role = self.role[dest]
            if np.any((role != 1) & (role != 2)):
                raise self._fail_lookup(dest, d_key, (role != 1) & (role != 2))
            # 4a. delay extensions remember which neurons spiked
            dsel = role == 2
            if dsel.any():
                self._to_delay(dest[dsel], d_key[dsel], d_pay[dsel], t % H)
            nsel = role == 1
            if nsel.any():
                events += self._to_neurons(dest[nsel], d_key[nsel], d_pay[nsel], t)
        wall = time.perf_counter() - t0
        for c, (_, (nr, _, _)) in enumerate(self.ncores):
            spikes[nr.name][:, nr.start:nr.start + nr.n] = fired_all[:, self.n_off[c]:self.n_off[c + 1]]
        n_links = len(self.traces.link_list)
        table = np.zeros((steps, n_links), np.int64)
        for t, row in enumerate(link_rows):
            table[t, :row.size] = row
        links = {}
        for j, lid in enumerate(self.traces.link_list):
            c = lid // N_LINKS
            links[((c % m.chips_x, c // m.chips_x), lid % N_LINKS)] = table[:, j]
        cpc = m.cores_per_chip
        look = {(((g // cpc) % m.chips_x, (g // cpc) // m.chips_x), g % cpc): int(lookups[g])
                for g in np.flatnonzero(self.role).tolist()}
        per_core = {cid: int(self.core_events[c]) for c, (cid, _) in enumerate(self.ncores)}
        return ExecResult(spikes, links, look, steps, per_core, packets, events, wall,
                          {"traced_keys": len(self.traces.ids), "links_used": n_links})

    def _to_delay(self, gids: np.ndarray, keys: np.ndarray, pay: np.ndarray, slot: int) -> None:
        core = self.d_core_of_gid[gids]
        in_key = np.asarray([d.in_key for _, d in self.dcores], np.int64)[core]
        in_mask = np.asarray([d.in_mask for _, d in self.dcores], np.int64)[core]
        has_in = np.asarray([d.has_in for _, d in self.dcores], bool)[core]
        n = np.asarray([d.n for _, d in self.dcores], np.int64)[core]
        nid = keys & ~in_mask & MASK32
        bad = ~has_in | ((keys & in_mask) != in_key) | (nid >= n)
        if bad.any():
            raise self._fail_lookup(gids, keys, bad)
        np.add.at(self.hist[slot], self.d_off[core] + nid, pay)

    def _to_neurons(self, gids: np.ndarray, keys: np.ndarray, pay: np.ndarray, t: int) -> int:
        # master population table: binary search per core (one sorted array over all cores)
        comp = (gids << 32) | keys
        e = np.searchsorted(self.pt_comp, comp, side="right") - 1
        ok = e >= 0
        e_ok = np.where(ok, e, 0)
        entry_key = self.pt_comp[e_ok] & MASK32
        ok &= (self.pt_comp[e_ok] >> 32) == gids
        ok &= (keys & self.pt_mask[e_ok]) == entry_key
        if not ok.all():
            raise self._fail_lookup(gids, keys, ~ok)
        nid = keys & ~self.pt_mask[e] & MASK32
        # every address entry of the matching key: one row each
        cnt = self.pt_count[e]
        owner = np.repeat(np.arange(e.size), cnt)
        addr = self.pt_start[e][owner] + (np.arange(owner.size) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        nid_a = nid[owner]
        bad = nid_a >= self.a_nrows[addr]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            c = int(self.a_core[addr[i]])
            _, pt, _ = self.ncores[c][1]
            local = int(addr[i]) - int(np.flatnonzero(self.a_core == c)[0])
            raise ArtifactError(f"{pt.label}: byte offset {pt.addr_offset + 8 * local}: key {int(keys[owner[i]]):#010x}"
                                f" is neuron {int(nid_a[i])}, beyond the {int(self.a_nrows[addr[i]])} rows of address "
                                f"entry {local}; expected a neuron id < n_rows. Fix: compile again")
        rows = self.a_row[addr] + nid_a
        words, w_owner = _ranges(self.rowptr[rows], self.rowptr[rows + 1] - self.rowptr[rows])
        if words.size == 0:
            return 0
        a = addr[w_owner]
        typ = self.a_tbase[a] + self.w_tfield[words]
        bad = typ >= self.a_tend[a]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            c = int(self.a_core[a[i]])
            _, _, sy = self.ncores[c][1]
            local_word = int(words[i]) - int(self.rowptr[int(self.a_row[self.a_core == c].min())])
            raise ArtifactError(f"{sy.label}: byte offset {sy.words_offset + 4 * local_word}: synaptic word "
                                f"{local_word} selects synapse type {int(typ[i] - self.a_tbase[a[i]])} past its "
                                f"block's base, beyond the core's {sy.type_exp.size} types; expected type base + "
                                f"field < {sy.type_exp.size}. Fix: compile again")
        self.core_events += np.bincount(self.a_core[a], minlength=self.core_events.size)
        mode = self.t_mode[typ]
        raw = self.w_raw[words]
        m_ = np.where(mode == MODE_POSITIVE, raw, np.where(mode == MODE_NEGATIVE, -raw, self.w_signed2[words]))
        contrib = m_ * pay[owner[w_owner]]
        post = self.w_post[words]
        delay = self.w_delay[words]
        stage = self.a_stage[a]
        # Lava shifts the sum of one send step's weights per (projection, post neuron, delay): group, sum, shift.
        group = ((post * self.n_types + typ) * (self.max_stage + 1) + stage) * self.R + delay
        order = np.argsort(group, kind="stable")
        g_sorted = group[order]
        starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
        sums = np.add.reduceat(contrib[order], starts)
        g = g_sorted[starts]
        d = g % self.R
        typ_g = (g // (self.R * (self.max_stage + 1))) % self.n_types
        post_g = g // (self.R * (self.max_stage + 1) * self.n_types)
        exp = self.t_exp[typ_g]
        shifted = np.where(exp >= 0, np.left_shift(sums, np.maximum(exp, 0)), np.right_shift(sums, np.maximum(-exp, 0)))
        np.add.at(self.ring, ((t + 1 + d) % self.R, post_g), shifted)
        return int(words.size)


def load(out_dir: str | Path) -> Machine:
    """Read and check every file of an emitted SpiNNaker output (raises ArtifactError naming the problem)."""
    return Machine(out_dir)


def run(out_dir: str | Path, raster: np.ndarray | dict[str, np.ndarray]) -> ExecResult:
    """Run the emitted tables in `out_dir` for the raster's T steps; spikes per IntNetwork population."""
    m = Machine(out_dir)
    inputs, steps = integer_raster(m, raster)
    return _Runner(m).run(inputs, steps)
