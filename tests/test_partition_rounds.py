"""Partition's fitting rounds count rows from per-synapse gaps (CSR order) instead of the column pass:
the two must agree on every cut, and the fitted slices must match an independent recount."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurocc.compiler.ir import Role
from neurocc.compiler.passes import partition as pm
from neurocc.compiler.pipeline import to_integer
from neurocc.compiler.targets.target import Mesh, load_target
from neurocc.workloads import random_network

# Small cores so that fitting takes several rounds, on a linear (SpiNNaker words) and a packed (Loihi bits)
# row encoding; the Loihi budgets bind on fan-in and on synapse memory.
TARGETS = {
    "spinnaker2": dict(neurons=64, input_axons=300, synapse_memory_bytes=40_000),
    "loihi2": dict(neurons=64, input_axons=300, synapse_memory_bytes=4_000),
}


def _target(name: str):
    t = load_target(name)
    return dataclasses.replace(t, mesh=Mesh(t.mesh.topology, 12, 12, 8),
                               core=dataclasses.replace(t.core, **TARGETS[name]))


@pytest.fixture(scope="module", params=list(TARGETS))
def case(request):
    tgt = _target(request.param)
    inet = to_integer(random_network(2_000, 40, n_populations=4, n_inputs=150, seed=5), tgt)
    return inet, tgt


def test_round_usage_equals_the_column_pass(case) -> None:
    inet, tgt = case
    graph, table = pm._whole_graph(inet, tgt)
    assert table.gap is not None
    rng = np.random.default_rng(0)
    active = ~graph.is_input
    for _ in range(6):
        k = np.where(graph.is_input, 1, rng.integers(1, 80, graph.size.size))
        cut = pm._cut(graph, k, {})
        ref = pm._usage(graph, table, tgt, cut, active)
        got, exact = pm._round_usage(graph, table, tgt, cut, active)
        assert np.array_equal(got.fan_in, ref.fan_in)
        assert np.array_equal(got.synapses, ref.synapses)
        limit = tgt.core.synapse_memory_bytes
        # Exact wherever the budget decides; elsewhere a bound that is still within the budget.
        over = ref.synapse_bytes > limit
        assert np.array_equal(got.synapse_bytes[over], ref.synapse_bytes[over])
        assert np.all(got.synapse_bytes[~over] <= limit)
        assert np.all(got.synapse_bytes >= ref.synapse_bytes)
        if exact:
            assert np.array_equal(got.synapse_bytes, ref.synapse_bytes)
    whole = pm._whole_usage(graph, table, tgt, active)
    ref = pm._usage(graph, table, tgt, pm._cut(graph, np.ones(graph.size.size, dtype=np.int64), {}), active)
    assert np.array_equal(whole.fan_in[active], ref.fan_in[active])
    assert np.array_equal(whole.synapse_bytes[active], ref.synapse_bytes[active])


def test_fitted_slices_match_an_independent_recount(case) -> None:
    inet, tgt = case
    part = pm.partition(inet, tgt)
    per_pop = {}
    for s, use in zip(part.slices, part.usage, strict=True):
        if s.role != Role.NEURONS:
            continue
        per_pop[s.population] = per_pop.get(s.population, 0) + 1
        ref = pm.slice_usage(inet, tgt, s.population, s.start, s.stop)
        ref.out_axons = use.out_axons
        assert use == ref, s.label
        assert use.fan_in <= tgt.core.input_axons and use.synapse_bytes <= tgt.core.synapse_memory_bytes
    assert max(per_pop.values()) > 2000 // 4 // tgt.core.neurons  # the budgets, not the neuron count, set k
