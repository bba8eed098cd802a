"""The Python API behind the CLI: compile, verify, quantization reports."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .compiler.backend import backend_for
from .compiler.errors import ArtifactError, InputError, TargetError
from .compiler.ir import NETWORK_FILE, Mapping, Network, load_int_network
from .compiler.passes.lower import lower
from .compiler.pipeline import compile_network, to_integer
from .compiler.targets.target import Target
from .runtime.report import (
    PopulationAgreement,
    WeightQuantization,
    agreement_text,
    argmax_agree,
    compare_runs,
    output_scores,
    weight_quantization,
    weights_text,
)
from .runtime.simulator import SimResult, simulate_float, simulate_int


def compile(net: Network, target: Target | str, progress: bool | None = None,  # noqa: A001
            inputs: np.ndarray | None = None, seed: int = 0) -> Mapping:
    """Compile a float network for `target` (a shipped name or a .toml path).

    With `inputs` (a raster), a float run measures each neuron's rate and placement weighs
    spike traffic by it; otherwise every neuron counts at a default rate.
    """
    rates = None
    if inputs is not None:
        run = simulate_float(net, inputs, record=False)
        rates = {name: s.mean(axis=0) for name, s in run.spikes.items()}
    return compile_network(net, target, progress=progress, rates=rates, seed=seed)


def read_raster(path: str | Path) -> np.ndarray:
    """An input raster: an .npz holding `input` of shape [T, *in_shape] (the corpus format)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:  # our handle: closed on any error
            data = np.load(fh, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputError(f"{path}: a single .npy array, not an .npz archive. Fix: np.savez(path, input=x)")
            with data:
                if "input" not in data.files:
                    raise InputError(f"{path}: no array named 'input' (has {data.files}). Fix: np.savez(path, input=x)")
                return np.asarray(data["input"])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: cannot read input raster ({exc}). Fix: an .npz holding `input` of shape "
                         "[T, *input_shape], written with np.savez(path, input=x)") from None


@dataclass
class QuantizationReport:
    target: str
    populations: list[PopulationAgreement]
    argmax: dict[str, bool]
    float_run: SimResult = field(repr=False)
    int_run: SimResult = field(repr=False)
    weights: list[WeightQuantization] = field(default_factory=list)  # per projection: conv kernels and rows

    def text(self) -> str:
        return (f"quantization report for {self.target}\n" + agreement_text(self.populations, self.argmax)
                + "\n\n" + weights_text(self.weights))


def quantization_report(net: Network, target: Target | str, raster: np.ndarray) -> QuantizationReport:
    """Float (hardware timing) vs integer runs of the same input, per population."""
    inet = to_integer(net, target)
    weights = weight_quantization(lower(net), inet)
    f = simulate_float(net, raster, latency="hardware")
    i = simulate_int(inet, raster)
    fs, is_ = output_scores(net, inet, f, integer=False), output_scores(net, inet, i, integer=True)
    argmax = {k: argmax_agree(fs[k], is_[k]) for k in fs}
    return QuantizationReport(inet.target, compare_runs(net, inet, f, i), argmax, f, i, weights)


@dataclass
class Divergence:
    population: str
    neuron: int
    step: int
    expected: bool
    got: bool


@dataclass
class VerifyReport:
    out_dir: str
    family: str
    executor: str
    steps: int
    populations: list[str]
    identical: bool
    first_divergence: Divergence | None
    executor_spikes: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        head = f"{self.executor} vs reference simulator: {self.steps} steps, {len(self.populations)} populations"
        if self.identical:
            return head + ": identical spikes, every neuron, every step"
        d = self.first_divergence
        assert d is not None
        return (head + f": DIVERGE first at population {d.population!r}, neuron {d.neuron}, step {d.step} "
                f"(reference {'spike' if d.expected else 'no spike'}, executor {'spike' if d.got else 'no spike'})")


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / "manifest.json"
    if not path.exists():
        raise ArtifactError(f"{path}: no manifest; {out_dir} is not a neurocc output. Fix: run neurocc compile")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: corrupt manifest ({exc}). Fix: compile again") from None


def first_divergence(reference: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> Divergence | None:
    best: Divergence | None = None
    for name, ref in reference.items():
        if name not in got:
            raise ArtifactError(f"executor returned no spikes for population {name!r}")
        out = np.asarray(got[name], dtype=bool)
        if out.shape != ref.shape:
            raise ArtifactError(f"population {name!r}: executor spikes have shape {out.shape}, expected {ref.shape}")
        diff = np.argwhere(out != ref)
        if diff.size:
            t, n = (int(x) for x in diff[0])
            if best is None or t < best.step:
                best = Divergence(name, n, t, bool(ref[t, n]), bool(out[t, n]))
    return best


def verify(out_dir: str | Path, raster: np.ndarray, emulate: bool = True) -> VerifyReport:
    """Run emitted artifacts on their family's executor and diff every spike against the reference simulator.

    The executor is the one the family's Backend record names: Lava (loihi), the SpiNNaker table
    executor (spinnaker), the firmware (cortexm: on QEMU when QEMU models the board and `emulate` is
    true, the host-built engine otherwise).
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    inet = load_int_network(out_dir / NETWORK_FILE)
    reference = simulate_int(inet, raster, record=False)
    family = manifest.get("family")
    if not isinstance(family, str):
        raise ArtifactError(f"{out_dir}: the manifest names no target family. Fix: compile again")
    try:
        backend = backend_for(family)
    except TargetError:
        raise ArtifactError(f"{out_dir}: no executor for target family {family!r}") from None
    run = backend.executor(out_dir, raster, emulate)
    ref_spikes = {k: v for k, v in reference.spikes.items() if not inet.populations[k].is_input}
    div = first_divergence(ref_spikes, run.spikes)
    return VerifyReport(str(out_dir), family, run.executor, reference.steps, list(ref_spikes), div is None, div,
                        run.spikes, run.details)
