"""Write a Mapping as SpiNNaker-style binary tables (docs/spinnaker-format.md).

Per chip: the compressed multicast routing table. Per core, by role:

* neurons: `neurons.bin` (integer CUBA-LIF parameters and initial state), `poptable.bin` (master
  population table + address list, sorted by key for binary search as sPyNNaker's
  population_table_binary_search_impl.c) and `synapses.bin` (synapse-type table, row pointers,
  packed 32-bit synaptic words as sPyNNaker's synapse_row.h: weight | delay | type | index);
* source (an input population): `source.bin`, input channel -> multicast key;
* delay (a delay extension): `delay.bin`, which source neurons to re-send at which stage, under
  which key.

Plus machine.bin, the IntNetwork (network.npz, for `verify`'s reference run) and manifest.json.

One module of ~520 lines on purpose: every per-core writer reads the same _Context (slices, keys,
layout), and the files of one core are only consistent when written together.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ...compiler.errors import ArtifactError, TargetError
from ...compiler.ir import (
    NETWORK_FILE,
    Emitter,
    Entry,
    IntNetwork,
    Mapping,
    Role,
    Routing,
    Slice,
    manifest_default,
    save_int_network,
)
from ...compiler.targets.mesh import N_LINKS
from ...compiler.targets.target import Target
from ..output_dir import write_atomically
from .format import (
    FILE_OF_KIND,
    FORMAT_VERSION,
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
    MODE_SIGNED_HALF,
    TOPOLOGIES,
    core_dir,
    pack_file,
    pack_name,
    pad4,
    routing_path,
)

WORD_BITS = 32  # SpiNNaker synaptic words are 32-bit (synapse_row.h)
RING_ENTRY_BYTES = 4  # executor ring buffers hold 32-bit input sums per (slot, neuron)



@dataclasses.dataclass
class Layout:
    """Synaptic word layout: index in the low bits, then type, delay, weight (synapse_row.h order)."""

    weight_bits: int
    delay_bits: int
    type_bits: int
    index_bits: int
    delay_slots: int

    @property
    def type_shift(self) -> int:
        return self.index_bits

    @property
    def delay_shift(self) -> int:
        return self.index_bits + self.type_bits

    @property
    def weight_shift(self) -> int:
        return self.index_bits + self.type_bits + self.delay_bits


def layout_of(target: Target) -> Layout:
    enc, fmt = target.encoding, target.format
    where = f"target {target.name}"
    if enc.synapse_word_bits != WORD_BITS:
        raise TargetError(f"{where}: encoding.synapse_word_bits = {enc.synapse_word_bits}; the SpiNNaker backend "
                          f"writes {WORD_BITS}-bit synaptic words. Fix: set it to {WORD_BITS}")
    type_bits = WORD_BITS - fmt.weight_bits - enc.delay_bits - enc.index_bits
    if type_bits < 0:
        raise TargetError(f"{where}: weight ({fmt.weight_bits}) + delay ({enc.delay_bits}) + index "
                          f"({enc.index_bits}) bits exceed a {WORD_BITS}-bit synaptic word by {-type_bits}. "
                          "Fix: narrower fields in [encoding]/[format]")
    if target.core.delay_slots > 1 << enc.delay_bits:
        raise TargetError(f"{where}: {target.core.delay_slots} delay slots need more than encoding.delay_bits = "
                          f"{enc.delay_bits}. Fix: delay_bits >= {max(0, (target.core.delay_slots - 1).bit_length())}")
    if target.core.neurons > 1 << enc.index_bits:
        raise TargetError(f"{where}: {target.core.neurons} neurons per core need more than encoding.index_bits = "
                          f"{enc.index_bits}. Fix: index_bits >= {(target.core.neurons - 1).bit_length()}")
    return Layout(fmt.weight_bits, enc.delay_bits, type_bits, enc.index_bits, target.core.delay_slots)


# ---- per-core tables -------------------------------------------------------------------------------------

@dataclasses.dataclass
class CoreFiles:
    slice_index: int
    files: dict[str, bytes]  # kind -> whole file (header + payload)
    synapses: int = 0
    rows: int = 0
    words: int = 0
    max_row_words: int = 0
    dtcm_bytes: int = 0


class _Context:
    """Lookups shared by every core: emitters by (slice, stage), slices by population."""

    def __init__(self, mapping: Mapping, routing: Routing) -> None:
        self.mapping = mapping
        self.inet: IntNetwork = mapping.network
        self.target: Target = mapping.target
        self.layout = layout_of(mapping.target)
        self.slices = mapping.slices
        self.emitter: dict[tuple[int, int], Emitter] = {(e.slice_index, e.stage): e for e in routing.emitters}
        self.pop_slices: dict[str, list[int]] = {}
        self.delay_of: dict[tuple[str, int], int] = {}
        self.source_of: dict[tuple[str, int], int] = {}
        for k, s in enumerate(self.slices):
            if s.role == Role.DELAY:
                self.delay_of[(s.population, s.start)] = k
            else:
                self.pop_slices.setdefault(s.population, []).append(k)
                self.source_of[(s.population, s.start)] = k
        for ks in self.pop_slices.values():
            ks.sort(key=lambda k: self.slices[k].start)
        self.pop_order = {name: i for i, name in enumerate(self.inet.populations)}

    def key_of(self, pre_slice: int, stage: int, where: str) -> Emitter:
        """The emitter whose packets carry pre_slice's spikes at `stage` (a delay slice for stage > 0)."""
        s = self.slices[pre_slice]
        k = pre_slice if stage == 0 else self.delay_of.get((s.population, s.start), -1)
        em = self.emitter.get((k, stage))
        if em is None:
            raise ArtifactError(f"{where}: no routing key for {s.label} at delay stage {stage}; the mapping's "
                                "routes do not cover its synapses. Fix: compile again (route pass)")
        return em


