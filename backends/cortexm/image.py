"""Pack an IntNetwork into the firmware's model image (firmware/engine/snn_image.h, format version 3).

Layout: a 76-byte header, the population, ring and group tables, then data blobs (biases, row
pointers, post indices, weights, delay segments, conv records, tap tables and kernels, the update
order), every one 4-byte aligned, little-endian. The header carries the integer model's widths (the
target's NumericFormat: decay_bits, state_bits, activation_shift, threshold_shift); the engine reads
them there and refuses widths its int32/int64 arithmetic cannot compute exactly, and `check_widths`
refuses the same ones here, first.

Synapses are stored per *group*: one projection, or one (projection, delay) when that is needed for
exactness. A conv projection is one group holding its geometry and its kernel once (conv.py); any other
is rows per pre neuron (rows.py). Mixed-sign Loihi mantissas are even, in [-2^bits, 2^bits - 2]: we
store m/2 and shift by one more. That is exact: (sum m) << e == (sum m/2) << (e+1), and
floor((2X) / 2^k) == floor(X / 2^(k-1)).

Where arrivals are summed. Synaptic sums land unshifted in rings and are shifted when read. A left shift
is linear mod 2^32, so every projection with the same non-negative shift into a population can share a
ring; a floor right shift is not, so a projection with a negative shift gets one ring per delay.
The LIF populations update in the image's order (the reverse of a topological order, cycles broken):
a delay-0 group whose pre population is an input, the population itself, or one later in the order is
*pulled*: its spikes of the previous step are still there when the population updates, so they are
scattered into one shared scratch right then, and the population needs no ring of its own. Every other
group is *pushed* into a ring of slots x n words. A feedforward network thus costs 4 bytes of RAM per
neuron (v; u only where the current keeps state) plus one scratch of its largest population.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ...compiler.errors import ArtifactError, TargetError
from ...compiler.ir import IntNetwork, MemoryImage
from ...compiler.targets.target import NumericFormat
from .conv import LAYOUT_HWC, ConvSection, conv_section
from .rows import G_DELAYS, G_DENSE, G_IDX16, G_SEGMENTED, SIZE_SLACK, W_N8, W_S8, W_S16, W_U8, align4, encode

MAGIC = 0x4D43434E  # "NCCM"
FORMAT_VERSION = 3
HEADER_SIZE = 76
POP_SIZE = 32
RING_SIZE = 8
GROUP_SIZE = 32
SEG_SIZE = 4
CRC_START = 16
MAX_POP = 65535  # spike lists hold uint16 indices
MAX_SLOTS = 255  # ring length is a uint8

G_CONV = 32  # snn_image.h enum snn_group_flags (the row flags are in rows.py)
POP_INPUT, POP_LIF = 0, 1
POPF_OUTPUT, POPF_BIAS, POPF_U, POPF_HWC = 1, 2, 4, 8

BOARD_ANY = 0

# Widths the engine computes exactly (snn_image.h SNN_IMG_*; the reasons are there): key -> (lo, hi, why)
WIDTH_BOUNDS = {
    "decay_bits": (1, 16, "the engine stores du and dv as uint16 and forms x * (2^decay_bits - D) in 64 bits"),
    "state_bits": (2, 29, "the engine sums v in int32 (|decay(v) + bias| < 2^29)"),
    "activation_shift": (0, 31, "the engine shifts a_in as a uint32"),
    "threshold_shift": (0, 30, "the engine stores vth << threshold_shift as a non-negative int32"),
}
INT32_MAX = (1 << 31) - 1

__all__ = ["FORMAT_VERSION", "HEADER_SIZE", "ImageInfo", "MemoryImage", "arena_bytes", "check_widths", "pack",
           "read_info", "update_order"]


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
    conv: ConvSection | None = None
    synapses: int = 0  # a conv's unrolled synapses (rows.size otherwise)
    pulled: bool = False
    ring: int = -1


@dataclass
class _Ring:
    post: int
    shift: int
    slots: int  # 0: pulled (the scratch)


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


def _raw_groups(inet: IntNetwork, index: dict[str, int]) -> list[_Group]:
    groups: list[_Group] = []
    pops = list(inet.populations.values())
    for k, proj in enumerate(inet.projections):
        where = f"projection {proj.pre!r} -> {proj.post!r}"
        pre, post = index[proj.pre], index[proj.post]
        delays = np.asarray(proj.delays, dtype=np.int64)
        if proj.conv is not None:
            if np.any(delays != 0):
                raise TargetError(f"{where}: a conv projection with synaptic delays; the Cortex-M engine's conv "
                                  "kernel has none. Fix: put the delay on a separate projection")
            sec = conv_section(proj.conv, pops[pre].size, pops[post].size, where)
            shift = proj.weight_exp + sec.extra_shift
            if not -31 <= shift <= 31:
                raise TargetError(f"{where}: weight exponent {proj.weight_exp} is outside the engine's +-31")
            empty = np.zeros(0, np.int64)
            groups.append(_Group(k, pre, post, empty, empty, empty, empty, sec.kind, shift, sec,
                                 int(proj.weights.nnz)))
            continue
        w = proj.weights.tocoo()
        # tocoo of a csr keeps csr order, so delays (aligned with csr data) stay aligned
        rows, cols = w.row.astype(np.int64), w.col.astype(np.int64)
        data = np.asarray(proj.weights.data, dtype=np.int64)
        if data.size == 0:
            continue
        if int(delays.max(initial=0)) + 1 > MAX_SLOTS:
            raise TargetError(f"{where}: delay {int(delays.max())} steps; the Cortex-M engine holds delays up to "
                              f"{MAX_SLOTS - 1}. Fix: shorten the delays or use a larger dt")
        kind, stored, extra = _weight_kind(data, where)
        shift = proj.weight_exp + extra
        if not -31 <= shift <= 31:
            raise TargetError(f"{where}: weight exponent {proj.weight_exp} is outside the engine's +-31")
        parts = [np.ones(data.size, dtype=bool)]
        if shift < 0 and np.unique(delays).size > 1:
            # floor(a) + floor(b) != floor(a + b): one ring per delay keeps one step's sum per slot
            parts = [delays == d for d in np.unique(delays)]
        for sel in parts:
            groups.append(_Group(k, pre, post, rows[sel], cols[sel], stored[sel], delays[sel], kind, shift))
    return groups


def update_order(inet: IntNetwork) -> list[str]:
    """The LIF populations in the order the engine updates them: the reverse of a topological order of
    the projections between them (a cycle is broken at its population earliest in the network), so
    that every delay-0 projection outside a cycle can be pulled."""
    lifs = [n for n, p in inet.populations.items() if not p.is_input]
    succ: dict[str, set[str]] = {n: set() for n in lifs}
    indeg = dict.fromkeys(lifs, 0)
    for proj in inet.projections:
        if proj.pre in succ and proj.post in succ and proj.pre != proj.post and proj.post not in succ[proj.pre]:
            succ[proj.pre].add(proj.post)
            indeg[proj.post] += 1
    topo: list[str] = []
    left = list(lifs)
    while left:
        ready = [n for n in left if indeg[n] == 0] or left[:1]  # a cycle: take the first remaining
        for n in ready[:1]:
            topo.append(n)
            left.remove(n)
            for m in succ[n]:
                indeg[m] -= 1
    return topo[::-1]


def _assign_rings(groups: list[_Group], pops: list, order: list[int]) -> list[_Ring]:
    """Mark pulled groups and give every group a ring (see the module docstring)."""
    pos = {p: k for k, p in enumerate(order)}
    rings: list[_Ring] = []

    def pullable(g: _Group) -> bool:
        """Delay 0, and the pre population's spikes of the last step are still there when g.post updates."""
        if g.conv is None and np.any(g.delays != 0):
            return False
        return pops[g.pre].is_input or g.pre == g.post or pos[g.pre] > pos[g.post]

    for post in sorted({g.post for g in groups}):
        into = [g for g in groups if g.post == post]
        # one pulled class per population: one shift; a negative (floor) shift takes one group alone
        classes: list[list[_Group]] = []
        for g in into:
            if not pullable(g):
                continue
            same = [c for c in classes if c[0].shift == g.shift and g.shift >= 0]
            if same:
                same[0].append(g)
            else:
                classes.append([g])
        if classes:
            best = max(classes, key=len)
            rings.append(_Ring(post, best[0].shift, 0))
            for g in best:
                g.pulled, g.ring = True, len(rings) - 1
        shared: dict[int, int] = {}
        for g in into:
            if g.pulled:
                continue
            slots = 1 if g.conv is not None else int(g.delays.max()) + 1
            if g.shift >= 0 and g.shift in shared:
                ring = rings[shared[g.shift]]
                ring.slots = max(ring.slots, slots)
                g.ring = shared[g.shift]
                continue
            rings.append(_Ring(post, g.shift, slots))
            g.ring = len(rings) - 1
            if g.shift >= 0:
                shared[g.shift] = g.ring
    return rings


