"""The loihi family's Backend record: the mesh passes, the Lava emitter, Lava as executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...compiler.backend import Backend, ExecutorRun
from ...compiler.errors import TargetError
from ...compiler.pipeline import MESH_PASSES
from ...compiler.targets.target import Target
from .emit import emit

# What Lava's bit-accurate models hard-code (lava-nc 0.10.0, proc/lif/models.py PyLifModelBitAcc:
# decay_shift = 12, vth_shift = 6, act_shift = 6, max_uv_val = 2**23; proc/dense/models.py
# PyDenseModelBitAcc: 8-bit weight mantissas). A loihi target with other widths cannot run in Lava.
LAVA_WIDTHS = {"decay_bits": 12, "state_bits": 24, "activation_shift": 6, "threshold_shift": 6}
LAVA_MAX_WEIGHT_BITS = 8


def check_target(target: Target) -> None:
    fmt = target.format
    for key, want in LAVA_WIDTHS.items():
        got = getattr(fmt, key)
        if got != want:
            raise TargetError(f"{target.source or target.name}: format.{key} = {got}, but Lava's Loihi models "
                              f"(PyLifModelBitAcc) compute with {key} = {want}, so Lava could not run it bit-exactly. "
                              f"Fix: {key} = {want} for a loihi target, or use family spinnaker/cortexm")
    if fmt.weight_bits > LAVA_MAX_WEIGHT_BITS:
        raise TargetError(f"{target.source or target.name}: format.weight_bits = {fmt.weight_bits}, Lava's Dense "
                          f"takes {LAVA_MAX_WEIGHT_BITS}-bit mantissas. Fix: weight_bits <= {LAVA_MAX_WEIGHT_BITS}")


def execute(out_dir: Path, raster: Any, emulate: bool = True) -> ExecutorRun:
    from ...runtime.executors.lava import run

    return ExecutorRun(run(out_dir, raster), "Lava Loihi2SimCfg(fixed_pt)")


BACKEND = Backend(
    family="loihi", passes=MESH_PASSES, emit=emit, executor=execute,
    required_sections=frozenset({"mesh", "core", "router", "format", "encoding", "cost"}),
    check_target=check_target, description="Intel Loihi: a Lava process network run in Loihi2SimCfg(fixed_pt)",
)
