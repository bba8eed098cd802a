"""The device link: framing (COBS, sequence, CRC32), the model-protocol client, AN3155 flashing, QEMU.

Entry points for the CLI and `verify` (deploy.py): flash, run, emulate, run_emulated.
"""

from __future__ import annotations

from .an3155 import FlashError, FlashReport
from .client import DeviceClient, DeviceError, LinkError
from .deploy import Emulator, RunResult, artifacts, emulate, flash, run, run_detailed, run_emulated
from .firmware import ToolchainError
from .link import PortError, open_port
from .qemu import EmulatorError, Qemu

__all__ = ["DeviceClient", "DeviceError", "Emulator", "EmulatorError", "FlashError", "FlashReport", "LinkError",
           "PortError", "Qemu", "RunResult", "ToolchainError", "artifacts", "emulate", "flash", "open_port", "run",
           "run_detailed", "run_emulated"]
