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
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import QuantizationError, UnsupportedNodeError
from ..ir import (
    INPUT,
    LIF,
    IntNetwork,
    IntPopulation,
    IntProjection,
    IntProjections,
    LoweredNetwork,
    LoweredProjection,
    LoweredProjections,
    sign_mode_of,
)
from ..ir.table import Blocks
from ..targets.target import NumericFormat, Target
from . import segments
from .segments import (
    batches,
    concat,
    csr,
    offsets,
    paused_gc,
    scaled_data,
    segment_count,
    segment_max,
    segment_min,
    split,
)

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


def _exponents(peak: np.ndarray, m_max: np.ndarray, exp_min: int) -> np.ndarray:
    """Per projection, the exponent e with peak / 2**e within the mantissa range `m_max` (peak > 0:
    its largest |weight| x scale), as small as `exp_min` allows."""
    over = peak > m_max
    ratio = np.where(over, peak / m_max, m_max / peak)
    # libm's log2 (math.log2) decides: numpy's SIMD log2 may differ from it by an ulp, which moves
    # ceil/floor only next to an integer, so those few are recomputed with math.log2.
    log = np.log2(ratio)
    near = np.flatnonzero(np.abs(log - np.rint(log)) < 1e-6)
    log[near] = np.fromiter(map(math.log2, ratio[near].tolist()), np.float64, near.size)
    exp = np.where(over, np.ceil(log), -np.floor(log)).astype(np.int64)
    return np.maximum(exp, exp_min)


def _exponent_error(where: str, peak: float, exp: int, fmt: NumericFormat) -> QuantizationError:
    return QuantizationError(
        f"{where}: largest weight {peak:.4g} (threshold units x scale) needs exponent {exp}, above the "
        f"format's {fmt.weight_exp_max}. Fix: lower the weights or raise the threshold of the layer"
    )


def _mantissas(data: np.ndarray, scale, pow2, half, low, high, dtype: type) -> np.ndarray:
    """rint(data * scale / 2**exp) (mixed sign: to even values, half = 2; else half = 1), clipped.

    The factors are scalars (one projection) or per-synapse arrays (a batch of projections); either
    way each synapse sees the same float operations, in place: one temporary, not four."""
    x = data * scale
    x /= pow2
    x /= half
    np.rint(x, out=x)
    x *= half
    np.clip(x, low, high, out=x)
    return x.astype(dtype)


def _quantize_weights(data: np.ndarray, scale: float, fmt: NumericFormat, where: str,
                      exp_min: int | None = None) -> tuple[np.ndarray, int]:
    """One array's mantissas and exponent (a conv kernel; projections are done in batches by `quantize`)."""
    mode = sign_mode_of(data)
    m_max = _mantissa_max(fmt, mode)
    peak = _abs_max(data) * scale
    if peak == 0:
        return np.zeros(data.size, mantissa_dtype(fmt)), 0
    exp = int(_exponents(np.array([peak]), np.array([m_max]), fmt.weight_exp_min if exp_min is None else exp_min)[0])
    if exp > fmt.weight_exp_max:
        raise _exponent_error(where, peak, exp, fmt)
    half, low = (2.0, -(fmt.weight_max + 1)) if mode == "mixed" else (1.0, -m_max)
    return _mantissas(data, scale, 2.0 ** exp, half, low, m_max, mantissa_dtype(fmt)), exp


def _quantize_bias(bias_v: np.ndarray, fmt: NumericFormat) -> tuple[np.ndarray, np.ndarray]:
    mmax = fmt.bias_mant_max
    mag = np.abs(bias_v)
    exp = np.zeros(bias_v.size, np.int64)
    big = mag > mmax
    exp[big] = np.ceil(np.log2(mag[big] / mmax)).astype(np.int64)
    exp = np.minimum(exp, fmt.bias_exp_max)
    mant = np.clip(np.rint(bias_v / (2.0 ** exp)), -mmax, mmax).astype(np.int64)
    return mant, exp


def _abs_peaks(arrays: list[np.ndarray]) -> np.ndarray:
    """max |values| of each array (0 for an empty one), in one pass over them end to end."""
    sizes = np.array([a.size for a in arrays], np.int64)
    if not arrays:
        return np.zeros(0)
    return segment_max(np.abs(concat(arrays)), sizes, 0.0)


