"""Fuzzing the serial model protocol from both ends: only named errors, never a hang, never a wrong answer.

One module of ~800 lines: the three parts share the scripted port, the right-reply oracle and the compiled
models, and one read shows every way a frame can go wrong on each side of the link.

Host side, no device: the framing decoders take random, cut and bit-flipped bytes; the client talks to a
scripted stand-in for the port that answers garbage, valid-CRC frames with random types and bodies, damaged
copies of the right reply, or truncated ones, and run() takes input rasters of any width and count. Every
call ends in the right result or a NeuroccError (LinkError, DeviceError, InputError) within its retry
budget, timed.

Device side, host build: firmware/ has no host entry point for the protocol (the Makefile's `host` target
is the engine's snn_run), so PROTO_HARNESS below is one, built here with gcc and ASan/UBSan from the
firmware's own proto.c and snn.c: stdin bytes go to proto_rx_byte, replies to stdout, with the
netduinoplus2's slot and arena sizes. Mutated frames of every command go in; the process must exit 0 (no
sanitizer report), answer each frame exactly as the protocol says (a NAK for an unreadable frame, the
cached reply for a repeated sequence number, an error or the command's reply otherwise), and afterwards
still run its model bit-exact. The same build, behind a byte-dropping and bit-flipping loopback, is the
device for the real client: run_detailed either returns the reference simulator's spikes or raises a
NeuroccError, in bounded time.

Device side, QEMU netduinoplus2: mutated frames (bit flips, cuts, duplicates, random bodies for every
command but REBOOT) are thrown at the running firmware; it keeps answering, and afterwards the loaded
model still gives the reference simulator's spikes, every step.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import neurocc
from neurocc.compiler.ir import NETWORK_FILE, load_int_network
from neurocc.runtime.serial import DeviceClient, Emulator, LinkError, open_port, run
from neurocc.runtime.serial import framing as fr
from neurocc.runtime.serial.deploy import artifacts, input_counts, run_detailed
from neurocc.runtime.serial.firmware import FIRMWARE_DIR
from neurocc.runtime.simulator import simulate_int

from .conftest import CORPUS_DIR, SYNTHETIC

TIMEOUT, RETRIES = 0.03, 2
COMMANDS = [fr.PING, fr.INFO, fr.LOAD_BEGIN, fr.LOAD_CHUNK, fr.LOAD_COMMIT, fr.RESET_STATE, fr.STEP, fr.STATS]
BOARD_ID = 0x0413


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
# Every health check is on: none fires here (too_slow allows 30 s of drawing with deadline=None, and the
# timeouts, subprocesses and QEMU are not drawing; the fixtures are session-scoped, so function_scoped_fixture
# does not apply), and filter_too_much fails a strategy that rejected most draws.
FUZZ = settings(max_examples=150, deadline=None)


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
    try:
        fr.get_varint(data, 0)
    except ValueError:
        pass


# ---- host side: the framing's own guarantees ------------------------------------------------------------------

@FUZZ
@given(ftype=st.integers(0, 255), seq=st.integers(0, 255), body=st.binary(max_size=600), where=st.integers(0),
       bit=st.integers(0, 7))
def test_frames_round_trip_and_a_flipped_bit_is_caught(ftype: int, seq: int, body: bytes, where: int,
                                                       bit: int) -> None:
    """COBS leaves no 0x00 inside a frame; decode(encode(x)) == x; a frame cut short, or one flipped bit
    anywhere between the delimiters (a code byte, data, the CRC; a flip to 0x00 splits the frame), leaves
    no readable frame."""
    wire = fr.encode_frame(ftype, seq, body)
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    frame = fr.decode_frame(wire[1:-1])
    assert frame is not None and (frame.type, frame.seq, frame.body) == (ftype, seq, body)
    assert fr.decode_frame(wire[1:1 + where % (len(wire) - 2)]) is None
    bad = bytearray(wire)
    bad[1 + where % (len(wire) - 2)] ^= 1 << bit
    assert all(fr.decode_frame(part) is None for part in bytes(bad).split(b"\x00") if part)


@FUZZ
@given(bits=st.lists(st.booleans(), min_size=1, max_size=400))
def test_spike_encoding_round_trips_within_the_worst_case(bits: list[bool]) -> None:
    """Replies: what the device's encoder picks (list or bitmap) decodes to the same indices and never takes
    more than worst_step_reply, the bound the client and proto.c budget replies with."""
    counts = np.array(bits, dtype=np.int64)
    out = bytearray()
    fr.encode_spikes(counts, out)
    assert len(out) <= fr.worst_step_reply(counts.size)
    idx, pos = fr.decode_spikes(bytes(out), 0, counts.size)
    assert pos == len(out)
    np.testing.assert_array_equal(idx, np.flatnonzero(counts))


# ---- host side: damaged copies of the right reply ---------------------------------------------------------------

# proto_version 1, image format version 2 (snn_image.h SNN_IMG_VERSION)
_PING_TAIL = bytes([1, 2, 0, 0]) + struct.pack("<I", BOARD_ID)
_INFO = struct.pack("<BBHIIIHHBBHIIII", 1, 2, 0, BOARD_ID, 0x8000, 0x5FE0, 1024, 2048, 0, 0xFF, 0, 1648, 0xABCD,
                    0x1234, 7)
_STATS = struct.pack("<11I", *range(1, 12))


def _right_reply(request: bytes) -> bytes | None:
    """A well-behaved device's reply (without the leading 0x00 the device never sends), or None."""
    frame = fr.decode_frame(request.strip(b"\x00"))
    if frame is None:
        return None
    body = {fr.PING: frame.body[:4] + _PING_TAIL, fr.INFO: _INFO, fr.STATS: _STATS}.get(frame.type, b"")
    return fr.encode_frame(frame.type | fr.REPLY, frame.seq, body)[1:]


