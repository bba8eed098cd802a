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
    h = _hop_matrix(target, xy[coo.col, 0] - xy[coo.row, 0], xy[coo.col, 1] - xy[coo.row, 1])
    return float((coo.data * h).sum())


def _sequential(n: int, per_chip: int, order: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [order[k // per_chip] for k in range(n)]


def _slice_groups(slices: list[Slice], per_chip: int) -> list[list[int]]:
    """Consecutive slices of one population (and role), in runs of at most half a chip: kept on one
    chip, they share every multicast route, so their routing entries merge (as PACMAN keeps an
    application vertex's machine vertices together)."""
    cap = max(1, per_chip // 2)
    groups: list[list[int]] = []
    for k, s in enumerate(slices):
        prev = slices[k - 1] if k else None
        if (prev is not None and prev.population == s.population and prev.role == s.role
                and len(groups[-1]) < cap):
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def _pack(parts: np.ndarray, sizes: np.ndarray, n_parts: int, per_chip: int) -> list[list[int]] | None:
    """Groups per part with no part over `per_chip` cores: overflow moves to the least loaded part."""
    members: list[list[int]] = [[] for _ in range(n_parts)]
    load = np.zeros(n_parts, dtype=np.int64)
    for g in np.argsort(-sizes, kind="stable"):  # big groups first
        p = int(parts[g])
        if load[p] + sizes[g] > per_chip:
            p = int(np.argmin(load))
            if load[p] + sizes[g] > per_chip:
                return None
        members[p].append(int(g))
        load[p] += sizes[g]
    return members


def _metis(target: Target, traffic: sp.csr_array, slices: list[Slice], per_chip: int,
           order: list[tuple[int, int]], seed: int) -> list[tuple[int, int]] | None:
    try:
        import pymetis
    except ImportError:
        return None
    n = len(slices)
    groups = _slice_groups(slices, per_chip)
    group_of = np.empty(n, dtype=np.int64)
    for g, m in enumerate(groups):
        group_of[m] = g
    sizes = np.asarray([len(m) for m in groups], dtype=np.int64)
    member = sp.csr_array((np.ones(n), (np.arange(n), group_of)), shape=(n, len(groups)))
    gt = (member.T @ traffic @ member).tocsr()
    sym = (gt + gt.T).tocsr()
    sym.setdiag(0)
    sym.eliminate_zeros()
    weights = np.maximum(1, np.rint(sym.data * 1000)).astype(np.int64)
    n_parts = math.ceil(n / per_chip)
    packed = None
    while packed is None and n_parts <= min(len(order), len(groups)):
        if n_parts == 1:
            parts = np.zeros(len(groups), dtype=np.int64)
        else:
            _, parts_list = pymetis.part_graph(n_parts, xadj=sym.indptr.astype(np.int64),
                                               adjncy=sym.indices.astype(np.int64), vweights=sizes,
                                               eweights=weights, options=pymetis.Options(seed=seed))
            parts = np.asarray(parts_list)
        packed = _pack(parts, sizes, n_parts, per_chip)
        if packed is None:
            n_parts += max(1, n_parts // 20)  # bin packing left cores idle: one chip more per 20
    if packed is None:
        return None
    # Parts -> chips: greedily, heaviest-communicating part next to what is placed.
    owner = np.empty(len(groups), dtype=np.int64)
    for p, m in enumerate(packed):
        owner[m] = p
    part_traffic = np.zeros((n_parts, n_parts))
    coo = sp.coo_array(sym)
    np.add.at(part_traffic, (owner[coo.row], owner[coo.col]), coo.data)
    xy = np.asarray(order, dtype=np.int64)
    chip_of_part = np.full(n_parts, -1, dtype=np.int64)  # index into order
    free = np.ones(len(order), dtype=bool)
    first = int(np.argmax(part_traffic.sum(axis=1)))
    chip_of_part[first] = 0
    free[0] = False
    placed = [first]
    for _ in range(n_parts - 1):
        remaining = np.flatnonzero(chip_of_part < 0)
        p = int(remaining[np.argmax(part_traffic[np.ix_(remaining, placed)].sum(axis=1))])
        w = part_traffic[p, placed]
        cand = np.flatnonzero(free)
        dx = xy[cand, 0][:, None] - xy[chip_of_part[placed], 0][None, :]
        dy = xy[cand, 1][:, None] - xy[chip_of_part[placed], 1][None, :]
        h = _hop_matrix(target, dx, dy)
        best = int(cand[np.argmin(h @ w)])
        chip_of_part[p] = best
        free[best] = False
        placed.append(p)
    chips = [(0, 0)] * n
    for p, m in enumerate(packed):
        chip = order[int(chip_of_part[p])]
        for g in m:
            for k in groups[g]:
                chips[k] = chip
    return chips


def _hop_matrix(target: Target, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    if target.mesh.topology == "triangular":
        return np.where(dx * dy > 0, np.maximum(np.abs(dx), np.abs(dy)), np.abs(dx) + np.abs(dy))
    return np.abs(dx) + np.abs(dy)


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
        candidate = _metis(target, traffic, slices, per_chip, order, seed)
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
