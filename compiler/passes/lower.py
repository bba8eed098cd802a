"""Lower the float Network to what one core executes: CUBA-LIF populations with scalar decays.

Every NIR kind becomes (compiler/neuron.py) i' = alpha_i i + gain_in I, v' = alpha_v v + h i' + c.
Lowering rewrites it, per neuron, in *threshold units* so one integer CUBA-LIF runs it:

    u' = alpha_i u + sum_j w_ij s_j(t - 1 - d_ij)        (u = h i / (thr - v_reset))
    v' = alpha_v v + u' + b                              (v = (v_nir - v_reset) / (thr - v_reset))
    spike when v' > 1; v' = 0 on spike

Per-neuron gains, thresholds and resets fold into each neuron's row of weights and its bias,
which is exact in float. Only the decays must be one value per hardware population (Lava's
du/dv are per process), so a population whose neurons have different decays is **split** into
one lowered population per distinct (alpha_i, alpha_v) pair, at the decays' 12-bit resolution.
Non-spiking kinds (LI, CubaLI, I) become readouts: same dynamics, no threshold.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import ParameterError
from ..ir import (
    INPUT,
    FloatProjections,
    LoweredNetwork,
    LoweredPopulation,
    LoweredProjection,
    LoweredProjections,
    Network,
    Population,
    Projection,
)
from ..ir.conv import Conv
from ..ir.network import KIND_PARAMS
from ..neuron import CubaCoefficients, coefficients
from . import segments
from .segments import paused_gc

DECAY_RESOLUTION = 4096  # split decays that differ at the 12-bit level (Lava decay_shift = 12)
MAX_SPLITS = 64


def _group_by_decay(alpha_i: np.ndarray, alpha_v: np.ndarray) -> list[np.ndarray]:
    key = np.rint(alpha_i * DECAY_RESOLUTION).astype(np.int64) * (DECAY_RESOLUTION + 1) + \
        np.rint(alpha_v * DECAY_RESOLUTION).astype(np.int64)
    uniq, inverse = np.unique(key, return_inverse=True)
    return [np.flatnonzero(inverse == k) for k in range(uniq.size)]


@dataclass
class _Terms:
    """A population's lowered per-neuron terms (arrays may be views into a batch's arrays)."""

    c: CubaCoefficients
    span: np.ndarray  # threshold - reset (1 for readouts)
    offset: np.ndarray  # reset (0 for readouts)
    gain: np.ndarray  # factor on the neuron's incoming weights
    bias: np.ndarray
    driven: bool  # any nonzero constant drive
    decays: tuple[float, float] | None = None  # (alpha_i, alpha_v) when every neuron has the same: one group


def _terms(name: str, pop_size: int, c: CubaCoefficients, drive: np.ndarray) -> _Terms:
    """The lowered terms of neurons with coefficients `c` and constant drive `drive` (ParameterError names `name`)."""
    if c.spiking:
        span = c.thr - c.v_reset
        if np.any(span <= 0):
            raise ParameterError(
                f"population {name!r}: v_threshold must exceed v_reset (found threshold - reset = "
                f"{float(span.min()):g}); such a neuron fires every step. Fix: check the exported thresholds"
            )
        offset = c.v_reset
    else:
        span, offset = np.ones(pop_size), np.zeros(pop_size)
    gain = c.h * c.gain_in / span
    # Constant drive enters u each step; with current decay alpha_i it settles at
    # drive / (1 - alpha_i). Lava adds bias to v, so a Cuba population gets the settled value.
    settle = np.where(c.alpha_i < 1, 1.0 / np.maximum(1.0 - c.alpha_i, 1e-12), 1.0)
    bias = (gain * drive * settle) + (c.c + (c.alpha_v - 1.0) * offset) / span
    return _Terms(c, span, offset, gain, bias, bool(np.any(drive)))


BATCH_BELOW = 4096  # neurons: populations smaller than this are lowered a kind at a time, end to end


def _batched_terms(net: Network) -> dict[str, _Terms]:
    """_terms of the small populations, computed for all of one kind at once on their parameters end to end
    (a PACMAN-style graph has 10^3 populations: numpy's per-call cost, not arithmetic, is the time). Every
    operation is elementwise, so each neuron gets exactly its own population's values. A batch that raises
    is left out: its populations then raise their own errors, one at a time, as before."""
    by_kind: dict[tuple, list[str]] = {}
    for name, pop in net.populations.items():
        if pop.kind != INPUT and pop.size < BATCH_BELOW and pop.kind in KIND_PARAMS:
            # Same kind, parameters and dtypes: end to end, each neuron sees the same float operations.
            dtypes = tuple((k, np.asarray(v).dtype.str) for k, v in sorted(pop.params.items()))
            by_kind.setdefault((pop.kind, dtypes, pop.bias_or_zero().dtype.str), []).append(name)
    out: dict[str, _Terms] = {}
    for (kind, dtypes, _), names in by_kind.items():
        if len(names) < 2:
            continue
        members = [net.populations[n] for n in names]
        sizes = np.array([p.size for p in members], np.int64)
        try:
            params = {k: np.concatenate([np.asarray(p.params[k]).reshape(-1) for p in members]) for k, _ in dtypes}
            if any(v.size != sizes.sum() for v in params.values()):
                continue
            merged = Population(names[0], kind, (int(sizes.sum()),), params)
            c = coefficients(merged, net.dt, net.discretization)
            drive = np.concatenate([p.bias_or_zero().reshape(-1) for p in members])
            whole = _terms(names[0], merged.size, c, drive)
        except (ParameterError, ValueError):
            continue
        out.update(_split_terms(names, sizes, whole, drive))
    return out


def _split_terms(names: list[str], sizes: np.ndarray, whole: _Terms, drive: np.ndarray) -> dict[str, _Terms]:
    bounds = segments.offsets(sizes).tolist()
    driven = segments.segment_count(drive != 0, sizes) > 0
    same = np.ones(len(names), bool)  # every neuron of the population has the same decays (bit for bit)
    for alpha in (whole.c.alpha_i, whole.c.alpha_v):
        bits = alpha.view(np.uint64)
        first = np.repeat(bits[np.array(bounds[:-1])], sizes)
        same &= segments.segment_count(bits != first, sizes) == 0
        same &= ~np.isnan(alpha[np.array(bounds[:-1])])
    out = {}
    c = whole.c
    for j, name in enumerate(names):
        a, b = bounds[j], bounds[j + 1]
        part = CubaCoefficients(c.alpha_i[a:b], c.gain_in[a:b], c.alpha_v[a:b], c.h[a:b], c.c[a:b], c.thr[a:b],
                                c.v_reset[a:b], c.spiking, c.has_current)
        decays = (float(c.alpha_i[a]), float(c.alpha_v[a])) if same[j] else None
        out[name] = _Terms(part, whole.span[a:b], whole.offset[a:b], whole.gain[a:b], whole.bias[a:b],
                           bool(driven[j]), decays)
    return out


def lower(net: Network) -> LoweredNetwork:
    pops: dict[str, LoweredPopulation] = {}
    source_pops: dict[str, list[str]] = {}
    row_gain: dict[str, np.ndarray] = {}  # per source neuron: factor applied to its incoming weights
    notes: list[str] = []
    batched = _batched_terms(net)
    for name, pop in net.populations.items():
        if pop.kind == INPUT:
            pops[name] = LoweredPopulation(name, name, np.arange(pop.size), pop.shape, INPUT)
            source_pops[name] = [name]
            continue
        t = batched.get(name)
        if t is None:
            t = _terms(name, pop.size, coefficients(pop, net.dt, net.discretization), pop.bias_or_zero())
        c, span, offset, bias = t.c, t.span, t.offset, t.bias
        row_gain[name] = t.gain
        if c.has_current and t.driven:
            notes.append(f"{name}: constant input to a current-based neuron enters v at its settled value "
                         "(Lava adds bias to v, not to u); the first ~tau_syn steps differ")
        if t.decays is not None:  # one decay pair: one lowered population, no split to look for
            pops[name] = LoweredPopulation(name, name, np.arange(pop.size), pop.shape, pop.kind,
                                           alpha_i=t.decays[0], alpha_v=t.decays[1], bias=bias, spiking=c.spiking,
                                           v_scale=span, v_offset=offset)
            source_pops[name] = [name]
            continue
        groups = _group_by_decay(c.alpha_i, c.alpha_v)
        if len(groups) > MAX_SPLITS:
            warnings.warn(f"population {name!r} has {len(groups)} distinct decays; sharing their median "
                          f"(more than {MAX_SPLITS} splits)", stacklevel=2)
            notes.append(f"{name}: {len(groups)} decays shared-quantized to the median")
            groups = [np.arange(pop.size)]
        names = [name] if len(groups) == 1 else [f"{name}#{k}" for k in range(len(groups))]
        if len(groups) > 1:
            notes.append(f"{name}: split into {len(groups)} populations by decay (one du/dv per core process)")
        source_pops[name] = names
        for lname, idx in zip(names, groups, strict=True):
            pops[lname] = LoweredPopulation(
                lname, name, idx, (idx.size,) if len(groups) > 1 else pop.shape, pop.kind,
                alpha_i=_median(c.alpha_i[idx]), alpha_v=_median(c.alpha_v[idx]),
                bias=bias[idx], spiking=c.spiking, v_scale=span[idx], v_offset=offset[idx],
            )
    table = net.projections if isinstance(net.projections, FloatProjections) else None
    projections: list[LoweredProjection] | LoweredProjections | None = None
    if table is not None:
        projections = _lowered_table(table, pops, source_pops, row_gain, notes)
    if projections is None:
        with paused_gc():
            projections = _lowered_projections(net, pops, source_pops, row_gain, notes)
    outputs = {out: source_pops[pop] for out, pop in net.outputs.items()}
    return LoweredNetwork(pops, projections, list(net.inputs), outputs, net.dt, source_pops, notes)


def _median(values: np.ndarray) -> float:
    """float(np.median(values)), without its partition when every value is the same (the usual
    population: np.median of equal values is that value; a third of lower's per-population time)."""
    shared = _shared_value(values)
    return float(np.median(values)) if math.isnan(shared) else shared


def _lowered_projections(net: Network, pops: dict[str, LoweredPopulation], source_pops: dict[str, list[str]],
                         row_gain: dict[str, np.ndarray], notes: list[str]) -> list[LoweredProjection]:
    """Every projection in threshold units, per pair of lowered populations (notes appended).

    A whole matrix keeps the float network's arrays and carries its post neurons' gains (one float
    when they share one, bit for bit): the scaled weights are made a batch at a time by quantize."""
    size = {name: lp.size for name, lp in pops.items()}
    shared = {post: _shared_value(gain) for post, gain in row_gain.items()}
    projections: list[LoweredProjection] = []
    for proj in net.projections:  # one object each: the IR's form
        w = proj.weights  # read only: lowered projections share its arrays (memory at 100M synapses)
        gain = row_gain[proj.post]
        if w.shape[0] != gain.size:
            raise ValueError(f"projection {proj.pre!r} -> {proj.post!r}: {w.shape[0]} weight rows for "
                             f"{gain.size} neurons of {proj.post!r}")
        pres, posts = source_pops[proj.pre], source_pops[proj.post]
        single = len(pres) == 1 and len(posts) == 1
        if single and w.shape == (size[posts[0]], size[pres[0]]):
            if segments.nnz(w):
                conv = None if proj.conv is None else _lowered_conv(proj, row_gain, notes, shareable=True)
                one = shared[proj.post]
                projections.append(LoweredProjection(pres[0], posts[0], w, proj.delays, conv,
                                                     gain if math.isnan(one) else one))
            continue
        # Split populations (heterogeneous decays: rare, small networks): one block per pair of parts.
        data = LoweredProjection(proj.pre, proj.post, w, proj.delays, gain=gain).scaled_data()
        for pre_name in pres:
            for post_name in posts:
                sub, sub_delays = _submatrix(w, data, proj.delays, pops[post_name].index, pops[pre_name].index)
                if sub.nnz:
                    conv = _lowered_conv(proj, row_gain, notes, shareable=single)
                    projections.append(LoweredProjection(pre_name, post_name, sub, sub_delays, conv))
    return projections


def _lowered_table(table: FloatProjections, pops: dict[str, LoweredPopulation], source_pops: dict[str, list[str]],
                   row_gain: dict[str, np.ndarray], notes: list[str]) -> LoweredProjections | None:
    """_lowered_projections for projections end to end, without an object per projection: the same
    projections, arrays and gains. None when a population was split (the per-projection path does that)."""
    if any(len(source_pops[name]) != 1 for name in table.names):
        return None
    size = np.array([pops[name].size for name in table.names], np.int64)
    gains = [row_gain.get(name) for name in table.names]  # None: an input (no incoming weights)
    rows = np.array([-1 if g is None else g.size for g in gains], np.int64)
    b = table.blocks
    bad = np.flatnonzero(b.n_post != rows[table.post])
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"projection {table.pre_name(k)!r} -> {table.post_name(k)!r}: {int(b.n_post[k])} weight "
                         f"rows for {int(rows[table.post[k]])} neurons of {table.post_name(k)!r}")
    if np.any(b.n_pre != size[table.pre]):
        return None
    shared = np.array([math.nan if g is None else _shared_value(g) for g in gains], np.float64)
    live = np.flatnonzero(b.nnz > 0)
    gain = shared[table.post[live]]
    per_row = np.flatnonzero(np.isnan(gain))  # posts whose neurons' gains differ
    row = {j: gains[p] for j, p in zip(per_row.tolist(), table.post[live[per_row]].tolist(), strict=True)}
    conv = {}
    for j in np.flatnonzero(np.isin(live, list(table.conv))).tolist():  # few: convolutions keep their kernel
        conv[j] = _lowered_conv(table[int(live[j])], row_gain, notes, shareable=True)
    conv = {j: c for j, c in conv.items() if c is not None}
    blocks = b if live.size == b.size else b.take(live)
    return LoweredProjections(table.names, table.pre[live], table.post[live], blocks, conv, gain=gain, row_gain=row)


def _shared_value(values: np.ndarray) -> float:
    """The one value every entry of `values` has (bit for bit: 0.0 and -0.0 differ in a product), or NaN."""
    if values.size == 0 or values.dtype != np.float64:
        return math.nan
    bits = values.view(np.uint64)
    return float(values[0]) if not np.isnan(values[0]) and bool(np.all(bits == bits[0])) else math.nan


def _lowered_conv(proj: Projection, row_gain: dict[str, np.ndarray], notes: list[str],
                  shareable: bool) -> Conv | None:
    """The projection's kernel in threshold units, or None (noted) when it must stay unrolled: its
    gains differ within a channel, or it is a block of a split population (`shareable` False)."""
    if proj.conv is None:
        return None
    conv = _scaled_kernel(proj.conv, row_gain[proj.post]) if shareable else None
    if conv is None:
        notes.append(f"{proj.pre} -> {proj.post}: conv stored unrolled (its neurons differ "
                     "within an output channel, so one kernel cannot serve them)")
    return conv


def _scaled_kernel(conv: Conv | None, gain: np.ndarray) -> Conv | None:
    """The kernel in threshold units, when every neuron of an output channel has the same gain (one
    kernel per channel can then serve them all); else None (the projection stays unrolled)."""
    if conv is None:
        return None
    per_channel = gain.reshape(conv.out_shape[0], -1)
    if not np.all(per_channel == per_channel[:, :1]):
        return None
    return conv.with_kernel(conv.kernel * per_channel[:, 0][:, None, None, None])


def _submatrix(w: sp.csr_array, data: np.ndarray, delays: np.ndarray, rows: np.ndarray,
               cols: np.ndarray) -> tuple[sp.csr_array, np.ndarray]:
    """Rows/cols of a CSR matrix with replaced data, keeping delays aligned."""
    if rows.size == w.shape[0] and cols.size == w.shape[1]:
        # Shared, not copied: no pass writes into index or delay arrays.
        out = sp.csr_array((data, w.indices, w.indptr), shape=w.shape, copy=False)
        return out, delays
    # Carry (data, delay) through a position index so alignment survives slicing.
    pos = sp.csr_array((np.arange(1, w.nnz + 1, dtype=np.float64), w.indices, w.indptr), shape=w.shape)
    sub = pos[rows][:, cols]
    sub = sp.csr_array(sub)
    sub.sort_indices()
    take = sub.data.astype(np.int64) - 1
    out = sp.csr_array((data[take], sub.indices, sub.indptr), shape=sub.shape)
    return out, delays[take]
