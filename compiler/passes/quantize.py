"""Quantize a lowered network into the target's integer CUBA-LIF (docs/neuron-model.md).

Per post population one scale S (integer threshold mantissa vth = S): a weight w (threshold
units) becomes mantissa m and projection exponent e with m * 2**e ~= w * S. S starts at
`default_scale` (2**14 on Loihi's format: vth << 6 = 2**20, leaving 8x headroom below the 24-bit
state limit) and shrinks only when a weight or bias would not fit the format otherwise. Each
projection gets the exponent that keeps its largest weight within the mantissa, so small-weight
layers keep their resolution.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import QuantizationError, UnsupportedNodeError
from ..ir import (
    INPUT,
    LIF,
    IntNetwork,
    IntPopulation,
    IntProjection,
    LoweredNetwork,
    LoweredProjection,
    compact_int,
    sign_mode_of,
)
from ..targets.target import NumericFormat, Target

HEADROOM_BITS = 3  # the threshold sits 8x below the state limit: room for input before v clips


def default_scale(fmt: NumericFormat) -> int:
    """The threshold mantissa to aim for: vth << threshold_shift a HEADROOM_BITS margin under the state limit."""
    return 1 << max(0, fmt.state_bits - 1 - HEADROOM_BITS - fmt.threshold_shift)


def _abs_max(data: np.ndarray) -> float:
    """max |data| without an |data| temporary (100M synapses: 800 MB)."""
    return max(float(data.max()), -float(data.min())) if data.size else 0.0


def mantissa_dtype(fmt: NumericFormat) -> type:
    """Narrowest integer type holding every mantissa of the format (mixed reaches -(weight_max + 1))."""
    for dtype in (np.int16, np.int32):
        if fmt.weight_max + 1 <= np.iinfo(dtype).max:
            return dtype
    return np.int64


def _mantissa_max(fmt: NumericFormat, mode: str) -> int:
    # Lava clips mixed weights to [-2**bits, 2**bits - 1] then drops one LSB: even values up to 2**bits - 2.
    return fmt.weight_max - 1 if mode == "mixed" else fmt.weight_max


def _quantize_weights(data: np.ndarray, scale: float, fmt: NumericFormat, where: str,
                      exp_min: int | None = None) -> tuple[np.ndarray, int]:
    mode = sign_mode_of(data)
    m_max = _mantissa_max(fmt, mode)
    peak = _abs_max(data) * scale
    if peak == 0:
        return np.zeros(data.size, mantissa_dtype(fmt)), 0
    exp = math.ceil(math.log2(peak / m_max)) if peak > m_max else -math.floor(math.log2(m_max / peak))
    exp = max(fmt.weight_exp_min if exp_min is None else exp_min, exp)
    if exp > fmt.weight_exp_max:
        raise QuantizationError(
            f"{where}: largest weight {peak:.4g} (threshold units x scale) needs exponent {exp}, above the "
            f"format's {fmt.weight_exp_max}. Fix: lower the weights or raise the threshold of the layer"
        )
    # In place, the same float operations as 2 * rint(data * scale / 2**exp / 2): one temporary, not four.
    x = data * scale
    x /= 2.0 ** exp
    if mode == "mixed":
        x /= 2
        np.rint(x, out=x)
        x *= 2
    else:
        np.rint(x, out=x)
    low = -(fmt.weight_max + 1) if mode == "mixed" else -m_max
    np.clip(x, low, m_max, out=x)
    return x.astype(mantissa_dtype(fmt)), exp


def _quantize_bias(bias_v: np.ndarray, fmt: NumericFormat) -> tuple[np.ndarray, np.ndarray]:
    mmax = fmt.bias_mant_max
    mag = np.abs(bias_v)
    exp = np.zeros(bias_v.size, np.int64)
    big = mag > mmax
    exp[big] = np.ceil(np.log2(mag[big] / mmax)).astype(np.int64)
    exp = np.minimum(exp, fmt.bias_exp_max)
    mant = np.clip(np.rint(bias_v / (2.0 ** exp)), -mmax, mmax).astype(np.int64)
    return mant, exp


def _choose_scale(lnet: LoweredNetwork, post: str, fmt: NumericFormat, incoming: list | None = None) -> float:
    """Largest scale <= default_scale at which every incoming weight and the bias fit the format."""
    scale = float(min(default_scale(fmt), fmt.threshold_max))
    for proj in (lnet.projections if incoming is None else incoming):
        if proj.post != post or proj.weights.nnz == 0:
            continue
        peak = _abs_max(proj.conv.kernel if proj.conv is not None else proj.weights.data)
        limit = _mantissa_max(fmt, "mixed") * 2.0 ** fmt.weight_exp_max
        scale = min(scale, limit / peak)
    bias = lnet.populations[post].bias
    if bias.size and np.abs(bias).max() > 0:
        limit = fmt.bias_mant_max * 2.0 ** fmt.bias_exp_max / (1 << fmt.activation_shift)
        scale = min(scale, limit / float(np.abs(bias).max()))
    return scale


def quantize(lnet: LoweredNetwork, target: Target) -> IntNetwork:
    """The target's integer network (a new value: `lnet` is not changed; index and delay arrays are shared)."""
    fmt = target.format
    decay_max, unity = fmt.decay_max, fmt.decay_unity
    pops: dict[str, IntPopulation] = {}
    scales: dict[str, float] = {}
    notes = list(lnet.notes)
    incoming: dict[str, list] = {}
    for proj in lnet.projections:
        incoming.setdefault(proj.post, []).append(proj)
    for name, lp in lnet.populations.items():
        if lp.kind == INPUT:
            pops[name] = IntPopulation(name, lp.source, lp.index, lp.shape, INPUT)
            continue
        if lp.kind not in target.neuron_kinds:
            raise UnsupportedNodeError(
                f"population {lp.source!r} is {lp.kind}, which {target.name} does not run (it runs "
                f"{', '.join(target.neuron_kinds)}). Fix: convert the layer, or choose another target"
            )
        scale = _choose_scale(lnet, name, fmt, incoming.get(name, []))
        if scale < 1:
            raise QuantizationError(
                f"population {name!r}: weights or bias exceed what {target.name}'s format can represent even "
                f"at threshold mantissa 1 (scale {scale:.3g}). Fix: rescale the layer (weights relative to "
                "threshold) or use a target with wider weights"
            )
        vth = int(math.floor(scale)) if lp.spiking else fmt.threshold_max
        scale = float(vth) if lp.spiking else scale
        scales[name] = scale
        du = int(np.clip(round((1.0 - lp.alpha_i) * unity) - 1, 0, decay_max))
        dv = int(np.clip(round((1.0 - lp.alpha_v) * unity), 0, decay_max))
        bias_v = lp.bias * scale * (1 << fmt.activation_shift)
        mant, exp = _quantize_bias(bias_v, fmt)
        pops[name] = IntPopulation(
            name, lp.source, lp.index, lp.shape, LIF, du, dv, vth, mant, exp, lp.spiking,
            v_unit=lp.v_scale / (scale * (1 << fmt.activation_shift)), v_offset=lp.v_offset,
        )
    projections: list[IntProjection] = []
    for proj in lnet.projections:
        where = f"projection {proj.pre!r} -> {proj.post!r}"
        if proj.delays.size and proj.delays.max() > fmt.max_delay:
            raise QuantizationError(
                f"{where}: delay {int(proj.delays.max())} steps exceeds {target.name}'s maximum of "
                f"{fmt.max_delay}. Fix: shorten the delays, use a larger dt, or a target with longer delays"
            )
        if proj.conv is not None:
            conv_proj = _quantize_conv(proj, scales[proj.post], fmt, where)
            if conv_proj.weights.nnz:
                projections.append(conv_proj)
            continue
        mant, exp = _quantize_weights(proj.weights.data, scales[proj.post], fmt, where)
        keep = mant != 0
        lw = proj.weights
        delays = compact_int(proj.delays)
        if keep.all():  # index arrays and delays shared with the lowered (and float) network, not copied
            w = sp.csr_array((mant, lw.indices, lw.indptr), shape=lw.shape, copy=False)
        elif lw.has_canonical_format:  # drop zero mantissas: rows keep their sorted order
            kept_before = np.concatenate(([0], np.cumsum(keep)))
            indptr = kept_before[lw.indptr].astype(lw.indptr.dtype)
            w = sp.csr_array((mant[keep], lw.indices[keep], indptr), shape=lw.shape, copy=False)
            delays = delays[keep]
        else:
            rows = np.repeat(np.arange(lw.shape[0]), np.diff(lw.indptr))[keep]
            w = sp.csr_array((mant[keep], (rows, lw.indices[keep])), shape=lw.shape)
            w.sort_indices()
            delays = delays[keep]
        del mant, keep
        if w.nnz:
            projections.append(IntProjection(proj.pre, proj.post, w, delays, exp, sign_mode_of(w.data)))
        del lw, w, delays
    return IntNetwork(pops, projections, list(lnet.inputs), dict(lnet.outputs), dict(lnet.source_pops), fmt,
                      target.name, lnet.dt, notes)


def _quantize_conv(proj: LoweredProjection, scale: float, fmt: NumericFormat, where: str) -> IntProjection:
    """A conv projection: the kernel is quantized once (one exponent for the projection) and the
    unrolled weights are exactly its mantissas, so every executor, shared or unrolled, sums the same."""
    assert proj.conv is not None
    kernel = proj.conv.kernel
    mant, exp = _quantize_weights(kernel.reshape(-1), scale, fmt, f"{where} ({proj.conv.describe()})",
                                  fmt.conv_exp_min)
    conv = proj.conv.with_kernel(mant.reshape(kernel.shape))
    w = conv.unrolled()
    return IntProjection(proj.pre, proj.post, w, np.zeros(w.nnz, np.int16), exp, sign_mode_of(mant[mant != 0]),
                         conv)
