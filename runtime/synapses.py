"""Event-driven synaptic delivery: cost per step follows the spikes, not the matrix size.

A projection is stored column-wise (CSC, one column per pre neuron) with each synapse's
target encoded as `delay * n_post + post`. A step gathers the columns of the neurons that
spiked and sums them with one `bincount` into a (delays x n_post) block, which is exactly
Lava's per-delay accumulation before the weight-exponent shift.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..compiler.ir.lif import shift_by_exponent

DENSE_MAX_CELLS = 16_000_000  # 128 MB of int64 at most per projection
DENSE_MIN_DENSITY = 0.15


def gather_ranges(indptr: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Indices of the CSC entries of columns `cols`, concatenated (vectorised, no Python loop)."""
    starts = indptr[cols]
    lengths = indptr[cols + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return offsets + np.arange(total, dtype=np.int64)


class EventProjection:
    """One projection, ready for per-step event-driven accumulation."""

    def __init__(self, weights: sp.csr_array, delays: np.ndarray, weight_exp: int = 0):
        n_post, n_pre = weights.shape
        rows = np.repeat(np.arange(n_post, dtype=np.int64), np.diff(weights.indptr))
        self.n_post = n_post
        self.n_delays = int(delays.max()) + 1 if delays.size else 1
        target = delays.astype(np.int64) * n_post + rows
        csc = sp.csc_array((weights.data.astype(np.int64), (target, weights.indices.astype(np.int64))),
                           shape=(self.n_delays * n_post, n_pre))
        csc.sort_indices()
        self.indptr = csc.indptr.astype(np.int64)
        self.target = csc.indices.astype(np.int64)
        self.data = csc.data.astype(np.int64)
        self.weight_exp = int(weight_exp)
        self.binary_data = self.data.astype(np.float64)
        # Dense layers: summing whole rows of a dense (pre x delay*post) block beats gathering.
        cells = n_pre * self.n_delays * n_post
        self.dense = None
        if cells <= DENSE_MAX_CELLS and weights.nnz >= DENSE_MIN_DENSITY * cells:
            self.dense = np.ascontiguousarray(csc.T.toarray().astype(np.int64))

    def accumulate(self, spikes: np.ndarray, binary: bool = False) -> np.ndarray | None:
        """(n_delays, n_post) int64 input for the spikes of one step, shifted by the weight exponent.
        `binary`: spikes is a bool vector (every count is 1), so the per-spike counts are not checked."""
        active = np.flatnonzero(spikes)
        if active.size == 0:
            return None
        if self.dense is not None:
            rows = self.dense[active]
            if binary:
                acc = rows.sum(axis=0)
            else:
                counts = spikes[active]
                acc = rows.sum(axis=0) if np.all(counts == 1) else counts.astype(np.int64) @ rows
            return shift_by_exponent(acc.reshape(self.n_delays, self.n_post), self.weight_exp)
        idx = gather_ranges(self.indptr, active)
        if idx.size == 0:
            return None
        counts = None if binary else spikes[active]
        if counts is None or np.all(counts == 1):
            weights = self.binary_data[idx]
        else:
            per_col = np.repeat(counts, np.diff(self.indptr)[active])
            weights = self.binary_data[idx] * per_col
        acc = np.bincount(self.target[idx], weights=weights, minlength=self.n_delays * self.n_post)
        return shift_by_exponent(acc.astype(np.int64).reshape(self.n_delays, self.n_post), self.weight_exp)
