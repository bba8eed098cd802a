"""Conv and pool nodes as `Conv` values (kernel stored once), and their composition without a neuron between.

A pool is a depthwise conv with a constant kernel (1 for SumPool2d, 1/(kh*kw) for AvgPool2d). A pool
next to a conv (conv -> pool or pool -> conv, nothing in between) is one conv: stride multiplies and
the kernel grows to cover both. Whether that composition is exact at the borders (zero padding of the
second map vs. real input of the first) is not argued case by case: `network.py` keeps a composed
kernel only when its unrolled matrix equals the product of the two unrolled matrices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ir.conv import Conv


def _pair(values: tuple[int, ...], nd: int, fill: int) -> tuple[int, int]:
    return (fill, int(values[0])) if nd == 1 else (int(values[0]), int(values[1]))


def conv_of_node(p: Mapping[str, Any], in_shape: tuple[int, ...], padding: tuple[int, ...],
                 out_shape: tuple[int, ...]) -> Conv:
    """A Conv1d/Conv2d node's Conv; a Conv1d over (C, L) is the 2-D conv over (C, 1, L)."""
    weight = np.asarray(p["weight"], np.float64)
    nd = weight.ndim - 2
    if nd == 1:
        weight = weight[:, :, None, :]
    c_in, *spatial = in_shape
    c_out, *out_spatial = out_shape
    h, w = (1, spatial[0]) if nd == 1 else spatial
    ho, wo = (1, out_spatial[0]) if nd == 1 else out_spatial
    return Conv(weight, (c_in, h, w), (c_out, ho, wo), _pair(p["stride"], nd, 1), _pair(padding, nd, 0),
                _pair(p["dilation"], nd, 1), int(p["groups"]))


def pool_of_node(average: bool, p: Mapping[str, Any], in_shape: tuple[int, ...], padding: tuple[int, ...],
                 out_shape: tuple[int, ...]) -> Conv:
    """SumPool2d/AvgPool2d as a depthwise conv with a constant kernel."""
    c = in_shape[0]
    kh, kw = p["kernel_size"]
    value = 1.0 / (kh * kw) if average else 1.0
    kernel = np.full((c, 1, kh, kw), value)
    return Conv(kernel, tuple(in_shape), tuple(out_shape), tuple(p["stride"]), tuple(padding), (1, 1), c)


def _is_pool(conv: Conv) -> bool:
    """Depthwise with one kernel shared by every channel (what a pool is)."""
    c_out, c_in_g = conv.kernel.shape[:2]
    return conv.groups == c_out == conv.in_shape[0] and c_in_g == 1 and bool(
        np.all(conv.kernel == conv.kernel[:1]))


def compose(first: Conv, second: Conv) -> Conv | None:
    """`second` applied to `first`'s output as one conv, when one of them is a pool; else None.

    Offsets add up as u = i2 * d2 * s1 + i1 * d1 (stride s1 * s2, dilation 1, padding p1 + p2 * s1).
    """
    if first.out_shape != second.in_shape or not (_is_pool(first) or _is_pool(second)):
        return None
    s1, s2 = np.array(first.stride), np.array(second.stride)
    d1, d2 = np.array(first.dilation), np.array(second.dilation)
    k1, k2 = np.array(first.kernel_size), np.array(second.kernel_size)
    extent = (k2 - 1) * d2 * s1 + (k1 - 1) * d1 + 1
    pool_first = _is_pool(first)
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
