"""Place: slices -> (chip, core), minimising hop-weighted spike traffic; deterministic for a seed.

Chips fill in a snake order over the mesh. When the slices need more than one chip, METIS
(pymetis) cuts the slice traffic graph into one part per chip, and parts are assigned to chips
greedily by affinity; the result is kept only if its hop-weighted traffic beats sequential
filling (both are measured by bench/compile_scaling.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import TargetError
from ..mapping import Slice
from ..targets.target import Target
from .partition import ROLE_DELAY, Partition
from .quantize import IntNetwork

DEFAULT_RATE = 0.05  # expected spikes per neuron per step when no rates are given


@dataclass
class Placement:
    slices: list[Slice]
    traffic: sp.csr_array  # expected packets/step from slice i to slice j
    hop_traffic: float  # sum over slice pairs of traffic x hops
    method: str


def chip_order(target: Target) -> list[tuple[int, int]]:
    """Chips in snake order, so consecutive chips are neighbours."""
    mesh = target.mesh
    out = []
    for y in range(mesh.chips_y):
        xs = range(mesh.chips_x) if y % 2 == 0 else range(mesh.chips_x - 1, -1, -1)
        out += [(x, y) for x in xs]
    return out


def hops(target: Target, a: tuple[int, int], b: tuple[int, int]) -> int:
    dx, dy = b[0] - a[0], b[1] - a[1]
    if target.mesh.topology == "triangular" and dx * dy > 0:
        return max(abs(dx), abs(dy))  # the NE/SW diagonal covers both at once
    return abs(dx) + abs(dy)


def slice_traffic(inet: IntNetwork, slices: list[Slice], rates: dict[str, np.ndarray] | None) -> sp.csr_array:
    """Expected packets per step from each slice to each slice that has synapses from it."""
    index = {(s.population, s.start, s.role): k for k, s in enumerate(slices)}
    by_pop: dict[str, list[tuple[int, Slice]]] = {}
    for k, s in enumerate(slices):
        if s.role != ROLE_DELAY:
            by_pop.setdefault(s.population, []).append((k, s))
    delay_slices: dict[str, list[tuple[int, Slice]]] = {}
    for k, s in enumerate(slices):
        if s.role == ROLE_DELAY:
            delay_slices.setdefault(s.population, []).append((k, s))
    rows, cols, vals = [], [], []
    for proj in inet.projections:
        rate = rates.get(proj.pre) if rates else None
        csc = sp.csc_array(proj.weights)
        for ks, src in by_pop[proj.pre]:
            lo, hi = int(csc.indptr[src.start]), int(csc.indptr[src.stop])
            if lo == hi:
                continue
            post_rows = csc.indices[lo:hi]
            pre_cols = np.repeat(np.arange(src.start, src.stop), np.diff(csc.indptr[src.start:src.stop + 1]))
            dst_list = by_pop[proj.post]
            edges = np.asarray([d.stop for _, d in dst_list])
            dst_id = np.searchsorted(edges, post_rows, side="right")
            pairs = np.unique(dst_id.astype(np.int64) * (proj.weights.shape[1] + 1) + pre_cols)
            pair_dst = pairs // (proj.weights.shape[1] + 1)
            pair_pre = pairs % (proj.weights.shape[1] + 1)
            per_pre = rate[pair_pre] if rate is not None else np.full(pair_pre.size, DEFAULT_RATE)
            load = np.bincount(pair_dst, weights=per_pre, minlength=len(dst_list))
            for j in np.flatnonzero(load > 0):
                rows.append(ks)
                cols.append(dst_list[j][0])
                vals.append(float(load[j]))
        # Delay-extension slices relay the source's spikes: count that hop too.
        for k, s in delay_slices.get(proj.pre, []):
            src_k = index.get((s.population, s.start, "source"), index.get((s.population, s.start, "neurons")))
            if src_k is not None:
                rows.append(src_k)
                cols.append(k)
                vals.append(DEFAULT_RATE * s.size)
    n = len(slices)
    return sp.csr_array((vals, (rows, cols)), shape=(n, n))


def _cost(target: Target, traffic: sp.csr_array, chips: list[tuple[int, int]]) -> float:
    coo = sp.coo_array(traffic)
    xy = np.asarray(chips, dtype=np.int64).reshape(-1, 2)
    dx = xy[coo.col, 0] - xy[coo.row, 0]
    dy = xy[coo.col, 1] - xy[coo.row, 1]
    if target.mesh.topology == "triangular":
        same = dx * dy > 0
        h = np.where(same, np.maximum(np.abs(dx), np.abs(dy)), np.abs(dx) + np.abs(dy))
    else:
        h = np.abs(dx) + np.abs(dy)
    return float((coo.data * h).sum())


def _sequential(n: int, per_chip: int, order: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [order[k // per_chip] for k in range(n)]


def _metis(target: Target, traffic: sp.csr_array, n_chips: int, per_chip: int, order: list[tuple[int, int]],
           seed: int) -> list[tuple[int, int]] | None:
    try:
        import pymetis
    except ImportError:
        return None
    sym = (traffic + traffic.T).tocsr()
    sym.setdiag(0)
    sym.eliminate_zeros()
    n = sym.shape[0]
    weights = np.maximum(1, np.rint(sym.data * 1000)).astype(np.int64)
    opts = pymetis.Options(seed=seed)
    _, parts = pymetis.part_graph(n_chips, xadj=sym.indptr.astype(np.int64), adjncy=sym.indices.astype(np.int64),
                                  eweights=weights, options=opts)
    parts = np.asarray(parts)
    # Enforce the per-chip core capacity: move overflow to the least loaded parts.
    members = [list(np.flatnonzero(parts == p)) for p in range(n_chips)]
    spill = []
    for m in members:
        while len(m) > per_chip:
            spill.append(m.pop())
    for k in spill:
        target_part = min(range(n_chips), key=lambda p: len(members[p]))
        if len(members[target_part]) >= per_chip:
            return None
        members[target_part].append(k)
    # Parts -> chips: greedily, heaviest-communicating part next to what is placed.
    part_traffic = np.zeros((n_chips, n_chips))
    coo = sp.coo_array(sym)
    owner = np.empty(n, dtype=np.int64)
    for p, m in enumerate(members):
        owner[m] = p
    np.add.at(part_traffic, (owner[coo.row], owner[coo.col]), coo.data)
    chip_of_part: dict[int, tuple[int, int]] = {}
    free = list(order[:max(n_chips, 1)])
    remaining = set(range(n_chips))
    first = max(remaining, key=lambda p: part_traffic[p].sum())
    chip_of_part[first] = free.pop(0)
    remaining.discard(first)
    while remaining:
        placed = list(chip_of_part)
        p = max(remaining, key=lambda q: part_traffic[q, placed].sum())
        best = min(free, key=lambda c: sum(part_traffic[p, q] * hops(target, c, chip_of_part[q]) for q in placed))
        chip_of_part[p] = best
        free.remove(best)
        remaining.discard(p)
    chips = [(0, 0)] * n
    for p, m in enumerate(members):
        for k in m:
            chips[k] = chip_of_part[p]
    return chips


def place(inet: IntNetwork, part: Partition, target: Target, rates: dict[str, np.ndarray] | None = None,
          seed: int = 0) -> Placement:
    slices = [Slice(s.population, s.start, s.stop, role=s.role) for s in part.slices]
    n = len(slices)
    per_chip = target.mesh.cores_per_chip
    n_chips = math.ceil(n / per_chip)
    if n_chips > target.mesh.n_chips:
        raise TargetError(
            f"the network needs {n} cores ({n_chips} chips of {per_chip}) but {target.name} has "
            f"{target.mesh.n_chips} chips ({target.n_cores} cores): over by {n - target.n_cores} cores. Fix: a "
            "larger machine (a target file with more chips), or a smaller network"
        )
    int_rates = None
    if rates:
        int_rates = {name: np.asarray(rates[pop.source], dtype=float).reshape(-1)[pop.index]
                     for name, pop in inet.populations.items() if pop.source in rates}
    traffic = slice_traffic(inet, slices, int_rates)
    order = chip_order(target)
    chips = _sequential(n, per_chip, order)
    method = "sequential"
    best = _cost(target, traffic, chips)
    if n_chips > 1:
        candidate = _metis(target, traffic, n_chips, per_chip, order, seed)
        if candidate is not None:
            cost = _cost(target, traffic, candidate)
            if cost < best:
                chips, best, method = candidate, cost, "metis"
    used: dict[tuple[int, int], int] = {}
    for s, chip in zip(slices, chips, strict=True):
        s.chip = chip
        s.core = used.get(chip, 0)
        used[chip] = s.core + 1
    return Placement(slices, traffic, best, method)
