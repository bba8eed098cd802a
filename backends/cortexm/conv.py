"""A conv projection's section of the model image: geometry, axis tables and the kernel, stored once.

The engine (firmware/engine/snn.c CONV_ROWS) scatters the kernel per input spike. For a spike at
(ci, y, x) the row table lists every {i, yo} that input row y reaches (through the sum pool in front,
if any: each pooled row Y whose window holds y, then each kernel row i with Y + py - i*dy = yo*sy),
the column table the runs of {j, xo}; each (row, run) pair adds kernel weights of ci to the output
channels of ci's group. Sum pool then conv is linear, so this is exactly the reference's "pool into
counts, then conv" (compiler/ir/conv.py), mantissa for mantissa.

Kernel layout [c_in][kh in tap order][kw in tap order][c_out / groups], int8 where the mantissas allow
(mixed-sign Loihi mantissas are even: halved, with the ring's shift one higher, as for rows), else
int16. Tap order groups kernel rows (columns) by i mod sy (j mod sx), each group in descending i: the
taps i, i+sy that one input row reaches (output rows yo, yo-1) then have weights a fixed stride apart,
and sums too, so the engine walks them as one run of rows; for columns the weights are adjacent, and
into a channel-last scratch (layout 1) the sums too, so a column run is one dense run of cells.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ...compiler.errors import TargetError
from ...compiler.ir.conv import Conv

CONV_SIZE = 44  # snn_img_conv_t
LAYOUT_CHW, LAYOUT_HWC = 0, 1  # channel-first (the population's order) / channel-last scratch
MAX_TAPS = 64  # taps one input row or column reaches (snn.c conv_table_ok checks up to this many)
W_S8, W_S16 = 2, 3  # snn_image.h enum snn_wkind (conv kernels are int8 or int16)
U8_MAX, U16_MAX = 255, 65535


def kernel_kind(kernel: np.ndarray, where: str) -> tuple[int, np.ndarray, int]:
    """(kind, stored mantissas, extra shift) of a kernel: the narrowest the engine reads exactly."""
    data = np.asarray(kernel, np.int64)
    lo, hi = int(data.min()), int(data.max())
    even = bool(np.all(data % 2 == 0))
    for kind, bits in ((W_S8, 8), (W_S16, 16)):
        top = 1 << (bits - 1)
        if -top <= lo and hi <= top - 1:
            return kind, data, 0
        if even and -2 * top <= lo and hi <= 2 * top - 2:
            return kind, data // 2, 1
    raise TargetError(f"{where}: kernel mantissas span [{lo}, {hi}]; the Cortex-M engine stores conv kernels "
                      "as int8 or int16. Fix: a target format with weight_bits <= 16")


def axis_taps(n: int, k: int, s: int, p: int, d: int, pk: int, ps: int, pp: int, n_pooled: int,
              n_out: int) -> list[list[tuple[int, int]]]:
    """Per input position, the taps (i, out) it reaches, in the engine's order (snn.c axis_taps): pooled
    positions ascending, then kernel taps ascending."""
    taps = []
    for y in range(n):
        top = y + pp
        lo = -(-(top + 1 - pk) // ps) if top + 1 > pk else 0
        mine = []
        for yy in range(lo, min(top // ps, n_pooled - 1) + 1):
            for i in range(k):
                num = yy + p - i * d
                if num < 0:
                    break
                if num % s == 0 and num // s < n_out:
                    mine.append((i, num // s))
        taps.append(mine)
    return taps


def tap_order(kdim: int, m: int) -> np.ndarray:
    """order[j]: where kernel row or column j is stored (snn.c tap_order): grouped by j mod m (the axis's
    stride), descending in each group, so the taps j, j + m one input position reaches are adjacent."""
    taps = sorted(range(kdim), key=lambda j: (j % m, -j))
    order = np.empty(kdim, np.int64)
    order[taps] = np.arange(kdim)
    return order


def run_table(taps: list[list[tuple[int, int]]], kdim: int, stride: int, wmul: int, bmul: int, nmul: int,
              merge: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per input position, runs {order(j_last) * wmul, out_last * bmul, taps * nmul} (snn.c conv_table_ok):
    consecutive taps (j + stride, out - 1) merged when `merge`, their weights then adjacent in storage."""
    order = tap_order(kdim, stride)
    ptr, runs = [0], []
    for t in taps:
        q = 0
        while q < len(t):
            last = q
            while (merge and last + 1 < len(t) and t[last + 1][0] == t[last][0] + stride
                   and t[last + 1][1] + 1 == t[last][1]):
                last += 1
            runs.append((int(order[t[last][0]]) * wmul, t[last][1] * bmul, (last - q + 1) * nmul))
            q = last + 1
        ptr.append(len(runs))
    return np.array(ptr, np.int64), np.array(runs, np.int64).reshape(-1, 3)


