"""Multicast routing, traced once: which cores and links a (source chip, key) reaches through the
chips' tables (first matching entry wins; no match takes the default route)."""

from __future__ import annotations

import numpy as np

from ....backends.spinnaker.format import (
    routing_path,
)
from ....compiler.errors import ArtifactError
from .files import LINK_NAMES, LINK_VECTORS, MASK32, N_LINKS
from .machine import Machine, Table


class Traces:
    """Cores reached and links crossed by each (source chip, key), traced through the tables once."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        self.ids: dict[int, int] = {}
        self.n = 0
        # per batch of traces: cores reached and links crossed per trace, as (counts, values)
        self.cores: list[tuple[np.ndarray, np.ndarray]] = []
        self.links: list[tuple[np.ndarray, np.ndarray]] = []
        self.link_ids: dict[int, int] = {}  # chip_id * 6 + link -> compact index
        self.link_list: list[int] = []
        self._csr: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def lookup(self, src_chip: np.ndarray, keys: np.ndarray) -> np.ndarray:
        comp = (src_chip.astype(np.int64) << 32) | keys
        uniq, inv = np.unique(comp, return_inverse=True)
        new = [int(c) for c in uniq.tolist() if c not in self.ids]
        if new:
            self._trace(np.asarray(new, np.int64))
            self._csr = None
        ids = np.fromiter((self.ids[int(c)] for c in uniq.tolist()), np.int64, uniq.size)
        return ids[inv]

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._csr is None:
            def pack(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
                ptr = np.zeros(self.n + 1, np.int64)
                if parts:
                    np.cumsum(np.concatenate([c for c, _ in parts]), out=ptr[1:])
                    return ptr, np.concatenate([v for _, v in parts])
                return ptr, np.zeros(0, np.int64)

            self._csr = (*pack(self.cores), *pack(self.links))
        return self._csr

    def _trace(self, comp: np.ndarray) -> None:
        m = self.m
        n = comp.size
        keys = comp & MASK32
        pkt = np.arange(n)
        chip = comp >> 32
        entered = np.full(n, -1, np.int64)
        reached: list[tuple[np.ndarray, np.ndarray]] = []
        crossed: list[tuple[np.ndarray, np.ndarray]] = []
        n_chips = m.chips_x * m.chips_y
        for _hop in range(4 * n_chips + 8):
            if pkt.size == 0:
                break
            route = np.zeros((pkt.size, (N_LINKS + m.cores_per_chip + 31) // 32), np.int64)
            for c in np.unique(chip).tolist():
                sel = np.flatnonzero(chip == c)
                k = keys[pkt[sel]]
                tab = m.tables.get(c)
                first = _first_match(k, tab) if tab is not None else np.full(sel.size, -1, np.int64)
                hit = first >= 0
                if hit.any():
                    route[sel[hit]] = tab.routes[first[hit]]
                miss = sel[~hit]
                if miss.size:
                    local = entered[miss] < 0
                    if local.any() or not m.default_routing:
                        i = int(miss[np.flatnonzero(local)[0]] if local.any() else miss[0])
                        where = tab.label if tab is not None else routing_path((c % m.chips_x, c // m.chips_x))
                        at = f"byte offset {tab.entries_offset}" if tab is not None else "no table file"
                        why = "from a local core" if entered[i] < 0 else "and the router has no default routing"
                        raise ArtifactError(
                            f"{where}: {at}: key {int(keys[pkt[i]]):#010x} {why} matches none of the chip's "
                            f"{0 if tab is None else tab.keys.size} entries; expected an entry whose key/mask "
                            "covers it. Fix: compile again")
                    route[miss, 0] = np.left_shift(1, (entered[miss] + 3) % N_LINKS)
            for p in range(m.cores_per_chip):
                bit = N_LINKS + p
                on = np.flatnonzero((route[:, bit // 32] >> (bit % 32)) & 1)
                if on.size:
                    reached.append((pkt[on], chip[on] * m.cores_per_chip + p))
            nxt_pkt, nxt_chip, nxt_in = [], [], []
            for link in range(N_LINKS):
                on = np.flatnonzero((route[:, 0] >> link) & 1)
                if not on.size:
                    continue
                crossed.append((pkt[on], chip[on] * N_LINKS + link))
                x = chip[on] % m.chips_x + LINK_VECTORS[link][0]
                y = chip[on] // m.chips_x + LINK_VECTORS[link][1]
                out = (x < 0) | (x >= m.chips_x) | (y < 0) | (y >= m.chips_y)
                if out.any():
                    i = int(on[np.flatnonzero(out)[0]])
                    c = int(chip[i])
                    src = (c % m.chips_x, c // m.chips_x)
                    tab = m.tables.get(c)
                    raise ArtifactError(
                        f"{tab.label if tab else routing_path(src)}: key {int(keys[pkt[i]]):#010x} leaves the "
                        f"{m.chips_x}x{m.chips_y} machine by link {LINK_NAMES[link]} of chip {src}; expected routes "
                        "that stay on the mesh. Fix: compile again")
                nxt_pkt.append(pkt[on])
                nxt_chip.append(y * m.chips_x + x)
                nxt_in.append(np.full(on.size, (link + 3) % N_LINKS))
            if not nxt_pkt:
                pkt = pkt[:0]
                break
            pkt = np.concatenate(nxt_pkt)
            chip = np.concatenate(nxt_chip)
            entered = np.concatenate(nxt_in)
        else:
            i = int(pkt[0])
            src = (int(comp[i] >> 32) % m.chips_x, int(comp[i] >> 32) // m.chips_x)
            raise ArtifactError(f"key {int(keys[i]):#010x} from chip {src} loops in the routing tables (still "
                                f"travelling after {4 * n_chips + 8} hops). Fix: compile again")
        r_pkt = np.concatenate([a for a, _ in reached]) if reached else np.zeros(0, np.int64)
        r_core = np.concatenate([b for _, b in reached]) if reached else np.zeros(0, np.int64)
        l_pkt = np.concatenate([a for a, _ in crossed]) if crossed else np.zeros(0, np.int64)
        l_id = np.concatenate([b for _, b in crossed]) if crossed else np.zeros(0, np.int64)
        for lid in np.unique(l_id).tolist():
            if lid not in self.link_ids:
                self.link_ids[lid] = len(self.link_list)
                self.link_list.append(lid)
        compact = np.fromiter((self.link_ids[int(x)] for x in l_id.tolist()), np.int64, l_id.size)
        r_order = np.argsort(r_pkt, kind="stable")
        l_order = np.argsort(l_pkt, kind="stable")
        self.cores.append((np.bincount(r_pkt, minlength=n), r_core[r_order]))
        self.links.append((np.bincount(l_pkt, minlength=n), compact[l_order]))
        for i, c in enumerate(comp.tolist()):
            self.ids[c] = self.n + i
        self.n += n


MATCH_CELLS = 1 << 22  # keys x entries compared at once (bounds memory on 16,384-entry tables)


def _first_match(keys: np.ndarray, tab: Table) -> np.ndarray:
    """Index of the first entry whose key/mask matches each key (table order, as the router), or -1."""
    out = np.full(keys.size, -1, np.int64)
    if tab.keys.size == 0:
        return out
    step = max(1, MATCH_CELLS // tab.keys.size)
    for lo in range(0, keys.size, step):
        match = (keys[lo:lo + step, None] & tab.masks[None, :]) == tab.keys[None, :]
        first = match.argmax(axis=1)
        out[lo:lo + step] = np.where(match[np.arange(first.size), first], first, -1)
    return out


def ranges(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The indices of [starts[i], starts[i] + lens[i]) for every i, concatenated, and the i of each."""
    owner = np.repeat(np.arange(starts.size), lens)
    offs = np.arange(owner.size) - np.repeat(np.cumsum(lens) - lens, lens)
    return starts[owner] + offs, owner


def gather(ptr: np.ndarray, data: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """data[ptr[i]:ptr[i+1]] for every i in ids, concatenated; and which position of ids each came from."""
    idx, owner = ranges(ptr[ids], ptr[ids + 1] - ptr[ids])
    return data[idx], owner
