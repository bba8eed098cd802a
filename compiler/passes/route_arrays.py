"""Array idioms for route: every synapse, path and table entry of the whole graph as flat numpy arrays.

Route works on concatenated arrays (all emitters' destinations, all tree hops, all table entries),
sorted once per grouping and reduced by segment, so its Python work does not grow with projections,
(projection, slice) pairs or routing entries. Each helper here is one idiom, named for what it does.
"""

from __future__ import annotations

import numpy as np

from ..ir import IntNetwork
from .synapse_chunks import CHUNK_SYNAPSES

WORD_BITS = 64  # route words wider than this (a bit per core of a 152-core chip) span several uint64 columns


def segment_starts(*sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal key tuples begins, for arrays already sorted by those keys."""
    n = sorted_keys[0].size
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for k in sorted_keys:
            change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def segment_ids(starts: np.ndarray, n: int) -> np.ndarray:
    """Segment number of each of n elements, given the segments' start indices."""
    marks = np.zeros(n, dtype=np.int64)
    marks[starts[1:]] = 1
    return np.cumsum(marks)


def distinct_codes(codes: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(codes, return_inverse=True) for codes in [0, space): through a bitmap over the space when it
    is small next to the input (linear where np.unique sorts)."""
    if space > max(1 << 24, 8 * codes.size):
        return np.unique(codes, return_inverse=True)
    seen = np.zeros(space, dtype=bool)
    seen[codes] = True
    uniq = np.flatnonzero(seen)
    index = np.cumsum(seen, dtype=np.int64) - 1
    return uniq, index[codes]


def rank_in_segment(starts: np.ndarray, n: int) -> np.ndarray:
    """Position of each element within its segment (0 at each start)."""
    lengths = np.diff(np.append(starts, n))
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def ranges(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated aranges: (owner of each element, offset within its range) for ranges of `lengths`."""
    owner = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if ends.size else 0
    return owner, np.arange(total, dtype=np.int64) - np.repeat(ends - lengths, lengths)


def _projection_columns(projs: list, offsets: dict[str, int]) -> tuple:
    """One pass over the projections to collect their arrays (everything after is whole-block numpy):
    indptr, indices and delays lists, rows, synapses and global pre offset per projection."""
    indptr = [p.weights.indptr for p in projs]
    indices = [p.weights.indices for p in projs]
    delays = [p.delays for p in projs]
    count = len(projs)
    n_rows = np.fromiter(map(len, indptr), dtype=np.int64, count=count) - 1
    nnz = np.fromiter(map(len, indices), dtype=np.int64, count=count)
    pre_off = np.fromiter((offsets[p.pre] for p in projs), dtype=np.int64, count=count)
    return indptr, indices, delays, n_rows, nnz, pre_off


def _synapse_block_ranges(nnz: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) of the projections in each block of about CHUNK_SYNAPSES synapses."""
    block_of = (np.cumsum(nnz) - nnz) // CHUNK_SYNAPSES
    bounds = np.flatnonzero(np.r_[True, block_of[1:] != block_of[:-1], True])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def synapse_blocks(inet: IntNetwork, offsets: dict[str, int]):
    """Every synapse as (global pre id, global post id, delay), in blocks of about CHUNK_SYNAPSES: the
    projections' CSR arrays are concatenated, so the numpy calls are per block, not per projection."""
    projs = inet.projections
    if not projs:
        return
    indptr, indices, delays, n_rows, nnz, pre_off = _projection_columns(projs, offsets)
    post_off = np.fromiter((offsets[p.post] for p in projs), dtype=np.int64, count=len(projs))
    for a, b in _synapse_block_ranges(nnz):
        total = int(nnz[a:b].sum())
        if total == 0:
            continue
        proj = np.repeat(np.arange(a, b), nnz[a:b])
        yield (_concat_int64(indices[a:b]) + pre_off[proj],
               _csr_rows(indptr[a:b], nnz[a:b], n_rows[a:b], total) + post_off[proj],
               _concat_int64(delays[a:b]))


def synapse_post_slices(inet: IntNetwork, offsets: dict[str, int], slice_of: np.ndarray, tiling: dict | None):
    """Every synapse as (global pre id, post slice, delay), in blocks as synapse_blocks. With a tiling of
    each population by its slices (name -> (slice starts + [size], slice indices)), a synapse's post slice
    comes from the indptr values at the slice boundaries (a few per projection), not from every row
    (a PACMAN-style projection has 250 rows, most of them empty)."""
    if tiling is None or any(p.post not in tiling for p in inet.projections):
        for pre, post, delay in synapse_blocks(inet, offsets):
            yield pre, slice_of[post], delay
        return
    projs = inet.projections
    if not projs:
        return
    names = list(tiling)
    pop_index = {name: k for k, name in enumerate(names)}
    n_cuts = np.array([len(tiling[name][1]) for name in names], dtype=np.int64)  # slices per population
    cut_ptr = np.concatenate([[0], np.cumsum(n_cuts + 1)])
    cut_row = np.concatenate([np.asarray(tiling[name][0], np.int64) for name in names])
    slice_ptr = np.concatenate([[0], np.cumsum(n_cuts)])
    cut_slice = np.concatenate([np.asarray(tiling[name][1], np.int64) for name in names])
    indptr, indices, delays, n_rows, nnz, pre_off = _projection_columns(projs, offsets)
    post_pop = np.fromiter((pop_index[p.post] for p in projs), dtype=np.int64, count=len(projs))
    for a, b in _synapse_block_ranges(nnz):
        if int(nnz[a:b].sum()) == 0:
            continue
        # Per (projection, slice boundary): the indptr value there (0 at the first, nnz at the last; only the
        # inner ones are read, from the indptrs of the projections into populations of several slices).
        q = post_pop[a:b]
        owner, k = ranges(n_cuts[q] + 1)
        at = np.where(k == 0, 0, nnz[a:b][owner])
        inner_cut = (k > 0) & (k < n_cuts[q[owner]])
        if inner_cut.any():
            multi = np.flatnonzero(n_cuts[q] > 1)
            flat = np.concatenate([indptr[a + i] for i in multi.tolist()])
            first_row = np.zeros(b - a, np.int64)
            first_row[multi] = np.cumsum(n_rows[a:b][multi] + 1) - (n_rows[a:b][multi] + 1)
            o = owner[inner_cut]
            at[inner_cut] = flat[first_row[o] + cut_row[cut_ptr[q[o]] + k[inner_cut]]]
        inner = k < n_cuts[q[owner]]
        per_slice = np.diff(np.append(at, 0))[inner]
        post_slice = np.repeat(cut_slice[slice_ptr[q[owner[inner]]] + k[inner]], per_slice)
        proj = np.repeat(np.arange(a, b), nnz[a:b])
        yield _concat_int64(indices[a:b]) + pre_off[proj], post_slice, _concat_int64(delays[a:b])


def slice_tiling(inet: IntNetwork, slices: list, skip_role: str) -> dict | None:
    """name -> (slice starts + [size], slice indices) when each population's slices (not of `skip_role`)
    cut it into consecutive ranges from 0 to its size; None otherwise."""
    by_pop: dict[str, list[tuple[int, int, int]]] = {}
    for k, s in enumerate(slices):
        if s.role != skip_role:
            by_pop.setdefault(s.population, []).append((s.start, s.stop, k))
    tiling = {}
    for name, cuts in by_pop.items():
        cuts.sort()
        starts = [a for a, _, _ in cuts]
        if starts[0] != 0 or any(b != a for (_, b, _), a in zip(cuts[:-1], starts[1:], strict=True)) or \
                cuts[-1][1] != inet.populations[name].size:
            return None
        tiling[name] = (starts + [cuts[-1][1]], [k for _, _, k in cuts])
    return tiling


def _concat_int64(arrays: list) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int64, copy=False)


def _csr_rows(indptrs: list, nnz: np.ndarray, n_rows: np.ndarray, total: int) -> np.ndarray:
    """Row of every stored element of several CSR matrices laid end to end: one searchsorted into their
    indptrs shifted to global element positions (non-decreasing across matrices). The indptrs are most of
    the memory traffic (a PACMAN-style projection has 250 rows for 16 synapses): 32-bit when they fit."""
    dtype = np.int32 if total < np.iinfo(np.int32).max else np.int64
    shifted = np.concatenate(indptrs).astype(dtype, copy=False)
    shifted += np.repeat((np.cumsum(nnz) - nnz).astype(dtype), n_rows + 1)
    row_in_concat = np.searchsorted(shifted, np.arange(total, dtype=dtype), side="right").astype(np.int64) - 1
    del shifted
    first_row = np.cumsum(n_rows + 1) - (n_rows + 1)
    return row_in_concat - np.repeat(first_row, nnz)


LINK_X = np.array([1, 1, 0, -1, -1, 0])  # mesh.LINK_VECTORS as arrays
LINK_Y = np.array([0, 1, 1, 0, -1, -1])


def path_legs(triangular: bool, dx: np.ndarray, dy: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mesh.path for many (dx, dy) at once, as two straight legs (hops, link) each: dimension order on a
    2-D mesh; on the triangular mesh, for dx * dy > 0, a diagonal leg and a straight one, the longer first
    (the diagonal on a tie)."""
    n1, l1 = np.abs(dx), np.where(dx > 0, 0, 3)
    n2, l2 = np.abs(dy), np.where(dy > 0, 2, 5)
    if triangular:
        diag_case = dx * dy > 0
        sign = np.where(dx > 0, 1, -1)
        diag = np.minimum(np.abs(dx), np.abs(dy))
        rest_x, rest_y = dx - sign * diag, dy - sign * diag
        d_link = np.where(sign > 0, 1, 4)
        s_len = np.where(rest_x != 0, np.abs(rest_x), np.abs(rest_y))
        s_link = np.where(rest_x != 0, np.where(rest_x > 0, 0, 3), np.where(rest_y > 0, 2, 5))
        straight_first = s_len > diag  # stable sort by -length: the diagonal leads on a tie
        n1 = np.where(diag_case, np.where(straight_first, s_len, diag), n1)
        l1 = np.where(diag_case, np.where(straight_first, s_link, d_link), l1)
        n2 = np.where(diag_case, np.where(straight_first, diag, s_len), n2)
        l2 = np.where(diag_case, np.where(straight_first, d_link, s_link), l2)
    return n1, l1, n2, l2


def tree_nodes(triangular: bool, src_x: np.ndarray, src_y: np.ndarray, pair_em: np.ndarray,
               pair_x: np.ndarray, pair_y: np.ndarray, rows: int, span: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chips of every emitter's multicast tree (the union of mesh.path from its source chip to each of
    its destination chips), without listing each path's hops: mesh.path is prefix-closed, so a chip's
    parent is fixed (the chip before it on its own path) and so is its depth; the trees are built one
    depth at a time, from the deepest destinations toward the sources (a loop over the mesh diameter).

    Pairs (emitter, destination chip) come sorted by emitter and chip. Returns per node, sorted by code
    = emitter * span + x * rows + y: code, first pair (the smallest pair index whose path holds the chip;
    -1 for the source chip), depth in hops, and the link it is entered by (-1 at the source)."""
    n_em = src_x.size
    n1, _, n2, _ = path_legs(triangular, pair_x - src_x[pair_em], pair_y - src_y[pair_em])
    pair_depth = n1 + n2
    pair_code = pair_em * span + pair_x * rows + pair_y
    by_depth = np.argsort(pair_depth, kind="stable")
    level_starts = np.searchsorted(pair_depth[by_depth], np.arange(int(pair_depth.max(initial=0)) + 2))
    codes = [np.arange(n_em, dtype=np.int64) * span + src_x * rows + src_y]
    firsts, depths, entered = [np.full(n_em, -1, np.int64)], [np.zeros(n_em, np.int64)], [np.full(n_em, -1, np.int64)]
    up_code = up_first = np.zeros(0, np.int64)  # parents of the level below, with their first pair
    for depth in range(level_starts.size - 2, 0, -1):
        here = by_depth[level_starts[depth]:level_starts[depth + 1]]
        code = np.concatenate([pair_code[here], up_code])
        first = np.concatenate([here, up_first])
        order = np.lexsort((first, code))
        keep = order[segment_starts(code[order])]  # one node per chip: its smallest first pair
        code, first = code[keep], first[keep]
        em = code // span
        x, y = (code % span) // rows, code % rows
        n1, l1, n2, l2 = path_legs(triangular, x - src_x[em], y - src_y[em])
        last = np.where(n2 > 0, l2, l1)
        codes.append(code)
        firsts.append(first)
        depths.append(np.full(code.size, depth, np.int64))
        entered.append((last + 3) % 6)
        up_code = code - LINK_X[last] * rows - LINK_Y[last]
        up_first = first
    code, first, depth, link_in = (np.concatenate(a) for a in (codes, firsts, depths, entered))
    order = np.argsort(code, kind="stable")
    return code[order], first[order], depth[order], link_in[order]


def bit_columns(owner: np.ndarray, bits: np.ndarray, n_owners: int, n_words: int) -> np.ndarray:
    """OR of 1 << bits per owner, as an [n_owners, n_words] uint64 array (bit b in column b // 64)."""
    out = np.zeros((n_owners, n_words), dtype=np.uint64)
    if owner.size:
        np.bitwise_or.at(out, (owner, bits // WORD_BITS), np.left_shift(np.uint64(1), (bits % WORD_BITS)
                                                                         .astype(np.uint64)))
    return out


def words_to_ints(columns: np.ndarray) -> list[int]:
    """Rows of uint64 columns (least significant first) as Python ints."""
    if columns.shape[1] == 1:
        return columns[:, 0].tolist()
    out = np.zeros(columns.shape[0], dtype=object)
    for w in range(columns.shape[1]):
        out |= columns[:, w].astype(object) << (WORD_BITS * w)
    return out.tolist()


def row_ids(columns: np.ndarray) -> np.ndarray:
    """A dense id per distinct row of a 2-D array (equal rows, equal ids)."""
    if columns.shape[1] == 1:
        return np.unique(columns[:, 0], return_inverse=True)[1]
    return np.unique(columns, axis=0, return_inverse=True)[1].ravel()


def first_occurrence_order(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of `group` in order of first occurrence, and each element's rank in that order."""
    uniq, first, inverse = np.unique(group, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(uniq.size, dtype=np.int64)
    rank[order] = np.arange(uniq.size)
    return uniq[order], rank[inverse]
