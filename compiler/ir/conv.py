"""A convolution projection's shared kernel and geometry: the kernel is stored once, never per synapse.

Every conv in the IR is 2-D: a Conv1d over (C, L) is the 2-D conv over (C, 1, L) with a 1 x k kernel,
which flattens to the same neuron order. Pooling is a conv with a fixed kernel; a pool composed with
an adjacent conv (no neuron between them) is one conv with a larger kernel (frontend/conv.py).

A sum pool right before a conv (pool -> conv, or pool -> Flatten -> Linear, which is a conv whose kernel
spans the pooled map) is kept as the conv's `pool` prefix, so the small kernel is what gets stored:
the input spikes are first summed into integer counts on `pooled_shape`, then the conv reads them.

Semantics (C-order flattening of (C, H, W) on both sides; `padding` is the leading pad of each axis:
positions outside the input read zero, and `out_shape` fixes where the trailing side ends):

    out[co, y, x] = sum_{ci in group(co), i, j} kernel[co, ci - g0, i, j] *
                    in[ci, y * sy - py + i * dy, x * sx - px + j * dx]

`unrolled()` is the same map as an explicit sparse matrix: the cross-check every conv path is
tested against, and what passes that do not know convolution read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

Pair = tuple[int, int]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                     trailing_padding: int | None = None) -> int:
    trail = padding if trailing_padding is None else trailing_padding
    return (size + padding + trail - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class Pool:
    """A sum pool over each channel: window (kh, kw), stride, leading zero padding."""

    kernel: Pair
    stride: Pair
    padding: Pair

    def out_size(self, h: int, w: int) -> Pair:
        return (conv_output_size(h, self.kernel[0], self.stride[0], self.padding[0], 1),
                conv_output_size(w, self.kernel[1], self.stride[1], self.padding[1], 1))

    def as_conv(self, in_shape: tuple[int, int, int]) -> Conv:
        c, h, w = in_shape
        kernel = np.ones((c, 1, *self.kernel), np.int64)
        return Conv(kernel, in_shape, (c, *self.out_size(h, w)), self.stride, self.padding, (1, 1), c)


@dataclass(frozen=True, eq=False)
class Conv:
    """A conv projection's kernel (C_out, C_in // groups, kh, kw) and geometry.

    The kernel holds float weights in the float and lowered IRs and integer mantissas in the integer IR.
    """

    kernel: np.ndarray
    in_shape: tuple[int, int, int]  # (C_in, H, W)
    out_shape: tuple[int, int, int]  # (C_out, H_out, W_out)
    stride: Pair
    padding: Pair  # leading zero padding (rows, cols)
    dilation: Pair
    groups: int
    pool: Pool | None = None  # a sum pool applied to the input first (the conv then reads `pooled_shape`)

    @property
    def pooled_shape(self) -> tuple[int, int, int]:
        """What the conv itself reads: the input, or the input after the pool prefix."""
        if self.pool is None:
            return self.in_shape
        c, h, w = self.in_shape
        return (c, *self.pool.out_size(h, w))

    def stage(self) -> Conv:
        """The conv stage alone (reading `pooled_shape`)."""
        return replace(self, in_shape=self.pooled_shape, pool=None) if self.pool is not None else self

    @property
    def kernel_size(self) -> Pair:
        return int(self.kernel.shape[2]), int(self.kernel.shape[3])

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def out_per_group(self) -> int:
        return self.out_shape[0] // self.groups

    @property
    def in_per_group(self) -> int:
        return self.in_shape[0] // self.groups

    def with_kernel(self, kernel: np.ndarray) -> Conv:
        return replace(self, kernel=kernel)

    @property
    def label(self) -> str:
        """Short, no spaces: conv<kh>x<kw>/s<stride>[/g<groups>] (report tables)."""
        kh, kw = self.kernel_size
        g = f"/g{self.groups}" if self.groups > 1 else ""
        pool = "" if self.pool is None else f"pool{self.pool.kernel[0]}x{self.pool.kernel[1]}+"
        return f"{pool}conv{kh}x{kw}/s{self.stride[0]}x{self.stride[1]}{g}"

    def describe(self) -> str:
        c_out, c_in_g, kh, kw = self.kernel.shape
        pool = "" if self.pool is None else f"{self.pool.kernel[0]}x{self.pool.kernel[1]} sum pool, then "
        return (f"{pool}{kh}x{kw} conv {self.in_shape[0]}->{c_out} ch (groups {self.groups}, stride "
                f"{self.stride[0]}x{self.stride[1]}) on {self.in_shape[1]}x{self.in_shape[2]}")

    def taps(self) -> tuple[np.ndarray, ...]:
        """Every (out index, in index, kernel flat index) the conv connects, as three int64 arrays.

        One entry per output neuron x kernel tap that lands inside the input: the unrolled synapses.
        """
        if self.pool is not None:
            raise ValueError("taps() of a pooled conv: use stage() and pool.as_conv()")
        c_out, c_in_g, kh, kw = self.kernel.shape
        _, h_in, w_in = self.in_shape
        _, h_out, w_out = self.out_shape
        sy, sx = self.stride
        py, px = self.padding
        dy, dx = self.dilation
        co, ci_l, i, j, y, x = (a.ravel() for a in np.meshgrid(
            np.arange(c_out), np.arange(c_in_g), np.arange(kh), np.arange(kw), np.arange(h_out), np.arange(w_out),
            indexing="ij", sparse=False))
        row_in = y * sy - py + i * dy
        col_in = x * sx - px + j * dx
        inside = (row_in >= 0) & (row_in < h_in) & (col_in >= 0) & (col_in < w_in)
        co, ci_l, i, j, y, x, row_in, col_in = (a[inside] for a in (co, ci_l, i, j, y, x, row_in, col_in))
        ci = (co // self.out_per_group) * c_in_g + ci_l
        out_index = (co * h_out + y) * w_out + x
        in_index = (ci * h_in + row_in) * w_in + col_in
        tap = ((co * c_in_g + ci_l) * kh + i) * kw + j
        return out_index, in_index, tap

    def unrolled(self) -> sp.csr_array:
        """The conv as a sparse (n_out x n_in) matrix: canonical CSR, zero kernel values dropped."""
        if self.pool is not None:  # both stages, exactly: (conv of the pooled map) @ (pool of the input)
            mat = sp.csr_array(self.stage().unrolled() @ self.pool.as_conv(self.in_shape).unrolled())
            mat.eliminate_zeros()
            mat.sort_indices()
            return mat
        out_index, in_index, tap = self.taps()
        values = self.kernel.reshape(-1)[tap]
        keep = values != 0
        mat = sp.csr_array((values[keep], (out_index[keep], in_index[keep])), shape=(self.n_out, self.n_in))
        mat.sum_duplicates()
        mat.sort_indices()
        return mat

    def composite(self) -> Conv | None:
        """One plain conv equal to pool then conv (a larger kernel, integer-exact sums), or None where the
        pool's borders make them differ. Without a pool: self."""
        if self.pool is None:
            return self
        merged = merge(self.pool.as_conv(self.in_shape), self.stage())
        if merged is None:
            return None
        if np.issubdtype(self.kernel.dtype, np.integer):
            merged = merged.with_kernel(np.rint(merged.kernel).astype(self.kernel.dtype))
        a, b = merged.unrolled(), self.unrolled()
        same = (a.shape == b.shape and a.nnz == b.nnz and np.array_equal(a.indptr, b.indptr)
                and np.array_equal(a.indices, b.indices) and np.allclose(a.data, b.data, rtol=1e-9, atol=0))
        return merged if same else None

    def kernel_bytes(self, weight_bits: int) -> int:
        """Bytes of the kernel stored once at `weight_bits` per weight, rounded up to whole bytes per weight."""
        return int(self.kernel.size) * ((weight_bits + 7) // 8)


def is_pool(conv: Conv) -> bool:
    """Depthwise with one constant window for every channel (what a sum or average pool is)."""
    c_out, c_in_g = conv.kernel.shape[:2]
    return conv.groups == c_out == conv.in_shape[0] and c_in_g == 1 and conv.pool is None and bool(
        np.all(conv.kernel == conv.kernel.reshape(-1)[0]))


def merge(first: Conv, second: Conv) -> Conv | None:
    """`second` applied to `first`'s output as one conv, when one of them is a pool; else None.

    Offsets add up as u = i2 * d2 * s1 + i1 * d1 (stride s1 * s2, dilation 1, padding p1 + p2 * s1).
    """
    if first.out_shape != second.in_shape or not (is_pool(first) or is_pool(second)):
        return None
    s1, s2 = np.array(first.stride), np.array(second.stride)
    d1, d2 = np.array(first.dilation), np.array(second.dilation)
    k1, k2 = np.array(first.kernel_size), np.array(second.kernel_size)
    extent = (k2 - 1) * d2 * s1 + (k1 - 1) * d1 + 1
    pool_first = is_pool(first)
    conv, pool = (second, first) if pool_first else (first, second)
    # The conv's taps step by its own dilation, or by d2 * s1 when it reads the pool's output.
    conv_step, pool_step = (d2 * s1, d1) if pool_first else (d1, d2 * s1)
    spread = pool.kernel[0, 0]
    kernel = np.zeros((*conv.kernel.shape[:2], int(extent[0]), int(extent[1])))
    for t in np.ndindex(*conv.kernel.shape[2:]):
        for q in np.ndindex(*spread.shape):
            y, x = (t[0] * conv_step[0] + q[0] * pool_step[0], t[1] * conv_step[1] + q[1] * pool_step[1])
            kernel[:, :, y, x] += conv.kernel[:, :, t[0], t[1]] * spread[q]
    groups = conv.groups
    padding = (first.padding[0] + second.padding[0] * first.stride[0],
               first.padding[1] + second.padding[1] * first.stride[1])
    return Conv(kernel, first.in_shape, second.out_shape, (int(s1[0] * s2[0]), int(s1[1] * s2[1])), padding,
                (1, 1), groups)
