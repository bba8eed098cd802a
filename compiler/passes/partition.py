"""Partition: cut every population into slices that fit one core under every budget.

Budgets come from the target's [core] section; synapse memory is counted with the target's
real encoding ([encoding]): one row per (source neuron, delay stage) that reaches the slice,
a row header, and per synapse weight + delay + index bits (bit-packed and rounded to 64-bit
words on Loihi; whole words on SpiNNaker and Cortex-M). Delays at or beyond the core's native
delay slots are served by delay-extension slices, as on SpiNNaker: the source's spikes are
re-sent once per stage of `delay_slots` steps, and the synapse keeps the remainder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import TargetError
from ..mapping import Slice
from ..targets.target import Target
from .quantize import IntNetwork, IntProjection

ROLE_NEURONS = "neurons"
ROLE_SOURCE = "source"  # an input population: a spike-source core
ROLE_DELAY = "delay"  # a delay-extension slice of a source population


@dataclass
class SliceUsage:
    neurons: int = 0
    synapses: int = 0
    synapse_bytes: int = 0
    fan_in: int = 0  # input axons: distinct (source neuron, stage) rows
    out_axons: int = 0
    delay_slots: int = 0  # native delay slots used (max native delay + 1)
    delay_stages: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Partition:
    slices: list[Slice]
    usage: list[SliceUsage]
    notes: list[str] = field(default_factory=list)


def _row_bits(target: Target, proj: IntProjection) -> tuple[int, int]:
    """(bits per synapse, bits per row header) in the target's encoding."""
    enc, fmt = target.encoding, target.format
    if enc.synapse_word_bits:
        return enc.synapse_word_bits, enc.row_header_bits
    weight_bits = fmt.weight_bits + (1 if proj.sign_mode == "mixed" else 0)
    delay_bits = enc.delay_bits if proj.max_delay > 0 else 0
    return weight_bits + delay_bits + enc.index_bits, enc.row_header_bits


def _bytes_for_rows(counts: np.ndarray, syn_bits: int, hdr_bits: int, packed: bool) -> int:
    bits = hdr_bits + counts.astype(np.int64) * syn_bits
    if packed:  # Loihi: each row rounded up to 64-bit words (nengo-loihi SynapseConfig.bits_per_axon)
        return int((np.ceil(bits / 64) * 8).sum())
    return int((np.ceil(bits / 32) * 4).sum())  # 32-bit words


def slice_usage(inet: IntNetwork, target: Target, post: str, start: int, stop: int) -> SliceUsage:
    """Exact resource use of neurons [start, stop) of `post` on one core."""
    slots = target.core.delay_slots
    packed = target.encoding.synapse_word_bits == 0
    use = SliceUsage(neurons=stop - start)
    fan_in_keys: list[np.ndarray] = []
    offset = 0
    for proj in inet.incoming(post):
        w = proj.weights
        lo, hi = int(w.indptr[start]), int(w.indptr[stop])
        if hi == lo:
            offset += w.shape[1] * (target.encoding.delay_extension_slots + 1)
            continue
        pre = w.indices[lo:hi].astype(np.int64)
        delays = proj.delays[lo:hi]
        stage = delays // slots
        key = stage * w.shape[1] + pre
        uniq, counts = np.unique(key, return_counts=True)
        syn_bits, hdr_bits = _row_bits(target, proj)
        use.synapses += hi - lo
        use.synapse_bytes += _bytes_for_rows(counts, syn_bits, hdr_bits, packed)
        use.delay_slots = max(use.delay_slots, int((delays % slots).max()) + 1)
        use.delay_stages = max(use.delay_stages, int(stage.max()))
        fan_in_keys.append(uniq + offset)
        offset += w.shape[1] * (target.encoding.delay_extension_slots + 1)
    use.fan_in = int(sum(k.size for k in fan_in_keys))
    return use


def _check(use: SliceUsage, target: Target) -> list[tuple[str, int, int]]:
    """Budgets exceeded: (name, used, limit)."""
    core = target.core
    over = []
    for name, used, limit in (
        ("neurons", use.neurons, core.neurons),
        ("synapse memory (bytes)", use.synapse_bytes, core.synapse_memory_bytes),
        ("input axons (fan-in)", use.fan_in, core.input_axons),
        ("output axons", use.out_axons, core.output_axons),
        ("delay slots", use.delay_slots, core.delay_slots),
    ):
        if used > limit:
            over.append((name, used, limit))
    return over


