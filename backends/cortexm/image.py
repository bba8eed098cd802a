"""Pack an IntNetwork into the firmware's model image (firmware/engine/snn_image.h, format version 2).

Layout: a 68-byte header, the population, ring and group tables, then data blobs (biases, row
pointers, post indices, weights, delay segments), every one 4-byte aligned, little-endian. The header
carries the integer model's widths (the target's NumericFormat: decay_bits, state_bits,
activation_shift, threshold_shift); the engine reads them there and refuses widths its int32/int64
arithmetic cannot compute exactly, and `check_widths` refuses the same ones here, first.

Synapses are stored per *group* (one projection, or one (projection, delay) when that is needed for
exactness) as rows per pre neuron, in the fastest of these encodings that is at most SIZE_SLACK times
the smallest:

  dense      weights only, n_pre x n_post cells (no indices): 1 byte per cell for 8-bit weights
  simple     uint32 row pointers, then per synapse a uint8 (n_post <= 256) or uint16 post index and
             the weight: 2 bytes per synapse for 8-bit weights and indices
  segmented  rows cut into segments {delay, block, count} (4 bytes each): delays inside one
             projection, or 8-bit indices into 256-neuron blocks of a larger population
  delays     as simple, plus a delay byte per synapse: for delays too mixed for segments to pay

Mixed-sign Loihi mantissas are even, in [-2^bits, 2^bits - 2]: we store m/2 as int8 and shift by one
more. That is exact: (sum m) << e == (sum m/2) << (e+1), and floor((2X) / 2^k) == floor(X / 2^(k-1)).

Synaptic sums land unshifted in per-(population, shift) rings and are shifted when read. A left shift
is linear mod 2^32, so every projection with the same non-negative shift into a population can share
a ring; a floor right shift is not, so a projection with a negative shift gets one ring per delay.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ...compiler.errors import TargetError
from ...compiler.ir import IntNetwork, MemoryImage
from ...compiler.targets.target import NumericFormat

MAGIC = 0x4D43434E  # "NCCM"
FORMAT_VERSION = 2
HEADER_SIZE = 68
POP_SIZE = 32
RING_SIZE = 8
GROUP_SIZE = 32
SEG_SIZE = 4
CRC_START = 16
MAX_POP = 65535  # spike lists hold uint16 indices
MAX_SLOTS = 255  # ring length is a uint8
MAX_SEG_COUNT = 65535

# snn_image.h enums
W_U8, W_N8, W_S8, W_S16 = 0, 1, 2, 3
G_IDX16, G_SEGMENTED, G_DENSE, G_DELAYS = 1, 2, 8, 16
POP_INPUT, POP_LIF = 0, 1
POPF_OUTPUT, POPF_BIAS = 1, 2

BOARD_ANY = 0

# Widths the engine computes exactly (snn_image.h SNN_IMG_*; the reasons are there): key -> (lo, hi, why)
WIDTH_BOUNDS = {
    "decay_bits": (1, 16, "the engine stores du and dv as uint16 and forms x * (2^decay_bits - D) in 64 bits"),
    "state_bits": (2, 29, "the engine sums v in int32 (|decay(v) + bias| < 2^29)"),
    "activation_shift": (0, 31, "the engine shifts a_in as a uint32"),
    "threshold_shift": (0, 30, "the engine stores vth << threshold_shift as a non-negative int32"),
}
INT32_MAX = (1 << 31) - 1


@dataclass
class _Group:
    projection: int
    pre: int
    post: int
    rows: np.ndarray  # post index of each synapse
    cols: np.ndarray  # pre index
    weights: np.ndarray  # stored values (already halved / negated as the kind says)
    delays: np.ndarray
    wkind: int
    shift: int
    ring: int = -1


@dataclass
class _Ring:
    post: int
    shift: int
    slots: int


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _weight_kind(data: np.ndarray, where: str) -> tuple[int, np.ndarray, int]:
    """(kind, stored values, extra shift) for a projection's mantissas."""
    lo, hi = int(data.min()), int(data.max())
    even = bool(np.all(data % 2 == 0))
    if lo >= 0 and hi <= 255:
        return W_U8, data, 0
    if hi <= 0 and lo >= -255:
        return W_N8, -data, 0
    if -128 <= lo and hi <= 127:
        return W_S8, data, 0
    if even and -256 <= lo and hi <= 254:
        return W_S8, data // 2, 1
    if -32768 <= lo and hi <= 32767:
        return W_S16, data, 0
    if even and -65536 <= lo and hi <= 65534:
        return W_S16, data // 2, 1
    raise TargetError(f"{where}: weight mantissas span [{lo}, {hi}]; the Cortex-M engine stores at most 16-bit "
                      "weights. Fix: a target format with weight_bits <= 16")