def _choose_scale(fmt: NumericFormat, peaks: tuple[float, float] | None, bias_peak: float) -> float:
    """Largest scale <= default_scale at which every incoming weight and the bias fit the format.

    `peaks`: (smallest, largest) over the incoming non-empty projections of their largest |weight|
    (a conv's kernel), or None. min over projections of limit / peak is limit / the largest peak:
    division rounds monotonically, so this is exactly the per-projection minimum."""
    scale = float(min(default_scale(fmt), fmt.threshold_max))
    if peaks is not None:
        limit = _mantissa_max(fmt, "mixed") * 2.0 ** fmt.weight_exp_max
        if peaks[0] == 0:  # an all-zero projection: the per-projection limit / peak divided by zero here
            raise ZeroDivisionError("float division by zero")
        scale = min(scale, limit / peaks[1])
    if bias_peak > 0:
        limit = fmt.bias_mant_max * 2.0 ** fmt.bias_exp_max / (1 << fmt.activation_shift)
        scale = min(scale, limit / bias_peak)
    return scale


WEIGHTS_PER_BATCH = 1 << 18  # synapses quantized at once: per-synapse factors of ~10-20 MB
MODES = ("excitatory", "inhibitory", "mixed")


def quantize(lnet: LoweredNetwork, target: Target) -> IntNetwork:
    """The target's integer network (a new value: `lnet` is not changed; index and delay arrays are shared)."""
    fmt = target.format
    decay_max, unity = fmt.decay_max, fmt.decay_unity
    pops: dict[str, IntPopulation] = {}
    scales: dict[str, float] = {}
    notes = list(lnet.notes)
    projs = lnet.projections
    table = projs if isinstance(projs, LoweredProjections) and not projs.conv else None
    stats = _Stats.of(projs) if table is None else _Stats.of_table(table)
    peaks = _peaks_by_post(projs, stats) if table is None else _table_peaks_by_post(table, stats)
    neurons = [lp for lp in lnet.populations.values() if lp.kind != INPUT]
    bias_peaks = _abs_peaks([lp.bias for lp in neurons])
    for lp, bias_peak in zip(neurons, bias_peaks.tolist(), strict=True):
        name = lp.name
        if lp.kind not in target.neuron_kinds:
            raise UnsupportedNodeError(
                f"population {lp.source!r} is {lp.kind}, which {target.name} does not run (it runs "
                f"{', '.join(target.neuron_kinds)}). Fix: convert the layer, or choose another target"
            )
        scale = _choose_scale(fmt, peaks.get(name), bias_peak)
        if scale < 1:
            raise QuantizationError(
                f"population {name!r}: weights or bias exceed what {target.name}'s format can represent even "
                f"at threshold mantissa 1 (scale {scale:.3g}). Fix: rescale the layer (weights relative to "
                "threshold) or use a target with wider weights"
            )
        vth = int(math.floor(scale)) if lp.spiking else fmt.threshold_max
        scales[name] = float(vth) if lp.spiking else scale
    # The biases of every population at once (elementwise: each neuron gets its own population's scale).
    sizes = np.array([lp.bias.size for lp in neurons], np.int64)
    unit = [scales[lp.name] * (1 << fmt.activation_shift) for lp in neurons]
    bias_v = concat([lp.bias for lp in neurons]) if neurons else np.zeros(0)
    bias_v = bias_v * np.repeat(np.array([scales[lp.name] for lp in neurons], np.float64), sizes)
    bias_v *= 1 << fmt.activation_shift
    mants, exps = (split(a, sizes) for a in _quantize_bias(bias_v, fmt))
    v_units = split(concat([lp.v_scale for lp in neurons]) / np.repeat(np.array(unit, np.float64),
                    [lp.v_scale.size for lp in neurons]), np.array([lp.v_scale.size for lp in neurons])) \
        if neurons else []
    made = {}
    for lp, mant, exp, v_unit in zip(neurons, mants, exps, v_units, strict=True):
        scale = scales[lp.name]
        vth = int(scale) if lp.spiking else fmt.threshold_max
        du = min(max(round((1.0 - lp.alpha_i) * unity) - 1, 0), decay_max)
        dv = min(max(round((1.0 - lp.alpha_v) * unity), 0), decay_max)
        made[lp.name] = IntPopulation(lp.name, lp.source, lp.index, lp.shape, LIF, du, dv, vth, mant, exp, lp.spiking,
                                      v_unit=v_unit, v_offset=lp.v_offset)
    for name, lp in lnet.populations.items():
        pops[name] = made[name] if name in made else IntPopulation(name, lp.source, lp.index, lp.shape, INPUT)
    if table is not None:
        projections: list[IntProjection] | IntProjections = _int_table(table, stats, scales, target)
    else:
        with paused_gc():
            projections = _int_projections(projs, stats, scales, target)
    return IntNetwork(pops, projections, list(lnet.inputs), dict(lnet.outputs), dict(lnet.source_pops), fmt,
                      target.name, lnet.dt, notes)


