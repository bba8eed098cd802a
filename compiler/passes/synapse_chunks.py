"""Every synapse of an IntNetwork as flat arrays, built a block of projections at a time.

Networks with many small projections (PACMAN-style graphs: 100k projections of a few synapses)
would pay numpy's per-call overhead once per projection; networks with a few huge projections
would not fit one flat copy in memory. So projections are gathered once into per-projection
arrays (`projection_arrays`: CSR-of-projections), and their synapses are concatenated in blocks
of consecutive projections bounded by CHUNK_SYNAPSES: small projections share a block, a large
one comes alone. No numpy call is made per projection.

Whole-graph API (for passes that want arrays, not objects):

* `projection_arrays(inet)`: per projection nnz, shape, pre/post population index, first global
  neuron id of pre/post, synapse offsets (`syn_ptr`), in `inet.projections` order, and the lists of
  indptr / indices / delays arrays (references) to concatenate per block.
* `concat(arrays)`: np.concatenate, fast for 100k small arrays.
* `block_bounds(sizes, limit)`: consecutive groups [lo, hi) of items whose sizes sum to at most
  `limit` (an item over it alone): the loop over blocks grows with synapses, not projections.
* `nonempty_rows(indptrs)`: (matrix, row, entries) of the non-empty rows of several CSR matrices.
* `csr_rows(indptrs)`: the row of every stored entry of several CSR matrices, concatenated.
* `chunks(inet, offsets)`: SynapseChunk(pre, post, delay) with global neuron ids (int64), the same
  chunks (same projections in each) as ever: a chunk closes after the projection that brings it to
  CHUNK_SYNAPSES synapses.
* `unique_tuples(*columns)`, `slice_of_neuron(...)`, `neuron_offsets(inet)`: as before (unique_tuples
  now ranks a wide, sparse column first, so global neuron ids stay on its bitmap path).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter, itemgetter

import numpy as np

from ..ir import SIGN_MODES, IntNetwork, IntProjection, IntProjections
from ..ir.table import Blocks, gather_ranges

CHUNK_SYNAPSES = 4_000_000
# unique_tuples takes a bool bitmap over the key space up to this many bytes per key (two int64 copies of
# the key): filling and scanning it is linear, where np.unique sorts (0.4 s per 4M-synapse chunk at 1M
# neurons on loihi2, whose ~1,000 slices x 50k neurons per chunk are 12 bytes per key).
BITMAP_PER_KEY = 16


@dataclass
class SynapseChunk:
    pre: np.ndarray  # global id of the pre neuron (int64)
    post: np.ndarray  # global id of the post neuron (int64)
    delay: np.ndarray  # steps (int64)


@dataclass(frozen=True)
class ProjectionArrays:
    """Per-projection scalars of an IntNetwork as arrays (inet.projections order), and all projections'
    synapses end to end (`blocks`, compiler/ir/table.py), gathered once per network (`projection_arrays`)."""

    nnz: np.ndarray  # synapses per projection (int64)
    n_post: np.ndarray  # weights.shape[0]
    n_pre: np.ndarray  # weights.shape[1]
    pre_pop: np.ndarray  # index of the pre population in inet.populations order
    post_pop: np.ndarray
    pre_offset: np.ndarray  # first global neuron id of the pre population
    post_offset: np.ndarray
    syn_ptr: np.ndarray  # (n + 1,) first synapse of each projection in indices_all / delays_all / rows_all
    blocks: Blocks  # the synapses: indices, delays, and rows (per synapse) or indptrs (per projection)
    sign_mixed: np.ndarray  # bool per projection: sign_mode == "mixed"
    conv: dict[int, IntProjection]  # the conv projections (few) by index

    @property
    def size(self) -> int:
        return int(self.nnz.size)

    @property
    def indices_all(self) -> np.ndarray:
        """Pre neuron (within its population) of every synapse, end to end (the IR's index dtype)."""
        return self.blocks.indices

    @property
    def delays_all(self) -> np.ndarray:
        return self.blocks.delays

    @property
    def rows_all(self) -> np.ndarray:
        """Post neuron (row, within its population) of every synapse, end to end. Prefer it to indptr_all on
        graphs of many small projections: 256k projections of 250 rows are 64M indptr entries, 256k rows."""
        return self.blocks.rows()

    @property
    def indptr_all(self) -> np.ndarray:
        """Every projection's own indptr (n_post + 1 entries from 0), end to end, at ptr_ptr."""
        return self.blocks.indptr

    @property
    def ptr_ptr(self) -> np.ndarray:
        return self.blocks.ptr_ptr

    def indices_of(self, lo: int, hi: int) -> np.ndarray:
        """Pre indices of projections [lo, hi), end to end (a view)."""
        return self.indices_all[self.syn_ptr[lo]:self.syn_ptr[hi]]

    def delays_of(self, lo: int, hi: int) -> np.ndarray:
        return self.delays_all[self.syn_ptr[lo]:self.syn_ptr[hi]]

    def rows_of(self, lo: int, hi: int) -> np.ndarray:
        return self.rows_all[self.syn_ptr[lo]:self.syn_ptr[hi]]

    def indptr_of(self, lo: int, hi: int) -> np.ndarray:
        """The indptrs of projections [lo, hi), end to end, each its own (starting at 0): a view."""
        return self.indptr_all[self.ptr_ptr[lo]:self.ptr_ptr[hi]]

    def take(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptrs, indices, delays) of projections `ids` (any order), each end to end as for a range."""
        ids = np.asarray(ids, dtype=np.int64)
        ptr = gather_ranges(self.ptr_ptr[ids], self.n_post[ids] + 1)
        syn = gather_ranges(self.syn_ptr[ids], self.nnz[ids])
        return self.indptr_all[ptr], self.indices_all[syn], self.delays_all[syn]

    def take_synapses(self, ids: np.ndarray) -> np.ndarray:
        """Positions (in indices_all, delays_all, rows_all) of the synapses of projections `ids`, in that order."""
        ids = np.asarray(ids, dtype=np.int64)
        return gather_ranges(self.syn_ptr[ids], self.nnz[ids])

    # Per-projection views, for code not yet on the concatenations (each costs ~1 us per projection).
    @property
    def indptr(self) -> list[np.ndarray]:
        return _views(self.indptr_all, self.ptr_ptr)

    @property
    def indices(self) -> list[np.ndarray]:
        return _views(self.indices_all, self.syn_ptr)

    @property
    def delays(self) -> list[np.ndarray]:
        return _views(self.delays_all, self.syn_ptr)


def _views(values: np.ndarray, ptr: np.ndarray) -> list[np.ndarray]:
    bounds = ptr.tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def neuron_offsets(inet: IntNetwork) -> tuple[dict[str, int], int]:
    """First global neuron id of each population, and the total."""
    offsets: dict[str, int] = {}
    total = 0
    for name, pop in inet.populations.items():
        offsets[name] = total
        total += pop.size
    return offsets, total


_CACHE_ATTR = "_projection_arrays"


def projection_arrays(inet: IntNetwork) -> ProjectionArrays:
    """The network's ProjectionArrays, gathered on the first call and kept on `inet` (partition, place and
    route share one gathering; a network whose populations or projections are replaced gathers anew)."""
    cached = inet.__dict__.get(_CACHE_ATTR)
    if cached is not None and cached[0] is inet.projections and cached[1] is inet.populations:
        return cached[2]
    arrays = _gather(inet)
    inet.__dict__[_CACHE_ATTR] = (inet.projections, inet.populations, arrays)
    return arrays


def _gather(inet: IntNetwork) -> ProjectionArrays:
    projs = inet.projections
    if isinstance(projs, IntProjections):
        return _of_table(inet, projs)
    n = len(projs)
    pop_index = {name: k for k, name in enumerate(inet.populations)}
    pop_offset = np.zeros(len(pop_index) + 1, dtype=np.int64)
    pop_offset[1:] = np.cumsum([p.size for p in inet.populations.values()])
    # The only per-projection Python work: C-level maps over the projection list, one per field.
    weights = list(map(attrgetter("weights"), projs))
    indptr = list(map(attrgetter("indptr"), weights))
    indices = list(map(attrgetter("indices"), weights))
    delays = list(map(attrgetter("delays"), projs))
    nnz = np.fromiter(map(len, indices), dtype=np.int64, count=n)
    n_post = np.fromiter(map(len, indptr), dtype=np.int64, count=n) - 1
    n_pre = np.fromiter(map(itemgetter(1), map(attrgetter("shape"), weights)), dtype=np.int64, count=n)
    pre_pop = np.fromiter(map(pop_index.__getitem__, map(attrgetter("pre"), projs)), dtype=np.int64, count=n)
    post_pop = np.fromiter(map(pop_index.__getitem__, map(attrgetter("post"), projs)), dtype=np.int64, count=n)
    mixed = np.fromiter(map("mixed".__eq__, map(attrgetter("sign_mode"), projs)), dtype=bool, count=n)
    conv = {k: projs[k] for k, c in enumerate(map(attrgetter("conv"), projs)) if c is not None}
    syn_ptr = np.zeros(n + 1, dtype=np.int64)
    syn_ptr[1:] = np.cumsum(nnz)
    blocks = Blocks(n_post, n_pre, syn_ptr, _concat_as(indices, None), np.zeros(0), _concat_as(delays, None),
                    indptr=_concat_as(indptr, None))
    return ProjectionArrays(nnz=nnz, n_post=n_post, n_pre=n_pre, pre_pop=pre_pop, post_pop=post_pop,
                            pre_offset=pop_offset[pre_pop], post_offset=pop_offset[post_pop], syn_ptr=syn_ptr,
                            blocks=blocks, sign_mixed=mixed, conv=conv)


def _of_table(inet: IntNetwork, table: IntProjections) -> ProjectionArrays:
    """The arrays of projections stored end to end: the table's own (no copy, no per-projection work)."""
    pop_offset = np.zeros(len(inet.populations) + 1, dtype=np.int64)
    pop_offset[1:] = np.cumsum([p.size for p in inet.populations.values()])
    pre_pop, post_pop = table.index_in(list(inet.populations))
    b = table.blocks
    return ProjectionArrays(nnz=b.nnz, n_post=b.n_post, n_pre=b.n_pre, pre_pop=pre_pop, post_pop=post_pop,
                            pre_offset=pop_offset[pre_pop], post_offset=pop_offset[post_pop], syn_ptr=b.syn_ptr,
                            blocks=b, sign_mixed=table.sign_mode == SIGN_MODES.index("mixed"),
                            conv={k: table[k] for k in table.conv})


