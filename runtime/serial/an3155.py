"""Flash over ST's serial bootloader protocol (AN3155) with stm32loader's library API.

The same code talks to ST's ROM bootloader on a real part and to our resident bootloader in QEMU's
netduinoplus2 (firmware/boards/netduinoplus2/bootloader.c). stm32loader's CLI cannot be used on a
socket (it toggles DTR/RTS), its library can: Stm32Bootloader(serial object), then get / write /
read back / go.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from dataclasses import dataclass, field

import serial

from ...compiler.errors import NeuroccError

# firmware/boards/netduinoplus2/layout.h (tests check these against the ELF)
APP_START = 0x20003000
APP_END = 0x2000A000
SLOT_A = 0x2000A000
SLOT_SIZE = 0xB000
BOOT_RECORD = 0x20020000
WRITABLE = (0x20003000, 0x20030000)  # QEMU 7.2 maps 192 KiB of SRAM at 0x20000000 (layout.h)
STM32F405_PID = 0x0413


class FlashError(NeuroccError):
    """The AN3155 bootloader refused, timed out, or read back different bytes."""


@dataclass
class FlashReport:
    device_id: int
    bootloader_version: int
    bytes_written: int
    seconds_sync: float
    seconds_write: float
    seconds_verify: float
    seconds_total: float
    segments: list[tuple[int, int]] = field(default_factory=list)  # (address, bytes)


def _progress(show: bool):
    from stm32loader.bootloader import ShowProgress

    if not show:
        return ShowProgress(None)
    try:
        from progress.bar import ChargingBar
    except ImportError:  # progress is a dependency; stay usable without a bar
        return ShowProgress(None)
    return ShowProgress(ChargingBar)


def flash_segments(ser: serial.SerialBase, segments: list[tuple[int, bytes]], go: int | None,
                   expect_pid: int = STM32F405_PID, verify: bool = True, progress: bool = False,
                   sync_attempts: int = 20) -> FlashReport:
    """Sync (0x7F), Get, Get Version, Get ID, then Write Memory + read-back verify of every segment, then Go."""
    from stm32loader.bootloader import CommandError, Stm32Bootloader, Stm32LoaderError

    t_start = time.monotonic()
    bl = Stm32Bootloader(ser, device_family="F4", verbosity=0, show_progress=_progress(progress))
    old_timeout = ser.timeout
    ser.timeout = 0.2  # short reads while syncing: QEMU drops bytes until the USART is enabled
    for attempt in range(sync_attempts):
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # stm32loader prints each retry; we count them
                bl.reset_from_system_memory()
            break
        except CommandError:
            if attempt == sync_attempts - 1:
                raise FlashError(f"no AN3155 bootloader answered the 0x7F sync ({sync_attempts} attempts). "
                                 "Fix: put the part in its bootloader (BOOT0 high + reset), or start neurocc "
                                 "emulate") from None
    t_sync = time.monotonic()
    ser.timeout = max(old_timeout or 0.0, 1.0)
    try:
        version = bl.get()
        bl.get_version()
        pid = bl.get_id()
        if pid != expect_pid:
            raise FlashError(f"device id 0x{pid:03x}, expected 0x{expect_pid:03x}: wrong part for this image")
        written = 0
        t_write = t_verify = 0.0
        for address, data in segments:
            t0 = time.monotonic()
            bl.write_memory_data(address, data)
            t1 = time.monotonic()
            t_write += t1 - t0
            written += len(data)
            if verify:
                back = bl.read_memory_data(address, len(data))
                try:
                    bl.verify_data(bytes(back), bytes(data))
                except Stm32LoaderError as exc:
                    raise FlashError(f"read-back at 0x{address:08x} differs: {exc}") from None
                t_verify += time.monotonic() - t1
        if go is not None:
            bl.go(go)
    except CommandError as exc:
        raise FlashError(f"AN3155 bootloader: {exc}. Fix: retry; check the port and the image addresses") from None
    finally:
        ser.timeout = old_timeout
    if progress:
        print(file=sys.stderr)
    return FlashReport(pid, version, written, t_sync - t_start, t_write, t_verify, time.monotonic() - t_start,
                       [(a, len(d)) for a, d in segments])
