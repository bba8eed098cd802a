"""Build the firmware with firmware/Makefile (the host engine, the netduinoplus2 images, the plugin).

The C sources are package data (`neurocc.firmware`), so an installed wheel builds them as a checkout
does. Builds go to a per-user cache keyed by the sources' digest, never into the package: site-packages
may be read-only, and two installs of different sources must not share object files.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from ...compiler.errors import NeuroccError

FIRMWARE_DIR = Path(str(resources.files("neurocc.firmware")))
SOURCE_SUFFIXES = {".c", ".h", ".ld"}

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


@cache
def source_digest() -> str:
    """sha256 over the firmware's Makefile and C sources (paths and contents), first 12 hex digits."""
    h = hashlib.sha256()
    files = [p for p in FIRMWARE_DIR.rglob("*") if p.is_file() and "build" not in p.relative_to(FIRMWARE_DIR).parts
             and (p.suffix in SOURCE_SUFFIXES or p.name == "Makefile")]
    for path in sorted(files):
        h.update(path.relative_to(FIRMWARE_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def default_build_dir() -> Path:
    """$NEUROCC_CACHE (else $XDG_CACHE_HOME/neurocc, else ~/.cache/neurocc) / firmware-<source digest>."""
    root = os.environ.get("NEUROCC_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neurocc"
    return base / f"firmware-{source_digest()}"


def make(*targets: str, build_dir: Path | None = None, extra: dict[str, str] | None = None) -> None:
    require("make")
    build = (build_dir or default_build_dir()).resolve()
    build.mkdir(parents=True, exist_ok=True)
    args = ["make", "-s", "-C", str(FIRMWARE_DIR), f"BUILD={build}"]
    args += [f"{k}={v}" for k, v in (extra or {}).items()]
    # one make at a time per build directory: the cache is shared by every process of this user, and two
    # makes relinking the same app.elf would hand one of them a half-written image
    with open(build / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(args + list(targets), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ToolchainError(f"firmware build failed (make {' '.join(targets)}):\n{tail}")


def build_host(build_dir: Path | None = None) -> Path:
    require("gcc")
    make("host", build_dir=build_dir)
    return (build_dir or default_build_dir()) / "host" / "snn_run"


def build_board(board: str = "netduinoplus2", build_dir: Path | None = None) -> BoardBuild:
    if board != "netduinoplus2":
        raise ToolchainError(f"no firmware port for board {board!r} yet (the engine is portable C99: "
                             "firmware/engine). Fix: use a stm32f405 target, or the host build")
    require("arm-none-eabi-gcc")
    make("netduinoplus2", build_dir=build_dir)
    return BoardBuild((build_dir or default_build_dir()) / "netduinoplus2")


def build_plugin(build_dir: Path | None = None) -> Path:
    require("gcc")
    make("plugin", build_dir=build_dir)
    return (build_dir or default_build_dir()) / "plugin" / "libinsncount.so"