def _bounds(size: int, k: int) -> list[tuple[int, int]]:
    """Exactly k contiguous slices whose sizes differ by at most one."""
    k = max(1, min(k, size))
    edges = [(i * size) // k for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


class _Index:
    """Synapses in row order (row = pre neuron of one projection, then post neuron), for whole-population
    counts. One projection, or (batched) all projections into one population: rows never span two."""

    def __init__(self, proj: IntProjection | None, target: Target, parts: list[_Index] | None = None):
        if parts is not None:  # a batch: rows numbered apart per projection, bits per synapse
            self.proj = None
            offsets = np.cumsum([0] + [p.n_pre for p in parts[:-1]])
            self.rows = np.concatenate([p.rows for p in parts])
            self.cols = np.concatenate([p.cols + off for p, off in zip(parts, offsets, strict=True)])
            self.stage = np.concatenate([p.stage for p in parts])
            self.native = np.concatenate([p.native for p in parts])
            self.has_stages = any(p.has_stages for p in parts)
            self.syn_bits = np.concatenate([np.broadcast_to(p.syn_bits, p.rows.shape) for p in parts])
            self.hdr_bits = np.concatenate([np.broadcast_to(p.hdr_bits, p.rows.shape) for p in parts])
            self.n_pre = int(sum(p.n_pre for p in parts))
            return
        assert proj is not None
        slots = target.core.delay_slots
        w = proj.weights
        # 32-bit neuron indices and 16-bit delay parts: 12 bytes per synapse held through partitioning.
        self.proj = proj
        if w.nnz > 20_000:  # scipy's CSR -> CSC is linear; carry each synapse's position through it
            pos = sp.csr_array((np.arange(1, w.nnz + 1, dtype=np.int64), w.indices, w.indptr), shape=w.shape).tocsc()
            pos.sort_indices()
            order = pos.data - 1
            self.rows = pos.indices.astype(np.int32)
            self.cols = np.repeat(np.arange(w.shape[1], dtype=np.int32), np.diff(pos.indptr))
            del pos
        else:  # small projections (PACMAN-style graphs have 100k+): no scipy object per projection
            post = np.repeat(np.arange(w.shape[0], dtype=np.int32), np.diff(w.indptr))
            pre = w.indices.astype(np.int32, copy=False)
            order = np.lexsort((post, pre))  # column order: by pre neuron, then post neuron
            self.rows = post[order]
            self.cols = pre[order]
            del post
        delays = np.asarray(proj.delays)[order]
        del order
        self.stage = (delays // slots).astype(np.int16)
        self.native = (delays % slots).astype(np.int16)
        del delays
        self.has_stages = bool(self.stage.size and self.stage.max() > 0)
        self.syn_bits, self.hdr_bits = _row_bits(target, proj)
        self.n_pre = w.shape[1]

    @staticmethod
    def batch(parts: list[_Index], target: Target) -> list[_Index]:
        """One index for a population's many small incoming projections (numpy calls per population,
        not per projection); a single or large projection stays as it is (no copy)."""
        if len(parts) < 2 or sum(p.rows.size for p in parts) > 4_000_000:
            return parts
        return [_Index(None, target, parts)]

    def groups(self, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Destination slice per synapse, and the first synapse of each (pre, slice, stage) row."""
        dst = np.searchsorted(edges, self.rows, side="right")
        if self.has_stages:
            order = np.lexsort((self.stage, dst, self.cols))
        else:
            order = np.arange(dst.size)  # column order already groups (pre, dst): rows sorted
        d, c, st = dst[order], self.cols[order], self.stage[order]
        new = np.ones(d.size, dtype=bool)
        new[1:] = (d[1:] != d[:-1]) | (c[1:] != c[:-1]) | (st[1:] != st[:-1])
        return dst, order, new

    def pair_starts(self, edges: np.ndarray) -> np.ndarray:
        """First synapse of each (pre neuron, destination slice) pair, ignoring stage (out axons)."""
        dst = np.searchsorted(edges, self.rows, side="right")
        new = np.ones(dst.size, dtype=bool)
        new[1:] = (dst[1:] != dst[:-1]) | (self.cols[1:] != self.cols[:-1])
        return new


def _usage(target: Target, incoming: list[_Index], bounds: list[tuple[int, int]]) -> list[SliceUsage]:
    """Resource use of every slice of one population at once (same counts as slice_usage)."""
    n = len(bounds)
    edges = np.asarray([b for _, b in bounds])
    packed = target.encoding.synapse_word_bits == 0
    synapses = np.zeros(n, np.int64)
    nbytes = np.zeros(n, np.int64)
    fan_in = np.zeros(n, np.int64)
    slots_used = np.zeros(n, np.int64)
    stages = np.zeros(n, np.int64)
    for idx in incoming:
        if idx.rows.size == 0:
            continue
        dst, order, new = idx.groups(edges)
        d_sorted = dst[order]
        starts = np.flatnonzero(new)
        lengths = np.diff(np.append(starts, d_sorted.size))
        if isinstance(idx.syn_bits, np.ndarray):  # a batch: each row's projection sets its bits
            first = order[starts]
            bits = idx.hdr_bits[first] + lengths * idx.syn_bits[first]
        else:
            bits = idx.hdr_bits + lengths * idx.syn_bits
        row_bytes = np.ceil(bits / 64) * 8 if packed else np.ceil(bits / 32) * 4
        synapses += np.bincount(dst, minlength=n)
        nbytes += np.bincount(d_sorted[starts], weights=row_bytes, minlength=n).astype(np.int64)
        fan_in += np.bincount(d_sorted[starts], minlength=n)
        np.maximum.at(slots_used, dst, idx.native + 1)
        np.maximum.at(stages, dst, idx.stage)
    return [SliceUsage(neurons=b - a, synapses=int(synapses[k]), synapse_bytes=int(nbytes[k]),
                       fan_in=int(fan_in[k]), delay_slots=int(slots_used[k]), delay_stages=int(stages[k]))
            for k, (a, b) in enumerate(bounds)]


def _out_axons(outgoing: list[_Index], bounds_of: dict[str, list[tuple[int, int]]],
               bounds: list[tuple[int, int]]) -> np.ndarray:
    """Axons each source slice needs: one per (neuron, destination slice) pair with a synapse."""
    src_edges = np.asarray([b for _, b in bounds])
    total = np.zeros(len(bounds), np.int64)
    for idx in outgoing:
        if idx.rows.size == 0:
            continue
        new = idx.pair_starts(np.asarray([b for _, b in bounds_of[idx.proj.post]]))
        src = np.searchsorted(src_edges, idx.cols[new], side="right")
        total += np.bincount(src, minlength=len(bounds))
    return total


def _fit_population(inet: IntNetwork, target: Target, name: str, incoming: list[_Index]) -> list[tuple[int, int]]:
    pop = inet.populations[name]
    size = pop.size
    k = max(1, math.ceil(size / target.core.neurons))
    if pop.kind != "input" and incoming:
        whole = _usage(target, incoming, [(0, size)])[0]
        k = max(k, math.ceil(whole.synapse_bytes / max(1, target.core.synapse_memory_bytes)),
                math.ceil(whole.fan_in / max(1, target.core.input_axons)))
        k = min(k, size)
    while True:
        bounds = _bounds(size, k)
        uses = _usage(target, incoming, bounds) if pop.kind != "input" else [SliceUsage(neurons=b - a)
                                                                            for a, b in bounds]
        worst = next(((u, o) for u in uses if (o := _check(u, target))), None)
        if worst is None:
            return bounds
        if len(bounds) == size:  # one neuron per core and still over: cannot fit
            use, over = worst
            what, used, limit = over[0]
            raise TargetError(
                f"population {name!r} does not fit {target.name}: one neuron needs {used} {what}, the core "
                f"budget is {limit} (over by {used - limit}). Fix: fewer synapses per neuron (split the layer's "
                f"fan-in), shorter delays, or a target with more {what} per core"
            )
        # Grow in proportion to the worst overrun, at least by one slice.
        ratio = max(used / limit for u in uses for _, used, limit in _check(u, target))
        k = min(size, max(k + 1, int(math.ceil(k * min(ratio, 4.0)))))


def _depth(inet: IntNetwork) -> dict[str, int]:
    """Hops from the inputs (breadth first); unreachable populations count as depth 0."""
    depth = {name: 0 for name in inet.populations}
    successors: dict[str, list[str]] = {}
    for proj in inet.projections:
        successors.setdefault(proj.pre, []).append(proj.post)
    seen = set(inet.inputs)
    frontier = list(inet.inputs)
    while frontier:
        nxt = []
        for pre in frontier:
            for post in successors.get(pre, []):
                if post not in seen:
                    seen.add(post)
                    depth[post] = depth[pre] + 1
                    nxt.append(post)
        frontier = nxt
    return depth


def partition(inet: IntNetwork, target: Target) -> Partition:
    """Slices of every population (and delay-extension slices) that fit one core each."""
    max_total = target.core.delay_slots * (1 + target.encoding.delay_extension_slots) - 1
    notes: list[str] = []
    for proj in inet.projections:
        if proj.max_delay > max_total:
            raise TargetError(
                f"projection {proj.pre!r} -> {proj.post!r}: delay {proj.max_delay} steps exceeds {target.name}'s "
                f"{target.core.delay_slots} native slots x (1 + {target.encoding.delay_extension_slots} "
                f"extension stages) = {max_total + 1} steps. Fix: shorten delays or use a larger dt"
            )
    index = [_Index(p, target) for p in inet.projections]
    incoming: dict[str, list[_Index]] = {name: [] for name in inet.populations}
    outgoing: dict[str, list[_Index]] = {name: [] for name in inet.populations}
    for i in index:
        incoming[i.proj.post].append(i)
        outgoing[i.proj.pre].append(i)
    incoming = {name: _Index.batch(parts, target) for name, parts in incoming.items()}
    bounds_of = {name: _fit_population(inet, target, name, incoming[name]) for name in inet.populations}
    # Output axons depend on the destination slicing: split sources further until they fit, sinks
    # first so each population sees its destinations' final slicing (cycles take another round).
    depth = _depth(inet)
    for _ in range(16):
        changed = False
        for name in sorted(inet.populations, key=lambda n: -depth[n]):
            if not outgoing[name]:
                continue
            size = inet.populations[name].size
            while True:
                bounds = bounds_of[name]
                worst = int(_out_axons(outgoing[name], bounds_of, bounds).max())
                if worst <= target.core.output_axons:
                    break
                if len(bounds) >= size:
                    raise TargetError(
                        f"population {name!r}: a single neuron projects to {worst} cores, over {target.name}'s "
                        f"{target.core.output_axons} output axons by {worst - target.core.output_axons}. Fix: "
                        "fewer destination slices (larger cores) or another target"
                    )
                grow = max(len(bounds) + 1, math.ceil(len(bounds) * worst / target.core.output_axons))
                bounds_of[name] = _bounds(size, min(size, grow))
                changed = True
        if not changed:
            break
    slices: list[Slice] = []
    usage: list[SliceUsage] = []
    for name, bounds in bounds_of.items():
        pop = inet.populations[name]
        role = ROLE_SOURCE if pop.kind == "input" else ROLE_NEURONS
        uses = [SliceUsage(neurons=b - a) for a, b in bounds] if role == ROLE_SOURCE else \
            _usage(target, incoming[name], bounds)
        axons = _out_axons(outgoing[name], bounds_of, bounds) if outgoing[name] else np.zeros(len(bounds), np.int64)
        for (a, b), use, ax in zip(bounds, uses, axons, strict=True):
            use.out_axons = int(ax)
            slices.append(Slice(name, a, b, role=role))
            usage.append(use)
    # Delay extensions: one per source slice whose spikes some synapse needs >= delay_slots later.
    slots = target.core.delay_slots
    for name, bounds in bounds_of.items():
        stages = max((int(i.stage.max()) for i in outgoing[name] if i.stage.size), default=0)
        if stages == 0:
            continue
        notes.append(f"{name}: {len(bounds)} delay-extension slice(s), {stages} stage(s) of {slots} steps")
        for a, b in bounds:
            slices.append(Slice(name, a, b, role=ROLE_DELAY))
            usage.append(SliceUsage(neurons=b - a, delay_stages=stages))
    return Partition(slices, usage, notes)
