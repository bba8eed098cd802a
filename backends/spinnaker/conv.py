"""Pack one neuron core's conv.bin: its incoming conv projections as local-only convolution tables.

In the spirit of sPyNNaker's local-only ConvolutionConnector (neural_modelling/src/neuron/local_only/
local_only_conv_impl.c: a small shape header per connector, the int16 kernel copied into DTCM, a spike
matched against each connector's key/mask), each record is a fixed shape header, the key blocks the
core listens to, one weight exponent per stored output channel, and the kernel of only the output
channels the core's slice [start, stop) covers, stored once. Unlike sPyNNaker, a core may hold conv
records beside its synaptic rows (sPyNNaker issue #1224: local-only replaces the master population
table), a record carries all C_out x C_in / groups kernel planes, not one channel pair, and a sum pool
before the conv (`Conv.pool`) is a prefix of the record (the spikes are summed on the pooled map first),
so the small kernel is what is stored.
Layout: docs/spinnaker-format.md "conv.bin".
"""

from __future__ import annotations

import dataclasses
import struct
from typing import TYPE_CHECKING

import numpy as np

from ...compiler.errors import ArtifactError, TargetError
from ...compiler.ir import IntProjection, Slice
from ...compiler.ir.conv import Conv
from .format import MAGIC_CONV, pack_file, pad4
from .synapses import mode_of, weight_field

if TYPE_CHECKING:
    from .emit import _Context

RECORD_HEAD = struct.Struct("<III" + "H" * 25 + "BBI")  # 68 bytes, docs/spinnaker-format.md
SOURCE = struct.Struct("<IIII")  # key, mask, first pre neuron, neurons in the key block
U16_MAX = 0xFFFF


@dataclasses.dataclass
class ConvFileInfo:
    records: int = 0
    kernel_weights: int = 0  # kernel entries stored (all records)
    connections: int = 0  # the unrolled synapses these records stand for (nonzero, into this core)
    sources: int = 0


def is_conv(proj: IntProjection) -> bool:
    return proj.conv is not None


def channel_range(conv: Conv, start: int, stop: int) -> tuple[int, int]:
    """The output channels [c_lo, c_hi) that the post neurons [start, stop) lie in."""
    plane = conv.out_shape[1] * conv.out_shape[2]
    return start // plane, -(-stop // plane)