def _damage(reply: bytes, kind: str, at: int, bit: int, junk: bytes) -> bytes:
    k = at % len(reply)
    if kind == "flip":  # one bit, anywhere (a flip to 0x00 cuts the frame in two)
        return reply[:k] + bytes([reply[k] ^ 1 << bit]) + reply[k + 1:]
    if kind == "cut":  # cut short, then the delimiter
        return reply[:k] + b"\x00"
    if kind == "undelimited":  # the delimiter lost: merges with the next reply
        return reply[:-1]
    if kind == "junk":  # line noise before the frame (no 0x00 in it: one frame, unreadable)
        return junk + reply
    if kind == "lost":
        return b""
    return reply + reply  # "twice": the second copy is stale by the next request


@FUZZ
@given(which=st.sampled_from(["info", "stats", "reset", "sync"]), n_bad=st.integers(0, 2),
       kind=st.sampled_from(["flip", "cut", "undelimited", "junk", "lost", "twice"]), at=st.integers(0),
       bit=st.integers(0, 7), junk=st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"\x00", b"\x01")))
def test_damaged_replies_are_retried_to_the_right_answer(which: str, n_bad: int, kind: str, at: int, bit: int,
                                                         junk: bytes) -> None:
    """The first n_bad replies arrive damaged; each costs at most two attempts (an unreadable frame, or the
    next reply it merged with), so 1 + 2 * n_bad attempts get the right answer, in bounded time."""
    sent = [0]

    def respond(request: bytes) -> bytes:
        reply = _right_reply(request)
        assert reply is not None, "the client sent an unreadable frame"
        sent[0] += 1
        return _damage(reply, kind, at, bit, junk) if sent[0] <= n_bad else reply

    retries = 2 * n_bad
    # sync: one exchange per attempt, without retries
    client = DeviceClient(ScriptedPort(respond), timeout=TIMEOUT, retries=retries, sync_attempts=retries + 1)
    start = time.monotonic()
    if which == "info":
        info = client.info()
        assert (info.board_id, info.model_size, info.model_crc, info.model_id, info.t) == \
            (BOARD_ID, 1648, 0xABCD, 0x1234, 7)
        assert info.active_slot == 0 and info.load_slot is None
    elif which == "stats":
        assert client.stats().bytes_tx == 11
    elif which == "reset":
        client.reset_state()
    else:
        assert client.sync() == BOARD_ID
    assert time.monotonic() - start < (retries + 1) * (TIMEOUT + 0.05) + 2.0  # + slack for a loaded machine


