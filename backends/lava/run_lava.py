"""Run a neurocc-compiled spiking network in Lava (Loihi2SimCfg, fixed_pt: Lava's bit-accurate Loihi models).

Usage:  python run_lava.py --input x.npz --output spikes.npz [--steps N] [--no-v] [--artifacts DIR]

x.npz holds `input` [T, *input_shape] (non-negative integer spike counts; 0/1 for binary spikes), or one
`input.<name>` per input population when the network has several. spikes.npz receives, per population,
`<name>.spikes` [T, n] bool and, per LIF population, `<name>.v` [T, n] int32 (membrane after reset; not
with --no-v).

The network itself is data: weights.npz next to this file (written by neurocc's Lava backend) holds, per
population, du, dv, vth, bias_mant, bias_exp and its slices (one Lava LIF per slice); per connection, the
integer weight mantissas (dense, or CSR for Sparse/DelaySparse), delays, weight_exp and sign_mode; per conv,
its kernel in Lava's (C_out, W, H, C_in // groups) layout with the weight exponent already folded in.

Process network: RingBuffer (lava.proc.io.source) per input slice -> Dense | DelayDense | Sparse | DelaySparse
-> LIF per slice; each LIF's s_out and v go to a Recorder (defined below). A conv is one lava.proc.conv Conv
from a whole population to a whole population, reached through reshape/transpose ports ((C, H, W) neuron
order <-> Lava's (W, H, C)). Every connection adds one step of latency: an input spike at step t reaches
the first LIF at t+1 (+d for a synapse with delay d).

This file imports only numpy, scipy and lava; it does not need neurocc.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.conv.process import Conv
from lava.proc.dense.process import DelayDense, Dense
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIF
from lava.proc.sparse.process import DelaySparse, Sparse
from lava.utils.weightutils import SignMode

FORMAT_VERSION = 2
SIGN_MODES = {"excitatory": SignMode.EXCITATORY, "inhibitory": SignMode.INHIBITORY, "mixed": SignMode.MIXED}
MAX_MESSAGE_BITS = 24  # graded spike payloads wider than this are not a Loihi 2 message
CONV_INT8_MAX = 127  # PyConvModelFixed types kernel_size, stride, padding, dilation and groups as int8
CONV_A_OUT_MAX = 2**23 - 1  # PyConvModelFixed wraps a_out to signed 24 bits (utils.signed_clamp)


# ---- recording ------------------------------------------------------------------------------------
# Lava's Var.get() (and so Monitor.get_data and sink RingBuffer reads) moves one element per message:
# reading back 100 steps of a 4624-neuron layer takes seconds. The Recorder keeps its trace in its own
# process and saves it to a file after the last step instead.

class SpikeRecorder(AbstractProcess):
    """Records a LIF's s_out every step (InPort); saves [T, n] spikes to `path` after the last step."""

    def __init__(self, *, shape: tuple[int, ...], num_steps: int, path: str) -> None:
        super().__init__(shape=shape, num_steps=num_steps, path=path)
        self.s_in = InPort(shape=shape)


class Recorder(SpikeRecorder):
    """Also records v after each step (RefPort). Costs an extra management phase per step for every process."""

    def __init__(self, *, shape: tuple[int, ...], num_steps: int, path: str) -> None:
        super().__init__(shape=shape, num_steps=num_steps, path=path)
        self.v_in = RefPort(shape=shape)


