"""Routing-table compression: merge same-route entries into covering key/masks (PACMAN's pair compressor).

A merge is kept only if the merged entry overlaps no entry of another route on the chip and no key
that arrives there to be default-routed, so the table stays order-free. `compress` does one table,
`compress_tables` every over-limit table at once (the same greedy in lock step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Entry


def _captures(keys: np.ndarray, masks: np.ndarray, o_keys: np.ndarray, o_masks: np.ndarray,
              chunk_elems: int = 1 << 21) -> np.ndarray:
    """For each candidate (key, mask): does it overlap any of the (o_key, o_mask) entries? (bool [n])"""
    out = np.zeros(keys.size, dtype=bool)
    if not o_keys.size:
        return out
    rows = max(1, chunk_elems // o_keys.size)
    for start in range(0, keys.size, rows):
        k, m = keys[start:start + rows, None], masks[start:start + rows, None]
        out[start:start + rows] = (((k ^ o_keys) & m & o_masks) == 0).any(axis=1)
    return out


def compress(entries: list[Entry], blockers: list[Entry], limit: int, force: bool = False) -> list[Entry]:
    """Merge entries that share a route into covering key/masks (as PACMAN's pair compressor).

    A merge is kept only if the merged entry overlaps no entry of another route and no key that
    arrives here to be default-routed, so every key that reaches the chip keeps its route and the
    table's order does not matter. Runs when the table is over `limit`, or always with `force`.
    """
    if len(entries) <= limit and not force:
        return list(entries)
    return compress_tables({None: entries}, {None: blockers}, limit, force=True)[None]


def compress_tables(tables: dict, blockers: dict, limit: int, force: bool = False) -> dict:
    """compress() of every table over `limit` (or all, with force), all chips at once; others are copied.

    Per route word (least frequent first, as PACMAN): its entries sorted by key; repeatedly, the first
    entry i (in key order) with a later entry j whose merged key/mask overlaps no entry of another route
    (nor a blocker) is merged with the first such j, the merged entry absorbs every entry of the route it
    covers, and the search starts again. The other routes' entries are the original table's, so each
    (chip, route) group compresses on its own: the groups search in lock step, one row i per step."""
    out = {chip: list(entries) for chip, entries in tables.items()}
    todo = [chip for chip, entries in tables.items() if force or len(entries) > limit]
    if not todo:
        return out
    chip_of, key, mask, group, group_word, group_rank = [], [], [], [], [], []
    o_chip, o_key, o_mask, o_group = [], [], [], []
    originals: list[Entry] = []
    n_groups = 0
    for c, chip in enumerate(todo):  # a loop over chips; the entries are read once into arrays
        entries = tables[chip]
        ids: dict[int, int] = {}
        for e in entries:
            ids.setdefault(e.route, len(ids))
        sizes = np.bincount([ids[e.route] for e in entries], minlength=len(ids)) if entries else np.zeros(0, int)
        gid = np.array([ids[e.route] for e in entries], dtype=np.int64) + n_groups
        chip_of.append(np.full(len(entries), c, np.int64))
        key.append(np.fromiter((e.key for e in entries), np.int64, len(entries)))
        mask.append(np.fromiter((e.mask for e in entries), np.int64, len(entries)))
        group.append(gid)
        group_word.extend(ids)
        # Output order of the chip's groups: least frequent route first, then first appearance.
        group_rank.append(np.argsort(np.argsort(sizes, kind="stable"), kind="stable") + c * (1 << 32))
        originals.extend(entries)
        bl = blockers.get(chip, [])
        o_chip.append(np.full(len(entries) + len(bl), c, np.int64))
        o_key.append(np.fromiter((e.key for e in [*entries, *bl]), np.int64, len(entries) + len(bl)))
        o_mask.append(np.fromiter((e.mask for e in [*entries, *bl]), np.int64, len(entries) + len(bl)))
        o_group.append(np.concatenate([gid, np.full(len(bl), -1, np.int64)]))
        n_groups += len(ids)
    cat = np.concatenate
    state = _GroupState(cat(group), cat(key), cat(mask), np.arange(len(originals), dtype=np.int64))
    others = _PaddedTables(cat(o_chip), cat(o_key), cat(o_mask), cat(o_group), len(todo))
    chip_of_group = np.zeros(n_groups, np.int64)
    chip_of_group[state.group] = cat(chip_of)[state.orig]
    _merge_groups(state, others, chip_of_group)
    rank = cat(group_rank)
    order = np.lexsort((np.arange(state.group.size), rank[state.group]))  # state is sorted by (group, key)
    result = [originals[o] if o >= 0 else Entry(k, m, group_word[g])
              for g, k, m, o in zip(state.group[order].tolist(), state.key[order].tolist(),
                                    state.mask[order].tolist(), state.orig[order].tolist(), strict=True)]
    bounds = np.searchsorted(chip_of_group[state.group[order]], np.arange(len(todo) + 1)).tolist()
    for c, chip in enumerate(todo):
        out[chip] = result[bounds[c]:bounds[c + 1]]
    return out


@dataclass
class _GroupState:
    """The entries of every (chip, route) group being compressed, sorted by (group, key), stable."""

    group: np.ndarray
    key: np.ndarray
    mask: np.ndarray
    orig: np.ndarray  # index of the original entry, -1 for a merged one

    def __post_init__(self) -> None:
        self.resort()

    def resort(self) -> None:
        order = np.lexsort((np.arange(self.group.size), self.key, self.group))
        self.group, self.key, self.mask, self.orig = (a[order] for a in (self.group, self.key, self.mask, self.orig))


class _PaddedTables:
    """Every compressed chip's original entries and blockers (group -1) as [chip, slot] arrays."""

    def __init__(self, chip: np.ndarray, key: np.ndarray, mask: np.ndarray, group: np.ndarray, n_chips: int):
        order = np.argsort(chip, kind="stable")
        chip, key, mask, group = chip[order], key[order], mask[order], group[order]
        starts = np.searchsorted(chip, np.arange(n_chips))
        slot = np.arange(chip.size) - starts[chip]
        width = int(slot.max(initial=-1)) + 1
        self.key = np.zeros((n_chips, width), np.int64)
        self.mask = np.zeros((n_chips, width), np.int64)
        self.group = np.zeros((n_chips, width), np.int64)
        self.count = np.bincount(chip, minlength=n_chips).tolist()  # slots used per chip (the rest is padding)
        self.key[chip, slot], self.mask[chip, slot], self.group[chip, slot] = key, mask, group

    def captures(self, chip: np.ndarray, group: np.ndarray, key: np.ndarray, mask: np.ndarray,
                 chunk_elems: int = 1 << 21) -> np.ndarray:
        """For each candidate (key, mask) of `group` on `chip` (candidates sorted by chip): does it overlap
        an entry of another route or a blocker on that chip? A loop over chips, each against its own row."""
        out = np.zeros(key.size, dtype=bool)
        rows = max(1, chunk_elems // max(1, self.key.shape[1]))
        bounds = np.searchsorted(chip, np.arange(self.key.shape[0] + 1)).tolist()
        for c in np.unique(chip).tolist():
            n = self.count[c]
            o_key, o_mask, o_group = self.key[c, :n], self.mask[c, :n], self.group[c, :n]
            # Most candidates overlap many entries: a strided sample of the table (64 entries) settles
            # them, and only the rest are tested against all of it (the same answer, a fraction of the work).
            strides = sorted({max(1, n // 64), 1}, reverse=True)
            for a in range(bounds[c], bounds[c + 1], rows):
                b = min(a + rows, bounds[c + 1])
                k, m, g = key[a:b, None], mask[a:b, None], group[a:b, None]
                found = np.zeros(b - a, dtype=bool)
                for stride in strides:
                    rest = np.flatnonzero(~found)
                    found[rest] = _overlaps_other(k[rest], m[rest], g[rest], o_key[::stride], o_mask[::stride],
                                                  o_group[::stride])
                out[a:b] = found
        return out


def _overlaps_other(key: np.ndarray, mask: np.ndarray, group: np.ndarray, o_key: np.ndarray, o_mask: np.ndarray,
                    o_group: np.ndarray) -> np.ndarray:
    """Candidates [n, 1] against entries [w]: does each overlap an entry of another group?"""
    hit = ((key ^ o_key) & mask & o_mask) == 0
    hit &= o_group != group
    return hit.any(axis=1)


def _merge_groups(state: _GroupState, others: _PaddedTables, chip_of_group: np.ndarray) -> None:
    """The pair compressor's greedy merges, for all groups in lock step (rounds of one merge per group)."""
    active = np.unique(state.group)
    while active.size:
        starts = np.searchsorted(state.group, active)
        sizes = np.searchsorted(state.group, active, side="right") - starts
        searching = sizes > 1
        found_key = np.zeros(active.size, np.int64)
        found_mask = np.zeros(active.size, np.int64)
        found = np.zeros(active.size, dtype=bool)
        row = 0
        while searching.any():  # row i of every group still searching: candidates (i, j > i)
            g = np.flatnonzero(searching)
            n_cand = sizes[g] - row - 1
            owner = np.repeat(g, n_cand)
            j = starts[owner] + row + 1 + (np.arange(owner.size) - np.repeat(np.cumsum(n_cand) - n_cand, n_cand))
            i = starts[owner] + row
            new_mask = state.mask[i] & state.mask[j] & ~(state.key[i] ^ state.key[j])
            new_key = state.key[i] & new_mask
            ok = ~others.captures(chip_of_group[active[owner]], active[owner], new_key, new_mask)
            ok_owner = owner[ok]
            first = np.unique(ok_owner, return_index=True)[1]  # first ok j of each group (j ascending)
            hit = ok_owner[first]
            found[hit] = True
            found_key[hit], found_mask[hit] = new_key[ok][first], new_mask[ok][first]
            searching[g] = False
            row += 1
            searching[g[(~np.isin(g, hit)) & (sizes[g] - row - 1 > 0)]] = True
        merged = np.flatnonzero(found)
        if not merged.size:
            return
        # Each merged entry absorbs every entry of its group it covers; the search restarts in those groups.
        slot_of = np.full(chip_of_group.size, -1, np.int64)
        slot_of[active[merged]] = np.arange(merged.size)
        m = slot_of[state.group]
        fk, fm = found_key[merged], found_mask[merged]
        covered = (m >= 0) & ((state.key & fm[m]) == fk[m]) & ((state.mask & fm[m]) == fm[m])
        keep = ~covered
        state.group = np.concatenate([state.group[keep], active[merged]])
        state.key = np.concatenate([state.key[keep], fk])
        state.mask = np.concatenate([state.mask[keep], fm])
        state.orig = np.concatenate([state.orig[keep], np.full(merged.size, -1, np.int64)])
        state.resort()
        active = active[merged]
