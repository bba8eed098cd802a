"""Workloads from the field on every shipped target: the NIR paper's N-MNIST CNN and the delay-learning
SHD classifier (a delay of 0..24 steps on every synapse). Each compiles and verifies bit for bit on
every target it fits; where it does not fit, the named error is pinned.

Lava runs the N-MNIST CNN's convs as Lava's own Conv processes (16 Lava processes, ~5 s per 100 steps;
the unrolled per-slice program had 431 and took ~60 s).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import neurocc
from neurocc.compiler.errors import TargetError
from neurocc.compiler.targets.target import shipped_targets
from neurocc.workloads import nmnist_cnn_graph, shd_delay_graph

STEPS = 100
TARGETS = shipped_targets()

# The CNN's kernels stored once: a 41 KB image (its unrolled rows were ~5.2 MB, over every MCU's flash).
DOES_NOT_FIT: dict[tuple[str, str], str] = {}
# SHD's 258 KB image fits the STM32F405's flash, not the emulated board's 44 KiB SRAM model slot
# (QEMU does not emulate flash writes): QEMU refuses it by name, the host-built engine verifies it.
QEMU_TOO_SMALL = {("shd", "stm32f405")}


def _workload(name: str) -> tuple[neurocc.Network, np.ndarray]:
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neurocc.NeuroccWarning)
        if name == "shd":
            net = neurocc.load(shd_delay_graph(seed=0), dt=0.01)
            return net, (rng.random((STEPS, 140)) < 0.05).astype(np.float32)
        net = neurocc.load(nmnist_cnn_graph(seed=0), dt=1.0, discretization="exp")
        return net, (rng.random((STEPS, 2, 34, 34)) < 0.05).astype(np.float32)


def test_shapes_are_the_published_ones() -> None:
    shd, _ = _workload("shd")
    assert shd.n_synapses == 140 * 256 + 256 * 256 + 256 * 20 == 106_496
    assert max(int(p.delays.max()) for p in shd.projections) == 24
    cnn, _ = _workload("nmnist")
    sizes = [p.size for name, p in cnn.populations.items() if name not in cnn.inputs]
    assert sizes == [16 * 16 * 16, 16 * 16 * 16, 8 * 8 * 8, 256, 10]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("workload", ["shd", "nmnist"])
def test_workload_on_target(workload: str, target: str, tmp_path: Path) -> None:
    net, raster = _workload(workload)
    out = tmp_path / "out"
    expected_error = DOES_NOT_FIT.get((workload, target))
    if expected_error is not None:
        with pytest.raises(TargetError, match=expected_error):
            neurocc.compile(net, target, progress=False).emit(out)
        assert not out.exists(), "a failed emit left a half-written output"
        return
    mapping = neurocc.compile(net, target, progress=False)
    mapping.emit(out)
    if (workload, target) in QEMU_TOO_SMALL:
        with pytest.raises(TargetError, match="SRAM slots"):
            neurocc.verify(out, raster)
        report = neurocc.verify(out, raster, emulate=False)
    else:
        report = neurocc.verify(out, raster)
    assert report.identical, report.text()
    lif = {k: v for k, v in report.executor_spikes.items() if k not in mapping.network.inputs}
    assert sum(int(v.sum()) for v in lif.values()) > 0, "no neuron spiked: the comparison would be vacuous"
