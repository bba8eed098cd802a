"""Issue 14 part 1: lower and quantize work on all projections' arrays at once (compiler/passes/segments.py).

Batching must not change a single bit: a network lowered and quantized with every projection in a batch
of its own (the single-array arithmetic) equals the one done a batch of many projections at a time.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import scipy.sparse as sp

from neurocc.compiler.errors import QuantizationError
from neurocc.compiler.ir import INPUT, Network, Population, Projection, make_projection
from neurocc.compiler.passes import lower as lower_mod
from neurocc.compiler.passes import quantize as quantize_mod
from neurocc.compiler.passes import segments
from neurocc.compiler.passes.lower import lower
from neurocc.compiler.passes.quantize import quantize
from neurocc.compiler.passes.segments import scaled_data
from neurocc.compiler.targets.target import load_target


def _network(seed: int, big_delay_at: int | None = None) -> Network:
    """Many small projections: mixed signs, weights that quantize to 0, empty projections, int64
    indices, populations with one shared gain and with per-neuron gains, one split by decay."""
    rng = np.random.default_rng(seed)
    pops = {"input": Population("input", INPUT, (6,))}
    for i, n in enumerate([1, 4, 30, 12, 7, 20]):
        split = i == 3
        pops[f"p{i}"] = Population(f"p{i}", "LIF", (n,), {
            "tau": rng.uniform(0.005, 0.05, n) if split else np.full(n, 0.02),
            "r": rng.uniform(0.5, 2, n) if i % 2 else np.ones(n), "v_leak": np.zeros(n),
            "v_threshold": np.ones(n), "v_reset": np.zeros(n)})
    names = list(pops)
    projs = []
    for k in range(80):
        pre, post = names[rng.integers(0, len(names))], names[rng.integers(1, len(names))]
        shape = (pops[post].size, pops[pre].size)
        rows, cols = np.nonzero(rng.random(shape) < rng.choice([0.0, 0.1, 0.5, 1.0]))
        w = rng.uniform(-1, 1, rows.size) * 10.0 ** rng.uniform(-3, 0.5)
        if rng.random() < 0.3:
            w = np.abs(w) * rng.choice([-1, 1])
        w[rng.random(rows.size) < 0.1] *= 1e-5  # a zero mantissa, dropped
        delays = rng.integers(0, 10, rows.size)
        if k == big_delay_at and rows.size:
            delays[0] = 10_000
        if rows.size == 0:
            projs.append(Projection(pre, post, sp.csr_array(shape), np.zeros(0, np.int64)))
            continue
        p = make_projection(pre, post, rows, cols, w, delays, shape)
        if k % 7 == 0:
            p.weights = sp.csr_array((p.weights.data, p.weights.indices.astype(np.int64),
                                      p.weights.indptr.astype(np.int64)), shape=shape)
        projs.append(p)
    return Network(pops, projs, ["input"], {"out": "p2"}, 1e-3)


def _same(a, b) -> None:
    if sp.issparse(a):
        assert type(a) is type(b) and a.shape == b.shape
        for attr in ("data", "indices", "indptr"):
            _same(getattr(a, attr), getattr(b, attr))
        return
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        return
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
        return
    if isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
        return
    if hasattr(a, "__dataclass_fields__"):
        assert type(a) is type(b)
        for name in a.__dataclass_fields__:
            _same(getattr(a, name), getattr(b, name))
        return
    assert type(a) is type(b) and a == b


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("target", ["loihi2", "spinnaker2"])
def test_batching_does_not_change_a_bit(seed: int, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net, tgt = _network(seed), load_target(target)
    batched = lower(net)
    batched_int = quantize(batched, tgt)
    assert len(batched_int.projections) > 20
    monkeypatch.setattr(quantize_mod, "WEIGHTS_PER_BATCH", 1)
    _same(quantize(lower(net), tgt), batched_int)


def test_a_shared_gain_repeated_per_synapse_equals_the_per_row_gains(monkeypatch: pytest.MonkeyPatch) -> None:
    net, tgt = _network(3), load_target("loihi2")
    shared = lower(net)
    assert any(isinstance(p.gain, float) for p in shared.projections)
    monkeypatch.setattr(lower_mod, "_shared_value", lambda gain: np.nan)  # every population per row
    per_row = lower(net)
    assert all(isinstance(p.gain, np.ndarray) for p in per_row.projections if "#" not in p.pre + p.post)
    _same([p.weights for p in per_row.projections], [p.weights for p in shared.projections])
    _same(quantize(per_row, tgt), quantize(shared, tgt))


def test_a_batch_of_scaled_weights_is_each_projection_s_own_product() -> None:
    lnet = lower(_network(3))
    projs = lnet.projections
    kinds = {type(p.gain) for p in projs}
    assert kinds == {float, np.ndarray}  # the batch mixes one-gain and per-row projections
    assert np.array_equal(scaled_data(projs), np.concatenate([p.scaled_data() for p in projs]))
    for p in projs:
        w = p.weights
        assert np.array_equal(w.data, np.repeat(np.broadcast_to(p.gain, p.base.shape[0]), np.diff(w.indptr))
                              * p.base.data)


def test_lowered_projections_share_the_float_arrays() -> None:
    """No per-synapse array is made by lower for a whole matrix: its base is the float network's."""
    net = _network(3)
    datas = {id(p.weights.data) for p in net.projections}
    indptrs = {id(p.weights.indptr) for p in net.projections}
    lnet = lower(net)
    whole = [p for p in lnet.projections if "#" not in p.pre + p.post]
    assert whole and all(id(p.base.data) in datas and id(p.base.indptr) in indptrs for p in whole)


