"""Partition and the synapse arrays on the whole graph at once: many small projections, delay stages,
repeated population pairs and output-axon re-cuts, checked against independent per-projection counts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurocc.compiler.ir import INPUT, Network, Population, Role, make_projection
from neurocc.compiler.passes import partition as partition_mod
from neurocc.compiler.passes import synapse_chunks
from neurocc.compiler.passes.partition import partition, slice_usage
from neurocc.compiler.pipeline import to_integer
from neurocc.compiler.targets.target import Mesh, load_target


def _many_projections(seed: int = 3, n_pops: int = 25, n_proj: int = 220) -> Network:
    rng = np.random.default_rng(seed)
    pops = {"input": Population("input", INPUT, (20,))}
    for i in range(n_pops):
        n = int(rng.integers(3, 90))
        pops[f"p{i}"] = Population(f"p{i}", "LIF", (n,), {
            "tau": np.full(n, 0.02), "r": np.ones(n), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
            "v_reset": np.zeros(n)})
    names = list(pops)
    projections = []
    for _ in range(n_proj):  # pairs repeat, some projections are empty, half carry long delays
        a, b = names[int(rng.integers(0, n_pops + 1))], names[int(rng.integers(1, n_pops + 1))]
        ns, nt = pops[a].size, pops[b].size
        m = int(rng.integers(0, 2 * max(ns, nt)))
        key = np.unique(rng.integers(0, nt, m) * ns + rng.integers(0, ns, m))
        delays = rng.integers(0, 40, key.size) if rng.random() < 0.5 else np.zeros(key.size, np.int64)
        projections.append(make_projection(a, b, key // ns, key % ns, rng.normal(0.1, 0.1, key.size), delays,
                                           (nt, ns)))
    return Network(pops, projections, ["input"], {"out": "p0"}, 1e-3)


def _target(base: str, **core):
    t = load_target(base)
    return dataclasses.replace(t, mesh=Mesh(t.mesh.topology, 12, 12, 8), core=dataclasses.replace(t.core, **core),
                               encoding=dataclasses.replace(t.encoding, delay_extension_slots=8))


TARGETS = {
    "spinnaker2": dict(neurons=24, output_axons=150, delay_slots=16),
    "loihi2": dict(neurons=20, output_axons=100, delay_slots=16),
}


@pytest.fixture(scope="module", params=list(TARGETS))
def compiled(request):
    tgt = _target(request.param, **TARGETS[request.param])
    inet = to_integer(_many_projections(), tgt)
    return inet, tgt, partition(inet, tgt)


def test_usage_matches_an_independent_recount(compiled) -> None:
    inet, tgt, part = compiled
    assert any(s.role == Role.DELAY for s in part.slices)  # the delays need extension stages
    for s, use in zip(part.slices, part.usage, strict=True):
        if s.role != Role.NEURONS:
            continue
        ref = slice_usage(inet, tgt, s.population, s.start, s.stop)
        ref.out_axons = use.out_axons
        assert use == ref, s.label


def test_out_axons_count_neuron_and_destination_slice_pairs_per_projection(compiled) -> None:
    inet, tgt, part = compiled
    cuts: dict[str, list[int]] = {}
    for s in part.slices:
        if s.role != Role.DELAY:
            cuts.setdefault(s.population, []).append(s.start)
    for s, use in zip(part.slices, part.usage, strict=True):
        if s.role == Role.DELAY:
            continue
        expected = 0
        for proj in inet.projections:
            if proj.pre != s.population:
                continue
            w = proj.weights.tocoo()
            mine = (w.col >= s.start) & (w.col < s.stop)
            dst = np.searchsorted(cuts[proj.post], w.row[mine], side="right")
            expected += np.unique(w.col[mine].astype(np.int64) * 1_000_000 + dst).size
        assert use.out_axons == expected, s.label
        if s.role == Role.NEURONS:  # a host-fed source has no axon table of its own
            assert use.out_axons <= tgt.core.output_axons
    recut = [name for name, starts in cuts.items() if name != "input"
             and len(starts) > -(-inet.populations[name].size // tgt.core.neurons)]
    assert recut  # the output-axon budget re-cut some sources


def test_both_column_orders_and_any_block_size_give_the_same_partition(compiled, monkeypatch) -> None:
    inet, tgt, part = compiled
    for sort_below, chunk in ((0, 4_000_000), (10**9, 4_000_000), (0, 7), (10**9, 5)):
        monkeypatch.setattr(partition_mod, "SORT_BELOW", sort_below)
        monkeypatch.setattr(partition_mod, "BLOCK_SYNAPSES", chunk)
        again = partition(inet, tgt)
        assert again.slices == part.slices and again.usage == part.usage and again.notes == part.notes


@pytest.mark.parametrize("chunk", [1, 37, 4_000_000])
def test_chunks_are_the_projections_synapses_in_order(compiled, monkeypatch, chunk) -> None:
    inet, _, _ = compiled
    monkeypatch.setattr(synapse_chunks, "CHUNK_SYNAPSES", chunk)
    offsets, _ = synapse_chunks.neuron_offsets(inet)
    got = list(synapse_chunks.chunks(inet, offsets))
    pre, post, delay, sizes, held = [], [], [], [], 0
    for proj in inet.projections:  # the per-projection reference
        w = proj.weights
        rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
        if rows.size == 0:
            continue
        pre.append(w.indices.astype(np.int64) + offsets[proj.pre])
        post.append(rows + offsets[proj.post])
        delay.append(proj.delays.astype(np.int64))
        held += rows.size
        if held >= chunk:
            sizes.append(held)
            held = 0
    if held:
        sizes.append(held)
    assert [c.pre.size for c in got] == sizes
    for name, ref in (("pre", pre), ("post", post), ("delay", delay)):
        flat = np.concatenate([getattr(c, name) for c in got])
        assert flat.dtype == np.int64
        np.testing.assert_array_equal(flat, np.concatenate(ref))


def test_concat_and_nonempty_rows() -> None:
    parts = [np.array([1, 2], np.int16), np.zeros(0, np.int16), np.array([3], np.int16)]
    np.testing.assert_array_equal(synapse_chunks.concat(parts), [1, 2, 3])
    mixed = [np.array([1], np.int16), np.array([2], np.int64), np.arange(6)[::2]]
    np.testing.assert_array_equal(synapse_chunks.concat(mixed), [1, 2, 0, 2, 4])
    owner, row, entries = synapse_chunks.nonempty_rows([np.array([0, 0, 2, 3]), np.array([0]), np.array([0, 1])])
    np.testing.assert_array_equal(owner, [0, 0, 2])
    np.testing.assert_array_equal(row, [1, 2, 0])
    np.testing.assert_array_equal(entries, [2, 1, 1])
