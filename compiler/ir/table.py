"""Many projections stored end to end (CSR-of-projections), for networks with 10^5 projections.

A PACMAN-style graph has 100k-250k projections of a few synapses each: one Python object and one
scipy matrix per projection cost more than all the arithmetic on them. A `ProjectionTable` keeps
every projection's CSR arrays concatenated (`Blocks`) plus one array per per-projection field, so
the passes work on whole arrays. It is a `Sequence` of the IR's projection objects all the same:
an item is made on first access (its matrix is a view into the blocks, not a copy) and kept, so
code that reads projections one by one (backends, simulators, tests) sees the IR it always saw.

The three IRs each have their table: `FloatProjections` (Network), `LoweredProjections`
(LoweredNetwork) and `IntProjections` (IntNetwork). A network's `projections` may also be a plain
list (frontends, tests); passes accept both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import numpy as np
import scipy.sparse as sp

T = TypeVar("T")

# ---- a csr_array without scipy's constructor checks (they cost ~25 us a matrix) ----

_INT32_MAX = np.iinfo(np.int32).max
_I32, _I64 = np.dtype(np.int32), np.dtype(np.int64)


def _keeps_index_dtype(dtype: np.dtype, m: int, n: int) -> bool:
    # What sp.csr_array((data, indices, indptr), shape) does for a sparray: int32 index arrays stay int32
    # while the shape fits, int64 ones stay int64 (it checks types, not contents). `is`: a dtype that is
    # not numpy's own native int32/int64 (byte order, metadata) takes the constructor.
    return dtype is _I64 or (dtype is _I32 and m <= _INT32_MAX and n <= _INT32_MAX)


def _csr_state() -> dict:
    """The attributes, other than the arrays and shape, that scipy's constructor gives a csr_array."""
    ref = sp.csr_array((np.ones(1), np.zeros(1, np.int32), np.array([0, 1], np.int32)), shape=(1, 1))
    return {k: v for k, v in vars(ref).items() if k not in ("data", "indices", "indptr", "_shape")}


_STATE = _csr_state()


