"""Reference simulators: float (NIR's equations) and integer (the shared CUBA-LIF, bit-exact).

Both take an input raster `[T, n_inputs]` (or `[T, *input_shape]`) and return every
population's spikes and state per step. Synaptic delays are ring buffers of input
current indexed by arrival step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ..compiler.errors import InputError
from ..compiler.ir import INPUT, Network
from ..compiler.ir.lif import LifNeurons, Widths
from ..compiler.neuron import coefficients
from .conv import ConvEvents
from .synapses import EventProjection


@dataclass
class IntState:
    """The integer run's whole state between two steps: continuing from it is exactly the longer run.

    u, v: [n] int64 current and voltage of every LIF neuron (the non-input populations in network order,
    concatenated). ring: [slots, n] int64 input current already sent, row r arriving r steps after the
    state's step (spikes in flight through synaptic delays). The synapses and neurons hold nothing else.
    """

    u: np.ndarray
    v: np.ndarray
    ring: np.ndarray


@dataclass
class SimResult:
    """Per population: spikes [T, n] (bool), and state traces [T, n] where the kind has them."""

    spikes: dict[str, np.ndarray]
    v: dict[str, np.ndarray] = field(default_factory=dict)
    i: dict[str, np.ndarray] = field(default_factory=dict)
    steps: int = 0
    state: IntState | None = None  # simulate_int(return_state=True): the state after the last step

    def as_arrays(self) -> dict[str, np.ndarray]:
        out = {f"{k}.spikes": s for k, s in self.spikes.items()}
        out.update({f"{k}.v": v for k, v in self.v.items()})
        out.update({f"{k}.i": i for k, i in self.i.items()})
        return out


def split_inputs(net: Network, raster: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check an input raster against the network's inputs; return per input population [T, n]."""
    if isinstance(raster, dict):
        missing = [n for n in net.inputs if n not in raster]
        if missing:
            raise InputError(f"input raster has no entry for input(s) {missing}. Fix: provide one per Input node")
        parts = {n: np.asarray(raster[n]) for n in net.inputs}
    else:
        raster = np.asarray(raster)
        if raster.ndim < 2:
            raise InputError(f"input raster must be [T, *input_shape]; got shape {list(raster.shape)}")
        if len(net.inputs) != 1:
            raise InputError(f"network has {len(net.inputs)} inputs {net.inputs}; pass a dict name -> raster")
        parts = {net.inputs[0]: raster}
    out = {}
    steps = None
    for name, arr in parts.items():
        n = net.populations[name].size
        flat = arr.reshape(arr.shape[0], -1) if arr.ndim >= 2 else arr
        if flat.shape[1] != n:
            raise InputError(
                f"input {name!r} has {flat.shape[1]} channels per step (shape {list(arr.shape)}), the network "
                f"expects {n} (shape {list(net.populations[name].shape)}). Fix: reshape the raster to "
                f"[T, {', '.join(map(str, net.populations[name].shape))}]"
            )
        if not np.all(np.isfinite(flat)):
            raise InputError(f"input {name!r} contains NaN/Inf")
        if steps is not None and flat.shape[0] != steps:
            raise InputError("input rasters have different numbers of steps")
        steps = flat.shape[0]
        out[name] = flat
    return out


def population_order(net: Network) -> tuple[list[str], set[tuple[str, str]]]:
    """A topological order of populations, and the (pre, post) pairs that close a cycle."""
    g = nx.DiGraph()
    g.add_nodes_from(net.populations)
    for p in net.projections:
        g.add_edge(p.pre, p.post)
    order: list[str] = []
    seen: set[str] = set()
    roots = list(net.inputs) + [n for n in net.populations if n not in net.inputs]
    for root in roots:
        if root in seen:
            continue
        for node in nx.dfs_postorder_nodes(g, root):
            if node not in seen:
                seen.add(node)
                order.append(node)
    order.reverse()
    # Inputs first: they have no incoming projections.
    order = [n for n in order if n in net.inputs] + [n for n in order if n not in net.inputs]
    pos = {n: k for k, n in enumerate(order)}
    back = {(p.pre, p.post) for p in net.projections if pos[p.pre] >= pos[p.post]}
    return order, back


@dataclass
class _Delivery:
    post: str
    latency: int
    weights: sp.csr_array


