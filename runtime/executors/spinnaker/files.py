"""The SpiNNaker executor's view of each emitted file: one record type and one checked parser per kind
(docs/spinnaker-format.md), written independently of backends/spinnaker/emit.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ....backends.spinnaker.format import (
    HEADER_BYTES,
    MODES,
    Reader,
)
from ....compiler.targets.target import FORMAT_BOUNDS

N_LINKS = 6
LINK_VECTORS = ((1, 0), (1, 1), (0, 1), (-1, 0), (-1, -1), (0, -1))  # E NE N W SW S (SpiNNaker route word)
LINK_NAMES = ("E", "NE", "N", "W", "SW", "S")
MASK32 = 0xFFFFFFFF

Chip = tuple[int, int]
CoreId = tuple[Chip, int]


# ---- parsed files ----------------------------------------------------------------------------------------

@dataclass
class Neurons:
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
class PopTable:
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
class Synapses:
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
class Delay:
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
class Source:
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


def parse_neurons(r: Reader, chip: Chip, core: int) -> Neurons:
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
    for key_name, value, offset in (("decay_bits", dbits, 21), ("state_bits", sbits, 22),
                                    ("activation_shift", ashift, 23), ("threshold_shift", tshift, 24)):
        lo, hi = FORMAT_BOUNDS[key_name]  # the widths compiler/ir/lif.py steps exactly
        if not lo <= value <= hi:
            raise r.fail(f"{key_name} {value}, expected {lo}..{hi}", at + offset)
    bias_mant = r.array("i4", n, "bias mantissas").astype(np.int64)
    bias_exp = r.array("i1", n, "bias exponents").astype(np.int64)
    r.align4("bias exponents")
    v0 = r.array("i4", n, "initial v").astype(np.int64)
    u0 = r.array("i4", n, "initial u").astype(np.int64)
    r.done()
    return Neurons(r.label, name, pop_size, start, n, key, mask, bool(has_key), dbits, sbits, ashift, tshift, du,
                    dv, vth, bias_mant, bias_exp, v0, u0)


def parse_poptable(r: Reader, chip: Chip, core: int) -> PopTable:
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
    return PopTable(r.label, keys, masks, start, count, adr[:, 0].astype(np.int64),
                     (adr[:, 1] & 0xFFFF).astype(np.int64), ((adr[:, 1] >> 16) & 0xFF).astype(np.int64),
                     (adr[:, 1] >> 24).astype(np.int64), entries_offset, addr_offset)


def parse_synapses(r: Reader, chip: Chip, core: int, n_neurons: int) -> Synapses:
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
    return Synapses(r.label, wb, db, tb, ib, slots, type_exp, type_mode, rowptr, words, words_offset)


def parse_delay(r: Reader, chip: Chip, core: int) -> Delay:
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
    return Delay(r.label, in_key, in_mask, bool(has_in), n, slots, keys, has, bits)


def parse_source(r: Reader, chip: Chip, core: int) -> Source:
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
    return Source(r.label, name, pop_size, start, n, bool(has_key), keys)