class AbstractPyRecorderModel(PyLoihiProcessModel):
    """Shared by both recorders (Lava forbids subclassing a model that already implements a Process)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        steps = int(proc_params["num_steps"])
        n = int(np.prod(proc_params["shape"]))
        self.spikes = np.zeros((steps, n), dtype=bool)

    def run_spk(self) -> None:
        self.spikes[self.time_step - 1] = self.s_in.recv() != 0


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeRecorderModel(AbstractPyRecorderModel):
    def run_spk(self) -> None:
        super().run_spk()
        if self.time_step == self.spikes.shape[0]:
            np.savez(self.proc_params["path"], spikes=self.spikes)


@implements(proc=Recorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRecorderModel(AbstractPyRecorderModel):
    v_in: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params: dict[str, Any]) -> None:
        super().__init__(proc_params)
        self.v = np.zeros(self.spikes.shape, dtype=np.int32)

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:
        # Post-management follows every process's spiking phase: v is the step's value after reset.
        self.v[self.time_step - 1] = self.v_in.read()
        if self.time_step == self.spikes.shape[0]:
            np.savez(self.proc_params["path"], spikes=self.spikes, v=self.v)


# ---- reading the artifacts ------------------------------------------------------------------------

class ArtifactProblem(Exception):
    """The artifacts or the input are unusable; the message names the file and the problem."""


def load_network(artifacts: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = artifacts / "weights.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactProblem(f"{path}: cannot read ({exc})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactProblem(f"{path}: format version {meta.get('format_version')}, this program reads "
                              f"{FORMAT_VERSION}")
    try:
        validate(meta, arrays, path)
    except KeyError as exc:
        raise ArtifactProblem(f"{path}: missing array {exc}") from None
    return meta, arrays


def validate(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    """Refuse values Lava's fixed_pt models would clip, truncate or reject. (A Lava process that raises
    mid-run deadlocks the runtime instead of failing, so check before starting it.)"""
    def bad(what: str) -> None:
        raise ArtifactProblem(f"{path}: {what}")

    limits = {"du": (0, 4095), "dv": (0, 4095), "vth": (0, 2**17 - 1), "bias_mant": (-4096, 4095), "bias_exp": (0, 7)}
    for i, pop in enumerate(meta["populations"]):
        if pop["kind"] == "input":
            continue
        for var, (lo, hi) in limits.items():
            x = arrays[f"pop{i}.{var}"]
            if x.size and (x.min() < lo or x.max() > hi):
                bad(f"population {pop['name']!r}: {var} outside Lava's {lo}..{hi}")
    weight_range = {"excitatory": (0, 255), "inhibitory": (-255, 0), "mixed": (-256, 254)}
    for conn in meta["connections"]:
        key = f"conn{conn['index']}"
        w = arrays[f"{key}.weights"] if f"{key}.weights" in arrays else arrays[f"{key}.data"]
        mode = str(arrays[f"{key}.sign_mode"])
        lo, hi = weight_range[mode]
        if w.size and (w.min() < lo or w.max() > hi or (mode == "mixed" and np.any(w % 2))):
            bad(f"{conn['label']}: weights not exact in Lava's {mode} 8-bit format")
        d = arrays.get(f"{key}.delays", np.zeros(0, dtype=np.int64))
        if d.size and (d.min() < 0 or d.max() > 63):
            bad(f"{conn['label']}: delays outside Lava's 0..63")
    for conv in meta["convs"]:
        validate_conv(conv, arrays[f"conv{conv['index']}.kernel"], meta, bad)


def conv_sums(kernel: np.ndarray) -> tuple[int, int]:
    """Largest summed positive and smallest summed negative weight over a kernel's output channels."""
    flat = kernel.reshape(kernel.shape[0], -1).astype(np.int64)
    pos = np.where(flat > 0, flat, 0).sum(axis=1).max(initial=0)
    neg = np.where(flat < 0, flat, 0).sum(axis=1).min(initial=0)
    return int(pos), int(neg)


def check_conv_peak(conv: dict[str, Any], kernel: np.ndarray, peak: int) -> None:
    """Lava's Conv wraps a_out to signed 24 bits, the reference does not: refuse any input that could reach it."""
    pos, neg = conv_sums(kernel)
    if peak * pos > CONV_A_OUT_MAX or peak * neg < -CONV_A_OUT_MAX - 1:
        raise ArtifactProblem(f"{conv['label']}: spike values up to {peak} through a kernel whose channel sums "
                              f"reach {max(pos, -neg)} can pass Lava Conv's signed 24-bit a_out wrap")