@settings(max_examples=40, deadline=None)
@given(which=CALLS, at=st.integers(0), delimit=st.booleans())
def test_replies_always_cut_short_end_in_link_error(which: str, at: int, delimit: bool) -> None:
    """A link that always cuts the reply: a LinkError after the retry budget, never a hang or a partial result."""

    def respond(request: bytes) -> bytes:
        reply = _right_reply(request) or b"\x01\x01"
        return reply[:at % (len(reply) - 1)] + (b"\x00" if delimit else b"")  # at least one byte short

    client = DeviceClient(ScriptedPort(respond), timeout=TIMEOUT, retries=RETRIES, sync_attempts=2)
    start = time.monotonic()
    with pytest.raises(LinkError):
        _call(client, which)
    # one exchange at most (the first request's retries, or sync's attempts) before the error
    assert time.monotonic() - start < max(RETRIES + 1, 2) * (TIMEOUT + 0.05) + 2.0


class QuietStepper:
    """A device that steps a network without output spikes: answers STEP (t_before, n, n empty steps) and
    keeps its last reply for a repeated sequence number, as proto.c does."""

    def __init__(self) -> None:
        self.t = 0
        self.last: tuple[int, bytes] | None = None

    def __call__(self, request: bytes) -> bytes:
        frame = fr.decode_frame(request.strip(b"\x00"))
        assert frame is not None and frame.type == fr.STEP and len(frame.body) >= 2
        if self.last is None or self.last[0] != frame.seq:
            n = frame.body[1]
            self.last = (frame.seq, fr.encode_frame(fr.STEP | fr.REPLY, frame.seq,
                                                    struct.pack("<IB", self.t, n) + b"\x00" * n)[1:])
            self.t += n
        return self.last[1]


@settings(max_examples=60, deadline=None)
@given(n_in=st.integers(1, 3000), steps=st.integers(1, 4), density=st.sampled_from([0.01, 0.5, 1.0]),
       high=st.sampled_from([1, 3, 255]), seed=st.integers(0, 2**32 - 1))
def test_client_run_takes_any_raster_or_names_it(n_in: int, steps: int, density: float, high: int,
                                                 seed: int) -> None:
    """run() with any input raster the device's range allows (counts 0..255, any width): every step arrives
    once, or InputError says a step does not fit the device's frames (it was a ValueError)."""
    rng = np.random.default_rng(seed)
    counts = (rng.random((steps, n_in)) < density) * rng.integers(1, high + 1, (steps, n_in))
    device = QuietStepper()
    client = DeviceClient(ScriptedPort(device), timeout=TIMEOUT, retries=RETRIES)
    try:
        out = client.run(counts, n_out=3)
    except neurocc.InputError:
        return
    assert out.shape == (steps, 3) and not out.any() and device.t == steps


# ---- device side, host build: proto.c behind stdin/stdout ------------------------------------------------------

