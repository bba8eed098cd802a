"""Issue 14: projections stored end to end (compiler/ir/table.py) compile to exactly what a list of
projection objects compiles to, through lower, quantize, partition, place and route, and read back
as the IR's projection objects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from neurocc.compiler.errors import QuantizationError
from neurocc.compiler.ir import (
    INPUT,
    Blocks,
    FloatProjections,
    IntProjections,
    LoweredProjections,
    Network,
    Population,
    make_projection,
    make_projections,
)
from neurocc.compiler.ir.table import gather_ranges
from neurocc.compiler.passes.lower import lower
from neurocc.compiler.passes.partition import partition
from neurocc.compiler.passes.place import place
from neurocc.compiler.passes.quantize import quantize
from neurocc.compiler.passes.route import route
from neurocc.compiler.passes.synapse_chunks import projection_arrays
from neurocc.compiler.targets.target import load_target


def _population_graph(seed: int, n_pops: int = 30, sizes=(1, 5, 40, 130), big_delay: bool = False) -> Network:
    """A PACMAN-style graph with real synapses: mixed signs, weights whose mantissa is 0 (dropped),
    projections that quantize to nothing, per-neuron gains in some populations, delays."""
    rng = np.random.default_rng(seed)
    pops = {"input": Population("input", INPUT, (8,))}
    for i in range(n_pops):
        n = int(rng.choice(sizes))
        pops[f"p{i}"] = Population(f"p{i}", "LIF", (n,), {
            "tau": np.full(n, 0.02), "r": rng.uniform(0.5, 2, n) if i % 3 == 0 else np.ones(n),
            "v_leak": np.zeros(n), "v_threshold": np.ones(n), "v_reset": np.zeros(n)})
    names = list(pops)
    projs = []
    for _ in range(n_pops * 6):
        pre, post = names[rng.integers(0, len(names))], names[rng.integers(1, len(names))]
        shape = (pops[post].size, pops[pre].size)
        rows, cols = np.nonzero(rng.random(shape) < rng.choice([0.02, 0.2, 1.0]))
        if rows.size == 0:
            continue
        w = rng.uniform(-1, 1, rows.size) * 10.0 ** rng.uniform(-2, 0.5)
        if rng.random() < 0.4:
            w = np.abs(w) * rng.choice([-1, 1])
        w[rng.random(rows.size) < 0.1] *= 1e-6  # mantissa 0
        if rng.random() < 0.05:
            w *= 1e-12  # every mantissa 0: the projection is dropped
        projs.append(make_projection(pre, post, rows, cols, w, rng.integers(0, 6, rows.size), shape))
    if big_delay:
        projs[len(projs) // 2].delays[0] = 10_000
    return Network(pops, projs, ["input"], {"out": "p2"}, 1e-3)


def _as_table(net: Network, form: str = "smaller") -> Network:
    ps = net.projections
    blocks = Blocks.of([p.weights for p in ps], [p.delays for p in ps])
    if form == "rows":
        blocks = Blocks(blocks.n_post, blocks.n_pre, blocks.syn_ptr, blocks.indices, blocks.data, blocks.delays,
                        rows=blocks.rows())
    elif form == "indptr":
        blocks = Blocks(blocks.n_post, blocks.n_pre, blocks.syn_ptr, blocks.indices, blocks.data, blocks.delays,
                        indptr=blocks.indptr)
    table = make_projections(list(net.populations), [p.pre for p in ps], [p.post for p in ps], blocks)
    return dataclasses.replace(net, projections=table)


def _assert_same_projections(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.pre, x.post, x.weights.shape) == (y.pre, y.post, y.weights.shape)
        for f in ("data", "indices", "indptr"):
            u, v = getattr(x.weights, f), getattr(y.weights, f)
            assert u.dtype == v.dtype and np.array_equal(u, v)
        assert x.delays.dtype == y.delays.dtype and np.array_equal(x.delays, y.delays)
        assert getattr(x, "weight_exp", None) == getattr(y, "weight_exp", None)
        assert getattr(x, "sign_mode", None) == getattr(y, "sign_mode", None)


@pytest.mark.parametrize(("seed", "form"), [(0, "rows"), (1, "indptr"), (2, "smaller")])
@pytest.mark.parametrize("target_name", ["loihi2", "spinnaker2"])
def test_table_compiles_to_what_the_list_compiles_to(seed: int, form: str, target_name: str) -> None:
    target = load_target(target_name)
    net = _population_graph(seed)
    tnet = _as_table(net, form)
    assert isinstance(tnet.projections, FloatProjections)
    lnet, tlnet = lower(net), lower(tnet)
    assert isinstance(tlnet.projections, LoweredProjections)
    _assert_same_projections(lnet.projections, tlnet.projections)
    inet, tinet = quantize(lnet, target), quantize(tlnet, target)
    assert isinstance(tinet.projections, IntProjections)
    assert len(tinet.projections) < len(tnet.projections)  # the all-zero ones were dropped
    _assert_same_projections(inet.projections, tinet.projections)
    assert (tinet.n_synapses, tnet.n_synapses) == (inet.n_synapses, net.n_synapses)
    _assert_same_projections(inet.incoming("p2"), tinet.incoming("p2"))
    _assert_same_projections(net.outgoing("p3"), tnet.outgoing("p3"))
    assert all(np.array_equal(getattr(inet.populations[k], f), getattr(tinet.populations[k], f))
               for k in inet.populations for f in ("bias_mant", "bias_exp", "vth", "du", "dv"))
    # The mapping passes read the table's arrays and give the same mapping.
    fresh = dataclasses.replace(tinet, projections=dataclasses.replace(tinet.projections))
    part, tpart = partition(inet, target), partition(fresh, target)
    assert part == tpart
    placement, tplacement = place(inet, part, target), place(fresh, tpart, target)
    assert placement.slices == tplacement.slices and (placement.traffic != tplacement.traffic).nnz == 0
    routing, trouting = route(inet, placement.slices, target), route(fresh, tplacement.slices, target)
    assert routing == trouting


def test_table_items_are_views_made_once() -> None:
    tnet = _as_table(_population_graph(3))
    table = tnet.projections
    first = table[5]
    assert table[5] is first and table[-len(table) + 5] is first
    assert np.shares_memory(first.weights.data, table.blocks.data)
    assert [p.pre for p in table[2:4]] == [table.pre_name(2), table.pre_name(3)]
    with pytest.raises(IndexError):
        table[len(table)]
    assert table == list(table)


def test_table_errors_name_the_projection() -> None:
    net = _population_graph(4, big_delay=True)
    with pytest.raises(QuantizationError, match=r"projection 'p\d+' -> 'p\d+': delay 10000 steps") as list_err:
        quantize(lower(net), load_target("loihi2"))
    with pytest.raises(QuantizationError) as table_err:
        quantize(lower(_as_table(net)), load_target("loihi2"))
    assert str(table_err.value) == str(list_err.value)


def test_projection_arrays_of_a_table_share_its_arrays() -> None:
    tinet = quantize(lower(_as_table(_population_graph(5))), load_target("spinnaker2"))
    arr = projection_arrays(tinet)
    assert arr is projection_arrays(tinet)
    assert arr.indices_all is tinet.projections.blocks.indices
    ids = np.array([3, 0, 3, len(tinet.projections) - 1])
    indptr, indices, delays = arr.take(ids)
    items = [tinet.projections[k] for k in ids.tolist()]
    assert np.array_equal(indptr, np.concatenate([p.weights.indptr for p in items]))
    assert np.array_equal(indices, np.concatenate([p.weights.indices for p in items]))
    assert np.array_equal(delays, np.concatenate([p.delays for p in items]))


def test_blocks_take_and_gather_ranges() -> None:
    mats = [sp.csr_array(np.array([[0, 1.0], [2.0, 0]])), sp.csr_array((3, 2)), sp.csr_array(np.array([[5.0, 6.0]]))]
    blocks = Blocks.of(mats, [np.array([1, 2]), np.zeros(0, np.int64), np.array([3, 4])])
    assert np.array_equal(gather_ranges(np.array([4, 0, 9]), np.array([2, 0, 3])), [4, 5, 9, 10, 11])
    sub = blocks.take(np.array([2, 0]))
    assert (sub.matrix(0) != mats[2]).nnz == 0 and (sub.matrix(1) != mats[0]).nnz == 0
    assert np.array_equal(sub.delays, [3, 4, 1, 2])
    kept = blocks.take(blocks.nnz > 0)  # only empty matrices dropped: the entries are shared
    assert kept.data is blocks.data and kept.size == 2


def test_blocks_row_forms_agree() -> None:
    """The per-entry rows and the per-matrix indptrs describe the same matrices, whichever is stored."""
    rng = np.random.default_rng(7)
    mats = [sp.csr_array(rng.random((m, 4)) * (rng.random((m, 4)) < 0.3)) for m in (3, 0, 5, 1, 6)]
    delays = [np.arange(w.nnz) for w in mats]
    wide = Blocks.of(mats, delays)
    assert wide.has_rows  # more indptr entries than synapses: the rows are stored
    by_indptr = Blocks(wide.n_post, wide.n_pre, wide.syn_ptr, wide.indices, wide.data, wide.delays,
                       indptr=wide.indptr)
    assert np.array_equal(by_indptr.rows(), wide.rows())
    assert np.array_equal(np.concatenate([w.indptr for w in mats]), wide.indptr)
    for k, w in enumerate(mats):
        for blocks in (wide, by_indptr):
            assert (blocks.matrix(k) != w).nnz == 0 and np.array_equal(blocks.matrix(k).indptr, w.indptr)
            assert np.array_equal(blocks.rows_of(k), np.repeat(np.arange(w.shape[0]), np.diff(w.indptr)))
