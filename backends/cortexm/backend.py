"""The cortexm family's Backend record: lower -> quantize -> one CPU -> memory layout; the firmware runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...compiler.backend import Backend, ExecutorRun
from ...compiler.pipeline import LOWER, ONE_CPU, QUANTIZE
from .emit import emit
from .layout import LAYOUT


def execute(out_dir: Path, raster: Any, emulate: bool = True) -> ExecutorRun:
    from ...runtime.executors.cortexm import run

    return run(out_dir, raster, emulate)


BACKEND = Backend(
    family="cortexm", passes=(LOWER, QUANTIZE, ONE_CPU, LAYOUT), emit=emit, executor=execute,
    required_sections=frozenset({"format", "cost", "memory", "board"}),
    description="Cortex-M: a model image for the C99 engine, flashed and driven over a serial port",
)
