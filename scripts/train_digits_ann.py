"""Train the digits ReLU ANNs that `neurocc convert` turns into SNNs, export them to ONNX, convert them.

Deterministic (seeded, single-threaded CPU, deterministic algorithms), < 1 minute, no download: the digits
ship inside scikit-learn and tests/data/digits/split.npz fixes the train/test split (pixel / 16 in [0, 1]).

Writes into tests/data/digits/:
  ann_mlp.onnx, ann_cnn.onnx      the trained ANNs (MLP 64-64-10 with BatchNorm1d; CNN conv-BN-ReLU-avgpool x2)
  ann_accuracy.json               their test accuracy (torch, and the ONNX graph re-read by neurocc)
  calibration.npz                 the calibration set: a fixed subset of the train split (x [N, 1, 8, 8])
  snn_from_ann_mlp.nir, snn_from_ann_cnn.nir   the converted IF SNNs (neurocc.compiler.frontend.convert)
scripts/eval_digits_conversion.py measures their accuracy (float, every target's integer model).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from neurocc.compiler.frontend.ann import forward
from neurocc.compiler.frontend.convert import DEFAULT_PERCENTILE, DEFAULT_STEPS, convert
from neurocc.compiler.frontend.onnx_reader import read_onnx
from neurocc.compiler.frontend.writer import write_graph

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "digits"
SEED = 0
EPOCHS = 60
BATCH = 64
N_CALIBRATION = 256  # train samples the normalisation sees (fixed: the first of a seeded permutation)


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    split = np.load(DATA / "split.npz")
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    return x[split["train_idx"]], d.target[split["train_idx"]], x[split["test_idx"]], d.target[split["test_idx"]]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),   # 8 x 4 x 4
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),  # 16 x 2 x 2
        nn.Flatten(), nn.Linear(64, 10))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray) -> nn.Module:
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    xt, yt = torch.tensor(x), torch.tensor(y)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=gen)
        for k in range(0, len(order), BATCH):
            idx = order[k:k + BATCH]
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy_torch(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.tensor(x)).argmax(1).numpy() == y).mean())


def export_onnx(model: nn.Module, sample: np.ndarray, path: Path) -> None:
    """The TorchScript exporter (dynamo=False): it needs no onnxscript and runs offline."""
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(model, torch.tensor(sample[:1]), tmp, dynamo=False, input_names=["x"],
                              output_names=["logits"], do_constant_folding=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    start = time.time()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, y_train, x_test, y_test = digits()
    calib = x_train[np.random.default_rng(SEED).permutation(len(x_train))[:N_CALIBRATION]]
    np.savez_compressed(DATA / "calibration.npz", x=calib)
    report: dict[str, object] = {"seed": SEED, "epochs": EPOCHS, "n_test": int(len(y_test)),
                                 "n_calibration": N_CALIBRATION}
    for name, build in (("mlp", mlp), ("cnn", cnn)):
        torch.manual_seed(SEED)
        model = train(build(), x_train, y_train)
        onnx_path = DATA / f"ann_{name}.onnx"
        export_onnx(model, x_test, onnx_path)
        layers, _ = read_onnx(onnx_path)
        acc_onnx = float((forward(layers, x_test).argmax(1) == y_test).mean())
        acc = accuracy_torch(model, x_test, y_test)
        report[name] = {"test_accuracy": acc, "test_accuracy_onnx_numpy": acc_onnx}
        graph = convert(onnx_path, DATA / "calibration.npz", percentile=DEFAULT_PERCENTILE, steps=DEFAULT_STEPS)
        write_graph(graph, DATA / f"snn_from_ann_{name}.nir")
        report[name]["thresholds"] = [float(t) for t in graph.metadata["neurocc_thresholds"]]
        print(f"{name}: ANN test accuracy {acc:.4f} (ONNX re-read: {acc_onnx:.4f}); wrote {onnx_path.name}, "
              f"snn_from_ann_{name}.nir")
    out = DATA / "ann_accuracy.json"
    fd, tmp = tempfile.mkstemp(suffix=".json.tmp", dir=DATA)
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    print(f"wrote {out} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
