"""Array idioms for whole-graph passes: many projections' arrays end to end, worked on at once.

A pass gathers one array per projection (weights, delays, index pointers), concatenates them into
*segments* of one long array, does its arithmetic and per-projection reductions there
(`np.maximum.reduceat` and friends), and splits the result back into per-projection views. The
number of numpy calls then grows with the synapse count / batch budget, not with the projections.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from ..ir import LoweredProjection


def concat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The arrays end to end; a lone array is returned as is (no copy of a 100M-synapse projection)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def offsets(sizes: np.ndarray) -> np.ndarray:
    """Start of each segment and, last, the total: len(sizes) + 1 entries."""
    out = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def batches(sizes: np.ndarray, budget: int, alone: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Consecutive [start, stop) runs of segments, each under 2 x `budget` elements, so a pass's
    temporaries stay bounded. A run is the segments starting in one `budget`-sized window of the
    concatenation; a segment larger than the budget, or marked `alone`, is a run by itself."""
    sizes = np.asarray(sizes, np.int64)
    lone = sizes > budget if alone is None else (np.asarray(alone) | (sizes > budget))
    window = offsets(sizes)[:-1] // budget
    cuts = np.flatnonzero(np.diff(window)) + 1
    lone_at = np.flatnonzero(lone)
    bounds = np.unique(np.concatenate(([0, sizes.size], cuts, lone_at, lone_at + 1)))
    bounds = bounds[bounds <= sizes.size].tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _segment_reduce(ufunc: np.ufunc, values: np.ndarray, sizes: np.ndarray, empty, dtype=None) -> np.ndarray:
    # reduceat reads a zero-length segment as the element at its start: reduce non-empty ones only.
    sizes = np.asarray(sizes)
    out = np.full(sizes.size, empty, dtype=dtype or np.result_type(values.dtype, np.asarray(empty).dtype))
    full = sizes > 0
    if full.any():
        out[full] = ufunc.reduceat(values, offsets(sizes)[:-1][full], dtype=dtype)
    return out


def segment_count(mask: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Number of True entries of each segment of a boolean `mask` (int64; 0 where size 0)."""
    return _segment_reduce(np.add, mask, sizes, 0, np.int64)


def segment_max(values: np.ndarray, sizes: np.ndarray, empty=0) -> np.ndarray:
    """max of each segment of `values` (segments of the given sizes, end to end); `empty` where size 0."""
    return _segment_reduce(np.maximum, values, sizes, empty)


def segment_min(values: np.ndarray, sizes: np.ndarray, empty=0) -> np.ndarray:
    """min of each segment of `values`; `empty` where size 0."""
    return _segment_reduce(np.minimum, values, sizes, empty)


def split(values: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Per-segment views of `values` (the inverse of concat)."""
    bounds = offsets(sizes).tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def row_lengths(indptrs: Sequence[np.ndarray]) -> np.ndarray:
    """np.diff of each CSR index pointer, end to end (one entry per row of every matrix), in one diff."""
    if len(indptrs) == 1:
        return np.diff(indptrs[0])
    lengths = np.diff(np.concatenate(indptrs))
    # The diff across two matrices (first entry of the next minus last of this) is no row: drop it.
    seams = offsets(np.fromiter(map(len, indptrs), np.int64, len(indptrs)))[1:-1] - 1
    return np.delete(lengths, seams)


# ---- building the per-projection objects ----

@contextmanager
def paused_gc() -> Iterator[None]:
    """Cyclic GC off while a pass builds ~10^5 small objects (csr_arrays, projections): each
    generation-2 collection would walk the whole heap, the network's projections included, again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()



_INT32_MAX = np.iinfo(np.int32).max
_I32, _I64 = np.dtype(np.int32), np.dtype(np.int64)


def nnz(w: sp.csr_array) -> int:
    """w.nnz (scipy defines it as indptr[-1]) without the property's call chain: ~0.6 us a matrix."""
    return w.indptr.item(-1)


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

    The constructor's format checks and index-dtype selection cost ~25 us a matrix, 2.5 s of a pass
    over 100k projections; assembling costs ~1 us. The callers' arrays come from a valid csr_array
    (its indices, or a subset of its entries with a recomputed indptr), so the checks cannot fail.
    Anything unusual (other index dtypes, a length mismatch the constructor would prune or reject,
    a scipy whose internals differ) goes to the constructor, which then gives exactly its result.
    """
    m, n = int(shape[0]), int(shape[1])
    if (_FAST and indices.dtype is indptr.dtype and _keeps_index_dtype(indices.dtype, m, n)
            and data.ndim == 1 and indices.ndim == 1 and indptr.ndim == 1 and len(indptr) == m + 1
            and len(indices) == len(data) and indptr.item(-1) == len(data) and indptr.item(0) == 0):
        return _assembled(data, indices, indptr, (m, n))
    return sp.csr_array((data, indices, indptr), shape=(m, n), copy=False)


def scaled_data(projs: Sequence[LoweredProjection]) -> np.ndarray:
    """Lowered projections' weights.data end to end, in one multiplication: per synapse the same float
    product as each projection's own scaled_data (its row's gain x its base weight)."""
    if len(projs) == 1:
        return projs[0].scaled_data()
    datas = [p.base.data for p in projs]
    if all(isinstance(p.gain, float) for p in projs):
        gains = np.repeat(np.array([p.gain for p in projs], np.float64), [d.size for d in datas])
    else:
        per_row = [np.full(p.base.shape[0], p.gain) if isinstance(p.gain, float) else p.gain for p in projs]
        gains = np.repeat(np.concatenate(per_row), row_lengths([p.base.indptr for p in projs]))
    gains *= np.concatenate(datas)  # in place: one float array per synapse, not two
    return gains
