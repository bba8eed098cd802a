"""One test per NIR node type: the composed projections and the float simulation are checked against
independent numpy computations written here (explicit loops, explicit Euler), not against neurocc itself.

One long module on purpose: each node type's test sits beside the independent computation it needs, and
those share a few small oracles (dense conv, Euler steps); split by node, the oracles would be copied.
"""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest

import neurocc

DT = 1e-3
BIG = 1e9  # a threshold nothing reaches: the membrane integrates freely


def graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def inp(*shape):
    return nir.Input(input_type={"input": np.array(shape)})


def out(*shape):
    return nir.Output(output_type={"output": np.array(shape)})


def spikes(rng, steps, *shape, p=0.3):
    return (rng.random((steps, *shape)) < p).astype(np.float32)


def integrator(shape=()):
    """An I neuron whose v after step t is the running sum of its input (dt * r = 1)."""
    return nir.I(r=np.full(shape, 1.0 / DT))


def only_projection(net, pre, post):
    projs = [p for p in net.projections if p.pre == pre and p.post == post]
    assert len(projs) == 1, [(p.pre, p.post) for p in net.projections]
    return projs[0]


def assert_v(got, want):
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)


# ---- independent references -----------------------------------------------------------------------------------

def ref_neurons(kind, p, drive, dt=DT):
    """NIR's ODEs stepped with forward Euler, written from the NIR definitions. drive: [T, n] input I."""
    steps, n = drive.shape
    v, i = np.zeros(n), np.zeros(n)
    vs, is_, ss = np.zeros((steps, n)), np.zeros((steps, n)), np.zeros((steps, n), bool)
    for t in range(steps):
        x = drive[t]
        if kind in ("LIF", "LI"):
            v = v + dt / p["tau"] * ((p["v_leak"] - v) + p["r"] * x)
        elif kind in ("CubaLIF", "CubaLI"):
            i = i + dt / p["tau_syn"] * (-i + p["w_in"] * x)
            v = v + dt / p["tau_mem"] * ((p["v_leak"] - v) + p["r"] * i)
        elif kind in ("IF", "I"):
            v = v + dt * p["r"] * x
        elif kind == "Threshold":
            v = x.copy()
        s = np.zeros(n, bool)
        if kind in ("LIF", "CubaLIF", "IF"):
            s = v > p["v_threshold"]
            v = np.where(s, p["v_reset"], v)
        elif kind == "Threshold":
            s = x > p["threshold"]
        vs[t], is_[t], ss[t] = v, i, s
    return vs, is_, ss


def ref_conv(x, w, b, stride, padding, dilation, groups):
    """Cross-correlation as torch defines it, by zero padding and strided/dilated slicing. x: (C_in, *spatial)."""
    nd = x.ndim - 1
    c_out, c_in_g = w.shape[:2]
    kernel = w.shape[2:]
    xp = np.pad(x, [(0, 0)] + [(padding[d], padding[d]) for d in range(nd)])
    out_sp = [(xp.shape[1 + d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1 for d in range(nd)]
    y = np.zeros((c_out, *out_sp))
    per_group = c_out // groups
    for co in range(c_out):
        g = co // per_group
        chans = xp[g * c_in_g:(g + 1) * c_in_g]
        for pos in np.ndindex(*out_sp):
            window = chans[(slice(None), *[
                slice(pos[d] * stride[d], pos[d] * stride[d] + dilation[d] * (kernel[d] - 1) + 1, dilation[d])
                for d in range(nd)])]
            y[(co, *pos)] = np.sum(window * w[co]) + b[co]
    return y


def ref_pool(x, kernel, stride, padding, average):
    xp = np.pad(x, [(0, 0), (padding[0], padding[0]), (padding[1], padding[1])])
    oh = (xp.shape[1] - kernel[0]) // stride[0] + 1
    ow = (xp.shape[2] - kernel[1]) // stride[1] + 1
    y = np.zeros((x.shape[0], oh, ow))
    for c in range(x.shape[0]):
        for i in range(oh):
            for j in range(ow):
                s = xp[c, i * stride[0]:i * stride[0] + kernel[0], j * stride[1]:j * stride[1] + kernel[1]].sum()
                y[c, i, j] = s / (kernel[0] * kernel[1]) if average else s
    return y


def matrix_of(fn, in_shape):
    """Dense (n_out, n_in) matrix and offset of an affine map, probed with unit vectors."""
    n_in = int(np.prod(in_shape))
    offset = fn(np.zeros(in_shape)).ravel()
    cols = [fn(np.eye(n_in)[j].reshape(in_shape)).ravel() - offset for j in range(n_in)]
    return np.stack(cols, axis=1), offset


# ---- Input / Output -------------------------------------------------------------------------------------------

def test_input_node_shape_and_raster():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 6))
    net = neurocc.load(graph({"in": inp(2, 3), "flat": nir.Flatten(start_dim=0, end_dim=-1, input_type=None),
                              "fc": nir.Linear(weight=w), "acc": integrator((4,)), "out": out(4)},
                             [("in", "flat"), ("flat", "fc"), ("fc", "acc"), ("acc", "out")]), dt=DT)
    pin = net.populations["in"]
    assert (pin.kind, pin.shape, net.inputs) == ("input", (2, 3), ["in"])
    assert np.array_equal(only_projection(net, "in", "acc").weights.toarray(), w)
    x = spikes(rng, 30, 2, 3)
    res = neurocc.simulate(net, x)
    flat = x.reshape(30, 6)
    assert np.array_equal(res.spikes["in"], flat.astype(bool))
    assert_v(res.v["acc"], np.cumsum(flat @ w.T, axis=0))
    # A flat raster [T, 6] is the same input.
    res2 = neurocc.simulate(net, flat)
    assert np.array_equal(res2.v["acc"], res.v["acc"])


