"""The user's verbs for Cortex-M outputs: flash, run, emulate, and `verify`'s executor run_emulated.

    flash(out_dir, port_url)          AN3155: the app and the model image, read back, then Go
    run(out_dir, port_url, raster)    load the model if the device runs another one, stream spikes
    emulate(out_dir)                  build firmware, start QEMU netduinoplus2, flash, serve its port
    run_emulated(out_dir, raster)     all of it in one call, QEMU killed at the end

Port URLs go to pyserial's serial_for_url: /dev/ttyUSB0, socket://127.0.0.1:PORT, ...
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import serial

from ...backends.cortexm.image import read_info
from ...compiler.errors import ArtifactError, InputError, TargetError
from ...compiler.ir import NETWORK_FILE, load_int_network
from ..simulator import integer_inputs
from . import an3155
from .client import DeviceClient, LinkError
from .firmware import BoardBuild, build_board
from .link import open_port
from .qemu import Qemu

IMAGE = "model.bin"  # backends/cortexm/emit.py
MANIFEST = "manifest.json"


@dataclass
class Artifacts:
    out_dir: Path
    manifest: dict[str, Any]
    image: bytes

    @property
    def cortexm(self) -> dict[str, Any]:
        return self.manifest["cortexm"]

    @property
    def board(self) -> str:
        return str(self.cortexm["board"])

    @property
    def board_id(self) -> int:
        return int(self.cortexm["board_id"])

    @property
    def order(self) -> list[str]:
        return list(self.cortexm["population_order"])

    def kind(self, name: str) -> str:
        return str(self.manifest["populations"][name]["kind"])

    def size(self, name: str) -> int:
        return int(self.manifest["populations"][name]["size"])

    def reported(self, report_all: bool) -> list[str]:
        outs = {p for ps in self.manifest["outputs"].values() for p in ps}
        return [n for n in self.order if self.kind(n) != "input" and (report_all or n in outs)]


def artifacts(out_dir: str | Path) -> Artifacts:
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        image = (out_dir / IMAGE).read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{out_dir}: not a Cortex-M output ({exc}). Fix: neurocc compile --target stm32f405") \
            from None
    if manifest.get("family") != "cortexm" or "cortexm" not in manifest:
        raise ArtifactError(f"{out_dir}: compiled for {manifest.get('target')!r}, not a Cortex-M part")
    # the image header (firmware/engine/snn_image.h): magic, format version, size, CRC32 of bytes [16, size)
    try:
        info = read_info(image)
    except ArtifactError as exc:
        raise ArtifactError(f"{out_dir}: {IMAGE}: {exc}") from None
    if f"{info.crc32:08x}" != manifest["cortexm"]["image"]["crc32"]:
        raise ArtifactError(f"{out_dir}: {IMAGE} does not match its manifest. Fix: compile again")
    return Artifacts(out_dir, manifest, image)


def _firmware(art: Artifacts, build_dir: Path | None) -> BoardBuild:
    fw = build_board(art.board, build_dir)
    if len(art.image) > an3155.SLOT_SIZE:
        raise TargetError(
            f"the model image is {len(art.image)} bytes; the emulated {art.board} keeps models in SRAM slots of "
            f"{an3155.SLOT_SIZE} bytes (QEMU cannot write its flash). Fix: a smaller network, or a real part")
    return fw


def flash(out_dir: str | Path, port_url: str, *, progress: bool = True, verify: bool = True,
          build_dir: Path | None = None) -> an3155.FlashReport:
    """Write the app and the model over AN3155, read both back, and start the app (Go).

    If the port answers the model protocol instead (the app is running), ask it to reboot into the
    bootloader first. The boot record is cleared so the app opens the model just written (slot A)."""
    art = artifacts(out_dir)
    fw = _firmware(art, build_dir)
    segments = [(an3155.APP_START, fw.app_bin.read_bytes()), (an3155.SLOT_A, art.image),
                (an3155.BOOT_RECORD, bytes(16))]
    ser = open_port(port_url, parity=serial.PARITY_EVEN)  # ST's bootloader speaks 8E1
    try:
        try:  # the bootloader answers 0x7F at once; the app ignores it
            return an3155.flash_segments(ser, segments, go=an3155.APP_START, verify=verify, progress=progress,
                                         sync_attempts=1)
        except an3155.FlashError as exc:
            if "0x7F sync" not in str(exc):
                raise
        _reboot_app(ser)
        return an3155.flash_segments(ser, segments, go=an3155.APP_START, verify=verify, progress=progress)
    finally:
        ser.close()


def _reboot_app(ser: serial.SerialBase) -> None:
    """If the neurocc app answers, ask it to reset into the bootloader. Its PING carries no 0x7F byte, so
    a bootloader that missed our sync is not synced by it into reading the frame as commands."""
    client = DeviceClient(ser, timeout=0.2, sync_attempts=3)
    try:
        client.sync(avoid=b"\x7f")
    except LinkError:
        return  # not the app: perhaps a bootloader that dropped our first bytes; the caller retries
    client.reboot()
    time.sleep(0.05)


def input_counts(art: Artifacts, raster: Any) -> np.ndarray:
    """[T, inputs] counts over the device's input index space (input populations in image order)."""
    inet = load_int_network(art.out_dir / NETWORK_FILE)
    parts = integer_inputs(inet, raster)
    cols = [parts[n] for n in art.order if art.kind(n) == "input"]
    counts = np.concatenate(cols, axis=1) if cols else np.zeros((0, 0), np.int64)
    if counts.size and counts.max() > 255:
        raise InputError(f"input spike count {int(counts.max())} in one step; the device takes at most 255. "
                         "Fix: bin the input more finely")
    return counts