PROTO_HARNESS = r"""
/* The device side of the model protocol on the host: stdin bytes -> proto_rx_byte, replies -> stdout.
 * Slots, arena and board id as the netduinoplus2 app (layout.h, app.c). argv[1]: an image for slot A. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static uint32_t slot_a[0x8000u / 4u], slot_b[0x8000u / 4u], arena[0x5FE0u / 4u];
static int record = -1, rebooted = 0;
static proto_t g_proto;

static void put(const uint8_t *data, uint32_t n) {
    fwrite(data, 1, n, stdout);
    fflush(stdout);
}
static void commit_record(int slot) { record = slot; }
static void reboot(void) { rebooted = 1; }

static const proto_board_t board = {
    {(uint8_t *)slot_a, (uint8_t *)slot_b}, sizeof slot_a, arena, sizeof arena, 0x0413u, put, commit_record, reboot,
};

int main(int argc, char **argv) {
    int c;
    if (argc > 1) {
        FILE *f = fopen(argv[1], "rb");
        if (!f || fread(slot_a, 1, sizeof slot_a, f) == 0) return 3;
        fclose(f);
        record = 0;
    }
    proto_init(&g_proto, &board, record);
    while ((c = getchar()) != EOF) {
        proto_rx_byte(&g_proto, (uint8_t)c);
        if (rebooted) { /* SYSRESETREQ: RAM (slots, record) survives, the protocol state does not */
            rebooted = 0;
            proto_init(&g_proto, &board, record);
        }
    }
    return 0;
}
"""
_SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


@pytest.fixture(scope="session")
def proto_harness(tmp_path_factory) -> Path:
    """PROTO_HARNESS + firmware/proto/proto.c + firmware/engine/snn.c, gcc with ASan and UBSan."""
    if shutil.which("gcc") is None:
        assert os.environ.get("CI") != "true", "CI needs gcc: a missing tool is a failure, never a skip"
        pytest.skip("gcc not installed (scripts/install.sh installs it)")
    d = tmp_path_factory.mktemp("proto_harness")
    (d / "proto_run.c").write_text(PROTO_HARNESS)
    exe = d / "proto_run"
    proc = subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", *_SANITIZE,
                           f"-I{FIRMWARE_DIR / 'engine'}", f"-I{FIRMWARE_DIR / 'proto'}",
                           str(FIRMWARE_DIR / "engine" / "snn.c"), str(FIRMWARE_DIR / "proto" / "proto.c"),
                           str(d / "proto_run.c"), "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the protocol harness does not build:\n{proc.stderr[-3000:]}"
    return exe


class Model:
    """A small compiled Cortex-M model (conftest's `delays`: 4 inputs, 6 LIF populations, delays up to 7)."""

    def __init__(self, out: Path, raster: np.ndarray):
        self.out = out
        self.art = artifacts(out)
        self.image = self.art.image
        self.raster = raster
        self.counts = input_counts(self.art, raster)
        self.reported = self.art.reported(True)
        self.n_out = sum(self.art.size(n) for n in self.reported)
        ref = simulate_int(load_int_network(out / NETWORK_FILE), raster, record=False)
        self.want = np.concatenate([ref.spikes[n] for n in self.reported], axis=1)


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> Model:
    graph, kwargs, raster = SYNTHETIC["delays"]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(graph, **kwargs)
    out = neurocc.compile(net, "stm32f405", progress=False).emit(tmp_path_factory.mktemp("model") / "out")
    return Model(out, raster)


def _step_body(counts: np.ndarray, flags: int = 1) -> bytes:
    body = bytearray([flags, len(counts)])
    for row in counts:
        fr.encode_spikes(row, body)
    return bytes(body)


def _base_requests(m: Model) -> list[tuple[int, bytes]]:
    """Valid requests of every command, the model's own load among them: mutations start from these."""
    crc = fr.crc32(m.image)
    reqs = [(fr.PING, b"\x01\x02\x03\x04"), (fr.INFO, b""), (fr.STATS, b""), (fr.RESET_STATE, b""), (fr.REBOOT, b""),
            (fr.LOAD_BEGIN, struct.pack("<II", len(m.image), crc)), (fr.LOAD_BEGIN, struct.pack("<II", 0x8001, crc)),
            (fr.LOAD_COMMIT, b""), (fr.STEP, _step_body(m.counts[:1])), (fr.STEP, _step_body(m.counts[:20], 0)),
            (fr.STEP, _step_body(m.counts[:3] * 3)),  # graded counts: list with counts
            (fr.STEP, _step_body(np.ones((2, m.counts.shape[1]), np.int64))),  # bitmaps
            (fr.STEP, bytes([1, 255]) + b"\x00" * 255)]  # the most steps one request holds
    return reqs + _load_requests(m)[1:-1]


