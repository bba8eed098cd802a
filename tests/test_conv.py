"""Convolution as a weight-shared projection: frontend, kernel quantization, reference scatter, partition.

The shared-kernel path is checked against the unrolled projection it replaces (`Conv.unrolled()`, and
`simulate_int(..., unrolled=True)`), and the unrolled matrix against an independent numpy convolution.
The executors' checks against the reference are in each backend's conv tests.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import neurocc
from neurocc.compiler.ir.conv import Conv, Pool
from neurocc.compiler.passes.lower import lower
from neurocc.compiler.passes.partition import conv_slice_bytes
from neurocc.compiler.passes.quantize import quantize
from neurocc.compiler.targets.target import load_target
from neurocc.runtime.simulator import simulate_int
from neurocc.workloads import nmnist_cnn_graph

from .conftest import graph, inp, out, target_toml_with
from .strategies import conv_networks
from .test_frontend_nodes import ref_conv

FORMATS = ("loihi2", "spinnaker2", "stm32f405")


def _integer(net, target: str):
    return quantize(lower(net), load_target(target))


def _conv_projection(inet, post: str = "lif1"):
    return next((p for p in inet.projections if p.post == post), None)


@settings(max_examples=40, deadline=None)
@given(case=conv_networks(), target=st.sampled_from(FORMATS))
def test_shared_kernel_equals_unrolled(case, target: str) -> None:
    """Every conv shape the strategy draws keeps its kernel, and scattering it per spike gives the unrolled
    projection's spikes, voltages and currents, bit for bit, in each target's integer format."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(case.graph, dt=1e-3)
    inet = _integer(net, target)
    conv_proj = _conv_projection(inet)
    if conv_proj is None:  # every tap lands in the padding: no synapse, no projection, in the float net too
        assert not any(p.post == "lif1" for p in net.projections)
        assume(False)
    assert conv_proj.conv is not None, "the conv projection lost its kernel"
    if case.pool != "before":  # (a pool before a pool-like conv merges into one window instead of a prefix)
        assert conv_proj.conv.pool is None
    np.testing.assert_array_equal(conv_proj.conv.unrolled().toarray(), conv_proj.weights.toarray())
    if case.pool == "linear" and _conv_projection(inet, "lif2") is not None:
        fc = _conv_projection(inet, "lif2")
        assert fc.conv is not None and fc.conv.pool is not None and fc.conv.out_shape[1:] == (1, 1)
    raster = case.raster.reshape(case.raster.shape[0], -1)
    shared = simulate_int(inet, raster)
    unrolled = simulate_int(inet, raster, unrolled=True)
    for name in shared.spikes:
        assert np.array_equal(shared.spikes[name], unrolled.spikes[name]), name
    for name in shared.v:
        assert np.array_equal(shared.v[name], unrolled.v[name]) and np.array_equal(shared.i[name], unrolled.i[name])


