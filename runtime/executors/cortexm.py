"""Run a Cortex-M model image on the firmware's engine built for the host (firmware/host/snn_run.c).

The same C engine that runs on the M4, compiled with gcc: the fast check that the image and the C
arithmetic match the reference simulator, for every network, before any emulator is involved.
"""

from __future__ import annotations

import json
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...compiler.backend import ExecutorRun
from ...compiler.errors import ArtifactError, InputError
from ...compiler.ir import NETWORK_FILE, IntNetwork, load_int_network
from ..serial.firmware import build_host
from ..simulator import integer_inputs


@dataclass
class HostRun:
    spikes: dict[str, np.ndarray]  # LIF population -> [T, n] bool
    stats: dict[str, int] = field(default_factory=dict)  # the engine's counters and arena size


def run_image(image: bytes, inet: IntNetwork, raster: Any, exe: Path | None = None) -> HostRun:
    """Run `image` (packed from `inet`, whose population order it keeps) on an input raster."""
    exe = exe or build_host()
    parts = integer_inputs(inet, raster)
    names = list(inet.populations)
    cols = [parts[n] for n in names if inet.populations[n].is_input]
    x = np.concatenate(cols, axis=1)
    if x.size and x.max() > 255:
        raise InputError(f"input spike count {int(x.max())} in one step; the engine takes at most 255")
    steps, n_in = x.shape
    with tempfile.TemporaryDirectory(prefix="neurocc-host-") as tmp:
        t = Path(tmp)
        (t / "model.bin").write_bytes(image)
        (t / "in.bin").write_bytes(b"NCRI" + struct.pack("<II", steps, n_in) + x.astype(np.uint8).tobytes())
        proc = subprocess.run([str(exe), str(t / "model.bin"), str(t / "in.bin"), str(t / "out.bin")],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise ArtifactError(f"host engine failed: {proc.stderr.strip()}")
        data = (t / "out.bin").read_bytes()
    if data[:4] != b"NCRO":
        raise ArtifactError("host engine wrote no spike raster")
    t_out, m = struct.unpack_from("<II", data, 4)
    y = np.frombuffer(data, np.uint8, offset=12).reshape(t_out, m)
    spikes: dict[str, np.ndarray] = {}
    col = 0
    for name in names:
        p = inet.populations[name]
        if not p.is_input:
            spikes[name] = y[:, col:col + p.size].astype(bool)
            col += p.size
    return HostRun(spikes, json.loads(proc.stdout))


def run_host(out_dir: str | Path, raster: Any, exe: Path | None = None) -> dict[str, np.ndarray]:
    """A Cortex-M output directory (model.bin + network.npz) on the host-built engine."""
    out_dir = Path(out_dir)
    inet = load_int_network(out_dir / NETWORK_FILE)
    return run_image((out_dir / "model.bin").read_bytes(), inet, raster, exe).spikes


def run(out_dir: str | Path, raster: Any, emulate: bool = True) -> ExecutorRun:
    """The Cortex-M executor: the firmware on QEMU when QEMU models the board and `emulate` is true
    (flashed over AN3155, the model protocol over USART1), else the engine built for the host."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    try:
        section = json.loads(manifest_path.read_text()).get("cortexm", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: cannot read the manifest ({exc}). Fix: compile again") from None
    qemu_machine = section.get("qemu_machine")
    if emulate and qemu_machine:
        from ..serial import run_emulated

        return ExecutorRun(run_emulated(out_dir, raster),
                           f"firmware on QEMU {qemu_machine} (flashed over AN3155, model protocol over USART1)")
    return ExecutorRun(run_host(out_dir, raster), "firmware engine built for the host (gcc)")
