"""Unroll convolution and pooling into sparse matrices (out x in, C-order flattening)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_matrix(
    weight: np.ndarray,
    in_spatial: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> tuple[sp.csr_array, tuple[int, ...]]:
    """Sparse matrix of an N-d (N = 1 or 2) convolution; returns it and the output shape (C_out, *spatial)."""
    c_out, c_in_g = weight.shape[:2]
    kernel = weight.shape[2:]
    nd = len(kernel)
    out_spatial = tuple(
        conv_output_size(in_spatial[d], kernel[d], stride[d], padding[d], dilation[d]) for d in range(nd)
    )
    c_in = c_in_g * groups
    c_out_g = c_out // groups
    # One axis per index: out channel, in channel (within group), kernel offsets, output positions.
    grids = np.meshgrid(
        np.arange(c_out), np.arange(c_in_g), *[np.arange(k) for k in kernel], *[np.arange(o) for o in out_spatial],
        indexing="ij",
    )
    co, ci_l = grids[0].ravel(), grids[1].ravel()
    ks = [g.ravel() for g in grids[2:2 + nd]]
    os_ = [g.ravel() for g in grids[2 + nd:]]
    ci = (co // c_out_g) * c_in_g + ci_l
    pos = [os_[d] * stride[d] - padding[d] + ks[d] * dilation[d] for d in range(nd)]
    valid = np.ones(co.size, dtype=bool)
    for d in range(nd):
        valid &= (pos[d] >= 0) & (pos[d] < in_spatial[d])
    row = co.copy()
    col = ci.copy()
    for d in range(nd):
        row = row * out_spatial[d] + os_[d]
        col = col * in_spatial[d] + pos[d]
    vals = weight[(co, ci_l, *ks)]
    valid &= vals != 0
    n_out = c_out * int(np.prod(out_spatial))
    n_in = c_in * int(np.prod(in_spatial))
    mat = sp.csr_array((vals[valid], (row[valid], col[valid])), shape=(n_out, n_in))
    mat.sum_duplicates()
    return mat, (c_out, *out_spatial)


def pool_matrix(
    channels: int, in_spatial: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], average: bool,
) -> tuple[sp.csr_array, tuple[int, ...]]:
    """Sum (or average) pooling as a depthwise convolution with a constant kernel."""
    value = 1.0 / (kernel[0] * kernel[1]) if average else 1.0
    weight = np.full((channels, 1, *kernel), value)
    return conv_matrix(weight, in_spatial, stride, padding, (1, 1), groups=channels)
