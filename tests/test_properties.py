"""Property tests: random valid networks give the same spikes on every executor as the reference.

Bounded examples (Lava costs seconds per network); the fast executors get more examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurocc
from neurocc.compiler.pipeline import compile_network
from neurocc.runtime.simulator import simulate_int

from .strategies import networks

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))


def _compile(graph, target: str):
    net = neurocc.load(graph, dt=1e-3)
    try:
        return net, compile_network(net, target, progress=False)
    except neurocc.QuantizationError:
        return net, None  # a named refusal is a valid outcome for extreme weights


@FAST
@given(case=networks())
def test_reference_is_deterministic_and_well_formed(case) -> None:
    graph, raster = case
    net, mapping = _compile(graph, "loihi2")
    if mapping is None:
        return
    a = simulate_int(mapping.network, raster)
    b = simulate_int(mapping.network, raster)
    for name, spikes in a.spikes.items():
        assert np.array_equal(spikes, b.spikes[name])
        assert spikes.shape == (raster.shape[0], mapping.network.populations[name].size)
    for v in a.v.values():
        assert np.all(np.abs(v.astype(np.int64)) < 2**23)


@SLOW
@given(case=networks(max_delay=63))
def test_lava_equals_reference(tmp_path_factory, case) -> None:
    from neurocc.backends.lava import run

    graph, raster = case
    _, mapping = _compile(graph, "loihi2")
    if mapping is None:
        return
    out = mapping.emit(Path(tmp_path_factory.mktemp("lava")) / "out")
    got = run(out, raster)
    ref = simulate_int(mapping.network, raster, record=False)
    for name, pop in mapping.network.populations.items():
        if pop.kind != "input":
            assert np.array_equal(got[name], ref.spikes[name]), name


def _assert_same(mapping, raster, got: dict[str, np.ndarray]) -> None:
    ref = simulate_int(mapping.network, raster, record=False)
    for name, pop in mapping.network.populations.items():
        if pop.kind != "input":
            assert np.array_equal(np.asarray(got[name], dtype=bool), ref.spikes[name]), name


MEDIUM = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@MEDIUM
@given(case=networks(max_delay=143), target=st.sampled_from(["spinnaker1", "spinnaker2"]))
def test_spinnaker_tables_equal_reference(tmp_path_factory, case, target: str) -> None:
    """Delays up to SpiNNaker's 143 steps: 16 native slots plus delay-extension stages."""
    from neurocc.runtime.spinnaker_exec import run

    graph, raster = case
    _, mapping = _compile(graph, target)
    if mapping is None:
        return
    out = mapping.emit(Path(tmp_path_factory.mktemp("spinnaker")) / "out")
    _assert_same(mapping, raster, run(out, raster).spikes)


@MEDIUM
@given(case=networks(max_delay=63), target=st.sampled_from(["stm32f405", "nrf52840", "stm32h743"]))
def test_cortexm_engine_equals_reference(tmp_path_factory, case, target: str) -> None:
    """The firmware's C engine, built for the host, from the emitted model image."""
    from neurocc.runtime.cortexm_host import run_host

    graph, raster = case
    _, mapping = _compile(graph, target)
    if mapping is None:
        return
    out = mapping.emit(Path(tmp_path_factory.mktemp("cortexm")) / "out")
    _assert_same(mapping, raster, run_host(out, raster))