def test_output_nodes_map_to_populations():
    rng = np.random.default_rng(1)
    w1, w2 = rng.normal(size=(6, 3)), rng.normal(size=(2, 6))
    lif = nir.LIF(tau=np.full((2, 3), 0.01), r=np.ones((2, 3)), v_leak=np.zeros((2, 3)),
                  v_threshold=np.full((2, 3), 0.3), v_reset=np.zeros((2, 3)))
    net = neurocc.load(graph({
        "in": inp(3), "fc": nir.Linear(weight=w1), "lif": lif, "flat": nir.Flatten(start_dim=0, end_dim=-1,
                                                                                 input_type=None),
        "ro": nir.Linear(weight=w2), "li": nir.LI(tau=np.full(2, 0.02), r=np.ones(2), v_leak=np.zeros(2)),
        "spk": out(6), "mem": out(2),
    }, [("in", "fc"), ("fc", "lif"), ("lif", "flat"), ("flat", "spk"), ("flat", "ro"), ("ro", "li"),
        ("li", "mem")]), dt=DT)
    assert net.outputs == {"spk": "lif", "mem": "li"}
    assert net.populations["lif"].shape == (2, 3)
    assert np.array_equal(only_projection(net, "lif", "li").weights.toarray(), w2)
    x = spikes(rng, 40, 3, p=0.5)
    res = neurocc.simulate(net, x)
    p = {k: v.ravel() for k, v in dict(tau=lif.tau, r=lif.r, v_leak=lif.v_leak, v_threshold=lif.v_threshold,
                                         v_reset=lif.v_reset).items()}
    v1, _, s1 = ref_neurons("LIF", p, x @ w1.T)
    assert s1.any()
    assert np.array_equal(res.spikes["lif"], s1)
    v2, _, _ = ref_neurons("LI", dict(tau=np.full(2, 0.02), r=np.ones(2), v_leak=np.zeros(2)), s1 @ w2.T)
    assert_v(res.v["li"], v2)


# ---- linear nodes -----------------------------------------------------------------------------------------------

def test_affine_weights_and_bias():
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=(4, 3)), rng.normal(size=4)
    net = neurocc.load(graph({"in": inp(3), "fc": nir.Affine(weight=w, bias=b), "acc": integrator((4,)),
                              "out": out(4)}, [("in", "fc"), ("fc", "acc"), ("acc", "out")]), dt=DT)
    proj = only_projection(net, "in", "acc")
    assert np.array_equal(proj.weights.toarray(), w)
    assert np.all(proj.delays == 0)
    assert np.array_equal(net.populations["acc"].bias, b)
    x = spikes(rng, 25, 3)
    res = neurocc.simulate(net, x)
    assert_v(res.v["acc"], np.cumsum(x @ w.T + b, axis=0))


def test_linear_weights_no_bias_and_zeros_dropped():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 4))
    w[1, 2] = w[3, 0] = 0.0
    lip = dict(tau=rng.uniform(0.005, 0.02, 5), r=rng.uniform(0.5, 2, 5), v_leak=rng.uniform(-0.2, 0.2, 5))
    net = neurocc.load(graph({"in": inp(4), "fc": nir.Linear(weight=w), "li": nir.LI(**lip), "out": out(5)},
                             [("in", "fc"), ("fc", "li"), ("li", "out")]), dt=DT)
    proj = only_projection(net, "in", "li")
    assert proj.n_synapses == 18
    assert np.array_equal(proj.weights.toarray(), w)
    assert net.populations["li"].bias is None
    x = spikes(rng, 40, 4)
    assert_v(neurocc.simulate(net, x).v["li"], ref_neurons("LI", lip, x @ w.T)[0])


