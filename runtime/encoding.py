"""Turn analog samples into input spike rasters, deterministically (no RNG: accuracy is reproducible)."""

from __future__ import annotations

import numpy as np

from ..compiler.errors import InputError


def rate_code(x: np.ndarray, steps: int) -> np.ndarray:
    """Regular rate code: a value v in [0, 1] spikes at step t when floor((t+1)·v) > floor(t·v).

    v = 1 spikes every step, v = 0.5 every other step; a raster [steps, *x.shape] of 0/1 float32.
    It is the phase-accumulator coding of Rueckauer et al. 2017 without their Poisson noise, so the
    same sample always gives the same spikes on every target.
    """
    x = np.asarray(x, dtype=np.float64)
    if steps < 1:
        raise InputError(f"rate_code: steps must be >= 1, got {steps}. Fix: pass a positive number of steps")
    if not np.all(np.isfinite(x)) or x.min(initial=0.0) < 0 or x.max(initial=0.0) > 1:
        raise InputError("rate_code: values must lie in [0, 1] (got "
                         f"{float(np.nanmin(x)):g}..{float(np.nanmax(x)):g}). Fix: scale the samples first")
    t = np.arange(steps + 1, dtype=np.float64).reshape(-1, *([1] * x.ndim))
    acc = np.floor(t * x + 1e-9)  # the epsilon keeps exact multiples (v = 1/2 at t = 2) on their step
    return (np.diff(acc, axis=0) > 0).astype(np.float32)