@dataclass
class _Stats:
    """Per projection, from one pass over all projections' weights and delays end to end."""

    nnz: np.ndarray
    w_min: np.ndarray  # 0 where empty
    w_max: np.ndarray
    n_delays: np.ndarray
    d_min: np.ndarray
    d_max: np.ndarray
    conv: np.ndarray  # bool: a conv projection (quantized through its kernel)

    @classmethod
    def of(cls, projs: list[LoweredProjection]) -> _Stats:
        n = len(projs)
        nnz = np.fromiter((segments.nnz(p.base) for p in projs), np.int64, n)
        n_delays = np.fromiter((p.delays.size for p in projs), np.int64, n)
        w_min, w_max = np.zeros(n), np.zeros(n)
        d_min, d_max = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for a, b in batches(np.maximum(nnz, n_delays), WEIGHTS_PER_BATCH):
            data = scaled_data(projs[a:b])
            w_min[a:b], w_max[a:b] = segment_min(data, nnz[a:b]), segment_max(data, nnz[a:b])
            delays = concat([p.delays for p in projs[a:b]])
            d_min[a:b], d_max[a:b] = segment_min(delays, n_delays[a:b]), segment_max(delays, n_delays[a:b])
        conv = np.fromiter((p.conv is not None for p in projs), bool, n)
        return cls(nnz, w_min, w_max, n_delays, d_min, d_max, conv)

    @classmethod
    def of_table(cls, table: LoweredProjections) -> _Stats:
        b = table.blocks
        nnz = b.nnz
        n = nnz.size
        w_min, w_max = np.zeros(n), np.zeros(n)
        d_min, d_max = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for a, z in batches(nnz, WEIGHTS_PER_BATCH):
            data = table.scaled_data(a, z)
            w_min[a:z], w_max[a:z] = segment_min(data, nnz[a:z]), segment_max(data, nnz[a:z])
            delays = b.delays[b.syn_ptr[a]:b.syn_ptr[z]]
            d_min[a:z], d_max[a:z] = segment_min(delays, nnz[a:z]), segment_max(delays, nnz[a:z])
        return cls(nnz, w_min, w_max, nnz, d_min, d_max, np.zeros(n, bool))

    def abs_max(self) -> np.ndarray:
        """max |weight| per projection (0 where empty), without an |data| temporary."""
        return np.maximum(self.w_max, -self.w_min)

    def mixed(self) -> np.ndarray:
        """sign_mode_of(weights.data) == 'mixed', per projection."""
        return (self.nnz > 0) & (self.w_min < 0) & (self.w_max > 0)


def _peaks_by_post(projs: list[LoweredProjection], stats: _Stats) -> dict[str, tuple[float, float]]:
    """Post population -> (smallest, largest) max |weight| of its non-empty incoming projections."""
    peak = stats.abs_max()
    for k in np.flatnonzero(stats.conv).tolist():  # a conv's scale is its kernel's (few projections)
        peak[k] = _abs_max(projs[k].conv.kernel)
    live = np.flatnonzero(stats.nnz > 0)
    posts, post_of = np.unique(np.array([projs[k].post for k in live.tolist()], dtype=str), return_inverse=True)
    lo, hi = np.full(posts.size, np.inf), np.full(posts.size, -np.inf)
    np.minimum.at(lo, post_of, peak[live])
    np.maximum.at(hi, post_of, peak[live])
    return {post: (float(a), float(b)) for post, a, b in zip(posts.tolist(), lo.tolist(), hi.tolist(), strict=True)}


def _table_peaks_by_post(table: LoweredProjections, stats: _Stats) -> dict[str, tuple[float, float]]:
    """_peaks_by_post for projections end to end (no convolutions among them)."""
    peak = stats.abs_max()
    live = stats.nnz > 0
    lo, hi = np.full(len(table.names), np.inf), np.full(len(table.names), -np.inf)
    np.minimum.at(lo, table.post[live], peak[live])
    np.maximum.at(hi, table.post[live], peak[live])
    return {table.names[p]: (float(lo[p]), float(hi[p])) for p in np.unique(table.post[live]).tolist()}


