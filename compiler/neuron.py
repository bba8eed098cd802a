"""One discrete-time form for every NIR neuron kind (see docs/neuron-model.md).

Every kind becomes, per neuron and per step (I = the summed synaptic input + bias):

    i' = alpha_i * i + gain_in * I          (synaptic current; alpha_i = 0: no current state)
    v' = alpha_v * v + h * i' + c           (membrane)
    spike = v' > thr  (spiking kinds only);  v' = v_reset where spike

The float simulator runs this form; the quantizer maps it to the integer CUBA-LIF.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ParameterError
from .ir import SPIKING_KINDS, Population


@dataclass
class CubaCoefficients:
    alpha_i: np.ndarray
    gain_in: np.ndarray
    alpha_v: np.ndarray
    h: np.ndarray
    c: np.ndarray
    thr: np.ndarray  # +inf for non-spiking kinds
    v_reset: np.ndarray
    spiking: bool
    has_current: bool  # kind carries a synaptic-current state (Cuba*)


def _leak_factor(tau: np.ndarray, dt: float, discretization: str) -> np.ndarray:
    """Fraction of the distance to rest covered in one step: dt/tau (Euler) or 1-exp(-dt/tau)."""
    if discretization == "exp":
        return -np.expm1(-dt / tau)
    return dt / tau


def coefficients(pop: Population, dt: float, discretization: str = "euler") -> CubaCoefficients:
    """Per-neuron coefficients of the discrete form for `pop` at step `dt`."""
    n = pop.size
    p = pop.params
    zeros, ones = np.zeros(n), np.ones(n)
    kind = pop.kind
    alpha_i, gain_in, has_current = zeros, ones, False
    thr = np.full(n, np.inf)
    v_reset = zeros
    if kind in ("LIF", "LI"):
        k = _leak_factor(p["tau"], dt, discretization)
        alpha_v, h, c = 1.0 - k, k * p["r"], k * p["v_leak"]
    elif kind in ("CubaLIF", "CubaLI"):
        ks = _leak_factor(p["tau_syn"], dt, discretization)
        km = _leak_factor(p["tau_mem"], dt, discretization)
        alpha_i, gain_in, has_current = 1.0 - ks, ks * p["w_in"], True
        alpha_v, h, c = 1.0 - km, km * p["r"], km * p["v_leak"]
    elif kind in ("IF", "I"):
        alpha_v, h, c = ones, dt * p["r"], zeros
    elif kind == "Threshold":
        # Stateless: v' = I, spike when I > threshold.
        alpha_v, h, c = zeros, ones, zeros
        thr = p["threshold"]
    else:
        raise ParameterError(f"population {pop.name!r}: neuron kind {kind!r} has no discrete form")
    if kind in ("LIF", "CubaLIF", "IF"):
        thr = p["v_threshold"]
        v_reset = p["v_reset"]
    # dt == tau gives alpha = 0 up to float32 rounding (snnTorch files at their own dt): clip that.
    alpha_v = np.where(np.abs(np.asarray(alpha_v, float)) < 1e-6, 0.0, alpha_v)
    alpha_i = np.where(np.abs(np.asarray(alpha_i, float)) < 1e-6, 0.0, alpha_i)
    for name, arr in (("alpha_v", alpha_v), ("alpha_i", alpha_i)):
        bad = (arr < 0) | (arr > 1)
        if np.any(bad):
            raise ParameterError(
                f"population {pop.name!r}: dt={dt:g} s is longer than its time constant "
                f"({name}={float(np.asarray(arr)[bad][0]):.3g} outside [0, 1]); forward Euler is unstable. "
                "Fix: pass the exporter's convention (--convention snntorch|norse|sinabs|rockpool sets its dt), "
                "a smaller dt, or discretization='exp'"
            )
    return CubaCoefficients(
        np.asarray(alpha_i, float), np.asarray(gain_in, float), np.asarray(alpha_v, float),
        np.asarray(h, float), np.asarray(c, float), np.asarray(thr, float), np.asarray(v_reset, float),
        kind in SPIKING_KINDS, has_current,
    )
