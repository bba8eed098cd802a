"""Issue 14 part 2: over-delivery makes every routing table fit. A chip's emitters are collapsed onto one
tree and one key block where the exact tables are over the router's limit; cores outside an emitter's own
destinations receive its packets and drop them. Checked: every chip within its budget, every packet reaches
exactly its destinations plus the cores over-delivery chose (which hold no synapse for it), conflict-free
tables, the SpiNNaker executor bit-exact with the drops counted as the placement simulator counts them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurocc.compiler.errors import TargetError
from neurocc.compiler.passes.over_delivery import choose_collapsed, entries_by_group, union_destinations
from neurocc.compiler.passes.route import deliver, lookup, route
from neurocc.compiler.pipeline import compile_network
from neurocc.runtime.placement_sim import simulate_placement
from neurocc.runtime.simulator import simulate_int
from neurocc.workloads import population_graph

from .test_mapping import _needed_cores, small_target
from .test_spinnaker import check


def test_union_destinations_widens_only_collapsed_groups() -> None:
    # emitters 0, 1 on source chip group 0; emitter 2 on group 1
    ptr = np.array([0, 2, 3, 5])
    dest = np.array([4, 7, 5, 1, 2])
    group = np.array([0, 0, 1])
    new_ptr, new_dest = union_destinations(ptr, dest, group, np.array([True, False]))
    lists = [new_dest[a:b].tolist() for a, b in zip(new_ptr[:-1], new_ptr[1:], strict=True)]
    assert lists == [[4, 5, 7], [4, 5, 7], [1, 2]]
    new_ptr, new_dest = union_destinations(ptr, dest, group, np.array([False, False]))
    assert new_ptr.tolist() == ptr.tolist() and new_dest.tolist() == dest.tolist()


def test_choose_collapsed_covers_the_excess_with_the_biggest_savers() -> None:
    chip = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0])
    group = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    counts = entries_by_group(chip, group, 2, 3)
    assert counts.tolist() == [[3, 1, 2], [0, 3, 0]]
    # chip 0 is 2 over, chip 1 is 1 over: group 0 saves 2 on chip 0, group 1 saves 2 on chip 1
    chosen = choose_collapsed(counts, np.array([2, 1]), np.zeros(3, bool))
    assert chosen.tolist() == [True, True, False]
    # nothing over: nothing collapsed; an impossible excess stops when no group saves more
    assert not choose_collapsed(counts, np.array([0, 0]), np.zeros(3, bool)).any()
    assert choose_collapsed(counts, np.array([99, 0]), np.zeros(3, bool)).tolist() == [True, False, True]


# ---- a scaled-down graph D: many populations, each chip reached by nearly every emitter ----

LIMIT = 14  # entries per chip: the exact tables of the graph below need more


@pytest.fixture(scope="module")
def d_like():
    net = population_graph(40, 8, 0.3, 0.2, seed=1)
    tgt = small_target("spinnaker1", "triangular", neurons=8, chips=4, cores=5, entries=LIMIT)
    mapping = compile_network(net, tgt, progress=False)
    raster = (np.random.default_rng(0).random((100, 64)) < 0.1).astype(float)
    return net, tgt, mapping, raster


def test_exact_tables_do_not_fit_but_over_delivery_does(d_like) -> None:
    _, tgt, m, _ = d_like
    exact = route(m.network, m.slices, tgt, strict=False, over_delivery=False)
    over = [len(t) for t in exact.compressed.values() if len(t) > LIMIT]
    assert over, "the exact tables fit: the test would not exercise over-delivery"
    routing = m.routing
    assert routing.over_delivery and routing.collapsed_chips
    assert max(len(t) for t in routing.compressed.values()) <= LIMIT  # every chip within its budget
    assert any(em.over_delivered for em in routing.emitters)


def test_every_packet_reaches_its_destinations_plus_the_chosen_droppers(d_like) -> None:
    _, tgt, m, _ = d_like
    routing, slices = m.routing, m.slices
    need = _needed_cores(m)
    for e_idx, em in enumerate(routing.emitters):
        exact = {(slices[d].chip, slices[d].core) for d in em.destinations}
        assert exact == need[e_idx]  # destinations are the cores holding its synapses
        dropping = {(slices[d].chip, slices[d].core) for d in em.over_delivered}
        assert not dropping & exact  # a dropper holds no synapse of this emitter
        for neuron in (0, slices[em.slice_index].size - 1):
            for compressed in (False, True):
                reached, _ = deliver(routing, tgt, slices[em.slice_index].chip, em.key | neuron, compressed=compressed)
                assert reached == exact | dropping, (e_idx, compressed)


def test_tables_are_free_of_conflicts(d_like) -> None:
    # Every key that arrives at a chip has one route whichever entries match it: the compressed table gives the
    # uncompressed table's route, and a default-routed key matches nothing.
    _, _, m, _ = d_like
    routing = m.routing
    for chip, table in routing.tables.items():
        compressed = routing.compressed[chip]
        for entry in table:
            for offset in (0, 3, 7):
                key = entry.key | offset
                routes = {e.route for e in compressed if e.matches(key)}
                assert routes == {lookup(table, key)}, (chip, hex(key))
        for blocked in routing.defaulted.get(chip, []):
            assert lookup(compressed, blocked.key) is None


def test_spinnaker_executor_is_bit_exact_with_over_delivery(d_like, tmp_path: Path) -> None:
    _, _, m, raster = d_like
    got = check(m, raster, tmp_path / "out", multi_chip=True)  # spikes, link packets and events as the reference
    report = simulate_placement(m, result=simulate_int(m.network, raster, record=False))
    dropped = {(tuple(c["chip"]), c["core"]): round(c["dropped_per_step"] * report.steps) for c in report.cores}
    assert sum(got.dropped.values()) > 0
    assert {k: v for k, v in dropped.items() if v} == got.dropped  # the executor drops what the simulator counts
    assert report.extra["dropped_packets"] == sum(got.dropped.values())
    assert "dropped" in report.energy_breakdown_j


def test_without_over_delivery_a_table_over_the_limit_is_a_named_error(d_like) -> None:
    _, tgt, m, _ = d_like
    with pytest.raises(TargetError, match=r"routing table has \d+ entries .* holds 14"):
        route(m.network, m.slices, tgt, over_delivery=False)
