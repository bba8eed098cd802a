"""Route's whole-graph array code against the hop-by-hop definitions it replaces."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from neurocc.compiler.ir import Entry, make_projection
from neurocc.compiler.passes import route_arrays, synapse_chunks
from neurocc.compiler.passes.compress import compress, compress_tables
from neurocc.compiler.passes.route import lookup, route
from neurocc.compiler.pipeline import compile_network
from neurocc.compiler.targets.mesh import N_LINKS, opposite, path, step
from neurocc.compiler.targets.target import Mesh, Router, load_target
from neurocc.workloads import random_network


def _mesh(topology: str) -> SimpleNamespace:
    return SimpleNamespace(mesh=SimpleNamespace(topology=topology))


@pytest.mark.parametrize("topology", ["mesh2d", "triangular"])
def test_path_legs_are_mesh_path(topology) -> None:
    d = np.arange(-9, 10)
    dx, dy = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    n1, l1, n2, l2 = route_arrays.path_legs(topology == "triangular", dx, dy)
    for k in range(dx.size):
        legs = [int(l1[k])] * int(n1[k]) + [int(l2[k])] * int(n2[k])
        assert legs == path(_mesh(topology), (0, 0), (int(dx[k]), int(dy[k]))), (dx[k], dy[k])


def _tree_by_hops(topology: str, source: tuple[int, int], chips: list[tuple[int, int]]):
    """The former per-emitter loop: walk each path, grow the tree after the last chip it holds."""
    route: dict[tuple[int, int], int] = {source: 0}
    entered = {source: -1}
    for chip in sorted(chips):
        links = path(_mesh(topology), source, chip)
        walk = [source]
        for link in links:
            walk.append(step(walk[-1], link))
        last = max(k for k, c in enumerate(walk) if c in route)
        for k in range(last, len(links)):
            route[walk[k]] |= 1 << links[k]
            route[walk[k + 1]] = 0
            entered[walk[k + 1]] = opposite(links[k])
    return route, entered


@pytest.mark.parametrize("topology", ["mesh2d", "triangular"])
def test_tree_nodes_are_the_hop_by_hop_trees(topology) -> None:
    rng = np.random.default_rng(3)
    w, h = 9, 7
    n_em = 40
    src = rng.integers(0, [w, h], size=(n_em, 2))
    dests = [sorted({tuple(c) for c in rng.integers(0, [w, h], size=(rng.integers(1, 12), 2)).tolist()})
             for _ in range(n_em)]
    pair_em = np.repeat(np.arange(n_em), [len(d) for d in dests])
    pair_xy = np.array([c for d in dests for c in d])
    span = w * h
    code, first, depth, entered = route_arrays.tree_nodes(topology == "triangular", src[:, 0], src[:, 1], pair_em,
                                                          pair_xy[:, 0], pair_xy[:, 1], h, span)
    assert (np.diff(code) > 0).all()
    for e in range(n_em):
        ref, ref_entered = _tree_by_hops(topology, tuple(src[e].tolist()), dests[e])
        mine = (code // span) == e
        chips = [((c % span) // h, c % h) for c in code[mine].tolist()]
        assert set(chips) == set(ref)
        assert dict(zip(chips, entered[mine].tolist(), strict=True)) == ref_entered
        # The order the tree grows in: by first destination (pair), then depth.
        grow = np.lexsort((depth[mine], first[mine]))
        assert [chips[k] for k in grow] == list(ref)


@pytest.mark.parametrize("neurons", [32, 128])  # populations of 100 neurons: 4 slices each, or 1
def test_synapse_blocks_are_the_per_projection_synapses(monkeypatch, neurons) -> None:
    net = random_network(300, 20, n_populations=3, n_inputs=40, max_delay=5, seed=4)
    net.projections.append(make_projection("p1", "p0", np.zeros(0, np.int64), np.zeros(0, np.int64),
                                           np.zeros(0), np.zeros(0, np.int64), (100, 100)))  # an empty one
    m = compile_network(net, _small("loihi2", "mesh2d", neurons=neurons), progress=False)
    inet = m.network
    offsets, total = synapse_chunks.neuron_offsets(inet)
    slice_of = synapse_chunks.slice_of_neuron(inet, m.slices, offsets, total, "delay")
    tiling = route_arrays.slice_tiling(inet, m.slices, "delay")
    assert tiling is not None
    assert {len(tiling[p][1]) for p in ("p0", "p1", "p2")} == {4 if neurons == 32 else 1}
    if neurons == 32:
        assert route_arrays.slice_tiling(inet, m.slices[:2] + m.slices[3:], "delay") is None  # a gap

    def flat(blocks):
        pre, post, delay = (np.concatenate(c) for c in zip(*blocks, strict=True))
        order = np.lexsort((delay, post, pre))
        return pre[order], post[order], delay[order]

    chunks = list(synapse_chunks.chunks(inet, offsets))
    ref = flat([(c.pre, c.post, c.delay) for c in chunks])
    ref_slices = flat([(c.pre, slice_of[c.post], c.delay) for c in chunks])
    for chunk in (synapse_chunks.CHUNK_SYNAPSES, 500):  # one block, and many
        monkeypatch.setattr(route_arrays, "CHUNK_SYNAPSES", chunk)
        got = flat(list(route_arrays.synapse_blocks(inet, offsets)))
        for a, b in zip(ref, got, strict=True):
            assert np.array_equal(a, b)
        for t in (tiling, None):  # post slices from the slice boundaries, and per synapse
            got = flat(list(route_arrays.synapse_post_slices(inet, offsets, slice_of, t)))
            for a, b in zip(ref_slices, got, strict=True):
                assert np.array_equal(a, b)


def _small(base: str, topology: str, cores: int = 4, entries: int = 1024, neurons: int = 32):
    t = load_target(base)
    return dataclasses.replace(t, mesh=Mesh(topology, 4, 4, cores), core=dataclasses.replace(t.core, neurons=neurons),
                               router=Router(entries, topology == "triangular"))


@pytest.mark.parametrize("base,topology,cores", [("loihi2", "mesh2d", 4), ("loihi2", "triangular", 4),
                                                 ("spinnaker2", "triangular", 152)])
def test_tables_send_every_key_as_its_tree(base, topology, cores) -> None:
    """Merged tables are the per-emitter tree entries, merged: each key an emitter sends gets its tree's route
    word on every chip of its tree (or is default-routed there), and a table is never longer."""
    net = random_network(600, 30, n_populations=3, n_inputs=80, max_delay=5, seed=1)
    tgt = _small(base, topology, cores)
    m = compile_network(net, tgt, progress=False)
    routing = m.routing
    if cores > 64:  # cores from the top: route words wider than one 64-bit column
        slices = [dataclasses.replace(s, core=cores - 1 - s.core) for s in m.slices]
        routing = route(m.network, slices, tgt)
    assert any(e.emitter == -1 for t in routing.tables.values() for e in t)  # some run entries merged
    per_chip: dict = {}
    for e_idx, em in enumerate(routing.emitters):
        for chip, word in routing.trees[e_idx].items():
            defaulted = [d for d in routing.defaulted.get(chip, []) if d.emitter == e_idx]
            for neuron in {0, em.n_keys - 1}:
                got = lookup(routing.tables.get(chip, []), em.key | neuron)
                assert got == (None if defaulted else word), (e_idx, chip)
            if defaulted:
                assert word >> N_LINKS == 0 and word.bit_count() == 1
            else:
                per_chip[chip] = per_chip.get(chip, 0) + 1
    assert set(per_chip) == set(routing.tables) == set(routing.compressed)
    assert all(len(routing.tables[c]) <= n for c, n in per_chip.items())
    if cores > 64:
        assert any(e.route >> 64 for t in routing.tables.values() for e in t)  # words wider than one column


def test_array_idioms() -> None:
    keys = np.array([3, 3, 1, 1, 1, 4])
    starts = route_arrays.segment_starts(keys)
    assert starts.tolist() == [0, 2, 5]
    assert route_arrays.segment_ids(starts, keys.size).tolist() == [0, 0, 1, 1, 1, 2]
    assert route_arrays.rank_in_segment(starts, keys.size).tolist() == [0, 1, 0, 1, 2, 0]
    uniq, rank = route_arrays.first_occurrence_order(np.array([5, 2, 5, 9, 2]))
    assert uniq.tolist() == [5, 2, 9] and rank.tolist() == [0, 1, 0, 2, 1]
    owner, offset = route_arrays.ranges(np.array([2, 0, 3]))
    assert owner.tolist() == [0, 0, 2, 2, 2] and offset.tolist() == [0, 1, 0, 1, 2]
    cols = route_arrays.bit_columns(np.array([0, 0, 1]), np.array([1, 70, 63]), 2, 2)
    assert route_arrays.words_to_ints(cols) == [(1 << 70) | 2, 1 << 63]
    assert route_arrays.row_ids(cols).tolist() in ([0, 1], [1, 0])


def _pair_compress_one_group_at_a_time(entries, blockers):
    """The former compressor: per route (least frequent first), restart after every merge."""
    by_route: dict = {}
    for e in entries:
        by_route.setdefault(e.route, []).append(e)
    every = entries + blockers
    out = []
    for word in sorted(by_route, key=lambda w: len(by_route[w])):
        others = [e for e in every if e.route != word or e in blockers]
        group = sorted(by_route[word], key=lambda e: e.key)
        merged = True
        while merged and len(group) > 1:
            merged = False
            for i in range(len(group) - 1):
                for j in range(i + 1, len(group)):
                    m = group[i].mask & group[j].mask & ~(group[i].key ^ group[j].key)
                    k = group[i].key & m
                    if any(((k ^ o.key) & m & o.mask) == 0 for o in others):
                        continue
                    group = [e for e in group if not ((e.key & m) == k and (e.mask & m) == m)]
                    group.append(Entry(k, m, word))
                    group.sort(key=lambda e: e.key)
                    merged = True
                    break
                if merged:
                    break
        out.extend(group)
    return out


def test_lock_step_compression_is_the_pair_compressor() -> None:
    rng = np.random.default_rng(7)
    full = (1 << 32) - 1
    tables, blockers = {}, {}
    for chip in range(6):
        n = int(rng.integers(0, 50))
        keys = rng.choice(1 << 9, size=n, replace=False).tolist()
        routes = [int(r) for r in rng.integers(1, 1 << 20, size=6)] + [1 << 150]  # one word over 64 bits
        tables[(chip, 0)] = [Entry((k << 3) & (full ^ ((1 << low) - 1)), full ^ ((1 << low) - 1),
                                   routes[int(rng.integers(0, len(routes)))], e)
                             for e, (k, low) in enumerate(zip(keys, rng.integers(0, 3, size=n).tolist(), strict=True))]
        blockers[(chip, 0)] = [Entry(int(k) << 3, full, 1) for k in rng.integers(0, 1 << 9, size=3)]
    got = compress_tables(tables, blockers, 0, force=True)
    merges = 0
    for chip, table in tables.items():
        want = _pair_compress_one_group_at_a_time(table, blockers[chip])
        assert got[chip] == want
        assert compress(table, blockers[chip], 0, force=True) == want
        merges += len(table) - len(want)
    assert merges > 20
    assert compress_tables(tables, blockers, 1000) == tables  # under the limit: copied