def _int_table(table: LoweredProjections, stats: _Stats, scales: dict[str, float], target: Target) -> IntProjections:
    """_int_projections for projections end to end (no convolutions among them): the same integer
    projections, as one IntProjections, with no object per projection."""
    fmt = target.format
    n = len(table)
    scale = np.array([scales.get(name, math.nan) for name in table.names], np.float64)[table.post]
    mixed = stats.mixed()
    m_max = np.where(mixed, _mantissa_max(fmt, "mixed"), fmt.weight_max)
    peak = stats.abs_max() * scale
    todo = peak != 0  # peak 0: every mantissa is 0, the projection is dropped
    exp = np.zeros(n, np.int64)
    exp[todo] = _exponents(peak[todo], m_max[todo], fmt.weight_exp_min)
    bad = ((stats.n_delays > 0) & (stats.d_max > fmt.max_delay)) | (todo & (exp > fmt.weight_exp_max))
    if bad.any():
        k = int(np.argmax(bad))
        where = f"projection {table.pre_name(k)!r} -> {table.post_name(k)!r}"
        if stats.n_delays[k] and stats.d_max[k] > fmt.max_delay:
            raise QuantizationError(
                f"{where}: delay {int(stats.d_max[k])} steps exceeds {target.name}'s maximum "
                f"of {fmt.max_delay}. Fix: shorten the delays, use a larger dt, or a target with longer delays"
            )
        raise _exponent_error(where, float(peak[k]), int(exp[k]), fmt)
    blocks, n_kept, modes = _mantissa_blocks(table, stats, todo, scale, exp, mixed, m_max, fmt)
    keep = n_kept > 0
    blocks = blocks if keep.all() else blocks.take(keep)
    return IntProjections(table.names, table.pre[keep], table.post[keep], blocks, {}, weight_exp=exp[keep],
                          sign_mode=modes[keep])


def _mantissa_blocks(table: LoweredProjections, stats: _Stats, todo: np.ndarray, scale: np.ndarray, exp: np.ndarray,
                     mixed: np.ndarray, m_max: np.ndarray, fmt: NumericFormat) -> tuple[Blocks, np.ndarray, np.ndarray]:
    """The integer weights of every projection (synapses whose mantissa is 0 dropped; a projection outside
    `todo` keeps none), its number of synapses kept and its sign mode (an index into MODES).

    A batch of projections at a time, as _weights. Index arrays and delays stay the lowered network's
    (shared, not copied) until the first synapse is dropped; from there they are copied, kept ones only,
    into arrays allocated once."""
    b = table.blocks
    dtype = mantissa_dtype(fmt)
    half = np.where(mixed, 2.0, 1.0)
    low = np.where(mixed, -(fmt.weight_max + 1), -m_max).astype(np.float64)
    high = m_max.astype(np.float64)
    pow2 = np.ldexp(1.0, exp)
    delays = b.delays.astype(_narrowest(stats), copy=False)
    total = int(b.syn_ptr[-1])
    nnz = b.nnz
    mant_all = np.empty(total, dtype)
    by_rows = b.has_rows
    indices = delays_out = rows = indptr = None  # allocated at the first dropped synapse
    n_kept, modes = np.zeros(nnz.size, np.int64), np.zeros(nnz.size, np.int8)
    done = 0  # synapses written to the outputs
    for a, z in batches(nnz, WEIGHTS_PER_BATCH):
        s0, s1 = int(b.syn_ptr[a]), int(b.syn_ptr[z])
        sizes = nnz[a:z]
        data = table.scaled_data(a, z)
        if z - a == 1:
            factors = (float(scale[a]), float(pow2[a]), float(half[a]), float(low[a]), float(high[a]))
        else:
            factors = tuple(np.repeat(f[a:z], sizes) for f in (scale, pow2, half, low, high))
        mant = _mantissas(data, *factors, dtype)
        del data, factors
        keep = mant != 0
        if not todo[a:z].all():
            keep &= np.repeat(todo[a:z], sizes)
        n_kept[a:z] = segment_count(keep, sizes)
        lo, hi = segment_min(mant, sizes), segment_max(mant, sizes)
        modes[a:z] = np.where(lo >= 0, 0, np.where(hi <= 0, 1, 2))
        if indices is None and keep.all():
            mant_all[s0:s1] = mant
            done = s1
            continue
        if indices is None:  # the first drop: everything before was kept as it is
            indices, delays_out = np.empty(total, b.indices.dtype), np.empty(total, delays.dtype)
            indices[:s0], delays_out[:s0] = b.indices[:s0], delays[:s0]
            if by_rows:
                rows = np.empty(total, b.rows().dtype)
                rows[:s0] = b.rows()[:s0]
            else:
                indptr = b.indptr.copy()
        kept = int(keep.sum())
        mant_all[done:done + kept] = mant[keep]
        indices[done:done + kept] = b.indices[s0:s1][keep]
        delays_out[done:done + kept] = delays[s0:s1][keep]
        if by_rows:
            rows[done:done + kept] = b.rows()[s0:s1][keep]
        else:  # each projection's indptr counts the kept synapses before each of its rows
            before = np.zeros(s1 - s0 + 1, np.int64)
            np.cumsum(keep, out=before[1:])
            p0, p1 = int(b.ptr_ptr[a]), int(b.ptr_ptr[z])
            base = np.repeat(b.syn_ptr[a:z] - s0, b.n_post[a:z] + 1)
            indptr[p0:p1] = before[base + b.indptr[p0:p1]] - before[base]
        done += kept
    if indices is None:
        return b.with_data(mant_all, delays), n_kept, modes
    form = {"rows": rows[:done]} if by_rows else {"indptr": indptr, "ptr_ptr": b.ptr_ptr}
    return Blocks(b.n_post, b.n_pre, offsets(n_kept), indices[:done], mant_all[:done], delays_out[:done],
                  **form), n_kept, modes


