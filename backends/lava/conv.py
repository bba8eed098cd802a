"""Conv projections as Lava's own `lava.proc.conv.process.Conv` process, bit-exact with `simulate_int`.

What Lava's fixed_pt model does (lava-nc 0.10.0: proc/conv/process.py, models.py PyConvModelFixed,
utils.py conv/conv_scipy/signed_clamp), and what emit does about each difference from the reference:

1. Layout. Lava's input and output are (W, H, C) and its kernel (C_out, W, H, C_in // groups), and it
   computes a true convolution (scipy.signal.convolve2d flips the kernel) where the IR's Conv is a
   correlation over C-order (C, H, W). So the Lava kernel is `kernel[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)`
   and padding, stride and dilation are passed as (x, y). The ports do the layout change, with no
   process and no latency: `pre.s_out.reshape((C, H, W)).transpose((2, 1, 0)) -> Conv.s_in` and
   `Conv.a_out.transpose((2, 1, 0)).reshape((n,)) -> LIF.a_in` (virtual ports; measured bit-exact).
2. weight_exp is ignored by the model (never read in run_spk). A weight exponent e >= 0 is folded into
   the kernel as `mantissa << e`: bit-identical, since for integers sum_k (w_k << e) == (sum_k w_k) << e,
   which is the reference's shift_by_exponent of the step's sum. A negative exponent is a flooring right
   shift of the sum, which no kernel can express: `LavaConvExponentError`. quantize gives conv
   projections on Loihi targets e >= 0 ([format] conv_weight_exp_min = 0).
3. a_out wraps to signed 24 bits (signed_clamp is modular: (x + 2**23) % 2**24 - 2**23); the reference
   does not wrap there. emit proves the wrap can never happen: per output channel, the sum of the
   positive folded taps times the largest spike value is <= 2**23 - 1 and the sum of the negative ones
   times it is >= -2**23 (every output neuron's input lies in that range, whatever spikes arrive).
   LIF spikes are 1; an input population's largest count is known only when it runs, so run_lava.py
   repeats the check with it before Lava starts. Else `LavaConvOverflowError`.
4. Weights are not clipped to 8 bits (the kernel Var is int32), so folded kernels stay exact.
5. Padding is symmetric (np.pad with (p, p)) and the output size is Lava's own formula; the IR's padding
   is the leading pad, the trailing side implied by out_shape. They agree exactly when Lava's output size
   with the leading pad equals out_shape (the usual case). When it does not (an asymmetric 'same' pad of
   an even kernel), the projection is emitted unrolled (Sparse/Dense) and the manifest's
   `lava_conv_unrolled` names it and why: Lava 0.10 ports cannot crop a Conv's output.
6. The model types kernel_size, stride, padding, dilation and groups as int8: larger values wrap
   (groups = 128 measured: an all-zero output). Groups above 127 are re-expressed exactly with the
   largest divisor of groups <= 127, zero-filling the kernel between the merged groups; any other field
   above 127 is emitted unrolled (named in the manifest).
7. Timing: run_spk sends the previous step's buffer, then computes: one step of latency, as Dense.
8. Cost: conv_scipy runs groups x (C_out / groups) x (C_in / groups) scipy convolve2d calls every step,
   whatever the spikes. A conv with one output position (pool -> Flatten -> Linear is such a conv, its
   kernel spanning the pooled map) is a dense layer with no kernel reuse: N-MNIST's took 34 ms per step
   as a Conv, under 1 ms as Dense. emit(conv="auto") emits it unrolled when its unrolled weights fit
   Lava's 8-bit Dense; conv="always" makes it a Conv too.

Lava 0.10 ports can neither slice nor concatenate (ConcatPort raises NotImplementedError when the
network is compiled), so a population that a Conv reads or writes is one Lava process (RingBuffer or
LIF) whatever the mapping's slices are: the slices are neurocc's placement, not Lava's arithmetic.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...compiler.errors import QuantizationError
from ...compiler.ir import IntNetwork, IntProjection
from ...compiler.ir.conv import Conv

LAVA_INT8_MAX = 127  # PyConvModelFixed: kernel_size, stride, padding, dilation, groups are LavaPyType int8
A_OUT_BITS = 24  # PyConvModelFixed.clamp_precision: utils.signed_clamp(x, bits=24)
A_OUT_MAX = (1 << (A_OUT_BITS - 1)) - 1
A_OUT_MIN = -(1 << (A_OUT_BITS - 1))


class LavaConvExponentError(QuantizationError):
    """A conv projection has a negative weight exponent, which Lava's Conv cannot apply."""


