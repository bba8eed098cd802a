"""Partition, place and route: budgets, delivery and compression, checked independently."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import neurocc
from neurocc.compiler.ir import Role
from neurocc.compiler.passes.compress import compress
from neurocc.compiler.passes.partition import slice_usage
from neurocc.compiler.passes.route import deliver, lookup
from neurocc.compiler.pipeline import compile_network
from neurocc.compiler.targets.mesh import N_LINKS
from neurocc.compiler.targets.target import CoreBudget, Mesh, Router, load_target
from neurocc.runtime.placement_sim import simulate_placement
from neurocc.runtime.simulator import simulate_int
from neurocc.workloads import random_network, shd_delay_graph


def small_target(base: str, topology: str, neurons: int = 64, chips: int = 4, cores: int = 4,
                 delay_slots: int | None = None, entries: int = 1024):
    t = load_target(base)
    core = dataclasses.replace(t.core, neurons=neurons,
                               delay_slots=delay_slots if delay_slots is not None else t.core.delay_slots)
    encoding = dataclasses.replace(t.encoding, delay_extension_slots=8 if delay_slots is not None else 0)
    return dataclasses.replace(t, mesh=Mesh(topology, chips, chips, cores), core=core, encoding=encoding,
                               router=Router(entries, topology == "triangular"))


@pytest.fixture(scope="module")
def nets():
    return {
        "random": random_network(600, 30, n_populations=3, n_inputs=80, max_delay=5, seed=1),
        "recurrent": _recurrent(),
    }


def _recurrent():
    net = random_network(300, 20, n_populations=2, n_inputs=40, seed=2)
    # Close a loop p1 -> p0 to exercise recurrence through the router.
    from neurocc.compiler.ir import make_projection

    rng = np.random.default_rng(5)
    rows = rng.integers(0, 150, 900)
    cols = rng.integers(0, 150, 900)
    key = np.unique(rows * 150 + cols)
    net.projections.append(make_projection("p1", "p0", key // 150, key % 150, rng.normal(0.02, 0.02, key.size),
                                           np.zeros(key.size, np.int64), (150, 150)))
    return net


TARGETS = [("loihi2", "mesh2d"), ("loihi2", "triangular")]


@pytest.mark.parametrize("base,topology", TARGETS)
@pytest.mark.parametrize("which", ["random", "recurrent"])
def test_every_slice_fits_every_budget(nets, base, topology, which) -> None:
    tgt = small_target(base, topology)
    m = compile_network(nets[which], tgt, progress=False)
    inet = m.network
    covered = {name: np.zeros(p.size, int) for name, p in inet.populations.items()}
    for s, use in zip(m.slices, m.usage, strict=True):
        if s.role == Role.DELAY:
            continue
        covered[s.population][s.start:s.stop] += 1
        if inet.populations[s.population].kind == "input":  # a host-fed source: one slice, no core budget
            assert s.size == inet.populations[s.population].size or s.size <= tgt.core.source_neurons
            continue
        assert s.size <= tgt.core.neurons
        ref = slice_usage(inet, tgt, s.population, s.start, s.stop)  # independent recount
        assert (ref.synapses, ref.synapse_bytes, ref.fan_in) == (use.synapses, use.synapse_bytes, use.fan_in)
        assert ref.synapse_bytes <= tgt.core.synapse_memory_bytes
        assert ref.fan_in <= tgt.core.input_axons
        assert ref.delay_slots <= tgt.core.delay_slots
        assert use.out_axons <= tgt.core.output_axons
    assert all((c == 1).all() for c in covered.values())  # every neuron on exactly one core
    cores = [(s.chip, s.core) for s in m.slices]
    assert len(set(cores)) == len(cores)
    assert all(0 <= s.core < tgt.mesh.cores_per_chip for s in m.slices)
    assert len({s.chip for s in m.slices}) > 1  # the test exercises inter-chip routing


def _needed_cores(m) -> dict[int, set]:
    """Emitter -> (chip, core) of every slice holding a synapse it must reach (from the weights)."""
    inet, slices, slots = m.network, m.slices, m.target.core.delay_slots
    routing = m.routing
    need: dict[int, set] = {}
    for e_idx, em in enumerate(routing.emitters):
        src = slices[em.slice_index]
        want = set()
        for proj in inet.projections:
            if proj.pre != src.population:
                continue
            rows, cols, _, delays = (np.repeat(np.arange(proj.weights.shape[0]), np.diff(proj.weights.indptr)),
                                     proj.weights.indices, None, proj.delays)
            sel = (cols >= src.start) & (cols < src.stop) & (delays // slots == em.stage)
            for d in slices:
                if d.population == proj.post and d.role != Role.DELAY and \
                        np.any((rows[sel] >= d.start) & (rows[sel] < d.stop)):
                    want.add((d.chip, d.core))
        if src.role != Role.DELAY and em.stage == 0:
            for d in slices:  # the source feeds its own delay-extension slice
                if d.role == Role.DELAY and d.population == src.population and d.start == src.start:
                    want.add((d.chip, d.core))
        need[e_idx] = want
    return need


@pytest.mark.parametrize("base,topology", TARGETS)
def test_every_spike_reaches_exactly_the_cores_that_need_it(nets, base, topology) -> None:
    tgt = small_target(base, topology, delay_slots=4)  # delays up to 5: some go through extensions
    m = compile_network(nets["random"], tgt, progress=False)
    routing = m.routing
    assert any(s.role == Role.DELAY for s in m.slices)
    need = _needed_cores(m)
    raster = (np.random.default_rng(0).random((40, 80)) < 0.2).astype(float)
    spikes = simulate_int(m.network, raster, record=False).spikes
    checked = 0
    for e_idx, em in enumerate(routing.emitters):
        src = m.slices[em.slice_index]
        fired = np.flatnonzero(spikes[src.population][:, src.start:src.stop].any(axis=0))
        for neuron in fired[:8]:
            for compressed in (False, True):
                reached, _ = deliver(routing, tgt, src.chip, em.key | int(neuron), compressed=compressed)
                assert reached == need[e_idx], (e_idx, compressed)
            checked += 1
    assert checked > 10


@pytest.mark.parametrize("topology", ["mesh2d", "triangular"])
def test_compressed_tables_route_every_arriving_key_the_same(nets, topology) -> None:
    tgt = small_target("loihi2", topology, neurons=16, chips=6, cores=6)
    m = compile_network(nets["random"], tgt, progress=False)
    routing = m.routing
    forced = {chip: compress(t, routing.defaulted.get(chip, []), 0, force=True) for chip, t in routing.tables.items()}
    before, after = routing.entries_before(), sum(len(t) for t in forced.values())
    assert after < before
    for chip, table in routing.tables.items():
        for entry in table:
            for offset in (0, 1, 7):
                key = entry.key | offset
                assert lookup(forced[chip], key) == lookup(table, key)
        for blocked in routing.defaulted.get(chip, []):
            assert lookup(forced[chip], blocked.key) is None  # still default-routed


def test_route_words_use_only_real_links_and_cores(nets) -> None:
    tgt = small_target("loihi2", "triangular")
    m = compile_network(nets["random"], tgt, progress=False)
    for table in m.routing.tables.values():
        for e in table:
            assert e.route >> (N_LINKS + tgt.mesh.cores_per_chip) == 0


def test_network_too_big_for_the_machine_names_the_budget() -> None:
    tgt = small_target("loihi2", "mesh2d", neurons=8, chips=1, cores=4)
    net = random_network(200, 10, n_populations=2, n_inputs=20)
    with pytest.raises(neurocc.TargetError, match=r"needs \d+ cores .* over by \d+ cores"):
        compile_network(net, tgt, progress=False)


def test_one_neuron_over_synapse_memory_names_population_budget_and_fix() -> None:
    t = load_target("loihi1")
    tiny = dataclasses.replace(t, core=CoreBudget(1024, 64, 4096, 4096, 63))
    net = random_network(50, 40, n_populations=1, n_inputs=100)
    with pytest.raises(neurocc.TargetError, match=r"population 'p0' .* synapse memory .*over by \d+\)\. Fix"):
        compile_network(net, tiny, progress=False)


def test_malformed_target_file_names_the_key(tmp_path) -> None:
    src = (load_target("loihi2").source and open(load_target("loihi2").source).read())
    bad = tmp_path / "bad.toml"
    bad.write_text(src.replace("neurons = 1024", "neurons = \"many\""))
    with pytest.raises(neurocc.TargetError, match=r"core.neurons"):
        load_target(bad)
    missing = tmp_path / "missing.toml"
    missing.write_text(src.replace("synapse_memory_bytes", "#synapse_memory_bytes"))
    with pytest.raises(neurocc.TargetError, match=r"missing key 'core.synapse_memory_bytes'"):
        load_target(missing)


def test_shd_delay_network_needs_two_loihi1_cores_for_synapses() -> None:
    net = neurocc.load(shd_delay_graph(seed=0), dt=0.01)
    assert net.n_synapses == 106_496
    m = compile_network(net, "loihi1", progress=False)
    usage = m.usage
    budget = load_target("loihi1").core.synapse_memory_bytes
    assert sum(u.synapse_bytes for u in usage) > budget  # 106,496 x (8 w + 6 d + 10 idx) bits > 1 Mbit
    assert len([u for u in usage if u.synapse_bytes > 0]) >= 2
    assert all(u.synapse_bytes <= budget for u in usage)


def test_placement_sim_counts_match_a_direct_count(nets) -> None:
    tgt = small_target("loihi2", "triangular")
    m = compile_network(nets["random"], tgt, progress=False)
    raster = (np.random.default_rng(1).random((30, 80)) < 0.2).astype(float)
    run = simulate_int(m.network, raster, record=False)
    rep = simulate_placement(m, result=run)
    total_events = sum(c["events_per_step"] for c in rep.cores) * rep.steps
    # Direct count: every spike times its out-degree, for spikes whose delayed arrival is in the run.
    direct = 0
    for proj in m.network.projections:
        rows = proj.weights.indices
        s = run.spikes[proj.pre].astype(int)
        for j, d in zip(rows, proj.delays, strict=True):
            arrive = np.flatnonzero(s[:, j]) + (d // tgt.core.delay_slots) * tgt.core.delay_slots
            direct += int((arrive < rep.steps).sum())
    assert total_events == pytest.approx(direct)
    # Packets: each spike crosses every link of its emitter's tree once.
    assert rep.energy_j > 0 and rep.step_time_s.shape == (30,)
    assert rep.chips_used == len({s.chip for s in m.slices})