def test_scale_is_a_diagonal():
    rng = np.random.default_rng(4)
    s = rng.normal(size=4)
    w = rng.normal(size=(3, 4))
    net = neurocc.load(graph({
        "in": inp(4), "sc": nir.Scale(scale=s), "acc": integrator((4,)), "fc": nir.Linear(weight=w),
        "sc2": nir.Scale(scale=np.array([2.0, -1.0, 0.5])), "acc2": integrator((3,)), "o1": out(4), "o2": out(3),
    }, [("in", "sc"), ("sc", "acc"), ("acc", "o1"), ("in", "fc"), ("fc", "sc2"), ("sc2", "acc2"),
        ("acc2", "o2")]), dt=DT)
    assert np.array_equal(only_projection(net, "in", "acc").weights.toarray(), np.diag(s))
    assert np.array_equal(only_projection(net, "in", "acc2").weights.toarray(),
                          np.array([2.0, -1.0, 0.5])[:, None] * w)
    x = spikes(rng, 20, 4)
    res = neurocc.simulate(net, x)
    assert_v(res.v["acc"], np.cumsum(x * s, axis=0))


def test_affine_scale_affine_fuses_into_one_projection():
    rng = np.random.default_rng(5)
    w1, b1 = rng.normal(size=(6, 4)), rng.normal(size=6)
    s = rng.normal(size=6)
    w2, b2 = rng.normal(size=(3, 6)), rng.normal(size=3)
    lif = dict(tau=np.full(3, 0.01), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.full(3, 0.4),
               v_reset=np.zeros(3))
    net = neurocc.load(graph({
        "in": inp(4), "a1": nir.Affine(weight=w1, bias=b1), "sc": nir.Scale(scale=s),
        "a2": nir.Affine(weight=w2, bias=b2), "lif": nir.LIF(**lif), "out": out(3),
    }, [("in", "a1"), ("a1", "sc"), ("sc", "a2"), ("a2", "lif"), ("lif", "out")]), dt=DT)
    assert list(net.populations) == ["in", "lif"]
    proj = only_projection(net, "in", "lif")
    fused_w = w2 @ np.diag(s) @ w1
    fused_b = w2 @ (s * b1) + b2
    np.testing.assert_allclose(proj.weights.toarray(), fused_w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(net.populations["lif"].bias, fused_b, rtol=1e-12, atol=1e-14)
    x = spikes(rng, 50, 4)
    v, _, s_ref = ref_neurons("LIF", lif, x @ fused_w.T + fused_b)
    res = neurocc.simulate(net, x)
    assert s_ref.any() and not s_ref.all()
    assert np.array_equal(res.spikes["lif"], s_ref)
    assert_v(res.v["lif"], v)


def test_parallel_edges_sum():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    net = neurocc.load(graph({"in": inp(4), "a": nir.Linear(weight=a), "b": nir.Affine(weight=b, bias=np.ones(3)),
                              "acc": integrator((3,)), "out": out(3)},
                             [("in", "a"), ("in", "b"), ("a", "acc"), ("b", "acc"), ("acc", "out")]), dt=DT)
    np.testing.assert_allclose(only_projection(net, "in", "acc").weights.toarray(), a + b, rtol=1e-15)
    assert np.array_equal(net.populations["acc"].bias, np.ones(3))


# ---- convolution and pooling ----------------------------------------------------------------------------------

CONV2D_CASES = {
    # name: (C_in, H, W, C_out, kernel, stride, padding, dilation, groups)
    "plain": (2, 6, 7, 3, (3, 3), (1, 1), (0, 0), (1, 1), 1),
    "stride_pad": (2, 7, 8, 3, (3, 2), (2, 1), (1, 2), (1, 1), 1),
    "groups": (4, 6, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 2),
    "dilation": (2, 9, 8, 2, (3, 2), (1, 2), (0, 1), (2, 3), 1),
    "all": (4, 9, 10, 4, (3, 3), (2, 3), (2, 1), (2, 2), 2),
    "depthwise": (3, 5, 5, 6, (2, 2), (1, 1), (1, 0), (1, 1), 3),
}


def _conv_net(conv, in_shape):
    return graph({"in": inp(*in_shape), "conv": conv, "acc": integrator(), "out": nir.Output(output_type=None)},
                 [("in", "conv"), ("conv", "acc"), ("acc", "out")])


@pytest.mark.parametrize("case", sorted(CONV2D_CASES))
def test_conv2d_matrix_bias_and_simulation(case):
    c_in, h, w_, c_out, k, stride, pad, dil, groups = CONV2D_CASES[case]
    rng = np.random.default_rng(7)
    w = rng.normal(size=(c_out, c_in // groups, *k))
    b = rng.normal(size=c_out)
    conv = nir.Conv2d(input_shape=(h, w_), weight=w, stride=stride, padding=pad, dilation=dil, groups=groups, bias=b)
    net = neurocc.load(_conv_net(conv, (c_in, h, w_)), dt=DT)

    fn = lambda x: ref_conv(x, w, b, stride, pad, dil, groups)  # noqa: E731
    y0 = fn(np.zeros((c_in, h, w_)))
    assert net.populations["acc"].shape == y0.shape
    mat, offset = matrix_of(fn, (c_in, h, w_))
    proj = only_projection(net, "in", "acc")
    np.testing.assert_allclose(proj.weights.toarray(), mat, rtol=0, atol=1e-12)
    assert proj.n_synapses == np.count_nonzero(mat)
    np.testing.assert_allclose(net.populations["acc"].bias, offset, rtol=0, atol=1e-12)
    assert proj.conv is not None and proj.conv.groups == groups and proj.conv.stride == stride
    np.testing.assert_array_equal(proj.conv.unrolled().toarray(), proj.weights.toarray())

    x = spikes(rng, 3, c_in, h, w_, p=0.4)
    res = neurocc.simulate(net, x)
    want = np.cumsum([fn(x[t]).ravel() for t in range(3)], axis=0)
    assert_v(res.v["acc"], want)


def test_conv2d_same_padding():
    rng = np.random.default_rng(8)
    w, b = rng.normal(size=(2, 2, 3, 3)), np.zeros(2)
    conv = nir.Conv2d(input_shape=(5, 6), weight=w, stride=1, padding="same", dilation=2, groups=1, bias=b)
    net = neurocc.load(_conv_net(conv, (2, 5, 6)), dt=DT)
    assert net.populations["acc"].shape == (2, 5, 6)
    mat, _ = matrix_of(lambda x: ref_conv(x, w, b, (1, 1), (2, 2), (2, 2), 1), (2, 5, 6))
    np.testing.assert_allclose(only_projection(net, "in", "acc").weights.toarray(), mat, rtol=0, atol=1e-12)


def test_conv2d_without_input_shape_is_inferred_with_one_warning():
    rng = np.random.default_rng(9)
    w, b = rng.normal(size=(3, 2, 2, 2)), rng.normal(size=3)
    conv = nir.Conv2d(input_shape=None, weight=w, stride=2, padding=1, dilation=1, groups=1, bias=b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = neurocc.load(_conv_net(conv, (2, 5, 4)), dt=DT)
    msgs = [str(c.message) for c in caught if issubclass(c.category, neurocc.NeuroccWarning)]
    assert len(msgs) == 1 and "input_shape" in msgs[0] and "'conv'" in msgs[0]
    mat, offset = matrix_of(lambda x: ref_conv(x, w, b, (2, 2), (1, 1), (1, 1), 1), (2, 5, 4))
    np.testing.assert_allclose(only_projection(net, "in", "acc").weights.toarray(), mat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.populations["acc"].bias, offset, atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 2, 2), (3, 2, 1, 2)])
def test_conv1d_matrix_bias_and_simulation(stride, padding, dilation, groups):
    rng = np.random.default_rng(10)
    c_in, length, c_out = 4, 11, 6
    w, b = rng.normal(size=(c_out, c_in // groups, 3)), rng.normal(size=c_out)
    conv = nir.Conv1d(input_shape=length, weight=w, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, bias=b)
    net = neurocc.load(_conv_net(conv, (c_in, length)), dt=DT)
    fn = lambda x: ref_conv(x, w, b, (stride,), (padding,), (dilation,), groups)  # noqa: E731
    mat, offset = matrix_of(fn, (c_in, length))
    assert net.populations["acc"].shape == fn(np.zeros((c_in, length))).shape
    np.testing.assert_allclose(only_projection(net, "in", "acc").weights.toarray(), mat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.populations["acc"].bias, offset, rtol=0, atol=1e-12)
    x = spikes(rng, 2, c_in, length, p=0.5)
    assert_v(neurocc.simulate(net, x).v["acc"], np.cumsum([fn(x[t]).ravel() for t in range(2)], axis=0))


POOL_CASES = [((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 0)), ((2, 3), (2, 1), (1, 1))]


@pytest.mark.parametrize("kind", ["SumPool2d", "AvgPool2d"])
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_pooling_matrix_and_simulation(kind, kernel, stride, padding):
    rng = np.random.default_rng(11)
    shape = (3, 6, 7)
    pool = getattr(nir, kind)(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
    net = neurocc.load(_conv_net(pool, shape), dt=DT)
    fn = lambda x: ref_pool(x, kernel, stride, padding, kind == "AvgPool2d")  # noqa: E731
    mat, offset = matrix_of(fn, shape)
    assert not offset.any()
    assert net.populations["acc"].shape == fn(np.zeros(shape)).shape
    np.testing.assert_allclose(only_projection(net, "in", "acc").weights.toarray(), mat, rtol=1e-15, atol=0)
    x = spikes(rng, 3, *shape, p=0.5)
    assert_v(neurocc.simulate(net, x).v["acc"], np.cumsum([fn(x[t]).ravel() for t in range(3)], axis=0))


def test_pool_after_conv_composes():
    """Conv2d -> IF -> SumPool2d -> AvgPool2d: the two pools compose into one projection IF -> I."""
    rng = np.random.default_rng(12)
    w = rng.normal(size=(2, 1, 3, 3))
    net = neurocc.load(graph({
        "in": inp(1, 6, 6), "conv": nir.Conv2d(input_shape=(6, 6), weight=w, stride=1, padding=1, dilation=1,
                                               groups=1, bias=np.zeros(2)),
        "if": nir.IF(r=np.array(1 / DT), v_threshold=np.array(0.5), v_reset=np.array(0.0)),
        "sp": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "ap": nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([1, 1]), padding=np.array([1, 1])),
        "acc": integrator(), "out": nir.Output(output_type=None),
    }, [("in", "conv"), ("conv", "if"), ("if", "sp"), ("sp", "ap"), ("ap", "acc"), ("acc", "out")]), dt=DT)
    mat, _ = matrix_of(lambda x: ref_pool(ref_pool(x, (2, 2), (2, 2), (0, 0), False), (3, 3), (1, 1), (1, 1), True),
                       (2, 6, 6))
    assert net.populations["acc"].shape == (2, 3, 3)
    np.testing.assert_allclose(only_projection(net, "if", "acc").weights.toarray(), mat, rtol=1e-14, atol=0)


# ---- Flatten --------------------------------------------------------------------------------------------------

def test_flatten_shapes_and_c_order():
    rng = np.random.default_rng(13)
    net = neurocc.load(graph({"in": inp(2, 3, 4), "fl": nir.Flatten(start_dim=1, end_dim=2, input_type=None),
                              "acc": integrator(), "out": nir.Output(output_type=None)},
                             [("in", "fl"), ("fl", "acc"), ("acc", "out")]), dt=DT)
    assert net.populations["acc"].shape == (2, 12)
    assert np.array_equal(only_projection(net, "in", "acc").weights.toarray(), np.eye(24))

    # Conv2d -> Flatten -> Linear: the Linear's column j is C-order position j of the conv output.
    w, b = rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2)
    fc = rng.normal(size=(3, 2 * 2 * 3))
    net = neurocc.load(graph({
        "in": inp(1, 3, 4), "conv": nir.Conv2d(input_shape=(3, 4), weight=w, stride=1, padding=0, dilation=1,
                                               groups=1, bias=b),
        "fl": nir.Flatten(start_dim=0, end_dim=-1, input_type=None), "fc": nir.Linear(weight=fc),
        "acc": integrator((3,)), "out": out(3),
    }, [("in", "conv"), ("conv", "fl"), ("fl", "fc"), ("fc", "acc"), ("acc", "out")]), dt=DT)
    mat, offset = matrix_of(lambda x: fc @ ref_conv(x, w, b, (1, 1), (0, 0), (1, 1), 1).ravel(), (1, 3, 4))
    np.testing.assert_allclose(only_projection(net, "in", "acc").weights.toarray(), mat, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.populations["acc"].bias, offset, rtol=1e-12, atol=1e-12)


# ---- Delay ----------------------------------------------------------------------------------------------------

def _delayed_drive(x, w, d):
    """I[t, i] = sum_j w[i, j] x[t - d[i, j], j] (zero before the start)."""
    steps = x.shape[0]
    drive = np.zeros((steps, w.shape[0]))
    for t in range(steps):
        for i, j in zip(*np.nonzero(w), strict=True):
            if t - d[i, j] >= 0:
                drive[t, i] += w[i, j] * x[t - d[i, j], j]
    return drive


def test_delay_branches_merge_into_one_projection():
    rng = np.random.default_rng(14)
    n_pre, n_post = 5, 6
    mask = rng.permutation(np.arange(n_pre * n_post) % 4).reshape(n_post, n_pre)
    nodes = {"in": inp(n_pre), "acc": integrator((n_post,)), "out": out(n_post)}
    edges = [("acc", "out")]
    w_all, d_all = np.zeros((n_post, n_pre)), np.zeros((n_post, n_pre), np.int64)
    for k, steps in enumerate((0, 2, 5)):
        wk = rng.normal(size=(n_post, n_pre)) * (mask == k)
        nodes[f"w{k}"] = nir.Linear(weight=wk)
        if steps:
            nodes[f"d{k}"] = nir.Delay(delay=np.full(n_pre, steps * DT))
            edges += [("in", f"d{k}"), (f"d{k}", f"w{k}")]
        else:
            edges.append(("in", f"w{k}"))
        edges.append((f"w{k}", "acc"))
        w_all += wk
        d_all[mask == k] = steps
    # A fourth branch with one delay per pre neuron.
    per_pre = np.array([1, 4, 0, 3, 7])
    wv = rng.normal(size=(n_post, n_pre)) * (mask == 3)
    nodes.update(dv=nir.Delay(delay=per_pre * DT), wv=nir.Linear(weight=wv))
    edges += [("in", "dv"), ("dv", "wv"), ("wv", "acc")]
    w_all += wv
    d_all[mask == 3] = np.broadcast_to(per_pre, (n_post, n_pre))[mask == 3]

    net = neurocc.load(graph(nodes, edges), dt=DT)
    proj = only_projection(net, "in", "acc")
    assert np.array_equal(proj.weights.toarray(), w_all)
    rows, cols, vals, dels = proj.coo()
    assert dels.dtype == np.int64
    assert np.array_equal(dels, d_all[rows, cols])
    assert proj.max_delay == 7

    x = spikes(rng, 30, n_pre)
    drive = _delayed_drive(x, w_all, d_all)
    assert_v(neurocc.simulate(net, x).v["acc"], np.cumsum(drive, axis=0))
    # Hardware latency: one more step on every synapse.
    assert_v(neurocc.simulate(net, x, latency="hardware").v["acc"], np.cumsum(_delayed_drive(x, w_all, d_all + 1), 0))


def test_delay_overlapping_branches_keep_every_synapse():
    rng = np.random.default_rng(15)
    w0, w3 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    net = neurocc.load(graph({
        "in": inp(4), "w0": nir.Linear(weight=w0), "d3": nir.Delay(delay=np.full(4, 3 * DT)),
        "w3": nir.Linear(weight=w3), "acc": integrator((3,)), "out": out(3),
    }, [("in", "w0"), ("w0", "acc"), ("in", "d3"), ("d3", "w3"), ("w3", "acc"), ("acc", "out")]), dt=DT)
    projs = [p for p in net.projections if (p.pre, p.post) == ("in", "acc")]
    assert len(projs) == 2
    by_delay = {int(p.delays[0]): p for p in projs}
    assert set(by_delay) == {0, 3} and all(len(set(p.delays.tolist())) == 1 for p in projs)
    assert np.array_equal(by_delay[0].weights.toarray(), w0)
    assert np.array_equal(by_delay[3].weights.toarray(), w3)
    x = spikes(rng, 20, 4)
    want = x @ w0.T + np.vstack([np.zeros((3, 4)), x[:-3]]) @ w3.T
    assert_v(neurocc.simulate(net, x).v["acc"], np.cumsum(want, axis=0))


def test_delay_shifts_spike_arrival_by_exactly_d_steps():
    rng = np.random.default_rng(16)
    d = np.array([0, 1, 3, 6])
    net = neurocc.load(graph({
        "in": inp(4), "dl": nir.Delay(delay=d * DT), "eye": nir.Linear(weight=np.eye(4)),
        "relay": nir.IF(r=np.full(4, 1 / DT), v_threshold=np.full(4, 0.5), v_reset=np.zeros(4)), "out": out(4),
    }, [("in", "dl"), ("dl", "eye"), ("eye", "relay"), ("relay", "out")]), dt=DT)
    x = spikes(rng, 40, 4, p=0.4)
    for latency, extra in (("framework", 0), ("hardware", 1)):
        got = neurocc.simulate(net, x, latency=latency).spikes["relay"]
        want = np.zeros_like(got)
        for j in range(4):
            s = d[j] + extra
            want[s:, j] = x[:40 - s, j] > 0
        assert np.array_equal(got, want), latency


def test_delay_not_a_multiple_of_dt_rounds_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = neurocc.load(graph({"in": inp(2), "dl": nir.Delay(delay=np.array([2.4e-3, 0.6e-3])),
                                  "w": nir.Linear(weight=np.eye(2)), "acc": integrator((2,)), "out": out(2)},
                                 [("in", "dl"), ("dl", "w"), ("w", "acc"), ("acc", "out")]), dt=DT)
    msgs = [str(c.message) for c in caught if issubclass(c.category, neurocc.NeuroccWarning)]
    assert len(msgs) == 1 and "'dl'" in msgs[0] and "rounded" in msgs[0]
    rows, _, _, dels = only_projection(net, "in", "acc").coo()
    assert dels[rows == 0].tolist() == [2] and dels[rows == 1].tolist() == [1]


# ---- neurons --------------------------------------------------------------------------------------------------

def _neuron_params(kind, n, rng):
    p = {
        "LIF": dict(tau=rng.uniform(0.004, 0.02, n), r=rng.uniform(0.5, 3, n), v_leak=rng.uniform(-0.1, 0.2, n),
                    v_threshold=rng.uniform(0.3, 0.8, n), v_reset=rng.uniform(-0.3, 0.1, n)),
        "LI": dict(tau=rng.uniform(0.004, 0.02, n), r=rng.uniform(0.5, 3, n), v_leak=rng.uniform(-0.1, 0.2, n)),
        "IF": dict(r=rng.uniform(100, 400, n), v_threshold=rng.uniform(0.3, 0.8, n), v_reset=rng.uniform(-0.2, 0, n)),
        "I": dict(r=rng.uniform(100, 400, n)),
        "CubaLIF": dict(tau_syn=rng.uniform(0.002, 0.008, n), tau_mem=rng.uniform(0.01, 0.03, n),
                        r=rng.uniform(1, 4, n), v_leak=rng.uniform(-0.1, 0.1, n), v_threshold=rng.uniform(0.2, 0.5, n),
                        v_reset=rng.uniform(-0.2, 0, n), w_in=rng.uniform(0.5, 2, n)),
        "CubaLI": dict(tau_syn=rng.uniform(0.002, 0.008, n), tau_mem=rng.uniform(0.01, 0.03, n),
                       r=rng.uniform(1, 4, n), v_leak=rng.uniform(-0.1, 0.1, n), w_in=rng.uniform(0.5, 2, n)),
        "Threshold": dict(threshold=rng.uniform(-0.5, 0.5, n)),
    }
    return p[kind]


@pytest.mark.parametrize("kind", ["I", "IF", "LI", "LIF", "CubaLI", "CubaLIF", "Threshold"])
def test_neuron_kind_matches_euler_reference(kind):
    rng = np.random.default_rng(17)
    n, n_in, steps = 6, 5, 80
    w, b = rng.normal(0.5, 1.5, (n, n_in)), rng.normal(0, 0.3, n)
    p = _neuron_params(kind, n, rng)
    net = neurocc.load(graph({"in": inp(n_in), "fc": nir.Affine(weight=w, bias=b), "nrn": getattr(nir, kind)(**p),
                              "out": out(n)}, [("in", "fc"), ("fc", "nrn"), ("nrn", "out")]), dt=DT)
    pop = net.populations["nrn"]
    assert pop.kind == kind and pop.shape == (n,)
    for key, val in p.items():
        assert np.array_equal(pop.params[key], val), key
    x = spikes(rng, steps, n_in)
    v, i, s = ref_neurons(kind, p, x @ w.T + b)
    res = neurocc.simulate(net, x)
    assert np.array_equal(res.spikes["nrn"], s)
    if kind in ("LIF", "IF", "CubaLIF", "Threshold"):
        assert 0 < s.sum() < s.size, "the test should exercise both spiking and silent steps"
    else:
        assert not s.any()
    if kind != "Threshold":
        assert_v(res.v["nrn"], v)
    if kind.startswith("Cuba"):
        assert_v(res.i["nrn"], i)


def test_lif_exp_discretization():
    rng = np.random.default_rng(18)
    n = 5
    tau, r, vl = rng.uniform(2, 8, n), rng.uniform(0.5, 2, n), rng.uniform(-0.1, 0.1, n)
    w = rng.normal(0.5, 1.0, (n, 3))
    net = neurocc.load(graph({"in": inp(3), "fc": nir.Linear(weight=w),
                              "lif": nir.LIF(tau=tau, r=r, v_leak=vl, v_threshold=np.full(n, 0.4),
                                             v_reset=np.zeros(n)), "out": out(n)},
                             [("in", "fc"), ("fc", "lif"), ("lif", "out")]), dt=1.0, discretization="exp")
    assert (net.dt, net.discretization) == (1.0, "exp")
    x = spikes(rng, 60, 3)
    v, vs, ss = np.zeros(n), [], []
    for t in range(60):
        a = np.exp(-1.0 / tau)
        v = vl + (v - vl) * a + (1 - a) * r * (w @ x[t])  # exact solution with the input held over the step
        s = v > 0.4
        v = np.where(s, 0.0, v)
        vs.append(v)
        ss.append(s)
    res = neurocc.simulate(net, x)
    assert np.array_equal(res.spikes["lif"], np.array(ss)) and np.any(ss)
    assert_v(res.v["lif"], np.array(vs))


# ---- recurrence and nested graphs -----------------------------------------------------------------------------

def test_recurrent_edges_take_one_step():
    rng = np.random.default_rng(19)
    n_in, n, m, steps = 4, 7, 3, 80
    w_in, w_rec, b_rec = rng.normal(1.0, 2.0, (n, n_in)), rng.normal(0, 1.0, (n, n)), rng.normal(0, 0.2, n)
    w_rd = rng.normal(0, 1.0, (n, n))
    w_out = rng.normal(0, 1.0, (m, n))
    lif = _neuron_params("LIF", n, rng)
    li = _neuron_params("LI", m, rng)
    net = neurocc.load(graph({
        "in": inp(n_in), "w_in": nir.Linear(weight=w_in), "lif": nir.LIF(**lif),
        "w_rec": nir.Affine(weight=w_rec, bias=b_rec), "dly": nir.Delay(delay=np.full(n, 2 * DT)),
        "w_rd": nir.Linear(weight=w_rd), "w_out": nir.Linear(weight=w_out), "li": nir.LI(**li), "out": out(m),
    }, [("lif", "w_rec"), ("w_rec", "lif"), ("in", "w_in"), ("w_in", "lif"), ("lif", "dly"), ("dly", "w_rd"),
        ("w_rd", "lif"), ("lif", "w_out"), ("w_out", "li"), ("li", "out")]), dt=DT)
    rec = sorted((p for p in net.projections if p.pre == p.post == "lif"), key=lambda p: p.max_delay)
    assert len(rec) == 2
    assert np.array_equal(rec[0].weights.toarray(), w_rec) and not rec[0].delays.any()
    assert np.array_equal(rec[1].weights.toarray(), w_rd) and np.all(rec[1].delays == 2)
    assert np.array_equal(net.populations["lif"].bias, b_rec)

    x = spikes(rng, steps, n_in)
    v, s_hist, vs, ss = np.zeros(n), np.zeros((steps, n), bool), np.zeros((steps, n)), np.zeros((steps, n), bool)
    for t in range(steps):
        drive = w_in @ x[t] + b_rec
        if t >= 1:
            drive += w_rec @ s_hist[t - 1]  # a recurrent spike arrives one step later
        if t >= 3:
            drive += w_rd @ s_hist[t - 3]  # ... plus its 2-step delay
        v = v + DT / lif["tau"] * ((lif["v_leak"] - v) + lif["r"] * drive)
        s = v > lif["v_threshold"]
        v = np.where(s, lif["v_reset"], v)
        s_hist[t], vs[t], ss[t] = s, v, s
    res = neurocc.simulate(net, x)
    assert 0 < ss.sum() < ss.size
    assert np.array_equal(res.spikes["lif"], ss)
    assert_v(res.v["lif"], vs)
    assert_v(res.v["li"], ref_neurons("LI", li, ss @ w_out.T)[0])


def _block(w, w_rec, lif):
    n = w.shape[0]
    return graph({"input": inp(w.shape[1]), "lin": nir.Linear(weight=w), "lif": nir.LIF(**lif),
                  "rec": nir.Linear(weight=w_rec), "output": out(n)},
                 [("input", "lin"), ("lin", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")])


def test_nested_nirgraph_with_internal_cycle():
    rng = np.random.default_rng(20)
    n_in, n, steps = 3, 6, 60
    w, w_rec = rng.normal(1.0, 2.0, (n, n_in)), rng.normal(0, 1.0, (n, n))
    w_ro = rng.normal(size=(2, n))
    lif = _neuron_params("LIF", n, rng)
    li = _neuron_params("LI", 2, rng)
    nested = graph({"in": inp(n_in), "blk": _block(w, w_rec, lif), "ro": nir.Linear(weight=w_ro),
                    "li": nir.LI(**li), "out": out(2)},
                   [("in", "blk"), ("blk", "ro"), ("ro", "li"), ("li", "out")])
    net = neurocc.load(nested, dt=DT)
    assert set(net.populations) == {"in", "blk.lif", "li"}
    assert net.outputs == {"out": "li"}
    assert np.array_equal(only_projection(net, "in", "blk.lif").weights.toarray(), w)
    assert np.array_equal(only_projection(net, "blk.lif", "blk.lif").weights.toarray(), w_rec)
    assert np.array_equal(only_projection(net, "blk.lif", "li").weights.toarray(), w_ro)

    x = spikes(rng, steps, n_in)
    v, prev, ss = np.zeros(n), np.zeros(n), []
    for t in range(steps):
        v = v + DT / lif["tau"] * ((lif["v_leak"] - v) + lif["r"] * (w @ x[t] + w_rec @ prev))
        prev = v > lif["v_threshold"]
        v = np.where(prev, lif["v_reset"], v)
        ss.append(prev)
    ss = np.array(ss)
    res = neurocc.simulate(net, x)
    assert 0 < ss.sum() < ss.size
    assert np.array_equal(res.spikes["blk.lif"], ss)
    assert_v(res.v["li"], ref_neurons("LI", li, ss @ w_ro.T)[0])

    # The same network written flat gives the same numbers.
    flat = graph({"in": inp(n_in), "lin": nir.Linear(weight=w), "lif": nir.LIF(**lif), "rec": nir.Linear(weight=w_rec),
                  "ro": nir.Linear(weight=w_ro), "li": nir.LI(**li), "out": out(2)},
                 [("in", "lin"), ("lin", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "ro"), ("ro", "li"),
                  ("li", "out")])
    res_flat = neurocc.simulate(neurocc.load(flat, dt=DT), x)
    assert np.array_equal(res_flat.spikes["lif"], res.spikes["blk.lif"])
    assert np.array_equal(res_flat.v["li"], res.v["li"])


def test_nested_nirgraph_from_file_roundtrip(tmp_path):
    """A nested graph written by nir.write and read back from disk gives the same network."""
    rng = np.random.default_rng(21)
    w, w_rec = rng.normal(1.0, 2.0, (4, 3)), rng.normal(0, 1.0, (4, 4))
    lif = _neuron_params("LIF", 4, rng)
    g = graph({"in": inp(3), "blk": _block(w, w_rec, lif), "out": out(4)}, [("in", "blk"), ("blk", "out")])
    nir.write(tmp_path / "nested.nir", g)
    a, b = neurocc.load(g, dt=DT), neurocc.load(tmp_path / "nested.nir", dt=DT)
    assert set(a.populations) == set(b.populations) == {"in", "blk.lif"}
    x = spikes(rng, 30, 3)
    assert np.array_equal(neurocc.simulate(a, x).spikes["blk.lif"], neurocc.simulate(b, x).spikes["blk.lif"])