class LavaConvOverflowError(QuantizationError):
    """A conv projection's summed kernel could reach Lava Conv's signed 24-bit a_out wrap."""


@dataclasses.dataclass
class ConvConnection:
    """One conv projection as one Lava Conv process (whole pre population -> whole post population)."""

    projection: int
    pre: int  # population index
    post: int
    label: str
    kernel: np.ndarray  # Lava layout (C_out, W, H, C_in // groups), weight exponent folded in, int64
    in_shape: tuple[int, int, int]  # IR (C, H, W)
    out_shape: tuple[int, int, int]
    padding: tuple[int, int]  # Lava (x, y)
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int  # as Lava gets it (<= 127)
    weight_exp: int  # the projection's, folded into kernel
    channel_pos_max: int  # max over output channels of the summed positive folded taps
    channel_neg_min: int  # min over output channels of the summed negative folded taps

    @property
    def lava_input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        return (w, h, c)

    def meta(self, index: int) -> dict:
        return {"index": index, "label": self.label, "projection": self.projection, "pre": self.pre,
                "post": self.post, "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "lava_input_shape": list(self.lava_input_shape), "padding": list(self.padding),
                "stride": list(self.stride), "dilation": list(self.dilation), "groups": self.groups,
                "weight_exp_folded": self.weight_exp, "kernel_shape": list(self.kernel.shape),
                "channel_pos_max": self.channel_pos_max, "channel_neg_min": self.channel_neg_min}


def lava_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """lava.proc.conv.utils.output_shape for one axis (symmetric padding)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def lava_conv(conv: Conv, dense_1x1: bool = False) -> tuple[Conv | None, str]:
    """The one plain conv Lava's Conv runs for an IR conv, or (None, why not: the projection is then
    emitted unrolled). `dense_1x1`: also (None, why) for a conv with one output position (point 8).

    A conv with a sum-pool prefix (`conv.pool`) is its composite: one conv with the larger kernel, equal
    to pool then conv. Two chained Lava Convs would add a step of latency, which the reference has not.
    """
    if dense_1x1 and conv.out_shape[1:] == (1, 1):
        return None, ("one output position (1x1): a dense layer with no kernel reuse, which Lava's Conv "
                      "computes with C_out x C_in convolve2d calls per step")
    if getattr(conv, "pool", None) is not None:
        plain = conv.composite()
        if plain is None:
            return None, (f"{conv.describe()}: the pool's borders make pool-then-conv differ from any single "
                          "conv kernel, and two chained Lava Convs would add a step of latency")
        conv = plain
    reason = _geometry_problem(conv)
    return (None, reason) if reason else (conv, "")


def _geometry_problem(conv: Conv) -> str:
    kh, kw = conv.kernel_size
    fields = {"kernel size": (kh, kw), "stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation}
    for name, pair in fields.items():
        if max(pair) > LAVA_INT8_MAX:
            return f"{name} {pair[0]}x{pair[1]} above {LAVA_INT8_MAX}: Lava's PyConvModelFixed stores it as int8"
    _, h_in, w_in = conv.in_shape
    _, h_out, w_out = conv.out_shape
    got = tuple(lava_output_size(*a) for a in ((h_in, kh, conv.stride[0], conv.padding[0], conv.dilation[0]),
                                               (w_in, kw, conv.stride[1], conv.padding[1], conv.dilation[1])))
    if got != (h_out, w_out):
        return (f"asymmetric padding: Lava pads {conv.padding[0]}x{conv.padding[1]} on both sides, giving "
                f"{got[0]}x{got[1]} outputs, not {h_out}x{w_out}, and its ports cannot crop")
    return ""


def lava_groups(groups: int) -> int:
    """Groups as Lava's int8 field can hold them: groups itself, or its largest divisor <= 127."""
    if groups <= LAVA_INT8_MAX:
        return groups
    return max(d for d in range(1, LAVA_INT8_MAX + 1) if groups % d == 0)


def regroup(kernel: np.ndarray, groups: int, new_groups: int, c_in: int) -> np.ndarray:
    """The same conv with `new_groups` (a divisor of `groups`): each new group's kernel spans the input
    channels of groups / new_groups old groups, zero outside each output channel's own old group."""
    if new_groups == groups:
        return kernel
    c_out, cin_g, kh, kw = kernel.shape
    cin_new = c_in // new_groups
    out = np.zeros((c_out, cin_new, kh, kw), dtype=kernel.dtype)
    co = np.arange(c_out)
    old_g = co // (c_out // groups)
    new_g = co // (c_out // new_groups)
    first = old_g * cin_g - new_g * cin_new  # where an output channel's own inputs start in its new group
    for local in range(cin_g):
        out[co, first + local] = kernel[:, local]
    return out