def _channel_last(groups: list[_Group], rings: list[_Ring]) -> set[int]:
    """Populations whose one ring is pulled from convs of one channel count: their scratch is summed
    channel-last (a conv tap is then a dense run). Sets those convs' layout."""
    out = set()
    for post in {r.post for r in rings}:
        mine = [r for r in rings if r.post == post]
        into = [g for g in groups if g.post == post]
        if len(mine) == 1 and mine[0].slots == 0 and all(g.conv is not None for g in into) and len(
                {g.conv.conv.out_shape[0] for g in into}) == 1:
            out.add(post)
            for g in into:
                g.conv.layout = LAYOUT_HWC
    return out


def arena_bytes(n_state: int, n_u: int, ring_words: int, n_rings: int, scratch_words: int, n_pops: int,
                bit_words: int, in_words: int, in_bytes: int) -> int:
    """The engine's arena (snn.c arena_layout): v, u, pushed rings, ring bases, scratch, spike counts and two
    offsets per population, one word, LIF spike bitmaps, then two of each: input bitmaps, input counts."""
    return (4 * n_state + 4 * n_u + 4 * ring_words + 4 * n_rings + 4 * scratch_words + 12 * n_pops + 4
            + 4 * bit_words + 2 * 4 * in_words + 2 * in_bytes)


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