def _deliveries(net: Network, latency_mode: str, back: set[tuple[str, str]],
                weights_of=None) -> dict[str, list[_Delivery]]:
    """Per pre population: one sparse matrix per distinct synaptic latency."""
    out: dict[str, list[_Delivery]] = {n: [] for n in net.populations}
    for proj in net.projections:
        base = 1 if (latency_mode == "hardware" or (proj.pre, proj.post) in back) else 0
        rows, cols, vals, dels = proj.coo()
        if weights_of is not None:
            vals = weights_of(proj)
        for d in np.unique(dels):
            sel = dels == d
            w = sp.csr_array((vals[sel], (rows[sel], cols[sel])), shape=proj.weights.shape)
            out[proj.pre].append(_Delivery(proj.post, base + int(d), w))
    return out


def simulate_float(net: Network, raster: np.ndarray | dict[str, np.ndarray], latency: str = "framework",
                   record: bool = True) -> SimResult:
    """Run NIR's equations (see compiler/neuron.py) in float64.

    latency='framework': a spike reaches the next layer in the same step (as snnTorch, Norse,
    Sinabs simulate); recurrent projections take one step. latency='hardware': every projection
    takes one step, as on Loihi and in the integer simulator, so the two compare step by step.
    """
    if latency not in ("framework", "hardware"):
        raise InputError(f"latency must be 'framework' or 'hardware', not {latency!r}")
    inputs = split_inputs(net, raster)
    steps = next(iter(inputs.values())).shape[0]
    order, back = population_order(net)
    deliveries = _deliveries(net, latency, back)
    max_lat = max((d.latency for ds in deliveries.values() for d in ds), default=0)
    slots = max_lat + 1
    buf = {n: np.zeros((slots, p.size)) for n, p in net.populations.items() if p.kind != INPUT}
    coef = {n: coefficients(p, net.dt, net.discretization) for n, p in net.populations.items() if p.kind != INPUT}
    bias = {n: net.populations[n].bias_or_zero() for n in coef}
    v = {n: np.zeros(net.populations[n].size) for n in coef}
    cur = {n: np.zeros(net.populations[n].size) for n in coef}
    res = SimResult({n: np.zeros((steps, p.size), dtype=bool) for n, p in net.populations.items()}, steps=steps)
    if record:
        res.v = {n: np.zeros((steps, net.populations[n].size), dtype=np.float32) for n in coef}
        res.i = {n: np.zeros((steps, net.populations[n].size), dtype=np.float32)
                 for n in coef if coef[n].has_current}
    for t in range(steps):
        slot = t % slots
        for name in order:
            if name in inputs:
                s = inputs[name][t]
            else:
                c = coef[name]
                drive = buf[name][slot] + bias[name]
                buf[name][slot] = 0.0
                cur[name] = c.alpha_i * cur[name] + c.gain_in * drive
                vn = c.alpha_v * v[name] + c.h * cur[name] + c.c
                if c.spiking:
                    fired = vn > c.thr
                    vn = np.where(fired, c.v_reset, vn)
                    s = fired
                else:
                    s = None
                v[name] = vn
                if record:
                    res.v[name][t] = vn
                    if c.has_current:
                        res.i[name][t] = cur[name]
            if s is None:
                continue
            spiking = s != 0
            res.spikes[name][t] = spiking
            if not spiking.any():
                continue
            for d in deliveries[name]:
                buf[d.post][(t + d.latency) % slots] += d.weights @ s
    return res


# ---- integer reference (the golden model) ---------------------------------------------------

def integer_inputs(inet, raster) -> dict[str, np.ndarray]:
    """Input rasters as int64; the integer model carries binary or graded integer spikes only."""
    parts = raster if isinstance(raster, dict) else {inet.inputs[0]: np.asarray(raster)}
    out = {}
    for name in inet.inputs:
        if name not in parts:
            raise InputError(f"no input raster for {name!r}")
        arr = np.asarray(parts[name])
        flat = arr.reshape(arr.shape[0], -1)
        n = inet.populations[name].size
        if flat.shape[1] != n:
            raise InputError(f"input {name!r} has {flat.shape[1]} channels per step, the network expects {n}. "
                             f"Fix: reshape the raster to [T, {', '.join(map(str, inet.populations[name].shape))}]")
        if not np.all(np.isfinite(flat)) or np.any(flat != np.rint(flat)) or np.any(flat < 0):
            raise InputError(f"input {name!r}: the integer model takes non-negative integer spike counts. "
                             "Fix: binarise or bin the input")
        out[name] = flat.astype(np.int64)
    return out


