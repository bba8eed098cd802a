"""The backend registry: one home for family -> Backend, a toy fourth family plugged in from its own
folder, per-family pass lists and target sections, and refusals of formats a family cannot honour."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import neurocc
from neurocc.compiler.backend import backend_for, families, register, unregister
from neurocc.compiler.errors import TargetError
from neurocc.compiler.targets.target import TARGET_DIR, load_target
from neurocc.workloads import random_network

from .toy_family.backend import BACKEND as TOY

ROOT = Path(__file__).resolve().parents[1]
TOY_TOML = """name = "toy1"
family = "toy"
[format]
weight_bits = 8
weight_exp_min = -8
weight_exp_max = 7
decay_bits = 12
state_bits = 24
threshold_bits = 17
bias_mant_bits = 13
bias_exp_max = 7
max_delay = 15
[cost]
time_per_synaptic_event_s = 1e-8
time_per_neuron_update_s = 1e-8
time_per_spike_s = 0.0
time_per_hop_s = 0.0
energy_per_synaptic_event_j = 1e-12
energy_per_neuron_update_j = 1e-12
energy_per_spike_j = 0.0
energy_per_hop_j = 0.0
timestep_budget_s = 1e-3
"""


@pytest.fixture
def toy(tmp_path: Path):
    register(TOY)  # the one registration line a new family needs
    try:
        path = tmp_path / "toy1.toml"
        path.write_text(TOY_TOML)
        yield path
    finally:
        unregister("toy")


def _small_net(seed: int = 3):
    net = random_network(40, synapses_per_neuron=12, n_populations=2, n_inputs=12, max_delay=5, seed=seed)
    for proj in net.projections:
        proj.weights.data *= 60  # LIF tau = 20 dt: strong enough that both layers fire
    return net


def test_toy_family_compiles_emits_and_verifies(toy: Path, tmp_path: Path) -> None:
    net = _small_net()
    mapping = neurocc.compile(net, str(toy), progress=False)
    assert list(mapping.timings) == ["lower", "quantize", "one_cpu"]
    assert mapping.routing is None and mapping.usage is None
    out = mapping.emit(tmp_path / "out")
    raster = (np.random.default_rng(0).random((60, 12)) < 0.6).astype(np.int64)
    report = neurocc.verify(out, raster)
    assert report.executor == "toy dense executor" and report.family == "toy"
    assert report.identical, report.text()
    assert any(s.any() for s in report.executor_spikes.values()), "nothing fired: the check would be empty"


def test_unknown_family_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(TOY_TOML.replace('family = "toy"', 'family = "tpu"'))
    with pytest.raises(TargetError, match=r"family 'tpu' has no registered backend.*Fix"):
        load_target(path)


def test_family_mapping_lives_in_one_module() -> None:
    """Only backends/__init__.py says which backend a family name gets."""
    hits = subprocess.run(["grep", "-rlE", r"register\(|\"(loihi|spinnaker|cortexm)\": *\"(lava|spinnaker|cortexm)\"|"
                           r"family == \"|importlib.import_module\(f",
                           "--include=*.py", "compiler", "backends", "runtime", "neurocc"],
                          cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert sorted(hits) == ["backends/__init__.py", "compiler/backend.py"], hits
    registry = (ROOT / "backends" / "__init__.py").read_text()
    assert len(re.findall(r"register\(", registry)) == 1  # one loop over the shipped records
    assert set(families()) >= {"loihi", "spinnaker", "cortexm"}


@pytest.mark.parametrize("name", ["stm32f405", "nrf52840", "stm32h743"])
def test_cortexm_targets_have_no_mesh(name: str) -> None:
    t = load_target(name)
    assert t.mesh is None and t.core is None and t.router is None and t.encoding is None
    assert t.board is not None and t.memory is not None and t.one_cpu
    text = (TARGET_DIR / f"{name}.toml").read_text()
    assert not re.search(r"^\[(mesh|core|router|encoding)\]", text, re.M)


def test_cortexm_compile_skips_place_and_route() -> None:
    mapping = neurocc.compile(_small_net(), "stm32f405", progress=False)
    assert list(mapping.timings) == ["lower", "quantize", "one_cpu", "layout"]
    assert mapping.routing is None and mapping.placement is None and mapping.image is not None
    assert {(s.chip, s.core) for s in mapping.slices} == {((0, 0), 0)}
    assert [p.name for p in backend_for("cortexm").passes] == ["lower", "quantize", "one_cpu", "layout"]


def test_cortexm_target_without_board_is_refused(tmp_path: Path) -> None:
    text = (TARGET_DIR / "stm32f405.toml").read_text()
    path = tmp_path / "noboard.toml"
    path.write_text(text[:text.index("[board]")])
    with pytest.raises(TargetError, match=r"missing section \[board\]"):
        load_target(path)
    path.write_text(text + "\n[mesh]\ntopology = \"single\"\nchips_x = 1\nchips_y = 1\ncores_per_chip = 1\n")
    with pytest.raises(TargetError, match=r"section \[mesh\] means nothing to a cortexm target"):
        load_target(path)


@pytest.mark.parametrize("key,value", [("decay_bits", 10), ("threshold_shift", 4), ("activation_shift", 5),
                                       ("state_bits", 20)])
def test_lava_refuses_widths_it_cannot_run(tmp_path: Path, key: str, value: int) -> None:
    text = (TARGET_DIR / "loihi2.toml").read_text()
    new, n = re.subn(rf"^{key} = \d+", f"{key} = {value}", text, flags=re.M)
    assert n == 1
    path = tmp_path / "loihi_x.toml"
    path.write_text(new)
    with pytest.raises(TargetError, match=rf"format.{key} = {value}.*Lava.*Fix: {key} = "):
        load_target(path)
