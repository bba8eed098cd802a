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

import numpy as np
import scipy.sparse as sp

from ..errors import TargetError
from ..ir import IntNetwork, IntProjection, Partition, Role, Slice, SliceUsage
from ..targets.target import Target


def _row_bits(target: Target, proj: IntProjection) -> tuple[int, int]:
    """(bits per synapse, bits per row header) in the target's encoding."""
    enc, fmt = target.encoding, target.format
    if enc.synapse_word_bits:
        return enc.synapse_word_bits, enc.row_header_bits
    weight_bits = fmt.weight_bits + (1 if proj.sign_mode == "mixed" else 0)
    delay_bits = enc.delay_bits if proj.max_delay > 0 else 0
    return weight_bits + delay_bits + enc.index_bits, enc.row_header_bits


# sPyNNaker's local-only conv connector header: 7 words + 14 shorts (research/conv-conversion-sweeps.md);
# no Loihi or Cortex-M figure is public, so every target budgets the same header per conv on a core.
CONV_HEADER_BYTES = 7 * 4 + 14 * 2


def _kernel_bits(target: Target, proj: IntProjection) -> int:
    """Bits of one stored kernel weight: the mantissa, plus a sign bit for a mixed-sign kernel."""
    return target.format.weight_bits + (1 if proj.sign_mode == "mixed" else 0)