def _groups(inet: IntNetwork, index: dict[str, int]) -> tuple[list[_Group], list[_Ring]]:
    groups: list[_Group] = []
    rings: list[_Ring] = []
    shared: dict[tuple[int, int], int] = {}  # (post, shift >= 0) -> ring
    for k, proj in enumerate(inet.projections):
        where = f"projection {proj.pre!r} -> {proj.post!r}"
        w = proj.weights.tocoo()
        # tocoo of a csr keeps csr order, so delays (aligned with csr data) stay aligned
        rows, cols = w.row.astype(np.int64), w.col.astype(np.int64)
        data = np.asarray(proj.weights.data, dtype=np.int64)
        delays = np.asarray(proj.delays, dtype=np.int64)
        if data.size == 0:
            continue
        if int(delays.max(initial=0)) + 1 > MAX_SLOTS:
            raise TargetError(f"{where}: delay {int(delays.max())} steps; the Cortex-M engine holds delays up to "
                              f"{MAX_SLOTS - 1}. Fix: shorten the delays or use a larger dt")
        kind, stored, extra = _weight_kind(data, where)
        shift = proj.weight_exp + extra
        if not -31 <= shift <= 31:
            raise TargetError(f"{where}: weight exponent {proj.weight_exp} is outside the engine's +-31")
        pre, post = index[proj.pre], index[proj.post]
        parts = [np.ones(data.size, dtype=bool)]
        if shift < 0 and np.unique(delays).size > 1:
            # floor(a) + floor(b) != floor(a + b): one ring per delay keeps one step's sum per slot
            parts = [delays == d for d in np.unique(delays)]
        for sel in parts:
            g = _Group(k, pre, post, rows[sel], cols[sel], stored[sel], delays[sel], kind, shift)
            slots = int(g.delays.max()) + 1
            if shift >= 0 and (post, shift) in shared:
                ring = rings[shared[(post, shift)]]
                ring.slots = max(ring.slots, slots)
                g.ring = shared[(post, shift)]
            else:
                rings.append(_Ring(post, shift, slots))
                g.ring = len(rings) - 1
                if shift >= 0:
                    shared[(post, shift)] = g.ring
            groups.append(g)
    return groups, rings


@dataclass
class _Encoded:
    flags: int
    delay: int
    n_syn: int
    rowptr: np.ndarray | None
    idx: np.ndarray | None
    w: np.ndarray
    segptr: np.ndarray | None
    segs: np.ndarray | None  # uint8 [n, 4] segment records; G_DELAYS: uint8 delay per synapse

    @property
    def nbytes(self) -> int:
        n = self.w.nbytes
        for part in (self.rowptr, self.idx, self.segptr, self.segs):
            if part is not None:
                n += _align4(part.nbytes)
        return _align4(n)


# Choosing an encoding: Thumb-2 instructions per dense cell, per indexed synapse, per row and per segment
# (measured with bench/cortexm.py), and how much larger than the smallest a faster encoding may be.
COST_DENSE, COST_SYNAPSE, COST_DELAYED, COST_ROW, COST_SEGMENT = 4.4, 5.6, 7.6, 16.0, 10.0
SIZE_SLACK = 1.3


