"""A convolution projection's shared kernel and geometry: the kernel is stored once, never per synapse.

Every conv in the IR is 2-D: a Conv1d over (C, L) is the 2-D conv over (C, 1, L) with a 1 x k kernel,
which flattens to the same neuron order. Pooling is a conv with a fixed kernel; a pool composed with
an adjacent conv (no neuron between them) is one conv with a larger kernel (frontend/conv.py).

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
        return f"conv{kh}x{kw}/s{self.stride[0]}x{self.stride[1]}{g}"

    def describe(self) -> str:
        c_out, c_in_g, kh, kw = self.kernel.shape
        return (f"{kh}x{kw} conv {self.in_shape[0]}->{c_out} ch (groups {self.groups}, stride "
                f"{self.stride[0]}x{self.stride[1]}) on {self.in_shape[1]}x{self.in_shape[2]}")

    def taps(self) -> tuple[np.ndarray, ...]:
        """Every (out index, in index, kernel flat index) the conv connects, as three int64 arrays.

        One entry per output neuron x kernel tap that lands inside the input: the unrolled synapses.
        """
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
        out_index, in_index, tap = self.taps()
        values = self.kernel.reshape(-1)[tap]
        keep = values != 0
        mat = sp.csr_array((values[keep], (out_index[keep], in_index[keep])), shape=(self.n_out, self.n_in))
        mat.sum_duplicates()
        mat.sort_indices()
        return mat

    def kernel_bytes(self, weight_bits: int) -> int:
        """Bytes of the kernel stored once at `weight_bits` per weight, rounded up to whole bytes per weight."""
        return int(self.kernel.size) * ((weight_bits + 7) // 8)
