"""Accuracy on real labelled data (scikit-learn digits, the committed 359-sample test split), every target.

For each committed digits model in tests/data/digits/ (the snnTorch SNN of scripts/train_digits_snn.py, the
MLP and CNN converted by scripts/train_digits_ann.py): ANN accuracy (from ann_accuracy.json, converted nets
only), float accuracy (latency "hardware" and "framework"), each target's integer-model accuracy on all test
samples, and each target's executor accuracy with how many samples it ran (neurocc.runtime.accuracy.evaluate
checks that the executor's spikes equal the integer model's on every one of them).

Executors: SpiNNaker table executor and the host-built Cortex-M engine on every test sample; Lava on a fixed
subset (evenly spaced, --lava-samples, default 32), since one Lava run costs ~2 s and these networks (biases,
or IF neurons) never drain to the zero state, so samples cannot be chained into one run.

    python bench/accuracy.py [--lava-samples N] [--other-samples N|all] [--models snntorch,mlp,cnn]

Writes bench/results/accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import neurocc
from neurocc.compiler.frontend.reader import read_file
from neurocc.runtime.accuracy import ALL_TARGETS, evaluate

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "digits"
OUTPUT = Path(__file__).resolve().parent / "results" / "accuracy.json"
MODELS = {"snntorch": "snn_snntorch.nir", "mlp": "snn_from_ann_mlp.nir", "cnn": "snn_from_ann_cnn.nir"}


def test_split() -> tuple[np.ndarray, np.ndarray]:
    split = np.load(DATA / "split.npz")
    return split["test_x"].astype(np.float64) / 16.0, split["test_y"]


def committed_steps(path: Path) -> int:
    """The steps the model was trained / converted for (`neurocc_steps` in its NIR metadata)."""
    return int(read_file(path).metadata["neurocc_steps"])


def ann_accuracy(model: str) -> float | None:
    path = DATA / "ann_accuracy.json"
    if model == "snntorch" or not path.is_file():
        return None
    return float(json.loads(path.read_text())[model]["test_accuracy"])


def bench_model(model: str, lava: int, other: int | str) -> dict[str, Any]:
    path = DATA / MODELS[model]
    net = neurocc.load(path)
    steps = committed_steps(path)
    x, y = test_split()
    choice = {t: (lava if t.startswith("loihi") else other) for t in ALL_TARGETS}
    load_before = os.getloadavg()
    start = time.perf_counter()
    rep = evaluate(net, x, y, steps, targets=ALL_TARGETS, executor=choice, progress=True)
    out = {"file": str(path.relative_to(ROOT)), "ann": ann_accuracy(model), **rep.to_json(),
           "time_s": round(time.perf_counter() - start, 1), "loadavg_before": load_before,
           "loadavg_after": os.getloadavg()}
    if model == "snntorch":
        out["snntorch_float"] = json.loads((DATA / "snn_accuracy.json").read_text())["snntorch_test_accuracy"]
    print(f"\n== {model} ({path.name}) ==\n{rep.text()}\n({out['time_s']} s)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lava-samples", type=int, default=32, help="test samples Lava runs (evenly spaced)")
    ap.add_argument("--other-samples", default="all", help="samples the SpiNNaker / Cortex-M executors run")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ",".join(MODELS))
    args = ap.parse_args()
    other: int | str = args.other_samples if args.other_samples == "all" else int(args.other_samples)
    results: dict[str, Any] = {
        "what": "digits test split (359 samples): accuracy of float, each target's integer model, each executor",
        "scoring": "output spike counts, argmax, ties to the lowest index; input rate_code(pixel/16, steps)",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "models": {},
    }
    for model in args.models.split(","):
        if not (DATA / MODELS[model]).is_file():
            raise SystemExit(f"{DATA / MODELS[model]} is missing: run the script that trains it (see docs/accuracy.md)")
        results["models"][model] = bench_model(model, args.lava_samples, other)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=OUTPUT.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(results, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600
    os.replace(tmp, OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