def _narrowest(stats: _Stats) -> type:
    """compact_int's type for every delay of the network at once."""
    live = stats.n_delays > 0
    lo, hi = (int(stats.d_min[live].min()), int(stats.d_max[live].max())) if live.any() else (0, 0)
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return dtype
    return np.int64


def _int_projections(projs: list[LoweredProjection], stats: _Stats, scales: dict[str, float],
                     target: Target) -> list[IntProjection]:
    """Every projection's integer weights, in the lowered order (empty ones dropped).

    Exponents, sign modes and the checks come from the per-projection stats; the mantissas are
    computed a batch of projections at a time on their concatenated weights."""
    fmt = target.format
    n = len(projs)
    scale = np.array([scales[p.post] for p in projs], np.float64)
    mixed = stats.mixed()
    m_max = np.where(mixed, _mantissa_max(fmt, "mixed"), fmt.weight_max)
    peak = stats.abs_max() * scale
    todo = ~stats.conv & (peak != 0)  # peak 0: every mantissa is 0, the projection is dropped
    exp = np.zeros(n, np.int64)
    exp[todo] = _exponents(peak[todo], m_max[todo], fmt.weight_exp_min)
    # The errors the per-projection loop raised, in its order: a delay beyond the format, then a
    # weight exponent beyond it (a conv's, from its kernel, raised by quantizing it).
    bad = ((stats.n_delays > 0) & (stats.d_max > fmt.max_delay)) | (todo & (exp > fmt.weight_exp_max))
    first = int(np.argmax(bad)) if bad.any() else n
    convs = {k: _quantize_conv(projs[k], scales[projs[k].post], fmt, _where(projs[k]))
             for k in np.flatnonzero(stats.conv[:first]).tolist()}
    if first < n:
        if stats.n_delays[first] and stats.d_max[first] > fmt.max_delay:
            raise QuantizationError(
                f"{_where(projs[first])}: delay {int(stats.d_max[first])} steps exceeds {target.name}'s maximum "
                f"of {fmt.max_delay}. Fix: shorten the delays, use a larger dt, or a target with longer delays"
            )
        raise _exponent_error(_where(projs[first]), float(peak[first]), int(exp[first]), fmt)
    weights = _weights(projs, _compact_delays(projs, stats), stats.nnz, todo, scale, exp, mixed, m_max, fmt)
    exps = exp.tolist()
    out: list[IntProjection] = []
    for k, proj in enumerate(projs):  # one object per projection: the IR's form
        if k in convs:
            if convs[k].weights.nnz:
                out.append(convs[k])
        elif weights[k] is not None:
            w, delays, mode = weights[k]
            out.append(IntProjection(proj.pre, proj.post, w, delays, exps[k], mode))
    return out


def _where(proj: LoweredProjection) -> str:
    return f"projection {proj.pre!r} -> {proj.post!r}"


