"""Raw NIR nodes -> float Network: validate, infer shapes, compose linear chains into projections."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError, NeuroccError, ParameterError, UnsupportedNodeError
from ..ir import INPUT, KIND_PARAMS, NEURON_KINDS, Network, Population, Projection, make_projection
from ..neuron import coefficients
from .reader import KNOWN_TYPES, RawGraph, RawNode
from .unroll import conv_matrix, conv_output_size, pool_matrix


class NeuroccWarning(UserWarning):
    """A file was loaded with a fix-up; the message says which."""


LINEAR_TYPES = frozenset({
    "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Delay", "Identity",
})

# Parameters that may be absent from real files, with the value NIR itself assumes.
_DEFAULTS = {"v_reset": 0.0, "w_in": 1.0, "v_leak": 0.0, "r": 1.0}

# Longest delay, in steps, that a projection can hold (int32 delays; no target gets near it).
_MAX_DELAY_STEPS = 2**31 - 1

# How each exporter encodes time (see docs/neuron-model.md and the corpus README).
CONVENTIONS: dict[str, dict[str, Any]] = {
    "nir": {"dt": 1e-3, "discretization": "euler"},
    "snntorch": {"dt": 1e-4, "discretization": "euler"},
    "norse": {"dt": 1e-3, "discretization": "euler", "norse_tau_fix": True},
    "sinabs": {"dt": 1.0, "discretization": "exp"},
    "rockpool": {"dt": 1e-3, "discretization": "exp"},
}


@dataclass
class _Warner:
    source: str
    seen: set[str] = field(default_factory=set)

    def __call__(self, key: str, message: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            warnings.warn(f"{self.source}: {message}", NeuroccWarning, stacklevel=4)


@contextmanager
def _guard(name: str, node_type: str, doing: str) -> Iterator[None]:
    """Turn a numeric failure on malformed data into a named error about that node."""
    try:
        yield
    except NeuroccError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, MemoryError) as exc:
        raise ParameterError(
            f"node {name!r} ({node_type}): malformed data while {doing} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}). "
            "Fix: re-export the model; check this node's parameter shapes and types"
        ) from None


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


def _strip_ones(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    while len(shape) > ndim and shape[0] == 1:
        shape = shape[1:]
    return shape


class _Builder:
    def __init__(self, raw: RawGraph, dt: float, convention: dict[str, Any]):
        self.raw = raw
        self.dt = dt
        self.convention = convention
        self.warn = _Warner(raw.source)
        self.nodes: dict[str, RawNode] = {}
        self.preds: dict[str, list[str]] = defaultdict(list)
        self.succs: dict[str, list[str]] = defaultdict(list)
        self.shape: dict[str, tuple[int, ...]] = {}
        self.params: dict[str, dict[str, Any]] = {}

    # ---- structure -------------------------------------------------------------------------
    def flatten_structure(self) -> None:
        raw = self.raw
        subgraphs = {n for n, node in raw.nodes.items() if node.type == "NIRGraph"}
        for name, node in raw.nodes.items():
            if node.type not in KNOWN_TYPES:
                raise UnsupportedNodeError(
                    f"node {name!r} has type {node.type!r}, which NIR 1.0 does not define. Supported: "
                    f"{', '.join(sorted(KNOWN_TYPES))}. Fix: export it as one of these"
                )
            if node.type == "NIRGraph":
                continue
            nested = any(name.startswith(g + ".") for g in subgraphs)
            if nested and node.type in ("Input", "Output"):
                node = RawNode(name, "Identity", {"_was": node.type})
            self.nodes[name] = node

        def ends(g: str, kind: str) -> list[str]:
            return [n for n, nd in raw.nodes.items()
                    if n.startswith(g + ".") and nd.type == kind and n.count(".") == g.count(".") + 1]

        for src, dst in raw.edges:
            srcs = ends(src, "Output") if src in subgraphs else [src]
            dsts = ends(dst, "Input") if dst in subgraphs else [dst]
            for s in srcs:
                for d in dsts:
                    for end in (s, d):
                        if end not in self.nodes:
                            raise GraphError(
                                f"edge {src!r} -> {dst!r} refers to node {end!r}, which does not exist. "
                                f"Nodes are: {', '.join(sorted(self.nodes))}. Fix: correct the edge list"
                            )
                    if d not in self.succs[s]:
                        self.succs[s].append(d)
                        self.preds[d].append(s)
        for name, node in self.nodes.items():
            if node.type == "Input" and self.preds[name]:
                raise GraphError(f"Input node {name!r} has incoming edges from {self.preds[name]}. "
                                 "Fix: an Input only feeds the graph; remove those edges")
            if node.type == "Output" and self.succs[name]:
                raise GraphError(f"Output node {name!r} has outgoing edges to {self.succs[name]}. "
                                 "Fix: an Output ends the graph; remove those edges")
            if node.type not in ("Input",) and not self.preds[name]:
                raise GraphError(
                    f"node {name!r} ({node.type}) has no incoming edge, so nothing drives it. "
                    "Fix: connect it or remove it"
                )
        if not any(n.type == "Input" for n in self.nodes.values()):
            raise GraphError("the graph has no Input node. Fix: add a nir.Input feeding the first layer")
        self._check_neuron_free_cycles()

    def _check_neuron_free_cycles(self) -> None:
        """Every cycle must pass through a neuron; one that does not has no value at any step."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_edges_from((s, d) for s, succ in self.succs.items() for d in succ
                         if self.nodes[s].type not in NEURON_KINDS and self.nodes[d].type not in NEURON_KINDS)
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            return
        path = " -> ".join(repr(s) for s, _ in cycle) + f" -> {cycle[0][0]!r}"
        raise GraphError(
            f"cycle through {cycle[0][0]!r} has no neuron in it ({path}), so its value is undefined at every "
            "step. Fix: put a neuron (e.g. LIF) in the loop"
        )

    # ---- parameters ------------------------------------------------------------------------
    def read_params(self) -> None:
        for name, node in self.nodes.items():
            with _guard(name, node.type, "reading its parameters"):
                self.params[name] = self._node_params(name, node)
        if self.convention.get("norse_tau_fix"):
            self._norse_tau_fix()

    def _node_params(self, name: str, node: RawNode) -> dict[str, Any]:
        t = node.type
        p: dict[str, Any] = {}
        if t in NEURON_KINDS:
            for key in KIND_PARAMS[t]:
                if key not in node.params or node.params[key] is None:
                    if key in _DEFAULTS:
                        self.warn(f"default-{key}", f"{t} node {name!r} has no {key!r}; using NIR's "
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
            steps = np.rint(d / self.dt)
            if steps.size and float(steps.max()) > _MAX_DELAY_STEPS:
                raise ParameterError(
                    f"node {name!r} (Delay): delay {float(d.max()):g} s is {float(steps.max()):.3g} steps of "
                    f"dt={self.dt:g} s, beyond {_MAX_DELAY_STEPS} steps. Fix: delays are in seconds; check the "
                    "exporter's units and dt"
                )
            if np.any(np.abs(steps * self.dt - d) > 1e-6 * max(self.dt, 1e-12) + 1e-9 * np.abs(d)):
                self.warn(f"delay-round-{name}", f"Delay {name!r}: delays are not multiples of dt="
                          f"{self.dt:g}; rounded to the nearest step")
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
                self.warn(f"conv-shape-{name}", f"{t} {name!r} has no input_shape; inferred from its input")
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

    def _norse_tau_fix(self) -> None:
        for p in self.params.values():
            for key in ("tau", "tau_syn", "tau_mem"):
                if key in p and np.all(p[key] < self.dt):
                    self.warn("norse-tau", f"time constants below dt={self.dt:g} s: norse <= 1.1 writes "
                              "tau = dt * tau_true; using tau / dt (convention 'norse')")
                    p[key] = p[key] / self.dt
        for name, p in self.params.items():
            if self.nodes[name].type == "CubaLIF" and "tau_syn" in p:
                # Measured on the corpus: with this, norse_cubalif_mlp's spikes and v match exactly.
                self.warn("norse-cubalif", "norse's LIFCell (exported as CubaLIF without w_in) adds its input "
                          "to i unscaled: using w_in = tau_syn / dt (convention 'norse')")
                p["w_in"] = np.asarray(p.get("w_in", 1.0)) * p["tau_syn"] / self.dt

    # ---- shapes ----------------------------------------------------------------------------
    def _param_shape(self, name: str) -> tuple[int, ...] | None:
        node, p = self.nodes[name], self.params[name]
        if node.type in NEURON_KINDS:
            shapes = [np.shape(p[k]) for k in KIND_PARAMS[node.type] if np.ndim(p[k]) > 0]
            return max(shapes, key=lambda s: int(np.prod(s))) if shapes else None
        if node.type in ("Scale",) and np.ndim(p["scale"]) > 0:
            return tuple(np.shape(p["scale"]))
        if node.type == "Delay" and np.ndim(p["steps"]) > 0:
            return tuple(np.shape(p["steps"]))
        return None

    def _expected_in_ndim(self, name: str) -> int | None:
        t = self.nodes[name].type
        if t in ("Affine", "Linear"):
            return 1
        if t in ("Conv2d", "SumPool2d", "AvgPool2d"):
            return 3
        if t == "Conv1d":
            return 2
        ps = self._param_shape(name)
        return len(ps) if ps is not None else None

    def infer_shapes(self) -> None:
        for name, node in self.nodes.items():
            if node.type == "Input":
                shape = self.params[name]["shape"]
                if shape is None:
                    raise GraphError(f"Input node {name!r} has no shape. Fix: export with a sample input")
                want = [self._expected_in_ndim(s) for s in self.succs[name]]
                want = [w for w in want if w is not None]
                if want and not self.convention.get("written_by_neurocc"):  # neurocc.save's shapes are exact
                    stripped = _strip_ones(shape, max(want))
                    if stripped != shape:
                        self.warn(f"batch-{name}", f"Input {name!r} declares shape {list(shape)}; a batch axis "
                                  f"leaked into it, using {list(stripped)}")
                        shape = stripped
                self.shape[name] = shape
        changed = True
        while changed:
            changed = False
            for name in self.nodes:
                if name in self.shape:
                    continue
                with _guard(name, self.nodes[name].type, "inferring its shape"):
                    out = self._out_shape(name)
                if out is not None:
                    self.shape[name] = out
                    changed = True
        missing = [n for n in self.nodes if n not in self.shape]
        if missing:
            raise GraphError(
                f"cannot infer the shape of {', '.join(repr(m) for m in missing)}: no Input reaches them "
                "through nodes of known shape. Fix: connect them to an Input, or break a cycle that has no "
                "neuron in it"
            )
        self._check_edges()

    def _pred_shape(self, name: str) -> tuple[int, ...] | None:
        shapes = [self.shape.get(p) for p in self.preds[name]]
        known = [s for s in shapes if s is not None]
        return known[0] if known else None

    def _out_shape(self, name: str) -> tuple[int, ...] | None:
        node, p = self.nodes[name], self.params[name]
        t = node.type
        if t in ("Affine", "Linear"):
            return (p["weight"].shape[0],)
        if t in NEURON_KINDS or t in ("Scale", "Delay"):
            own = self._param_shape(name)
            return own if own is not None else self._pred_shape(name)
        if t == "Threshold":
            own = tuple(np.shape(p["threshold"])) or None
            return own if own is not None else self._pred_shape(name)
        src = self._pred_shape(name)
        if src is None:
            return None
        if t in ("Identity", "Output"):
            return src
        if t in ("Conv1d", "Conv2d"):
            nd = 1 if t == "Conv1d" else 2
            w = p["weight"]
            c_in = w.shape[1] * p["groups"]
            spatial = p["input_shape"]
            if spatial is None:
                if len(src) == nd + 1:
                    spatial = tuple(src[1:])
                elif int(np.prod(src)) % c_in == 0 and nd == 1:
                    spatial = (int(np.prod(src)) // c_in,)
                else:
                    raise GraphError(
                        f"{t} {name!r}: input_shape is missing and its input has shape {list(src)}, from "
                        f"which the {nd}-d spatial size is ambiguous. Fix: export with input_shape set"
                    )
            spatial = tuple(spatial)[-nd:]
            if c_in * int(np.prod(spatial)) != int(np.prod(src)):
                raise GraphError(
                    f"{t} {name!r} expects {c_in} channels x {list(spatial)} = {c_in * int(np.prod(spatial))} "
                    f"inputs but receives shape {list(src)} ({int(np.prod(src))}). Fix: correct input_shape or "
                    "the layer before it"
                )
            pad = self._resolve_padding(name, spatial)
            p["_in"] = (c_in, *spatial)
            p["_pad"] = pad
            out = [conv_output_size(spatial[d], w.shape[2 + d], p["stride"][d], pad[d], p["dilation"][d])
                   for d in range(nd)]
            if min(out) < 1:
                raise GraphError(f"{t} {name!r}: output would be empty for input {list(src)}. Fix: check the "
                                 "kernel, stride, padding and input_shape")
            return (w.shape[0], *out)
        if t in ("SumPool2d", "AvgPool2d"):
            if len(src) != 3:
                raise GraphError(f"{t} {name!r} needs a (C, H, W) input, got shape {list(src)}. "
                                 "Fix: put it after a Conv2d or give the input a 3-d shape")
            out = [conv_output_size(src[1 + d], p["kernel_size"][d], p["stride"][d], p["padding"][d], 1)
                   for d in range(2)]
            p["_in"] = src
            return (src[0], *out)
        if t == "Flatten":
            shape = src
            start, end = p["start_dim"], p["end_dim"]
            nd = len(shape)
            start = start + nd if start < 0 else start
            end = end + nd if end < 0 else end
            if not (0 <= start <= end < nd):
                return (int(np.prod(shape)),)
            return (*shape[:start], int(np.prod(shape[start:end + 1])), *shape[end + 1:])
        raise UnsupportedNodeError(f"node {name!r}: type {t!r} is not handled. Fix: export it as a NIR 1.0 node")

    def _resolve_padding(self, name: str, spatial: tuple[int, ...]) -> tuple[int, ...]:
        p = self.params[name]
        pad = p["padding"]
        nd = len(spatial)
        if isinstance(pad, str):
            if pad == "valid":
                return (0,) * nd
            if pad == "same":
                k = p["weight"].shape[2:]
                if any(s != 1 for s in p["stride"]) or any((p["dilation"][d] * (k[d] - 1)) % 2 for d in range(nd)):
                    raise ParameterError(f"node {name!r}: padding='same' needs stride 1 and an odd kernel extent. "
                                         "Fix: give the padding as integers")
                return tuple(p["dilation"][d] * (k[d] - 1) // 2 for d in range(nd))
            raise ParameterError(f"node {name!r}: padding {pad!r} is not 'same', 'valid' or integers. "
                                 "Fix: give the padding as integers")
        return pad

    def _in_size(self, name: str) -> int | None:
        node, p = self.nodes[name], self.params[name]
        if node.type in ("Affine", "Linear"):
            return int(p["weight"].shape[1])
        if node.type in ("Conv1d", "Conv2d", "SumPool2d", "AvgPool2d"):
            return int(np.prod(p["_in"]))
        if node.type in ("Flatten", "Identity", "Output"):
            return None
        return int(np.prod(self.shape[name]))

    def _check_edges(self) -> None:
        for dst in self.nodes:
            want = self._in_size(dst)
            for src in self.preds[dst]:
                have = int(np.prod(self.shape[src]))
                if want is not None and have != want:
                    raise GraphError(
                        f"shape mismatch on edge {src!r} -> {dst!r}: {src!r} outputs {list(self.shape[src])} "
                        f"({have} values) but {dst!r} ({self.nodes[dst].type}) takes {want}. Fix: make the "
                        "layer sizes agree"
                    )
            if self.nodes[dst].type == "Output":
                declared = self.params[dst]["shape"]
                have_shape = self.shape[dst]
                if declared is not None and int(np.prod(declared)) != int(np.prod(have_shape)):
                    raise GraphError(
                        f"Output {dst!r} declares shape {list(declared)} but receives {list(have_shape)}. "
                        "Fix: correct the Output shape"
                    )
                if declared is not None and tuple(declared) != tuple(have_shape):
                    self.warn(f"out-{dst}", f"Output {dst!r} declares shape {list(declared)}, its input is "
                              f"{list(have_shape)}; leaked batch/time axes ignored")
        # Neuron params: broadcast 0-d parameters to the node's shape.
        for name, node in self.nodes.items():
            if node.type in NEURON_KINDS:
                n_shape = self.shape[name]
                for key in list(self.params[name]):
                    val = np.asarray(self.params[name][key], dtype=np.float64)
                    if val.size not in (1, int(np.prod(n_shape))):
                        raise ParameterError(
                            f"node {name!r} ({node.type}): {key} has {val.size} values for "
                            f"{int(np.prod(n_shape))} neurons. Fix: one value, or one per neuron"
                        )
                    self.params[name][key] = np.broadcast_to(val.reshape(-1) if val.size > 1 else val,
                                                             (int(np.prod(n_shape)),)).astype(np.float64).copy()

    # ---- composition -----------------------------------------------------------------------
    def compose(self) -> Network:
        populations: dict[str, Population] = {}
        for name, node in self.nodes.items():
            if node.type == "Input":
                populations[name] = Population(name, INPUT, self.shape[name])
            elif node.type in NEURON_KINDS:
                populations[name] = Population(name, node.type, self.shape[name], dict(self.params[name]))
        memo: dict[str, tuple[dict[tuple[str, int], sp.csr_array], np.ndarray, dict | None]] = {}
        visiting: set[str] = set()

        def contrib(name: str) -> tuple[dict[tuple[str, int], sp.csr_array], np.ndarray, dict | None]:
            """Terms (source population, delay) -> matrix, and a constant bias, of `name`'s output."""
            if name in populations:
                n = populations[name].size
                return {(name, 0): sp.identity(n, format="csr")}, np.zeros(n), {"identity": True}
            if name in memo:
                return memo[name]
            if name in visiting:
                raise GraphError(
                    f"cycle through {name!r} has no neuron in it, so its value is undefined at every "
                    "step. Fix: put a neuron (e.g. LIF) in the loop"
                )
            visiting.add(name)
            terms, bias, structure = self._sum_inputs(name, contrib)
            with _guard(name, self.nodes[name].type, "composing it with its inputs"):
                result = self._apply(name, terms, bias, structure)
            visiting.discard(name)
            memo[name] = result
            return result

        projections: list[Projection] = []
        for post, pop in populations.items():
            if pop.kind == INPUT:
                continue
            terms, bias, structure = self._sum_inputs(post, contrib)
            if np.any(bias):
                pop.bias = bias
            projections.extend(self._to_projections(post, pop.size, terms, structure, populations))
        outputs: dict[str, str] = {}
        for name, node in self.nodes.items():
            if node.type != "Output":
                continue
            src = self.preds[name]
            hop = src[0]
            while hop not in populations and self.nodes[hop].type in ("Identity", "Flatten") \
                    and len(self.preds[hop]) == 1:
                hop = self.preds[hop][0]
            if len(src) != 1 or hop not in populations:
                raise GraphError(
                    f"Output {name!r} is fed by {src}, not by one neuron population; neurocc reads outputs "
                    "from neurons. Fix: end the graph with a neuron layer (LIF, or LI for a readout)"
                )
            outputs[name] = hop
        if not outputs:
            raise GraphError("the graph has no Output node. Fix: add a nir.Output after the last layer")
        inputs = [n for n, nd in self.nodes.items() if nd.type == "Input"]
        return Network(populations, projections, inputs, outputs, self.dt,
                       self.convention.get("discretization", "euler"))

    def _sum_inputs(self, name: str, contrib: Any) -> tuple[dict, np.ndarray, dict | None]:
        terms: dict[tuple[str, int], sp.csr_array] = {}
        bias = None
        structure = None
        preds = self.preds[name]
        for pred in preds:
            t, b, s = contrib(pred)
            for key, mat in t.items():
                terms[key] = terms[key] + mat if key in terms else mat
            bias = b if bias is None else bias + b
            structure = s if len(preds) == 1 else None
        return terms, bias if bias is not None else np.zeros(0), structure

    def _apply(self, name: str, terms: dict, bias: np.ndarray, structure: dict | None) -> tuple:
        node, p = self.nodes[name], self.params[name]
        t = node.type
        if t in ("Identity", "Flatten", "Output"):
            return terms, bias, structure
        if t == "Delay":
            steps = np.broadcast_to(p["steps"].reshape(-1) if p["steps"].size > 1 else p["steps"],
                                    (bias.size,))
            out: dict[tuple[str, int], sp.csr_array] = {}
            for value in np.unique(steps):
                mask = sp.diags((steps == value).astype(np.float64), format="csr")
                for (src, d), mat in terms.items():
                    key = (src, d + int(value))
                    part = (mask @ mat).tocsr()
                    out[key] = out[key] + part if key in out else part
            return out, bias, None
        if t in ("Affine", "Linear"):
            mat = sp.csr_array(p["weight"])
            new_bias = mat @ bias + (p["bias"] if t == "Affine" else 0.0)
            return {k: (mat @ m).tocsr() for k, m in terms.items()}, new_bias, None
        if t == "Scale":
            s = np.broadcast_to(p["scale"].reshape(-1) if p["scale"].size > 1 else p["scale"], (bias.size,))
            mat = sp.diags(s, format="csr")
            return {k: (mat @ m).tocsr() for k, m in terms.items()}, s * bias, None
        if t in ("Conv1d", "Conv2d"):
            c_in, *spatial = p["_in"]
            mat, out_shape = conv_matrix(p["weight"], tuple(spatial), p["stride"], p["_pad"], p["dilation"],
                                         p["groups"])
            n_pos = int(np.prod(out_shape[1:]))
            new_bias = mat @ bias + np.repeat(p["bias"], n_pos)
            hint = None
            if structure and structure.get("identity"):
                hint = {"kind": t, "weight": p["weight"], "in_shape": p["_in"], "out_shape": out_shape,
                        "stride": p["stride"], "padding": p["_pad"], "dilation": p["dilation"],
                        "groups": p["groups"]}
            return {k: (mat @ m).tocsr() for k, m in terms.items()}, new_bias, hint
        if t in ("SumPool2d", "AvgPool2d"):
            c, h, w = p["_in"]
            mat, _ = pool_matrix(c, (h, w), p["kernel_size"], p["stride"], p["padding"], t == "AvgPool2d")
            return {k: (mat @ m).tocsr() for k, m in terms.items()}, mat @ bias, None
        raise UnsupportedNodeError(f"node {name!r}: {t} cannot sit between neurons. Fix: only linear nodes "
                                   "(Affine, Linear, Scale, Conv, Pool, Flatten, Delay) connect neurons")

    def _to_projections(self, post: str, n_post: int, terms: dict, structure: dict | None,
                        populations: dict[str, Population]) -> list[Projection]:
        by_source: dict[str, list[tuple[int, sp.csr_array]]] = defaultdict(list)
        for (src, delay), mat in terms.items():
            by_source[src].append((delay, sp.coo_array(mat)))
        result = []
        for src, parts in by_source.items():
            # Merge delay branches into one projection while no (post, pre) pair repeats.
            groups: list[list[tuple[int, sp.coo_array]]] = []
            used: list[set[int]] = []
            n_pre = populations[src].size
            for delay, coo in sorted(parts, key=lambda x: x[0]):
                keys = set((coo.row.astype(np.int64) * n_pre + coo.col).tolist()) if coo.nnz < 200_000 \
                    else None
                for g, u in zip(groups, used, strict=True):
                    if keys is not None and not (u & keys):
                        g.append((delay, coo))
                        u |= keys
                        break
                else:
                    groups.append([(delay, coo)])
                    used.append(keys or set())
            for g in groups:
                rows = np.concatenate([c.row for _, c in g]).astype(np.int64)
                cols = np.concatenate([c.col for _, c in g]).astype(np.int64)
                vals = np.concatenate([c.data for _, c in g]).astype(np.float64)
                dels = np.concatenate([np.full(c.nnz, d, dtype=np.int64) for d, c in g])
                hint = structure if (len(parts) == 1 and g[0][0] == 0 and structure
                                     and "kind" in structure) else None
                proj = make_projection(src, post, rows, cols, vals, dels, (n_post, n_pre), hint)
                if proj.n_synapses:
                    result.append(proj)
        return result


def build_network(raw: RawGraph, dt: float | None = None, convention: str | None = None,
                  discretization: str | None = None) -> Network:
    if convention is not None and convention not in CONVENTIONS:
        raise ParameterError(f"unknown convention {convention!r}. Fix: use one of {', '.join(CONVENTIONS)}")
    if convention is not None and "neurocc_dt" in raw.metadata:
        warnings.warn(f"{raw.source}: written by neurocc.save, which stores NIR values and its dt; convention "
                      f"{convention!r} describes another exporter's encoding and is ignored", NeuroccWarning,
                      stacklevel=3)
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
    b = _Builder(raw, step, conv)
    b.flatten_structure()
    b.read_params()
    b.infer_shapes()
    net = b.compose()
    for pop in net.populations.values():
        if pop.kind != INPUT:
            coefficients(pop, net.dt, net.discretization)  # ParameterError when dt is too long for Euler
    return net
