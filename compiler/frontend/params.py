"""Phase 2: each node's raw parameters -> checked float arrays (with NIR's defaults, in time steps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..ir import KIND_PARAMS, NEURON_KINDS
from .diagnostics import Warner, guard
from .graph import Graph
from .reader import RawNode
from .timing import Timing

# Parameters that may be absent from real files, with the value NIR itself assumes.
_DEFAULTS = {"v_reset": 0.0, "w_in": 1.0, "v_leak": 0.0, "r": 1.0}

# Longest delay, in steps, that a projection can hold (int32 delays; no target gets near it).
_MAX_DELAY_STEPS = 2**31 - 1

# Node name -> parameter name -> value (float arrays, int tuples, Delay steps, declared shapes).
Params = Mapping[str, Mapping[str, Any]]


def read_params(graph: Graph, timing: Timing, warn: Warner) -> Params:
    """Every node's parameters, checked; with convention 'norse', its time constants undone."""
    params: dict[str, Mapping[str, Any]] = {}
    for name, node in graph.nodes.items():
        with guard(name, node.type, "reading its parameters"):
            params[name] = _node_params(name, node, timing.dt, warn)
    if timing.norse_tau_fix:
        params = _norse_tau_fix(graph, params, timing.dt, warn)
    return params


def _node_params(name: str, node: RawNode, dt: float, warn: Warner) -> dict[str, Any]:
    t = node.type
    p: dict[str, Any] = {}
    if t in NEURON_KINDS:
        for key in KIND_PARAMS[t]:
            if key not in node.params or node.params[key] is None:
                if key in _DEFAULTS:
                    warn(f"default-{key}", f"{t} node {name!r} has no {key!r}; using NIR's "
                         f"default {_DEFAULTS[key]} (written by an older nir)")
                    p[key] = np.asarray(_DEFAULTS[key])
                    continue
                raise ParameterError(
                    f"node {name!r} ({t}) is missing parameter {key!r}. Fix: re-export with it"
                )
            p[key] = _as_float_array(node, key, node.params[key])
        for key in ("tau", "tau_syn", "tau_mem"):
            if key in p and np.any(p[key] <= 0):
                raise ParameterError(
                    f"node {name!r} ({t}): {key} must be > 0 s, found min {float(p[key].min()):g}. "
                    "Fix: time constants are positive durations in seconds"
                )
    elif t in ("Affine", "Linear"):
        w = _as_float_array(node, "weight", node.params.get("weight"))
        if w.ndim != 2:
            raise ParameterError(f"node {name!r} ({t}): weight must be 2-d (out, in), got {w.shape}. "
                                 "Fix: re-export the layer's weight matrix")
        p["weight"] = w
        if t == "Affine":
            b = node.params.get("bias")
            p["bias"] = (np.zeros(w.shape[0]) if b is None
                         else np.broadcast_to(_as_float_array(node, "bias", b), (w.shape[0],)).copy())
    elif t == "Scale":
        p["scale"] = _as_float_array(node, "scale", node.params.get("scale"))
    elif t == "Delay":
        d = _as_float_array(node, "delay", node.params.get("delay"))
        if np.any(d < 0):
            raise ParameterError(f"node {name!r} (Delay): delays must be >= 0 s, found {d.min():g}. "
                                 "Fix: delays are non-negative durations in seconds")
        steps = np.rint(d / dt)
        if steps.size and float(steps.max()) > _MAX_DELAY_STEPS:
            raise ParameterError(
                f"node {name!r} (Delay): delay {float(d.max()):g} s is {float(steps.max()):.3g} steps of "
                f"dt={dt:g} s, beyond {_MAX_DELAY_STEPS} steps. Fix: delays are in seconds; check the "
                "exporter's units and dt"
            )
        if np.any(np.abs(steps * dt - d) > 1e-6 * max(dt, 1e-12) + 1e-9 * np.abs(d)):
            warn(f"delay-round-{name}", f"Delay {name!r}: delays are not multiples of dt="
                 f"{dt:g}; rounded to the nearest step")
        p["steps"] = steps.astype(np.int64)
    elif t in ("Conv1d", "Conv2d"):
        nd = 1 if t == "Conv1d" else 2
        w = _as_float_array(node, "weight", node.params.get("weight"))
        if w.ndim != nd + 2:
            raise ParameterError(f"node {name!r} ({t}): weight must be {nd + 2}-d (out, in/groups, *kernel), "
                                 f"got {w.shape}. Fix: re-export the layer's kernel")
        p["weight"] = w
        groups = int(np.asarray(node.params.get("groups", 1) if node.params.get("groups") is not None
                                else 1))
        if groups < 1 or w.shape[0] % groups:
            raise ParameterError(f"node {name!r} ({t}): groups={groups} does not divide {w.shape[0]} output "
                                 "channels. Fix: groups must divide the channel counts")
        p["groups"] = groups
        p["stride"] = _int_tuple(node, "stride", node.params.get("stride"), nd, 1)
        p["dilation"] = _int_tuple(node, "dilation", node.params.get("dilation"), nd, 1)
        pad = node.params.get("padding")
        p["padding"] = pad if isinstance(pad, str) else _int_tuple(node, "padding", pad, nd, 0)
        b = node.params.get("bias")
        p["bias"] = np.zeros(w.shape[0]) if b is None else np.broadcast_to(
            _as_float_array(node, "bias", b), (w.shape[0],)).copy()
        p["input_shape"] = _shape_param(node.params.get("input_shape"))
        if p["input_shape"] is None:
            warn(f"conv-shape-{name}", f"{t} {name!r} has no input_shape; inferred from its input")
    elif t in ("SumPool2d", "AvgPool2d"):
        p["kernel_size"] = _int_tuple(node, "kernel_size", node.params.get("kernel_size"), 2, 1)
        stride = node.params.get("stride")
        p["stride"] = _int_tuple(node, "stride", stride, 2, 1) if stride is not None else p["kernel_size"]
        p["padding"] = _int_tuple(node, "padding", node.params.get("padding"), 2, 0)
    elif t == "Flatten":
        p["start_dim"] = int(np.asarray(node.params.get("start_dim", 1)))
        p["end_dim"] = int(np.asarray(node.params.get("end_dim", -1)))
        p["input_type"] = _shape_param(node.params.get("input_type"))
    elif t == "Threshold":
        p["threshold"] = _as_float_array(node, "threshold", node.params.get("threshold"))
    elif t in ("Input", "Output"):
        p["shape"] = _shape_param(node.params.get("shape", node.params.get("input_type",
                                                                          node.params.get("output_type"))))
    return p