def _assembled(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> sp.csr_array:
    out = sp.csr_array.__new__(sp.csr_array)
    out.__dict__ = {**_STATE, "data": data, "indices": indices, "indptr": indptr, "_shape": shape}
    return out


def _assembly_agrees() -> bool:
    """Whether a csr_array assembled from its attributes is the one scipy's constructor builds (same
    attributes, valid, equal, same index-dtype rule). Checked once at import: a scipy whose internals
    differ gets the validating constructor instead of broken matrices."""
    data, indices, indptr = np.array([1.0, 2.0]), np.array([0, 2], np.int32), np.array([0, 1, 2], np.int32)
    ref = sp.csr_array((data, indices, indptr), shape=(2, 3), copy=False)
    try:
        fast = _assembled(data, indices, indptr, (2, 3))
        shared = fast.indices is indices and fast.data is data
        fast.check_format(full_check=True)
        rule = all(_keeps_index_dtype(np.dtype(t), 2, 3) == (sp.get_index_dtype(
            (np.zeros(1, t), np.zeros(1, t)), maxval=3) == t) for t in (np.int16, np.int32, np.int64))
        return (shared and rule and set(vars(fast)) == set(vars(ref)) and fast.shape == ref.shape
                and (fast != ref).nnz == 0)
    except Exception:  # noqa: BLE001 - whatever went wrong, the constructor is the safe path
        return False


_FAST = _assembly_agrees()


def csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> sp.csr_array:
    """sp.csr_array((data, indices, indptr), shape=shape, copy=False), skipping its checks when the
    arrays are already what the constructor would keep.

    The callers' arrays come from a valid csr_array (its indices, or a subset of its entries with a
    recomputed indptr), so the checks cannot fail. Anything unusual (other index dtypes, a length
    mismatch the constructor would prune or reject, a scipy whose internals differ) goes to the
    constructor, which then gives exactly its result.
    """
    m, n = int(shape[0]), int(shape[1])
    if (_FAST and indices.dtype is indptr.dtype and _keeps_index_dtype(indices.dtype, m, n)
            and data.ndim == 1 and indices.ndim == 1 and indptr.ndim == 1 and len(indptr) == m + 1
            and len(indices) == len(data) and indptr.item(-1) == len(data) and indptr.item(0) == 0):
        return _assembled(data, indices, indptr, (m, n))
    return sp.csr_array((data, indices, indptr), shape=(m, n), copy=False)


# ---- the concatenated arrays ----

def offsets(sizes: np.ndarray) -> np.ndarray:
    """Start of each segment and, last, the total: len(sizes) + 1 entries (int64)."""
    out = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions starts[i] .. starts[i] + lengths[i] - 1 for every i, end to end (int64)."""
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    live = lengths > 0
    starts, lengths = starts[live], lengths[live]
    if lengths.size == 0:
        return np.zeros(0, np.int64)
    step = np.ones(int(lengths.sum()), np.int64)
    # At each range's first slot, jump from the previous range's last position to this range's start.
    first = offsets(lengths)[:-1]
    step[first[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    step[0] = starts[0]
    return np.cumsum(step)


class Blocks:
    """P sparse matrices (post x pre) with one delay per stored entry, end to end.

    Matrix k: rows n_post[k], columns n_pre[k]; its entries are data/indices/delays[syn_ptr[k]:syn_ptr[k + 1]],
    in CSR order. Where each entry's row is says either of two forms, whichever is smaller: per matrix its own
    indptr (`indptr`, n_post[k] + 1 entries from 0, at ptr_ptr[k]), or per entry its row (`rows`). A graph of
    256k projections of 250 rows and one synapse each needs 64M indptr entries but 256k rows; a 1M x 1M
    matrix of 100M synapses the other way round. The other form is derived on first use and kept."""

    def __init__(self, n_post: np.ndarray, n_pre: np.ndarray, syn_ptr: np.ndarray, indices: np.ndarray,
                 data: np.ndarray, delays: np.ndarray, *, indptr: np.ndarray | None = None,
                 ptr_ptr: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        if indptr is None and rows is None:
            raise ValueError("Blocks needs indptr (with ptr_ptr) or rows")
        self.n_post, self.n_pre, self.syn_ptr = n_post, n_pre, syn_ptr
        self.indices, self.data, self.delays = indices, data, delays
        self._indptr, self._rows = indptr, rows
        self._ptr_ptr = ptr_ptr if ptr_ptr is not None or indptr is None else offsets(n_post + 1)

    @property
    def size(self) -> int:
        return int(self.n_post.size)

    @property
    def nnz(self) -> np.ndarray:
        return np.diff(self.syn_ptr)

    @property
    def has_rows(self) -> bool:
        """Whether the entries' rows are stored (else they are derived from the indptrs on first use)."""
        return self._rows is not None

    @property
    def ptr_ptr(self) -> np.ndarray:
        if self._ptr_ptr is None:
            self._ptr_ptr = offsets(self.n_post + 1)
        return self._ptr_ptr

    @property
    def indptr(self) -> np.ndarray:
        """Every matrix's own indptr, end to end (derived from the rows on first use)."""
        if self._indptr is None:
            rows = self._rows.astype(np.int64)
            # Entry j of matrix k sits in flat row ptr_ptr[k] - k + rows[j]; count entries per flat row.
            flat = rows + np.repeat(self.ptr_ptr[:-1] - np.arange(self.size), self.nnz)
            counts = np.bincount(flat, minlength=int(self.n_post.sum()))
            out = np.zeros(int(self.ptr_ptr[-1]), self.indices.dtype)
            starts = self.ptr_ptr[:-1]
            body = np.ones(out.size, bool)
            body[starts] = False  # each matrix's leading 0
            out[body] = counts
            # Cumulative sum within each matrix: a global cumsum less its value at each matrix's start.
            total = np.cumsum(out, dtype=np.int64)
            out[:] = total - np.repeat(total[starts], self.n_post + 1)
            self._indptr = out
        return self._indptr

    def rows(self) -> np.ndarray:
        """Row (post neuron, within its matrix) of every entry, end to end."""
        if self._rows is None:
            counts = np.diff(self.indptr.astype(np.int64))
            counts[counts < 0] = 0  # across a seam between two matrices: -nnz, never a row's entries
            start = np.repeat(self.ptr_ptr[:-1], self.n_post + 1)[:-1]
            self._rows = np.repeat(np.arange(counts.size, dtype=np.int64) - start, counts).astype(
                self.indices.dtype, copy=False)
        return self._rows

    def rows_of(self, k: int) -> np.ndarray:
        """Row of every entry of matrix k (without deriving every matrix's rows)."""
        a, b = int(self.syn_ptr[k]), int(self.syn_ptr[k + 1])
        if self._rows is not None:
            return self._rows[a:b]
        p = int(self.ptr_ptr[k])
        return np.repeat(np.arange(int(self.n_post[k])), np.diff(self._indptr[p:p + int(self.n_post[k]) + 1]))

    def matrix(self, k: int, data: np.ndarray | None = None) -> sp.csr_array:
        """Matrix k as a csr_array whose arrays are views into the blocks (`data` replaces its values)."""
        a, b = int(self.syn_ptr[k]), int(self.syn_ptr[k + 1])
        m = int(self.n_post[k])
        if self._indptr is not None:
            p = int(self.ptr_ptr[k])
            indptr = self._indptr[p:p + m + 1]
        else:  # its rows are sorted (CSR order): the indptr is where each row starts
            indptr = np.searchsorted(self._rows[a:b], np.arange(m + 1), side="left").astype(self.indices.dtype)
        values = self.data[a:b] if data is None else data
        return csr(values, self.indices[a:b], indptr, (m, int(self.n_pre[k])))

    def delays_of(self, k: int) -> np.ndarray:
        return self.delays[int(self.syn_ptr[k]):int(self.syn_ptr[k + 1])]

    def with_data(self, data: np.ndarray, delays: np.ndarray | None = None) -> Blocks:
        """The same matrices with new values (and delays)."""
        return Blocks(self.n_post, self.n_pre, self.syn_ptr, self.indices, data,
                      self.delays if delays is None else delays, indptr=self._indptr, ptr_ptr=self._ptr_ptr,
                      rows=self._rows)

    def take(self, ids: np.ndarray) -> Blocks:
        """Matrices `ids` (an index array or a boolean mask over matrices), in that order."""
        ids = np.flatnonzero(ids) if np.asarray(ids).dtype == bool else np.asarray(ids, np.int64)
        nnz, n_rows = self.nnz[ids], self.n_post[ids]
        syn = gather_ranges(self.syn_ptr[ids], nnz)
        rows = None
        if syn.size == self.indices.size and (syn.size == 0 or (syn[0] == 0 and bool(np.all(np.diff(syn) == 1)))):
            data, indices, delays = self.data, self.indices, self.delays  # every entry kept, in order: shared
            rows = self._rows
        else:
            data, indices, delays = self.data[syn], self.indices[syn], self.delays[syn]
            rows = None if self._rows is None else self._rows[syn]
        if rows is not None:
            return Blocks(n_rows, self.n_pre[ids], offsets(nnz), indices, data, delays, rows=rows)
        indptr = self._indptr[gather_ranges(self.ptr_ptr[ids], n_rows + 1)]
        return Blocks(n_rows, self.n_pre[ids], offsets(nnz), indices, data, delays, indptr=indptr,
                      ptr_ptr=offsets(n_rows + 1))

    @classmethod
    def of(cls, matrices: Sequence[sp.csr_array], delays: Sequence[np.ndarray]) -> Blocks:
        """The matrices and their delays end to end (copied; a lone matrix's arrays are kept), in the
        smaller of the two row forms."""
        n = len(matrices)
        shapes = np.array([w.shape for w in matrices], np.int64).reshape(n, 2)
        nnz = np.fromiter((w.indptr[-1] for w in matrices), np.int64, n)
        itype = _index_dtype(int(shapes.max(initial=0)), int(nnz.max(initial=0)),
                             [w.indices.dtype for w in matrices] + [w.indptr.dtype for w in matrices])
        common = (shapes[:, 0], shapes[:, 1], offsets(nnz), _joined([w.indices for w in matrices], itype),
                  _joined([w.data for w in matrices], None), _joined(list(delays), None))
        indptr = _joined([w.indptr for w in matrices], itype)
        blocks = cls(*common, indptr=indptr)
        if indptr.size > int(nnz.sum()):
            blocks = cls(*common, rows=blocks.rows())
        return blocks


def _index_dtype(largest_dim: int, largest_nnz: int, dtypes: list[np.dtype]) -> type:
    if all(d == np.int32 for d in dtypes) and max(largest_dim, largest_nnz) < _INT32_MAX:
        return np.int32
    return np.int64


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    """The arrays end to end in `dtype` (None: their common dtype); a lone array is kept as is."""
    if not arrays:
        return np.zeros(0, np.int64 if dtype is None else dtype)
    dtype = np.result_type(*arrays) if dtype is None else np.dtype(dtype)
    if len(arrays) == 1:
        return arrays[0].astype(dtype, copy=False)
    return np.concatenate(arrays).astype(dtype, copy=False)


# ---- the tables ----

@dataclass(eq=False)
class ProjectionTable(Sequence[T]):
    """Projections end to end: `pre`/`post` are population indices into `names`."""

    names: tuple[str, ...]
    pre: np.ndarray  # int64 (P,)
    post: np.ndarray
    blocks: Blocks
    conv: dict[int, Any] = field(default_factory=dict)  # the few projections that are one convolution
    _items: list[T | None] | None = field(default=None, init=False, repr=False)

    def _make(self, k: int) -> T:
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.pre.size)

    @overload
    def __getitem__(self, k: int) -> T: ...
    @overload
    def __getitem__(self, k: slice) -> list[T]: ...

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        n = len(self)
        if not -n <= k < n:
            raise IndexError(k)
        k %= n
        if self._items is None:
            self._items = [None] * n
        item = self._items[k]
        if item is None:
            item = self._items[k] = self._make(k)
        return item

    def __iter__(self) -> Iterator[T]:
        return (self[k] for k in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and all(
            a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def pre_name(self, k: int) -> str:
        return self.names[int(self.pre[k])]

    def post_name(self, k: int) -> str:
        return self.names[int(self.post[k])]

    @property
    def n_synapses(self) -> int:
        return int(self.blocks.syn_ptr[-1])

    def where_post(self, name: str) -> list[T]:
        """The projections into population `name` (only those are made)."""
        k = self.names.index(name) if name in self.names else -1
        return [self[i] for i in np.flatnonzero(self.post == k).tolist()]

    def where_pre(self, name: str) -> list[T]:
        k = self.names.index(name) if name in self.names else -1
        return [self[i] for i in np.flatnonzero(self.pre == k).tolist()]

    def index_in(self, populations: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(pre, post) as indices into `populations` (a network's population order)."""
        if tuple(populations) == self.names:
            return self.pre, self.post
        where = {name: i for i, name in enumerate(populations)}
        remap = np.array([where[name] for name in self.names], np.int64)
        return remap[self.pre], remap[self.post]


def name_index(names: Sequence[str], pre: Sequence[str], post: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Population names per projection as indices into `names`."""
    where = {name: i for i, name in enumerate(names)}
    n = len(pre)
    return (np.fromiter(map(where.__getitem__, pre), np.int64, n),
            np.fromiter(map(where.__getitem__, post), np.int64, n))