def _load_requests(m: Model) -> list[tuple[int, bytes]]:
    """LOAD_BEGIN, the chunks, LOAD_COMMIT of the model's image."""
    reqs = [(fr.LOAD_BEGIN, struct.pack("<II", len(m.image), fr.crc32(m.image)))]
    reqs += [(fr.LOAD_CHUNK, struct.pack("<I", off) + m.image[off:off + 900]) for off in range(0, len(m.image), 900)]
    return reqs + [(fr.LOAD_COMMIT, b"")]


def _mutate_body(draw: st.DrawFn, body: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "cut", "extend", "random", "huge"]))
    if kind == "flip" and body:
        b = bytearray(body)
        for _ in range(draw(st.integers(1, 3))):
            b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "cut":
        return body[:draw(st.integers(0, max(0, len(body) - 1)))]
    if kind == "extend":
        return body + draw(st.binary(min_size=1, max_size=8))
    if kind == "huge" and len(body) < 1016:  # around PROTO_RX_MAX: 1024 decoded bytes are read, 1025 overflow
        return body + bytes(draw(st.integers(1016 - len(body), 1030 - len(body))))
    return draw(st.binary(max_size=40))


KINDS = ["valid", "body", "type", "wire", "cut", "random"]


def _frame(draw: st.DrawFn, cmd: int, seq: int, body: bytes, kind: str) -> bytes:
    if kind == "body":
        body = _mutate_body(draw, body)
    elif kind == "type":
        cmd = draw(st.integers(0, 255))
    wire = bytearray(fr.encode_frame(cmd, seq, body))
    if kind == "wire":
        for _ in range(draw(st.integers(1, 3))):
            wire[draw(st.integers(1, len(wire) - 2))] ^= 1 << draw(st.integers(0, 7))
    elif kind == "cut":  # the next frame's leading 0x00 ends it
        wire = wire[:draw(st.integers(1, len(wire) - 2))]
    elif kind == "random":
        wire = bytearray(draw(st.binary(min_size=1, max_size=64)))
    return bytes(wire)


