"""Build the firmware with firmware/Makefile (the host engine, the netduinoplus2 images, the plugin)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ...compiler.errors import NeuroccError

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
DEFAULT_BUILD = FIRMWARE_DIR / "build"

# Debian package of each tool (scripts/install.sh installs them)
TOOLS = {"make": "make", "gcc": "gcc", "arm-none-eabi-gcc": "gcc-arm-none-eabi",
         "qemu-system-arm": "qemu-system-arm", "socat": "socat", "stm32flash": "stm32flash"}


class ToolchainError(NeuroccError):
    """A build tool or emulator is missing, or the firmware does not build."""


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = " ".join(sorted({TOOLS.get(t, t) for t in missing}))
        raise ToolchainError(f"missing tool(s) {', '.join(missing)}. Fix: apt-get install {pkgs} "
                             "(or run scripts/install.sh)")


@dataclass(frozen=True)
class BoardBuild:
    dir: Path

    @property
    def bootloader(self) -> Path:
        return self.dir / "bootloader.elf"

    @property
    def app_elf(self) -> Path:
        return self.dir / "app.elf"

    @property
    def app_bin(self) -> Path:
        return self.dir / "app.bin"


def make(*targets: str, build_dir: Path | None = None, extra: dict[str, str] | None = None) -> None:
    require("make")
    args = ["make", "-s", "-C", str(FIRMWARE_DIR), f"BUILD={(build_dir or DEFAULT_BUILD).resolve()}"]
    args += [f"{k}={v}" for k, v in (extra or {}).items()]
    proc = subprocess.run(args + list(targets), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ToolchainError(f"firmware build failed (make {' '.join(targets)}):\n{tail}")


def build_host(build_dir: Path | None = None) -> Path:
    require("gcc")
    make("host", build_dir=build_dir)
    return (build_dir or DEFAULT_BUILD) / "host" / "snn_run"


def build_board(board: str = "netduinoplus2", build_dir: Path | None = None) -> BoardBuild:
    if board != "netduinoplus2":
        raise ToolchainError(f"no firmware port for board {board!r} yet (the engine is portable C99: "
                             "firmware/engine). Fix: use a stm32f405 target, or the host build")
    require("arm-none-eabi-gcc")
    make("netduinoplus2", build_dir=build_dir)
    return BoardBuild((build_dir or DEFAULT_BUILD) / "netduinoplus2")


def build_plugin(build_dir: Path | None = None) -> Path:
    require("gcc")
    make("plugin", build_dir=build_dir)
    return (build_dir or DEFAULT_BUILD) / "plugin" / "libinsncount.so"