def _neurons_file(ctx: _Context, k: int) -> bytes:
    s = ctx.slices[k]
    p = ctx.inet.populations[s.population]
    em = ctx.emitter.get((k, 0))
    n = s.size
    head = struct.pack("<HHH", s.chip[0], s.chip[1], s.core) + pack_name(s.population)
    head = pad4(head)
    fmt = ctx.inet.format  # the integer model's widths travel with every neuron core (compiler/ir/lif.py)
    head += struct.pack("<IIIIIBBBBB3xiii", p.size, s.start, n, em.key if em else 0, em.mask if em else 0,
                        1 if em else 0, fmt.decay_bits, fmt.state_bits, fmt.activation_shift, fmt.threshold_shift,
                        p.du, p.dv, p.vth)
    bias_mant = p.bias_mant[s.start:s.stop].astype("<i4")
    bias_exp = p.bias_exp[s.start:s.stop].astype("<i1")
    zeros = np.zeros(n, "<i4")  # v and u start at rest (Lava's initial state)
    body = bias_mant.tobytes() + pad4(bias_exp.tobytes()) + zeros.tobytes() + zeros.tobytes()
    return pack_file(MAGIC_NEURONS, head + body)


def _source_file(ctx: _Context, k: int) -> bytes:
    s = ctx.slices[k]
    em = ctx.emitter.get((k, 0))
    head = pad4(struct.pack("<HHH", s.chip[0], s.chip[1], s.core) + pack_name(s.population))
    head += struct.pack("<IIII", ctx.inet.populations[s.population].size, s.start, s.size, 1 if em else 0)
    keys = (em.key | np.arange(s.size, dtype=np.int64)) if em else np.zeros(s.size, np.int64)
    return pack_file(MAGIC_SOURCE, head + keys.astype("<u4").tobytes())


def _delay_file(ctx: _Context, k: int) -> bytes:
    s = ctx.slices[k]
    feed = ctx.emitter.get((ctx.source_of[(s.population, s.start)], 0))
    slots = ctx.layout.delay_slots
    n = s.size
    need: dict[int, np.ndarray] = {}  # stage -> which source neurons have a synapse at that stage
    for proj in ctx.inet.projections:
        if proj.pre != s.population:
            continue
        cols = proj.weights.indices.astype(np.int64)
        sel = (cols >= s.start) & (cols < s.stop)
        stages = proj.delays[sel] // slots
        for st in np.unique(stages[stages > 0]).tolist():
            mask = need.setdefault(int(st), np.zeros(n, bool))
            mask[cols[sel][stages == st] - s.start] = True
    n_stages = max((st for (kk, st) in ctx.emitter if kk == k), default=0)
    n_stages = max(n_stages, max(need, default=0))
    if need and feed is None:
        raise ArtifactError(f"delay extension {s.label}: its source has delayed synapses but no routing key to "
                            "feed it. Fix: compile again (route pass)")
    words = (n + 31) // 32
    body = pad4(struct.pack("<HHH", s.chip[0], s.chip[1], s.core))
    body += struct.pack("<IIIIHH", feed.key if feed else 0, feed.mask if feed else 0, 1 if feed else 0, n, slots,
                        n_stages)
    for st in range(1, n_stages + 1):
        em = ctx.emitter.get((k, st))
        bits = need.get(st, np.zeros(n, bool))
        if bits.any() and em is None:
            raise ArtifactError(f"delay extension {s.label}: stage {st} has synapses but no routing key. "
                                "Fix: compile again (route pass)")
        packed = np.zeros(words * 32, bool)
        packed[:n] = bits if em else False
        # bit i of word w = neuron 32 w + i (sPyNNaker bit_field.h order)
        field = np.packbits(packed.reshape(-1, 8), axis=1, bitorder="little").reshape(-1).view("<u4")
        body += struct.pack("<II", em.key if em else 0, 1 if em else 0) + field.tobytes()
    return pack_file(MAGIC_DELAY, body)


