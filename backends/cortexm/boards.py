"""Cortex-M boards the firmware supports, keyed by target name.

The firmware's own footprint (code + buffers, without the model) is measured from the
netduinoplus2 build (`arm-none-eabi-size firmware/build/netduinoplus2/app.elf`: 23.5 KB of text,
5.8 KB of .bss, plus a 4 KiB stack) and rounded up; the budget check adds it to the model's needs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Board:
    name: str  # firmware/boards/<name>
    board_id: int  # SNN_BOARD_* in firmware/engine/snn_image.h; an image runs only on its board
    qemu_machine: str | None  # qemu-system-arm -M, when QEMU models the board
    firmware_flash_bytes: int  # app code + constants, without the model
    firmware_ram_bytes: int  # frame buffers, stack, engine struct, without the arena


BOARDS: dict[str, Board] = {
    # STM32F405 as QEMU's netduinoplus2 models it; 0x0413 is its AN3155 device id (RM0090 DBGMCU_IDCODE).
    "stm32f405": Board("netduinoplus2", 0x0413, "netduinoplus2", 24 * 1024, 12 * 1024),
    # No QEMU model: image and budget checks only (the C engine is portable).
    "nrf52840": Board("nrf52840", 0x52840, None, 24 * 1024, 12 * 1024),
    "stm32h743": Board("stm32h743", 0x0450, None, 24 * 1024, 12 * 1024),
}

PORTABLE = Board("portable", 0, None, 24 * 1024, 12 * 1024)


def board_for(target_name: str) -> Board:
    return BOARDS.get(target_name, PORTABLE)
