"""Event-driven convolution: each input spike scatters the shared kernel; no unrolled matrix exists.

Per step and per kernel tap (i, j), the spikes whose position maps onto an output position through
that tap (y + py - i*dy divisible by sy and in range, the same for x) add kernel[:, ci, i, j] of their
group's output channels there. The sum over a step is exactly the unrolled projection's (integer
mantissas summed, then the weight exponent's shift), so it is bit-exact with `Conv.unrolled()`.
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
        c_out, c_in_g, kh, kw = conv.kernel.shape
        self.taps = [(i, j) for i in range(kh) for j in range(kw) if np.any(conv.kernel[:, :, i, j])]
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
        c_in, h_in, w_in = conv.in_shape
        c_out, h_out, w_out = conv.out_shape
        sy, sx = conv.stride
        py, px = conv.padding
        dy, dx = conv.dilation
        ci, rem = np.divmod(active, h_in * w_in)
        y, x = np.divmod(rem, w_in)
        group = ci // conv.in_per_group
        ci_local = ci - group * conv.in_per_group
        first_out = group * conv.out_per_group
        targets: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for i, j in self.taps:
            ny = y + py - i * dy
            nx = x + px - j * dx
            ok = (ny >= 0) & (nx >= 0) & (ny % sy == 0) & (nx % sx == 0)
            yo, xo = ny // sy, nx // sx
            ok &= (yo < h_out) & (xo < w_out)
            if not ok.any():
                continue
            co = first_out[ok, None] + self.out_channels[None, :]  # (valid spikes, out channels of the group)
            weights = self.kernel[co, ci_local[ok, None], i, j]
            if counts is not None:
                weights = weights * counts[ok, None]
            targets.append(((co * h_out + yo[ok, None]) * w_out + xo[ok, None]).ravel())
            values.append(weights.ravel())
        if not targets:
            return None
        return np.concatenate(targets), np.concatenate(values)