def _check_populations(inet: IntNetwork, pops: list) -> None:
    fmt = inet.format
    for p in pops:
        if p.size > MAX_POP:
            raise TargetError(f"population {p.name!r} has {p.size} neurons; the Cortex-M engine indexes at most "
                              f"{MAX_POP} per population. Fix: split the layer")
        if p.size == 0:
            raise TargetError(f"population {p.name!r} is empty")
        if p.is_input:
            continue
        if not (0 <= p.du <= fmt.decay_max and 0 <= p.dv <= fmt.decay_max):
            raise TargetError(f"population {p.name!r}: du = {p.du}, dv = {p.dv}; 'format.decay_bits' = "
                              f"{fmt.decay_bits} takes 0..{fmt.decay_max}. Fix: quantize for this target")
        if not 0 <= int(p.vth) << fmt.threshold_shift <= INT32_MAX:
            raise TargetError(f"population {p.name!r}: vth {int(p.vth)} << 'format.threshold_shift' "
                              f"{fmt.threshold_shift} is outside the engine's int32 threshold. Fix: quantize for "
                              "this target")


class _Blob:
    """The data part of the image: every piece 4-byte aligned, offsets from the image start."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.data = bytearray()

    def put(self, raw: bytes | np.ndarray | None) -> int:
        if raw is None:
            return 0
        if isinstance(raw, np.ndarray):
            raw = np.ascontiguousarray(raw).astype(raw.dtype.newbyteorder("<"), copy=False).tobytes()
        off = self.base + len(self.data)
        self.data.extend(raw)
        self.data.extend(b"\0" * (align4(len(self.data)) - len(self.data)))
        return off


def pack(inet: IntNetwork, board_id: int = BOARD_ANY, size_slack: float = SIZE_SLACK) -> MemoryImage:
    """The model image of `inet`. size_slack = 1.0 gives the smallest image; the default trades up to
    30% of synapse bytes for fewer instructions per synaptic event."""
    names = list(inet.populations)
    index = {n: k for k, n in enumerate(names)}
    pops = [inet.populations[n] for n in names]
    fmt = inet.format
    check_widths(fmt, f"target {inet.target}")
    _check_populations(inet, pops)
    widths = bytes([fmt.state_bits, fmt.decay_bits, fmt.activation_shift, fmt.threshold_shift])
    order = [index[n] for n in update_order(inet)]
    groups = _raw_groups(inet, index)
    rings = _assign_rings(groups, pops, order)
    hwc = _channel_last(groups, rings)
    # tables are contiguous: pushed groups by pre, then pulled groups by post; rings by post, a pulled one
    # first (stable: projection order)
    groups.sort(key=lambda g: (g.pulled, g.post if g.pulled else g.pre))
    r_order = sorted(range(len(rings)), key=lambda k: (rings[k].post, rings[k].slots != 0))
    r_new = {old: new for new, old in enumerate(r_order)}
    rings = [rings[k] for k in r_order]
    for g in groups:
        g.ring = r_new[g.ring]

    lif = [k for k, p in enumerate(pops) if not p.is_input]
    has_u = {k: pops[k].du != fmt.decay_max for k in lif}
    n_state = sum(pops[k].size for k in lif)
    n_u = sum(pops[k].size for k in lif if has_u[k])
    ring_words = sum(r.slots * pops[r.post].size for r in rings)
    bit_words = sum((pops[k].size + 31) // 32 for k in lif)
    in_bytes = sum(align4(p.size) for p in pops if p.is_input)
    in_words = sum((p.size + 31) // 32 for p in pops if p.is_input)
    pulled_max = max((pops[r.post].size for r in rings if r.slots == 0), default=0)
    scratch = max(pulled_max, (max(p.size for p in pops) + 1) // 2)
    arena = arena_bytes(n_state, n_u, ring_words, len(rings), scratch, len(pops), bit_words, in_words, in_bytes)

    pops_off = HEADER_SIZE
    rings_off = pops_off + POP_SIZE * len(pops)
    groups_off = rings_off + RING_SIZE * len(rings)
    base = groups_off + GROUP_SIZE * len(groups)
    blob = _Blob(base)
    order_off = blob.put(np.array(order, np.uint16))

    flash_by: dict[str, int] = {n: POP_SIZE for n in names}
    ram_by: dict[str, int] = {}
    kernel_by: dict[str, int] = {}
    pop_records = []
    v_base = u_base = 0
    outputs = {p for ps in inet.outputs.values() for p in ps}
    for k, p in enumerate(pops):
        flags = POPF_OUTPUT if p.name in outputs else 0
        bias_off = 0
        if p.is_input:
            ram_by[p.name] = 2 * (align4(p.size) + 4 * ((p.size + 31) // 32))  # this step's and the last one's
            pop_records.append(struct.pack("<BBHHHiIIIHHHH", POP_INPUT, flags, p.size, 0, 0, 0, 0, 0, 0, 0, 0,
                                           *_group_range(groups, k)))
            continue
        bias = p.bias_effective().astype(np.int64)
        if bias.size and np.any(bias != 0):
            if np.abs(bias).max() > (1 << 28):
                raise TargetError(f"population {p.name!r}: bias {int(np.abs(bias).max())} exceeds 2^28")
            flags |= POPF_BIAS
            bias_off = blob.put(bias.astype(np.int32))
            flash_by[p.name] += 4 * p.size
        if has_u[k]:
            flags |= POPF_U
        if k in hwc:
            flags |= POPF_HWC
        ram_by[p.name] = 4 * p.size * (2 if has_u[k] else 1) + 4 * ((p.size + 31) // 32)
        my_rings = [j for j, r in enumerate(rings) if r.post == k]
        pop_records.append(struct.pack("<BBHHHiIIIHHHH", POP_LIF, flags, p.size, p.du, p.dv,
                                       int(p.vth) << fmt.threshold_shift, bias_off, v_base,
                                       u_base if has_u[k] else 0, my_rings[0] if my_rings else 0, len(my_rings),
                                       *_group_range(groups, k)))
        v_base += p.size
        u_base += p.size if has_u[k] else 0
    # the scratch is shared: counted at the population that sizes it
    pulled = [r.post for r in rings if r.slots == 0 and pops[r.post].size == scratch]
    ram_by[names[pulled[0] if pulled else max(range(len(pops)), key=lambda k: pops[k].size)]] += 4 * scratch

    group_records, encodings, synapse_bytes = _write_groups(groups, pops, names, blob, size_slack, flash_by,
                                                            kernel_by)
    for r in rings:
        ram_by[names[r.post]] += 4 * r.slots * pops[r.post].size
    ring_records = []
    for j, r in enumerate(rings):
        into = [gi for gi, g in enumerate(groups) if g.ring == j] if r.slots == 0 else []
        ring_records.append(struct.pack("<HBbHH", r.post, r.slots, r.shift, into[0] if into else 0, len(into)))

    out = bytearray(HEADER_SIZE)
    for rec in (*pop_records, *ring_records, *group_records):
        out += rec
    assert len(out) == base
    out += blob.data
    size = len(out)
    # the widths are part of the model: the same tables under another format are another model
    model_id = int.from_bytes(hashlib.sha256(widths + bytes(out[HEADER_SIZE:])).digest()[:4], "little")
    header = struct.pack("<IHHIIIHHHBBIIIIIIIIIBBBBII", MAGIC, FORMAT_VERSION, HEADER_SIZE, size, 0, board_id,
                         len(pops), len(rings), len(groups), fmt.state_bits, 0,
                         n_state, arena, pops_off, rings_off, groups_off, scratch, sum(p.size for p in pops),
                         ring_words, model_id, fmt.decay_bits, fmt.activation_shift, fmt.threshold_shift, 0,
                         n_u, order_off)
    assert len(header) == HEADER_SIZE
    out[:HEADER_SIZE] = header
    crc = zlib.crc32(bytes(out[CRC_START:])) & 0xFFFFFFFF
    out[12:16] = struct.pack("<I", crc)
    return MemoryImage(data=bytes(out), arena_bytes=arena, synapses=int(inet.n_synapses), synapse_bytes=synapse_bytes,
                       flash_by_population=flash_by, ram_by_population=ram_by, kernel_bytes_by_population=kernel_by,
                       encodings=encodings, crc32=crc, model_id=model_id)


def _group_range(groups: list[_Group], pre: int) -> tuple[int, int]:
    """(first, count) of the pushed groups out of population `pre` (contiguous after sorting)."""
    mine = [j for j, g in enumerate(groups) if not g.pulled and g.pre == pre]
    return (mine[0] if mine else 0), len(mine)


def _write_groups(groups: list[_Group], pops: list, names: list[str], blob: _Blob, size_slack: float,
                  flash_by: dict[str, int], kernel_by: dict[str, int]) -> tuple[list[bytes], list[dict], int]:
    records, encodings = [], []
    synapse_bytes = 0
    for g in groups:
        n_pre, n_post = pops[g.pre].size, pops[g.post].size
        post = names[g.post]
        entry = {"projection": g.projection, "pre": names[g.pre], "post": post, "shift": g.shift,
                 "pulled": g.pulled}
        if g.conv is not None:
            sec = g.conv
            rows, cols = sec.tables()
            rows_off = blob.put(ConvSection.table_bytes(rows))
            cols_off = blob.put(ConvSection.table_bytes(cols))
            conv_off = blob.put(sec.record(rows_off, cols_off))
            w_off = blob.put(sec.kernel)
            nbytes = sec.nbytes
            records.append(struct.pack("<HHBBBBIIIIII", g.pre, g.ring, sec.kind, G_CONV, 0, 0, sec.kernel.size,
                                       conv_off, 0, w_off, 0, 0))
            kernel_by[post] = kernel_by.get(post, 0) + sec.kernel_bytes
            entry.update({"mode": "conv", "index_bits": 0, "weight": ["u8", "n8", "s8", "s16"][sec.kind],
                          "synapses": g.synapses, "kernel_weights": int(sec.kernel.size),
                          "kernel_bytes": sec.kernel_bytes, "bytes": nbytes})
        else:
            enc = encode(g, n_pre, n_post, size_slack)
            row_off, idx_off, w_off = blob.put(enc.rowptr), blob.put(enc.idx), blob.put(enc.w)
            segptr_off, seg_off = blob.put(enc.segptr), blob.put(enc.segs)
            nbytes = enc.nbytes
            mode = ("dense" if enc.flags & G_DENSE else "segmented" if enc.flags & G_SEGMENTED else
                    "delays" if enc.flags & G_DELAYS else "simple")
            records.append(struct.pack("<HHBBBBIIIIII", g.pre, g.ring, g.wkind, enc.flags, enc.delay, 0, enc.n_syn,
                                       row_off, idx_off, w_off, segptr_off, seg_off))
            entry.update({"mode": mode, "index_bits": 16 if enc.flags & G_IDX16 else (0 if mode == "dense" else 8),
                          "weight": ["u8", "n8", "s8", "s16"][g.wkind], "synapses": int(g.rows.size),
                          "bytes": nbytes})
        synapse_bytes += nbytes
        flash_by[post] += nbytes + GROUP_SIZE
        encodings.append(entry)
    return records, encodings, synapse_bytes


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
    """The header and population table of a model image; ArtifactError for anything but a whole image of
    this format version (an image of another version is never read as this one)."""
    if len(data) < 8 or struct.unpack_from("<I", data, 0)[0] != MAGIC:
        raise ArtifactError("not a neurocc model image (no \"NCCM\" magic). Fix: compile again")
    version, hsize = struct.unpack_from("<HH", data, 4)
    if version != FORMAT_VERSION or hsize != HEADER_SIZE:
        raise ArtifactError(f"model image of format version {version} (header {hsize} bytes); this neurocc reads "
                            f"version {FORMAT_VERSION} ({HEADER_SIZE}-byte header: conv kernels stored once, pulled "
                            "arrivals, the format's widths). Fix: compile again with this neurocc")
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
        kind, fl, n = struct.unpack_from("<BBH", data, pops_off + POP_SIZE * k)
        kinds.append(kind)
        sizes.append(n)
        flags.append(fl)
    return ImageInfo(size, crc, board, model_id, arena, kinds, sizes, flags, state_bits, decay_bits, act_shift,
                     th_shift)
