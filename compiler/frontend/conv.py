"""Conv and pool nodes as `Conv` values (kernel stored once), and their composition without a neuron between.

A pool is a depthwise conv with a constant kernel (1 for SumPool2d, 1/(kh*kw) for AvgPool2d). What a
pool next to a conv becomes (nothing in between):
- pool -> conv, and pool -> Flatten -> Linear (a conv whose kernel spans the pooled map): the conv with
  the pool as its prefix (`Conv.pool`), so the small kernel is stored;
- conv -> pool: one conv with a larger kernel (`merge`).
Whether a merge is exact at the borders is not argued case by case: `network.py` keeps a kernel only
when its unrolled matrix equals the composed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ir.conv import Conv, Pool, is_pool, merge


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




def then(drive_conv: Conv, conv: Conv) -> Conv | None:
    """`conv` applied to the output of `drive_conv` (a conv of a population) as one Conv, or None."""
    if drive_conv.pool is None and is_pool(drive_conv) and conv.pool is None and not is_pool(conv):
        # Pool then conv: keep the pool as a prefix; an AvgPool's 1/(kh*kw) goes into the kernel.
        scale = float(drive_conv.kernel.reshape(-1)[0])
        prefix = Pool(drive_conv.kernel_size, drive_conv.stride, drive_conv.padding)
        return Conv(conv.kernel * scale, drive_conv.in_shape, conv.out_shape, conv.stride, conv.padding,
                    conv.dilation, conv.groups, prefix)
    if drive_conv.pool is not None:
        return None
    return merge(drive_conv, conv)


def linear_after_pool(drive_conv: Conv, weight: np.ndarray) -> Conv | None:
    """A Linear over a pooled (C, H, W) map, flattened: the conv whose kernel spans the map, with the pool
    as its prefix (so its weights are stored once, not once per pooled input)."""
    if drive_conv.pool is not None or not is_pool(drive_conv):
        return None
    c, h, w = drive_conv.out_shape
    if weight.ndim != 2 or weight.shape[1] != c * h * w:
        return None
    scale = float(drive_conv.kernel.reshape(-1)[0])
    kernel = np.asarray(weight, np.float64).reshape(weight.shape[0], c, h, w) * scale
    return Conv(kernel, drive_conv.in_shape, (weight.shape[0], 1, 1), (1, 1), (0, 0), (1, 1), 1,
                Pool(drive_conv.kernel_size, drive_conv.stride, drive_conv.padding))