def _folded_kernel(proj: IntProjection, conv: Conv, where: str) -> tuple[np.ndarray, int]:
    exp = int(proj.weight_exp)
    if exp < 0:
        raise LavaConvExponentError(
            f"{where}: weight exponent {exp} < 0, but Lava's Conv (PyConvModelFixed) ignores weight_exp, and "
            "a right shift of the summed kernel cannot be folded into the kernel. Fix: quantize with [format] "
            "conv_weight_exp_min = 0 (the shipped loihi targets' setting) in the target file")
    return np.left_shift(np.asarray(conv.kernel, np.int64), exp), exp


def channel_sums(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (axis 0): the summed positive and the summed negative weights."""
    flat = kernel.reshape(kernel.shape[0], -1)
    return np.where(flat > 0, flat, 0).sum(axis=1), np.where(flat < 0, flat, 0).sum(axis=1)


def check_no_wrap(where: str, pos_max: int, neg_min: int, peak: int = 1) -> None:
    """Refuse a conv whose a_out could pass Lava's signed 24-bit wrap for spike values up to `peak`."""
    if peak * pos_max <= A_OUT_MAX and peak * neg_min >= A_OUT_MIN:
        return
    bound = max(peak * pos_max, -peak * neg_min)
    raise LavaConvOverflowError(
        f"{where}: one step's summed kernel (weight exponent folded in) times spike value {peak} can reach "
        f"{bound}, past the signed {A_OUT_BITS}-bit range (-2**23 .. 2**23 - 1) at which Lava's Conv "
        "(PyConvModelFixed) wraps a_out, which the reference does not. Fix: lower this layer's weights "
        "relative to its threshold so quantize picks a smaller exponent, or compile for family spinnaker "
        "or cortexm")


def conv_connection(inet: IntNetwork, k: int, proj: IntProjection, conv: Conv) -> ConvConnection:
    """Projection `k` as one Lava Conv running `conv` (its `lava_conv`)."""
    assert proj.conv is not None
    where = f"conv projection {proj.pre!r} -> {proj.post!r} ({proj.conv.describe()})"
    names = list(inet.populations)
    pre, post = inet.populations[proj.pre], inet.populations[proj.post]
    if conv.n_in != pre.size or conv.n_out != post.size:
        raise QuantizationError(f"{where}: maps {conv.n_in} -> {conv.n_out} neurons, but {proj.pre!r} has "
                                f"{pre.size} and {proj.post!r} {post.size}. Fix: compile the model again")
    if proj.delays.size and int(np.abs(proj.delays).max()) != 0:
        raise QuantizationError(f"{where}: a conv projection carries synaptic delays; Lava's Conv has none. "
                                "Fix: compile the model again (conv projections have delay 0)")
    if not np.issubdtype(np.asarray(conv.kernel).dtype, np.integer):
        raise QuantizationError(f"{where}: its kernel holds {np.asarray(conv.kernel).dtype} values, not integer "
                                "mantissas. Fix: emit a quantized network (neurocc.compile for a Loihi target)")
    kernel, exp = _folded_kernel(proj, conv, where)
    pos, neg = channel_sums(kernel)
    pos_max, neg_min = int(pos.max(initial=0)), int(neg.min(initial=0))
    check_no_wrap(where, pos_max, neg_min)
    groups = lava_groups(conv.groups)
    kernel = regroup(kernel, conv.groups, groups, conv.in_shape[0])
    lava_kernel = np.ascontiguousarray(kernel[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
    return ConvConnection(
        projection=k, pre=names.index(proj.pre), post=names.index(proj.post),
        label=f"conv {proj.pre}->{proj.post}", kernel=lava_kernel,
        in_shape=tuple(int(x) for x in conv.in_shape), out_shape=tuple(int(x) for x in conv.out_shape),
        padding=(int(conv.padding[1]), int(conv.padding[0])), stride=(int(conv.stride[1]), int(conv.stride[0])),
        dilation=(int(conv.dilation[1]), int(conv.dilation[0])), groups=groups, weight_exp=exp,
        channel_pos_max=pos_max, channel_neg_min=neg_min)
