"""Cortex-M stages B-D on QEMU's netduinoplus2 (STM32F405): real toolchain, real emulator, real USART.

The resident AN3155 bootloader is flashed by neurocc's own client (stm32loader library) and by Debian's
stm32flash through a socat pty; the app runs the model protocol; spikes equal simulate_int every step,
through a link that drops or corrupts 1% of its bytes, and across a load torn in mid-chunk.

In CI (CI=true) a missing tool fails the run; elsewhere the module is skipped only if a tool is missing.
Every wait has a timeout; QEMU is always killed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import serial

import neurocc
from neurocc.compiler.ir import NETWORK_FILE, load_int_network
from neurocc.compiler.pipeline import compile_network
from neurocc.compiler.targets.target import load_target
from neurocc.runtime.serial import (
    DeviceClient,
    DeviceError,
    Qemu,
    an3155,
    artifacts,
    flash,
    open_port,
    run,
    run_detailed,
    run_emulated,
)
from neurocc.runtime.serial import framing as fr
from neurocc.runtime.serial.firmware import FIRMWARE_DIR, build_board
from neurocc.runtime.simulator import simulate_int

from .conftest import CORPUS_DIR, convention_of
from .link_faults import FaultyProxy

TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "socat", "stm32flash", "make")
TARGET = os.environ.get("NEUROCC_CORTEXM_TARGET", "stm32f405")
NETS = ("snntorch_rlif", "norse_cubalif_mlp", "snntorch_rcubalif")
MIN_STEPS = 100

_missing = [t for t in TOOLS if shutil.which(t) is None]
if _missing and os.environ.get("CI") != "true":
    pytest.skip(f"missing {', '.join(_missing)} (scripts/install.sh installs them)", allow_module_level=True)


@pytest.fixture(scope="session")
def firmware():
    assert not _missing, f"CI needs {', '.join(_missing)}: a missing tool is a failure here, never a skip"
    return build_board("netduinoplus2")


@pytest.fixture(scope="session")
def outs(tmp_path_factory, firmware) -> dict[str, tuple[Path, np.ndarray]]:
    """Compiled Cortex-M outputs of the corpus networks, with their inputs tiled to >= MIN_STEPS."""
    target = load_target(TARGET)
    res = {}
    for name in NETS:
        path = CORPUS_DIR / f"{name}.nir"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = neurocc.load(path, convention=convention_of(path))
        x = np.load(path.with_suffix(".npz"))["input"]
        x = np.concatenate([x] * -(-MIN_STEPS // x.shape[0]))
        out = compile_network(net, target).emit(tmp_path_factory.mktemp(name) / "out")
        res[name] = (out, x)
    return res


def reference(out: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    inet = load_int_network(out / NETWORK_FILE)
    ref = simulate_int(inet, x, record=False)
    return {k: v for k, v in ref.spikes.items() if inet.populations[k].kind != "input"}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name in want:
        diff = np.argwhere(got[name] != want[name])
        assert not diff.size, f"{name}: first divergence at step {diff[0][0]}, neuron {diff[0][1]}"
    assert sum(int(v.sum()) for v in want.values()) > 0


@pytest.fixture
def qemu(firmware):
    q = Qemu(firmware.bootloader)
    q.start()
    try:
        yield q
    finally:
        q.stop()
        assert not q.alive()


def test_layout_matches_the_elfs(firmware) -> None:
    """layout.h, an3155.py and the linker's placement agree; the app fits its 28 KiB; what the real part keeps in
    SRAM (the app's .bss and stack, the arena) fits its 128 KiB."""
    text = (FIRMWARE_DIR / "boards" / "netduinoplus2" / "layout.h").read_text()
    consts = {k: int(v, 16) for k, v in re.findall(r"#define (\w+) (0x[0-9A-Fa-f]+)u", text)}
    assert consts["APP_START"] == an3155.APP_START and consts["SLOT_A"] == an3155.SLOT_A
    assert consts["SLOT_SIZE"] == an3155.SLOT_SIZE and consts["BOOT_RECORD"] == an3155.BOOT_RECORD
    assert consts["RAM_END"] == 0x20030000  # QEMU's 192 KiB: the app and the model slots stand in for flash
    assert consts["BOOT_RAM_END"] - consts["RAM_START"] + consts["RAM_END"] - consts["ARENA_START"] <= 128 * 1024
    syms = {}
    for line in subprocess.run(["arm-none-eabi-nm", str(firmware.app_elf)], capture_output=True, text=True,
                               check=True, timeout=30).stdout.splitlines():
        addr, _, name = line.split()
        syms[name] = int(addr, 16)
    assert syms["__vectors"] == an3155.APP_START
    assert syms["_app_end"] <= an3155.APP_END
    assert firmware.app_bin.stat().st_size == syms["_app_end"] - an3155.APP_START
    assert syms["_ebss"] <= 0x20003000 - 4096
    boot = {ln.split()[-1]: int(ln.split()[0], 16) for ln in subprocess.run(
        ["arm-none-eabi-nm", str(firmware.bootloader)], capture_output=True, text=True, check=True,
        timeout=30).stdout.splitlines()}
    assert boot["__vectors"] == 0x08000000 and boot["_ebss"] <= 0x20003000


def test_flash_then_run_two_corpus_networks(qemu, outs) -> None:
    """neurocc flash over the emulated USART (AN3155, read-back verify, Go); run >= 100 steps; then a
    second network loaded over the model protocol into the other slot; spikes == simulate_int."""
    first, x1 = outs["snntorch_rlif"]
    report = flash(first, qemu.url, progress=False)
    assert report.device_id == 0x413 and report.bytes_written > 16000
    res = run_detailed(first, qemu.url, x1, load="auto")
    assert not res.loaded  # flashed with the app: nothing to load
    assert_same(res.spikes, reference(first, x1))
    assert res.stats["steps"] == x1.shape[0]
    second, x2 = outs["norse_cubalif_mlp"]
    res = run_detailed(second, qemu.url, x2, load="auto")
    assert res.loaded
    assert_same(res.spikes, reference(second, x2))
    with open_port(qemu.url) as ser:
        client = DeviceClient(ser)
        client.sync()
        info = client.info()
    assert info.active_slot == 1 and info.model_crc == int(artifacts(second).cortexm["image"]["crc32"], 16)
    # the outputs-only report carries just the readout population
    outs_only = run(second, qemu.url, x2, report_all=False)
    assert set(outs_only) == {p for ps in artifacts(second).manifest["outputs"].values() for p in ps}
    # flashing again while the app runs: it is asked to REBOOT into the bootloader first
    flash(second, qemu.url, progress=False)
    res = run_detailed(second, qemu.url, x2, load="auto")
    assert not res.loaded
    assert_same(res.spikes, reference(second, x2))


def test_generated_delays_and_recurrence_on_m4(qemu, firmware, tmp_path: Path) -> None:
    """A generated network with 0..63-step delays, floor-shifted projections split per delay, recurrence,
    tonic bias and graded (count > 1) inputs, on the emulated M4 through the model protocol."""
    from neurocc.compiler.pipeline import compile_integer

    from .test_cortexm_engine import gen_delays_negative_exp, random_raster

    target = load_target(TARGET)
    rng = np.random.default_rng(11)
    inet = gen_delays_negative_exp(target, rng)
    out = compile_integer(inet, target).emit(tmp_path / "gen")
    raster = random_raster(inet, 150, rng, graded=3)
    assert raster["in"].max() > 1
    flash(out, qemu.url, progress=False)
    res = run_detailed(out, qemu.url, raster, load="auto")
    ref = simulate_int(inet, raster, record=False)
    assert_same(res.spikes, {k: v for k, v in ref.spikes.items() if k != "in"})
    assert res.stats["spikes_in"] == int(raster["in"].sum())


def test_instruction_count_bench_smoke(firmware, tmp_path: Path) -> None:
    """bench/cortexm.py's counting path: the plugin builds, the bench image's spikes equal the reference, and a
    dense 8-bit layer meets the <= 6 instructions per synaptic event goal (ldm/stm + sxtab: about 2.2)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cortexm", Path(__file__).resolve().parents[1] / "bench"
                                                  / "cortexm.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from neurocc.runtime.serial.firmware import build_plugin

    plugin = build_plugin()
    nets = {name: (inet, x) for name, inet, x in bench.bench_networks(quick=True)}
    inet, x = nets["dense_256x256"]
    r = bench.measure_instructions("dense", inet, x[:30], tmp_path / "dense", plugin)
    assert r["identical_to_reference"]
    assert r["synaptic_events"] > 10_000 and r["neuron_updates"] == 30 * 256
    assert 1.5 < r["instructions_per_synaptic_event"] <= bench.GOALS["instructions_per_synaptic_event"]
    assert r["bytes_per_synapse"] <= bench.GOALS["bytes_per_synapse"]


def test_run_emulated_is_verify_executor(outs) -> None:
    """Builds, starts QEMU, flashes, loads over the protocol, steps, and kills QEMU."""
    out, x = outs["snntorch_rcubalif"]
    before = _qemu_pids()
    assert_same(run_emulated(out, x), reference(out, x))
    assert _qemu_pids() == before


def _qemu_pids() -> set[int]:
    proc = subprocess.run(["pgrep", "-x", "qemu-system-arm"], capture_output=True, text=True, timeout=10)
    return {int(p) for p in proc.stdout.split()}


def test_stm32flash_interop(qemu, firmware, tmp_path: Path) -> None:
    """Debian's stm32flash, through a socat pty, writes and verifies the app via the resident bootloader and
    starts it; our client then talks to the app it started."""
    tty = tmp_path / "ttyMCU"
    port = qemu.url.rsplit(":", 1)[1]
    bridge = subprocess.Popen(["socat", "-d", "-d", "PTY,link=" + str(tty) + ",raw,echo=0",
                               f"TCP:127.0.0.1:{port},nodelay"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # socat makes the pty before it connects, and QEMU (wait=on) starts the guest only at the connection:
        # a 0x7F written before then reaches a bootloader that is not listening yet, and stm32flash gives up
        # after one retry. Wait for socat's "starting data transfer loop" notice, then for the guest to boot.
        seen = []
        for line in bridge.stderr:
            seen.append(line)
            if "starting data transfer loop" in line:
                break
        assert tty.exists() and bridge.poll() is None, "".join(seen)
        time.sleep(0.2)
        # -m 8n1: the pty refuses the 8E1 termios flags stm32flash asks for ("Failed to set terminal flags");
        # parity means nothing on the TCP socket behind it anyway
        proc = subprocess.run(["stm32flash", "-b", "115200", "-m", "8n1", "-w", str(firmware.app_bin), "-v",
                               "-S", f"0x{an3155.APP_START:08x}", "-g", f"0x{an3155.APP_START:08x}", str(tty)],
                              capture_output=True, text=True, timeout=90)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log
        assert re.search(r"Device ID\s*: 0x0413", log) and "Wrote and verified" in log and "(100.00%)" in log, log
    finally:
        os.killpg(bridge.pid, 9)
        bridge.wait(timeout=10)
    with open_port(qemu.url) as ser:
        client = DeviceClient(ser)
        assert client.sync() == 0x413
        assert client.info().proto_version == 1


def test_bootloader_answers_like_an3155(qemu) -> None:
    from stm32loader.bootloader import CommandError, Stm32Bootloader

    with open_port(qemu.url, parity=serial.PARITY_EVEN, timeout=1.0) as ser:
        bl = Stm32Bootloader(ser, device_family="F4", verbosity=0)
        for _ in range(20):
            try:
                bl.reset_from_system_memory()
                break
            except CommandError:
                continue
        assert bl.get() == 0x31 and bl.extended_erase
        assert bl.get_version() == 0x31
        assert bl.get_id() == 0x413
        flash_kib, uid = bl.get_flash_size_and_uid()
        assert flash_kib == 1024 and len(uid) == 12
        data = bytes(range(256)) * 4
        bl.write_memory_data(0x20010000, data)
        assert bytes(bl.read_memory_data(0x20010000, len(data))) == data
        with pytest.raises(CommandError):
            bl.write_memory(0x20000000, b"\0" * 4)  # the bootloader's own RAM
        with pytest.raises(CommandError):
            bl.write_memory(0x08000000, b"\0" * 4)  # QEMU's flash is ROM
        with pytest.raises(CommandError):
            bl.go(0x20010000)  # no vector table there: NACK, not a crash
        bl.extended_erase_memory([0, 1, 2])  # SRAM needs no erase: acknowledged
        bl.extended_erase_memory(None)  # mass erase: the app area reads 0xFF
        assert bytes(bl.read_memory_data(0x20010000, 64)) == b"\xff" * 64


def test_faulty_link_same_spikes(qemu, outs) -> None:
    """1% of the bytes, both ways, dropped or bit-flipped: load and >= 100 steps still give identical spikes."""
    out, x = outs["snntorch_rlif"]
    flash(out, qemu.url, progress=False)
    proxy = FaultyProxy(int(qemu.url.rsplit(":", 1)[1]), drop=0.005, corrupt=0.005, seed=1)
    try:
        res = run_detailed(out, proxy.url, x, load="always", timeout=0.15, retries=40)
    finally:
        proxy.stop()
    assert_same(res.spikes, reference(out, x))
    assert res.loaded
    assert proxy.dropped > 0 and proxy.corrupted > 0, "the proxy injected nothing"
    assert res.link["retries"] > 0, "no exchange needed a retry: the test did not test recovery"


def test_torn_load_keeps_old_model(qemu, outs) -> None:
    """Cut the link in the middle of a LOAD_CHUNK frame: after reconnecting the old model still answers;
    a retried load succeeds. A load whose bytes do not match its CRC, or built for another board, is
    refused and the old model keeps running too."""
    old, x_old = outs["snntorch_rlif"]
    new, x_new = outs["norse_cubalif_mlp"]
    flash(old, qemu.url, progress=False)
    image = artifacts(new).image
    ser = open_port(qemu.url)
    client = DeviceClient(ser)
    client.sync()
    assert client.load(image, chunk=256, abort_after=512) == -1  # two chunks in, then...
    wire = fr.encode_frame(fr.LOAD_CHUNK, 0x42, (512).to_bytes(4, "little") + image[512:768])
    ser.write(wire[:len(wire) // 2])  # ...half a frame, and the cable is pulled
    ser.flush()
    ser.close()
    with open_port(qemu.url) as ser:
        client = DeviceClient(ser)
        client.sync()
        info = client.info()
        assert info.active_slot == 0 and info.load_slot == 1
        assert info.model_crc == int(artifacts(old).cortexm["image"]["crc32"], 16)
    assert_same(run(old, qemu.url, x_old, load="never"), reference(old, x_old))
    with open_port(qemu.url) as ser:
        client = DeviceClient(ser)
        client.sync()
        bad = bytearray(image)
        bad[100] ^= 1
        client.exchange(fr.LOAD_BEGIN, len(image).to_bytes(4, "little") + fr.crc32(image).to_bytes(4, "little"))
        for off in range(0, len(bad), 256):
            client.exchange(fr.LOAD_CHUNK, off.to_bytes(4, "little") + bytes(bad[off:off + 256]))
        with pytest.raises(DeviceError, match="does not match its CRC32"):
            client.exchange(fr.LOAD_COMMIT)
        other = bytearray(image)
        other[16:20] = (0x52840).to_bytes(4, "little")  # board id of an nRF52840 image
        other[12:16] = fr.crc32(bytes(other[16:])).to_bytes(4, "little")
        with pytest.raises(DeviceError, match="another board"):
            client.load(bytes(other))
        assert client.info().active_slot == 0
    assert_same(run(old, qemu.url, x_old, load="never"), reference(old, x_old))
    res = run_detailed(new, qemu.url, x_new, load="auto")  # the retried load
    assert res.loaded
    assert_same(res.spikes, reference(new, x_new))