def _wdtype(kind: int) -> type:
    return {W_U8: np.uint8, W_N8: np.uint8, W_S8: np.int8, W_S16: np.int16}[kind]


def _encode(g: _Group, n_pre: int, n_post: int, size_slack: float = SIZE_SLACK) -> _Encoded:
    """The smallest encoding of one group (ties go to the faster: dense, simple, segmented)."""
    wdt = _wdtype(g.wkind)
    ws = np.dtype(wdt).itemsize
    single_delay = np.unique(g.delays).size == 1
    # rows by pre neuron; inside a row by (delay, post): segments are contiguous runs
    order = np.lexsort((g.rows, g.delays, g.cols))
    rows, cols, w, dl = g.rows[order], g.cols[order], g.weights[order], g.delays[order]
    counts = np.bincount(cols, minlength=n_pre)
    rowptr = np.concatenate(([0], np.cumsum(counts))).astype(np.uint32)
    options: list[tuple[int, float, _Encoded]] = []  # (bytes, estimated instructions per pass of all rows, enc)
    if single_delay:
        if n_pre * n_post * ws <= 4 * (n_pre + 1) + rows.size * (1 + ws):  # else dense cannot win
            dense = np.zeros((n_pre, n_post), dtype=np.int64)
            np.add.at(dense, (cols, rows), w)  # repeated (pre, post) pairs sum, as the reference does
            info = np.iinfo(wdt)
            if dense.min() >= info.min and dense.max() <= info.max:
                options.append((n_pre * n_post * ws, COST_DENSE * n_pre * n_post + COST_ROW * n_pre,
                                _Encoded(G_DENSE, int(dl[0]), n_pre * n_post, None, None, dense.astype(wdt).ravel(),
                                         None, None)))
        if n_post <= 256:
            enc = _Encoded(0, int(dl[0]), rows.size, rowptr, rows.astype(np.uint8), w.astype(wdt), None, None)
            options.append((enc.nbytes, COST_SYNAPSE * rows.size + COST_ROW * n_pre, enc))
        if n_post <= 65536:
            enc = _Encoded(G_IDX16, int(dl[0]), rows.size, rowptr, rows.astype(np.uint16), w.astype(wdt), None,
                           None)
            options.append((enc.nbytes, COST_SYNAPSE * rows.size + COST_ROW * n_pre, enc))
    for idx16 in (False, True):
        if idx16 and n_post > 65536:
            continue
        block = np.zeros_like(rows) if idx16 else rows >> 8
        # a new segment wherever the row, delay or block changes, or a run reaches MAX_SEG_COUNT
        key_change = np.ones(rows.size, dtype=bool)
        key_change[1:] = (cols[1:] != cols[:-1]) | (dl[1:] != dl[:-1]) | (block[1:] != block[:-1])
        run_id = np.cumsum(key_change) - 1
        pos_in_run = np.arange(rows.size) - np.flatnonzero(key_change)[run_id]
        start = key_change | (pos_in_run % MAX_SEG_COUNT == 0)
        starts = np.flatnonzero(start)
        seg_counts = np.diff(np.concatenate((starts, [rows.size])))
        segs = np.zeros((starts.size, 4), dtype=np.uint8)
        segs[:, 0] = dl[starts]
        segs[:, 1] = block[starts]
        segs[:, 2] = seg_counts & 0xFF
        segs[:, 3] = seg_counts >> 8
        seg_rows = np.bincount(cols[starts], minlength=n_pre)
        segptr = np.concatenate(([0], np.cumsum(seg_rows))).astype(np.uint32)
        idx = (rows & 0xFF).astype(np.uint8) if not idx16 else rows.astype(np.uint16)
        enc = _Encoded(G_SEGMENTED | (G_IDX16 if idx16 else 0), 0, rows.size, rowptr, idx, w.astype(wdt), segptr,
                       segs)
        options.append((enc.nbytes, COST_SYNAPSE * rows.size + COST_ROW * n_pre + COST_SEGMENT * starts.size, enc))
    if not single_delay and g.wkind in (W_U8, W_S8):
        idx = rows.astype(np.uint8) if n_post <= 256 else rows.astype(np.uint16)
        enc = _Encoded(G_DELAYS | (G_IDX16 if n_post > 256 else 0), 0, rows.size, rowptr, idx, w.astype(wdt), None,
                       dl.astype(np.uint8))
        options.append((enc.nbytes, COST_DELAYED * rows.size + COST_ROW * n_pre, enc))
    # the fastest encoding among those at most SIZE_SLACK x the smallest
    smallest = min(o[0] for o in options)
    return min((o for o in options if o[0] <= size_slack * smallest), key=lambda o: (o[1], o[0]))[2]


