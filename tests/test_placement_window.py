"""runtime/placement_window: a recording's placement simulation in time windows equals the single run in every
PlacementReport field, exactly (np.array_equal for arrays, == for floats), in process and on a real
dask.distributed LocalCluster with 2 worker processes.

Networks are tiny (<= 300 neurons, <= 23 steps): recurrence with synaptic delays up to 6 steps (so spikes are in
flight across window boundaries), on spinnaker2 with small cores (many cores and chips, routing), spinnaker2 with
4 delay slots (delay-extension cores re-send spikes one stage late: window accounting needs the previous steps),
spinnaker1 with over-delivery (dropped packets), loihi2, the one-CPU stm32f405, and the N-MNIST CNN (conv
projections). Windows: 1 step, 5 (5 windows, the last ragged) and 7 (4 windows, ragged).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np
import pytest

import neurocc
from neurocc.compiler.errors import InputError, NeuroccError
from neurocc.compiler.ir import Mapping, Role, make_projection
from neurocc.compiler.pipeline import compile_network
from neurocc.runtime.placement_sim import (
    PlacementReport,
    delay_context,
    replay_counts,
    report_from_counts,
    simulate_placement,
)
from neurocc.runtime.placement_window import WindowError, merge_counts, simulate_placement_windowed
from neurocc.runtime.simulator import simulate_int
from neurocc.workloads import nmnist_cnn_graph, population_graph

from .test_mapping import small_target

STEPS = 23
WINDOWS = (1, 5, 7)


def _recurrent_delays():
    """4 populations of 60 with self-loops and cycles (pop0 -> pop3 -> pop0), every synapse delayed 0..6 steps."""
    net = population_graph(4, 60, 0.5, 0.2, n_inputs=40, seed=0)
    rng = np.random.default_rng(5)
    delayed = []
    for p in net.projections:
        rows, cols, vals, _ = p.coo()
        delayed.append(make_projection(p.pre, p.post, rows, cols, vals, rng.integers(0, 7, rows.size), p.weights.shape))
    net.projections[:] = delayed
    return net


def _raster(steps: int, n: int, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, n)) < rate).astype(float)


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[Mapping, np.ndarray]]:
    net = _recurrent_delays()
    raster = _raster(STEPS, 40, 0.3, 0)
    return {
        "spinnaker2": (compile_network(net, small_target("spinnaker2", "triangular", neurons=32), progress=False),
                       raster),
        "spinnaker2-delay-ext": (compile_network(net, small_target("spinnaker2", "triangular", neurons=32,
                                                                   delay_slots=4), progress=False), raster),
        "loihi2": (compile_network(net, "loihi2", progress=False), raster),
        "stm32f405": (compile_network(net, "stm32f405", progress=False), raster),
    }


@pytest.fixture(scope="module")
def over_delivery() -> tuple[Mapping, np.ndarray]:
    # tests/test_over_delivery.py's graph: 14 routing entries per chip force collapsed emitters
    net = population_graph(40, 8, 0.3, 0.2, seed=1)
    tgt = small_target("spinnaker1", "triangular", neurons=8, chips=4, cores=5, entries=14)
    return compile_network(net, tgt, progress=False), _raster(11, 64, 0.1, 0)


@pytest.fixture(scope="module")
def cnn() -> tuple[Mapping, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(nmnist_cnn_graph(seed=0), dt=1.0, discretization="exp")
    raster = (np.random.default_rng(1).random((10, 2, 34, 34)) < 0.1).astype(np.float32)
    return compile_network(net, "spinnaker2", progress=False), raster


def assert_same_report(got: PlacementReport, want: PlacementReport) -> None:
    """Every field equal: arrays by value and dtype, floats by ==, dicts with their keys in the same order."""
    names = {f.name for f in dataclasses.fields(PlacementReport)}
    checked = {"target", "steps", "cores", "links", "step_time_s", "budget_s", "energy_j", "energy_breakdown_j",
               "mean_hops", "max_hops", "max_latency_s", "chips_used", "extra"}
    assert names == checked, f"PlacementReport fields changed: {names ^ checked}; compare them here"
    for name in ("target", "steps", "budget_s", "energy_j", "mean_hops", "max_hops", "max_latency_s", "chips_used"):
        a, b = getattr(got, name), getattr(want, name)
        assert type(a) is type(b) and a == b, f"{name}: {a!r} != {b!r}"
    assert got.step_time_s.dtype == want.step_time_s.dtype and np.array_equal(got.step_time_s, want.step_time_s)
    assert list(got.energy_breakdown_j.items()) == list(want.energy_breakdown_j.items())
    assert got.extra == want.extra
    assert list(got.links) == list(want.links)
    for key, packets in want.links.items():
        assert got.links[key].dtype == packets.dtype and np.array_equal(got.links[key], packets), key
    assert len(got.cores) == len(want.cores)
    for k, (a, b) in enumerate(zip(got.cores, want.cores, strict=True)):
        assert list(a) == list(b), k
        for field, value in b.items():
            assert type(a[field]) is type(value) and a[field] == value, f"core {k} {field}: {a[field]!r} != {value!r}"


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("case", ["spinnaker2", "spinnaker2-delay-ext", "loihi2", "stm32f405"])
def test_windows_equal_the_single_run(cases, case: str, window: int) -> None:
    mapping, raster = cases[case]
    want = simulate_placement(mapping, raster)
    assert sum(c["spikes_per_step"] for c in want.cores if c["role"] == Role.NEURONS) > 1, "nothing spiked: vacuous"
    assert_same_report(simulate_placement_windowed(mapping, raster, window), want)


def test_the_cases_cross_window_boundaries(cases) -> None:
    """Not vacuous: delays of 2+ steps, recurrence, many cores with routed links, delay-extension cores."""
    m, _ = cases["spinnaker2"]
    assert max(p.max_delay for p in m.network.projections) >= 2
    assert any(p.pre == p.post for p in m.network.projections)
    run = simulate_int(m.network, cases["spinnaker2"][1][:7], record=False, return_state=True)
    assert run.state.ring[1:].any()  # current sent before step 7 still arriving at steps 8..
    assert len(m.slices) >= 8 and m.routing is not None and len({s.chip for s in m.slices}) >= 2
    want = simulate_placement(*cases["spinnaker2"])
    assert sum(int(v.sum()) for v in want.links.values()) > 0
    ext, _ = cases["spinnaker2-delay-ext"]
    assert any(s.role == Role.DELAY for s in ext.slices) and delay_context(ext) == 4
    assert delay_context(m) == 0  # every delay fits spinnaker2's own slots
    assert simulate_placement(*cases["stm32f405"]).extra["one_cpu"]


def test_the_carry_is_what_makes_it_exact(cases) -> None:
    """Windows run from rest, or with the delay ring dropped, or accounted without the previous steps, differ
    from the single run: each part of the carry matters on these networks."""
    m, raster = cases["spinnaker2-delay-ext"]
    full = simulate_int(m.network, raster, record=False)
    first = simulate_int(m.network, raster[:7], record=False, return_state=True)
    rest = simulate_int(m.network, raster[7:], record=False)
    no_ring = dataclasses.replace(first.state, ring=np.zeros_like(first.state.ring))
    dropped_ring = simulate_int(m.network, raster[7:], record=False, state=no_ring)
    carried = simulate_int(m.network, raster[7:], record=False, state=first.state)
    lifs = [n for n, p in m.network.populations.items() if not p.is_input]
    for name in lifs:
        assert np.array_equal(np.concatenate([first.spikes[name], carried.spikes[name]]), full.spikes[name])
    assert any(not np.array_equal(rest.spikes[n], full.spikes[n][7:]) for n in lifs)
    assert any(not np.array_equal(dropped_ring.spikes[n], full.spikes[n][7:]) for n in lifs)
    # Accounting steps 7.. alone misses the delay-extension packets of spikes sent at steps 3..6.
    whole = replay_counts(m, full)
    tail = dataclasses.replace(full, spikes={n: s[7:] for n, s in full.spikes.items()}, steps=STEPS - 7)
    head = dataclasses.replace(full, spikes={n: s[:7] for n, s in full.spikes.items()}, steps=7)
    naive = merge_counts([replay_counts(m, head), replay_counts(m, tail)])
    assert not np.array_equal(naive.events, whole.events)
    ctx = dataclasses.replace(full, spikes={n: s[3:] for n, s in full.spikes.items()}, steps=STEPS - 3)
    exact = merge_counts([replay_counts(m, head), replay_counts(m, ctx, context=4)])
    assert_same_report(report_from_counts(m, exact), report_from_counts(m, whole))


def test_over_delivery_drops_merge(over_delivery) -> None:
    mapping, raster = over_delivery  # 11 steps in windows of 3: 4 windows, the last ragged
    window = 3
    want = simulate_placement(mapping, raster)
    assert want.extra["dropped_packets"] > 0 and "dropped" in want.energy_breakdown_j
    assert_same_report(simulate_placement_windowed(mapping, raster, window), want)


@pytest.mark.parametrize("window", [1, 3])
def test_conv_windows_equal_the_single_run(cnn, window: int) -> None:
    mapping, raster = cnn
    assert any(p.conv is not None for p in mapping.network.projections)
    want = simulate_placement(mapping, raster)
    assert sum(c["conv_events_per_step"] for c in want.cores) > 0
    assert_same_report(simulate_placement_windowed(mapping, raster, window), want)


def test_one_window_longer_than_the_recording(cases) -> None:
    mapping, raster = cases["spinnaker2"]
    assert_same_report(simulate_placement_windowed(mapping, raster, STEPS + 10), simulate_placement(mapping, raster))


@pytest.mark.parametrize("window", [0, -3, 2.5, "4", True, None])
def test_bad_window_is_named(cases, window: object) -> None:
    mapping, raster = cases["loihi2"]
    with pytest.raises(WindowError, match="window") as err:
        simulate_placement_windowed(mapping, raster, window)  # type: ignore[arg-type]
    assert isinstance(err.value, NeuroccError)
    assert repr(window) in str(err.value) and "Fix:" in str(err.value)


def test_numpy_integer_window_and_bad_raster(cases) -> None:
    mapping, raster = cases["loihi2"]
    assert_same_report(simulate_placement_windowed(mapping, raster, np.int64(6)), simulate_placement(mapping, raster))
    with pytest.raises(InputError, match="channels"):
        simulate_placement_windowed(mapping, raster[:, :30], 5)


def test_state_of_another_network_is_refused(cases, cnn) -> None:
    m, raster = cases["loihi2"]
    other = simulate_int(cnn[0].network, cnn[1][:2], record=False, return_state=True).state
    with pytest.raises(InputError, match="state to continue from"):
        simulate_int(m.network, raster, record=False, state=other)


# ---- a real LocalCluster: 2 worker processes ------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    c = Client(cluster, set_as_default=False)
    try:
        c.wait_for_workers(2, timeout=60)
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.mark.parametrize(("case", "window"), [("spinnaker2-delay-ext", 5), ("spinnaker2", 1), ("stm32f405", 7)])
def test_windows_on_a_local_cluster_equal_the_single_run(client, cases, case: str, window: int) -> None:
    from distributed import get_task_stream

    mapping, raster = cases[case]
    with get_task_stream(client) as stream:
        got = simulate_placement_windowed(mapping, raster, window, client=client)
    assert_same_report(got, simulate_placement(mapping, raster))
    ran = [t for t in stream.data if "simulate_window" in str(t["key"]) or "account_window" in str(t["key"])]
    assert len(ran) == 2 * -(-STEPS // window)  # one simulation and one accounting task per window
    assert {t["worker"] for t in ran} <= set(client.scheduler_info()["workers"])


def test_conv_windows_on_a_local_cluster(client, cnn) -> None:
    mapping, raster = cnn
    assert_same_report(simulate_placement_windowed(mapping, raster, 3, client=client),
                       simulate_placement(mapping, raster))
