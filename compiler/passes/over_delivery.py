"""Over-delivery: make routing tables fit by sending a few emitters where any of them is needed.

When the exact multicast trees leave a chip's table over the router's limit, route compresses what
it can and then *collapses* groups of emitters, the fewest that make every table fit:

- a group is a few emitters of one source chip (pairs first, then 4, 8, ...), routed over one tree to
  the union of their destination cores; a core outside an emitter's own destinations receives its
  packets and drops them (its master population table has no entry for the key: sPyNNaker counts
  this as a "ghost" search);
- their keys share one aligned block, so each chip the tree reaches needs one entry for the group.

Why this means (issue 14, part 2): a chip of graph D is reached by nearly every one of 1,600 emitters
with routes that differ, so neither key merging nor PACMAN's pair compression brings it under 1,023
entries (PACMAN leaves 95 chips over). Emitters of one source chip share a tree once their destinations
are shared, so a collapsed group costs each chip one entry. The price is packets: more links carry each
spike and some cores drop them; the placement simulator and the SpiNNaker executor count both. Groups
are picked by entries saved on the chips that are over per packet they would over-deliver (a weighted
greedy set cover), and small groups first, since a group's union of destinations grows faster than the
entries it saves: on D, pairs fit with 136k dropped deliveries (against 256k exact ones) and 4 % more
link hops, whole chips with 552k.
"""

from __future__ import annotations

import numpy as np


def entries_by_group(entry_chip: np.ndarray, entry_group: np.ndarray, n_chips: int, n_groups: int) -> np.ndarray:
    """[n_chips, n_groups] count of exact (uncompressed) table entries that each source-chip group has on each chip."""
    counts = np.zeros(n_chips * n_groups, np.int64)
    np.add.at(counts, entry_chip * n_groups + entry_group, 1)
    return counts.reshape(n_chips, n_groups)


def choose_collapsed(counts: np.ndarray, excess: np.ndarray, already: np.ndarray,
                     cost: np.ndarray | None = None) -> np.ndarray:
    """Which source-chip groups to collapse so every chip sheds its `excess` entries (greedy set cover).

    Collapsing group g turns its `counts[c, g]` entries on chip c into one: it saves counts - 1 there.
    Groups are picked by the saving they still bring to chips that are over per unit of `cost` (the
    packets collapsing them would over-deliver; 1 each if None), best first: the weighted greedy set
    cover. `already` (bool per group) marks groups collapsed before; the result includes them.
    """
    chosen = already.copy()
    need = excess.astype(np.int64).copy()
    saving = np.maximum(counts - 1, 0)
    saving[:, chosen] = 0
    while (need > 0).any():
        gain = np.minimum(saving, np.maximum(need, 0)[:, None]).sum(axis=0)
        best = int(np.argmax(gain if cost is None else gain / np.maximum(cost, 1)))
        if gain[best] == 0:
            break  # nothing left saves anything on the chips that are over
        chosen[best] = True
        need -= saving[:, best]
        saving[:, best] = 0
    return chosen


def extra_deliveries(dest_ptr: np.ndarray, dest: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group: destinations its emitters would gain if it were collapsed (each a dropped packet per spike)."""
    sizes = np.diff(dest_ptr)
    owner = np.repeat(np.arange(sizes.size), sizes)
    n_dest = int(dest.max()) + 1 if dest.size else 1
    union = np.bincount(np.unique(group[owner].astype(np.int64) * n_dest + dest) // n_dest, minlength=n_groups)
    members = np.bincount(group, minlength=n_groups)
    return union * members - np.bincount(group, weights=sizes, minlength=n_groups).astype(np.int64)


def union_destinations(dest_ptr: np.ndarray, dest: np.ndarray, group: np.ndarray, collapsed: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Destinations per emitter after collapsing (CSR: ptr [n_emitters + 1], sorted slice indices).

    An emitter of a collapsed group gets the union of its group's destinations; the others keep theirs.
    """
    n = dest_ptr.size - 1
    owner = np.repeat(np.arange(n), np.diff(dest_ptr))
    g = group[owner]
    wide = collapsed[g]
    # union per group: unique (group, destination) pairs of the collapsed emitters
    n_dest = int(dest.max()) + 1 if dest.size else 1
    pairs = np.unique(g[wide].astype(np.int64) * n_dest + dest[wide])
    u_group, u_dest = pairs // n_dest, pairs % n_dest
    u_ptr = np.searchsorted(u_group, np.arange(group.max(initial=-1) + 2))
    # emitters of collapsed groups take their group's union; the rest keep their own list
    members = np.flatnonzero(collapsed[group])
    sizes = np.diff(dest_ptr).copy()
    sizes[members] = u_ptr[group[members] + 1] - u_ptr[group[members]]
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    out = np.empty(int(ptr[-1]), dest.dtype)
    keep = ~collapsed[group]
    kept_src = np.repeat(keep, np.diff(dest_ptr))
    kept_dst = np.repeat(keep, sizes)
    out[kept_dst] = dest[kept_src]
    if members.size:
        starts = u_ptr[group[members]]
        lengths = sizes[members]
        take = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        out[~kept_dst] = u_dest[take]
    return ptr, out


def collapsed_keys(block: np.ndarray, run: np.ndarray, group: np.ndarray, collapsed: np.ndarray, free: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Key blocks for the emitters once `collapsed` groups share one aligned key block each.

    An emitter of a collapsed group gets block base + its rank in the group, where each group's base is
    aligned to the next power of two of its size and lies at or above `free` (the first block above every
    run's aligned block, padding included), so one key/mask covers the group and nothing else. Returns
    (block, run, offset within run, member of a collapsed group) per emitter; a collapsed group is a run
    of its own (numbered after the existing runs).
    """
    member = collapsed[group]
    block, run = block.copy(), run.copy()
    offset = np.zeros(block.size, np.int64)
    if not member.any():
        return block, run, offset, member
    idx = np.flatnonzero(member)  # emitter order
    g = group[idx]
    order = np.argsort(g, kind="stable")
    idx, g = idx[order], g[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, g.size])
    rank = np.arange(g.size) - np.repeat(starts, sizes)
    aligned = np.array([1 << (int(n) - 1).bit_length() for n in sizes], np.int64)  # one per collapsed group
    base = np.zeros(sizes.size, np.int64)
    for k, size in enumerate(aligned.tolist()):  # a scan over groups (source chips)
        base[k] = -(-free // size) * size
        free = int(base[k]) + size
    block[idx] = np.repeat(base, sizes) + rank
    run[idx] = int(run.max()) + 1 + np.repeat(np.arange(sizes.size), sizes)
    offset[idx] = rank
    return block, run, offset, member


def over_delivered(dest_ptr: np.ndarray, dest: np.ndarray, wide_ptr: np.ndarray, wide: np.ndarray
                   ) -> list[list[int]]:
    """Per emitter: the slices its widened destinations add to its own (which receive and drop its packets)."""
    out: list[list[int]] = []
    own_list, wide_list = dest.tolist(), wide.tolist()
    for a, b, c, d in zip(dest_ptr[:-1].tolist(), dest_ptr[1:].tolist(), wide_ptr[:-1].tolist(),
                          wide_ptr[1:].tolist(), strict=True):  # per emitter, not per synapse
        out.append(sorted(set(wide_list[c:d]) - set(own_list[a:b])) if d - c != b - a else [])
    return out
