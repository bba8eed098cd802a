"""The float network IR: populations and projections with NIR's semantics (the frontend's output).

A `Network` is what the frontend produces: neuron populations with per-neuron float
parameters in NIR's units, and projections whose weights are `scipy.sparse` matrices
(post x pre) with one integer delay (in timesteps) per synapse. Linear NIR nodes
(Affine, Linear, Scale, Conv, Pool, Flatten, Delay) no longer exist here: they have
been composed into projections and population biases; a projection that is one convolution
also keeps its kernel (`Projection.conv`, compiler/ir/conv.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .table import Blocks, ProjectionTable, name_index

if TYPE_CHECKING:
    from .conv import Conv

INPUT = "input"  # the kind of an input population in every IR (float, lowered, integer)
NEURON_KINDS = ("LIF", "CubaLIF", "IF", "LI", "CubaLI", "I", "Threshold")
SPIKING_KINDS = frozenset({"LIF", "CubaLIF", "IF", "Threshold"})

# NIR parameter names per neuron kind (all stored per neuron, flat float64).
KIND_PARAMS: dict[str, tuple[str, ...]] = {
    "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
    "IF": ("r", "v_threshold", "v_reset"),
    "LI": ("tau", "r", "v_leak"),
    "CubaLI": ("tau_syn", "tau_mem", "r", "v_leak", "w_in"),
    "I": ("r",),
    "Threshold": ("threshold",),
}


@dataclass
class Population:
    """A group of neurons of one kind (or the graph's input)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    # Constant input current added every step (Affine biases composed through the graph).
    bias: np.ndarray | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape) if self.shape else 1  # math.prod: np.prod costs ~9 us (10^3 populations)

    @property
    def spiking(self) -> bool:
        return self.kind == INPUT or self.kind in SPIKING_KINDS

    def bias_or_zero(self) -> np.ndarray:
        return self.bias if self.bias is not None else np.zeros(self.size)


class SparseSynapses:
    """Counts of a projection whose weights are a sparse matrix with one delay per stored synapse
    (the float and the integer projections both are)."""

    weights: sp.csr_matrix
    delays: np.ndarray

    @property
    def n_synapses(self) -> int:
        return int(self.weights.nnz)

    @property
    def max_delay(self) -> int:
        return int(self.delays.max()) if self.delays.size else 0


@dataclass
class Projection(SparseSynapses):
    """Synapses from `pre` to `post`: weights[i, j] from pre neuron j to post neuron i."""

    pre: str
    post: str
    weights: sp.csr_array
    delays: np.ndarray  # integer (int16 when they fit: 2 bytes per synapse), aligned with weights.data (CSR order)
    # The shared kernel when the projection is one convolution (weights == conv.unrolled()); None if sparse.
    conv: Conv | None = None

    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(post index, pre index, weight, delay) per synapse, in CSR order."""
        w = self.weights
        rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
        return rows, w.indices.astype(np.int64), w.data, self.delays.astype(np.int64)


def compact_int(values: np.ndarray) -> np.ndarray:
    """`values` as int16 (or int32, int64) when they fit: delays and indices at 100M synapses are GBs."""
    values = np.asarray(values)
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return values.astype(dtype, copy=False)
    return values.astype(np.int64, copy=False)


def index_dtype(*maxima: int) -> type:
    """scipy's own choice: int32 sparse indices while every index and nnz fit, else int64."""
    return np.int32 if max(maxima, default=0) < np.iinfo(np.int32).max else np.int64


def make_projection(
    pre: str,
    post: str,
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    delays: np.ndarray,
    shape: tuple[int, int],
    conv: Conv | None = None,
) -> Projection:
    """Build a canonical projection (sorted CSR, no zero weights) from synapse lists.

    Synapses that share (post, pre, delay) are summed; the caller guarantees that a
    (post, pre) pair appears with one delay only.
    """
    n_rows, n_cols = shape
    key = np.asarray(rows, dtype=np.int64) * n_cols + np.asarray(cols, dtype=np.int64)
    values, delays = np.asarray(values, dtype=np.float64), np.asarray(delays)
    if key.size and bool(np.all(key[1:] > key[:-1])):  # already canonical (a generator's output): no sort
        uniq, summed, delays = key, values.copy(), delays.copy()  # copies: the caller keeps its arrays
    else:
        order = np.argsort(key, kind="stable")
        key, values, delays = key[order], values[order], delays[order]
        uniq, start = np.unique(key, return_index=True)
        summed = np.add.reduceat(values, start) if key.size else values
        delays = delays[start] if key.size else delays
    nonzero = summed != 0
    if not nonzero.all():
        uniq, summed, delays = uniq[nonzero], summed[nonzero], delays[nonzero]
    itype = index_dtype(n_rows, n_cols, uniq.size)
    r = uniq // n_cols
    indptr = np.searchsorted(r, np.arange(n_rows + 1)).astype(itype)
    del r
    w = sp.csr_array((summed, (uniq % n_cols).astype(itype), indptr), shape=shape, copy=False)
    return Projection(pre, post, w, compact_int(delays), conv)


@dataclass
class Network:
    """Float network: NIR semantics, per-neuron parameters, composed projections."""

    populations: dict[str, Population]
    projections: list[Projection] | FloatProjections  # a list, or many projections end to end
    inputs: list[str]
    outputs: dict[str, str]  # NIR output node name -> population name
    dt: float
    discretization: str = "euler"  # "euler" (NIR's forward Euler) or "exp" (exact exponential)
    dt_source: str = "given"  # where dt came from: given, recorded, inferred or assumed (inspect shows it)

    def incoming(self, post: str) -> list[Projection]:
        if isinstance(self.projections, ProjectionTable):
            return self.projections.where_post(post)
        return [p for p in self.projections if p.post == post]

    def outgoing(self, pre: str) -> list[Projection]:
        if isinstance(self.projections, ProjectionTable):
            return self.projections.where_pre(pre)
        return [p for p in self.projections if p.pre == pre]

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations.values() if p.kind != INPUT)

    @property
    def n_synapses(self) -> int:
        if isinstance(self.projections, ProjectionTable):
            return self.projections.n_synapses
        return sum(p.n_synapses for p in self.projections)

    def input_size(self) -> int:
        return sum(self.populations[n].size for n in self.inputs)


@dataclass(eq=False)
class FloatProjections(ProjectionTable[Projection]):
    """A float network's projections end to end (compiler/ir/table.py); items are `Projection`s."""

    def _make(self, k: int) -> Projection:
        return Projection(self.pre_name(k), self.post_name(k), self.blocks.matrix(k), self.blocks.delays_of(k),
                          self.conv.get(k))


def make_projections(names: Sequence[str], pre: Sequence[str], post: Sequence[str], blocks: Blocks) -> FloatProjections:
    """Projections pre[k] -> post[k] whose weights and delays are `blocks`' matrix k (canonical CSR: each
    row's indices sorted and distinct, no zero weight, as make_projection makes them)."""
    pre_index, post_index = name_index(names, pre, post)
    return FloatProjections(tuple(names), pre_index, post_index, blocks)