@st.composite
def convs(draw: st.DrawFn) -> Conv:
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    groups = draw(st.sampled_from([1, 2, 3]))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride, dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    pool = Pool((2, 2), (2, 2), (0, 0)) if draw(st.booleans()) else None
    h, w = draw(st.integers(6, 12)), draw(st.integers(6, 12))
    ph, pw = (h // 2, w // 2) if pool else (h, w)
    out_hw = [(n + 2 * pad[d] - dil[d] * (k[d] - 1) - 1) // stride[d] + 1 for d, n in enumerate((ph, pw))]
    from hypothesis import assume
    assume(min(out_hw) >= 1)
    kernel = rng.integers(-5, 6, (c_out, c_in // groups, *k))
    return Conv(kernel, (c_in, h, w), (c_out, *out_hw), stride, pad, dil, groups, pool)


@settings(max_examples=80, deadline=None)
@given(conv=convs())
def test_unrolled_is_the_convolution(conv: Conv) -> None:
    """Conv.unrolled() (the cross-check every path is held to) is torch's cross-correlation: on random integer
    inputs it gives an independent numpy convolution's output (after a sum pool, when the conv has a prefix)."""
    c_in, h, w = conv.in_shape
    mat = conv.unrolled().toarray()

    def reference(x: np.ndarray) -> np.ndarray:
        if conv.pool is not None:
            x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(c_in, h // 2, 2, w // 2, 2).sum(axis=(2, 4))
        return ref_conv(x, conv.kernel.astype(float), np.zeros(conv.out_shape[0]), conv.stride, conv.padding,
                        conv.dilation, conv.groups)

    rng = np.random.default_rng(conv.n_in)
    for _ in range(3):
        x = rng.integers(0, 4, conv.n_in).astype(float)
        np.testing.assert_array_equal(mat @ x, reference(x.reshape(conv.in_shape)).ravel())


def test_composite_is_exact_or_refused() -> None:
    """A pool prefix merges into one larger kernel where that is exact, and is refused where the pool leaves a
    row over (a border the merged kernel would read as input)."""
    rng = np.random.default_rng(0)
    kernel = rng.integers(-3, 4, (2, 2, 3, 3))
    tiled = Conv(kernel, (2, 8, 8), (2, 4, 4), (1, 1), (1, 1), (1, 1), 1, Pool((2, 2), (2, 2), (0, 0)))
    merged = tiled.composite()
    assert merged is not None and merged.kernel.shape == (2, 2, 6, 6) and merged.stride == (2, 2)
    np.testing.assert_array_equal(merged.unrolled().toarray(), tiled.unrolled().toarray())
    leftover = Conv(kernel, (2, 9, 9), (2, 4, 4), (1, 1), (1, 1), (1, 1), 1, Pool((2, 2), (2, 2), (0, 0)))
    assert leftover.composite() is None


# ---- the N-MNIST CNN: kernels stored once, cores at the neuron bound -------------------------------------------

@pytest.fixture(scope="module")
def nmnist():
    return neurocc.load(nmnist_cnn_graph(seed=0), dt=1.0, discretization="exp")


def test_nmnist_keeps_every_conv_kernel(nmnist) -> None:
    kinds = [(p.pre, p.post, p.conv.label if p.conv is not None else "sparse") for p in nmnist.projections]
    assert kinds == [("input", "if1", "conv5x5/s2x2"), ("if1", "if2", "conv3x3/s1x1"),
                     ("if2", "if3", "pool2x2+conv3x3/s1x1"), ("if3", "if4", "pool2x2+conv4x4/s1x1"),
                     ("if4", "if5", "sparse")]
    stored = sum(p.conv.kernel.size for p in nmnist.projections if p.conv is not None)
    unrolled = sum(p.n_synapses for p in nmnist.projections if p.conv is not None)
    assert stored == 16 * 2 * 25 + 16 * 16 * 9 + 8 * 16 * 9 + 256 * 8 * 16
    assert unrolled > 30 * stored


@pytest.mark.parametrize("target,limit", [("loihi1", 12), ("loihi2", 12), ("spinnaker1", 38), ("spinnaker2", 38)])
def test_nmnist_cores_at_the_neuron_bound(nmnist, target: str, limit: int) -> None:
    """8,970 neurons need ceil(8,970 / neurons per core) cores, plus the input source (issue 12's bound)."""
    mapping = neurocc.compile(nmnist, target, progress=False)
    per_core = load_target(target).core.neurons
    bound = math.ceil(nmnist.n_neurons / per_core) + 1
    cores = len({(s.chip, s.core) for s in mapping.slices})
    assert nmnist.n_neurons == 8970
    assert bound <= cores <= limit, (cores, bound)
    for s, use in zip(mapping.slices, mapping.usage, strict=True):
        convs = [p for p in mapping.network.incoming(s.population) if p.conv is not None]
        if convs and s.role == "neurons":
            per_channel = convs[0].conv.out_shape[1] * convs[0].conv.out_shape[2]
            assert s.start % per_channel == 0, s.label  # whole channel groups (N-MNIST's divide evenly)
            # the kernels of the slice's channels once (and a header), not a row per source neuron
            kernel = conv_slice_bytes(mapping.target, convs[0], np.array([s.start]), np.array([s.stop]))[0]
            assert use.synapse_bytes == kernel < use.synapses, (s.label, use.synapse_bytes)


# ---- named errors -------------------------------------------------------------------------------------------------

def _conv_graph(in_shape: tuple[int, ...], weight: np.ndarray, **kw) -> nir.NIRGraph:
    conv = nir.Conv2d(input_shape=in_shape[1:], weight=weight, stride=kw.get("stride", 1),
                      padding=kw.get("padding", 0), dilation=kw.get("dilation", 1), groups=kw.get("groups", 1),
                      bias=np.zeros(weight.shape[0]))
    shape = (weight.shape[0], 1, 1)
    return graph({"in": inp(*in_shape), "conv": conv,
                  "if": nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape)),
                  "out": out(*shape)}, [("in", "conv"), ("conv", "if"), ("if", "out")])


def test_kernel_larger_than_the_padded_input_is_named() -> None:
    with pytest.raises(neurocc.GraphError, match=r"kernel extent \[7, 7\] is larger than the padded input \[6, 6\]"):
        neurocc.load(_conv_graph((1, 4, 4), np.ones((1, 1, 7, 7)), padding=1), dt=1.0)


def test_inconsistent_shapes_are_named() -> None:
    with pytest.raises(neurocc.GraphError, match="expects 3 channels"):
        neurocc.load(_conv_graph((2, 5, 5), np.ones((1, 3, 3, 3))), dt=1.0)


def test_groups_must_divide_the_channels() -> None:
    with pytest.raises(neurocc.ParameterError, match="groups=2 does not divide 3 output channels"):
        neurocc.load(_conv_graph((4, 5, 5), np.ones((3, 2, 3, 3)), groups=2), dt=1.0)


def test_a_kernel_larger_than_a_core_is_named(tmp_path: Path) -> None:
    """One output channel's kernel over 64 input channels of 7x7 (3,136 weights) does not fit a core of 2 KiB."""
    net = neurocc.load(_conv_graph((64, 7, 7), np.full((2, 64, 7, 7), 0.01)), dt=1.0)
    assert net.projections[0].conv is not None
    small = target_toml_with("loihi2", tmp_path / "small.toml", synapse_memory_bytes=2048)
    with pytest.raises(neurocc.TargetError, match=r"7x7 conv 64->2 ch .* needs \d+ bytes .* over .* 2048 bytes"):
        neurocc.compile(net, str(small), progress=False)


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_dvs_gesture_cnn_compiles_at_the_neuron_bound(target: str) -> None:
    """NeuroBench's DVS-gesture CNN (7,179 neurons): every conv keeps its kernel, and the cores are the neuron
    bound plus the input source (Massa et al. 2020 report 37 Loihi cores for their, larger, network)."""
    from neurocc.workloads import dvs_gesture_cnn_graph

    net = neurocc.load(dvs_gesture_cnn_graph(seed=0), dt=1e-3)
    assert [p.conv is not None for p in net.projections] == [True, True, True, False]
    mapping = neurocc.compile(net, target, progress=False)
    cores = len({(s.chip, s.core) for s in mapping.slices})
    assert net.n_neurons == 7179
    assert cores == math.ceil(7179 / load_target(target).core.neurons) + 1 == 9


def test_quantization_report_covers_conv_kernels(nmnist) -> None:
    """Per projection: the kernel's stored weights, exponent and error (8-bit Loihi: ~1.5%; 16-bit SpiNNaker
    far below), and the conv layers' populations in the spike agreement."""
    x = (np.random.default_rng(0).random((10, 2, 34, 34)) < 0.05).astype(np.float32)
    for target, bound in (("loihi2", 0.03), ("spinnaker2", 0.001)):
        report = neurocc.quantization_report(nmnist, target, x)
        rows = {(r.pre, r.post): r for r in report.weights}
        assert rows[("if3", "if4")].kind == "pool2x2+conv4x4/s1x1" and rows[("if3", "if4")].stored == 32768
        assert all(0 < r.rel_rms_error < bound for r in report.weights), [(r.kind, r.rel_rms_error) for r in
                                                                           report.weights]
        assert {"if1", "if2", "if3"} <= {p.population for p in report.populations}
        assert "pool2x2+conv3x3/s1x1" in report.text()
