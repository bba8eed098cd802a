"""Frames of the model protocol (docs/device-protocol.md): COBS, sequence number, CRC32; spike encodings.

A frame on the wire is COBS(type, seq, body, crc32_le(type..body)) followed by 0x00; the host also
sends a 0x00 first, which ends any partial frame a cut link left in the device's decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

# proto.h enum proto_cmd / proto_err
PING, INFO, LOAD_BEGIN, LOAD_CHUNK, LOAD_COMMIT = 0x01, 0x02, 0x10, 0x11, 0x12
RESET_STATE, STEP, STATS, REBOOT, ERROR, REPLY = 0x20, 0x30, 0x40, 0x50, 0x7F, 0x80
SEQ_NONE = 0xFF
RX_MAX = 1024  # the device's largest request (decoded)
TX_MAX = 2048  # the device's largest reply (decoded)

ERRORS = {
    1: "bad frame (CRC, COBS or length)", 2: "unknown command", 3: "malformed request", 4: "no model loaded",
    5: "load chunk or commit without a matching LOAD_BEGIN", 6: "image larger than a model slot",
    7: "received image does not match its CRC32", 8: "image rejected by the engine", 9: "image needs more state RAM",
    10: "STEP input out of range", 11: "STEP reply would exceed the device's frame size",
}
SNN_STATUS = {1: "bad magic", 2: "unsupported format version", 3: "truncated", 4: "CRC mismatch",
              5: "built for another board", 6: "inconsistent tables", 7: "arena too small", 8: "bad input",
              9: "numeric widths the engine cannot compute exactly"}  # snn.h enum snn_status
PERR_BAD_FRAME = 1


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """None if malformed (a zero inside, or a block running past the end)."""
    out = bytearray()
    k, n = 0, len(data)
    while k < n:
        code = data[k]
        if code == 0 or k + code > n:
            return None
        block = data[k + 1:k + code]
        if 0 in block:
            return None
        out += block
        k += code
        if code != 0xFF and k < n:
            out.append(0)  # the zero each block but a 0xFF one (or the last) stands for
    return bytes(out)


def encode_frame(ftype: int, seq: int, body: bytes = b"") -> bytes:
    raw = bytes([ftype, seq]) + body
    return b"\x00" + cobs_encode(raw + struct.pack("<I", crc32(raw))) + b"\x00"


@dataclass
class Frame:
    type: int
    seq: int
    body: bytes


def decode_frame(wire: bytes) -> Frame | None:
    """One frame without its delimiter; None if COBS, length or CRC is wrong."""
    raw = cobs_decode(wire)
    if raw is None or len(raw) < 6 or crc32(raw[:-4]) != struct.unpack("<I", raw[-4:])[0]:
        return None
    return Frame(raw[0], raw[1], raw[2:-4])


# ---- varints and spike encodings (proto.c step_inputs / step_outputs) ----

def put_varint(x: int, out: bytearray) -> None:
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)


def get_varint(data: bytes, pos: int) -> tuple[int, int]:
    x = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        x |= (b & 0x7F) << shift
        if not b & 0x80:
            return x, pos
        shift += 7


def encode_spikes(counts: np.ndarray, out: bytearray) -> None:
    """One step of an index space: ascending delta list (with counts if any > 1) or a bitmap,
    whichever is shorter."""
    idx = np.flatnonzero(counts)
    graded = bool(idx.size and counts[idx].max() > 1)
    lst = bytearray()
    prev = -1
    for i in idx:
        put_varint(int(i) - prev - 1 if prev >= 0 else int(i), lst)
        if graded:
            put_varint(int(counts[i]), lst)
        prev = int(i)
    n_bytes = (counts.size + 7) // 8
    if not graded and len(lst) > n_bytes:
        put_varint(idx.size << 2 | 2, out)
        bits = np.zeros(n_bytes * 8, dtype=np.uint8)
        bits[idx] = 1
        out += np.packbits(bits, bitorder="little").tobytes()
        return
    put_varint(idx.size << 2 | (1 if graded else 0), out)
    out += lst


def decode_spikes(data: bytes, pos: int, n_space: int) -> tuple[np.ndarray, int]:
    """(indices, new position) of one step's spikes."""
    h, pos = get_varint(data, pos)
    n, mode = h >> 2, h & 3
    if mode == 2:
        n_bytes = (n_space + 7) // 8
        if pos + n_bytes > len(data):
            raise ValueError("truncated bitmap")
        bits = np.unpackbits(np.frombuffer(data, np.uint8, n_bytes, pos), bitorder="little")[:n_space]
        idx = np.flatnonzero(bits)
        if idx.size != n:
            raise ValueError("bitmap count mismatch")
        return idx, pos + n_bytes
    if mode != 0:
        raise ValueError(f"unexpected spike encoding mode {mode}")
    if n > n_space or n > len(data) - pos:  # each listed spike takes at least one byte
        raise ValueError(f"{n} spikes listed in an index space of {n_space} with {len(data) - pos} bytes left")
    out = np.empty(n, dtype=np.int64)
    prev = -1
    for k in range(n):
        d, pos = get_varint(data, pos)
        prev = d if k == 0 else prev + 1 + d
        out[k] = prev
    if n and out[-1] >= n_space:
        raise ValueError("spike index out of range")
    return out, pos


def worst_step_reply(n_out: int) -> int:
    """Bytes one step's reply can take at most (a bitmap and its header), as proto.c checks."""
    h = n_out << 2 | 2
    n = 1
    while h >= 0x80:
        h >>= 7
        n += 1
    return n + (n_out + 7) // 8
