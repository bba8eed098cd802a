"""Cortex-M's own pass after quantize: lay the model out in the part's memory (pack the image, check fit).

The image is packed with the fastest synapse encodings that fit; if flash is short, with the
smallest ones. What does not fit is named (population, bytes, the part's budget) before anything
touches the disk. A conv projection costs its kernel once (plus a few hundred bytes of geometry),
in flash, however many synapses it unrolls to; in RAM only the state of its neurons.
"""

from __future__ import annotations

import dataclasses

from ...compiler.errors import TargetError
from ...compiler.ir import IntNetwork, MemoryImage
from ...compiler.pipeline import Compilation, Pass
from ...compiler.targets.target import Board, Target
from .image import pack

SLOTS = 2  # two load slots: a torn load leaves the old model running


def board_of(target: Target) -> Board:
    if target.board is None:
        raise TargetError(f"target {target.name}: no [board] section (name, board_id, firmware_flash_bytes, "
                          "firmware_ram_bytes). Fix: add it")
    return target.board


def check_fit(target: Target, image: MemoryImage) -> dict[str, int]:
    """Flash and RAM the model needs on the part; TargetError naming the largest population if over."""
    board = board_of(target)
    if target.memory is None:
        raise TargetError(f"target {target.name}: no [memory] section (flash_bytes, ram_bytes). Fix: add it")
    flash_need = board.firmware_flash_bytes + SLOTS * image.size
    ram_need = board.firmware_ram_bytes + image.arena_bytes
    worst_flash = max(image.flash_by_population, key=image.flash_by_population.get)
    kernel = image.kernel_bytes_by_population.get(worst_flash, 0)
    flash_fix = ("prune or narrow its incoming projections (fewer synapses), or choose a part with more flash"
                 if not kernel else f"its conv kernels take {kernel} bytes (stored once): fewer channels or a "
                 "smaller kernel, or a part with more flash")
    for what, need, limit, by, fix in (
        ("flash", flash_need, target.memory.flash_bytes, image.flash_by_population, flash_fix),
        ("RAM", ram_need, target.memory.ram_bytes, image.ram_by_population,
         "make it smaller or shorten its synaptic delays (each delay step costs 4 bytes per neuron), or choose "
         "a part with more RAM"),
    ):
        if need > limit:
            name, worst = max(by.items(), key=lambda kv: kv[1])
            detail = (f"the model image is {image.size} bytes, x{SLOTS} load slots, + {board.firmware_flash_bytes} "
                      "of firmware" if what == "flash" else
                      f"the engine's state is {image.arena_bytes} bytes + {board.firmware_ram_bytes} of firmware")
            raise TargetError(
                f"{target.name}: the network needs {need} bytes of {what}, the part has {limit} (over by "
                f"{need - limit}); population {name!r} needs the most, {worst} bytes ({detail}). Fix: {fix}")
    return {"flash_needed": flash_need, "ram_needed": ram_need, "flash_bytes": target.memory.flash_bytes,
            "ram_bytes": target.memory.ram_bytes, "kernel_bytes": sum(image.kernel_bytes_by_population.values())}


def memory_layout(inet: IntNetwork, target: Target) -> tuple[MemoryImage, list[str]]:
    """The packed image with its fit, and notes on the choice made."""
    board = board_of(target)
    image = pack(inet, board.board_id)
    try:
        fit = check_fit(target, image)
    except TargetError:
        smallest = pack(inet, board.board_id, size_slack=1.0)  # trade speed for flash
        if smallest.size >= image.size:
            raise
        fit = check_fit(target, smallest)
        return dataclasses.replace(smallest, fit=fit), [
            "cortexm: the smallest synapse encodings were used (the faster ones do not fit the part's flash)"]
    return dataclasses.replace(image, fit=fit), []


def _layout(c: Compilation) -> Compilation:
    m = c.need_mapping("layout")
    image, notes = memory_layout(m.network, c.target)
    return dataclasses.replace(c, mapping=dataclasses.replace(m, image=image, notes=m.notes + notes))


LAYOUT = Pass("layout", _layout)