def _norse_tau_fix(graph: Graph, params: Params, dt: float, warn: Warner) -> dict[str, Mapping[str, Any]]:
    """Undo norse <= 1.1's encodings: tau written as dt * tau_true; CubaLIF input added to i unscaled."""
    scaled: dict[str, Mapping[str, Any]] = {}
    for name, p in params.items():
        q = dict(p)
        for key in ("tau", "tau_syn", "tau_mem"):
            if key in q and np.all(q[key] < dt):
                warn("norse-tau", f"time constants below dt={dt:g} s: norse <= 1.1 writes "
                     "tau = dt * tau_true; using tau / dt (convention 'norse')")
                q[key] = q[key] / dt
        scaled[name] = q
    fixed: dict[str, Mapping[str, Any]] = {}
    for name, p in scaled.items():
        if graph.nodes[name].type == "CubaLIF" and "tau_syn" in p:
            # Measured on the corpus: with this, norse_cubalif_mlp's spikes and v match exactly.
            warn("norse-cubalif", "norse's LIFCell (exported as CubaLIF without w_in) adds its input "
                 "to i unscaled: using w_in = tau_syn / dt (convention 'norse')")
            p = {**p, "w_in": np.asarray(p.get("w_in", 1.0)) * p["tau_syn"] / dt}
        fixed[name] = p
    return fixed


def _as_float_array(node: RawNode, key: str, value: Any) -> np.ndarray:
    if value is None:
        raise ParameterError(f"node {node.name!r} ({node.type}) is missing parameter {key!r}. Fix: re-export with it")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(
            f"node {node.name!r} ({node.type}): parameter {key!r} is not numeric. Fix: store it as a float array"
        ) from None
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ParameterError(
            f"node {node.name!r} ({node.type}): parameter {key!r} has {bad} NaN/Inf value(s). "
            "Fix: check the trained model (a diverged training run) before exporting"
        )
    return arr


def _int_tuple(node: RawNode, key: str, value: Any, n: int, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * n
    arr = np.atleast_1d(np.asarray(value)).astype(np.int64)
    if arr.size == 1:
        return (int(arr[0]),) * n
    if arr.size != n:
        raise ParameterError(f"node {node.name!r} ({node.type}): {key!r} has {arr.size} values, expected {n}. "
                             f"Fix: give one value, or one per spatial axis ({n})")
    return tuple(int(x) for x in arr)


def _shape_param(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
        if value is None:
            return None
    arr = np.atleast_1d(np.asarray(value))
    if arr.dtype == object or arr.size == 0:
        return None
    return tuple(int(x) for x in arr.ravel())