def conv_slice_bytes(target: Target, proj: IntProjection, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Bytes of a conv projection on each slice [start, stop) of its post population: a header and the
    kernels of the output channels the slice covers, stored once (rounded to the target's words)."""
    conv = proj.conv
    assert conv is not None
    per_channel = conv.out_shape[1] * conv.out_shape[2]
    channels = (np.asarray(stops) - 1) // per_channel - np.asarray(starts) // per_channel + 1
    bits = channels * (conv.kernel[0].size * _kernel_bits(target, proj))
    word = 64 if target.encoding.synapse_word_bits == 0 else 32
    return CONV_HEADER_BYTES + np.ceil(bits / word).astype(np.int64) * (word // 8)


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
        use.synapses += hi - lo
        if proj.conv is not None:
            kernel = int(conv_slice_bytes(target, proj, np.array([start]), np.array([stop]))[0])
            use.synapse_bytes += kernel
            use.kernel_bytes += kernel
        else:
            syn_bits, hdr_bits = _row_bits(target, proj)
            use.synapse_bytes += _bytes_for_rows(counts, syn_bits, hdr_bits, packed)
        use.delay_slots = max(use.delay_slots, int((delays % slots).max()) + 1)
        use.delay_stages = max(use.delay_stages, int(stage.max()))
        fan_in_keys.append(uniq + offset)
        offset += w.shape[1] * (target.encoding.delay_extension_slots + 1)
    use.fan_in = int(sum(k.size for k in fan_in_keys))
    if target.core.local_bytes_per_neuron:
        use.local_bytes = use.kernel_bytes + use.neurons * target.core.local_bytes_per_neuron
    return use


def _check(use: SliceUsage, target: Target) -> list[tuple[str, int, int]]:
    """Budgets exceeded: (name, used, limit)."""
    core = target.core
    over = []
    if use.kernel_bytes and core.local_bytes_per_neuron:  # kernels sit in local memory beside neuron state
        if use.local_bytes > core.local_memory_bytes:
            over.append(("local memory for conv kernels and neuron state (bytes)", use.local_bytes,
                         core.local_memory_bytes))
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
    """Synapses in column order (by pre neuron of one projection, then post neuron), for whole-population
    counts. One projection, or (batched) all projections into one population: rows never span two.

    Held through partitioning: the 32-bit post index per synapse (4 bytes; the pre neuron is implied by
    `colptr`, the first synapse of each pre neuron's column), a 16-bit delay stage only when some synapse
    needs a delay extension, and per post neuron its synapse count, native delay slots used and deepest
    stage (slices are runs of post neurons: their maxima need no per-synapse pass).
    """

    def __init__(self, proj: IntProjection | None, target: Target, parts: list[_Index] | None = None):
        if parts is not None:  # a batch: rows numbered apart per projection, bits per synapse
            self.proj = None
            self.rows = np.concatenate([p.rows for p in parts])
            starts = np.cumsum([0] + [p.rows.size for p in parts])
            self.colptr = np.concatenate([p.colptr[:-1] + start for p, start in zip(parts, starts, strict=False)]
                                         + [starts[-1:]])
            self.has_stages = any(p.has_stages for p in parts)
            self.stage = np.concatenate([p.stage if p.stage is not None else np.zeros(p.rows.size, np.int16)
                                         for p in parts]) if self.has_stages else None
            self.syn_bits = np.concatenate([np.broadcast_to(p.syn_bits, p.rows.shape) for p in parts])
            self.hdr_bits = np.concatenate([np.broadcast_to(p.hdr_bits, p.rows.shape) for p in parts])
            self.n_pre = int(sum(p.n_pre for p in parts))
            self.post_count = np.sum([p.post_count for p in parts], axis=0)
            self.post_slots = np.max([p.post_slots for p in parts], axis=0)
            self.post_stage = np.max([p.post_stage for p in parts], axis=0)
            self._axons: tuple[list, np.ndarray] | None = None
            return
        assert proj is not None
        slots = target.core.delay_slots
        w = proj.weights
        self.proj = proj
        self.n_pre = w.shape[1]
        self.syn_bits, self.hdr_bits = _row_bits(target, proj)
        self._axons = None
        n_post = w.shape[0]
        self.post_count = np.diff(w.indptr).astype(np.int64)
        delays = np.asarray(proj.delays)
        max_delay = int(delays.max()) if delays.size else 0
        self.has_stages = max_delay >= slots
        # Per post neuron (CSR rows are post neurons): native slots used (max native delay + 1) and stage.
        self.post_slots = (self.post_count > 0).astype(np.int64)
        self.post_stage = np.zeros(n_post, np.int64)
        if max_delay > 0:
            full = np.flatnonzero(self.post_count)
            first = w.indptr[:-1][full]
            native = delays % slots if self.has_stages else delays
            self.post_slots[full] = np.maximum.reduceat(native, first).astype(np.int64) + 1
            del native
            if self.has_stages:
                self.post_stage[full] = np.maximum.reduceat(delays // slots, first)
        order = None
        if w.nnz > 20_000:  # scipy's CSR -> CSC is linear; carry each synapse's position only if stages need it
            data = np.arange(1, w.nnz + 1, dtype=np.int64) if self.has_stages else np.ones(w.nnz, np.int8)
            pos = sp.csr_array((data, w.indices, w.indptr), shape=w.shape).tocsc()
            del data
            pos.sort_indices()
            if self.has_stages:
                order = pos.data - 1
            self.rows = pos.indices.astype(np.int32, copy=False)
            self.colptr = pos.indptr.astype(np.int64)
            del pos
        else:  # small projections (PACMAN-style graphs have 100k+): no scipy object per projection
            post = np.repeat(np.arange(n_post, dtype=np.int32), np.diff(w.indptr))
            pre = w.indices.astype(np.int32, copy=False)
            order = np.lexsort((post, pre))  # column order: by pre neuron, then post neuron
            self.rows = post[order]
            self.colptr = np.searchsorted(pre[order], np.arange(self.n_pre + 1))
            del post
        self.stage = (delays[order] // slots).astype(np.int16) if self.has_stages else None

    @staticmethod
    def batch(parts: list[_Index], target: Target) -> list[_Index]:
        """One index for a population's many small incoming projections (numpy calls per population,
        not per projection); a single or large projection stays as it is (no copy)."""
        convs = [p for p in parts if p.proj is not None and p.proj.conv is not None]
        rows = [p for p in parts if p not in convs]
        if len(rows) < 2 or sum(p.rows.size for p in rows) > 4_000_000:
            return parts
        return convs + [_Index(None, target, rows)]

    def groups(self, slice_of: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Destination slice per synapse (`slice_of` maps post neuron -> slice), the order that groups
        rows (None: column order already does), and the first synapse of each (pre, slice, stage) row
        in that order."""
        dst = slice_of[self.rows]
        if self.has_stages:
            cols = self.cols()
            order = np.lexsort((self.stage, dst, cols))
            d, c, st = dst[order], cols[order], self.stage[order]
            del cols
            new = np.ones(d.size, dtype=bool)
            new[1:] = (d[1:] != d[:-1]) | (c[1:] != c[:-1]) | (st[1:] != st[:-1])
            return dst, order, new
        # Column order already groups (pre, dst): rows are sorted within a column.
        new = self.column_starts()
        new[1:] |= dst[1:] != dst[:-1]
        return dst, None, new

    def axons_per_pre(self, bounds: list[tuple[int, int]]) -> np.ndarray:
        """Per pre neuron: destination slices it has a synapse on (one output axon each). Cached for the
        last destination slicing (the out-axon loop asks again while only the sources are re-cut)."""
        if self._axons is not None and self._axons[0] == bounds:
            return self._axons[1]
        dst = _slice_lookup(bounds)[self.rows]
        new = self.column_starts()
        new[1:] |= dst[1:] != dst[:-1]
        del dst
        per_pre = np.zeros(self.n_pre, np.int64)
        full = np.flatnonzero(np.diff(self.colptr))
        per_pre[full] = np.add.reduceat(new, self.colptr[full], dtype=np.int64)
        self._axons = (list(bounds), per_pre)
        return per_pre

    def cols(self) -> np.ndarray:
        """Pre neuron of every synapse (a temporary: 4 bytes per synapse)."""
        return np.repeat(np.arange(self.n_pre, dtype=np.int32), np.diff(self.colptr))

    def column_starts(self) -> np.ndarray:
        """True at the first synapse of each pre neuron's column."""
        new = np.zeros(self.rows.size, dtype=bool)
        new[self.colptr[:-1][np.diff(self.colptr) > 0]] = True
        return new


def _slice_lookup(bounds: list[tuple[int, int]]) -> np.ndarray:
    """Slice index of every neuron of a population cut at `bounds` (contiguous, from 0)."""
    sizes = [b - a for a, b in bounds]
    dtype = np.int16 if len(bounds) <= np.iinfo(np.int16).max else np.int32
    return np.repeat(np.arange(len(bounds), dtype=dtype), sizes)


def _usage(target: Target, incoming: list[_Index], bounds: list[tuple[int, int]]) -> list[SliceUsage]:
    """Resource use of every slice of one population at once (same counts as slice_usage)."""
    n = len(bounds)
    starts_of = np.asarray([a for a, _ in bounds], np.int64)
    stops_of = np.asarray([b for _, b in bounds], np.int64)
    slice_of = _slice_lookup(bounds) if incoming else None
    packed = target.encoding.synapse_word_bits == 0
    synapses = np.zeros(n, np.int64)
    nbytes = np.zeros(n, np.int64)
    kernel_bytes = np.zeros(n, np.int64)
    fan_in = np.zeros(n, np.int64)
    slots_used = np.zeros(n, np.int64)
    stages = np.zeros(n, np.int64)
    for idx in incoming:
        if idx.rows.size == 0:
            continue
        dst, order, new = idx.groups(slice_of)
        d_sorted = dst if order is None else dst[order]
        del dst
        starts = np.flatnonzero(new)
        del new
        lengths = np.diff(np.append(starts, d_sorted.size))
        if isinstance(idx.syn_bits, np.ndarray):  # a batch: each row's projection sets its bits
            first = starts if order is None else order[starts]
            bits = idx.hdr_bits[first] + lengths * idx.syn_bits[first]
        else:
            bits = idx.hdr_bits + lengths * idx.syn_bits
        row_bytes = np.ceil(bits / 64) * 8 if packed else np.ceil(bits / 32) * 4
        row_dst = d_sorted[starts]
        if idx.proj is not None and idx.proj.conv is not None:  # the kernel once, not rows
            kernel = conv_slice_bytes(target, idx.proj, starts_of, stops_of)
            nbytes += kernel
            kernel_bytes += kernel
        else:
            nbytes += np.bincount(row_dst, weights=row_bytes, minlength=n).astype(np.int64)
        fan_in += np.bincount(row_dst, minlength=n)
        # Per-slice counts and maxima from the per-post-neuron ones: slices are runs of post neurons.
        cum = np.concatenate(([0], np.cumsum(idx.post_count)))
        synapses += cum[stops_of] - cum[starts_of]
        np.maximum(slots_used, np.maximum.reduceat(idx.post_slots, starts_of), out=slots_used)
        np.maximum(stages, np.maximum.reduceat(idx.post_stage, starts_of), out=stages)
    per_neuron = target.core.local_bytes_per_neuron
    return [SliceUsage(neurons=b - a, synapses=int(synapses[k]), synapse_bytes=int(nbytes[k]),
                       kernel_bytes=int(kernel_bytes[k]),
                       local_bytes=int(kernel_bytes[k]) + (b - a) * per_neuron if per_neuron else 0,
                       fan_in=int(fan_in[k]), delay_slots=int(slots_used[k]),
                       delay_stages=int(stages[k]))
            for k, (a, b) in enumerate(bounds)]


def _out_axons(outgoing: list[_Index], bounds_of: dict[str, list[tuple[int, int]]],
               bounds: list[tuple[int, int]]) -> np.ndarray:
    """Axons each source slice needs: one per (neuron, destination slice) pair with a synapse."""
    starts_of = np.asarray([a for a, _ in bounds], np.int64)
    total = np.zeros(len(bounds), np.int64)
    for idx in outgoing:
        if idx.rows.size == 0:
            continue
        total += np.add.reduceat(idx.axons_per_pre(bounds_of[idx.proj.post]), starts_of)
    return total


def _fit_population(inet: IntNetwork, target: Target, name: str, incoming: list[_Index]
                    ) -> tuple[list[tuple[int, int]], list[SliceUsage]]:
    pop = inet.populations[name]
    size = pop.size
    convs = [i.proj.conv for i in incoming if i.proj is not None and i.proj.conv is not None]
    for i in incoming:
        if i.proj is not None and i.proj.conv is not None:
            one = int(conv_slice_bytes(target, i.proj, np.array([0]), np.array([1]))[0])
            if one > target.core.synapse_memory_bytes:
                raise TargetError(
                    f"projection {i.proj.pre!r} -> {name!r}: the kernel of one output channel of its "
                    f"{i.proj.conv.describe()} ({i.proj.conv.kernel[0].size} weights) needs {one} bytes with its "
                    f"header, over {target.name}'s {target.core.synapse_memory_bytes} bytes of synapse memory per "
                    "core. Fix: fewer input channels per group (groups), a smaller kernel, or a target with more "
                    "synapse memory per core")
    split = _bounds if not convs else _channel_bounds(convs[0].out_shape, target.core.neurons)
    if pop.kind == "input":
        per_source = target.core.source_neurons or size
        bounds = _bounds(size, math.ceil(size / per_source))
        return bounds, [SliceUsage(neurons=b - a) for a, b in bounds]
    k = max(1, math.ceil(size / target.core.neurons))
    if pop.kind != "input" and incoming:
        whole = _usage(target, incoming, [(0, size)])[0]
        k = max(k, math.ceil(whole.synapse_bytes / max(1, target.core.synapse_memory_bytes)),
                math.ceil(whole.fan_in / max(1, target.core.input_axons)))
        k = min(k, size)
    while True:
        bounds = split(size, k)
        uses = _usage(target, incoming, bounds) if pop.kind != "input" else [SliceUsage(neurons=b - a)
                                                                            for a, b in bounds]
        worst = next(((u, o) for u in uses if (o := _check(u, target))), None)
        if worst is None:
            return bounds, uses
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


def _channel_bounds(shape: tuple[int, int, int], max_neurons: int):
    """Slices of a conv's output that are whole channel groups when that costs no core (each slice then
    holds the kernels of its own channels only); else even contiguous runs (a run spanning part of two
    channels holds both kernels: `conv_slice_bytes` counts them)."""
    channels, per_channel = shape[0], shape[1] * shape[2]

    def split(size: int, k: int) -> list[tuple[int, int]]:
        if k <= channels:
            grouped = [(a * per_channel, b * per_channel) for a, b in _bounds(channels, k)]
            if max(b - a for a, b in grouped) <= max_neurons:
                return grouped
        return _bounds(size, k)

    return split


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
    fitted = {name: _fit_population(inet, target, name, incoming[name]) for name in inet.populations}
    bounds_of = {name: bounds for name, (bounds, _) in fitted.items()}
    # Output axons depend on the destination slicing: split sources further until they fit, sinks
    # first so each population sees its destinations' final slicing (cycles take another round).
    depth = _depth(inet)
    for _ in range(16):
        changed = False
        for name in sorted(inet.populations, key=lambda n: -depth[n]):
            if not outgoing[name] or (inet.populations[name].is_input and not target.core.source_neurons):
                continue  # a host-fed source has no axon table of its own
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
        role = Role.SOURCE if pop.kind == "input" else Role.NEURONS
        if role == Role.SOURCE:
            uses = [SliceUsage(neurons=b - a) for a, b in bounds]
        elif fitted[name][0] == bounds:  # not re-cut for output axons: its usage is already counted
            uses = fitted[name][1]
        else:
            uses = _usage(target, incoming[name], bounds)
        axons = _out_axons(outgoing[name], bounds_of, bounds) if outgoing[name] else np.zeros(len(bounds), np.int64)
        for (a, b), use, ax in zip(bounds, uses, axons, strict=True):
            use.out_axons = int(ax)
            slices.append(Slice(name, a, b, role=role))
            usage.append(use)
    # Delay extensions: one per source slice whose spikes some synapse needs >= delay_slots later.
    slots = target.core.delay_slots
    for name, bounds in bounds_of.items():
        stages = max((int(i.post_stage.max()) for i in outgoing[name] if i.post_stage.size), default=0)
        if stages == 0:
            continue
        notes.append(f"{name}: {len(bounds)} delay-extension slice(s), {stages} stage(s) of {slots} steps")
        for a, b in bounds:
            slices.append(Slice(name, a, b, role=Role.DELAY))
            usage.append(SliceUsage(neurons=b - a, delay_stages=stages))
    return Partition(slices, usage, notes)
