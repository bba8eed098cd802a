"""Hypothesis over conv shapes: every executor runs the shared kernel exactly as the reference does.

The reference's kernel scatter equals the unrolled rows (tests/test_conv.py); here the emitted artifacts
(Lava's Conv processes, SpiNNaker's local-only conv tables, the C engine's conv sections) run the same
random conv networks and must give the reference's spikes at every step. A shape a target cannot express
is refused by name (NeuroccError) and counted; more than MAX_REFUSED refused fails the module.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import neurocc
from neurocc.runtime.simulator import simulate_int

from .strategies import ConvCase, conv_networks

MAX_REFUSED = 0.25
TRIED: Counter[str] = Counter()
REFUSED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def refusals_are_rare():
    yield
    over = {t: f"{REFUSED[t]}/{n}" for t, n in TRIED.items() if n >= 8 and REFUSED[t] / n > MAX_REFUSED}
    assert not over, f"conv shapes refused by name too often: {over}"


def _compiled(case: ConvCase, target: str, tmp: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(case.graph, dt=1e-3)
    TRIED[target] += 1
    try:
        mapping = neurocc.compile(net, target, progress=False)
        out = mapping.emit(tmp / "out")
    except neurocc.NeuroccError as exc:
        REFUSED[target] += 1
        event(f"{target} refused: {type(exc).__name__}")
        assume(False)
    if not any(p.post == "lif1" for p in net.projections):  # every tap lands in the padding: no synapse
        assume(False)
    assert any(p.conv is not None for p in mapping.network.projections)
    raster = case.raster.reshape(case.raster.shape[0], -1)
    return mapping, out, raster


def _same(mapping, raster, got) -> None:
    ref = simulate_int(mapping.network, raster, record=False)
    for name, pop in mapping.network.populations.items():
        if not pop.is_input:
            have = np.asarray(got[name], dtype=bool)
            diff = np.argwhere(have != ref.spikes[name])
            assert not diff.size, f"{name!r}: first divergence at step {diff[0][0]}, neuron {diff[0][1]}"


@settings(max_examples=30, deadline=None)
@given(case=conv_networks(max_channels=8), target=st.sampled_from(["spinnaker1", "spinnaker2"]))
def test_spinnaker_conv_tables_equal_reference(tmp_path_factory, case: ConvCase, target: str) -> None:
    from neurocc.runtime.executors.spinnaker import run

    mapping, out, raster = _compiled(case, target, tmp_path_factory.mktemp("spin"))
    _same(mapping, raster, run(out, raster).spikes)


@pytest.fixture(scope="session")
def host_engine(tmp_path_factory) -> Path:
    from neurocc.runtime.serial.firmware import build_host

    if os.environ.get("CI") == "true" or shutil.which("gcc"):
        return build_host(tmp_path_factory.mktemp("firmware"))
    pytest.skip("gcc not installed (scripts/install.sh installs it)")


@settings(max_examples=30, deadline=None)
@given(case=conv_networks(max_channels=8), target=st.sampled_from(["stm32f405", "nrf52840", "stm32h743"]))
def test_cortexm_conv_engine_equals_reference(tmp_path_factory, host_engine: Path, case: ConvCase,
                                              target: str) -> None:
    from neurocc.runtime.executors.cortexm import run_host

    mapping, out, raster = _compiled(case, target, tmp_path_factory.mktemp("cortexm"))
    _same(mapping, raster, run_host(out, raster, host_engine))


@settings(max_examples=4, deadline=None)
@given(case=conv_networks(max_channels=4))
def test_lava_conv_equals_reference(tmp_path_factory, case: ConvCase) -> None:
    """Lava costs seconds per run: few examples (the corpus and N-MNIST nets run in tests/test_lava_conv.py)."""
    from neurocc.runtime.executors.lava import run

    mapping, out, raster = _compiled(case, "loihi2", tmp_path_factory.mktemp("lava"))
    _same(mapping, raster, run(out, raster))