def test_first_error_in_projection_order_is_raised() -> None:
    lnet = lower(_network(4, big_delay_at=50))
    with pytest.raises(QuantizationError, match="delay 10000 steps exceeds"):
        quantize(lnet, load_target("loihi2"))


@pytest.mark.parametrize("enabled", [True, False])
def test_passes_leave_the_garbage_collector_as_they_found_it(enabled: bool) -> None:
    (gc.enable if enabled else gc.disable)()
    try:
        quantize(lower(_network(5)), load_target("loihi2"))
        assert gc.isenabled() == enabled
    finally:
        gc.enable()


# ---- the idioms ----

def test_batches_bound_their_size_and_isolate_large_or_marked_segments() -> None:
    sizes = np.array([1, 2, 3, 10, 1, 1, 0, 0, 2])
    runs = segments.batches(sizes, 4)
    assert runs[0][0] == 0 and runs[-1][1] == sizes.size
    assert all(a < b and b == c for (a, b), (c, _) in zip(runs, runs[1:], strict=False))
    assert (3, 4) in runs  # larger than the budget: alone
    assert all(sizes[a:b].sum() < 8 for a, b in runs if b - a > 1)
    marked = np.zeros(sizes.size, bool)
    marked[5] = True
    assert (5, 6) in segments.batches(sizes, 4, marked)
    assert segments.batches(np.zeros(0, np.int64), 4) == []


def test_segment_reductions_fill_empty_segments() -> None:
    values, sizes = np.array([3.0, -1.0, 5.0, 2.0]), np.array([2, 0, 2, 0])
    assert segments.segment_max(values, sizes, -9).tolist() == [3.0, -9, 5.0, -9]
    assert segments.segment_min(values, sizes, 7).tolist() == [-1.0, 7, 2.0, 7]
    assert segments.segment_count(values > 0, sizes).tolist() == [1, 0, 2, 0]
    parts = segments.split(values, sizes)
    assert [p.tolist() for p in parts] == [[3.0, -1.0], [], [5.0, 2.0], []]
    assert np.array_equal(segments.concat(parts), values)


def test_row_lengths_is_each_matrix_diff_end_to_end() -> None:
    rng = np.random.default_rng(0)
    mats = [sp.random_array((int(rng.integers(0, 6)), 4), density=0.5, rng=rng, format="csr") for _ in range(30)]
    expect = np.concatenate([np.diff(m.indptr) for m in mats])
    assert np.array_equal(segments.row_lengths([m.indptr for m in mats]), expect)


@pytest.mark.parametrize("itype", [np.int32, np.int64])
def test_assembled_csr_is_the_constructors(itype: type) -> None:
    data, indices, indptr = np.array([1.0, 2.0, 3.0]), np.array([0, 2, 1], itype), np.array([0, 2, 2, 3], itype)
    fast = segments.csr(data, indices, indptr, (3, 3))
    ref = sp.csr_array((data, indices, indptr), shape=(3, 3), copy=False)
    assert segments._FAST  # this scipy's internals were recognised; otherwise the constructor serves
    assert vars(fast).keys() == vars(ref).keys() and fast.shape == ref.shape
    assert fast.data is data and fast.indices is indices and fast.indptr is indptr
    assert fast.has_canonical_format == ref.has_canonical_format
    assert (fast != ref).nnz == 0
    fast.check_format(full_check=True)


def test_csr_falls_back_to_the_constructor_for_unusual_arrays() -> None:
    data = np.array([1.0, 2.0])
    for indices, indptr in [(np.array([0, 1], np.int16), np.array([0, 1, 2], np.int16)),  # scipy widens to int32
                            (np.array([0, 1], np.int32), np.array([0, 1, 2], np.int64))]:  # mixed: int64
        fast = segments.csr(data, indices, indptr, (2, 2))
        ref = sp.csr_array((data, indices, indptr), shape=(2, 2), copy=False)
        assert fast.indices.dtype == ref.indices.dtype and fast.indptr.dtype == ref.indptr.dtype
    with pytest.raises(ValueError):
        segments.csr(data, np.array([0, 1], np.int32), np.array([0, 1], np.int32), (2, 2))  # indptr too short


def test_exponents_are_libm_log2s() -> None:
    """_exponents takes numpy's log2 except next to an integer, where libm's (math.log2) decides: the same
    exponents as math.log2 everywhere, powers of two and their neighbours included."""
    import math

    rng = np.random.default_rng(3)
    pow2 = np.ldexp(1.0, rng.integers(-30, 30, 300))
    peak = np.concatenate([rng.uniform(1e-6, 1e6, 3000), pow2, np.nextafter(pow2, 0), np.nextafter(pow2, np.inf)])
    m_max = np.where(rng.random(peak.size) < 0.5, 127.0, 32767.0)
    got = quantize_mod._exponents(peak, m_max, -64)
    over = peak > m_max
    ratio = np.where(over, peak / m_max, m_max / peak)
    want = [math.ceil(math.log2(r)) if o else -math.floor(math.log2(r)) for r, o in zip(ratio, over, strict=True)]
    assert got.tolist() == np.maximum(want, -64).tolist()
