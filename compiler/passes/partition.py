"""Partition: cut every population into slices that fit one core under every budget.

Budgets come from the target's [core] section; synapse memory is counted with the target's
real encoding ([encoding]): one row per (source neuron, delay stage) that reaches the slice,
a row header, and per synapse weight + delay + index bits (bit-packed and rounded to 64-bit
words on Loihi; whole words on SpiNNaker and Cortex-M). Delays at or beyond the core's native
delay slots are served by delay-extension slices, as on SpiNNaker: the source's spikes are
re-sent once per stage of `delay_slots` steps, and the synapse keeps the remainder.

The pass works on the whole graph at once (no numpy call per projection, issue 14): every synapse is
gathered once into a `_Table` in column order (grouped by post population, then projection, pre
neuron, post neuron), with per-neuron synapse counts, delay slots and stages. A slicing of every
population is a `_Cut` (arrays of slice bounds and a neuron -> slice lookup); usage and output axons
of all slices come from one pass over the table per candidate slicing, by segment reductions. The
only Python loops left are over blocks of BLOCK_SYNAPSES synapses, over fitting rounds, over
populations in the output-axon re-cut walk (each re-cut changes its sources' counts, in order), over
conv populations (their channel-aligned cuts) and over the output slices themselves.

Why one module of ~700 lines: fitting, usage counting and the output-axon re-cut all read the same
private `_Graph`/`_Table`/`_Cut` arrays; split apart, those types would become a public API between
modules that only this pass uses. `slice_usage` (the per-slice recount tests check against) lives here
for the same reason.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from ..errors import TargetError
from ..ir import IntNetwork, IntProjection, Partition, Role, Slice, SliceUsage
from ..ir.table import gather_ranges
from ..targets.target import Target
from .synapse_chunks import ProjectionArrays, block_bounds, projection_arrays


def _row_bits(target: Target, proj: IntProjection) -> tuple[int, int]:
    """(bits per synapse, bits per row header) in the target's encoding."""
    enc, fmt = target.encoding, target.format
    if enc.synapse_word_bits:
        return enc.synapse_word_bits, enc.row_header_bits
    weight_bits = fmt.weight_bits + (1 if proj.sign_mode == "mixed" else 0)
    delay_bits = enc.delay_bits if proj.max_delay > 0 else 0
    return weight_bits + delay_bits + enc.index_bits, enc.row_header_bits


# sPyNNaker's local-only conv connector header: 7 words + 14 shorts (research/conv-conversion-sweeps.md);
# no Loihi or Cortex-M figure is public, so every target budgets the same header per conv on a core.
CONV_HEADER_BYTES = 7 * 4 + 14 * 2


def _kernel_bits(target: Target, proj: IntProjection) -> int:
    """Bits of one stored kernel weight: the mantissa, plus a sign bit for a mixed-sign kernel."""
    return target.format.weight_bits + (1 if proj.sign_mode == "mixed" else 0)


