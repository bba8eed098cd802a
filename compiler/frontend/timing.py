"""Phase 0: how the file encodes time: given, recorded in its metadata, inferred from a signature, or assumed.

NIR stores no dt, yet every exporter discretised with one. The order of evidence:

1. the caller's `dt` / `convention` / `discretization`;
2. metadata: neurocc's own (`neurocc_dt`, written by save, from_torch and convert) or an exporter's
   (`dt`, `timestep`, `time_step`, in seconds);
3. a parameter signature an exporter leaves on every neuron (see `_signatures`);
4. nothing: dt is irrelevant (no time constant, no delay, no integrator), or it is assumed to be NIR's
   1 ms with ONE warning that names the assumption and the fix. Never a silent guess.

`Timing.source` says which, for `inspect`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from .reader import RawGraph

# How each exporter encodes time (see docs/neuron-model.md and the corpus README).
CONVENTIONS: dict[str, dict[str, Any]] = {
    "nir": {"dt": 1e-3, "discretization": "euler"},
    "snntorch": {"dt": 1e-4, "discretization": "euler"},
    "norse": {"dt": 1e-3, "discretization": "euler", "norse_tau_fix": True},
    "sinabs": {"dt": 1.0, "discretization": "exp"},
    "rockpool": {"dt": 1e-3, "discretization": "exp"},
}

# Metadata keys other exporters use for the time step, in seconds.
_EXPORTER_DT_KEYS = ("dt", "timestep", "time_step")
# Time constants below this (0.1 ms) with r = 1 are norse <= 1.1's tau = dt * tau_true, not a membrane.
_NORSE_TAU_BELOW = 1e-4
# Time constants of at least this with r = 1 are in time steps (Sinabs), not seconds.
_STEPS_TAU_FROM = 1.0
# Node names rockpool's exporter writes: "0_LinearTorch", "1_LIFTorch".
_ROCKPOOL_NAME = re.compile(r"^\d+_\w+Torch$")
_LEAKY = ("LIF", "LI", "CubaLIF", "CubaLI")


@dataclass(frozen=True)
class Timing:
    """The time step and the readings of the file that depend on who wrote it."""

    dt: float
    discretization: str
    norse_tau_fix: bool = False  # norse <= 1.1 writes tau = dt * tau_true
    written_by_neurocc: bool = False  # neurocc.save: NIR values, exact shapes, its own dt
    source: str = "given"  # where dt came from, in words (inspect prints it)
    explains: frozenset[str] = frozenset()  # fix-up warnings the dt warning already covers (said once)


Warn = Callable[[str, str], None]


def resolve_timing(raw: RawGraph, dt: float | None, convention: str | None,
                   discretization: str | None, warn: Warn) -> Timing:
    if convention is not None and convention not in CONVENTIONS:
        raise ParameterError(f"unknown convention {convention!r}. Fix: use one of {', '.join(CONVENTIONS)}")
    if discretization is not None and discretization not in ("euler", "exp"):
        raise ParameterError(f"discretization must be 'euler' or 'exp', not {discretization!r}. "
                             "Fix: pass one of those")
    if dt is not None and (not np.isfinite(float(dt)) or float(dt) <= 0):
        raise ParameterError(f"dt must be a positive number of seconds, got {dt!r}. Fix: pass e.g. dt=1e-3")
    own = "neurocc_dt" in raw.metadata
    if convention is not None and own:
        warn("convention-ignored", "written by neurocc.save (or from_torch, convert), which stores NIR values "
             f"and its dt; convention {convention!r} describes another exporter's encoding and is ignored")
        convention = None
    if convention is not None:
        conv = dict(CONVENTIONS[convention])
        source = f"convention {convention!r}"
    else:
        conv = _recorded(raw) or _safe_signatures(raw) or {}
        source = conv.pop("source", "")
    if dt is not None:
        conv["dt"], source = float(dt), "given (dt=...)" + (f"; {source}" if source else "")
    if not conv.get("dt"):
        conv = {**CONVENTIONS["nir"], **conv}
        if _dt_matters(raw):
            warn("dt-assumed", "assumed dt = 1e-3 s: NIR stores no time step and this file carries no "
                 "exporter signature or dt metadata" + _hint(raw) + ". Fix: pass the model's step "
                 "(--dt SECONDS / dt=...) or its exporter (--convention snntorch|norse|sinabs|rockpool)")
            source = "assumed (NIR's 1 ms default; warned)"
        else:
            source = "not needed: no time constant, integrator or delay depends on it"
    if discretization is not None:
        conv["discretization"] = discretization
    warn_text = conv.pop("warn_text", None)
    if warn_text and dt is None:
        warn("dt-assumed", str(warn_text))
    return Timing(float(conv["dt"]), str(conv.get("discretization", "euler")), bool(conv.get("norse_tau_fix")),
                  bool(conv.get("written_by_neurocc")), source,
                  frozenset({"norse-tau", "norse-cubalif"}) if warn_text else frozenset())


def _recorded(raw: RawGraph) -> dict[str, Any] | None:
    meta = raw.metadata
    if "neurocc_dt" in meta:
        step = _positive(meta["neurocc_dt"])
        if step is None:
            raise ParameterError(f"{raw.source}: metadata neurocc_dt={meta['neurocc_dt']!r} is not a positive "
                                 "number of seconds. Fix: re-save the model, or pass dt=...")
        origin = meta.get("neurocc_framework") or meta.get("neurocc_converted_from")
        before = meta.get("neurocc_dt_source")
        if before and not str(before).startswith("recorded"):
            origin = f"{origin + '; ' if origin else ''}dt originally {before}"
        return {"dt": step, "discretization": str(meta.get("neurocc_discretization", "euler")),
                "written_by_neurocc": True,
                "source": "recorded in the file's metadata (neurocc" + (f", from {origin}" if origin else "") + ")"}
    for key in _EXPORTER_DT_KEYS:
        if key in meta and _positive(meta[key]) is not None:
            return {"dt": _positive(meta[key]), "discretization": "euler",
                    "source": f"recorded in the file's metadata ({key!r}, written by its exporter)"}
    return None


def _safe_signatures(raw: RawGraph) -> dict[str, Any] | None:
    try:
        return _signatures(raw)
    except (ValueError, TypeError, IndexError):
        return None  # malformed parameters carry no signature; read_params names what is wrong


def _signatures(raw: RawGraph) -> dict[str, Any] | None:
    """dt from what an exporter leaves on every leaky neuron; None when the file carries no signature."""
    leaky = [(n, node.type, _floats(node.params)) for n, node in raw.nodes.items() if node.type in _LEAKY]
    leaky = [(n, t, p) for n, t, p in leaky if p is not None]
    if not leaky:
        return None
    taus = np.concatenate([p.get("tau", p.get("tau_mem", np.empty(0))).ravel() for _, _, p in leaky])
    consts = np.concatenate([np.concatenate([p[k].ravel() for k in ("tau", "tau_mem", "tau_syn") if k in p])
                             for _, _, p in leaky])
    rs = np.concatenate([np.broadcast_to(p.get("r", np.ones(1)),
                                         p.get("tau", p.get("tau_mem", np.empty(0))).shape).ravel()
                         for _, _, p in leaky])
    if taus.size == 0 or rs.size != taus.size or np.any(taus <= 0) or np.any(rs <= 0):
        return None
    if all(_ROCKPOOL_NAME.match(n.split(".")[-1]) for n, _, _ in leaky) or any(
            _ROCKPOOL_NAME.match(n.split(".")[-1]) for n in raw.nodes):
        step = _rockpool_dt(taus, rs)
        if step is not None:
            return {"dt": step, "discretization": "exp",
                    "source": "inferred: r = tau·exp(-dt/tau)/dt on every neuron (rockpool's export signature)"}
    unit_r = bool(np.allclose(rs, 1.0, rtol=1e-6))
    if not unit_r:
        steps = taus / rs  # snnTorch (and Spyx): tau = dt/(1-beta), r = tau/dt
        if np.all(rs >= 1.0 - 1e-6) and steps.max() <= steps.min() * (1 + 1e-4):
            step = float(f"{float(np.median(steps)):.5g}")
            return {"dt": step, "discretization": "euler",
                    "source": f"inferred: r = tau/dt on every neuron gives dt = {step:g} s "
                              "(snnTorch's export signature)"}
        return None
    if consts.max() < _NORSE_TAU_BELOW:
        conv = dict(CONVENTIONS["norse"])
        conv["warn_text"] = (
            f"assumed dt = {conv['dt']:g} s (norse's default): time constants of {float(consts.min()):.3g}.."
            f"{float(consts.max()):.3g} s with r = 1 are norse <= 1.1's encoding tau = dt·tau_true, read as "
            "tau / dt (and a CubaLIF's w_in as tau_syn / dt). Fix: if the model ran at another step, pass "
            "--dt SECONDS with --convention norse")
        conv["source"] = "assumed: norse <= 1.1's tau = dt·tau_true encoding at norse's default dt (warned)"
        return conv
    if consts.min() >= _STEPS_TAU_FROM:
        return {"dt": 1.0, "discretization": "exp",
                "source": "inferred: time constants >= 1 with r = 1 are in time steps (Sinabs' export "
                          "signature): dt = 1 step, exact exponential decay"}
    return None


def _rockpool_dt(taus: np.ndarray, rs: np.ndarray) -> float | None:
    """Solve r·dt = tau·exp(-dt/tau) per neuron (one root: the left side rises, the right falls)."""
    lo, hi = np.zeros_like(taus), taus / rs  # at dt = tau/r the left side already exceeds the right
    for _ in range(60):
        mid = (lo + hi) / 2
        below = rs * mid < taus * np.exp(-mid / taus)
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    steps = (lo + hi) / 2
    if steps.min() <= 0 or steps.max() > steps.min() * (1 + 1e-4):
        return None
    return float(f"{float(np.median(steps)):.5g}")


def _dt_matters(raw: RawGraph) -> bool:
    """Does any update depend on dt: a time constant, an integrator's dt·r, or a delay in seconds?"""
    return any(node.type in (*_LEAKY, "IF", "I", "Delay") for node in raw.nodes.values())


def _hint(raw: RawGraph) -> str:
    types = {node.type for node in raw.nodes.values()}
    no_reset = any(node.type == "IF" and "v_reset" not in node.params for node in raw.nodes.values())
    if types & {"IF", "I"} and not types & set(_LEAKY):
        return (" (IF neurons integrate dt·r·I per step; a Sinabs file" + (", like this one with no v_reset "
                "(nir <= 1.0.4, which Sinabs 3 pins)," if no_reset else "") + " needs --convention sinabs, "
                "dt = 1 step)")
    return ""


def _floats(params: dict[str, Any]) -> dict[str, np.ndarray] | None:
    out = {}
    for key in ("tau", "tau_mem", "tau_syn", "r"):
        if key in params and params[key] is not None:
            try:
                arr = np.asarray(params[key], dtype=np.float64)
            except (TypeError, ValueError):
                return None  # malformed: read_params names it
            if not np.all(np.isfinite(arr)):
                return None
            out[key] = arr
    return out


def _positive(value: Any) -> float | None:
    try:
        step = float(np.asarray(value).ravel()[0]) if np.size(value) else None
    except (TypeError, ValueError):
        return None
    return step if step is not None and np.isfinite(step) and step > 0 else None
