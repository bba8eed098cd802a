"""Fuzzing the serial model protocol from both ends: only named errors, never a hang.

Host side (no device): the client talks to a scripted stand-in for the port that answers garbage,
valid-CRC frames with random types and bodies, or nothing. Every call ends in a result or a
NeuroccError (LinkError, DeviceError) within its retry budget.

Device side (QEMU netduinoplus2): mutated frames (bit flips, cuts, duplicates, random bodies for
every command but REBOOT) are thrown at the running firmware; it keeps answering, and afterwards the
loaded model still gives the reference simulator's spikes, every step.
"""

from __future__ import annotations

import os
import random
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurocc
from neurocc.compiler.mapping import NETWORK_FILE, load_int_network
from neurocc.runtime.serial import DeviceClient, Emulator, open_port, run
from neurocc.runtime.serial import framing as fr
from neurocc.runtime.simulator import simulate_int

from .conftest import CORPUS_DIR

TIMEOUT, RETRIES = 0.03, 2
COMMANDS = [fr.PING, fr.INFO, fr.LOAD_BEGIN, fr.LOAD_CHUNK, fr.LOAD_COMMIT, fr.RESET_STATE, fr.STEP, fr.STATS]


class ScriptedPort:
    """A pyserial stand-in: every write appends `respond(request)` to what read() returns."""

    def __init__(self, respond: Callable[[bytes], bytes]):
        self.respond = respond
        self.buf = bytearray()
        self.timeout: float | None = 0.05
        self.port = "scripted"

    @property
    def in_waiting(self) -> int:
        return len(self.buf)

    def write(self, data: bytes) -> int:
        self.buf += self.respond(bytes(data))
        return len(data)

    def read(self, n: int = 1) -> bytes:
        if not self.buf:
            time.sleep(min(self.timeout or 0.0, 0.005))
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def reset_input_buffer(self) -> None:
        self.buf.clear()


def _request_seq(wire: bytes) -> int:
    frame = fr.decode_frame(wire.strip(b"\x00"))
    return frame.seq if frame is not None else 0


def _call(client: DeviceClient, which: str) -> None:
    if which == "info":
        client.info()
    elif which == "stats":
        client.stats()
    elif which == "reset":
        client.reset_state()
    elif which == "step":
        client.run(np.eye(4, 6, dtype=np.int64), n_out=7)
    elif which == "load":
        client.load(bytes(range(256)) * 3, chunk=100)
    else:
        client.sync()


CALLS = st.sampled_from(["info", "stats", "reset", "step", "load", "sync"])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _bounded(client: DeviceClient, which: str) -> None:
    start = time.monotonic()
    try:
        _call(client, which)
    except neurocc.NeuroccError:
        pass  # LinkError / DeviceError: named, with the command and the fix
    # sync tries sync_attempts times; a load retries each chunk at shrinking sizes: bound them all.
    assert time.monotonic() - start < 20.0, f"{which} took {time.monotonic() - start:.1f} s"


@FUZZ
@given(noise=st.binary(max_size=64), which=CALLS)
def test_garbage_replies_give_named_errors(noise: bytes, which: str) -> None:
    client = DeviceClient(ScriptedPort(lambda _: noise), timeout=TIMEOUT, retries=RETRIES, sync_attempts=3)
    _bounded(client, which)


@FUZZ
@given(ftype=st.integers(0, 255), body=st.binary(max_size=48), which=CALLS, same_type=st.booleans())
def test_well_framed_nonsense_gives_named_errors(ftype: int, body: bytes, which: str, same_type: bool) -> None:
    """Valid CRC and sequence number, wrong type or body: what another firmware or a device bug sends."""

    def respond(request: bytes) -> bytes:
        frame = fr.decode_frame(request.strip(b"\x00"))
        t = (frame.type | fr.REPLY) if (same_type and frame is not None) else ftype
        return fr.encode_frame(t, _request_seq(request), body)

    client = DeviceClient(ScriptedPort(respond), timeout=TIMEOUT, retries=RETRIES, sync_attempts=3)
    _bounded(client, which)


@FUZZ
@given(data=st.binary(max_size=300))
def test_decoders_never_raise_unnamed(data: bytes) -> None:
    frame = fr.decode_frame(data)
    assert frame is None or isinstance(frame, fr.Frame)
    try:
        fr.decode_spikes(data, 0, 64)
    except ValueError:
        pass  # the client turns this into a LinkError (see test_well_framed_nonsense_gives_named_errors)


# ---- device side: the firmware under QEMU ----------------------------------------------------------------

_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "make")


def _mutations(rng: random.Random, model_frames: list[bytes]) -> list[bytes]:
    out = []
    for _ in range(160):
        kind = rng.randrange(5)
        base = bytearray(rng.choice(model_frames))
        if kind == 0:  # flip bits
            for _ in range(rng.randint(1, 4)):
                base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
            out.append(bytes(base))
        elif kind == 1:  # cut short (then a delimiter ends the partial frame)
            out.append(bytes(base[: rng.randrange(1, len(base))]) + b"\x00")
        elif kind == 2:  # duplicated
            out.append(bytes(base) * 2)
        elif kind == 3:  # random bytes
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 80))) + b"\x00")
        else:  # a well-formed frame of any command but REBOOT, random body
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
            out.append(fr.encode_frame(rng.choice(COMMANDS), rng.randrange(255), body))
    return out


def test_firmware_survives_mutated_frames(tmp_path: Path) -> None:
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        assert os.environ.get("CI") != "true", f"CI needs {missing}: a missing tool is a failure, never a skip"
        pytest.skip(f"missing {missing} (scripts/install.sh installs them)")
    path = CORPUS_DIR / "snntorch_rlif.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(path, convention="snntorch")
    out = neurocc.compile(net, "stm32f405", progress=False).emit(tmp_path / "out")
    x = np.load(path.with_suffix(".npz"))["input"][:100]
    rng = random.Random(7)
    valid = [fr.encode_frame(c, rng.randrange(255), b) for c, b in
             ((fr.PING, b"\x01\x02\x03\x04"), (fr.INFO, b""), (fr.STATS, b""), (fr.STEP, b"\x01\x01\x00"))]
    with Emulator(out) as emu:
        ser = open_port(emu.url)
        try:
            client = DeviceClient(ser, timeout=0.5, retries=12)
            client.sync()
            answered = 0
            for k, wire in enumerate(_mutations(rng, valid)):
                ser.write(wire)
                time.sleep(0.01)
                answered += len(ser.read(ser.in_waiting or 1)) > 0
                if k % 20 == 19:  # still alive and talking
                    client.sync()
                    assert client.info().board_id == 0x0413
            assert answered > 0, "the device never answered a frame"
        finally:
            ser.close()
        got = run(out, emu.url, x, load="never")  # the model flashed before the fuzzing still runs
    inet = load_int_network(out / NETWORK_FILE)
    ref = simulate_int(inet, x, record=False)
    for name, spikes in got.items():
        np.testing.assert_array_equal(spikes, ref.spikes[name], err_msg=name)
