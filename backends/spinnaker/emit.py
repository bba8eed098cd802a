"""Write a Mapping as SpiNNaker-style binary tables (docs/spinnaker-format.md).

Per chip: the compressed multicast routing table. Per core, by role:

* neurons: `neurons.bin` (integer CUBA-LIF parameters and initial state), `poptable.bin` (master
  population table + address list, sorted by key for binary search as sPyNNaker's
  population_table_binary_search_impl.c) and `synapses.bin` (synapse-type table, row pointers,
  packed 32-bit synaptic words as sPyNNaker's synapse_row.h: weight | delay | type | index), and,
  when conv projections enter it, `conv.bin` (per conv projection a shape header, the key blocks it
  listens to, and the kernel of the output channels the core holds, stored once: local-only convolution
  in the spirit of sPyNNaker's ConvolutionConnector);
* source (an input population): `source.bin`, input channel -> multicast key;
* delay (a delay extension): `delay.bin`, which source neurons to re-send at which stage, under
  which key.

Plus machine.bin, the IntNetwork (network.npz, for `verify`'s reference run) and manifest.json.
The synaptic word layout, poptable.bin and synapses.bin are packed in synapses.py, conv.bin in conv.py.
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
from ...compiler.targets.target import FORMAT_BOUNDS, NumericFormat, Target
from ..output_dir import write_atomically
from .conv import ConvFileInfo, conv_table
from .format import (
    FILE_OF_KIND,
    FORMAT_VERSION,
    HEADER_BYTES,
    MACHINE_FILE,
    MAGIC_DELAY,
    MAGIC_MACHINE,
    MAGIC_NEURONS,
    MAGIC_ROUTING,
    MAGIC_SOURCE,
    MANIFEST,
    TOPOLOGIES,
    core_dir,
    pack_file,
    pack_name,
    pad4,
    routing_path,
)
from .synapses import CoreFiles, Layout, layout_of, synapse_tables

RING_ENTRY_BYTES = 4  # executor ring buffers hold 32-bit input sums per (slot, neuron)

# neurons.bin fields that carry the format (docs/spinnaker-format.md): key -> (largest value, why). The four
# widths are u8 fields, so their limit is what the executor steps exactly (FORMAT_BOUNDS); bias mantissas are
# i32 and bias exponents i8, narrower than the format allows.
NEURON_FIELD_LIMITS: dict[str, tuple[int, str]] = {
    **{key: (FORMAT_BOUNDS[key][1], "the widths the SpiNNaker executor steps exactly")
       for key in ("decay_bits", "state_bits", "activation_shift", "threshold_shift", "threshold_bits")},
    "bias_mant_bits": (32, "neurons.bin stores bias mantissas as i32"),
    "bias_exp_max": (127, "neurons.bin stores bias exponents as i8"),
}


def check_format(fmt: NumericFormat, where: str) -> None:
    """Refuse a numeric format whose values neurons.bin cannot carry or the executor cannot step exactly."""
    for key, (hi, why) in NEURON_FIELD_LIMITS.items():
        lo = FORMAT_BOUNDS.get(key, (1, hi))[0]
        value = getattr(fmt, key)
        if not lo <= value <= hi:
            raise TargetError(f"{where}: 'format.{key}' = {value} is outside {lo}..{hi}, {why}. Fix: set "
                              f"[format] {key} to a value in {lo}..{hi} and compile again")


# ---- per-core tables -------------------------------------------------------------------------------------

class _Context:
    """Lookups shared by every core: emitters by (slice, stage), slices by population."""

    def __init__(self, mapping: Mapping, routing: Routing) -> None:
        self.mapping = mapping
        self.inet: IntNetwork = mapping.network
        self.target: Target = mapping.target
        check_format(self.inet.format, f"target {self.target.name}")
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
        # conv.bin is copied into DTCM whole, as sPyNNaker's local-only connectors are (spin1_memcpy at init)
        return payload["neurons"] + payload["poptable"] + payload.get("conv", 0) + ring + dma
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
    matrix_bytes = poptable_bytes = n_syn = conv_bytes = conv_conn = conv_weights = 0
    for k, s in enumerate(ctx.slices):
        if (s.chip, s.core) in seen:
            raise ArtifactError(f"{s.label}: core {s.core} of chip {s.chip} holds two slices. Fix: place again")
        seen.add((s.chip, s.core))
        out: dict[str, bytes] = {}
        info: CoreFiles | None = None
        cinfo: ConvFileInfo | None = None
        if s.role == Role.NEURONS:
            out["neurons"] = _neurons_file(ctx, k)
            out["poptable"], out["synapses"], info = synapse_tables(ctx, k)
            matrix_bytes += len(out["synapses"])
            poptable_bytes += len(out["poptable"])
            n_syn += info.synapses
            conv = conv_table(ctx, k)
            if conv is not None:
                out["conv"], cinfo = conv
                conv_bytes += len(out["conv"])
                conv_conn += cinfo.connections
                conv_weights += cinfo.kernel_weights
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
        if cinfo is not None:
            entry.update(conv_bytes=sizes["conv"], conv_records=cinfo.records, conv_kernel_weights=cinfo.kernel_weights,
                         conv_connections=cinfo.connections)
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
            "over_delivery": routing.over_delivery, "collapsed_source_chips": len(routing.collapsed_chips),
        },
        "synapse_storage": {
            "synapses": n_syn, "synapses_bytes": matrix_bytes, "poptable_bytes": poptable_bytes,
            "bytes_per_synapse": matrix_bytes / n_syn if n_syn else 0.0,
            "bytes_per_synapse_with_poptable": (matrix_bytes + poptable_bytes) / n_syn if n_syn else 0.0,
            # conv projections: conv.bin files (whole, header included) per unrolled connection they stand for
            "conv_connections": conv_conn, "conv_bytes": conv_bytes, "conv_kernel_weights": conv_weights,
            "conv_bytes_per_connection": conv_bytes / conv_conn if conv_conn else 0.0,
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
