"""Route: a multicast tree per emitter, key/mask per emitter, per-chip tables, compression.

An *emitter* is what sends packets: a neuron or source slice (stage 0), or a delay-extension
slice re-sending its source's spikes at stage s >= 1 (s x delay_slots steps later). Each gets a
key block `key | neuron` with a mask over the high bits. Links are numbered as SpiNNaker's
route word: 0 E, 1 NE, 2 N, 3 W, 4 SW, 5 S (a 2-D mesh uses E, N, W, S), then bit 6 + p for
core p. A packet that matches no entry leaves by the link opposite to the one it came in on
(default routing), so straight-through entries are dropped where the target has it.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import TargetError
from ..ir import Emitter, Entry, IntNetwork, Role, Routing, Slice
from ..targets.mesh import N_LINKS, opposite, path, step
from ..targets.target import Target
from .synapse_chunks import chunks, neuron_offsets, slice_of_neuron, unique_tuples

KEY_BITS = 32


def _destinations(inet: IntNetwork, slices: list[Slice], target: Target) -> dict[tuple[int, int], list[int]]:
    """(emitter slice index, stage) -> destination slice indices (sorted). A synapse of delay d needs
    stage d // slots; stage 0 is sent by the source slice, stage s > 0 by its delay-extension slice."""
    slots = target.core.delay_slots
    n = len(slices)
    offsets, total = neuron_offsets(inet)
    slice_of = slice_of_neuron(inet, slices, offsets, total, Role.DELAY)
    delay_slice_of = np.full(n, -1, dtype=np.int64)
    start_of = {(s.population, s.start): k for k, s in enumerate(slices) if s.role != Role.DELAY}
    for k, s in enumerate(slices):
        if s.role == Role.DELAY:
            delay_slice_of[start_of[(s.population, s.start)]] = k
    triples = []  # (emitter slice, stage, destination slice) as one int64
    for chunk in chunks(inet, offsets):
        stage = chunk.delay // slots
        assert not stage.size or stage.max() < 256, "delay stages are counted in 8 bits"
        src, stg, dst = unique_tuples(slice_of[chunk.pre], stage, slice_of[chunk.post])
        del chunk, stage
        triples.append((src * 256 + stg) * n + dst)
    if not triples:
        return {}
    packed = np.unique(np.concatenate(triples))
    dst = packed % n
    src_stage = packed // n
    src, stage = src_stage // 256, src_stage % 256
    delayed = stage > 0
    emitter = np.where(delayed, delay_slice_of[src], src)
    # A delayed synapse also needs its source slice to feed the delay-extension slice (stage 0).
    feeds = np.unique(src[delayed] * n + emitter[delayed])
    emitter = np.concatenate([emitter, feeds // n])
    stage = np.concatenate([stage, np.zeros(feeds.size, dtype=np.int64)])
    dst = np.concatenate([dst, feeds % n])
    order = np.lexsort((dst, stage, emitter))
    emitter, stage, dst = emitter[order], stage[order], dst[order]
    keep = np.ones(dst.size, dtype=bool)
    keep[1:] = (emitter[1:] != emitter[:-1]) | (stage[1:] != stage[:-1]) | (dst[1:] != dst[:-1])
    emitter, stage, dst = emitter[keep], stage[keep], dst[keep]
    bounds = np.flatnonzero(np.r_[True, (emitter[1:] != emitter[:-1]) | (stage[1:] != stage[:-1]), True])
    dst_list = dst.tolist()
    return {(int(emitter[a]), int(stage[a])): dst_list[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)}


def _tree(target: Target, source: tuple[int, int], cores: dict[tuple[int, int], list[int]]
          ) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """Route word per chip on the multicast tree, and the link each chip is entered by (-1: source)."""
    route: dict[tuple[int, int], int] = {source: 0}
    entered: dict[tuple[int, int], int] = {source: -1}
    for chip in sorted(cores):
        # Walk the path; grow the tree only after the last chip it already holds, so every chip
        # is entered exactly once (paths of a triangular mesh can otherwise reconverge).
        chips = [source]
        links = path(target, source, chip)
        for link in links:
            chips.append(step(chips[-1], link))
        last = max(k for k, c in enumerate(chips) if c in route)
        for k in range(last, len(links)):
            here, link, nxt = chips[k], links[k], chips[k + 1]
            route[here] |= 1 << link
            route[nxt] = 0
            entered[nxt] = opposite(link)
        for core in cores[chip]:
            route[chip] |= 1 << (N_LINKS + core)
    return route, entered


def route(inet: IntNetwork, slices: list[Slice], target: Target, strict: bool = True) -> Routing:
    """Emitters, multicast trees and per-chip tables. With strict=False, tables over the router's
    limit are returned as they are (for measuring how far over), instead of raising TargetError."""
    max_size = max((s.size for s in slices), default=1)
    index_bits = max(0, math.ceil(math.log2(max(max_size, 1))))
    dests = _destinations(inet, slices, target)
    stages_of: dict[int, int] = {}
    for (k, stage) in dests:
        stages_of[k] = max(stages_of.get(k, 0), stage)
    emitters: list[Emitter] = []
    mask = ((1 << KEY_BITS) - 1) ^ ((1 << index_bits) - 1)
    block = 0
    # Key blocks in slice order, so a population's slices hold consecutive keys, and each population's
    # run starts at a multiple of the next power of two of its length (as PACMAN's zoned allocation):
    # entries of a population's slices that share a route on a chip then merge into one key/mask.
    run_length: dict[int, int] = {}
    for k, s in enumerate(slices):
        if k > 0 and s.population == slices[k - 1].population and s.role == slices[k - 1].role:
            run_length[k] = 0
            continue
        n = 1
        while k + n < len(slices) and slices[k + n].population == s.population and slices[k + n].role == s.role:
            n += 1
        run_length[k] = n
    run_of_emitter: list[tuple[int, int]] = []  # (first block of the slice's run, offset), (-1, 0) for delays
    run_base = run_end = 0
    for k, s in enumerate(slices):
        if run_length[k] > 0:
            # A run owns its whole aligned block, padding included: a merged entry may cover the padding.
            align = 1 << (run_length[k] - 1).bit_length()
            block = -(-max(block, run_end) // align) * align
            run_base, run_end = block, block + align
        first = 1 if s.role == Role.DELAY else 0
        for stage in range(first, stages_of.get(k, 0) + 1):
            if (k, stage) not in dests:
                continue
            key = block << index_bits
            if key >= (1 << KEY_BITS):
                raise TargetError(f"{len(slices)} slices of up to {max_size} neurons need more than {KEY_BITS}-bit "
                                  "keys. Fix: fewer, larger slices")
            emitters.append(Emitter(k, stage, key, mask, s.size, sorted(dests[(k, stage)])))
            run_of_emitter.append((run_base, block - run_base) if s.role != Role.DELAY else (-1, 0))
            block += 1
    tables: dict[tuple[int, int], list[Entry]] = {}
    defaulted: dict[tuple[int, int], list[Entry]] = {}
    trees = []
    for e_idx, em in enumerate(emitters):
        src = slices[em.slice_index]
        cores: dict[tuple[int, int], list[int]] = {}
        for d in em.destinations:
            cores.setdefault(slices[d].chip, []).append(slices[d].core)
        tree, entered = _tree(target, src.chip, cores)
        trees.append(tree)
        for chip, word in tree.items():
            entry = Entry(em.key, em.mask, word, e_idx)
            links = [b for b in range(N_LINKS) if word >> b & 1]
            straight = (target.router.default_routing and entered[chip] >= 0 and word >> N_LINKS == 0
                        and links == [opposite(entered[chip])])
            (defaulted if straight else tables).setdefault(chip, []).append(entry)
    run_size: dict[int, int] = {}
    for base, offset in run_of_emitter:
        if base >= 0:
            run_size[base] = max(run_size.get(base, 0), offset + 1)
    tables = {chip: _merge_runs(entries, run_of_emitter, run_size, index_bits) for chip, entries in tables.items()}
    compressed = {chip: compress(entries, defaulted.get(chip, []), target.router.entries_per_chip)
                  for chip, entries in tables.items()}
    for chip, entries in compressed.items():
        if strict and len(entries) > target.router.entries_per_chip:
            raise TargetError(
                f"chip {chip}: routing table has {len(entries)} entries after compression, the router holds "
                f"{target.router.entries_per_chip} (over by {len(entries) - target.router.entries_per_chip}). "
                "Fix: place fewer sources' routes through this chip (a larger machine) or fewer, larger slices"
            )
    return Routing(emitters, index_bits, tables, compressed, defaulted, trees)


def _merge_runs(entries: list[Entry], run_of_emitter: list[tuple[int, int]], run_size: dict[int, int],
                index_bits: int) -> list[Entry]:
    """One entry per aligned block of a population's slices that share a route on this chip (PACMAN's
    merged table generator). A block holds only its run's keys (and unused padding), and each emitter
    has one entry per chip, so a merged entry captures no other route: the table stays order-free."""
    groups: dict[tuple[int, int], dict[int, Entry]] = {}
    out: list[Entry] = []
    for e in entries:
        base, offset = run_of_emitter[e.emitter]
        if base < 0:
            out.append(e)
        else:
            groups.setdefault((base, e.route), {})[offset] = e
    full = (1 << KEY_BITS) - 1

    def cover(base: int, route_word: int, present: dict[int, Entry], size_of_run: int, off: int, size: int) -> None:
        real = range(off, min(off + size, size_of_run))
        if not real:
            return  # only padding: no packet carries these keys
        if all(o in present for o in real):
            out.append(present[off] if size == 1 else
                       Entry((base + off) << index_bits, full ^ ((size << index_bits) - 1), route_word))
            return
        if size > 1:
            cover(base, route_word, present, size_of_run, off, size // 2)
            cover(base, route_word, present, size_of_run, off + size // 2, size // 2)

    for (base, route_word), present in groups.items():
        n = run_size[base]
        cover(base, route_word, present, n, 0, 1 << (n - 1).bit_length())
    return out


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
    by_route: dict[int, list[Entry]] = {}
    for e in entries:
        by_route.setdefault(e.route, []).append(e)
    # Least frequent routes first (PACMAN's order): the others stay as blockers.
    out: list[Entry] = []
    every = entries + blockers
    all_keys = np.fromiter((e.key for e in every), dtype=np.int64, count=len(every))
    all_masks = np.fromiter((e.mask for e in every), dtype=np.int64, count=len(every))
    # Route words can be wider than 64 bits (a link bit per link, a bit per core): number them. A blocker
    # (a default-routed key) blocks every route (-1); an entry blocks the routes other than its own.
    route_id = {word: k for k, word in enumerate(by_route)}
    all_routes = np.array([route_id[e.route] for e in entries] + [-1] * len(blockers), dtype=np.int64)
    for word in sorted(by_route, key=lambda w: len(by_route[w])):
        other = all_routes != route_id[word]
        o_keys, o_masks = all_keys[other], all_masks[other]
        group = sorted(by_route[word], key=lambda e: e.key)
        merged = True
        while merged and len(group) > 1:
            merged = False
            keys = np.array([e.key for e in group], dtype=np.int64)
            masks = np.array([e.mask for e in group], dtype=np.int64)
            for i in range(len(group) - 1):
                # Merge candidates of entry i with every later entry, checked against the other routes at once.
                new_masks = masks[i] & masks[i + 1:] & ~(keys[i] ^ keys[i + 1:])
                new_keys = keys[i] & new_masks
                ok = np.flatnonzero(~_captures(new_keys, new_masks, o_keys, o_masks))
                if not ok.size:
                    continue
                new_key, new_mask = int(new_keys[ok[0]]), int(new_masks[ok[0]])
                # Absorb every entry of the group the merged one covers.
                group = [e for e in group if not ((e.key & new_mask) == new_key and (e.mask & new_mask) == new_mask)]
                group.append(Entry(new_key, new_mask, word))
                group.sort(key=lambda e: e.key)
                merged = True
                break
        out.extend(group)
    return out


def lookup(table: list[Entry], key: int) -> int | None:
    for e in table:
        if e.matches(key):
            return e.route
    return None


def deliver(routing: Routing, target: Target, source: tuple[int, int], key: int, compressed: bool = True,
            max_hops: int = 10_000) -> tuple[set[tuple[tuple[int, int], int]], dict[tuple[tuple[int, int], int], int]]:
    """Follow one packet hop by hop through the tables: (cores reached, packets per (chip, link))."""
    tables = routing.compressed if compressed else routing.tables
    reached: set[tuple[tuple[int, int], int]] = set()
    link_use: dict[tuple[tuple[int, int], int], int] = {}
    frontier = [(source, -1)]
    hops = 0
    while frontier:
        chip, entered = frontier.pop()
        hops += 1
        if hops > max_hops:
            raise TargetError(f"key {key:#x} loops in the routing tables (more than {max_hops} hops)")
        word = lookup(tables.get(chip, []), key)
        if word is None:
            if entered < 0:
                raise TargetError(f"chip {chip}: no route for key {key:#x} from a local core")
            word = 1 << opposite(entered)
        for link in range(N_LINKS):
            if word >> link & 1:
                link_use[(chip, link)] = link_use.get((chip, link), 0) + 1
                nxt = step(chip, link)
                frontier.append((nxt, opposite(link)))
        core_bits = word >> N_LINKS
        core = 0
        while core_bits:
            if core_bits & 1:
                reached.add((chip, core))
            core_bits >>= 1
            core += 1
    return reached, link_use