@dataclass
class RunResult:
    spikes: dict[str, np.ndarray]
    seconds: float
    loaded: bool
    stats: dict[str, int] = field(default_factory=dict)
    link: dict[str, Any] = field(default_factory=dict)


def run_detailed(out_dir: str | Path, port_url: str, raster: Any, *, report_all: bool = True, load: str = "auto",
                 timeout: float = 0.5, retries: int = 12, progress: Callable[[int, int], None] | None = None,
                 ser: serial.SerialBase | None = None) -> RunResult:
    """run() with the device's counters and the link's byte counts."""
    if load not in ("auto", "always", "never"):
        raise ValueError(f"load must be 'auto', 'always' or 'never', not {load!r}")
    art = artifacts(out_dir)
    counts = input_counts(art, raster)
    reported = art.reported(report_all)
    n_out = sum(art.size(n) for n in reported)
    own = ser is None
    ser = open_port(port_url) if ser is None else ser
    t0 = time.monotonic()
    try:
        client = DeviceClient(ser, timeout=timeout, retries=retries)
        board_id = client.sync()
        if board_id != art.board_id:
            raise TargetError(f"the device is board 0x{board_id:x}, {out_dir} was compiled for {art.board} "
                              f"(0x{art.board_id:x}). Fix: compile for this part")
        info = client.info()
        loaded = False
        if load == "always" or (load == "auto" and (info.active_slot is None or info.model_crc !=
                                                     int(art.cortexm["image"]["crc32"], 16))):
            if load == "never":
                raise ArtifactError("the device runs another model and load='never'")
            if len(art.image) > info.slot_capacity:
                raise TargetError(f"the model image is {len(art.image)} bytes, the device's slots hold "
                                  f"{info.slot_capacity}. Fix: a smaller network or a larger part")
            client.load(art.image)
            loaded = True
        elif load == "never" and info.active_slot is None:
            raise ArtifactError("the device has no model and load='never'. Fix: neurocc flash first")
        client.reset_state()
        out = client.run(counts, n_out, report_all, on_batch=progress)
        stats = client.stats()
    finally:
        if own:
            ser.close()
    spikes: dict[str, np.ndarray] = {}
    col = 0
    for name in reported:
        spikes[name] = out[:, col:col + art.size(name)]
        col += art.size(name)
    c = client.counters
    return RunResult(spikes, time.monotonic() - t0, loaded, stats.__dict__,
                     {"bytes_out": dict(c.bytes_out), "bytes_in": dict(c.bytes_in), "retries": c.retries,
                      "naks": c.naks, "timeouts": c.timeouts})


def run(out_dir: str | Path, port_url: str, raster: Any, *, report_all: bool = True,
        load: str = "auto") -> dict[str, np.ndarray]:
    """Stream a raster [T, *input_shape] through the device; spikes [T, n] per LIF population (every one
    with report_all, else only the network's outputs). Loads the model first if the device runs another."""
    return run_detailed(out_dir, port_url, raster, report_all=report_all, load=load).spikes


class Emulator:
    """QEMU netduinoplus2 with the resident bootloader, the app and the model flashed over AN3155.

    `url` is the serial port to hand to run(); QEMU accepts a new client whenever the last one leaves.
    Always stopped on exit of the `with` block (and at interpreter exit)."""

    def __init__(self, out_dir: str | Path, build_dir: Path | None = None, progress: bool = False):
        self.out_dir = Path(out_dir)
        self.build_dir = build_dir
        self.progress = progress
        self.qemu: Qemu | None = None
        self.flash_report: an3155.FlashReport | None = None

    @property
    def url(self) -> str:
        assert self.qemu is not None, "emulator not started"
        return self.qemu.url

    def start(self) -> str:
        art = artifacts(self.out_dir)
        fw = _firmware(art, self.build_dir)
        self.qemu = Qemu(fw.bootloader)
        try:
            self.qemu.start()
            self.flash_report = flash(self.out_dir, self.qemu.url, progress=self.progress, build_dir=self.build_dir)
        except BaseException:
            self.stop()
            raise
        return self.qemu.url

    def stop(self) -> None:
        if self.qemu is not None:
            self.qemu.stop()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def emulate(out_dir: str | Path, *, block: bool = True, build_dir: Path | None = None) -> Emulator:
    """Build the firmware, start QEMU, flash the app and model, and serve the emulated USART on a local
    TCP port (printed). With block=True, wait until QEMU exits or Ctrl-C, then stop it; otherwise return
    the running Emulator (stop it yourself, or it stops at interpreter exit)."""
    emu = Emulator(out_dir, build_dir=build_dir, progress=True)
    emu.start()
    print(f"neurocc: QEMU netduinoplus2 serving {emu.url} (neurocc run {out_dir} --port {emu.url})", file=sys.stderr)
    if not block:
        return emu
    try:
        while emu.qemu is not None and emu.qemu.alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return emu


def run_emulated(out_dir: str | Path, raster: Any, *, build_dir: Path | None = None) -> dict[str, np.ndarray]:
    """verify's executor for Cortex-M outputs: build the firmware, start QEMU, flash over AN3155, load the
    model over the model protocol, step the raster, kill QEMU. Spikes [T, n] of every LIF population."""
    with Emulator(out_dir, build_dir=build_dir) as emu:
        return run(out_dir, emu.url, raster, report_all=True, load="always")
