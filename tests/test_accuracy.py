"""Accuracy on the digits test split, re-checked from the committed models (no training here).

- snnTorch SNN (scripts/train_digits_snn.py) and the two converted nets (scripts/train_digits_ann.py):
  every target's integer model reaches >= float - 1 pp on all 359 test samples (the batched integer model:
  ~0.1-1 s per target), at the committed number of steps.
- The converted nets in float reach >= ANN - 2 pp (the ANN accuracy committed in ann_accuracy.json).
- neurocc's float run of the snnTorch file gives snnTorch's own test accuracy (snn_accuracy.json).
- The executors equal the integer model spike for spike on a few samples, one compile per family.
The committed files are required: a missing one fails, it does not skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import neurocc
from neurocc.compiler.frontend.reader import read_file
from neurocc.runtime.accuracy import ALL_TARGETS, AccuracyReport, evaluate, spaced

DATA = Path(__file__).resolve().parent / "data" / "digits"
MODELS = {"snntorch": "snn_snntorch.nir", "mlp": "snn_from_ann_mlp.nir", "cnn": "snn_from_ann_cnn.nir"}
# Float runs per model: both latencies for the snnTorch net (snnTorch's own is "framework"); one for the
# converted IF nets, whose two latencies gave the same accuracy, to keep the CNN's float run at ~5 s.
LATENCIES = {"snntorch": ("hardware", "framework"), "mlp": ("framework",), "cnn": ("framework",)}


def committed(name: str) -> Path:
    path = DATA / name
    assert path.is_file(), f"{path} is missing: it is committed test data (see docs/accuracy.md to remake it)"
    return path


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(committed("split.npz"))
    return data["test_x"].astype(np.float64) / 16.0, data["test_y"]


@pytest.fixture(scope="module")
def reports(split) -> dict[str, AccuracyReport]:
    x, y = split
    out = {}
    for model, name in MODELS.items():
        path = committed(name)
        steps = int(read_file(path).metadata["neurocc_steps"])
        out[model] = evaluate(neurocc.load(path), x, y, steps, targets=ALL_TARGETS, latencies=LATENCIES[model],
                              progress=False)
    return out


def best_float(rep: AccuracyReport) -> float:
    return float(np.nanmax([rep.float_hardware, rep.float_framework]))


@pytest.mark.parametrize("model", list(MODELS))
def test_integer_within_1pp_of_float_on_every_target(reports, model):
    rep = reports[model]
    assert rep.n_samples == 359
    assert [r.target for r in rep.targets] == list(ALL_TARGETS)
    low = {r.target: r.integer for r in rep.targets if r.integer < best_float(rep) - 0.01}
    assert not low, f"{model}: integer accuracy more than 1 pp below float {best_float(rep):.4f}: {low}"
    assert best_float(rep) > 0.9, f"{model}: float accuracy {best_float(rep):.4f}: the committed model is broken"


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_converted_float_within_2pp_of_ann(reports, model):
    ann = json.loads(committed("ann_accuracy.json").read_text())[model]["test_accuracy"]
    assert reports[model].float_framework >= ann - 0.02, (model, reports[model].float_framework, ann)


def test_neurocc_float_equals_snntorch_accuracy(reports):
    meta = json.loads(committed("snn_accuracy.json").read_text())
    rep = reports["snntorch"]
    assert rep.steps == meta["steps"]
    # same-step delivery is snnTorch's; the script checked every sample's output counts, this the accuracy
    assert rep.float_framework == pytest.approx(meta["snntorch_test_accuracy"], abs=1e-12)


@pytest.mark.parametrize("target,samples", [("loihi2", 2), ("spinnaker2", 6), ("stm32f405", 6)])
def test_executor_equals_integer_model(split, tmp_path, target, samples):
    """One compile per family; evaluate() raises unless every population's executor spikes equal the
    integer model's on each executed sample, so the accuracies below come from the executor's own spikes."""
    x, y = split
    path = committed(MODELS["snntorch"])
    net = neurocc.load(path)
    rep = evaluate(net, x, y, int(read_file(path).metadata["neurocc_steps"]), targets=[target], executor=samples,
                   out_dir=tmp_path, latencies=(), progress=False)
    row = rep.row(target)
    assert row.executor_samples == samples == len(rep.executor_indices[target])
    assert row.executor == row.integer_on_executed
    assert (tmp_path / target).is_dir()


def test_argmax_ties_and_subset():
    from neurocc.runtime.accuracy import _argmax_accuracy
    # a silent output (all-equal counts) answers class 0: ties go to the lowest index
    assert _argmax_accuracy(np.array([[0.0, 0.0, 0.0], [1.0, 3.0, 3.0]]), np.array([0, 1])) == 1.0
    assert spaced(359, 3) == [0, 179, 358]
    assert spaced(4, 10) == [0, 1, 2, 3]