def _concat_as(arrays: list[np.ndarray], dtype) -> np.ndarray:
    """The arrays end to end in `dtype` (None: their widest own dtype); a lone array as is."""
    if dtype is None:
        dtype = np.result_type(*arrays) if arrays else np.int64
    if len(arrays) == 1:
        return arrays[0].astype(dtype, copy=False)
    if not arrays:
        return np.zeros(0, dtype=dtype)
    if len(set(map(attrgetter("dtype"), arrays))) == 1:
        return concat(arrays).astype(dtype, copy=False)
    return np.concatenate(arrays).astype(dtype, copy=False)


def block_bounds(sizes: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Consecutive groups [lo, hi) of items whose sizes sum to at most `limit`; an item over it comes alone."""
    ends = np.cumsum(sizes)
    out = []
    lo, base = 0, 0
    while lo < sizes.size:
        hi = max(lo + 1, int(np.searchsorted(ends, base + limit, side="right")))
        out.append((lo, hi))
        lo, base = hi, int(ends[hi - 1])
    return out


def concat(arrays: list[np.ndarray]) -> np.ndarray:
    """np.concatenate of 1-D arrays, but through one bytes join when they share a dtype: numpy's per-array
    overhead dominates at 100k arrays of a few elements (7x slower there)."""
    dtypes = set(map(attrgetter("dtype"), arrays))
    if len(dtypes) == 1 and sum(map(len, arrays)) < 64 * len(arrays):  # long arrays: numpy's copy is faster
        try:
            return np.frombuffer(bytearray().join(arrays), dtype=dtypes.pop())
        except (BufferError, TypeError, ValueError):  # a strided view: no flat buffer to join
            pass
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


ROWS_PER_BLOCK = 4_000_000  # indptr entries concatenated at once (sparse projections have many empty rows)


def nonempty_rows(indptrs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix, row, entries) of every non-empty row of several CSR matrices, in order (one pass over
    their concatenated indptrs: across a seam between two matrices the difference is -nnz, never a row)."""
    n_ptr = np.fromiter(map(len, indptrs), dtype=np.int64, count=len(indptrs))
    counts = np.diff(concat(indptrs))
    pos = np.flatnonzero(counts > 0)
    start = np.cumsum(n_ptr) - n_ptr
    owner = np.searchsorted(start, pos, side="right") - 1
    return owner, pos - start[owner], counts[pos]


def csr_rows(indptrs: list[np.ndarray]) -> np.ndarray:
    """Row of every stored entry of several CSR matrices, in the concatenation of their entries (int64)."""
    sizes = np.fromiter(map(len, indptrs), dtype=np.int64, count=len(indptrs))
    parts = []
    for lo, hi in block_bounds(sizes, ROWS_PER_BLOCK):
        _, row, entries = nonempty_rows(indptrs[lo:hi])
        parts.append(np.repeat(row, entries))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _chunk_ends(nnz: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) of the projections in each chunk: a chunk closes after the projection that brings it to
    CHUNK_SYNAPSES synapses (empty projections are skipped, as they add none)."""
    ends = np.cumsum(nnz)
    out = []
    lo, base = 0, 0
    while lo < nnz.size:
        hi = int(np.searchsorted(ends, base + CHUNK_SYNAPSES, side="left")) + 1
        hi = min(hi, nnz.size)
        if ends[hi - 1] > base:
            out.append((lo, hi))
        lo, base = hi, int(ends[hi - 1])
    return out


def chunks(inet: IntNetwork, offsets: dict[str, int]) -> Iterator[SynapseChunk]:
    if not inet.projections:
        return
    arr = projection_arrays(inet)
    pop_off = np.asarray([offsets[name] for name in inet.populations], dtype=np.int64)
    for lo, hi in _chunk_ends(arr.nnz):
        nnz = arr.nnz[lo:hi]
        pre = arr.indices_of(lo, hi).astype(np.int64)
        pre += np.repeat(pop_off[arr.pre_pop[lo:hi]], nnz)
        post = arr.rows_of(lo, hi).astype(np.int64)
        post += np.repeat(pop_off[arr.post_pop[lo:hi]], nnz)
        yield SynapseChunk(pre, post, arr.delays_of(lo, hi).astype(np.int64))


def slice_of_neuron(inet: IntNetwork, slices: list, offsets: dict[str, int], total: int,
                    skip_role: str) -> np.ndarray:
    """Index of the slice (not of role `skip_role`) that holds each global neuron id; -1 if none."""
    out = np.full(total, -1, dtype=np.int64)
    for k, s in enumerate(slices):
        if s.role != skip_role:
            base = offsets[s.population]
            out[base + s.start:base + s.stop] = k
    return out


def unique_tuples(*columns: np.ndarray) -> list[np.ndarray]:
    """The distinct tuples (columns[0][i], columns[1][i], ...) in lexicographic order, as one array per
    column (int64): np.unique of a mixed-radix key, but through a bitmap over the key's range when that
    range is small (a projection's slices x neurons), which is linear where np.unique sorts. A column
    whose range is much wider than its distinct values (global neuron ids of a few neurons per population)
    is first ranked through a bitmap of its own range, which keeps the order and shrinks the key space."""
    n = columns[0].size
    ranked = [_rank(c, n) for c in columns]
    lows = [0 if values is not None else int(c.min()) for c, (_, values) in zip(columns, ranked, strict=True)]
    spans = [values.size if values is not None else int(c.max()) - lo + 1
             for c, lo, (_, values) in zip(columns, lows, ranked, strict=True)]
    key = np.zeros(n, dtype=np.int64)
    for c, lo, span, (rank, _) in zip(columns, lows, spans, ranked, strict=True):
        key *= span
        key += rank if rank is not None else c
        if lo:
            key -= lo
    space = math.prod(spans)
    if space <= max(1 << 24, BITMAP_PER_KEY * key.size):
        seen = np.zeros(space, dtype=bool)
        seen[key] = True
        del key
        uniq = np.flatnonzero(seen)
        del seen
    else:
        uniq = np.unique(key)
        del key
    out = []
    for lo, span, (_, values) in zip(reversed(lows), reversed(spans), reversed(ranked), strict=True):
        digit = uniq % span
        out.append(values[digit] if values is not None else digit + lo)
        uniq //= span
    return out[::-1]


def _rank(column: np.ndarray, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(rank of each value among the column's distinct values, the distinct values ascending), or
    (None, None) when the column's range is narrow already or too wide for a bitmap."""
    if not n:
        return None, None
    lo, hi = int(column.min()), int(column.max())
    span = hi - lo + 1
    if span <= 64 or span > max(1 << 24, 8 * n):
        return None, None
    seen = np.zeros(span, dtype=bool)
    seen[column - lo] = True
    values = np.flatnonzero(seen)
    if values.size * 4 > span:  # dense: ranking would not shrink the key space much
        return None, None
    rank = np.cumsum(seen, dtype=np.int64) - 1
    return rank[column - lo], values + lo