def conv_slice_bytes(target: Target, proj: IntProjection, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Bytes of a conv projection on each slice [start, stop) of its post population: a header and the
    kernels of the output channels the slice covers, stored once (rounded to the target's words)."""
    conv = proj.conv
    assert conv is not None
    per_channel = conv.out_shape[1] * conv.out_shape[2]
    channels = (np.asarray(stops) - 1) // per_channel - np.asarray(starts) // per_channel + 1
    bits = channels * (conv.kernel[0].size * _kernel_bits(target, proj))
    word = 64 if target.encoding.synapse_word_bits == 0 else 32
    return CONV_HEADER_BYTES + np.ceil(bits / word).astype(np.int64) * (word // 8)


def _bytes_for_rows(counts: np.ndarray, syn_bits: int, hdr_bits: int, packed: bool) -> int:
    bits = hdr_bits + counts.astype(np.int64) * syn_bits
    if packed:  # Loihi: each row rounded up to 64-bit words (nengo-loihi SynapseConfig.bits_per_axon)
        return int((np.ceil(bits / 64) * 8).sum())
    return int((np.ceil(bits / 32) * 4).sum())  # 32-bit words


def slice_usage(inet: IntNetwork, target: Target, post: str, start: int, stop: int) -> SliceUsage:
    """Exact resource use of neurons [start, stop) of `post` on one core."""
    slots = target.core.delay_slots
    packed = target.encoding.synapse_word_bits == 0
    use = SliceUsage(neurons=stop - start)
    fan_in_keys: list[np.ndarray] = []
    offset = 0
    for proj in inet.incoming(post):
        w = proj.weights
        lo, hi = int(w.indptr[start]), int(w.indptr[stop])
        if hi == lo:
            offset += w.shape[1] * (target.encoding.delay_extension_slots + 1)
            continue
        pre = w.indices[lo:hi].astype(np.int64)
        delays = proj.delays[lo:hi]
        stage = delays // slots
        key = stage * w.shape[1] + pre
        uniq, counts = np.unique(key, return_counts=True)
        use.synapses += hi - lo
        if proj.conv is not None:
            kernel = int(conv_slice_bytes(target, proj, np.array([start]), np.array([stop]))[0])
            use.synapse_bytes += kernel
            use.kernel_bytes += kernel
        else:
            syn_bits, hdr_bits = _row_bits(target, proj)
            use.synapse_bytes += _bytes_for_rows(counts, syn_bits, hdr_bits, packed)
        use.delay_slots = max(use.delay_slots, int((delays % slots).max()) + 1)
        use.delay_stages = max(use.delay_stages, int(stage.max()))
        fan_in_keys.append(uniq + offset)
        offset += w.shape[1] * (target.encoding.delay_extension_slots + 1)
    use.fan_in = int(sum(k.size for k in fan_in_keys))
    if target.core.local_bytes_per_neuron:
        use.local_bytes = use.kernel_bytes + use.neurons * target.core.local_bytes_per_neuron
    return use


def _bounds(size: int, k: int) -> list[tuple[int, int]]:
    """Exactly k contiguous slices whose sizes differ by at most one."""
    k = max(1, min(k, size))
    edges = [(i * size) // k for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _channel_bounds(shape: tuple[int, int, int], max_neurons: int):
    """Slices of a conv's output that are whole channel groups when that costs no core (each slice then
    holds the kernels of its own channels only); else even contiguous runs (a run spanning part of two
    channels holds both kernels: `conv_slice_bytes` counts them)."""
    channels, per_channel = shape[0], shape[1] * shape[2]

    def split(size: int, k: int) -> list[tuple[int, int]]:
        if k <= channels:
            grouped = [(a * per_channel, b * per_channel) for a, b in _bounds(channels, k)]
            if max(b - a for a, b in grouped) <= max_neurons:
                return grouped
        return _bounds(size, k)

    return split


# A block of projections is put in column order by sorting its synapses when its rows and columns
# outnumber SORT_BELOW x its synapses (PACMAN-style graphs: 250 x 250 projections of 16 synapses), else by
# scipy's linear CSR -> CSC (dense projections). Both give the same table.
SORT_BELOW = 1
# Synapses (plus rows and columns, when building the table) handled per numpy pass: the temporaries of a
# block take ~50 bytes per synapse, so blocks stay small while the table itself holds ~4 bytes per synapse.
BLOCK_SYNAPSES = 1 << 20


# ---- array idioms ----

def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges [starts[i], starts[i] + lengths[i])."""
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1]) if ends.size else 0, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


def _run_starts(n: int, first: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """True where a run begins: at the `first` positions (segment starts) and where `values` changes."""
    new = np.zeros(n, dtype=bool)
    new[first] = True
    if values is not None and n:
        new[1:] |= values[1:] != values[:-1]
    return new


def _column_of(first: np.ndarray, n: int) -> np.ndarray:
    """Column of each of n positions, columns starting at the sorted `first` (an empty column owns none):
    searchsorted(first, arange(n), "right") - 1 in one linear pass."""
    return np.repeat(np.arange(first.size, dtype=np.int64), np.diff(np.append(first, n)))


def _segment_max(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Maximum of each segment [starts[i], starts[i] + sizes[i]) of a covering partition; 0 if empty."""
    out = np.zeros(starts.size, dtype=np.int64)
    full = sizes > 0
    if full.any():
        out[full] = np.maximum.reduceat(values, starts[full])
    return out


def _segment_sum(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sum of each segment [starts[i], starts[i] + sizes[i]) of a covering partition; 0 if empty."""
    out = np.zeros(starts.size, dtype=np.int64)
    full = sizes > 0
    if full.any():
        out[full] = np.add.reduceat(values, starts[full], dtype=np.int64)
    return out


def _row_bytes(bits: np.ndarray, packed: bool) -> np.ndarray:
    """Bytes of rows of `bits` bits: 64-bit words on Loihi (nengo-loihi bits_per_axon), else 32-bit words."""
    return np.ceil(bits / 64) * 8 if packed else np.ceil(bits / 32) * 4


# ---- the whole graph as arrays ----

@dataclass(frozen=True)
class _Graph:
    """Per-population and per-projection facts partition needs, as arrays (populations in inet order)."""

    names: list[str]
    size: np.ndarray
    is_input: np.ndarray
    offset: np.ndarray  # (n_pops + 1,) first global neuron id
    proj: ProjectionArrays
    syn_bits: np.ndarray  # per projection, in the target's encoding
    hdr_bits: np.ndarray
    conv: np.ndarray  # per projection: is one convolution
    max_delay: np.ndarray
    convs: dict[int, IntProjection]  # the conv projections by index


@dataclass(frozen=True)
class _Table:
    """Every synapse in column order: grouped by post population (projections stable in inet order),
    then projection, pre neuron, post neuron. A column is one (projection, pre neuron); its synapses'
    post neurons are ascending, so any slicing of the post population groups them into contiguous rows.

    Held through partitioning: the post neuron per synapse (4 bytes), a 16-bit delay stage only when
    some synapse needs a delay extension, per column its first synapse, pre neuron and projection, and
    per neuron its synapse count, native delay slots used and deepest stage (slices are runs of
    neurons: their maxima need no per-synapse pass).
    """

    post: np.ndarray  # global post neuron id per synapse
    stage: np.ndarray | None
    col_ptr: np.ndarray  # (n_cols + 1,)
    col_pre: np.ndarray  # global pre neuron id per column
    col_proj: np.ndarray  # projection (inet order) per column
    post_count: np.ndarray  # per global neuron
    post_slots: np.ndarray
    post_stage: np.ndarray
    blocks: list[tuple[int, int]]  # column ranges of about BLOCK_SYNAPSES synapses
    # The same synapses in CSR order (the block's projections end to end, rows by post neuron), for the
    # fitting rounds: per synapse the distance to the previous post neuron of its column (GAP_CAP if none
    # or farther), per non-empty CSR row its global post neuron, length and projection. None when some
    # synapse has a delay stage (rows are then split by stage too: the rounds take the column pass).
    gap: np.ndarray | None
    row_neuron: np.ndarray | None
    row_len: np.ndarray | None
    row_proj: np.ndarray | None
    row_blocks: list[tuple[int, int, int, int]]  # (row lo, row hi, synapse lo, synapse hi) per build block

    def block(self, c0: int, c1: int) -> tuple[int, int, np.ndarray]:
        """Synapse range of columns [c0, c1) and the columns' first synapses within it."""
        lo, hi = int(self.col_ptr[c0]), int(self.col_ptr[c1])
        return lo, hi, self.col_ptr[c0:c1] - lo


def _whole_graph(inet: IntNetwork, target: Target) -> tuple[_Graph, _Table]:
    pops = list(inet.populations.values())
    size = np.fromiter((p.size for p in pops), dtype=np.int64, count=len(pops))
    offset = np.zeros(size.size + 1, dtype=np.int64)
    offset[1:] = np.cumsum(size)
    arr = projection_arrays(inet)
    n = arr.size
    mixed = arr.sign_mixed
    conv = np.zeros(n, dtype=bool)
    conv[list(arr.conv)] = True
    table, max_delay = _table(arr, int(offset[-1]), target.core.delay_slots)
    enc, fmt = target.encoding, target.format
    if enc.synapse_word_bits:  # as _row_bits
        syn_bits = np.full(n, enc.synapse_word_bits, dtype=np.int64)
    else:
        syn_bits = (fmt.weight_bits + mixed.astype(np.int64) + np.where(max_delay > 0, enc.delay_bits, 0)
                    + enc.index_bits)
    graph = _Graph(list(inet.populations), size,
                   np.fromiter((p.kind == "input" for p in pops), dtype=bool, count=len(pops)), offset, arr,
                   syn_bits, np.full(n, enc.row_header_bits, dtype=np.int64), conv, max_delay,
                   dict(arr.conv))
    return graph, table


def _table(arr: ProjectionArrays, total: int, slots: int) -> tuple[_Table, np.ndarray]:
    """The synapse table, and the largest delay of each projection (0 if it has no synapse)."""
    per_neuron = tuple(np.zeros(total, dtype=np.int64) for _ in range(3))  # count, slots used, deepest stage
    max_delay = np.zeros(arr.size, dtype=np.int64)
    order = np.argsort(arr.post_pop, kind="stable")  # projections grouped by post population
    idx = np.int32 if total < np.iinfo(np.int32).max else np.int64
    n_syn = int(arr.nnz.sum())
    post = np.empty(n_syn, dtype=idx)  # filled block by block: no second copy of the table
    stage: np.ndarray | None = None
    gap = np.empty(n_syn, dtype=np.uint16)
    parts, rows, row_blocks = [], [], []
    base = row_base = 0
    work = (arr.nnz + arr.n_post + arr.n_pre)[order]  # what one block concatenates or transposes
    for lo, hi in block_bounds(work, BLOCK_SYNAPSES):
        (block_post, block_stage, first, col_pre, col_proj, block_gap,
         block_rows) = _table_block(arr, order[lo:hi], slots, per_neuron, max_delay)
        end = base + block_post.size
        post[base:end] = block_post
        if block_stage is not None:
            if stage is None:
                stage = np.zeros(n_syn, dtype=np.int16)
            stage[base:end] = block_stage
        if block_gap is not None:
            gap[base:end] = block_gap
        parts.append((first + base, col_pre, col_proj))
        rows.append(block_rows)
        row_blocks.append((row_base, row_base + block_rows[0].size, base, end))
        base, row_base = end, row_base + block_rows[0].size
    if stage is not None:
        gap = None
    row_neuron, row_len, row_proj = (np.concatenate(x) for x in zip(*rows, strict=True)) if rows else (None,) * 3
    col_ptr, col_pre, col_proj = ([np.concatenate(x)] for x in zip(*parts, strict=True)) if parts else ([], [], [])
    col_ptr = np.concatenate(col_ptr + [np.array([base], dtype=np.int64)])
    table = _Table(post, stage, col_ptr, col_pre[0] if col_pre else np.zeros(0, np.int64),
                   col_proj[0] if col_proj else np.zeros(0, np.int64),
                   *per_neuron, block_bounds(np.diff(col_ptr), BLOCK_SYNAPSES), gap,
                   row_neuron, row_len, row_proj, row_blocks)
    return table, max_delay


def _block_synapses(arr: ProjectionArrays, ids: np.ndarray) -> slice | np.ndarray:
    """Where the synapses of projections `ids` are in the end-to-end arrays: a slice when the ids are
    consecutive (a view, no gather), else their positions."""
    if ids.size and int(ids[-1]) - int(ids[0]) + 1 == ids.size and bool(np.all(np.diff(ids) == 1)):
        return slice(int(arr.syn_ptr[ids[0]]), int(arr.syn_ptr[ids[-1] + 1]))
    return arr.take_synapses(ids)


def _block_rows(arr: ProjectionArrays, ids: np.ndarray,
                syn: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(projection within the block, row, entries) of every non-empty row of projections `ids`, in CSR order,
    from the stored form of the rows: each projection's indptr, or each synapse's row."""
    if not arr.blocks.has_rows:
        n_ptr = arr.n_post[ids] + 1
        ptr = arr.ptr_ptr
        if isinstance(syn, slice):
            indptr = arr.indptr_all[int(ptr[ids[0]]):int(ptr[ids[-1] + 1])]
        else:
            indptr = arr.indptr_all[gather_ranges(ptr[ids], n_ptr)]
        counts = np.diff(indptr)  # across a seam between two projections: -nnz or 0, never a row
        pos = np.flatnonzero(counts > 0)
        start = np.cumsum(n_ptr) - n_ptr
        owner = np.searchsorted(start, pos, side="right") - 1
        return owner, pos - start[owner], counts[pos].astype(np.int64)
    rows = arr.rows_all[syn]
    if not rows.size:
        return (np.zeros(0, np.int64),) * 3
    owner = np.repeat(np.arange(ids.size), arr.nnz[ids])
    new = np.ones(rows.size, dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]) | (owner[1:] != owner[:-1])
    first = np.flatnonzero(new)
    return owner[first], rows[first].astype(np.int64), np.diff(np.append(first, rows.size))


def _table_block(arr: ProjectionArrays, ids: np.ndarray, slots: int,
                 per_neuron: tuple[np.ndarray, ...], max_delay: np.ndarray) -> list:
    """Columns of projections `ids` in column order; fills their per-neuron counts and maximum delays.
    Stable-sorting by (projection, pre neuron) keeps each column's post neurons ascending (CSR order is
    by post neuron); a block of dense projections is transposed by scipy instead (linear, not n log n)."""
    post_count, post_slots, post_stage = per_neuron
    nnz, n_post, n_pre = arr.nnz[ids], arr.n_post[ids], arr.n_pre[ids]
    syn_off, row_off, col_off = (np.cumsum(x) - x for x in (nnz, n_post, n_pre))
    n_syn = int(nnz.sum())
    syn = _block_synapses(arr, ids)
    row_owner, row, row_len = _block_rows(arr, ids, syn)
    neuron = arr.post_offset[ids][row_owner] + row  # global post neuron of each non-empty row
    delays = arr.delays_all[syn]
    full = np.flatnonzero(nnz)
    if full.size:
        max_delay[ids[full]] = np.maximum.reduceat(delays, syn_off[full])
    staged = bool(full.size) and int(max_delay[ids].max()) >= slots
    if row.size:
        row_first = np.cumsum(row_len) - row_len
        np.add.at(post_count, neuron, row_len)
        np.maximum.at(post_slots, neuron, np.maximum.reduceat(delays % slots, row_first).astype(np.int64) + 1)
        if staged:
            np.maximum.at(post_stage, neuron, np.maximum.reduceat(delays // slots, row_first).astype(np.int64))
    pre = arr.indices_all[syn].astype(np.int64)
    syn_owner = np.repeat(np.arange(ids.size), nnz)
    pre += col_off[syn_owner]  # the block's column of each synapse
    if int(n_post.sum() + n_pre.sum()) > SORT_BELOW * n_syn:  # sparse: sorting beats touching every row
        order = np.argsort(pre, kind="stable")
        col = pre[order]
        post = np.repeat(neuron, row_len)[order]
        first = np.flatnonzero(_run_starts(n_syn, np.zeros(min(1, n_syn), np.int64), col))
        col_owner = syn_owner[order[first]]
        cols = col[first]
    else:
        indptr = np.zeros(int(n_post.sum()) + 1, dtype=np.int64)
        indptr[row_off[row_owner] + row + 1] = row_len
        data = np.arange(n_syn, dtype=np.int32 if n_syn < np.iinfo(np.int32).max else np.int64)
        csc = sp.csr_array((data, pre, np.cumsum(indptr)), shape=(indptr.size - 1, int(n_pre.sum()))).tocsc()
        col_len = np.diff(csc.indptr)
        cols = np.flatnonzero(col_len)
        col_owner = np.searchsorted(col_off, cols, side="right") - 1
        syn_col_owner = np.repeat(col_owner, col_len[cols])
        post = arr.post_offset[ids][syn_col_owner] + csc.indices - row_off[syn_col_owner]
        first = csc.indptr[cols].astype(np.int64)
        order = csc.data
    stage = (delays[order] // slots).astype(np.int16) if staged else None
    col_pre = arr.pre_offset[ids][col_owner] + cols - col_off[col_owner]
    gap = None if staged else _csr_gaps(post, first, order)
    rows = (neuron, row_len.astype(np.int32), ids[row_owner].astype(np.int32))
    return [post, stage, first, col_pre, ids[col_owner], gap, rows]


# Gaps at or over this (and a column's first synapse) are stored as it: slices of up to GAP_CAP neurons
# can be counted from the gaps (a synapse starts a row when its gap exceeds its offset in its slice).
GAP_CAP = np.iinfo(np.uint16).max


def _csr_gaps(post: np.ndarray, first: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per synapse in CSR order, its post neuron minus its column's previous one (GAP_CAP for a column's
    first synapse or a gap of GAP_CAP or more); post and first are in column order, order[i] is the CSR
    position of column-order synapse i."""
    gap_col = np.empty(post.size, dtype=np.int64)
    if post.size:
        gap_col[0] = GAP_CAP
        np.subtract(post[1:], post[:-1], out=gap_col[1:])
        gap_col[first] = GAP_CAP
        np.minimum(gap_col, GAP_CAP, out=gap_col)
    out = np.empty(post.size, dtype=np.uint16)
    out[order] = gap_col
    return out


# ---- slicings ----

@dataclass(frozen=True)
class _Cut:
    """Slices of every population: population p has slices ptr[p]..ptr[p+1], neurons [start, stop)."""

    ptr: np.ndarray
    start: np.ndarray  # within the population
    stop: np.ndarray
    gstart: np.ndarray  # global neuron id of each slice's first neuron
    slice_of: np.ndarray  # global neuron id -> global slice index

    @property
    def n(self) -> np.ndarray:
        return np.diff(self.ptr)

    def bounds(self, p: int) -> list[tuple[int, int]]:
        a, b = int(self.ptr[p]), int(self.ptr[p + 1])
        return list(zip(self.start[a:b].tolist(), self.stop[a:b].tolist(), strict=True))


def _cut(graph: _Graph, k: np.ndarray, splits: dict[int, object]) -> _Cut:
    """Even cuts of every population into k slices (`_bounds`), or its split function's cut."""
    size = graph.size
    k = np.maximum(1, np.minimum(k, size))
    ptr = np.zeros(size.size + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(k)
    pop = np.repeat(np.arange(size.size), k)
    i = np.arange(int(ptr[-1]), dtype=np.int64) - ptr[pop]
    start, stop = (i * size[pop]) // k[pop], ((i + 1) * size[pop]) // k[pop]
    if splits:  # conv populations cut along channels: one Python call per conv population
        pieces = {p: np.asarray(split(int(size[p]), int(k[p])), dtype=np.int64).reshape(-1, 2)
                  for p, split in splits.items()}
        even = ~np.isin(pop, list(pieces))
        k = k.copy()
        for p, b in pieces.items():
            k[p] = len(b)
        ptr[1:] = np.cumsum(k)
        new_pop = np.repeat(np.arange(size.size), k)
        new_start, new_stop = np.zeros((2, new_pop.size), dtype=np.int64)
        kept = ~np.isin(new_pop, list(pieces))
        new_start[kept], new_stop[kept] = start[even], stop[even]
        for p, b in pieces.items():
            new_start[ptr[p]:ptr[p + 1]], new_stop[ptr[p]:ptr[p + 1]] = b[:, 0], b[:, 1]
        pop, start, stop = new_pop, new_start, new_stop
    gstart = graph.offset[pop] + start
    total = int(graph.offset[-1])
    idx = np.int32 if ptr[-1] < np.iinfo(np.int32).max else np.int64
    slice_of = np.repeat(np.arange(int(ptr[-1]), dtype=idx), stop - start)
    assert slice_of.size == total
    return _Cut(ptr, start, stop, gstart, slice_of)


# ---- what every slice uses ----

@dataclass(frozen=True)
class _Usage:
    """Per slice of a `_Cut` (arrays)."""

    synapses: np.ndarray
    synapse_bytes: np.ndarray
    kernel_bytes: np.ndarray
    fan_in: np.ndarray
    delay_slots: np.ndarray
    delay_stages: np.ndarray


def _usage(graph: _Graph, table: _Table, target: Target, cut: _Cut, active: np.ndarray | None = None) -> _Usage:
    """Resource use of every slice at once (same counts as slice_usage). Rows are runs of a column's
    synapses into one slice (and stage); `active` (per population) skips blocks that hold none of them."""
    n = int(cut.ptr[-1])
    packed = target.encoding.synapse_word_bits == 0
    nbytes = np.zeros(n, dtype=np.int64)
    fan_in = np.zeros(n, dtype=np.int64)
    post_pop = graph.proj.post_pop
    for c0, c1 in table.blocks:
        if active is not None and not active[post_pop[table.col_proj[c0:c1]]].any():
            continue
        lo, hi, first = table.block(c0, c1)
        dst = cut.slice_of[table.post[lo:hi]]
        stage = table.stage[lo:hi] if table.stage is not None else None
        if stage is not None and stage.any():  # rows are (column, slice, stage): sort within columns
            col = np.cumsum(_run_starts(hi - lo, first)) - 1
            order = np.lexsort((stage, dst, col))
            dst, col, stage = dst[order], col[order], stage[order]
            new = _run_starts(hi - lo, first[:1], dst)
            new[1:] |= (col[1:] != col[:-1]) | (stage[1:] != stage[:-1])
            starts = np.flatnonzero(new)
            row_col = col[starts]
        else:  # column order already groups rows: posts ascend within a column
            starts = np.flatnonzero(_run_starts(hi - lo, first, dst))
            row_col = _column_of(first, hi - lo)[starts]
        lengths = np.diff(np.append(starts, hi - lo))
        row_dst = dst[starts]
        row_proj = table.col_proj[c0 + row_col]
        sparse = ~graph.conv[row_proj]  # a conv stores its kernel once, not rows (added below)
        bits = graph.hdr_bits[row_proj[sparse]] + lengths[sparse] * graph.syn_bits[row_proj[sparse]]
        nbytes += np.bincount(row_dst[sparse], weights=_row_bytes(bits, packed), minlength=n).astype(np.int64)
        fan_in += np.bincount(row_dst, minlength=n)
    return _with_neuron_counts(graph, table, target, cut, nbytes, fan_in)


def _with_neuron_counts(graph: _Graph, table: _Table, target: Target, cut: _Cut, nbytes: np.ndarray,
                        fan_in: np.ndarray) -> _Usage:
    """The usage from the rows' bytes and fan-in per slice, plus what per-neuron counts give (synapses, delay
    slots and stages: slices are runs of neurons) and the conv kernels."""
    kernel = _conv_bytes(graph, target, cut)
    nbytes = nbytes + kernel
    sizes = cut.stop - cut.start
    cum = np.concatenate(([0], np.cumsum(table.post_count)))
    return _Usage(cum[cut.gstart + sizes] - cum[cut.gstart], nbytes, kernel, fan_in,
                  _segment_max(table.post_slots, cut.gstart, sizes), _segment_max(table.post_stage, cut.gstart, sizes))


def _row_cost(graph: _Graph, target: Target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per projection (a, b, linear): a row of L synapses takes a + b * L bytes exactly where `linear`
    (every synapse a whole number of words: SpiNNaker), at most a + b * L bytes elsewhere (Loihi's packed
    bits: the header's and the last word's rounding at most); conv projections store no rows (0, 0)."""
    word = 32 if target.encoding.synapse_word_bits else 64
    linear = graph.syn_bits % word == 0
    a = np.where(linear, -(-graph.hdr_bits // word) * (word // 8), (graph.hdr_bits + word - 1) / 8)
    b = graph.syn_bits / 8
    a[graph.conv], b[graph.conv] = 0, 0
    return a, b, linear | graph.conv


def _round_usage(graph: _Graph, table: _Table, target: Target, cut: _Cut,
                 active: np.ndarray) -> tuple[_Usage, bool]:
    """`_usage(..., active)` for a fitting round from the CSR gaps: a synapse starts a row of its slice when
    its gap exceeds its neuron's offset in the slice, so a round is one compare per synapse. Synapse bytes
    are exact where rows cost linear bytes; elsewhere an upper bound, recounted by the column pass only for
    populations where that bound is over the budget. Also whether every figure is exact."""
    sizes = cut.stop - cut.start
    if table.gap is None or int(sizes.max()) > GAP_CAP:
        return _usage(graph, table, target, cut, active), True
    n = int(cut.ptr[-1])
    a, b, linear = _row_cost(graph, target)
    offset = (np.arange(cut.slice_of.size, dtype=np.int64) - cut.gstart[cut.slice_of]).astype(np.uint16)
    fan_in = np.zeros(n, dtype=np.int64)
    nbytes = np.zeros(n, dtype=np.float64)
    bounded = np.zeros(n, dtype=bool)  # slices with an upper bound in nbytes
    post_pop = graph.proj.post_pop
    for r0, r1, s0, s1 in table.row_blocks:
        if r1 == r0 or not active[post_pop[table.row_proj[r0]]:post_pop[table.row_proj[r1 - 1]] + 1].any():
            continue  # rows are grouped by post population
        neuron, length, proj = table.row_neuron[r0:r1], table.row_len[r0:r1], table.row_proj[r0:r1]
        starts = np.add.reduceat(table.gap[s0:s1] > np.repeat(offset[neuron], length),
                                 np.cumsum(length) - length, dtype=np.int64)
        dst = cut.slice_of[neuron]
        fan_in += np.bincount(dst, weights=starts, minlength=n).astype(np.int64)
        nbytes += np.bincount(dst, weights=a[proj] * starts + b[proj] * length, minlength=n)
        if not linear[proj].all():
            bounded[dst[~linear[proj]]] = True
    use = _with_neuron_counts(graph, table, target, cut, nbytes, fan_in)
    if not bounded.any():
        use.synapse_bytes[:] = np.rint(use.synapse_bytes)
        return dataclasses.replace(use, synapse_bytes=use.synapse_bytes.astype(np.int64)), True
    over = bounded & (use.synapse_bytes > target.core.synapse_memory_bytes)
    pop_of_slice = np.repeat(np.arange(cut.n.size), cut.n)
    recount = np.zeros(cut.n.size, dtype=bool)
    recount[pop_of_slice[over]] = True
    recount &= active
    nbytes = np.ceil(use.synapse_bytes).astype(np.int64)  # the bound, under the budget where kept
    if recount.any():
        exact = _usage(graph, table, target, cut, recount)
        mine = recount[pop_of_slice]
        nbytes[mine] = exact.synapse_bytes[mine]
    return dataclasses.replace(use, synapse_bytes=nbytes), False


def _whole_usage(graph: _Graph, table: _Table, target: Target, grows: np.ndarray) -> _Usage:
    """Synapse bytes and fan-in of each population on one core (`_usage` of the one-slice cut; the other
    fields as it gives them): each column is one row when no synapse has a delay stage."""
    cut = _cut(graph, np.ones(graph.size.size, dtype=np.int64), {})
    if table.gap is None:
        return _usage(graph, table, target, cut, grows)
    packed = target.encoding.synapse_word_bits == 0
    proj = table.col_proj
    pop = graph.proj.post_pop[proj]
    sparse = ~graph.conv[proj]
    bits = graph.hdr_bits[proj[sparse]] + np.diff(table.col_ptr)[sparse] * graph.syn_bits[proj[sparse]]
    n = graph.size.size
    nbytes = np.bincount(pop[sparse], weights=_row_bytes(bits, packed), minlength=n).astype(np.int64)
    return _with_neuron_counts(graph, table, target, cut, nbytes, np.bincount(pop, minlength=n))


def _conv_bytes(graph: _Graph, target: Target, cut: _Cut) -> np.ndarray:
    """Kernel bytes per slice: every conv projection's kernels for the channels its slice covers."""
    out = np.zeros(int(cut.ptr[-1]), dtype=np.int64)
    for c, proj in graph.convs.items():  # a network's conv layers (PACMAN-style graphs have none)
        pop = int(graph.proj.post_pop[c])
        a, b = int(cut.ptr[pop]), int(cut.ptr[pop + 1])
        out[a:b] += conv_slice_bytes(target, proj, cut.start[a:b], cut.stop[a:b])
    return out


# ---- budgets ----

def _budgets(target: Target, cut: _Cut, use: _Usage) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, used, limit) per slice (rows) and budget (columns), in the order errors name them. The local
    memory budget applies only to slices holding conv kernels on targets that budget it: elsewhere its
    `used` is 0. Output axons are counted after fitting (0 here)."""
    core = target.core
    neurons = cut.stop - cut.start
    per_neuron = core.local_bytes_per_neuron
    local = use.kernel_bytes + neurons * per_neuron if per_neuron else np.zeros_like(neurons)
    local_checked = (use.kernel_bytes > 0) & bool(per_neuron)
    names = ["local memory for conv kernels and neuron state (bytes)", "neurons", "synapse memory (bytes)",
             "input axons (fan-in)", "output axons", "delay slots"]
    used = np.stack([np.where(local_checked, local, 0), neurons, use.synapse_bytes, use.fan_in,
                     np.zeros_like(neurons), use.delay_slots], axis=1)
    limit = np.array([core.local_memory_bytes, core.neurons, core.synapse_memory_bytes, core.input_axons,
                      core.output_axons, core.delay_slots], dtype=np.int64)
    return names, used, np.broadcast_to(limit, used.shape)


def _fit(graph: _Graph, table: _Table, target: Target) -> tuple[np.ndarray, dict[int, object], _Usage | None]:
    """Slices per population (k) and the conv populations' split functions: the fewest even cuts (or
    channel groups) under every core budget. Every population grows at once, round by round. Also the
    usage of that cut when one round settled every population (no block was skipped), else None."""
    core = target.core
    size, n_pops = graph.size, graph.size.size
    first_conv: dict[int, int] = {}
    for c in graph.convs:  # in projection order: the first conv into a population sets its split
        first_conv.setdefault(int(graph.proj.post_pop[c]), c)
    errors: dict[int, str] = {}
    for c, proj in graph.convs.items():
        pop = int(graph.proj.post_pop[c])
        one = int(conv_slice_bytes(target, proj, np.array([0]), np.array([1]))[0])
        if one > core.synapse_memory_bytes and pop not in errors:
            errors[pop] = (
                f"projection {proj.pre!r} -> {graph.names[pop]!r}: the kernel of one output channel of its "
                f"{proj.conv.describe()} ({proj.conv.kernel[0].size} weights) needs {one} bytes with its "
                f"header, over {target.name}'s {core.synapse_memory_bytes} bytes of synapse memory per "
                "core. Fix: fewer input channels per group (groups), a smaller kernel, or a target with more "
                "synapse memory per core")
    splits = {p: _channel_bounds(graph.convs[c].conv.out_shape, core.neurons)
              for p, c in first_conv.items() if not graph.is_input[p]}
    per_source = core.source_neurons
    k = np.where(graph.is_input, -(-size // per_source) if per_source else 1, np.maximum(1, -(-size // core.neurons)))
    has_in = np.bincount(graph.proj.post_pop, minlength=n_pops) > 0
    grows = ~graph.is_input & has_in
    if grows.any():  # the whole population on one core: its synapse memory and fan-in set a first k
        whole = _whole_usage(graph, table, target, grows)
        k = np.where(grows, np.minimum(size, np.maximum.reduce([
            k, -(-whole.synapse_bytes // max(1, core.synapse_memory_bytes)),
            -(-whole.fan_in // max(1, core.input_axons))])), k)
    active = ~graph.is_input
    active[list(errors)] = False
    rounds = 0
    use = None
    exact = True
    while active.any():
        rounds += 1
        cut = _cut(graph, k, splits)
        use, exact = _round_usage(graph, table, target, cut, active)
        names, used, limit = _budgets(target, cut, use)
        over = used > limit
        slice_over = over.any(axis=1)
        n = cut.n
        pop_of_slice = np.repeat(np.arange(n_pops), n)
        pop_over = np.bincount(pop_of_slice, weights=slice_over, minlength=n_pops) > 0
        ratio = np.where(over, used / np.maximum(limit, 1), 0.0).max(axis=1)
        pop_ratio = np.maximum.reduceat(ratio, cut.ptr[:-1])  # every population has a slice
        active &= pop_over  # the others fit: every slice within every budget
        failing = np.flatnonzero(active & pop_over)
        stuck = failing[n[failing] == size[failing]]
        for p in stuck:  # one neuron per core and still over: cannot fit
            s = int(cut.ptr[p]) + int(np.argmax(slice_over[cut.ptr[p]:cut.ptr[p + 1]]))
            b = int(np.argmax(over[s]))
            what, u, lim = names[b], int(used[s, b]), int(limit[s, b])
            errors[int(p)] = (
                f"population {graph.names[p]!r} does not fit {target.name}: one neuron needs {u} {what}, the core "
                f"budget is {lim} (over by {u - lim}). Fix: fewer synapses per neuron (split the layer's "
                f"fan-in), shorter delays, or a target with more {what} per core")
            active[p] = False
        grow = np.setdiff1d(failing, stuck)
        # Grow in proportion to the worst overrun, at least by one slice.
        step = np.ceil(k[grow] * np.minimum(pop_ratio[grow], 4.0)).astype(np.int64)
        k[grow] = np.minimum(size[grow], np.maximum(k[grow] + 1, step))
    if errors:
        raise TargetError(errors[min(errors)])
    return k, splits, use if rounds == 1 and exact else None


# ---- output axons ----

def _column_axons(table: _Table, cut: _Cut, lo: int, hi: int, first: np.ndarray) -> np.ndarray:
    """Destination slices of each column whose synapses are table[lo:hi] (first: column starts)."""
    dst = cut.slice_of[table.post[lo:hi]]
    return np.add.reduceat(_run_starts(hi - lo, first, dst), first, dtype=np.int64)


def _out_axons(graph: _Graph, table: _Table, cut: _Cut) -> np.ndarray:
    """Axons each slice needs as a source: one per (neuron, destination slice) pair with a synapse, per
    projection."""
    per_neuron = np.zeros(int(graph.offset[-1]), dtype=np.int64)
    for c0, c1 in table.blocks:
        lo, hi, first = table.block(c0, c1)
        per_neuron += np.bincount(table.col_pre[c0:c1], weights=_column_axons(table, cut, lo, hi, first),
                                  minlength=per_neuron.size).astype(np.int64)
    return _segment_sum(per_neuron, cut.gstart, cut.stop - cut.start)


@dataclass(frozen=True)
class _Sources:
    """The table's columns grouped by pre population: what one population's re-cut must recount."""

    cols: np.ndarray  # column indices, by pre population
    ptr: np.ndarray  # (n_pops + 1,)

    @staticmethod
    def of(graph: _Graph, table: _Table) -> _Sources:
        pop = graph.proj.pre_pop[table.col_proj]
        cols = np.argsort(pop, kind="stable")
        ptr = np.zeros(graph.size.size + 1, dtype=np.int64)
        ptr[1:] = np.cumsum(np.bincount(pop, minlength=graph.size.size))
        return _Sources(cols, ptr)


def _pop_worst_axons(graph: _Graph, table: _Table, cut: _Cut, sources: _Sources, p: int) -> int:
    """The most output axons a slice of population p needs (its outgoing synapses only)."""
    cols = sources.cols[sources.ptr[p]:sources.ptr[p + 1]]
    if not cols.size:
        return 0
    lengths = table.col_ptr[cols + 1] - table.col_ptr[cols]
    syn = _ranges(table.col_ptr[cols], lengths)
    first = np.cumsum(lengths) - lengths
    dst = cut.slice_of[table.post[syn]]
    per_col = np.add.reduceat(_run_starts(syn.size, first, dst), first, dtype=np.int64)
    per_neuron = np.bincount(table.col_pre[cols] - graph.offset[p], weights=per_col,
                             minlength=int(graph.size[p])).astype(np.int64)
    a, b = int(cut.ptr[p]), int(cut.ptr[p + 1])
    return int(_segment_sum(per_neuron, cut.start[a:b], cut.stop[a:b] - cut.start[a:b]).max())


def _depth(inet: IntNetwork, graph: _Graph) -> np.ndarray:
    """Hops from the inputs (breadth first); unreachable populations count as depth 0."""
    n = graph.size.size
    index = {name: k for k, name in enumerate(graph.names)}
    inputs = np.asarray([index[name] for name in inet.inputs], dtype=np.int64)
    rows = np.concatenate([graph.proj.pre_pop, np.full(inputs.size, n)])  # n: one root before every input
    cols = np.concatenate([graph.proj.post_pop, inputs])
    hops = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n + 1, n + 1))
    dist = csgraph.shortest_path(hops, method="D", unweighted=True, indices=n)[:n]
    return np.where(np.isfinite(dist), dist - 1, 0).astype(np.int64)


def _recut_for_axons(inet: IntNetwork, graph: _Graph, table: _Table, target: Target, k: np.ndarray,
                     splits: dict[int, object]) -> tuple[np.ndarray, dict[int, object], bool, np.ndarray | None]:
    """Split sources further until their output axons fit, sinks first so each population sees its
    destinations' final slicing (cycles take another round). The walk is over populations in order
    (a re-cut changes the counts of the populations projecting into it); counts come from one
    whole-graph pass per round and are recounted only for populations whose destinations were re-cut.
    Returns the cut, whether it changed, and the final cut's axons per slice when the last pass counted them."""
    limit = target.core.output_axons
    size = graph.size
    has_out = np.bincount(graph.proj.pre_pop, minlength=size.size) > 0
    walked = has_out & ~(graph.is_input & (not target.core.source_neurons))  # a host-fed source has no table
    order = np.argsort(-_depth(inet, graph), kind="stable")
    pairs = np.unique(graph.proj.post_pop * size.size + graph.proj.pre_pop)
    pred_ptr = np.searchsorted(pairs // size.size, np.arange(size.size + 1))
    preds = pairs % size.size
    sources = _Sources.of(graph, table)
    k, splits = k.copy(), dict(splits)
    recut = False
    for _ in range(16):
        cut = _cut(graph, k, splits)
        axons = _out_axons(graph, table, cut)
        worst = np.maximum.reduceat(axons, cut.ptr[:-1])
        if not (worst[walked] > limit).any():
            return k, splits, recut, axons
        stale = np.zeros(size.size, dtype=bool)
        for p in order[walked[order]]:
            w = _pop_worst_axons(graph, table, cut, sources, p) if stale[p] else int(worst[p])
            while w > limit:
                n = int(cut.ptr[p + 1] - cut.ptr[p])
                if n >= size[p]:
                    raise TargetError(
                        f"population {graph.names[p]!r}: a single neuron projects to {w} cores, over {target.name}'s "
                        f"{limit} output axons by {w - limit}. Fix: fewer destination slices (larger cores) or "
                        "another target")
                k[p] = min(int(size[p]), max(n + 1, math.ceil(n * w / limit)))
                recut = True
                splits.pop(int(p), None)  # a re-cut is even, not along channels
                cut = _cut(graph, k, splits)
                stale[preds[pred_ptr[p]:pred_ptr[p + 1]]] = True
                w = _pop_worst_axons(graph, table, cut, sources, p)
    return k, splits, recut, None


def partition(inet: IntNetwork, target: Target) -> Partition:
    """Slices of every population (and delay-extension slices) that fit one core each."""
    slots = target.core.delay_slots
    max_total = slots * (1 + target.encoding.delay_extension_slots) - 1
    graph, table = _whole_graph(inet, target)
    too_long = np.flatnonzero(graph.max_delay > max_total)
    if too_long.size:
        proj = inet.projections[int(too_long[0])]
        raise TargetError(
            f"projection {proj.pre!r} -> {proj.post!r}: delay {proj.max_delay} steps exceeds {target.name}'s "
            f"{slots} native slots x (1 + {target.encoding.delay_extension_slots} "
            f"extension stages) = {max_total + 1} steps. Fix: shorten delays or use a larger dt"
        )
    k, splits, fitted = _fit(graph, table, target)
    k, splits, recut, axons = _recut_for_axons(inet, graph, table, target, k, splits)
    cut = _cut(graph, k, splits)
    use = fitted if fitted is not None and not recut else _usage(graph, table, target, cut)
    if axons is None:
        axons = _out_axons(graph, table, cut)
    per_neuron = target.core.local_bytes_per_neuron
    slices: list[Slice] = []
    usage: list[SliceUsage] = []
    columns = [x.tolist() for x in (cut.start, cut.stop, use.synapses, use.synapse_bytes, use.kernel_bytes,
                                    use.fan_in, use.delay_slots, use.delay_stages, axons)]
    for p, name in enumerate(graph.names):  # the output: one Slice and SliceUsage per slice
        role = Role.SOURCE if graph.is_input[p] else Role.NEURONS
        for s in range(int(cut.ptr[p]), int(cut.ptr[p + 1])):
            a, b, syn, nbytes, kernel, fan_in, slots_used, stages, ax = (c[s] for c in columns)
            slices.append(Slice(name, a, b, role=role))
            if role == Role.SOURCE:
                usage.append(SliceUsage(neurons=b - a, out_axons=ax))
            else:
                usage.append(SliceUsage(neurons=b - a, synapses=syn, synapse_bytes=nbytes, kernel_bytes=kernel,
                                        local_bytes=kernel + (b - a) * per_neuron if per_neuron else 0,
                                        fan_in=fan_in, out_axons=ax, delay_slots=slots_used, delay_stages=stages))
    # Delay extensions: one per source slice whose spikes some synapse needs >= delay_slots later.
    stages_of = np.zeros(graph.size.size, dtype=np.int64)
    np.maximum.at(stages_of, graph.proj.pre_pop, graph.max_delay // slots)
    notes: list[str] = []
    for p in np.flatnonzero(stages_of):
        name, stages = graph.names[p], int(stages_of[p])
        bounds = cut.bounds(p)
        notes.append(f"{name}: {len(bounds)} delay-extension slice(s), {stages} stage(s) of {slots} steps")
        for a, b in bounds:
            slices.append(Slice(name, a, b, role=Role.DELAY))
            usage.append(SliceUsage(neurons=b - a, delay_stages=stages))
    return Partition(slices, usage, notes)