def arena_bytes(n_state: int, ring_words: int, n_rings: int, max_lif: int, n_pops: int, n_neurons: int) -> int:
    """The engine's arena (snn.c arena_layout): u, v, rings, ring bases, a_in, spike lists."""
    return (4 * 2 * n_state + 4 * ring_words + 4 * n_rings + 4 * max_lif + 4 * 2 * n_pops
            + _align4(2 * n_neurons) + _align4(n_neurons))


def check_widths(fmt: NumericFormat, where: str) -> None:
    """TargetError for a format whose widths the engine cannot honour (snn_validate would say SNN_E_WIDTHS)."""
    for key, (lo, hi, why) in WIDTH_BOUNDS.items():
        value = getattr(fmt, key)
        if not lo <= value <= hi:
            raise TargetError(f"{where}: 'format.{key}' = {value} is outside {lo}..{hi}, the widths the Cortex-M "
                              f"engine computes exactly ({why}). Fix: 'format.{key}' in {lo}..{hi}")
    if fmt.threshold_bits + fmt.threshold_shift > 31:
        raise TargetError(f"{where}: 'format.threshold_bits' + 'format.threshold_shift' = {fmt.threshold_bits} + "
                          f"{fmt.threshold_shift} > 31: the largest vth << threshold_shift does not fit the engine's "
                          "int32 threshold. Fix: lower 'format.threshold_bits' or 'format.threshold_shift'")


