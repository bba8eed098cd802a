"""Accuracy of the converted digits SNNs: float, each target's integer model, vs steps and reset mode.

Reads what scripts/train_digits_ann.py wrote (tests/data/digits/). For each of the MLP and the CNN:
- ANN accuracy (the ONNX graph run in numpy);
- float SNN accuracy, neurocc.simulate_float on the rate-coded test split (reset to zero, as the IR);
- integer accuracy per target (to_integer + simulate_int);
- a steps sweep, and the cost of reset-to-zero: a batched float IF simulation with reset-by-subtraction
  (here only: no target and not the IR can subtract), next to the same simulation with reset to zero, which
  is checked against neurocc.simulate_float spike for spike.
Prints a table and writes bench/results/convert_digits.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import neurocc
from neurocc.compiler.frontend.ann import Layer, fold_batchnorm, forward
from neurocc.compiler.frontend.convert import DEFAULT_PERCENTILE, calibrate_thresholds, normalise, read_ann, segments_of
from neurocc.compiler.pipeline import to_integer
from neurocc.runtime.encoding import rate_code
from neurocc.runtime.report import output_scores

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "digits"
TARGETS = ("loihi1", "loihi2", "spinnaker1", "spinnaker2", "stm32f405", "nrf52840", "stm32h743")


def test_set() -> tuple[np.ndarray, np.ndarray]:
    split = np.load(DATA / "split.npz")
    return split["test_x"][:, None].astype(np.float64) / 16.0, split["test_y"]


def batched_if(segments: list[tuple[tuple[Layer, ...], float]], x: np.ndarray, steps: int,
               subtract: bool) -> np.ndarray:
    """Output spike counts [N, classes] of the converted SNN, all samples at once (same-step delivery)."""
    raster = rate_code(x, steps)  # [T, N, ...]
    v: list[np.ndarray | None] = [None] * len(segments)
    counts = None
    for t in range(steps):
        s = raster[t]
        for k, (ops, theta) in enumerate(segments):
            drive = forward(ops, s)
            v[k] = drive if v[k] is None else v[k] + drive
            fired = v[k] > theta
            # subtractive: keep the charge above threshold; zero: drop it (what every target does)
            v[k] = np.where(fired, v[k] - theta, v[k]) if subtract else np.where(fired, 0.0, v[k])
            s = fired.astype(np.float64)
        counts = s if counts is None else counts + s
    return counts


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float((np.argmax(scores, axis=1) == y).mean())


def neurocc_scores(net, inets: dict[str, object], x: np.ndarray, steps: int) -> tuple[np.ndarray, dict]:
    out_name = next(iter(net.outputs))
    floats, ints = [], {t: [] for t in inets}
    for sample in x:
        raster = rate_code(sample, steps)
        run = neurocc.simulate_float(net, raster, record=False)
        floats.append(output_scores(net, None, run, integer=False)[out_name])
        for t, inet in inets.items():
            irun = neurocc.simulate_int(inet, raster, record=False)
            ints[t].append(output_scores(net, inet, irun, integer=True)[out_name])
    return np.array(floats), {t: np.array(v) for t, v in ints.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="steps for the per-target run (default: the file's)")
    ap.add_argument("--sweep", type=int, nargs="*", default=[16, 32, 64, 128, 256])
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "bench" / "results" / "convert_digits.json")
    args = ap.parse_args()
    x, y = test_set()
    calib = np.load(DATA / "calibration.npz")["x"]
    results: dict[str, object] = {}
    for name in ("mlp", "cnn"):
        start = time.time()
        layers, _, _ = read_ann(DATA / f"ann_{name}.onnx")
        ann_acc = accuracy(forward(layers, x), y)
        graph_steps = args.steps or _recorded_steps(name)
        segs = normalise(segments_of(fold_batchnorm(layers), calib, DEFAULT_PERCENTILE))
        tuned = calibrate_thresholds(segs, calib, graph_steps)  # what convert(threshold="calibrate") does
        plain = [(s.ops, 1.0) for s in segs]  # robust normalisation alone (threshold = lambda_l)
        calibrated = [(s.ops, s.threshold) for s in tuned]
        sweep = {}
        for steps in args.sweep:
            sweep[steps] = {"reset_zero_calibrated": accuracy(batched_if(calibrated, x, steps, False), y),
                            "reset_zero_threshold_1": accuracy(batched_if(plain, x, steps, False), y),
                            "reset_subtract_threshold_1": accuracy(batched_if(plain, x, steps, True), y)}
        net = neurocc.load(DATA / f"snn_from_ann_{name}.nir")
        inets = {t: to_integer(net, t) for t in TARGETS}
        f_scores, i_scores = neurocc_scores(net, inets, x, graph_steps)
        mine = batched_if(calibrated, x, graph_steps, False)
        if not np.array_equal(mine, f_scores):
            raise SystemExit(f"{name}: the batched reset-to-zero simulation differs from neurocc.simulate_float")
        float_acc = accuracy(f_scores, y)
        int_acc = {t: accuracy(s, y) for t, s in i_scores.items()}
        agree = {t: float((np.argmax(s, 1) == np.argmax(f_scores, 1)).mean()) for t, s in i_scores.items()}
        results[name] = {"ann": ann_acc, "steps": graph_steps, "float": float_acc, "int": int_acc,
                         "int_argmax_agrees_with_float": agree,
                         "float_reset_subtract": accuracy(batched_if(plain, x, graph_steps, True), y),
                         "float_reset_zero_threshold_1": accuracy(batched_if(plain, x, graph_steps, False), y),
                         "sweep_float": sweep, "layer_scales": [s.scale for s in segs],
                         "thresholds": [s.threshold for s in tuned],
                         "ok_float": float_acc >= ann_acc - 0.02,
                         "ok_int": all(a >= float_acc - 0.01 for a in int_acc.values())}
        r = results[name]
        print(f"\n{name}: ANN {ann_acc:.4f}  SNN float ({graph_steps} steps, reset to zero, thresholds "
              f"{r['thresholds']}) {float_acc:.4f}  (threshold 1: "
              f"reset to zero {r['float_reset_zero_threshold_1']:.4f}, "
              f"by subtraction {r['float_reset_subtract']:.4f})  [{time.time() - start:.0f} s]")
        print("  int: " + "  ".join(f"{t} {a:.4f}" for t, a in int_acc.items()))
        print("  steps sweep (zero calibrated / zero thr 1 / subtract thr 1): " + "  ".join(
            f"{s}: {v['reset_zero_calibrated']:.4f}/{v['reset_zero_threshold_1']:.4f}/"
            f"{v['reset_subtract_threshold_1']:.4f}" for s, v in sweep.items()))
        print(f"  acceptance: float >= ANN - 2 pp: {r['ok_float']};  int >= float - 1 pp on every target: "
              f"{r['ok_int']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json.tmp", dir=args.out.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out}")


def _recorded_steps(name: str) -> int:
    import h5py

    with h5py.File(DATA / f"snn_from_ann_{name}.nir", "r") as f:
        return int(f["node"]["metadata"]["neurocc_steps"][()])


if __name__ == "__main__":
    main()
