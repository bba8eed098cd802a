"""Train the digits snnTorch SNN (64 -> 64 Leaky -> 10 Leaky), export it to NIR, record its test accuracy.

Deterministic (seeded, single-threaded CPU, deterministic algorithms), well under 2 minutes, no download: the
digits ship inside scikit-learn and tests/data/digits/split.npz fixes the split (pixel / 16 in [0, 1]).

- Input: neurocc.runtime.encoding.rate_code(x, STEPS), the coding every neurocc evaluation uses.
- Neurons: snn.Leaky with reset_mechanism="zero". snnTorch's default ("subtract") cannot be written to NIR
  (the exporter drops it and NIR has only reset to v_reset), so the exported file would not mean what was
  trained. With "zero" and snnTorch's reset_delay, the spike trains equal NIR's reset-to-0 LIF (the stored
  membrane is zeroed one step later, but before it is used). beta and threshold are per-neuron tensors:
  snnTorch's exporter fails type inference on scalars.
- Loss: cross-entropy on output spike counts (surrogate gradient: fast sigmoid).
- Export: neurocc.compiler.frontend.torch_export.from_torch (records framework, dt = 1e-4 and convention),
  the number of steps recorded as `neurocc_steps`.
- Check: the exported file, read by neurocc and simulated in float with latency="framework", must give
  snnTorch's own output spike counts on every test sample (it exits non-zero if not).

Writes tests/data/digits/snn_snntorch.nir and tests/data/digits/snn_accuracy.json.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "digits"
SEED = 0
STEPS = 32
HIDDEN = 64
EPOCHS = 40
BATCH = 64
BETA = 0.9


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    split = np.load(DATA / "split.npz")
    d = load_digits()
    x = (d.images.reshape(len(d.images), -1) / 16.0).astype(np.float32)
    return x[split["train_idx"]], d.target[split["train_idx"]], x[split["test_idx"]], d.target[split["test_idx"]]


class DigitsSNN(nn.Module):
    def __init__(self) -> None:
        import snntorch as snn
        from snntorch import surrogate
        super().__init__()
        grad = surrogate.fast_sigmoid(slope=25)
        self.fc1 = nn.Linear(64, HIDDEN)
        self.lif1 = snn.Leaky(beta=torch.full((HIDDEN,), BETA), threshold=torch.ones(HIDDEN), spike_grad=grad,
                              reset_mechanism="zero", init_hidden=True)
        self.fc2 = nn.Linear(HIDDEN, 10)
        self.lif2 = snn.Leaky(beta=torch.full((10,), BETA), threshold=torch.ones(10), spike_grad=grad,
                              reset_mechanism="zero", init_hidden=True, output=True)

    def reset(self) -> None:
        self.lif1.reset_hidden()
        self.lif2.reset_hidden()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spk, _ = self.lif2(self.fc2(self.lif1(self.fc1(x))))
        return spk

    def counts(self, raster: torch.Tensor) -> torch.Tensor:
        """Output spike counts [N, 10] for a raster [T, N, 64]."""
        self.reset()
        return torch.stack([self(raster[t]) for t in range(raster.shape[0])]).sum(0)


def coded(x: np.ndarray) -> torch.Tensor:
    from neurocc.runtime.encoding import rate_code
    return torch.from_numpy(rate_code(x, STEPS))  # [T, N, 64]


def train(net: DigitsSNN, x: np.ndarray, y: np.ndarray) -> None:
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    raster, target = coded(x), torch.from_numpy(y).long()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(y), generator=gen).split(BATCH):
            counts = net.counts(raster[:, idx])
            loss = nn.functional.cross_entropy(counts, target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()


def neurocc_counts(path: Path, x: np.ndarray) -> np.ndarray:
    """Output spike counts of the exported file, simulated by neurocc in float (same-step delivery)."""
    import neurocc
    from neurocc.runtime.encoding import rate_code
    net = neurocc.load(path)
    out_src = net.outputs[next(iter(net.outputs))]
    return np.array([neurocc.simulate_float(net, rate_code(s, STEPS), record=False).spikes[out_src].sum(0)
                     for s in x])


def export(net: DigitsSNN, path: Path) -> str:
    import nir

    from neurocc.compiler.frontend.torch_export import from_torch
    net.reset()
    graph = from_torch(net, torch.zeros(1, 64))
    graph.metadata = {**(graph.metadata or {}), "neurocc_steps": STEPS, "neurocc_input_coding": "rate"}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".nir.tmp")
    os.close(fd)
    nir.write(tmp, graph)
    os.replace(tmp, path)
    return "neurocc.compiler.frontend.torch_export.from_torch"


def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = digits()
    net = DigitsSNN()
    train(net, x_tr, y_tr)
    train_s = time.perf_counter() - start
    with torch.no_grad():
        counts = net.counts(coded(x_te)).numpy()
    # argmax ties go to the lowest index, as in runtime/accuracy.py
    acc = float((np.argmax(counts, axis=1) == y_te).mean())
    print(f"snnTorch test accuracy {acc:.4f} (trained in {train_s:.1f} s)")
    nir_path = DATA / "snn_snntorch.nir"
    exporter = export(net, nir_path)
    ours = neurocc_counts(nir_path, x_te)
    same = int(np.all(ours == counts, axis=1).sum())
    ours_acc = float((np.argmax(ours, axis=1) == y_te).mean())
    report = {
        "seed": SEED, "epochs": EPOCHS, "steps": STEPS, "hidden": HIDDEN, "beta": BETA, "n_test": int(len(y_te)),
        "reset_mechanism": "zero", "exporter": exporter,
        "snntorch_test_accuracy": acc,
        "neurocc_float_framework_accuracy": ours_acc,
        "samples_with_identical_output_counts": same,
        "train_s": round(train_s, 1),
    }
    fd, tmp = tempfile.mkstemp(dir=DATA, suffix=".json.tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, DATA / "snn_accuracy.json")
    print(json.dumps(report, indent=2))
    if same != len(y_te):
        raise SystemExit(f"neurocc's float simulation of {nir_path} differs from snnTorch on "
                         f"{len(y_te) - same} of {len(y_te)} test samples")


if __name__ == "__main__":
    main()
