"""The SpiNNaker artifact formats: one header for every binary file, and a bounds-checked reader.

Every file is `header | payload`, little endian (docs/spinnaker-format.md):

    offset 0   4 bytes  magic (ASCII, one per kind of file)
    offset 4   u16      format version (FORMAT_VERSION)
    offset 6   u16      reserved, 0
    offset 8   u32      payload length in bytes (file size - 16)
    offset 12  u32      zlib.crc32 of the payload
    offset 16  payload

The writer (backends/spinnaker/emit.py) and the executor (runtime/executors/spinnaker) share only
these constants and the checked reader; each lays out and parses the payloads itself, so a
layout bug on one side shows up as an error or a spike mismatch, not as a silent agreement.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ...compiler.errors import ArtifactError

# 3: conv projections travel as conv.bin (shape header + kernel once per core), not synaptic rows.
# 2: neurons.bin carries decay_bits and both shifts of the format (1 implied Loihi's).
FORMAT_VERSION = 3
# What each older version lacks, for the refusal message (docs/spinnaker-format.md "Every binary file").
OLD_VERSIONS = {1: "neurons.bin without decay_bits and threshold_shift",
                2: "conv projections as synaptic rows, no conv.bin"}
HEADER = struct.Struct("<4sHHII")
HEADER_BYTES = HEADER.size  # 16

MAGIC_MACHINE = b"NCMA"
MAGIC_ROUTING = b"NCRT"
MAGIC_NEURONS = b"NCNE"
MAGIC_POPTABLE = b"NCPT"
MAGIC_SYNAPSES = b"NCSY"
MAGIC_DELAY = b"NCDX"
MAGIC_SOURCE = b"NCSS"
MAGIC_CONV = b"NCCV"

KIND_OF_MAGIC = {
    MAGIC_MACHINE: "machine", MAGIC_ROUTING: "routing", MAGIC_NEURONS: "neurons", MAGIC_POPTABLE: "poptable",
    MAGIC_SYNAPSES: "synapses", MAGIC_DELAY: "delay", MAGIC_SOURCE: "source", MAGIC_CONV: "conv",
}
MAGIC_OF_KIND = {kind: magic for magic, kind in KIND_OF_MAGIC.items()}
FILE_OF_KIND = {"neurons": "neurons.bin", "poptable": "poptable.bin", "synapses": "synapses.bin",
                "delay": "delay.bin", "source": "source.bin", "conv": "conv.bin"}

MACHINE_FILE = "machine.bin"
MANIFEST = "manifest.json"
TOPOLOGIES = ("mesh2d", "triangular", "single")

# Synapse-type weight encodings (the type table's `mode`): how a word's weight field becomes the
# signed mantissa. Mixed-sign mantissas are even (Lava drops the LSB), so half of them fits the field.
MODE_POSITIVE = 0  # unsigned field, m = field
MODE_NEGATIVE = 1  # unsigned field, m = -field
MODE_SIGNED_HALF = 2  # two's complement field, m = 2 * field
MODES = (MODE_POSITIVE, MODE_NEGATIVE, MODE_SIGNED_HALF)


def routing_path(chip: tuple[int, int]) -> str:
    return f"chips/{chip[0]}_{chip[1]}/routing.bin"


def core_dir(chip: tuple[int, int], core: int) -> str:
    return f"cores/{chip[0]}_{chip[1]}_{core}"


def pack_file(magic: bytes, payload: bytes) -> bytes:
    return HEADER.pack(magic, FORMAT_VERSION, 0, len(payload), zlib.crc32(payload)) + payload


def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def pack_name(name: str) -> bytes:
    """u16 length + UTF-8 bytes; the caller pads to the next 4-byte boundary."""
    raw = name.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"population name of {len(raw)} bytes does not fit a u16 length")
    return struct.pack("<H", len(raw)) + raw


class Reader:
    """Reads a payload front to back; every read past the end names the file, offset and need.

    Offsets in messages are byte offsets in the *file* (header included), so they point at the
    byte a user would inspect with a hex dump.
    """

    def __init__(self, label: str, payload: bytes) -> None:
        self.label = label
        self.data = payload
        self.pos = 0

    @property
    def file_offset(self) -> int:
        return HEADER_BYTES + self.pos

    def fail(self, what: str, offset: int | None = None) -> ArtifactError:
        at = self.file_offset if offset is None else offset
        return ArtifactError(f"{self.label}: byte offset {at}: {what}. Fix: compile again (the file is corrupt)")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {what} needs {n} bytes, only {len(self.data) - self.pos} remain")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size, what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        raw = self.take(count * dt.itemsize, f"{what} ({count} x {dt.itemsize} bytes)")
        return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))

    def name(self, what: str) -> str:
        (length,) = self.unpack("H", f"{what} length")
        at = self.file_offset
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8", at) from None

    def align4(self, what: str) -> None:
        self.take(-self.pos % 4, f"{what} padding")

    def done(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} unexpected trailing bytes; the payload should end here")


def open_file(path: Path, label: str, magic: bytes) -> Reader:
    """Read a file, check its header (size, magic, version, length, CRC); a reader of its payload."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{label}: cannot read ({exc.strerror}). Fix: compile again") from None
    return check_file(data, label, magic)


def check_file(data: bytes, label: str, magic: bytes) -> Reader:
    """Check the header of a file's bytes (size, magic, version, length, CRC); a reader of its payload."""
    if len(data) < HEADER_BYTES:
        raise ArtifactError(f"{label}: byte offset {len(data)}: truncated: the header needs {HEADER_BYTES} bytes, "
                            f"the file has {len(data)}. Fix: compile again")
    got_magic, version, reserved, length, crc = HEADER.unpack_from(data)
    if got_magic != magic:
        raise ArtifactError(f"{label}: byte offset 0: magic {got_magic!r}, expected {magic!r} "
                            f"({KIND_OF_MAGIC[magic]} file). Fix: compile again")
    if version != FORMAT_VERSION:
        old = f" ({OLD_VERSIONS[version]})" if version in OLD_VERSIONS else ""
        raise ArtifactError(f"{label}: byte offset 4: format version {version}{old}, expected {FORMAT_VERSION}. "
                            "Fix: compile again with this neurocc")
    if reserved != 0:
        raise ArtifactError(f"{label}: byte offset 6: reserved field {reserved}, expected 0. Fix: compile again")
    if length != len(data) - HEADER_BYTES:
        raise ArtifactError(f"{label}: byte offset 8: payload length {length}, expected {len(data) - HEADER_BYTES} "
                            f"(file of {len(data)} bytes: truncated or padded). Fix: compile again")
    payload = data[HEADER_BYTES:]
    actual = zlib.crc32(payload)
    if actual != crc:
        raise ArtifactError(f"{label}: byte offset 12: CRC32 {crc:#010x}, expected {actual:#010x} (the payload "
                            "changed after it was written). Fix: compile again")
    return Reader(label, payload)
