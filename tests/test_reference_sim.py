"""The integer reference simulator against Lava's arithmetic, written out independently."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from neurocc.compiler.ir import IntNetwork, IntPopulation, IntProjection, lif
from neurocc.compiler.targets.target import load_target
from neurocc.runtime.simulator import simulate_int


def _net(w: np.ndarray, d: np.ndarray, du: int, dv: int, vth: int, exp: int = 0,
         bias: np.ndarray | None = None) -> IntNetwork:
    n_post, n_pre = w.shape
    fmt = load_target("loihi2").format
    pops = {
        "in": IntPopulation("in", "in", np.arange(n_pre), (n_pre,), "input"),
        "lif": IntPopulation("lif", "lif", np.arange(n_post), (n_post,), "lif", du, dv, vth,
                             bias if bias is not None else np.zeros(n_post, np.int64), np.zeros(n_post, np.int64)),
    }
    csr = sp.csr_array(w)
    rows = np.repeat(np.arange(n_post), np.diff(csr.indptr))
    delays = d[rows, csr.indices]
    proj = IntProjection("in", "lif", csr, delays.astype(np.int64), exp, "mixed")
    return IntNetwork(pops, [proj], ["in"], {"out": ["lif"]}, {"in": ["in"], "lif": ["lif"]}, fmt, "loihi2", 1e-3)


def test_matches_the_lava_reference_trace() -> None:
    # ../shared/research/loihi.md appendix: checked against Lava 0.10.0 fixed_pt, row 0 of v is
    # 0 0 3200 5199 6347 0 2290 ...
    w = np.array([[50, -30], [20, 40]])
    d = np.array([[0, 3], [5, 1]])
    du, dv, vth = 1024, 512, 100
    spk = np.zeros((20, 2))
    spk[[1, 5, 9], 0] = 1
    spk[[2, 3], 1] = 1
    res = simulate_int(_net(w, d, du, dv, vth), spk)
    assert res.v["lif"][:7, 0].tolist() == [0, 0, 3200, 5199, 6347, 0, 2290]
    # The same computation written as in the appendix, for all 20 steps and both neurons.
    u = np.zeros(2, np.int64)
    v = np.zeros(2, np.int64)
    buf = np.zeros((2, d.max() + 1), np.int64)
    for t in range(20):
        a_in = buf[:, 0].copy()
        s = spk[t].astype(bool)
        acc = np.stack([(np.where(d == k, w, 0)[:, s]).sum(1) for k in range(d.max() + 1)], 1)
        buf[:, 0] = 0
        buf = np.roll(buf, -1, axis=1)
        buf += acc
        u = lif.decay(u, du + 1, 12) + (a_in << 6)
        v = np.clip(lif.decay(v, dv, 12) + u, -(2**23) + 1, 2**23 - 1)
        fired = v > (vth << 6)
        v[fired] = 0
        assert res.v["lif"][t].tolist() == v.tolist(), t
        assert res.spikes["lif"][t].tolist() == fired.tolist(), t


def test_decay_truncates_toward_zero() -> None:
    x = np.array([-4097, -1, 0, 1, 4097])
    assert lif.decay(x, 2048, 12).tolist() == [-2048, 0, 0, 0, 2048]


def test_negative_weight_exponent_floors_each_step_sum() -> None:
    # exp = -2: a step's summed input 3 + 3 = 6 becomes 6 >> 2 = 1; -6 becomes -2 (floor).
    w = np.array([[3, 3], [-3, -3]])
    res = simulate_int(_net(w, np.zeros((2, 2), int), 4095, 0, 1000, exp=-2), np.array([[1, 1], [0, 0]]))
    assert res.i["lif"][1].tolist() == [1 << 6, -2 << 6]


def test_current_wraps_at_24_bits_as_lava() -> None:
    # a_in << 6 beyond 2**23 wraps to negative (Lava's PyLifModelBitAcc wrap).
    w = np.array([[255]])
    net = _net(w, np.zeros((1, 1), int), 0, 4095, 131071, exp=7)
    res = simulate_int(net, np.array([[1], [0], [0]]))
    raw = (255 << 7) << 6  # 2,088,960 < 2**23: no wrap yet
    assert res.i["lif"][1, 0] == raw
    net2 = _net(w, np.zeros((1, 1), int), 4095, 4095, 131071, exp=7)
    res2 = simulate_int(net2, np.array([[2], [0]]))  # graded spike of 2: 4,177,920 still < 2**23
    assert res2.i["lif"][1, 0] == 2 * raw
    res5 = simulate_int(net2, np.array([[5], [0]]))  # graded spike of 5: 10,444,800 > 2**23 wraps
    assert 5 * raw > 2**23
    assert res5.i["lif"][1, 0] == 5 * raw - 2**24 == -6_332_416


def test_bias_and_threshold() -> None:
    net = _net(np.array([[1]]), np.zeros((1, 1), int), 4095, 0, 10, bias=np.array([100]))
    net.projections = []
    res = simulate_int(net, np.zeros((30, 1)))
    # v grows by 100 per step; vth << 6 = 640: spikes when v > 640, i.e. at the 7th step (v = 700).
    first = int(np.flatnonzero(res.spikes["lif"][:, 0])[0])
    assert first == 6
    assert res.v["lif"][first, 0] == 0