def _compact_delays(projs: list[LoweredProjection], stats: _Stats) -> list[np.ndarray]:
    """compact_int(delays) per projection: the same arrays where already narrowest (shared with the
    lowered network), the others converted a batch at a time, per integer type."""
    types = (np.int16, np.int32, np.int64)
    narrowest = np.full(len(projs), len(types) - 1)
    for t in reversed(range(len(types) - 1)):
        info = np.iinfo(types[t])
        narrowest[(info.min <= stats.d_min) & (stats.d_max <= info.max)] = t
    out = [p.delays for p in projs]
    for t, dtype in enumerate(types):
        change = np.array([k for k in np.flatnonzero(narrowest == t).tolist() if out[k].dtype != dtype], np.int64)
        for a, b in batches(stats.n_delays[change], WEIGHTS_PER_BATCH):
            ks = change[a:b].tolist()
            merged = concat([out[k] for k in ks]).astype(dtype, copy=False)
            for k, d in zip(ks, split(merged, stats.n_delays[ks]), strict=True):
                out[k] = d
    return out


def _weights(projs: list[LoweredProjection], delays: list[np.ndarray], nnz: np.ndarray, todo: np.ndarray,
             scale: np.ndarray, exp: np.ndarray, mixed: np.ndarray, m_max: np.ndarray, fmt: NumericFormat
             ) -> list[tuple[sp.csr_array, np.ndarray, str] | None]:
    """Per projection: (integer weights, their delays, sign mode), or None outside `todo` or when no
    synapse keeps a mantissa; synapses whose mantissa is 0 are dropped.

    Mantissas a batch at a time: per-synapse factors for a batch of projections' scaled weights; a
    projection alone (larger than a batch) gets scalars, the same arithmetic per synapse."""
    dtype = mantissa_dtype(fmt)
    half = np.where(mixed, 2.0, 1.0)
    low = np.where(mixed, -(fmt.weight_max + 1), -m_max).astype(np.float64)
    high = m_max.astype(np.float64)
    pow2 = np.ldexp(1.0, exp)
    idx = np.flatnonzero(todo)
    out: list[tuple[sp.csr_array, np.ndarray, str] | None] = [None] * len(projs)
    for a, b in batches(nnz[idx], WEIGHTS_PER_BATCH):
        ks, sizes = idx[a:b], nnz[idx[a:b]]
        data = scaled_data([projs[k] for k in ks.tolist()])
        if b - a == 1:
            k = int(ks[0])
            factors = (float(scale[k]), float(pow2[k]), float(half[k]), float(low[k]), float(high[k]))
        else:
            factors = tuple(np.repeat(f[ks], sizes) for f in (scale, pow2, half, low, high))
        mant = _mantissas(data, *factors, dtype)
        del data, factors
        keep = mant != 0
        n_kept = segment_count(keep, sizes)
        starts = offsets(sizes)
        lo, hi = segment_min(mant, sizes), segment_max(mant, sizes)
        modes = np.where(lo >= 0, 0, np.where(hi <= 0, 1, 2)).tolist()
        whole, some = (n_kept == sizes).tolist(), (n_kept > 0).tolist()
        parts, bounds = split(mant, sizes), starts.tolist()
        for j, k in enumerate(ks.tolist()):
            lw = projs[k].base
            if whole[j]:  # index arrays (and delays) shared with the lowered (and float) network, not copied
                out[k] = (csr(parts[j], lw.indices, lw.indptr, lw.shape), delays[k], MODES[modes[j]])
            elif some[j]:
                mask = keep[bounds[j]:bounds[j + 1]]
                w, summed = _kept(lw, parts[j], mask)
                out[k] = (w, delays[k][mask], sign_mode_of(w.data) if summed else MODES[modes[j]])
    return out


def _kept(lw: sp.csr_array, mant: np.ndarray, keep: np.ndarray) -> tuple[sp.csr_array, bool]:
    """The integer weights: `lw`'s pattern with mantissas `mant`, without the synapses `keep` drops;
    and whether duplicates were summed (a non-canonical `lw`: the data are no longer `mant`'s)."""
    if lw.has_canonical_format:  # drop zero mantissas: rows keep their sorted order
        kept_before = np.concatenate(([0], np.cumsum(keep)))
        indptr = kept_before[lw.indptr].astype(lw.indptr.dtype)
        return csr(mant[keep], lw.indices[keep], indptr, lw.shape), False
    rows = np.repeat(np.arange(lw.shape[0]), np.diff(lw.indptr))[keep]
    w = sp.csr_array((mant[keep], (rows, lw.indices[keep])), shape=lw.shape)
    w.sort_indices()
    return w, True


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
