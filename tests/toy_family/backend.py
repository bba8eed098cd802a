"""The toy family: every population on one CPU; its artifact is the integer network and a manifest, and
its executor steps the file's neurons with the shared integer LIF, delivering synapses densely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from neurocc.backends.output_dir import write_atomically
from neurocc.compiler.backend import Backend, ExecutorRun
from neurocc.compiler.ir import NETWORK_FILE, Mapping, load_int_network, manifest_default, save_int_network
from neurocc.compiler.ir.lif import LifNeurons, Widths, shift_by_exponent
from neurocc.compiler.pipeline import LOWER, ONE_CPU, QUANTIZE
from neurocc.runtime.simulator import integer_inputs


def emit(mapping: Mapping, out_dir: Path) -> Path:
    def write(tmp: Path) -> None:
        save_int_network(mapping.network, tmp / NETWORK_FILE)
        (tmp / "manifest.json").write_text(json.dumps({**mapping.summary(), "backend": "toy"},
                                                      default=manifest_default))

    return write_atomically(out_dir, "the toy artifacts", write)


def execute(out_dir: Path, raster: Any, emulate: bool = True) -> ExecutorRun:
    inet = load_int_network(Path(out_dir) / NETWORK_FILE)
    inputs = integer_inputs(inet, raster)
    steps = next(iter(inputs.values())).shape[0]
    lifs = [n for n, p in inet.populations.items() if not p.is_input]
    state = {n: (np.zeros(inet.populations[n].size, np.int64),) * 2 for n in lifs}
    neurons = {n: LifNeurons(p.du, p.dv, p.vth, p.bias_effective(), Widths.of(inet.format))
               for n, p in inet.populations.items() if not p.is_input}
    slots = max((p.max_delay for p in inet.projections), default=0) + 2
    ring = {n: np.zeros((slots, inet.populations[n].size), np.int64) for n in lifs}
    spikes = {n: np.zeros((steps, inet.populations[n].size), bool) for n in lifs}
    for t in range(steps):
        fired = {}
        for n in lifs:
            u, v = state[n]
            u, v, f = neurons[n].step(u, v, ring[n][t % slots].copy())
            ring[n][t % slots] = 0
            state[n] = (u, v)
            spikes[n][t] = fired[n] = f
        for proj in inet.projections:  # dense per delay: slow, independent of the reference's layout
            s = inputs[proj.pre][t] if proj.pre in inputs else fired[proj.pre].astype(np.int64)
            rows = np.repeat(np.arange(proj.weights.shape[0]), np.diff(proj.weights.indptr))
            for d in np.unique(proj.delays):
                sel = proj.delays == d
                acc = np.zeros(proj.weights.shape[0], np.int64)
                np.add.at(acc, rows[sel], proj.weights.data[sel].astype(np.int64) * s[proj.weights.indices[sel]])
                ring[proj.post][(t + 1 + int(d)) % slots] += shift_by_exponent(acc, proj.weight_exp)
    return ExecutorRun(spikes, "toy dense executor")


BACKEND = Backend(family="toy", passes=(LOWER, QUANTIZE, ONE_CPU), emit=emit, executor=execute,
                  required_sections=frozenset({"format", "cost"}), description="a test's toy family")