def simulate_int(inet, raster, record: bool = True, unrolled: bool = False, state: IntState | None = None,
                 return_state: bool = False) -> SimResult:
    """Bit-exact integer CUBA-LIF (Lava's PyLifModelBitAcc + Dense/DelayDense bit-accurate models).

    Each projection adds one step of latency; a spike with delay d sent at t arrives at t+1+d.
    Every LIF neuron of every population updates in one vectorised pass per step (all their input
    was sent in earlier steps), so the per-step cost does not grow with the number of populations.
    `state` continues an earlier run (its `return_state=True` result's `.state`) instead of starting at
    rest: a run split into pieces this way equals the whole run step for step (runtime/placement_window.py).
    """
    inputs = integer_inputs(inet, raster)
    steps = next(iter(inputs.values())).shape[0]
    slots = max((p.max_delay for p in inet.projections), default=0) + 2
    lifs = [n for n, p in inet.populations.items() if not p.is_input]
    offset: dict[str, int] = {}
    n_total = 0
    for name in lifs:
        offset[name] = n_total
        n_total += inet.populations[name].size

    def per_neuron(value) -> np.ndarray:
        parts = [np.broadcast_to(np.asarray(value(inet.populations[n]), dtype=np.int64), inet.populations[n].size)
                 for n in lifs]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    neurons = LifNeurons(per_neuron(lambda p: p.du), per_neuron(lambda p: p.dv), per_neuron(lambda p: p.vth),
                         per_neuron(lambda p: p.bias_effective()), Widths.of(inet.format))
    buf = np.zeros((slots, n_total), np.int64)
    u = np.zeros(n_total, np.int64)
    v = np.zeros(n_total, np.int64)
    if state is not None:
        if state.u.shape != u.shape or state.v.shape != v.shape or state.ring.shape != buf.shape:
            raise InputError(f"the state to continue from holds {state.u.shape[0]} neurons and a ring of "
                             f"{list(state.ring.shape)}; this network needs {n_total} and {list(buf.shape)}. "
                             "Fix: pass the state a run of this same network returned")
        u, v, buf = state.u.astype(np.int64), state.v.astype(np.int64), state.ring.astype(np.int64)
    outgoing: dict[str, list[tuple[int, int, EventProjection | ConvEvents]]] = {n: [] for n in inet.populations}
    for proj in inet.projections:
        post = inet.populations[proj.post]
        # A conv scatters its kernel per spike (`unrolled=True`: the explicit rows, the cross-check).
        events = ConvEvents(proj.conv, proj.weight_exp) if proj.conv is not None and not unrolled else \
            EventProjection(proj.weights, proj.delays, proj.weight_exp)
        outgoing[proj.pre].append((offset[proj.post], post.size, events))
    fired_all = np.zeros((steps, n_total), dtype=bool)
    v_all = np.zeros((steps, n_total), np.int32) if record else None
    i_all = np.zeros((steps, n_total), np.int32) if record else None
    senders = [(name, inputs[name], None) for name in inet.inputs if outgoing[name]]
    senders += [(name, None, offset[name]) for name in lifs if outgoing[name]]
    for t in range(steps):
        slot = t % slots
        a_in = buf[slot].copy()
        buf[slot] = 0
        u, v, fired = neurons.step(u, v, a_in)
        fired_all[t] = fired
        if record:
            v_all[t] = v
            i_all[t] = u
        for name, raster_of, off in senders:
            if raster_of is not None:
                s = raster_of[t]
            else:
                s = fired[off:off + inet.populations[name].size]
            if not s.any():
                continue
            binary = s.dtype == bool
            for post_off, n_post, ev in outgoing[name]:
                acc = ev.accumulate(s, binary=binary)
                if acc is None:
                    continue
                # Delay d lands at t + 1 + d: slots t+1 .. t+n_delays of the ring.
                if ev.n_delays == 1:
                    buf[(t + 1) % slots, post_off:post_off + n_post] += acc[0]
                else:
                    idx = (t + 1 + np.arange(ev.n_delays)) % slots
                    buf[idx, post_off:post_off + n_post] += acc
    res = SimResult({}, steps=steps)
    if return_state:  # rotate the ring so row 0 is the next step's arrivals
        res.state = IntState(u.copy(), v.copy(), np.roll(buf, -(steps % slots), axis=0))
    for name in inet.inputs:
        res.spikes[name] = inputs[name] != 0
    for name in lifs:
        cols = slice(offset[name], offset[name] + inet.populations[name].size)
        res.spikes[name] = fired_all[:, cols]
        if record:
            res.v[name] = v_all[:, cols]
            res.i[name] = i_all[:, cols]
    res.spikes = {n: res.spikes[n] for n in inet.populations}  # population order, as before
    return res