def pack(inet: IntNetwork, board_id: int = BOARD_ANY, size_slack: float = SIZE_SLACK) -> MemoryImage:
    """The model image of `inet`. size_slack = 1.0 gives the smallest image; the default trades up to
    30% of synapse bytes for fewer instructions per synaptic event."""
    names = list(inet.populations)
    index = {n: k for k, n in enumerate(names)}
    pops = [inet.populations[n] for n in names]
    for p in pops:
        if p.size > MAX_POP:
            raise TargetError(f"population {p.name!r} has {p.size} neurons; the Cortex-M engine indexes at most "
                              f"{MAX_POP} per population. Fix: split the layer")
        if p.size == 0:
            raise TargetError(f"population {p.name!r} is empty")
    fmt = inet.format
    check_widths(fmt, f"target {inet.target}")
    widths = bytes([fmt.state_bits, fmt.decay_bits, fmt.activation_shift, fmt.threshold_shift])
    for p in pops:
        if p.kind == "input":
            continue
        if not (0 <= p.du <= fmt.decay_max and 0 <= p.dv <= fmt.decay_max):
            raise TargetError(f"population {p.name!r}: du = {p.du}, dv = {p.dv}; 'format.decay_bits' = "
                              f"{fmt.decay_bits} takes 0..{fmt.decay_max}. Fix: quantize for this target")
        if not 0 <= int(p.vth) << fmt.threshold_shift <= INT32_MAX:
            raise TargetError(f"population {p.name!r}: vth {int(p.vth)} << 'format.threshold_shift' "
                              f"{fmt.threshold_shift} is outside the engine's int32 threshold. Fix: quantize for "
                              "this target")
    groups, rings = _groups(inet, index)
    # tables are contiguous per population: groups by pre, rings by post (stable: projection order)
    g_order = sorted(range(len(groups)), key=lambda k: groups[k].pre)
    r_order = sorted(range(len(rings)), key=lambda k: rings[k].post)
    r_new = {old: new for new, old in enumerate(r_order)}
    groups = [groups[k] for k in g_order]
    rings = [rings[k] for k in r_order]
    for g in groups:
        g.ring = r_new[g.ring]

    n_state = sum(p.size for p in pops if p.kind != "input")
    max_lif = max((p.size for p in pops if p.kind != "input"), default=0)
    n_neurons = sum(p.size for p in pops)
    ring_words = sum(r.slots * pops[r.post].size for r in rings)
    arena = arena_bytes(n_state, ring_words, len(rings), max_lif, len(pops), n_neurons)

    pops_off = HEADER_SIZE
    rings_off = pops_off + POP_SIZE * len(pops)
    groups_off = rings_off + RING_SIZE * len(rings)
    blob = bytearray()
    base = groups_off + GROUP_SIZE * len(groups)

    def put(arr: np.ndarray | None) -> int:
        if arr is None:
            return 0
        off = base + len(blob)
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        blob.extend(raw)
        blob.extend(b"\0" * (_align4(len(blob)) - len(blob)))
        return off

    flash_by: dict[str, int] = {n: POP_SIZE for n in names}
    ram_by: dict[str, int] = {}
    pop_records = []
    state_base = 0
    outputs = {p for ps in inet.outputs.values() for p in ps}
    for k, p in enumerate(pops):
        flags = POPF_OUTPUT if p.name in outputs else 0
        bias_off = 0
        ram_by[p.name] = 3 * p.size  # spike index (uint16) + count (uint8)
        if p.kind != "input":
            bias = p.bias_effective().astype(np.int64)
            if bias.size and np.any(bias != 0):
                if np.abs(bias).max() > (1 << 28):
                    raise TargetError(f"population {p.name!r}: bias {int(np.abs(bias).max())} exceeds 2^28")
                flags |= POPF_BIAS
                bias_off = put(bias.astype(np.int32))
                flash_by[p.name] += 4 * p.size
            ram_by[p.name] += 8 * p.size
        my_groups = [j for j, g in enumerate(groups) if g.pre == k]
        my_rings = [j for j, r in enumerate(rings) if r.post == k]
        pop_records.append((k, p, flags, bias_off, state_base if p.kind != "input" else 0, my_rings, my_groups))
        if p.kind != "input":
            state_base += p.size

    group_records = []
    synapse_bytes = 0
    encodings = []
    for g in groups:
        n_pre, n_post = pops[g.pre].size, pops[g.post].size
        enc = _encode(g, n_pre, n_post, size_slack)
        row_off = put(enc.rowptr)
        idx_off = put(enc.idx)
        w_off = put(enc.w)
        segptr_off = put(enc.segptr)
        seg_off = put(enc.segs)
        synapse_bytes += enc.nbytes
        flash_by[names[g.post]] += enc.nbytes + GROUP_SIZE
        mode = ("dense" if enc.flags & G_DENSE else "segmented" if enc.flags & G_SEGMENTED else
                "delays" if enc.flags & G_DELAYS else "simple")
        encodings.append({"projection": g.projection, "pre": names[g.pre], "post": names[g.post], "mode": mode,
                          "index_bits": 16 if enc.flags & G_IDX16 else (0 if mode == "dense" else 8),
                          "weight": ["u8", "n8", "s8", "s16"][g.wkind], "shift": g.shift,
                          "synapses": int(g.rows.size), "bytes": enc.nbytes})
        group_records.append(struct.pack("<HHBBBBIIIIII", g.pre, g.ring, g.wkind, enc.flags, enc.delay, 0,
                                         enc.n_syn, row_off, idx_off, w_off, segptr_off, seg_off))
    for r in rings:
        ram_by[names[r.post]] += 4 * r.slots * pops[r.post].size

    out = bytearray()
    header_placeholder = bytes(HEADER_SIZE)
    out += header_placeholder
    for _, p, flags, bias_off, sbase, my_rings, my_groups in pop_records:
        first_ring = my_rings[0] if my_rings else 0
        first_group = my_groups[0] if my_groups else 0
        out += struct.pack("<BBHIHHiIIHHHH", POP_INPUT if p.kind == "input" else POP_LIF, flags, 0, p.size,
                           p.du if p.kind != "input" else 0, p.dv if p.kind != "input" else 0,
                           (int(p.vth) << fmt.threshold_shift) if p.kind != "input" else 0, bias_off, sbase,
                           first_ring, len(my_rings), first_group, len(my_groups))
    for r in rings:
        out += struct.pack("<HBbI", r.post, r.slots, r.shift, 0)
    for rec in group_records:
        out += rec
    assert len(out) == base
    out += blob
    size = len(out)
    # the widths are part of the model: the same tables under another format are another model
    model_id = int.from_bytes(hashlib.sha256(widths + bytes(out[HEADER_SIZE:])).digest()[:4], "little")
    header = struct.pack("<IHHIIIHHHBBIIIIIIIIIBBBB", MAGIC, FORMAT_VERSION, HEADER_SIZE, size, 0, board_id,
                         len(pops), len(rings), len(groups), fmt.state_bits, 0,
                         n_state, arena, pops_off, rings_off, groups_off, max_lif, n_neurons, ring_words, model_id,
                         fmt.decay_bits, fmt.activation_shift, fmt.threshold_shift, 0)
    assert len(header) == HEADER_SIZE
    out[:HEADER_SIZE] = header
    crc = zlib.crc32(bytes(out[CRC_START:])) & 0xFFFFFFFF
    out[12:16] = struct.pack("<I", crc)
    return MemoryImage(bytes(out), arena, int(inet.n_synapses), synapse_bytes, flash_by, ram_by, encodings, crc,
                       model_id)


