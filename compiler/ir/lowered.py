"""The lowered IR: what `lower` hands to `quantize` (float CUBA-LIF in threshold units, scalar decays).

Per neuron: u' = alpha_i u + sum_j w_ij s_j(t - 1 - d_ij); v' = alpha_v v + u' + b; spike when v' > 1,
then v' = 0 (compiler/passes/lower.py derives it from every NIR kind).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .conv import Conv
from .table import ProjectionTable


@dataclass
class LoweredPopulation:
    name: str
    source: str  # NIR population it came from
    index: np.ndarray  # neuron indices within the source population
    shape: tuple[int, ...]
    kind: str  # NIR kind, or INPUT
    alpha_i: float = 0.0
    alpha_v: float = 1.0
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spiking: bool = True
    # v_nir = v_lowered * v_scale + v_offset, per neuron (for reports and plots)
    v_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_offset: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def size(self) -> int:
        return int(self.index.size)


@dataclass
class LoweredProjection:
    """Weights in threshold units are `base` with row i scaled by the post neuron's `gain` (one float
    for every row, or one per row). The product is not stored: at 100M synapses it is 800 MB, and
    quantize only needs it a batch at a time (`scaled_data`)."""

    pre: str
    post: str
    base: sp.csr_array  # float weights before the post neurons' gains (shared with the float network)
    delays: np.ndarray  # aligned with base.data
    conv: Conv | None = None  # the shared kernel (integer mantissas in the IntNetwork); weights == unrolled
    gain: float | np.ndarray = 1.0  # per post neuron (row): float, or an array of base.shape[0]

    @property
    def n_synapses(self) -> int:
        return int(self.base.nnz)

    @property
    def weights(self) -> sp.csr_array:
        """The float weights in threshold units (built on each access; base's index arrays, shared)."""
        b = self.base
        return sp.csr_array((self.scaled_data(), b.indices, b.indptr), shape=b.shape, copy=False)

    def scaled_data(self) -> np.ndarray:
        """weights.data: per synapse, its row's gain times its base weight (base.data itself when gain is
        1.0: 1.0 x w is w, bit for bit). compiler/passes/segments.scaled_data does a batch of projections."""
        data = self.base.data
        if isinstance(self.gain, float):
            return data if self.gain == 1.0 and data.dtype == np.float64 else self.gain * data
        return np.repeat(self.gain, np.diff(self.base.indptr)) * data


@dataclass
class LoweredNetwork:
    populations: dict[str, LoweredPopulation]
    projections: list[LoweredProjection] | LoweredProjections
    inputs: list[str]
    outputs: dict[str, list[str]]  # NIR output -> lowered populations (in index order of the source)
    dt: float
    source_pops: dict[str, list[str]]  # NIR population -> its lowered populations
    notes: list[str] = field(default_factory=list)


@dataclass(eq=False)
class LoweredProjections(ProjectionTable[LoweredProjection]):
    """A lowered network's projections end to end (compiler/ir/table.py). `blocks.data` are the base weights
    (shared with the float network); `gain[k]` is projection k's one gain, or NaN where its rows' gains
    differ (they are `row_gain[k]`)."""

    gain: np.ndarray = field(default_factory=lambda: np.zeros(0))
    row_gain: dict[int, np.ndarray] = field(default_factory=dict)

    def _make(self, k: int) -> LoweredProjection:
        gain = self.row_gain[k] if k in self.row_gain else float(self.gain[k])
        return LoweredProjection(self.pre_name(k), self.post_name(k), self.blocks.matrix(k), self.blocks.delays_of(k),
                                 self.conv.get(k), gain)

    def scaled_data(self, lo: int, hi: int) -> np.ndarray:
        """weights.data of projections [lo, hi) end to end: per synapse the float product each
        projection's own scaled_data makes (its row's gain x its base weight)."""
        b = self.blocks
        a, z = int(b.syn_ptr[lo]), int(b.syn_ptr[hi])
        data = b.data[a:z]
        gains = np.repeat(self.gain[lo:hi], b.nnz[lo:hi])
        for k in (k for k in self.row_gain if lo <= k < hi):  # the few projections with per-row gains
            s0, s1 = int(b.syn_ptr[k]), int(b.syn_ptr[k + 1])
            gains[s0 - a:s1 - a] = self.row_gain[k][b.rows_of(k)]
        gains *= data  # in place: one float array per synapse, not two
        return gains
