"""Place: slices -> (chip, core), minimising hop-weighted spike traffic; deterministic for a seed.

Chips fill in a snake order over the mesh. When the slices need more than one chip, METIS
(pymetis) cuts the slice traffic graph into one part per chip, and parts are assigned to chips
greedily by affinity; the result is kept only if its hop-weighted traffic beats sequential
filling (both are measured by bench/compile_scaling.py).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import TargetError
from ..ir import IntNetwork, Partition, Placement, Role, Slice
from ..targets.target import Target
from .synapse_chunks import chunks, neuron_offsets, slice_of_neuron, unique_tuples

DEFAULT_RATE = 0.05  # expected spikes per neuron per step when no rates are given


def chip_order(target: Target) -> list[tuple[int, int]]:
    """Chips in snake order, so consecutive chips are neighbours."""
    mesh = target.mesh
    out = []
    for y in range(mesh.chips_y):
        xs = range(mesh.chips_x) if y % 2 == 0 else range(mesh.chips_x - 1, -1, -1)
        out += [(x, y) for x in xs]
    return out


def slice_traffic(inet: IntNetwork, slices: list[Slice], rates: dict[str, np.ndarray] | None) -> sp.csr_array:
    """Expected packets per step from each slice to each slice that has synapses from it: a pre neuron
    sends one packet per step (at its rate) to each destination slice it has a synapse on."""
    offsets, total = neuron_offsets(inet)
    slice_of = slice_of_neuron(inet, slices, offsets, total, Role.DELAY)
    rate = np.full(total, DEFAULT_RATE)
    for name, r in (rates or {}).items():
        if name in offsets:
            rate[offsets[name]:offsets[name] + inet.populations[name].size] = r
    n = len(slices)
    srcs, dsts, vals = [], [], []
    # Slice indices ascend with neuron ids (partition's order): then a chunk's (destination, pre) pairs,
    # sorted, hold each (source, destination) pair as one run, summed in place of a second np.unique.
    ordered = bool(np.all(slice_of[1:] >= slice_of[:-1])) and (total == 0 or slice_of[0] >= 0)
    for chunk in chunks(inet, offsets):
        dst, pre = unique_tuples(slice_of[chunk.post], chunk.pre)  # (destination slice, pre neuron) pairs
        del chunk
        # Sum per (source slice, destination slice) chunk by chunk: keeping every chunk's pair list for
        # one sparse sum at the end held ~0.4 pairs per synapse (GBs at 100M synapses). Sums add in pair
        # order (equal rates give the same sums as before; different rates may differ in the last bit).
        src = slice_of[pre]
        lo_s, lo_d = int(src.min()), int(dst.min())
        span_d = int(dst.max()) - lo_d + 1
        if ordered:
            new = _run_starts(dst, src)
            starts = np.flatnonzero(new)
            key = (src[starts] - lo_s) * span_d + (dst[starts] - lo_d)
            # bincount adds each run sequentially, as before (reduceat's pairwise sums would round apart)
            sums = np.bincount(np.cumsum(new) - 1, weights=rate[pre])
            # Runs ascend by (destination, source): a stable sort by source gives np.unique's (source,
            # destination) order (16-bit sources sort by radix).
            run_src = src[starts] - lo_s
            order = np.argsort(run_src.astype(np.uint16) if int(run_src.max()) < 1 << 16 else key, kind="stable")
            used, sums = key[order], sums[order]
        else:
            key = (src - lo_s) * span_d + (dst - lo_d)
            del src, dst
            if (int(key.max()) + 1) <= max(1 << 22, 4 * key.size):
                sums = np.bincount(key, weights=rate[pre])
                used = np.flatnonzero(np.bincount(key))
                sums = sums[used]
            else:  # many slices in one chunk (many small projections): number the pairs first
                used, inverse = np.unique(key, return_inverse=True)
                sums = np.bincount(inverse, weights=rate[pre])
        srcs.append(used // span_d + lo_s)
        dsts.append(used % span_d + lo_d)
        vals.append(sums)
    # Delay-extension slices relay their source slice's spikes: count that hop too.
    index = {(s.population, s.start, s.role): k for k, s in enumerate(slices)}
    for k, s in enumerate(slices):
        if s.role == Role.DELAY:
            src_k = index.get((s.population, s.start, "source"), index.get((s.population, s.start, "neurons")))
            if src_k is not None:
                srcs.append(np.array([src_k]))
                dsts.append(np.array([k]))
                vals.append(np.array([DEFAULT_RATE * s.size]))
    if not srcs:
        return sp.csr_array((n, n))
    return sp.csr_array((np.concatenate(vals), (np.concatenate(srcs), np.concatenate(dsts))), shape=(n, n))


def _run_starts(*sorted_columns: np.ndarray) -> np.ndarray:
    """Boolean mask: where a run of equal tuples begins, in arrays already grouped by those tuples."""
    new = np.zeros(sorted_columns[0].size, dtype=bool)
    if new.size:
        new[0] = True
        for c in sorted_columns:
            new[1:] |= c[1:] != c[:-1]
    return new


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
