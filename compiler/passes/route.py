"""Route: a multicast tree per emitter, key/mask per emitter, per-chip tables (compressed by compress.py).

An *emitter* is what sends packets: a neuron or source slice (stage 0), or a delay-extension
slice re-sending its source's spikes at stage s >= 1 (s x delay_slots steps later). Each gets a
key block `key | neuron` with a mask over the high bits. Links are numbered as SpiNNaker's
route word: 0 E, 1 NE, 2 N, 3 W, 4 SW, 5 S (a 2-D mesh uses E, N, W, S), then bit 6 + p for
core p. A packet that matches no entry leaves by the link opposite to the one it came in on
(default routing), so straight-through entries are dropped where the target has it.

The whole graph is routed at once, on flat arrays (route_arrays): all emitters' destinations,
all tree hops, all table entries. Python loops run over runs of slices, emitters and chips only
to build the result's objects, never over projections, (projection, slice) pairs or entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import TargetError
from ..ir import Emitter, Entry, IntNetwork, Role, Routing, Slice
from ..targets.mesh import N_LINKS, opposite, step
from ..targets.target import Target
from .compress import compress_tables
from .over_delivery import (
    choose_collapsed,
    collapsed_keys,
    entries_by_group,
    extra_deliveries,
    over_delivered,
    union_destinations,
)
from .route_arrays import (
    LINK_X,
    LINK_Y,
    WORD_BITS,
    bit_columns,
    distinct_codes,
    first_occurrence_order,
    rank_in_segment,
    row_ids,
    segment_ids,
    segment_starts,
    slice_tiling,
    synapse_post_slices,
    tree_nodes,
    words_to_ints,
)
from .segments import paused_gc
from .synapse_chunks import neuron_offsets, slice_of_neuron, unique_tuples

KEY_BITS = 32
FULL_MASK = (1 << KEY_BITS) - 1


def _destinations(inet: IntNetwork, slices: list[Slice], target: Target
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(emitter slice, stage, destination slice) triples, distinct and sorted. A synapse of delay d needs
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
    tiling = slice_tiling(inet, slices, Role.DELAY)
    for pre, post_slice, delay in synapse_post_slices(inet, offsets, slice_of, tiling):
        stage = delay // slots
        assert not stage.size or stage.max() < 256, "delay stages are counted in 8 bits"
        src, stg, dst = unique_tuples(slice_of[pre], stage, post_slice)
        del pre, post_slice, delay, stage
        triples.append((src * 256 + stg) * n + dst)
    empty = np.zeros(0, dtype=np.int64)
    if not triples:
        return empty, empty, empty
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
    keep = segment_starts(emitter, stage, dst)
    return emitter[keep], stage[keep], dst[keep]


@dataclass
class _Emitters:
    """The emitters as arrays (index = emitter number), with their destinations as CSR."""

    slice_index: np.ndarray
    stage: np.ndarray
    key: np.ndarray
    run: np.ndarray  # run of slices (population, role) the emitter's key block belongs to
    offset: np.ndarray  # emitter's block within its run's aligned block
    delay: np.ndarray  # bool: a delay-extension emitter (its keys are not merged by run)
    dst_ptr: np.ndarray
    dst: np.ndarray


def _slice_runs(slices: list[Slice]) -> tuple[np.ndarray, np.ndarray]:
    """Run number of each slice (consecutive slices of one population and role), and each run's length."""
    names = np.array([s.population for s in slices], dtype=object)
    roles = np.array([str(s.role) for s in slices], dtype=object)
    run_of_slice = segment_ids(segment_starts(names, roles), len(slices))
    return run_of_slice, np.bincount(run_of_slice)


