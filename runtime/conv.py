"""Event-driven convolution: each input spike scatters the shared kernel; no unrolled matrix exists.

A table built once per projection lists, for every input position (y, x) of the map, the kernel taps
(i, j) that carry it onto an output position (y + py - i*dy divisible by sy and in range, the same for
x) and that output position: the same for every channel, so it is H*W*taps entries, not a matrix. Per
step, each spike gathers its position's entries and adds kernel[:, ci, i, j] of its group's output
channels there, in a fixed number of numpy calls whatever the kernel size. The sum over a step is
exactly the unrolled projection's (integer mantissas summed, then the weight exponent's shift), so it
is bit-exact with `Conv.unrolled()`.
The reference simulator and the SpiNNaker table executor both use it.
"""

from __future__ import annotations

import numpy as np

from ..compiler.ir.conv import Conv
from ..compiler.ir.lif import shift_by_exponent


class ConvEvents:
    """One conv projection (or the output rows [out_start, out_stop) of it, as one core holds)."""

    def __init__(self, conv: Conv, weight_exp: int = 0, out_start: int = 0, out_stop: int | None = None):
        # A pool prefix sums the spikes into counts on the pooled map first (its taps are not synapses).
        self.pool = ConvEvents(conv.pool.as_conv(conv.in_shape)) if conv.pool is not None else None
        conv = conv.stage()
        self.conv = conv
        self.weight_exp = int(weight_exp)
        self.kernel = np.asarray(conv.kernel, np.int64)
        self.out_start = out_start
        self.out_stop = conv.n_out if out_stop is None else out_stop
        self.n_post = self.out_stop - self.out_start
        self.n_delays = 1
        self.events = 0  # synaptic events delivered so far (nonzero kernel weights reached by a spike)
        self._build_table()

    def _build_table(self) -> None:
        conv = self.conv
        c_out, c_in_g, kh, kw = conv.kernel.shape
        _, h_in, w_in = conv.in_shape
        _, h_out, w_out = conv.out_shape
        (sy, sx), (py, px), (dy, dx) = conv.stride, conv.padding, conv.dilation
        # One entry per (input position, tap) that lands on an output position; taps all-zero in the kernel skipped.
        live = np.flatnonzero(np.any(conv.kernel != 0, axis=(0, 1)).reshape(-1))
        i, j = np.divmod(live, kw)
        y, x = np.divmod(np.arange(h_in * w_in), w_in)
        ny = y[:, None] + py - (i * dy)[None, :]
        nx = x[:, None] + px - (j * dx)[None, :]
        ok = (ny >= 0) & (nx >= 0) & (ny % sy == 0) & (nx % sx == 0) & (ny // sy < h_out) & (nx // sx < w_out)
        position, which = np.nonzero(ok)  # row-major: grouped by input position
        self.table_indptr = np.searchsorted(position, np.arange(h_in * w_in + 1)).astype(np.int64)
        self.table_tap = live[which]
        self.table_out = ((ny // sy) * w_out + nx // sx)[position, which].astype(np.int64)
        groups = conv.groups
        # (groups, C_in per group, taps, C_out per group): one row of out-channel weights per (group, ci, tap)
        self.weights_by_tap = np.ascontiguousarray(
            self.kernel.reshape(groups, conv.out_per_group, c_in_g, kh * kw).transpose(0, 2, 3, 1))
        self.out_channels = np.arange(conv.out_per_group)

    def accumulate(self, spikes: np.ndarray, binary: bool = False) -> np.ndarray | None:
        """(1, n_post) int64 input of one step's spikes (counts or bools over the conv's input), shifted
        by the weight exponent; None when no spike reaches an output."""
        if self.pool is not None:
            pooled = self.pool.scatter(spikes, binary)
            if pooled is None:
                return None
            spikes, binary = pooled, False
        acc = self.scatter(spikes, binary)
        if acc is None:
            return None
        return shift_by_exponent(acc[self.out_start:self.out_stop].reshape(1, self.n_post), self.weight_exp)

    def scatter(self, spikes: np.ndarray, binary: bool = False) -> np.ndarray | None:
        """The summed kernel mantissas over the whole output (n_out int64) for one step's input, unshifted."""
        hits = self.hits(spikes, binary)
        if hits is None:
            return None
        target, value = hits
        self.events += int(np.count_nonzero(value))
        # float64 sums of integers are exact below 2**53, far above any state width
        return np.bincount(target, weights=value.astype(np.float64), minlength=self.conv.n_out).astype(np.int64)

    def event_targets(self, spikes: np.ndarray) -> np.ndarray:
        """The output neuron of every synaptic event of one step's spikes (a pool prefix pools first):
        one per nonzero kernel weight a (pooled) input reaches, which is what every executor counts."""
        if self.pool is not None:
            pooled = self.pool.scatter(spikes)
            if pooled is None:
                return np.zeros(0, np.int64)
            spikes = pooled
        hits = self.hits(spikes)
        if hits is None:
            return np.zeros(0, np.int64)
        return hits[0][hits[1] != 0]

    def hits(self, spikes: np.ndarray, binary: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
        """(output neuron, weight x input value) of every kernel tap the step's input reaches."""
        active = np.flatnonzero(spikes)
        if active.size == 0:
            return None
        counts = None if binary else np.asarray(spikes)[active].astype(np.int64)
        conv = self.conv
        _, h_in, w_in = conv.in_shape
        n_pos_out = conv.out_shape[1] * conv.out_shape[2]
        ci, position = np.divmod(active, h_in * w_in)
        starts = self.table_indptr[position]
        lengths = self.table_indptr[position + 1] - starts
        total = int(lengths.sum())
        if total == 0:
            return None
        spike = np.repeat(np.arange(active.size), lengths)
        entry = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(total)
        group, ci_local = np.divmod(ci[spike], conv.in_per_group)
        weights = self.weights_by_tap[group, ci_local, self.table_tap[entry]]  # (entries, C_out per group)
        if counts is not None:
            weights = weights * counts[spike, None]
        co = group[:, None] * conv.out_per_group + self.out_channels[None, :]
        target = co * n_pos_out + self.table_out[entry][:, None]
        return target.ravel(), weights.ravel()