@dataclass
class ImageInfo:
    """What a host needs to drive an image: population order and sizes (read back from the header)."""

    size: int
    crc32: int
    board_id: int
    model_id: int
    arena_bytes: int
    pop_kinds: list[int]
    pop_sizes: list[int]
    pop_flags: list[int]
    state_bits: int
    decay_bits: int
    activation_shift: int
    threshold_shift: int


def read_info(data: bytes) -> ImageInfo:
    from ...compiler.errors import ArtifactError

    if len(data) < 8 or struct.unpack_from("<I", data, 0)[0] != MAGIC:
        raise ArtifactError("not a neurocc model image (no \"NCCM\" magic). Fix: compile again")
    version, hsize = struct.unpack_from("<HH", data, 4)
    if version != FORMAT_VERSION or hsize != HEADER_SIZE:
        raise ArtifactError(f"model image of format version {version} (header {hsize} bytes); this neurocc reads "
                            f"version {FORMAT_VERSION} ({HEADER_SIZE}-byte header, with the format's widths). "
                            "Fix: compile again")
    if len(data) < HEADER_SIZE:
        raise ArtifactError("model image is shorter than its header")
    size, crc, board = struct.unpack_from("<III", data, 8)
    if size != len(data) or zlib.crc32(data[CRC_START:]) & 0xFFFFFFFF != crc:
        raise ArtifactError("model image is truncated or corrupt (size or CRC32 mismatch). Fix: compile again")
    n_pops = struct.unpack_from("<H", data, 20)[0]
    arena, pops_off = struct.unpack_from("<II", data, 32)
    model_id = struct.unpack_from("<I", data, 60)[0]
    state_bits = data[26]
    decay_bits, act_shift, th_shift = data[64], data[65], data[66]
    kinds, sizes, flags = [], [], []
    for k in range(n_pops):
        kind, fl, _, n = struct.unpack_from("<BBHI", data, pops_off + POP_SIZE * k)
        kinds.append(kind)
        sizes.append(n)
        flags.append(fl)
    return ImageInfo(size, crc, board, model_id, arena, kinds, sizes, flags, state_bits, decay_bits, act_shift,
                     th_shift)