def _weight_field(m: np.ndarray, mode: int, bits: int, where: str) -> np.ndarray:
    if mode == MODE_POSITIVE:
        field = m
    elif mode == MODE_NEGATIVE:
        field = -m
    else:
        if np.any(m % 2):
            raise TargetError(f"{where}: a mixed-sign weight mantissa is odd; the format stores half of it. "
                              "Fix: quantize with this target (mixed-sign mantissas are even)")
        field = m // 2
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if field.min() < lo or field.max() > hi:
            raise TargetError(f"{where}: mixed-sign weight mantissas [{int(m.min())}, {int(m.max())}] exceed "
                              f"{bits} signed bits x 2. Fix: quantize with this target")
        return field & ((1 << bits) - 1)
    if field.size and (field.min() < 0 or field.max() >= 1 << bits):
        raise TargetError(f"{where}: weight mantissas [{int(m.min())}, {int(m.max())}] do not fit {bits} bits. "
                          "Fix: quantize with this target")
    return field


def _mode_of(data: np.ndarray) -> int:
    if data.size == 0 or data.min() >= 0:
        return MODE_POSITIVE
    if data.max() <= 0:
        return MODE_NEGATIVE
    return MODE_SIGNED_HALF


def _synapse_tables(ctx: _Context, k: int) -> tuple[bytes, bytes, CoreFiles]:
    """poptable.bin and synapses.bin of one neuron core."""
    s = ctx.slices[k]
    lay = ctx.layout
    slots = lay.delay_slots
    inet = ctx.inet
    incoming = [(j, p) for j, p in enumerate(inet.projections) if p.post == s.population]
    # Type table: incoming projections grouped by pre population, so the types a block uses are contiguous.
    incoming.sort(key=lambda jp: (ctx.pop_order[jp[1].pre], jp[0]))
    if len(incoming) > 0xFFFF:
        raise TargetError(f"{s.label}: {len(incoming)} incoming projections exceed the type table's u16 count")
    types = []
    cols_all, post_all, field_all, type_all, stage_all, native_all = [], [], [], [], [], []
    for t, (j, proj) in enumerate(incoming):
        w = proj.weights
        lo, hi = int(w.indptr[s.start]), int(w.indptr[s.stop])
        mode = _mode_of(w.data)
        types.append((proj.weight_exp, mode, j))
        if hi == lo:
            continue
        where = f"projection {proj.pre!r} -> {proj.post!r}"
        m = w.data[lo:hi].astype(np.int64)
        cols_all.append(w.indices[lo:hi].astype(np.int64))
        post_all.append(np.repeat(np.arange(s.size, dtype=np.int64), np.diff(w.indptr[s.start:s.stop + 1])))
        field_all.append(_weight_field(m, mode, lay.weight_bits, where))
        type_all.append(np.full(hi - lo, t, np.int64))
        d = proj.delays[lo:hi].astype(np.int64)
        stage_all.append(d // slots)
        native_all.append(d % slots)
    type_exp = np.asarray([t[0] for t in types], np.int64)
    if type_exp.size and (type_exp.min() < -128 or type_exp.max() > 127):
        raise TargetError(f"{s.label}: a weight exponent does not fit the type table's signed byte")
    pre_pop_of_type = [incoming[t][1].pre for t in range(len(incoming))]
    if cols_all:
        cols = np.concatenate(cols_all)
        post = np.concatenate(post_all)
        field = np.concatenate(field_all)
        typ = np.concatenate(type_all)
        stage = np.concatenate(stage_all)
        native = np.concatenate(native_all)
    else:
        cols = post = field = typ = stage = native = np.zeros(0, np.int64)
    # Blocks: (pre slice, stage, type chunk) -> one address-list entry; chunks of 2**type_bits types of one
    # pre population share a row (the word's type field picks the projection within the chunk).
    chunk = 1 << lay.type_bits
    first_type: dict[str, int] = {}
    for t, name in enumerate(pre_pop_of_type):
        first_type.setdefault(name, t)
    rel_all = np.asarray([t - first_type[pre_pop_of_type[t]] for t in range(len(incoming))], np.int64)
    rel = rel_all[typ] if typ.size else typ
    chunk_id = rel // chunk
    pre_slice = np.empty(cols.size, np.int64)
    for t, (_, proj) in enumerate(incoming):
        sel = typ == t
        if sel.any():
            ks = ctx.pop_slices[proj.pre]
            edges = np.asarray([ctx.slices[kk].stop for kk in ks])
            pre_slice[sel] = np.asarray(ks)[np.searchsorted(edges, cols[sel], side="right")]
    base = typ - rel  # first type of the synapse's pre population
    uniq, first, block_of = np.unique(_block_key(pre_slice, stage, chunk_id, base), return_index=True,
                                      return_inverse=True)
    # One address entry per block; its rows are the pre slice's neurons in order.
    addr = []  # (key, mask, first_row, n_rows, stage, type_base)
    row_base = np.zeros(uniq.size, np.int64)
    next_row = 0
    for b, i in enumerate(first.tolist()):
        ks, st, ch = int(pre_slice[i]), int(stage[i]), int(chunk_id[i])
        em = ctx.key_of(ks, st, s.label)
        n_rows = ctx.slices[ks].size
        type_base = int(base[i]) + ch * chunk
        if type_base > 0xFF or n_rows > 0xFFFF or st > 0xFF:
            raise TargetError(f"{s.label}: address entry out of range (type base {type_base}, {n_rows} rows, "
                              f"stage {st}); the fields are u8, u16 and u8")
        addr.append((em.key, em.mask, next_row, n_rows, st, type_base))
        row_base[b] = next_row
        next_row += n_rows
    n_rows_total = next_row
    if cols.size:
        starts = np.asarray([ctx.slices[int(pre_slice[i])].start for i in first.tolist()], np.int64)
        row = row_base[block_of] + cols - starts[block_of]
        type_field = rel - chunk_id * chunk
        order = np.lexsort((native, type_field, post, row))
        words = (field[order] << lay.weight_shift) | (native[order] << lay.delay_shift) | \
            (type_field[order] << lay.type_shift) | post[order]
        rowptr = np.zeros(n_rows_total + 1, np.int64)
        np.cumsum(np.bincount(row, minlength=n_rows_total), out=rowptr[1:])
    else:
        words = np.zeros(0, np.int64)
        rowptr = np.zeros(1, np.int64)
    # Master population table: one entry per key block, sorted by key (binary search); its address
    # entries are consecutive in the address list.
    addr.sort(key=lambda a: (a[0], a[5]))
    entries: list[tuple[int, int, int, int]] = []
    for a, (key, mask, *_rest) in enumerate(addr):
        if entries and entries[-1][0] == key:
            e = entries[-1]
            entries[-1] = (e[0], e[1], e[2], e[3] + 1)
        else:
            entries.append((key, mask, a, 1))
    if len(addr) > 0xFFFF:
        raise TargetError(f"{s.label}: {len(addr)} address-list entries exceed the u16 index")
    head = pad4(struct.pack("<HHH", s.chip[0], s.chip[1], s.core))
    pt = head + struct.pack("<II", len(entries), len(addr))
    pt += b"".join(struct.pack("<IIHH", *e) for e in entries)
    pt += b"".join(struct.pack("<IHBB", first, n, st, tb) for (_, _, first, n, st, tb) in addr)
    sy = head + struct.pack("<BBBBHHII", lay.weight_bits, lay.delay_bits, lay.type_bits, lay.index_bits,
                            lay.delay_slots, len(types), n_rows_total, int(words.size))
    sy += b"".join(struct.pack("<bBH", e, m, min(j, 0xFFFF)) for (e, m, j) in types)
    sy += rowptr.astype("<u4").tobytes() + words.astype("<u4").tobytes()
    info = CoreFiles(k, {}, synapses=int(cols.size), rows=n_rows_total, words=int(words.size),
                     max_row_words=int(np.diff(rowptr).max()) if n_rows_total else 0)
    return pack_file(MAGIC_POPTABLE, pt), pack_file(MAGIC_SYNAPSES, sy), info


def _block_key(pre: np.ndarray, stage: np.ndarray, chunk: np.ndarray, base: np.ndarray) -> np.ndarray:
    """One int64 per synapse naming its block (pre slice, stage, type chunk, first type of its pre pop)."""
    return ((pre * 256 + stage) * 65536 + chunk) * 65536 + base


def route_words(cores_per_chip: int) -> int:
    """u32 words per route word: 6 link bits + one bit per core (24 bits on SpiNNaker1, 158 on SpiNNaker2)."""
    return (N_LINKS + cores_per_chip + 31) // 32


def _routing_file(chip: tuple[int, int], table: list[Entry], limit: int, cores_per_chip: int) -> bytes:
    words = route_words(cores_per_chip)
    body = struct.pack("<HHIIHH", chip[0], chip[1], limit, len(table), words, 0)
    for e in table:
        body += struct.pack("<II", e.key, e.mask) + e.route.to_bytes(4 * words, "little")
    return pack_file(MAGIC_ROUTING, body)


def _machine_file(target: Target, n_tables: int, n_cores: int) -> bytes:
    mesh = target.mesh
    body = struct.pack("<HHHBBII", mesh.chips_x, mesh.chips_y, mesh.cores_per_chip, TOPOLOGIES.index(mesh.topology),
                       1 if target.router.default_routing else 0, n_tables, n_cores)
    return pack_file(MAGIC_MACHINE, body)


# ---- the whole output ------------------------------------------------------------------------------------

def _dtcm_estimate(kind_sizes: dict[str, int], s: Slice, info: CoreFiles | None, lay: Layout,
                   delay_stages: int) -> int:
    """Local memory a core's program needs for its data (see docs/spinnaker-format.md §Memory)."""
    payload = {k: v - HEADER_BYTES for k, v in kind_sizes.items()}
    if s.role == Role.NEURONS:
        ring = (lay.delay_slots + 1) * s.size * RING_ENTRY_BYTES
        dma = 2 * 4 * (info.max_row_words if info else 0)  # a double-buffered row fetch from SDRAM
        return payload["neurons"] + payload["poptable"] + ring + dma
    if s.role == Role.DELAY:
        return payload["delay"] + (delay_stages * lay.delay_slots + 1) * s.size  # u8 spike counters per slot
    return payload.get("source", 0)


def _write_into(tmp: Path, mapping: Mapping) -> None:
    routing: Routing | None = mapping.routing
    if routing is None:
        raise ArtifactError("the mapping has no routing tables (mapping.routing). Fix: compile it with "
                            "neurocc.compile / compile_network")
    target = mapping.target
    if target.family != "spinnaker":
        raise TargetError(f"target {target.name} is a {target.family} target; the SpiNNaker backend emits only "
                          "spinnaker targets")
    ctx = _Context(mapping, routing)
    lay = ctx.layout
    files: list[dict[str, Any]] = []
    cores: list[dict[str, Any]] = []

    def put(rel: str, data: bytes, kind: str, chip: tuple[int, int] | None, core: int | None) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append({"path": rel, "kind": kind, "bytes": len(data), "crc32": zlib.crc32(data),
                      "chip": list(chip) if chip is not None else None, "core": core})

    seen: set[tuple[tuple[int, int], int]] = set()
    matrix_bytes = poptable_bytes = n_syn = 0
    for k, s in enumerate(ctx.slices):
        if (s.chip, s.core) in seen:
            raise ArtifactError(f"{s.label}: core {s.core} of chip {s.chip} holds two slices. Fix: place again")
        seen.add((s.chip, s.core))
        out: dict[str, bytes] = {}
        info: CoreFiles | None = None
        if s.role == Role.NEURONS:
            out["neurons"] = _neurons_file(ctx, k)
            out["poptable"], out["synapses"], info = _synapse_tables(ctx, k)
            matrix_bytes += len(out["synapses"])
            poptable_bytes += len(out["poptable"])
            n_syn += info.synapses
        elif s.role == Role.SOURCE:
            out["source"] = _source_file(ctx, k)
        elif s.role == Role.DELAY:
            out["delay"] = _delay_file(ctx, k)
        else:
            raise ArtifactError(f"{s.label}: unknown slice role {s.role!r}")
        d = core_dir(s.chip, s.core)
        for kind, data in out.items():
            put(f"{d}/{FILE_OF_KIND[kind]}", data, kind, s.chip, s.core)
        sizes = {kind: len(data) for kind, data in out.items()}
        stages = int(mapping.usage[k].delay_stages) if mapping.usage is not None else 0
        dtcm = _dtcm_estimate(sizes, s, info, lay, stages)
        dtcm_budget = target.core.local_memory_bytes or None
        sdram = sum(sizes.values())
        matrix = sizes.get("synapses", 0) - HEADER_BYTES if "synapses" in sizes else 0
        entry: dict[str, Any] = {
            "slice": s.label, "role": s.role, "chip": list(s.chip), "core": s.core, "dir": d,
            "sdram_bytes": sdram, "dtcm_bytes": dtcm, "dtcm_budget_bytes": dtcm_budget,
            "synaptic_matrix_bytes": matrix, "synapse_memory_budget_bytes": target.core.synapse_memory_bytes,
        }
        if info is not None:
            entry.update(synapses=info.synapses, rows=info.rows, words=info.words, max_row_words=info.max_row_words)
        over = [what for what, used, limit in (("dtcm", dtcm, dtcm_budget),
                                                ("synapse memory", matrix, target.core.synapse_memory_bytes))
                if limit is not None and used > limit]
        entry["over_budget"] = over
        cores.append(entry)
    limit = target.router.entries_per_chip
    tables = []
    for chip in sorted(routing.compressed):
        table = routing.compressed[chip]
        if len(table) > limit:
            raise TargetError(f"chip {chip}: {len(table)} routing entries, the router holds {limit} (over by "
                              f"{len(table) - limit}). Fix: a larger machine or fewer, larger slices")
        for e in table:
            if e.route >> (N_LINKS + target.mesh.cores_per_chip):
                raise ArtifactError(f"chip {chip}: route word {e.route:#x} names a core beyond "
                                    f"{target.mesh.cores_per_chip}. Fix: route again")
        put(routing_path(chip), _routing_file(chip, table, limit, target.mesh.cores_per_chip), "routing", chip, None)
        tables.append({"chip": list(chip), "entries": len(table), "limit": limit,
                       "before_compression": len(routing.tables.get(chip, [])),
                       "defaulted": len(routing.defaulted.get(chip, []))})
    n_tables = len(tables)
    put(MACHINE_FILE, _machine_file(target, n_tables, len(ctx.slices)), "machine", None, None)
    save_int_network(mapping.network, tmp / NETWORK_FILE)
    before = routing.entries_before() + sum(len(v) for v in routing.defaulted.values())
    manifest = {
        **mapping.summary(),
        "backend": "spinnaker",
        "format": "neurocc-spinnaker",
        "format_version": FORMAT_VERSION,
        "format_doc": "docs/spinnaker-format.md",
        "synaptic_word": dataclasses.asdict(lay),
        "network_file": NETWORK_FILE,
        "files": files,
        "core_memory": cores,
        "routing_tables": tables,
        "routing_entries": {
            "generated": before, "after_default_routing": routing.entries_before(),
            "after_compression": routing.entries_after(), "limit_per_chip": limit,
            "max_per_chip": max((t["entries"] for t in tables), default=0),
        },
        "synapse_storage": {
            "synapses": n_syn, "synapses_bytes": matrix_bytes, "poptable_bytes": poptable_bytes,
            "bytes_per_synapse": matrix_bytes / n_syn if n_syn else 0.0,
            "bytes_per_synapse_with_poptable": (matrix_bytes + poptable_bytes) / n_syn if n_syn else 0.0,
        },
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=manifest_default) + "\n")


def emit(mapping: Mapping, out_dir: Path) -> Path:
    """Write the SpiNNaker tables for `mapping` into `out_dir`, atomically; return `out_dir`.

    Everything is written into a temporary directory beside `out_dir` and renamed into place, so a
    failure leaves the previous output or nothing. An existing `out_dir` is replaced only if it is
    empty or a previous neurocc output (has a manifest.json).
    """
    return write_atomically(out_dir, "the SpiNNaker tables", lambda tmp: _write_into(tmp, mapping))