@st.composite
def mutated_streams(draw: st.DrawFn, bases: list[tuple[int, bytes]], load: list[tuple[int, bytes]]) -> bytes:
    """Frames from `bases`, each kept, CRC-valid with a mutated body, type or sequence number (the parsers),
    or damaged on the wire (bit flips, cuts, random bytes: the COBS decoder, length and CRC checks). Sequence
    numbers come mostly from a few values, so repeats (the retry cache) are common. Some items are a whole
    load session (`load`: LOAD_BEGIN, the chunks, LOAD_COMMIT) with a few of its frames mutated, which
    reaches the commit's CRC and image checks."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 16))):
        if draw(st.integers(0, 7)) == 0:
            seq0 = draw(st.integers(0, 254))
            for k, (cmd, body) in enumerate(load):
                kind = "valid" if draw(st.integers(0, 3)) else draw(st.sampled_from(KINDS))
                out += _frame(draw, cmd, (seq0 + k) % 255, body, kind)
            continue
        cmd, body = draw(st.sampled_from(bases))
        seq = draw(st.sampled_from([0, 1, 2, 0xFE, 0xFF]) | st.integers(0, 255))
        out += _frame(draw, cmd, seq, body, draw(st.sampled_from(KINDS)))
    return bytes(out)


def _replies(stdout: bytes) -> list[fr.Frame]:
    assert stdout[-1:] in (b"", b"\x00"), "the device left a reply unterminated"
    frames = []
    for wire in stdout.split(b"\x00")[:-1]:
        assert wire, "the device sent an empty frame"
        frame = fr.decode_frame(wire)
        assert frame is not None, f"the device sent an unreadable frame {wire.hex()}"
        frames.append(frame)
    return frames


def _error(frame: fr.Frame) -> tuple[int, int]:
    assert frame.type == fr.ERROR and len(frame.body) == 5, f"not an error frame: {frame}"
    return frame.body[0], struct.unpack_from("<I", frame.body, 1)[0]


def _check_replies(stream: bytes, replies: list[fr.Frame]) -> list[str]:
    """One reply per non-empty frame, as docs/device-protocol.md says: a NAK (seq 0xFF, code 1) for one that
    fails COBS, length (6..PROTO_RX_MAX decoded bytes) or CRC; for a readable one, a PING echo (which ends
    the retry cache's session), the cached reply when the sequence number repeats the last one, else the
    command's reply or an error with that sequence number. Returns what each executed command answered."""
    seen = []
    chunks = [c for c in stream.split(b"\x00") if c]
    assert len(replies) == len(chunks), f"{len(chunks)} frames got {len(replies)} replies"
    last_seq, cached = -1, None
    for k, (chunk, reply) in enumerate(zip(chunks, replies, strict=True)):
        raw = fr.cobs_decode(chunk)
        where = f"frame {k} ({chunk[:24].hex()}...)"
        if raw is None or not 6 <= len(raw) <= fr.RX_MAX or fr.crc32(raw[:-4]) != struct.unpack("<I", raw[-4:])[0]:
            assert reply.seq == fr.SEQ_NONE and _error(reply)[0] == fr.PERR_BAD_FRAME, f"{where}: {reply}"
            continue
        ftype, seq, body = raw[0], raw[1], raw[2:-4]
        assert reply.seq == seq, f"{where}: reply {reply} to seq {seq}"
        if ftype == fr.PING:
            if len(body) == 4:
                assert reply.type == fr.PING | fr.REPLY and reply.body[:4] == body, f"{where}: {reply}"
                last_seq, cached = -1, None
            else:
                assert _error(reply)[0] == 3, f"{where}: {reply}"
            continue
        if seq == fr.SEQ_NONE:
            assert _error(reply)[0] == 3, f"{where}: {reply}"
            continue
        if seq == last_seq:
            assert reply == cached, f"{where}: repeated seq {seq} answered {reply}, the cache held {cached}"
            continue
        last_seq, cached = seq, reply
        seen.append(("unknown" if ftype not in COMMANDS + [fr.REBOOT] else f"0x{ftype:02x}") + " -> " +
                    ("reply" if reply.type & fr.REPLY else f"error {reply.body[0]}"))
        if ftype in COMMANDS or ftype == fr.REBOOT:
            assert reply.type == ftype | fr.REPLY or _error(reply)[0] in range(3, 12), f"{where}: {reply}"
        else:
            assert _error(reply) == (2, ftype), f"{where}: {reply}"
        if reply.type == fr.REBOOT | fr.REPLY:
            last_seq, cached = -1, None  # the device reset
    return seen


def _run_harness(exe: Path, stream: bytes, image: Path | None = None) -> bytes:
    args = [str(exe)] + ([str(image)] if image else [])
    proc = subprocess.run(args, input=stream, capture_output=True, timeout=30, env=_ENV)
    assert proc.returncode == 0, f"the device crashed (exit {proc.returncode}):\n{proc.stderr.decode()[-3000:]}"
    assert not proc.stderr, proc.stderr.decode()[-3000:]
    return proc.stdout


def test_harness_answers_the_protocol(proto_harness: Path, model: Model) -> None:
    """The harness itself: a clean session of every command, the model loaded over the protocol, then run."""
    m = model
    reqs = [(fr.PING, b"abcd"), (fr.INFO, b""), (fr.STEP, _step_body(m.counts[:1])), *_load_requests(m),
            (fr.RESET_STATE, b""), (fr.STEP, _step_body(m.counts[:20]))]
    stream = b"".join(fr.encode_frame(c, k, b) for k, (c, b) in enumerate(reqs))
    replies = _replies(_run_harness(proto_harness, stream))
    _check_replies(stream, replies)
    assert _error(replies[2])[0] == 4  # no model yet
    assert all(r.type == c | fr.REPLY for r, (c, _) in zip(replies[3:], reqs[3:], strict=True))
    _assert_step_reply(replies[-1], m, 20)


def _assert_step_reply(reply: fr.Frame, m: Model, steps: int) -> None:
    assert reply.type == fr.STEP | fr.REPLY, f"STEP answered {reply}"
    t0, n = struct.unpack_from("<IB", reply.body, 0)
    assert (t0, n) == (0, steps)
    pos, got = 5, np.zeros((steps, m.n_out), dtype=bool)
    for t in range(steps):
        idx, pos = fr.decode_spikes(reply.body, pos, m.n_out)
        got[t, idx] = True
    assert pos == len(reply.body)
    np.testing.assert_array_equal(got, m.want[:steps])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_device_answers_mutated_frames_and_keeps_its_model(proto_harness: Path, model: Model, data) -> None:
    """Mutated frames into the firmware's protocol code (model in slot A): exit status 0 under ASan/UBSan,
    every frame answered as the protocol says, and afterwards PING, RESET_STATE and a STEP of 20 steps give
    the reference simulator's spikes (no mutated request changed the model)."""
    stream = data.draw(mutated_streams(_base_requests(model), _load_requests(model)))
    m = model
    stream += b"".join(fr.encode_frame(c, s, b) for c, s, b in (
        (fr.PING, 7, b"\x09\x08\x07\x06"), (fr.RESET_STATE, 1, b""), (fr.STEP, 2, _step_body(m.counts[:20]))))
    replies = _replies(_run_harness(proto_harness, stream, m.out / "model.bin"))
    for what in set(_check_replies(stream, replies)):
        event(what)
    assert replies[-3].body[:4] == b"\x09\x08\x07\x06"
    assert replies[-2].type == fr.RESET_STATE | fr.REPLY, f"the model is gone: {replies[-2]}"
    _assert_step_reply(replies[-1], m, 20)


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0), st.integers(0, 255), st.booleans()), min_size=1, max_size=4),
       fix_crc=st.booleans(), preload=st.booleans())
