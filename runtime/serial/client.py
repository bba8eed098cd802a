"""Host side of the model protocol: a device client with bounded retries and timeouts.

Every request carries a sequence number; the device keeps its last reply and sends it again when the
same sequence number arrives twice, so a retry never executes a command twice (a lost STEP reply does
not advance the network twice). A frame the device cannot read comes back as an error with sequence
0xFF, which makes us resend at once instead of waiting for the timeout.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ...compiler.errors import InputError, NeuroccError
from . import framing as fr


class LinkError(NeuroccError):
    """The device did not answer (after every retry), or answered something that is not the protocol."""


class DeviceError(NeuroccError):
    """The device answered a request with an error code."""

    def __init__(self, code: int, detail: int, what: str):
        self.code, self.detail = code, detail
        text = fr.ERRORS.get(code, f"error {code}")
        if code == 8:
            text += f" ({fr.SNN_STATUS.get(detail, detail)})"
        super().__init__(f"device refused {what}: {text} [code {code}, detail {detail}]")


@dataclass
class DeviceInfo:
    proto_version: int
    image_version: int
    board_id: int
    slot_capacity: int
    arena_bytes: int
    rx_max: int
    tx_max: int
    active_slot: int | None
    load_slot: int | None
    model_size: int
    model_crc: int
    model_id: int
    t: int


@dataclass
class DeviceStats:
    t: int
    steps: int
    synapse_ops: int
    neuron_updates: int
    spikes_in: int
    spikes_out: int
    frames_ok: int
    frames_bad: int
    frames_dup: int
    bytes_rx: int
    bytes_tx: int


@dataclass
class LinkCounters:
    """Host-side accounting: bytes per command type, retries (the bench reads these)."""

    bytes_out: dict[int, int]
    bytes_in: dict[int, int]
    retries: int = 0
    naks: int = 0
    timeouts: int = 0


class NotExecuted(LinkError):
    """A probe showed the device never received the request: safe to send another one instead."""


PERR_BAD_ARG = 3
_BAD = object()  # a frame that failed COBS/CRC
START_BUDGET, MIN_BUDGET, MAX_BUDGET = 128, 24, fr.RX_MAX - 16


class DeviceClient:
    """Speaks the model protocol over an open pyserial object (a real port or socket://)."""

    def __init__(self, ser, timeout: float = 0.5, retries: int = 12, sync_attempts: int = 40):
        self.ser = ser
        self.timeout = timeout
        self.retries = retries
        self.sync_attempts = sync_attempts
        self._buf = bytearray()
        self._seq = int.from_bytes(os.urandom(1), "little") % 0xFF
        self.counters = LinkCounters({}, {})
        self.last_attempts = 1
        self.budget = START_BUDGET  # bytes per frame, adapted to the link (see _adapt)
        self._last_reply_len = 0

    # ---- frames ----

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 0xFF  # 0xFF is reserved for "could not read your frame"
        return self._seq

    def _read_frame(self, deadline: float):
        """The next frame, _BAD for an unreadable one, None at the deadline."""
        while True:
            end = self._buf.find(0)
            if end >= 0:
                wire = bytes(self._buf[:end])
                del self._buf[:end + 1]
                if not wire:
                    continue  # back-to-back delimiters
                self._in_bytes += len(wire) + 1
                frame = fr.decode_frame(wire)
                return _BAD if frame is None else frame
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.ser.timeout = min(left, 0.05)
            try:
                chunk = self.ser.read(max(1, self.ser.in_waiting))
            except OSError as exc:
                raise LinkError(f"serial link failed while reading ({exc}). Fix: check the port/cable or "
                                "QEMU") from None
            if chunk:
                self._buf += chunk

    def exchange(self, ftype: int, body: bytes = b"", what: str = "", timeout: float | None = None,
                 retries: int | None = None, probe_after: int | None = None) -> fr.Frame:
        """Send one request; return its reply. Resends the same frame (same sequence number) on a
        timeout, an unreadable reply or a NAK, at most `retries` times.

        probe_after=n: from the n-th resend on, send the same sequence number with an empty body. The
        device answers a repeated sequence number from its cache whatever the body, so a probe fetches
        the reply of a request that ran; if the request never arrived, the empty body is refused
        (malformed) and we raise NotExecuted: the caller may then send something smaller."""
        seq = self._next_seq()
        wire = fr.encode_frame(ftype, seq, body)
        probe = fr.encode_frame(ftype, seq, b"")
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        what = what or f"command 0x{ftype:02x}"
        self._in_bytes = 0
        out_bytes = 0
        for attempt in range(retries + 1):
            if attempt:
                self.counters.retries += 1
            probing = probe_after is not None and attempt >= probe_after
            frame_out = probe if probing else wire
            try:
                self.ser.write(frame_out)
            except OSError as exc:
                raise LinkError(f"serial link failed while writing ({exc}). Fix: check the port or QEMU") from None
            out_bytes += len(frame_out)
            deadline = time.monotonic() + timeout
            while True:
                frame = self._read_frame(deadline)
                if frame is None:
                    self.counters.timeouts += 1
                    break
                if frame is _BAD:
                    break  # our reply arrived damaged: ask again; the device resends, not re-executes
                if frame.type == fr.ERROR and frame.seq == fr.SEQ_NONE:
                    self.counters.naks += 1
                    break  # the device could not read our request
                if frame.seq != seq:
                    continue  # a stale reply to an earlier retry
                self.last_attempts = attempt + 1
                self.counters.bytes_out[ftype] = self.counters.bytes_out.get(ftype, 0) + out_bytes
                self.counters.bytes_in[ftype] = self.counters.bytes_in.get(ftype, 0) + self._in_bytes
                if frame.type == fr.ERROR:
                    with self._reply(what):
                        code, detail = frame.body[0], struct.unpack_from("<I", frame.body, 1)[0]
                    if probing and code == PERR_BAD_ARG:
                        raise NotExecuted(what)
                    raise DeviceError(code, detail, what)
                self._last_reply_len = len(frame.body)
                if frame.type != (ftype | fr.REPLY):
                    raise LinkError(f"{what}: reply type 0x{frame.type:02x}, expected 0x{ftype | fr.REPLY:02x}")
                return frame
        raise LinkError(f"{what}: no valid reply after {retries + 1} attempts ({timeout:.2f} s each). Fix: check "
                        "that the device runs the neurocc app (neurocc flash) and the port is right")

    @contextmanager
    def _reply(self, what: str) -> Iterator[None]:
        """A reply whose CRC is right but whose body is not what the command returns (another firmware,
        a device bug) is a named link error, never a struct/index error."""
        try:
            yield
        except (struct.error, IndexError, ValueError) as exc:
            port = getattr(self.ser, "port", None) or getattr(self.ser, "name", "the port")
            raise LinkError(f"{what}: malformed reply from {port} ({exc}). Fix: flash the neurocc app that "
                            "matches this host (neurocc flash)") from None

    # ---- commands ----

    def sync(self, avoid: bytes = b"") -> int:
        """PING until the device answers with our nonce: the start of every exchange. QEMU drops what
        arrives before the USART is enabled, and a cut link can leave half a frame in the device.
        `avoid`: bytes the PING frame must not contain (0x7F, when an AN3155 bootloader may listen)."""
        nonce = os.urandom(4)
        while avoid and any(b in fr.encode_frame(fr.PING, (self._seq + 1) % 0xFF, nonce) for b in avoid):
            nonce = os.urandom(4)
        for _ in range(self.sync_attempts):
            self._buf.clear()
            self.ser.reset_input_buffer()
            try:
                frame = self.exchange(fr.PING, nonce, "sync", timeout=min(self.timeout, 0.25), retries=0)
            except LinkError:
                continue
            if frame.body[:4] == nonce:
                with self._reply("sync"):
                    return struct.unpack_from("<I", frame.body, 8)[0]
        raise LinkError(f"no answer to sync after {self.sync_attempts} attempts. Fix: is the neurocc app running "
                        "on the device (neurocc flash), and is this its port?")

    def info(self) -> DeviceInfo:
        b = self.exchange(fr.INFO, what="INFO").body
        with self._reply("INFO"):
            v = struct.unpack_from("<BBHIIIHHBBHIIII", b, 0)
        return DeviceInfo(v[0], v[1], v[3], v[4], v[5], v[6], v[7], None if v[8] == 0xFF else v[8],
                          None if v[9] == 0xFF else v[9], v[11], v[12], v[13], v[14])

    def stats(self) -> DeviceStats:
        body = self.exchange(fr.STATS, what="STATS").body
        with self._reply("STATS"):
            return DeviceStats(*struct.unpack_from("<11I", body, 0))

    def reset_state(self) -> None:
        self.exchange(fr.RESET_STATE, what="RESET_STATE")

    def reboot(self) -> None:
        self.exchange(fr.REBOOT, what="REBOOT")

    def load(self, image: bytes, chunk: int = 1008, progress: Callable[[int, int], None] | None = None,
             abort_after: int | None = None) -> int:
        """LOAD_BEGIN, LOAD_CHUNKs, LOAD_COMMIT. The device writes the slot that is not running and
        switches only after the CRC and its own checks pass. Returns the model id.

        A chunk is idempotent (bytes at an offset), so a chunk that keeps failing is resent smaller under
        a new sequence number. `abort_after` (tests): stop after that many bytes, leaving the load torn."""
        size, crc = len(image), fr.crc32(image)
        b = self.exchange(fr.LOAD_BEGIN, struct.pack("<II", size, crc), "LOAD_BEGIN").body
        with self._reply("LOAD_BEGIN"):
            high = max(16, min(chunk, struct.unpack_from("<H", b, 2)[0]))
        off = 0
        while off < size:
            if abort_after is not None and off >= abort_after:
                return -1
            part = image[off:off + min(high, self.budget)]
            try:
                r = self.exchange(fr.LOAD_CHUNK, struct.pack("<I", off) + part, f"LOAD_CHUNK at {off}",
                                  retries=min(3, self.retries) if self.budget > MIN_BUDGET else self.retries)
            except LinkError:
                if self.budget <= MIN_BUDGET:
                    raise
                self.budget = max(MIN_BUDGET, self.budget // 2)
                continue
            with self._reply(f"LOAD_CHUNK at {off}"):
                end = struct.unpack_from("<I", r.body, 0)[0]
            if end != off + len(part):
                raise LinkError(f"LOAD_CHUNK at {off}: device acknowledged up to {end}, expected {off + len(part)}")
            off = end
            self._adapt()
            if progress is not None:
                progress(off, size)
        r = self.exchange(fr.LOAD_COMMIT, what="LOAD_COMMIT", timeout=max(self.timeout, 2.0))
        with self._reply("LOAD_COMMIT"):
            return struct.unpack_from("<I", r.body, 1)[0]

    def _adapt(self) -> None:
        """Frame budget: halve after an exchange that needed a retry, grow by half after a clean one.
        On a link that loses a fraction p of its bytes a frame of n bytes survives with (1-p)^n; short
        frames keep that high, long ones keep a clean link fast."""
        if self.last_attempts > 1:
            self.budget = max(MIN_BUDGET, self.budget // 2)
        else:
            self.budget = min(MAX_BUDGET, self.budget + self.budget // 2 + 1)

    def step(self, inputs: np.ndarray, n_out: int, report_all: bool = True,
             max_frame: int = fr.RX_MAX) -> tuple[int, list[np.ndarray]]:
        """One STEP request for len(inputs) steps (rows: counts over the input index space).
        Returns (device step counter before the batch, per step the spiking output indices)."""
        body = bytearray([1 if report_all else 0, len(inputs)])
        for row in inputs:
            fr.encode_spikes(row, body)
        if len(body) + 6 > max_frame:  # run() sends one step alone when it is this wide
            raise InputError(f"STEP: {len(inputs)} step(s) of input take {len(body) + 6} bytes, the device reads "
                             f"frames of at most {max_frame}. Fix: fewer input neurons or smaller spike counts per "
                             "step (bin the input more finely)")
        r = self.exchange(fr.STEP, bytes(body), "STEP", timeout=self.timeout + 0.002 * len(inputs),
                          probe_after=min(3, self.retries) if len(inputs) > 1 else None).body
        with self._reply("STEP"):
            t0, n = struct.unpack_from("<IB", r, 0)
            if n != len(inputs):
                raise LinkError(f"STEP: device ran {n} steps, asked for {len(inputs)}")
            pos, out = 5, []
            for _ in range(n):
                idx, pos = fr.decode_spikes(r, pos, n_out)
                out.append(idx)
        return t0, out

    def run(self, inputs: np.ndarray, n_out: int, report_all: bool = True,
            on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Stream a whole raster [T, n_in] of input counts; return [T, n_out] output spikes (bool).

        Each STEP carries as many steps as fit the frame budget, both ways (the reply estimated from
        the last one, never above the device's buffer). A STEP is retried only as the same frame: the
        device answers a repeat from its cache and never runs the steps twice."""
        steps = inputs.shape[0]
        out = np.zeros((steps, n_out), dtype=bool)
        k_device = max(1, (fr.TX_MAX - 11) // fr.worst_step_reply(n_out))
        reply_per_step = float(fr.worst_step_reply(n_out))
        t = 0
        t_dev: int | None = None
        scratch = bytearray()
        while t < steps:
            body_len, k = 2, 0
            while t + k < steps and k < min(255, k_device):
                scratch.clear()
                fr.encode_spikes(inputs[t + k], scratch)
                if k and (body_len + len(scratch) > self.budget or (k + 1) * reply_per_step > self.budget):
                    break
                body_len += len(scratch)
                k += 1
            try:
                t0, got = self.step(inputs[t:t + k], n_out, report_all)
            except NotExecuted:
                self.budget = max(MIN_BUDGET, self.budget // 2)  # too long for this link: fewer steps
                continue
            if t_dev is not None and t0 != t_dev:
                raise LinkError(f"STEP: device is at step {t0}, expected {t_dev}: a step was lost or repeated")
            t_dev = t0 + k
            for j, idx in enumerate(got):
                out[t + j, idx] = True
            reply_per_step = max(1.0, self._last_reply_len / k)
            t += k
            self._adapt()
            if on_batch is not None:
                on_batch(t, steps)
        return out