@dataclass
class ConvSection:
    """What pack() writes for one conv group: the record's fields, the two tables and the kernel."""

    conv: Conv
    fields: tuple[int, ...]  # the snn_img_conv_t fields before layout
    row_taps: list[list[tuple[int, int]]]
    col_taps: list[list[tuple[int, int]]]
    kernel: np.ndarray  # stored mantissas in image order, int8 or int16
    kind: int
    extra_shift: int
    layout: int = LAYOUT_CHW

    @property
    def opg(self) -> int:
        return self.conv.out_shape[0] // self.conv.groups

    def tables(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """(rows, cols) as (ptr, runs) for this section's layout: kernel rows always merge (a fixed stride
        apart in weights and sums); columns where the sums are adjacent too (channel-last, one group)."""
        c_out, _, w_out = self.conv.out_shape
        kh, kw = self.conv.kernel_size
        sy, sx = self.conv.stride
        m = c_out if self.layout == LAYOUT_HWC else 1
        return (run_table(self.row_taps, kh, sy, kw * self.opg, w_out * m, 1, True),
                run_table(self.col_taps, kw, sx, self.opg, m, self.opg,
                          self.layout == LAYOUT_HWC and self.conv.groups == 1))

    @staticmethod
    def table_bytes(table: tuple[np.ndarray, np.ndarray]) -> bytes:
        ptr, ent = table
        raw = ptr.astype("<u2").tobytes()
        return raw + b"\0" * (-len(raw) % 4) + ent.astype("<u2").tobytes()

    def record(self, rows_off: int, cols_off: int) -> bytes:
        return struct.pack("<7H14B2H4B2I", *self.fields, self.layout, 0, 0, 0, rows_off, cols_off)

    @property
    def nbytes(self) -> int:
        """Kernel + record + tables: the bytes this conv costs in flash (counted once)."""
        rows, cols = self.tables()
        return CONV_SIZE + _align4(len(self.table_bytes(rows))) + _align4(len(self.table_bytes(cols))) + _align4(
            self.kernel.nbytes)

    @property
    def kernel_bytes(self) -> int:
        return int(self.kernel.nbytes)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def conv_section(conv: Conv, n_pre: int, n_post: int, where: str) -> ConvSection:
    """The image section of `conv` between populations of n_pre and n_post neurons; TargetError for a
    conv the engine cannot express (saying which field and why)."""
    c_in, h_in, w_in = conv.in_shape
    c_out, h_out, w_out = conv.out_shape
    if c_in * h_in * w_in != n_pre or c_out * h_out * w_out != n_post:
        raise TargetError(f"{where}: {conv.describe()} maps {c_in * h_in * w_in} -> {c_out * h_out * w_out} neurons, "
                          f"the populations have {n_pre} -> {n_post}; the Cortex-M engine runs a conv between whole "
                          "populations. Fix: compile for the Cortex-M target without slicing the conv")
    kh, kw = conv.kernel_size
    if conv.pool is None:
        pool_fields = (1, 1, 1, 1, 0, 0)
        hp, wp = h_in, w_in
    else:
        pool_fields = (*conv.pool.kernel, *conv.pool.stride, *conv.pool.padding)
        _, hp, wp = conv.pooled_shape
    small = {"kernel rows": kh, "kernel columns": kw, "stride": max(conv.stride), "padding": max(conv.padding),
             "dilation": max(conv.dilation), "pool window, stride or padding": max(pool_fields)}
    for name, value in small.items():
        if value > U8_MAX:
            raise TargetError(f"{where}: {conv.describe()} has {name} {value}; the Cortex-M engine stores them in "
                              f"8 bits (<= {U8_MAX}). Fix: a smaller kernel, stride, padding or pool")
    if min(*conv.stride, *conv.dilation, *pool_fields[:4]) < 1 or min(conv.padding) < 0 or min(pool_fields[4:]) < 0:
        raise TargetError(f"{where}: {conv.describe()}: stride, dilation and pool window must be >= 1 and padding "
                          ">= 0. Fix: check the conv's parameters")
    large = {"input channels": c_in, "input rows": h_in, "input columns": w_in, "output channels": c_out,
             "output rows": h_out, "output columns": w_out, "groups": conv.groups, "pooled rows": hp,
             "pooled columns": wp}
    for name, value in large.items():
        if value > U16_MAX:
            raise TargetError(f"{where}: {conv.describe()} has {value} {name}; the Cortex-M engine stores them in "
                              f"16 bits (<= {U16_MAX}). Fix: split the layer")
    kind, stored, extra = kernel_kind(conv.kernel, where)
    groups = conv.groups
    opg, cin_g = c_out // groups, c_in // groups
    if kh * kw * opg > U16_MAX:
        raise TargetError(f"{where}: {conv.describe()}: {kh} x {kw} taps x {opg} output channels per group = "
                          f"{kh * kw * opg} weights per input channel; the engine's tap tables address at most "
                          f"{U16_MAX}. Fix: fewer output channels per group, or a smaller kernel")
    # [C_out, C_in/g, kh, kw] -> [C_in][kh in row order][kw in column order][C_out/g]: a spike's kernel
    # column is contiguous, and so are the taps of one run
    rows = np.argsort(tap_order(kh, conv.stride[0]))  # the kernel row stored at each place
    cols = np.argsort(tap_order(kw, conv.stride[1]))
    kernel = stored.reshape(groups, opg, cin_g, kh, kw)[:, :, :, rows][..., cols].transpose(0, 2, 3, 4, 1)
    kernel = kernel.reshape(-1)
    row_taps = axis_taps(h_in, kh, conv.stride[0], conv.padding[0], conv.dilation[0], pool_fields[0],
                         pool_fields[2], pool_fields[4], hp, h_out)
    col_taps = axis_taps(w_in, kw, conv.stride[1], conv.padding[1], conv.dilation[1], pool_fields[1],
                         pool_fields[3], pool_fields[5], wp, w_out)
    for axis, taps in (("row", row_taps), ("column", col_taps)):
        most = max((len(t) for t in taps), default=0)
        if most > MAX_TAPS:
            raise TargetError(f"{where}: {conv.describe()}: one input {axis} reaches {most} kernel taps; the engine "
                              f"checks at most {MAX_TAPS}. Fix: a smaller kernel or pool window")
        if sum(len(t) for t in taps) > U16_MAX:
            raise TargetError(f"{where}: {conv.describe()} has {sum(len(t) for t in taps)} {axis} taps; the "
                              f"engine's tap tables hold at most {U16_MAX}. Fix: a smaller kernel or input")
    fields = (c_in, h_in, w_in, c_out, h_out, w_out, groups, kh, kw, *conv.stride, *conv.padding, *conv.dilation,
              *pool_fields, hp, wp)
    dtype = np.int8 if kind == W_S8 else np.int16
    return ConvSection(conv, fields, row_taps, col_taps, kernel.astype(dtype), kind, extra)