def test_device_loads_mutated_images_safely(proto_harness: Path, model: Model, flips, fix_crc: bool,
                                            preload: bool) -> None:
    """A complete, CRC-correct load of a corrupted image (bytes changed, mostly in the header and tables;
    with fix_crc the image's own CRC32 is made right again, so snn_validate must catch the rest): the commit
    is refused with error 8 (image rejected) or 9 (arena), or the image validates and then steps without
    a sanitizer report. A refused image leaves a preloaded model running, bit-exact."""
    m = model
    img = bytearray(m.image)
    for at, value, in_tables in flips:
        img[at % (256 if in_tables else len(img))] = value
    if fix_crc and len(img) >= 16:
        img[12:16] = struct.pack("<I", fr.crc32(bytes(img[16:])))
    image = bytes(img)
    reqs = [(fr.LOAD_BEGIN, struct.pack("<II", len(image), fr.crc32(image)))]
    reqs += [(fr.LOAD_CHUNK, struct.pack("<I", off) + image[off:off + 900]) for off in range(0, len(image), 900)]
    reqs += [(fr.LOAD_COMMIT, b""), (fr.RESET_STATE, b""), (fr.STEP, _step_body(m.counts[:20]))]
    stream = b"".join(fr.encode_frame(c, k, b) for k, (c, b) in enumerate(reqs))
    replies = _replies(_run_harness(proto_harness, stream, m.out / "model.bin" if preload else None))
    _check_replies(stream, replies)
    commit, step = replies[-3], replies[-1]
    assert all(r.type == c | fr.REPLY for r, (c, _) in zip(replies[:-3], reqs[:-3], strict=True))
    if commit.type == fr.LOAD_COMMIT | fr.REPLY:
        event("a corrupted image validated" if image != m.image else "the image was unchanged")
        assert step.type == fr.STEP | fr.REPLY or _error(step)[0] == 10, step  # its own input space
        if image == m.image:
            _assert_step_reply(step, m, 20)
        return
    code, detail = _error(commit)
    event(f"refused: error {code}, detail {detail}")
    assert code in (8, 9), commit
    if preload:
        _assert_step_reply(step, m, 20)
    else:
        assert _error(step)[0] == 4  # still no model


