"""The lowered IR: what `lower` hands to `quantize` (float CUBA-LIF in threshold units, scalar decays).

Per neuron: u' = alpha_i u + sum_j w_ij s_j(t - 1 - d_ij); v' = alpha_v v + u' + b; spike when v' > 1,
then v' = 0 (compiler/passes/lower.py derives it from every NIR kind).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .conv import Conv


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
    pre: str
    post: str
    weights: sp.csr_array  # float, threshold units
    delays: np.ndarray  # aligned with weights.data
    conv: Conv | None = None  # the shared kernel (integer mantissas in the IntNetwork); weights == unrolled

    @property
    def n_synapses(self) -> int:
        return int(self.weights.nnz)


@dataclass
class LoweredNetwork:
    populations: dict[str, LoweredPopulation]
    projections: list[LoweredProjection]
    inputs: list[str]
    outputs: dict[str, list[str]]  # NIR output -> lowered populations (in index order of the source)
    dt: float
    source_pops: dict[str, list[str]]  # NIR population -> its lowered populations
    notes: list[str] = field(default_factory=list)
