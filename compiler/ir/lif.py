"""The integer CUBA-LIF every executor runs: one home for its arithmetic (docs/neuron-model.md §2).

This is Lava's bit-accurate Loihi model (`PyLifModelBitAcc` with Dense/DelayDense `PyBitAcc`
models), its bit widths named and taken from the target's `NumericFormat`:

    acc    = sum of one send step's weight mantissas per (projection, post neuron, delay),
             shifted by the projection's weight exponent (left, or arithmetic right = floor)
    u'     = wrap_state(wrap32(decay(u, du + 1)) + wrap32(a_in << activation_shift))
    v'     = clip(decay(v, dv) + u' + bias, +-(2**(state_bits - 1) - 1))
    spike  = v' > vth << threshold_shift;  v' = 0 where it spiked

    decay(x, d) = sign(x * (2**decay_bits - d)) * (|x * (2**decay_bits - d)| >> decay_bits)

The reference simulator (runtime/simulator.py) and the SpiNNaker table executor both step neurons
with `LifNeurons.step`; the C engine (firmware/engine/snn.c) reads the same widths from the model
image's header. Lava hard-codes Loihi's widths, so the Lava backend refuses any other format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..targets.target import NumericFormat

ACCUMULATOR_BITS = 32  # Lava computes u's update in int32 before the state wrap


@dataclass(frozen=True)
class Widths:
    """The bit widths and shifts of the integer model (a NumericFormat's part that the step needs)."""

    decay_bits: int
    state_bits: int
    activation_shift: int
    threshold_shift: int

    @classmethod
    def of(cls, fmt: NumericFormat) -> Widths:
        return cls(fmt.decay_bits, fmt.state_bits, fmt.activation_shift, fmt.threshold_shift)

    @property
    def state_max(self) -> int:
        """2**(state_bits - 1): u wraps and v clips at this magnitude."""
        return 1 << (self.state_bits - 1)


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of int64 values to `bits` bits."""
    half = np.int64(1) << (bits - 1)
    return ((x + half) & ((np.int64(1) << bits) - 1)) - half


def decay(x: np.ndarray, d: np.ndarray | int, decay_bits: int) -> np.ndarray:
    """Lava's decay: x * (2**decay_bits - d) / 2**decay_bits, truncated toward zero."""
    return decay_by(np.asarray(x, np.int64), (1 << decay_bits) - np.asarray(d, np.int64), decay_bits)


def decay_by(x: np.ndarray, factor: np.ndarray, decay_bits: int) -> np.ndarray:
    """x * factor >> decay_bits toward zero, for a precomputed factor = 2**decay_bits - d."""
    prod = x * factor
    return np.sign(prod) * (np.abs(prod) >> decay_bits)


def shift_by_exponent(acc: np.ndarray, exp: np.ndarray | int) -> np.ndarray:
    """A weight exponent applied to a step's summed mantissas: left shift, or flooring right shift."""
    if np.ndim(exp) == 0:
        e = int(exp)
        return np.left_shift(acc, e) if e > 0 else np.right_shift(acc, -e)
    exp = np.asarray(exp)
    return np.where(exp >= 0, np.left_shift(acc, np.maximum(exp, 0)), np.right_shift(acc, np.maximum(-exp, 0)))


def effective_bias(mant: np.ndarray, exp: np.ndarray) -> np.ndarray:
    """The bias added to v each step: mantissa << exponent (Lava's bias_mant * 2**bias_exp)."""
    return np.left_shift(np.asarray(mant, np.int64), np.asarray(exp, np.int64))


class LifNeurons:
    """Per-neuron constants of a set of LIF neurons, and their one integer step.

    du, dv, vth (mantissa) and bias (effective, mant << exp) are per neuron or scalar.
    """

    def __init__(self, du: np.ndarray | int, dv: np.ndarray | int, vth: np.ndarray | int,
                 bias: np.ndarray | int, widths: Widths) -> None:
        self.widths = widths
        unity = np.int64(1) << widths.decay_bits
        self.u_factor = unity - (np.asarray(du, np.int64) + 1)
        self.v_factor = unity - np.asarray(dv, np.int64)
        self.vth_shifted = np.left_shift(np.asarray(vth, np.int64), widths.threshold_shift)
        self.bias = np.asarray(bias, np.int64)
        self.state_max = np.int64(widths.state_max)

    def step(self, u: np.ndarray, v: np.ndarray, a_in: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u', v', fired) from int64 state and this step's arrived input a_in."""
        w = self.widths
        smax = self.state_max
        cur = wrap(wrap(decay_by(u, self.u_factor, w.decay_bits), ACCUMULATOR_BITS)
                   + wrap(np.left_shift(a_in, w.activation_shift), ACCUMULATOR_BITS), ACCUMULATOR_BITS)
        # Lava's literal state wrap: one correction each way, the second tested on the corrected value
        # but applied to the uncorrected one (PyLifModelBitAcc.subthr_dynamics).
        wrapped = np.where(cur > smax, cur - 2 * smax, cur)
        u_new = np.where(wrapped <= -smax, cur + 2 * smax, wrapped)
        v_new = np.clip(decay_by(v, self.v_factor, w.decay_bits) + u_new + self.bias, -(smax - 1), smax - 1)
        fired = v_new > self.vth_shifted
        v_new[fired] = 0
        return u_new, v_new, fired
