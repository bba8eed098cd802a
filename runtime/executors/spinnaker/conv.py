"""conv.bin, as the executor reads it: local-only convolution records (shape header, key blocks, weight
exponents, the kernel of this core's output channels) parsed and checked, and the event-driven scatter
that runs them. Written from docs/spinnaker-format.md "conv.bin", independently of backends/spinnaker/conv.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ....backends.spinnaker.format import MODE_NEGATIVE, MODE_POSITIVE, MODES, Reader
from ....compiler.ir.lif import shift_by_exponent
from .files import MASK32, Chip, Neurons, _where

HEAD_FIELDS = ("projection", "out_start", "out_stop", "c_in", "h_in", "w_in", "pkh", "pkw", "psy", "psx", "ppy",
               "ppx", "h_mid", "w_mid", "c_out", "h_out", "w_out", "kh", "kw", "sy", "sx", "py", "px", "dy", "dx",
               "groups", "c_lo", "c_hi", "weight_bits", "mode", "n_sources")
HEAD_FORMAT = "III" + "H" * 25 + "BBI"  # 68 bytes
# file offset of each field from the record's start, for messages
FIELD_OFFSET = dict(zip(HEAD_FIELDS, (0, 4, 8, *range(12, 62, 2), 62, 63, 64), strict=True))


@dataclass
class ConvRecord:
    label: str
    offset: int  # file offset of the record (for messages)
    projection: int
    out_start: int
    out_stop: int
    in_shape: tuple[int, int, int]
    pool: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None  # sum pool window, stride, padding
    mid_shape: tuple[int, int, int]  # what the conv reads: the input, or the pooled input
    out_shape: tuple[int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    c_lo: int
    c_hi: int
    src_key: np.ndarray
    src_mask: np.ndarray
    src_first: np.ndarray
    src_count: np.ndarray
    sources_offset: int
    exps: np.ndarray  # [c_hi - c_lo] weight exponent per stored output channel
    kernel: np.ndarray  # [c_hi - c_lo, C_in // groups, kh, kw] int64 mantissas


def _record(r: Reader, nr: Neurons) -> ConvRecord:
    at = r.file_offset
    f = dict(zip(HEAD_FIELDS, r.unpack(HEAD_FORMAT, "conv record header"), strict=True))

    def bad(field: str, what: str) -> Exception:
        return r.fail(f"conv record {f['projection']}: {field} {what}", at + FIELD_OFFSET[field])

    for name in ("c_in", "h_in", "w_in", "h_mid", "w_mid", "c_out", "h_out", "w_out", "kh", "kw", "sy", "sx", "dy",
                 "dx", "groups"):
        if f[name] == 0:
            raise bad(name, "is 0, expected >= 1")
    pooled = f["pkh"] != 0
    if pooled:
        for name in ("pkw", "psy", "psx"):
            if f[name] == 0:
                raise bad(name, "is 0 in a record with a pool (pool kh > 0), expected >= 1")
    elif any(f[n] for n in ("pkw", "psy", "psx", "ppy", "ppx")) or (f["h_mid"], f["w_mid"]) != (f["h_in"], f["w_in"]):
        raise bad("pkw", "pool fields set (or H_pooled x W_pooled != H_in x W_in) with pool kh 0, expected no pool")
    if f["c_in"] % f["groups"] or f["c_out"] % f["groups"]:
        raise bad("groups", f"{f['groups']} does not divide C_in {f['c_in']} and C_out {f['c_out']}")
    plane = f["h_out"] * f["w_out"]
    n_out = f["c_out"] * plane
    if n_out != nr.pop_size:
        raise bad("c_out", f"x H_out x W_out = {n_out} outputs, expected the post population's {nr.pop_size} "
                  f"({nr.label})")
    if (f["out_start"], f["out_stop"]) != (nr.start, nr.start + nr.n):
        raise bad("out_start", f"[{f['out_start']}, {f['out_stop']}), expected this core's neurons "
                  f"[{nr.start}, {nr.start + nr.n}) ({nr.label})")
    want = (f["out_start"] // plane, -(-f["out_stop"] // plane))
    if (f["c_lo"], f["c_hi"]) != want:
        raise bad("c_lo", f"stored channels [{f['c_lo']}, {f['c_hi']}), expected [{want[0]}, {want[1]}): the "
                  "channels of the core's outputs")
    wb, mode = f["weight_bits"], f["mode"]
    if not 1 <= wb <= 32:
        raise bad("weight_bits", f"{wb}, expected 1..32")
    if mode not in MODES:
        raise bad("mode", f"{mode}, expected one of {list(MODES)}")
    n_src = f["n_sources"]
    sources_offset = r.file_offset
    src = r.array("u4", 4 * n_src, "conv sources").reshape(-1, 4).astype(np.int64) if n_src else \
        np.zeros((0, 4), np.int64)
    key, mask, first, count = src.T
    n_in = f["c_in"] * f["h_in"] * f["w_in"]
    for i in range(n_src):
        where = sources_offset + 16 * i
        if key[i] & ~mask[i] & MASK32 or count[i] == 0 or count[i] > (~mask[i] & MASK32) + 1:
            raise r.fail(f"conv record {f['projection']}: source {i} key {int(key[i]):#x}/mask {int(mask[i]):#x} "
                         f"for {int(count[i])} neurons, expected key & ~mask == 0 and 1..{(~int(mask[i]) & MASK32) + 1}"
                         " neurons", where)
        if first[i] + count[i] > n_in:
            raise r.fail(f"conv record {f['projection']}: source {i} covers input neurons [{int(first[i])}, "
                         f"{int(first[i] + count[i])}), expected within the {n_in} inputs", where + 8)
        overlap = np.flatnonzero(((key[:i] ^ key[i]) & mask[:i] & mask[i]) == 0)
        if overlap.size:
            raise r.fail(f"conv record {f['projection']}: source {i} key block {int(key[i]):#x}/{int(mask[i]):#x} "
                         f"overlaps source {int(overlap[0])}'s, expected disjoint key blocks", where)
    n_ch = f["c_hi"] - f["c_lo"]
    exps = r.array("i1", n_ch, "weight exponents").astype(np.int64)
    r.align4("weight exponents")
    shape = (n_ch, f["c_in"] // f["groups"], f["kh"], f["kw"])
    kernel_offset = r.file_offset
    field = r.array("u2" if wb <= 16 else "u4", int(np.prod(shape)), "kernel").astype(np.int64)
    r.align4("kernel")
    over = np.flatnonzero(field >> wb)
    if over.size:
        raise r.fail(f"conv record {f['projection']}: kernel field {int(over[0])} is {int(field[over[0]])}, "
                     f"expected < 2^{wb} (weight bits)", kernel_offset + (2 if wb <= 16 else 4) * int(over[0]))
    if mode == MODE_POSITIVE:
        m = field
    elif mode == MODE_NEGATIVE:
        m = -field
    else:  # two's complement of W bits, half the even mantissa
        m = 2 * (field - ((field >> (wb - 1)) << wb))
    pool = ((f["pkh"], f["pkw"]), (f["psy"], f["psx"]), (f["ppy"], f["ppx"])) if pooled else None
    return ConvRecord(r.label, at, f["projection"], f["out_start"], f["out_stop"], (f["c_in"], f["h_in"], f["w_in"]),
                      pool, (f["c_in"], f["h_mid"], f["w_mid"]), (f["c_out"], f["h_out"], f["w_out"]),
                      (f["sy"], f["sx"]), (f["py"], f["px"]), (f["dy"], f["dx"]), f["groups"], f["c_lo"], f["c_hi"],
                      key, mask, first, count, sources_offset, exps, m.reshape(shape))


def parse_conv(r: Reader, chip: Chip, core: int, nr: Neurons) -> list[ConvRecord]:
    """Every record of a neuron core's conv.bin, checked against the bytes and the core's neurons.bin."""
    _where(r, chip, core)
    at = r.file_offset
    (n_records,) = r.unpack("I", "conv record count")
    if n_records == 0:
        raise r.fail("0 conv records, expected >= 1 (a core without conv projections has no conv.bin)", at)
    records = [_record(r, nr) for _ in range(n_records)]
    r.done()
    return records


class ConvScatter:
    """One record run event-driven: each input spike adds, per kernel tap, the stored output channels' weights
    of its group at the output position the tap maps it to, if that output is on this core."""

    def __init__(self, rec: ConvRecord) -> None:
        self.rec = rec
        self.n = rec.out_stop - rec.out_start
        plane = rec.out_shape[1] * rec.out_shape[2]
        # exponent of each local neuron: its channel's (the sum per neuron per step is shifted, as Lava's Dense)
        self.exp = rec.exps[(np.arange(rec.out_start, rec.out_stop) // plane) - rec.c_lo]
        self.uniform_exp = int(self.exp[0]) if np.all(self.exp == self.exp[0]) else None
        kernel = rec.kernel  # [stored channels, C_in / groups, kh, kw]
        ti, tj = np.nonzero(np.any(kernel != 0, axis=(0, 1)))  # taps with a nonzero weight
        self.ti, self.tj = ti.astype(np.int64), tj.astype(np.int64)
        # (C_in / groups, taps, stored channels): one gather gives every stored channel's weight of a (spike, tap)
        self.by_tap = np.ascontiguousarray(kernel[:, :, ti, tj].transpose(1, 2, 0))
        self.c_out_g = rec.out_shape[0] // rec.groups
        self.c_in_g = rec.in_shape[0] // rec.groups
        self.channels = np.arange(rec.c_lo, rec.c_hi)
        self.group_of_channel = self.channels // self.c_out_g

    def match(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each key: whether a source block matches, which one, and the input neuron it names."""
        rec = self.rec
        if not rec.src_key.size:
            zeros = np.zeros(keys.size, np.int64)
            return np.zeros(keys.size, bool), zeros, zeros
        hit = (keys[:, None] & rec.src_mask[None, :]) == rec.src_key[None, :]
        which = hit.argmax(axis=1)
        return hit.any(axis=1), which, keys & ~rec.src_mask[which] & MASK32

    def accumulate(self, pre: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, int]:
        """Input for this core's n neurons from input neurons `pre` spiking `counts` times, shifted by the
        weight exponents; and the synaptic events (nonzero weights that reached a neuron of this core;
        a pool prefix's sums are not synapses)."""
        rec = self.rec
        if rec.pool is not None:
            pre, counts = self._pool(pre, counts)
        _, h_in, w_in = rec.mid_shape
        _, h_out, w_out = rec.out_shape
        ci, rem = np.divmod(pre, h_in * w_in)
        y, x = np.divmod(rem, w_in)
        # output position of every (spike, tap): y = yo * stride - padding + tap * dilation
        ny = y[:, None] + rec.padding[0] - self.ti[None, :] * rec.dilation[0]
        nx = x[:, None] + rec.padding[1] - self.tj[None, :] * rec.dilation[1]
        yo, ry = np.divmod(ny, rec.stride[0])
        xo, rx = np.divmod(nx, rec.stride[1])
        spike, tap = np.nonzero((ry == 0) & (rx == 0) & (yo >= 0) & (yo < h_out) & (xo >= 0) & (xo < w_out))
        acc = np.zeros(self.n, np.int64)
        if not spike.size:
            return acc, 0
        group = ci[spike] // self.c_in_g
        w = self.by_tap[(ci[spike] - group * self.c_in_g), tap]  # [pairs, stored channels]
        post = (self.channels[None, :] * h_out + yo[spike, tap][:, None]) * w_out + xo[spike, tap][:, None] \
            - rec.out_start
        keep = (w != 0) & (post >= 0) & (post < self.n) & (self.group_of_channel[None, :] == group[:, None])
        events = int(np.count_nonzero(keep))
        # float64 sums of integers are exact below 2**53, far above any state width
        acc = np.bincount(post[keep], weights=(w * counts[spike][:, None])[keep].astype(np.float64),
                          minlength=self.n).astype(np.int64)
        exp = self.uniform_exp if self.uniform_exp is not None else self.exp
        return shift_by_exponent(acc, exp), events

    def _pool(self, pre: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pool prefix: each input's count added to every pooled position whose window holds it; the
        nonzero pooled positions and their summed counts."""
        rec = self.rec
        assert rec.pool is not None
        (ph, pw), (psy, psx), (ppy, ppx) = rec.pool
        _, h_in, w_in = rec.in_shape
        c, h_mid, w_mid = rec.mid_shape
        ci, rem = np.divmod(pre, h_in * w_in)
        y, x = np.divmod(rem, w_in)
        wi, wj = (a.reshape(-1) for a in np.meshgrid(np.arange(ph), np.arange(pw), indexing="ij"))
        yo, ry = np.divmod(y[:, None] + ppy - wi[None, :], psy)
        xo, rx = np.divmod(x[:, None] + ppx - wj[None, :], psx)
        spike, win = np.nonzero((ry == 0) & (rx == 0) & (yo >= 0) & (yo < h_mid) & (xo >= 0) & (xo < w_mid))
        mid = (ci[spike] * h_mid + yo[spike, win]) * w_mid + xo[spike, win]
        summed = np.bincount(mid, weights=counts[spike].astype(np.float64), minlength=c * h_mid * w_mid)
        nonzero = np.flatnonzero(summed)
        return nonzero, summed[nonzero].astype(np.int64)