def _run_bases(run_length: np.ndarray, emitters_per_run: np.ndarray) -> np.ndarray:
    """First key block of each run. A run owns an aligned block of the next power of two of its length,
    padding included (a merged entry may cover the padding), as PACMAN's zoned allocation: a population's
    slices that share a route on a chip then merge into one key/mask. A scan over runs (populations)."""
    bases = np.zeros(run_length.size, dtype=np.int64)
    block = run_end = 0
    for r, (length, count) in enumerate(zip(run_length.tolist(), emitters_per_run.tolist(), strict=True)):
        align = 1 << (length - 1).bit_length()
        base = -(-max(block, run_end) // align) * align
        bases[r] = base
        run_end = base + align
        block = base + count
    return bases


def _allocate_keys(inet: IntNetwork, slices: list[Slice], target: Target, index_bits: int, max_size: int
                   ) -> _Emitters:
    """Emitters in (slice, stage) order with key blocks in slice order, so a population's slices hold
    consecutive keys within its run's aligned block."""
    src, stage, dst = _destinations(inet, slices, target)
    is_delay_slice = np.array([s.role == Role.DELAY for s in slices], dtype=bool)
    keep = ~(is_delay_slice[src] & (stage == 0)) if src.size else np.zeros(0, bool)
    src, stage, dst = src[keep], stage[keep], dst[keep]
    starts = segment_starts(src, stage)
    e_slice, e_stage = src[starts], stage[starts]
    run_of_slice, run_length = _slice_runs(slices) if slices else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    e_run = run_of_slice[e_slice]
    bases = _run_bases(run_length, np.bincount(e_run, minlength=run_length.size))
    offset = rank_in_segment(segment_starts(e_run), e_run.size)  # emitters are in slice order: runs contiguous
    block = bases[e_run] + offset
    if block.size and int(block.max()) << index_bits >= 1 << KEY_BITS:
        raise TargetError(f"{len(slices)} slices of up to {max_size} neurons need more than {KEY_BITS}-bit "
                          "keys. Fix: fewer, larger slices")
    return _Emitters(e_slice, e_stage, block << index_bits, e_run, offset, is_delay_slice[e_slice],
                     np.append(starts, dst.size), dst)


def _emitter_objects(em: _Emitters, slices: list[Slice], mask: int) -> list[Emitter]:
    dst = em.dst.tolist()
    ptr = em.dst_ptr.tolist()
    return [Emitter(k, st, key, mask, slices[k].size, dst[ptr[e]:ptr[e + 1]])
            for e, (k, st, key) in enumerate(zip(em.slice_index.tolist(), em.stage.tolist(), em.key.tolist(),
                                                 strict=True))]


@dataclass
class _Nodes:
    """Every (emitter, chip) of every multicast tree, sorted by (emitter, chip code)."""

    emitter: np.ndarray
    chip: np.ndarray  # chip code x * rows + y (sorts as the (x, y) tuple)
    entered: np.ndarray  # link the packet enters by, -1 at the source chip
    order: np.ndarray  # rank in the order the trees grow (per emitter: source, then by destination chip)
    words: np.ndarray  # route word as [n, n_words] uint64 (bit 64 * w + b in column w)
    straight: np.ndarray  # bool: default-routable (one link straight on, no core)


def _trees(em: _Emitters, slices: list[Slice], target: Target, rows: int) -> _Nodes:
    """All multicast trees at once. mesh.path is prefix-closed (the path to a chip on the path to D is
    the start of the path to D), so a tree is the union of its paths to the destination chips and
    each chip's parent is the one before it on its own path."""
    chip_x = np.array([s.chip[0] for s in slices], dtype=np.int64)
    chip_y = np.array([s.chip[1] for s in slices], dtype=np.int64)
    core = np.array([s.core for s in slices], dtype=np.int64)
    n_em = em.slice_index.size
    span = int(chip_x.max() + 1) * rows
    # Destination chips per emitter (sorted by chip: the order the trees grow in).
    dst_em = np.repeat(np.arange(n_em, dtype=np.int64), np.diff(em.dst_ptr))
    dst_code = dst_em * span + chip_x[em.dst] * rows + chip_y[em.dst]
    pair_code, pair_of_dst = distinct_codes(dst_code, n_em * span)
    pair_em = pair_code // span
    pair_x, pair_y = (pair_code % span) // rows, pair_code % rows
    src_x, src_y = chip_x[em.slice_index], chip_y[em.slice_index]
    code, first, depth, entered = tree_nodes(target.mesh.topology == "triangular", src_x, src_y, pair_em,
                                             pair_x, pair_y, rows, span)
    node_em, node_chip = code // span, code % span
    grow = np.lexsort((depth, first, node_em))
    order = np.empty(code.size, dtype=np.int64)
    order[grow] = np.arange(code.size)
    # Route words: a link bit in each parent for each child node, a core bit per destination core.
    child = np.flatnonzero(entered >= 0)
    out_link = (entered[child] + 3) % N_LINKS
    parent_code = code[child] - LINK_X[out_link] * rows - LINK_Y[out_link]
    n_words = -(-(N_LINKS + target.mesh.cores_per_chip) // WORD_BITS)
    words = bit_columns(np.searchsorted(code, parent_code), out_link, code.size, n_words)
    words[np.searchsorted(code, pair_code)] |= bit_columns(pair_of_dst, N_LINKS + core[em.dst], pair_code.size,
                                                           n_words)
    link_word = words[:, 0] & np.uint64((1 << N_LINKS) - 1)
    no_core = (words[:, 0] >> np.uint64(N_LINKS) == 0) & ~words[:, 1:].any(axis=1)
    straight_on = np.left_shift(np.uint64(1), ((entered + 3) % N_LINKS).astype(np.uint64))
    straight = (target.router.default_routing & (entered >= 0) & no_core & (link_word == straight_on))
    return _Nodes(node_em, node_chip, entered, order, words, straight)


def _chip_tuples(codes: np.ndarray, rows: int) -> list[tuple[int, int]]:
    return list(zip((codes // rows).tolist(), (codes % rows).tolist(), strict=True))


def _tree_dicts(nodes: _Nodes, n_em: int, rows: int) -> list[dict[tuple[int, int], int]]:
    """Per emitter: chip -> route word, in the order the tree grows (source first)."""
    grow = np.argsort(nodes.order)
    chips = _chip_tuples(nodes.chip[grow], rows)
    words = words_to_ints(nodes.words[grow])
    bounds = np.searchsorted(nodes.emitter[grow], np.arange(n_em + 1)).tolist()
    return [dict(zip(chips[a:b], words[a:b], strict=True)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _by_chip(sel: np.ndarray, nodes: _Nodes, rank_key: np.ndarray, keys: np.ndarray, masks: np.ndarray,
             emitter: np.ndarray, words: np.ndarray, rows: int) -> dict[tuple[int, int], list[Entry]]:
    """Entries as per-chip lists: chips in order of their first node in tree-growing order, entries within a
    chip by rank_key. `sel` picks the nodes the entries' chips come from (one chip code per entry)."""
    if not sel.size:
        return {}
    grow = np.argsort(nodes.order[sel], kind="stable")
    chip_order, chip_rank = first_occurrence_order(nodes.chip[sel][grow])
    rank = np.empty(sel.size, dtype=np.int64)
    rank[grow] = chip_rank
    order = np.lexsort((rank_key, rank))
    entries = list(map(Entry, keys[order].tolist(), masks[order].tolist(), words_to_ints(words[order]),
                       emitter[order].tolist()))
    bounds = np.searchsorted(rank[order], np.arange(chip_order.size + 1)).tolist()
    chips = _chip_tuples(chip_order, rows)
    return {c: entries[a:b] for c, a, b in zip(chips, bounds[:-1], bounds[1:], strict=True)}


def route(inet: IntNetwork, slices: list[Slice], target: Target, strict: bool = True,
          over_delivery: bool = True) -> Routing:
    """Emitters, multicast trees and per-chip tables. Where the exact tables stay over the router's limit
    after compression, source chips are collapsed (over_delivery.py) until every table fits, unless
    `over_delivery` is False. With strict=False, tables over the limit are returned as they are (for
    measuring how far over), instead of raising TargetError."""
    max_size = max((s.size for s in slices), default=1)
    index_bits = max(0, math.ceil(math.log2(max(max_size, 1))))
    mask = FULL_MASK ^ ((1 << index_bits) - 1)
    em = _allocate_keys(inet, slices, target, index_bits, max_size)
    if not em.slice_index.size:
        return Routing([], index_bits, {}, {}, {}, [])
    limit = target.router.entries_per_chip
    routing, nodes = _route_emitters(em, slices, target, index_bits, mask)
    if over_delivery and _over_limit(routing, limit).any():
        routing = _collapse_until_fit(em, routing, nodes, slices, target, index_bits, mask)
    for chip, entries in routing.compressed.items():
        if strict and len(entries) > limit:
            raise TargetError(
                f"chip {chip}: routing table has {len(entries)} entries after compression, the router holds "
                f"{limit} (over by {len(entries) - limit}). Fix: place fewer sources' routes through this chip "
                "(a larger machine) or fewer, larger slices"
                + ("" if over_delivery else "; or let route over-deliver (over_delivery=True)"))
    return routing


def _route_emitters(em: _Emitters, slices: list[Slice], target: Target, index_bits: int, mask: int
                    ) -> tuple[Routing, _Nodes]:
    """Trees, tables and compressed tables of the emitters `em` (with their keys and destinations)."""
    with paused_gc():
        emitters = _emitter_objects(em, slices, mask)
        rows = max(s.chip[1] for s in slices) + 1
        nodes = _trees(em, slices, target, rows)
        trees = _tree_dicts(nodes, len(emitters), rows)
        node_key = em.key[nodes.emitter]
        defaulted_sel = np.flatnonzero(nodes.straight)
        defaulted = _by_chip(defaulted_sel, nodes, nodes.emitter[defaulted_sel], node_key[defaulted_sel],
                             np.full(defaulted_sel.size, mask, np.int64), nodes.emitter[defaulted_sel],
                             nodes.words[defaulted_sel], rows)
        tables = _merged_tables(np.flatnonzero(~nodes.straight), nodes, em, index_bits, mask, rows)
    compressed = compress_tables(tables, defaulted, target.router.entries_per_chip)
    return Routing(emitters, index_bits, tables, compressed, defaulted, trees), nodes


def _over_limit(routing: Routing, limit: int) -> np.ndarray:
    return np.array([len(t) > limit for t in routing.compressed.values()], dtype=bool)


MAX_COLLAPSE_ROUNDS = 6  # greedy rounds per group size; then every group of that size is collapsed


def _collapse_until_fit(em: _Emitters, exact: Routing, nodes: _Nodes, slices: list[Slice], target: Target,
                        index_bits: int, mask: int) -> Routing:
    """Collapse the fewest groups of emitters (over_delivery.py) that make every table fit, and route again.

    A group is `size` emitters of one source chip (in emitter order), so they share a tree. Pairs first:
    a group's union of destinations grows faster than the entries it saves (graph D: pairs fit with 136k
    dropped deliveries, whole chips with 552k), so larger groups are tried only when pairs cannot fit."""
    limit = target.router.entries_per_chip
    chip_x = np.array([s.chip[0] for s in slices], np.int64)
    chip_y = np.array([s.chip[1] for s in slices], np.int64)
    rows = int(chip_y.max()) + 1
    code = chip_x[em.slice_index] * rows + chip_y[em.slice_index]
    by_chip = np.argsort(code, kind="stable")
    rank = np.empty(code.size, np.int64)
    rank[by_chip] = rank_in_segment(segment_starts(code[by_chip]), code.size)
    # Exact entries per (table chip, group) come from the tree nodes that are not default-routed. (A collapsed
    # group's tree is the union of its members' trees: it reaches no chip they did not.)
    table_chips = sorted(exact.compressed)
    code_row = np.full(int(nodes.chip.max()) + 1, -1, np.int64)
    code_row[[c[0] * rows + c[1] for c in table_chips]] = np.arange(len(table_chips))
    kept = np.flatnonzero(~nodes.straight & (code_row[nodes.chip] >= 0))
    # Keys: collapsed groups go above every run's aligned block (padding included).
    _, run_length = _slice_runs(slices)
    align = np.array([1 << (int(n) - 1).bit_length() for n in run_length.tolist()], np.int64)
    block = em.key >> index_bits
    free = int((block - em.offset + align[em.run]).max())
    routing = exact
    size = 2
    while size <= 2 * int(rank.max()) + 2:
        group_codes, group = np.unique(code * (code.size + 1) + rank // size, return_inverse=True)
        counts = entries_by_group(code_row[nodes.chip[kept]], group[nodes.emitter[kept]], len(table_chips),
                                  group_codes.size)
        cost = extra_deliveries(em.dst_ptr, em.dst, group, group_codes.size)
        collapsed = np.zeros(group_codes.size, bool)
        routing = exact
        for round_ in range(MAX_COLLAPSE_ROUNDS + 1):
            excess = np.array([max(0, len(routing.compressed.get(c, [])) - limit) for c in table_chips], np.int64)
            if not excess.any():
                return routing
            more = choose_collapsed(counts, excess, collapsed, cost) if round_ < MAX_COLLAPSE_ROUNDS else \
                np.ones_like(collapsed)
            if np.array_equal(more, collapsed):
                more = np.ones_like(collapsed)  # nothing saves more: collapse the rest
            if np.array_equal(more, collapsed):
                break  # every group of this size collapsed and still over: try larger groups
            collapsed = more
            routing = _route_collapsed(em, group, collapsed, block, free, slices, target, index_bits, mask)
            routing.collapsed_chips = sorted({(int(c) // (code.size + 1) // rows, int(c) // (code.size + 1) % rows)
                                              for c in group_codes[collapsed]})
        size *= 2
    return routing  # still over with every chip collapsed: route reports it


def _route_collapsed(em: _Emitters, group: np.ndarray, collapsed: np.ndarray, block: np.ndarray, free: int,
                     slices: list[Slice], target: Target, index_bits: int, mask: int) -> Routing:
    """Route with the `collapsed` groups' emitters sharing one tree (their union of destinations) and one key
    block each. Emitter.destinations stay the exact ones; Emitter.over_delivered gets the rest."""
    new_block, run, offset, member = collapsed_keys(block, em.run, group, collapsed, free)
    if int(new_block.max()) << index_bits >= 1 << KEY_BITS:
        raise TargetError(f"over-delivery needs key blocks beyond {KEY_BITS}-bit keys. Fix: fewer, larger slices")
    wide_ptr, wide = union_destinations(em.dst_ptr, em.dst, group, collapsed)
    wide_em = _Emitters(em.slice_index, em.stage, new_block << index_bits, run, np.where(member, offset, em.offset),
                        em.delay & ~member, wide_ptr, wide)
    routing, _ = _route_emitters(wide_em, slices, target, index_bits, mask)
    extra = over_delivered(em.dst_ptr, em.dst, wide_ptr, wide)
    own, ptr = em.dst.tolist(), em.dst_ptr.tolist()
    for k, e in enumerate(routing.emitters):  # per emitter
        e.destinations = own[ptr[k]:ptr[k + 1]]
        e.over_delivered = extra[k]
    return routing


def _merged_tables(sel: np.ndarray, nodes: _Nodes, em: _Emitters, index_bits: int, mask: int, rows: int
                   ) -> dict[tuple[int, int], list[Entry]]:
    """One entry per aligned block of a run's emitters that share a route on a chip (PACMAN's merged table
    generator). A block holds only its run's keys (and unused padding), and each emitter has one entry per
    chip, so a merged entry captures no other route: the table stays order-free.

    A block of 2^L emitter offsets is *full* when every offset of it below the run's size has an entry
    with the route; the recursion of the generator keeps the largest full block holding each entry, so
    each entry's level is the highest L at which its block is full (fullness only grows toward leaves).
    Per chip: delay emitters' entries first (emitter order), then the blocks of each (run, route) group in
    order of the group's first emitter, ascending."""
    e = nodes.emitter[sel]
    delay = em.delay[e]
    run, offset = em.run[e], em.offset[e]
    route_id = row_ids(nodes.words[sel])
    chip = nodes.chip[sel]
    run_size = np.bincount(em.run[~em.delay], minlength=int(em.run.max()) + 1)
    # Sort run entries by (chip, run, route, offset): groups contiguous, offsets ascending.
    order = np.lexsort((offset, route_id, run, chip, delay))
    order = order[~delay[order]]
    g_chip, g_run, g_route, g_off = chip[order], run[order], route_id[order], offset[order]
    group_starts = segment_starts(g_chip, g_run, g_route)
    group = segment_ids(group_starts, order.size)
    size = run_size[g_run]
    padded_size = np.array([1 << (n - 1).bit_length() if n else 0 for n in run_size.tolist()], dtype=np.int64)
    top = np.zeros(order.size, dtype=np.int64)  # each entry's block level
    level = 1
    while order.size and (1 << level) < 2 * int(size.max()):
        blk = g_off >> level
        starts = segment_starts(group, blk)
        count = np.diff(np.append(starts, order.size))
        real = np.minimum(size[starts], (blk[starts] + 1) << level) - (blk[starts] << level)
        within = (1 << level) <= padded_size[g_run[starts]]
        full = within & (count == real)
        top[np.repeat(full, count)] = level
        level += 1
    block_start = (g_off >> top) << top
    out_starts = segment_starts(group, block_start)
    out_level = top[out_starts]
    keep = order[out_starts]
    merged = out_level > 0
    base = (em.key[e[keep]] >> index_bits) - g_off[out_starts] + block_start[out_starts]
    keys = np.where(merged, base << index_bits, em.key[e[keep]])
    masks = np.where(merged, FULL_MASK ^ ((1 << (out_level + index_bits)) - 1), mask)
    emitter = np.where(merged, -1, e[keep])
    group_first = np.minimum.reduceat(e[order], group_starts) if order.size else np.zeros(0, np.int64)
    first_of_out = group_first[group[out_starts]]
    # Delay entries (kind 0, by emitter) then run blocks (kind 1, by group's first emitter, block start).
    d_idx = np.flatnonzero(delay)
    all_idx = np.concatenate([d_idx, keep])
    kind = np.concatenate([np.zeros(d_idx.size, np.int64), np.ones(keep.size, np.int64)])
    primary = np.concatenate([e[d_idx], first_of_out])
    secondary = np.concatenate([np.zeros(d_idx.size, np.int64), block_start[out_starts]])
    rank_key = (kind * (int(e.max()) + 1) + primary) * (int(secondary.max(initial=0)) + 1) + secondary
    return _by_chip(sel[all_idx], nodes, rank_key, np.concatenate([em.key[e[d_idx]], keys]),
                    np.concatenate([np.full(d_idx.size, mask, np.int64), masks]),
                    np.concatenate([e[d_idx], emitter]), nodes.words[sel[all_idx]], rows)


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
