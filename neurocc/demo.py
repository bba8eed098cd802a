"""`make demo`: the bundled network (and one corpus network) through every target, verified.

Usage: python -m neurocc.demo OUT_DIR
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import compile as compile_network
from . import load, quantization_report, simulate, verify
from .runtime.placement_sim import plot_placement, simulate_placement
from .runtime.report import inspect_text, plot_raster

EXAMPLES = Path(__file__).resolve().parent / "examples"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
# One of each family: Lava, the SpiNNaker table executor, the firmware on an emulated STM32F405.
DEMO_TARGETS = ("loihi2", "spinnaker2", "stm32f405")


def run_one(label: str, model: Path, raster: np.ndarray, out: Path, convention: str | None) -> bool:
    print(f"\n=== {label}: {model.name} ===")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = load(model, convention=convention)
    print(inspect_text(net))
    result = simulate(net, raster)
    for name, pop in net.outputs.items():
        counts = result.spikes[pop].sum(0)
        print(f"float simulation, output {name}: {int(counts.sum())} spikes, per neuron {counts.tolist()}")
    plot_raster(result, out / f"{label}_raster.png", title=f"{model.name} (float)")
    ok = True
    for target in DEMO_TARGETS:
        print(f"\n--- {target} ---")
        print(quantization_report(net, target, raster).text())
        start = time.perf_counter()
        mapping = compile_network(net, target, progress=False)
        art = mapping.emit(out / f"{label}_{target}")
        report = verify(art, raster)
        print(f"compiled + emitted -> {art}; {report.text()} ({time.perf_counter() - start:.1f} s)")
        placement = simulate_placement(mapping, raster)
        print(placement.text())
        for path in plot_placement(placement, mapping, out / f"{label}_{target}_placement"):
            print(f"wrote {path}")
        ok &= report.identical
    return ok


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "demo-out")
    out.mkdir(parents=True, exist_ok=True)
    raster = np.load(EXAMPLES / "delay_rnn_input.npz")["input"][:100]
    ok = run_one("bundled", EXAMPLES / "delay_rnn.nir", raster, out, None)
    corpus_file = CORPUS / "snntorch_rlif.nir"
    if corpus_file.exists():
        cin = np.load(corpus_file.with_suffix(".npz"))["input"]
        ok &= run_one("corpus", corpus_file, cin, out, "snntorch")
    else:
        print(f"\n(corpus not found at {CORPUS}; skipped the corpus network)")
    print(f"\nfigures and artifacts in {out}/; every verification {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
