"""The spinnaker family's Backend record: the mesh passes, binary tables, the table executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...compiler.backend import Backend, ExecutorRun
from ...compiler.pipeline import MESH_PASSES
from .emit import emit


def execute(out_dir: Path, raster: Any, emulate: bool = True) -> ExecutorRun:
    from ...runtime.executors.spinnaker import run

    result = run(out_dir, raster)
    return ExecutorRun(result.spikes, "SpiNNaker table executor",
                       {"packets": result.packets, "synaptic_events": result.synaptic_events,
                        "link_packets": result.link_packets, "lookups": result.lookups})


BACKEND = Backend(
    family="spinnaker", passes=MESH_PASSES, emit=emit, executor=execute,
    required_sections=frozenset({"mesh", "core", "router", "format", "encoding", "cost"}),
    description="SpiNNaker 1/2: routing, master population, synaptic-matrix, delay and source tables",
)
