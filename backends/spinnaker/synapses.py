"""Pack one neuron core's synaptic input but its conv projections (those are conv.py's conv.bin): the
32-bit synaptic word layout (Layout, as sPyNNaker's synapse_row.h: weight | delay | type | index), its
poptable.bin (master population table + address list, sorted by key for binary search) and its
synapses.bin (synapse-type table, row pointers, words)."""

from __future__ import annotations

import dataclasses
import struct
from typing import TYPE_CHECKING

import numpy as np

from ...compiler.errors import TargetError
from ...compiler.targets.target import Target
from .format import (
    MAGIC_POPTABLE,
    MAGIC_SYNAPSES,
    MODE_NEGATIVE,
    MODE_POSITIVE,
    MODE_SIGNED_HALF,
    pack_file,
    pad4,
)

if TYPE_CHECKING:
    from .emit import _Context

WORD_BITS = 32  # SpiNNaker synaptic words are 32-bit (synapse_row.h)


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


@dataclasses.dataclass
class CoreFiles:
    slice_index: int
    files: dict[str, bytes]  # kind -> whole file (header + payload)
    synapses: int = 0
    rows: int = 0
    words: int = 0
    max_row_words: int = 0
    dtcm_bytes: int = 0


def weight_field(m: np.ndarray, mode: int, bits: int, where: str) -> np.ndarray:
    """The `bits`-wide weight fields of mantissas `m` in weight mode `mode` (rows and conv kernels alike)."""
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


def mode_of(data: np.ndarray) -> int:
    """The weight mode that carries these mantissas: positive, negative, or signed halves."""
    if data.size == 0 or data.min() >= 0:
        return MODE_POSITIVE
    if data.max() <= 0:
        return MODE_NEGATIVE
    return MODE_SIGNED_HALF


def synapse_tables(ctx: _Context, k: int) -> tuple[bytes, bytes, CoreFiles]:
    """poptable.bin and synapses.bin of one neuron core."""
    s = ctx.slices[k]
    lay = ctx.layout
    slots = lay.delay_slots
    inet = ctx.inet
    # conv projections travel as conv.bin (conv.py), never as rows
    incoming = [(j, p) for j, p in enumerate(inet.projections) if p.post == s.population and p.conv is None]
    # Type table: incoming projections grouped by pre population, so the types a block uses are contiguous.
    incoming.sort(key=lambda jp: (ctx.pop_order[jp[1].pre], jp[0]))
    if len(incoming) > 0xFFFF:
        raise TargetError(f"{s.label}: {len(incoming)} incoming projections exceed the type table's u16 count")
    types = []
    cols_all, post_all, field_all, type_all, stage_all, native_all = [], [], [], [], [], []
    for t, (j, proj) in enumerate(incoming):
        w = proj.weights
        lo, hi = int(w.indptr[s.start]), int(w.indptr[s.stop])
        mode = mode_of(w.data)
        types.append((proj.weight_exp, mode, j))
        if hi == lo:
            continue
        where = f"projection {proj.pre!r} -> {proj.post!r}"
        m = w.data[lo:hi].astype(np.int64)
        cols_all.append(w.indices[lo:hi].astype(np.int64))
        post_all.append(np.repeat(np.arange(s.size, dtype=np.int64), np.diff(w.indptr[s.start:s.stop + 1])))
        field_all.append(weight_field(m, mode, lay.weight_bits, where))
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