def input_range(conv: Conv, start: int, stop: int) -> tuple[int, int]:
    """A contiguous range of input neurons holding every input the outputs [start, stop) read (their halo):
    the input channels of the groups covered, the input rows the covered output rows reach (through the
    pool prefix's windows too)."""
    _, h_in, w_in = conv.in_shape
    _, h_mid, _ = conv.pooled_shape
    _, h_out, w_out = conv.out_shape
    kh, _ = conv.kernel_size
    c0, y0 = divmod(start // w_out, h_out)
    c1, y1 = divmod((stop - 1) // w_out, h_out)
    if c0 != c1:  # more than one channel: every output row
        y0, y1 = 0, h_out - 1
    lo_row = max(0, y0 * conv.stride[0] - conv.padding[0])
    hi_row = min(h_mid - 1, y1 * conv.stride[0] - conv.padding[0] + (kh - 1) * conv.dilation[0])
    if conv.pool is not None and lo_row <= hi_row:  # pooled rows -> the input rows their windows read
        pool = conv.pool
        lo_row = max(0, lo_row * pool.stride[0] - pool.padding[0])
        hi_row = min(h_in - 1, hi_row * pool.stride[0] - pool.padding[0] + pool.kernel[0] - 1)
    if lo_row > hi_row:
        return 0, 0
    ci_lo = (c0 // conv.out_per_group) * conv.in_per_group
    ci_hi = (c1 // conv.out_per_group + 1) * conv.in_per_group
    return (ci_lo * h_in + lo_row) * w_in, ((ci_hi - 1) * h_in + hi_row) * w_in + w_in


def _record(ctx: _Context, s: Slice, j: int, proj: IntProjection) -> tuple[bytes, int, int, int]:
    conv = proj.conv
    assert conv is not None
    where = f"{s.label}: conv projection {proj.pre!r} -> {proj.post!r} ({conv.describe()})"
    if proj.delays.size and np.any(proj.delays != 0):
        raise ArtifactError(f"{where} has synaptic delays up to {int(proj.delays.max())}; a conv table delivers "
                            "every spike one step later. Fix: compile again (lower keeps conv delays at 0)")
    c_lo, c_hi = channel_range(conv, s.start, s.stop)
    kh, kw = conv.kernel_size
    pool = conv.pool
    pk, ps, pp = (pool.kernel, pool.stride, pool.padding) if pool is not None else ((0, 0), (0, 0), (0, 0))
    dims = {"C_in": conv.in_shape[0], "H_in": conv.in_shape[1], "W_in": conv.in_shape[2],
            "pool kh": pk[0], "pool kw": pk[1], "pool stride y": ps[0], "pool stride x": ps[1],
            "pool padding y": pp[0], "pool padding x": pp[1], "H_pooled": conv.pooled_shape[1],
            "W_pooled": conv.pooled_shape[2], "C_out": conv.out_shape[0], "H_out": conv.out_shape[1],
            "W_out": conv.out_shape[2], "kh": kh, "kw": kw, "stride y": conv.stride[0], "stride x": conv.stride[1],
            "padding y": conv.padding[0], "padding x": conv.padding[1], "dilation y": conv.dilation[0],
            "dilation x": conv.dilation[1], "groups": conv.groups}
    for name, value in dims.items():
        if not 0 <= value <= U16_MAX:
            raise TargetError(f"{where}: {name} = {value} does not fit conv.bin's u16 field (0..{U16_MAX}). "
                              "Fix: a smaller layer")
    lay = ctx.layout
    mode = mode_of(np.asarray(conv.kernel))
    local = np.asarray(conv.kernel[c_lo:c_hi], np.int64)
    field = weight_field(local.reshape(-1), mode, lay.weight_bits, where)
    exps = np.broadcast_to(np.asarray(proj.weight_exp, np.int64), (conv.out_shape[0],))[c_lo:c_hi]
    if exps.min() < -128 or exps.max() > 127:
        raise TargetError(f"{where}: weight exponent {int(exps.min())}..{int(exps.max())} does not fit conv.bin's "
                          "i8. Fix: quantize with this target")
    lo, hi = input_range(conv, s.start, s.stop)
    sources = []
    for k in ctx.pop_slices[proj.pre]:
        pre = ctx.slices[k]
        em = ctx.emitter.get((k, 0))
        if em is None or pre.stop <= lo or pre.start >= hi:
            continue  # sends nothing, or outside the halo: no packet of it can reach these outputs
        sources.append(SOURCE.pack(em.key, em.mask, pre.start, pre.size))
    head = RECORD_HEAD.pack(j, s.start, s.stop, *dims.values(), c_lo, c_hi, lay.weight_bits, mode, len(sources))
    elem = "<u2" if lay.weight_bits <= 16 else "<u4"
    body = head + b"".join(sources) + pad4(exps.astype("<i1").tobytes()) + pad4(field.astype(elem).tobytes())
    w = proj.weights
    connections = int(w.indptr[s.stop] - w.indptr[s.start])
    return body, int(local.size), connections, len(sources)


def conv_table(ctx: _Context, k: int) -> tuple[bytes, ConvFileInfo] | None:
    """conv.bin of one neuron core, or None when no conv projection enters it."""
    s = ctx.slices[k]
    incoming = [(j, p) for j, p in enumerate(ctx.inet.projections) if p.post == s.population and is_conv(p)]
    if not incoming:
        return None
    info = ConvFileInfo(records=len(incoming))
    parts = []
    for j, proj in incoming:
        body, weights, connections, n_src = _record(ctx, s, j, proj)
        parts.append(body)
        info.kernel_weights += weights
        info.connections += connections
        info.sources += n_src
    head = pad4(struct.pack("<HHH", s.chip[0], s.chip[1], s.core)) + struct.pack("<I", len(parts))
    return pack_file(MAGIC_CONV, head + b"".join(parts)), info