def validate_conv(conv: dict[str, Any], kernel: np.ndarray, meta: dict[str, Any], bad: Callable[[str], None]) -> None:
    """What emit guarantees for a Conv, checked again: the model would wrap or misread it silently."""
    label = conv["label"]
    pops = meta["populations"]
    for end in ("pre", "post"):
        pop = pops[conv[end]]
        if len(pop["slices"]) != 1:
            bad(f"{label}: its {end} population {pop['name']!r} has {len(pop['slices'])} slices; a Conv needs "
                "one process (Lava ports cannot slice or concatenate)")
    c_in, h, w = conv["in_shape"]
    c_out, h_out, w_out = conv["out_shape"]
    groups = int(conv["groups"])
    if pops[conv["pre"]]["size"] != c_in * h * w or pops[conv["post"]]["size"] != c_out * h_out * w_out:
        bad(f"{label}: shapes {conv['in_shape']} -> {conv['out_shape']} do not match its populations")
    if kernel.ndim != 4 or kernel.shape[0] != c_out or groups < 1 or c_in % groups or c_out % groups \
            or kernel.shape[3] != c_in // groups:
        bad(f"{label}: kernel shape {list(kernel.shape)} does not fit {c_in} -> {c_out} channels, groups {groups}")
    geometry = [*kernel.shape[1:3], *conv["stride"], *conv["dilation"], groups]
    if min(geometry) < 1 or max(geometry + conv["padding"]) > CONV_INT8_MAX or min(conv["padding"]) < 0:
        bad(f"{label}: kernel size, stride, padding, dilation or groups outside Lava Conv's int8 fields")
    size = [(w + 2 * conv["padding"][0] - conv["dilation"][0] * (kernel.shape[1] - 1) - 1) // conv["stride"][0] + 1,
            (h + 2 * conv["padding"][1] - conv["dilation"][1] * (kernel.shape[2] - 1) - 1) // conv["stride"][1] + 1]
    if size != [w_out, h_out]:
        bad(f"{label}: Lava's Conv gives {size[1]}x{size[0]} outputs, not {h_out}x{w_out}")
    pos, neg = conv_sums(kernel)
    if pos > CONV_A_OUT_MAX or neg < -CONV_A_OUT_MAX - 1:
        bad(f"{label}: kernel channel sums reach {max(pos, -neg)}, past Lava Conv's signed 24-bit a_out")


def load_inputs(path: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per input population: int64 [T, n] spike counts."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ArtifactProblem(f"{path}: cannot read the input ({exc})") from None
    pops = {p["name"]: p for p in meta["populations"]}
    out = {}
    for name in meta["inputs"]:
        key = "input" if len(meta["inputs"]) == 1 and "input" in stored else f"input.{name}"
        if key not in stored:
            raise ArtifactProblem(f"{path}: no array {key!r} (has {sorted(stored)})")
        x = np.asarray(stored[key])
        size = pops[name]["size"]
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != size:
            raise ArtifactProblem(f"{path}: {key!r} has shape {list(x.shape)}, expected [T, "
                                  f"{', '.join(map(str, pops[name]['shape']))}]")
        flat = x.reshape(x.shape[0], size)
        if not np.all(np.isfinite(flat)) or np.any(flat < 0) or np.any(flat != np.rint(flat)):
            raise ArtifactProblem(f"{path}: {key!r} must hold non-negative integer spike counts")
        out[name] = flat.astype(np.int64)
    steps = {x.shape[0] for x in out.values()}
    if len(steps) != 1:
        raise ArtifactProblem(f"{path}: the inputs have different numbers of steps {sorted(steps)}")
    return out


def message_bits(x: np.ndarray) -> int:
    """0 for binary spikes; else the payload width graded spikes need (Dense then computes W @ s)."""
    peak = int(x.max()) if x.size else 0
    if peak <= 1:
        return 0
    bits = peak.bit_length()
    if bits > MAX_MESSAGE_BITS:
        raise ArtifactProblem(f"input spike count {peak} needs {bits} bits, above {MAX_MESSAGE_BITS}")
    return bits


def check_graded(conn: dict[str, Any], arrays: dict[str, np.ndarray], peak: int) -> None:
    """Graded spikes go through an int32 W @ s in Lava's models; refuse inputs that would overflow it."""
    key = f"conn{conn['index']}"
    if f"{key}.weights" in arrays:
        row_sum = int(np.abs(arrays[f"{key}.weights"]).sum(axis=1).max(initial=0))
    else:
        rows = np.repeat(np.arange(len(arrays[f"{key}.indptr"]) - 1), np.diff(arrays[f"{key}.indptr"]))
        row_sum = int(np.bincount(rows, np.abs(arrays[f"{key}.data"])).max(initial=0))
    if peak * row_sum >= 2**31:
        raise ArtifactProblem(f"input spike counts up to {peak} through {conn['label']} (row |weight| sum "
                              f"{row_sum}) overflow Lava's 32-bit accumulator")


def connection_process(conn: dict[str, Any], arrays: dict[str, np.ndarray], num_message_bits: int) -> AbstractProcess:
    """One Lava connection process from a connection's arrays."""
    key = f"conn{conn['index']}"
    kwargs = {
        "weight_exp": int(arrays[f"{key}.weight_exp"]),
        "num_weight_bits": int(conn["num_weight_bits"]),
        "sign_mode": SIGN_MODES[str(arrays[f"{key}.sign_mode"])],
        "num_message_bits": num_message_bits,
        "name": conn["label"],
    }
    kind = conn["process"]
    if kind in ("Dense", "DelayDense"):
        weights = arrays[f"{key}.weights"].astype(np.int64)
        if kind == "Dense":
            return Dense(weights=weights, **kwargs)
        delays = arrays[f"{key}.delays"].astype(int)
        return DelayDense(weights=weights, delays=delays, max_delay=int(delays.max()), **kwargs)
    shape = tuple(int(s) for s in arrays[f"{key}.shape"])
    indices, indptr = arrays[f"{key}.indices"], arrays[f"{key}.indptr"]
    weights = sp.csr_matrix((arrays[f"{key}.data"].astype(np.int64), indices, indptr), shape=shape)
    if kind == "Sparse":
        return Sparse(weights=weights, **kwargs)
    # DelaySparse reads delays only where they are non-zero; delay-0 synapses need no stored entry.
    delays = sp.csr_matrix((arrays[f"{key}.delays"].astype(int), indices, indptr), shape=shape)
    delays.eliminate_zeros()
    return DelaySparse(weights=weights, delays=delays, max_delay=int(conn["max_delay"]), **kwargs)


# ---- building and running -------------------------------------------------------------------------

class Components:
    """Union-find over processes: Lava's run() starts only the processes connected to the one it is called on."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.procs: dict[int, AbstractProcess] = {}

    def find(self, p: AbstractProcess) -> int:
        k = id(p)
        self.procs.setdefault(k, p)
        self.parent.setdefault(k, k)
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def join(self, a: AbstractProcess, b: AbstractProcess) -> None:
        self.parent[self.find(a)] = self.find(b)

    def anchors(self, among: list[AbstractProcess]) -> list[AbstractProcess]:
        """One process per component that contains any of `among`."""
        roots = dict.fromkeys(self.find(p) for p in among)
        return [self.procs[r] for r in roots]


def build(meta: dict[str, Any], arrays: dict[str, np.ndarray], inputs: dict[str, np.ndarray], steps: int,
          record_dir: Path, record_v: bool = True) -> tuple[list[AbstractProcess], dict[tuple[int, int], Path]]:
    """The process network. Returns one process per connected component that records something (run each
    of them) and, per (population, slice), its recording file."""
    parts = Components()
    recorders: list[AbstractProcess] = []
    senders: dict[tuple[int, int], AbstractProcess] = {}
    lifs: dict[tuple[int, int], LIF] = {}
    records: dict[tuple[int, int], Path] = {}
    for i, pop in enumerate(meta["populations"]):
        for j, (start, stop) in enumerate(pop["slices"]):
            label = f"{pop['name']}[{start}:{stop}]"
            if pop["kind"] == "input":
                # RingBuffer sends data[:, (time_step - 1) % T]: column t at step t + 1 (Lava counts from 1).
                data = inputs[pop["name"]][:steps, start:stop].T.astype(np.int32)
                proc: AbstractProcess = RingBuffer(data=data)
            else:
                key = f"pop{i}"
                proc = LIF(shape=(stop - start,), du=int(arrays[f"{key}.du"]), dv=int(arrays[f"{key}.dv"]),
                           vth=int(arrays[f"{key}.vth"]), bias_mant=arrays[f"{key}.bias_mant"][start:stop],
                           bias_exp=arrays[f"{key}.bias_exp"][start:stop], name=label)
                path = record_dir / f"pop{i}_slice{j}.npz"
                rec_cls = Recorder if record_v else SpikeRecorder
                rec = rec_cls(shape=(stop - start,), num_steps=steps, path=str(path))
                proc.s_out.connect(rec.s_in)
                if isinstance(rec, Recorder):
                    rec.v_in.connect_var(proc.v)
                lifs[(i, j)], records[(i, j)] = proc, path
                parts.join(proc, rec)
                recorders.append(rec)
            senders[(i, j)] = proc
    graded = {name: message_bits(x[:steps]) for name, x in inputs.items()}
    names = [p["name"] for p in meta["populations"]]
    for conn in meta["connections"]:
        pre, post = conn["pre"], conn["post"]
        bits = graded.get(names[pre[0]], 0)
        if bits:
            check_graded(conn, arrays, int(inputs[names[pre[0]]][:steps].max()))
        proc = connection_process(conn, arrays, bits)
        senders[tuple(pre)].s_out.connect(proc.s_in)
        proc.a_out.connect(lifs[tuple(post)].a_in)
        parts.join(senders[tuple(pre)], proc)
        parts.join(proc, lifs[tuple(post)])
    for conv in meta["convs"]:
        kernel = arrays[f"conv{conv['index']}.kernel"]
        bits = graded.get(names[conv["pre"]], 0)
        if bits:
            check_conv_peak(conv, kernel, int(inputs[names[conv["pre"]]][:steps].max()))
        proc = conv_process(conv, kernel, bits)
        sender, lif = senders[(conv["pre"], 0)], lifs[(conv["post"], 0)]
        # Neuron order is C-order (C, H, W); Lava's Conv reads and writes (W, H, C).
        sender.s_out.reshape(tuple(conv["in_shape"])).transpose((2, 1, 0)).connect(proc.s_in)
        proc.a_out.transpose((2, 1, 0)).reshape(lif.a_in.shape).connect(lif.a_in)
        parts.join(sender, proc)
        parts.join(proc, lif)
    return parts.anchors(recorders), records


def conv_process(conv: dict[str, Any], kernel: np.ndarray, num_message_bits: int) -> Conv:
    """One Lava Conv. Its model ignores weight_exp (folded into the kernel by emit) and never clips weights."""
    return Conv(weight=kernel.astype(np.int32), weight_exp=0, input_shape=tuple(conv["lava_input_shape"]),
                padding=tuple(conv["padding"]), stride=tuple(conv["stride"]), dilation=tuple(conv["dilation"]),
                groups=int(conv["groups"]), num_message_bits=num_message_bits, name=conv["label"])


def run(artifacts: Path, input_path: Path, output_path: Path, steps: int | None = None,
        record_v: bool = True) -> dict[str, float]:
    meta, arrays = load_network(artifacts)
    inputs = load_inputs(input_path, meta)
    available = next(iter(inputs.values())).shape[0]
    steps = available if steps is None else steps
    if not 0 < steps <= available:
        raise ArtifactProblem(f"{input_path}: {available} input steps; cannot run {steps}")
    times: dict[str, float] = {}
    record_dir = Path(tempfile.mkdtemp(prefix="neurocc-lava-"))
    try:
        start = time.perf_counter()
        anchors, records = build(meta, arrays, inputs, steps, record_dir, record_v)
        times["build_s"] = time.perf_counter() - start
        start = time.perf_counter()
        for anchor in anchors:  # usually one: the whole network is connected
            try:
                anchor.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            finally:
                anchor.stop()
        times["run_s"] = time.perf_counter() - start
        out: dict[str, np.ndarray] = {}
        for i, pop in enumerate(meta["populations"]):
            name = pop["name"]
            if pop["kind"] == "input":
                out[f"{name}.spikes"] = inputs[name][:steps] != 0
                continue
            parts = []
            for j in range(len(pop["slices"])):
                with np.load(records[(i, j)]) as rec:
                    parts.append((rec["spikes"], rec["v"] if record_v else None))
            out[f"{name}.spikes"] = np.concatenate([s for s, _ in parts], axis=1)
            if record_v:
                out[f"{name}.v"] = np.concatenate([v for _, v in parts], axis=1)
    finally:
        shutil.rmtree(record_dir, ignore_errors=True)
    out["meta"] = np.array(json.dumps({"steps": steps, "lava_version": metadata.version("lava-nc"), **times}))
    tmp = output_path.with_name(output_path.name + ".part")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **out)
    tmp.replace(output_path)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, type=Path, help=".npz with `input` [T, *input_shape]")
    parser.add_argument("--output", required=True, type=Path, help=".npz to write spikes and v to")
    parser.add_argument("--steps", type=int, default=None, help="steps to run (default: all input steps)")
    parser.add_argument("--no-v", action="store_true",
                        help="record spikes only (recording v adds a management phase to every step)")
    parser.add_argument("--artifacts", type=Path, default=Path(__file__).resolve().parent,
                        help="directory holding weights.npz (default: this file's directory)")
    args = parser.parse_args(argv)
    try:
        times = run(args.artifacts, args.input, args.output, args.steps, record_v=not args.no_v)
    except ArtifactProblem as exc:
        print(f"run_lava: {exc}", file=sys.stderr)
        return 2
    print(f"run_lava: wrote {args.output} (build {times['build_s']:.2f} s, run {times['run_s']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
