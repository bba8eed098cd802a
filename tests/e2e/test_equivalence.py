"""The cross-target equivalence suite: every corpus network x every shipped target it fits.

Each case compiles the network, emits the backend's artifacts, runs them on that target's executor
through `neurocc.verify` (Lava fixed_pt for Loihi, the table executor for SpiNNaker, the firmware on
QEMU netduinoplus2 for the STM32F405, the host-built engine for the other Cortex-M parts) and
requires the reference simulator's spikes, every neuron, every step, for at least 100 steps.

Cases that do not fit are pinned in DOES_NOT_FIT: they must raise the named error (a NeuroccError
that names the budget), and a case that starts or stops fitting fails until the table is updated.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import neurocc
from neurocc.compiler.errors import TargetError
from neurocc.compiler.targets.target import load_target, shipped_targets

from ..conftest import convention_of

MIN_STEPS = 100
TARGETS = shipped_targets()

# (file stem, target) -> a phrase the error must contain. Every corpus net fits every target now: the conv
# nets' kernels are stored once (they needed ~2.1 MB of unrolled rows, over every MCU's flash, before).
DOES_NOT_FIT: dict[tuple[str, str], str] = {}
# Fits the STM32F405's flash but not the emulated board's 44 KiB SRAM model slot (QEMU does not emulate
# flash writes): QEMU refuses it by name and the host-built engine verifies it. None in the corpus today.
QEMU_TOO_SMALL: set[tuple[str, str]] = set()


def _raster(path: Path) -> np.ndarray:
    """The file's own input; the conv files hold 20 steps, tiled to MIN_STEPS."""
    with np.load(path.with_suffix(".npz")) as data:
        x = np.asarray(data["input"])
    reps = -(-MIN_STEPS // x.shape[0])
    return np.concatenate([x] * reps)[: max(MIN_STEPS, x.shape[0])]


def _load(path: Path) -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neurocc.NeuroccWarning)
        return neurocc.load(path, convention=convention_of(path))


def test_targets_cover_every_family() -> None:
    families = {load_target(t).family for t in TARGETS}
    assert families == {"loihi", "spinnaker", "cortexm"}
    assert {"loihi1", "loihi2", "spinnaker1", "spinnaker2", "stm32f405"} <= set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_network_on_target(corpus_file: Path, target: str, tmp_path: Path) -> None:
    net = _load(corpus_file)
    raster = _raster(corpus_file)
    expected_error = DOES_NOT_FIT.get((corpus_file.stem, target))
    if expected_error is not None:
        with pytest.raises(TargetError, match=expected_error):
            neurocc.compile(net, target, progress=False).emit(tmp_path / "out")
        assert not (tmp_path / "out").exists(), "a failed emit left a half-written output"
        return
    mapping = neurocc.compile(net, target, progress=False)
    out = mapping.emit(tmp_path / "out")
    if (corpus_file.stem, target) in QEMU_TOO_SMALL:
        with pytest.raises(TargetError, match="SRAM slots"):
            neurocc.verify(out, raster)
        report = neurocc.verify(out, raster, emulate=False)
    else:
        report = neurocc.verify(out, raster)
    assert report.steps >= MIN_STEPS
    assert report.identical, report.text()
    spikes = sum(int(s.sum()) for s in report.executor_spikes.values())
    assert spikes > 0, "no neuron spiked: the comparison would be vacuous"
