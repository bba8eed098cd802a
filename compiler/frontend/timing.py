"""Phase 0: how the file encodes time (the exporter's convention, neurocc's own metadata, overrides)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from .diagnostics import NeuroccWarning
from .reader import RawGraph

# How each exporter encodes time (see docs/neuron-model.md and the corpus README).
CONVENTIONS: dict[str, dict[str, Any]] = {
    "nir": {"dt": 1e-3, "discretization": "euler"},
    "snntorch": {"dt": 1e-4, "discretization": "euler"},
    "norse": {"dt": 1e-3, "discretization": "euler", "norse_tau_fix": True},
    "sinabs": {"dt": 1.0, "discretization": "exp"},
    "rockpool": {"dt": 1e-3, "discretization": "exp"},
}


@dataclass(frozen=True)
class Timing:
    """The time step and the readings of the file that depend on who wrote it."""

    dt: float
    discretization: str
    norse_tau_fix: bool = False  # norse <= 1.1 writes tau = dt * tau_true
    written_by_neurocc: bool = False  # neurocc.save: NIR values, exact shapes, its own dt


def resolve_timing(raw: RawGraph, dt: float | None, convention: str | None,
                   discretization: str | None) -> Timing:
    if convention is not None and convention not in CONVENTIONS:
        raise ParameterError(f"unknown convention {convention!r}. Fix: use one of {', '.join(CONVENTIONS)}")
    if convention is not None and "neurocc_dt" in raw.metadata:
        # stacklevel 4: resolve_timing <- build_network <- load <- the caller of load.
        warnings.warn(f"{raw.source}: written by neurocc.save, which stores NIR values and its dt; convention "
                      f"{convention!r} describes another exporter's encoding and is ignored", NeuroccWarning,
                      stacklevel=4)
        convention = None
    conv = dict(CONVENTIONS.get(convention or "nir", {}))
    if convention is None and "neurocc_dt" in raw.metadata:
        # Written by neurocc.save: the file says how it was discretised.
        conv["dt"] = float(raw.metadata["neurocc_dt"])
        conv["discretization"] = str(raw.metadata.get("neurocc_discretization", "euler"))
        conv["written_by_neurocc"] = True
    if discretization is not None:
        if discretization not in ("euler", "exp"):
            raise ParameterError(f"discretization must be 'euler' or 'exp', not {discretization!r}. "
                                 "Fix: pass one of those")
        conv["discretization"] = discretization
    step = float(dt) if dt is not None else float(conv["dt"])
    if not np.isfinite(step) or step <= 0:
        raise ParameterError(f"dt must be a positive number of seconds, got {dt!r}. Fix: pass e.g. dt=1e-3")
    return Timing(step, conv.get("discretization", "euler"), bool(conv.get("norse_tau_fix")),
                  bool(conv.get("written_by_neurocc")))