class LoopbackPort:
    """A pyserial stand-in wired to the harness process through a link that drops bytes and flips bits, each
    direction with its own seeded generator. read() waits at most `timeout`, like pyserial."""

    def __init__(self, exe: Path, drop: float, flip: float, seed: int):
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=_ENV)
        self.drop, self.flip = drop, flip
        self.rng_out, self.rng_in = random.Random(seed), random.Random(seed + 1)
        self.buf = bytearray()
        self.cv = threading.Condition()
        self.timeout: float | None = 0.05
        self.port = "loopback"
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _mangle(self, data: bytes, rng: random.Random) -> bytes:
        out = bytearray()
        for b in data:
            r = rng.random()
            if r < self.drop:
                continue
            out.append(b ^ (1 << rng.randrange(8)) if r < self.drop + self.flip else b)
        return bytes(out)

    def _pump(self) -> None:
        fd = self.proc.stdout.fileno()
        while data := os.read(fd, 4096):
            data = self._mangle(data, self.rng_in)
            with self.cv:
                self.buf += data
                self.cv.notify_all()

    @property
    def in_waiting(self) -> int:
        return len(self.buf)

    def write(self, data: bytes) -> int:
        self.proc.stdin.write(self._mangle(bytes(data), self.rng_out))
        self.proc.stdin.flush()
        return len(data)

    def read(self, n: int = 1) -> bytes:
        with self.cv:
            if not self.buf:
                self.cv.wait(self.timeout)
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out

    def reset_input_buffer(self) -> None:
        with self.cv:
            self.buf.clear()

    def close(self) -> tuple[int, bytes]:
        """(exit status, stderr) once the device has read everything; a device that does not finish is killed."""
        try:
            self.proc.stdin.close()
            rc = self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(timeout=10)
        return rc, self.proc.stderr.read()


LOOP_TIMEOUT, LOOP_RETRIES = 0.1, 6  # a clean link must not fail on a loaded machine: 0.7 s per exchange


@settings(max_examples=40, deadline=None)
@given(drop=st.sampled_from([0.0, 0.002, 0.01]), flip=st.sampled_from([0.0, 0.002, 0.01]),
       seed=st.integers(0, 2**32))
def test_client_over_a_faulty_link_is_right_or_names_the_failure(proto_harness: Path, model: Model, drop: float,
                                                                 flip: float, seed: int) -> None:
    """run_detailed against the firmware's protocol code through a lossy, corrupting link: sync, load (the
    device starts empty), RESET_STATE, every STEP, STATS. It returns the reference simulator's spikes or
    raises a NeuroccError; never a wrong spike, another exception, or a hang. A clean link always succeeds."""
    m = model
    port = LoopbackPort(proto_harness, drop, flip, seed)
    start = time.monotonic()
    try:
        result = run_detailed(m.out, "loopback", m.raster, ser=port, timeout=LOOP_TIMEOUT, retries=LOOP_RETRIES)
    except neurocc.NeuroccError as exc:
        assert drop or flip, f"a clean link failed: {exc}"
        event(type(exc).__name__)
        result = None
    finally:
        elapsed = time.monotonic() - start
        rc, err = port.close()
    assert rc == 0 and not err, f"the device crashed (exit {rc}):\n{err.decode()[-3000:]}"
    # sync (40 attempts), a load of a few chunks, ~5 STEP batches: each exchange at most 7 attempts
    assert elapsed < 30.0, f"run_detailed took {elapsed:.1f} s"
    if result is not None:
        assert result.loaded
        got = np.concatenate([result.spikes[n] for n in m.reported], axis=1)
        np.testing.assert_array_equal(got, m.want)


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
