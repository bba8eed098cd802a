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
    step = math.ceil(size / k)
    return [(a, min(a + step, size)) for a in range(0, size, step)]


class _OutAxons:
    """Axons a source slice needs: one per (neuron, destination slice) pair with a synapse."""

    def __init__(self, inet: IntNetwork, pop: str):
        self.parts = [(p.post, sp.csc_array(p.weights)) for p in inet.projections if p.pre == pop]

    def count(self, bounds_of: dict[str, list[tuple[int, int]]], start: int, stop: int) -> int:
        total = 0
        for post, csc in self.parts:
            lo, hi = int(csc.indptr[start]), int(csc.indptr[stop])
            if hi == lo:
                continue
            rows = csc.indices[lo:hi]
            cols = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(csc.indptr[start:stop + 1]))
            edges = np.asarray([b for _, b in bounds_of[post]])
            dest = np.searchsorted(edges, rows, side="right")
            total += np.unique(cols * (len(edges) + 1) + dest).size
        return total


def _fit_population(inet: IntNetwork, target: Target, name: str) -> list[tuple[int, int]]:
    pop = inet.populations[name]
    size = pop.size
    k = max(1, math.ceil(size / target.core.neurons))
    if pop.kind != "input":
        whole = slice_usage(inet, target, name, 0, size)
        k = max(k, math.ceil(whole.synapse_bytes / max(1, target.core.synapse_memory_bytes)))
        k = min(k, size)
    while True:
        bounds = _bounds(size, k)
        worst: tuple[SliceUsage, list[tuple[str, int, int]]] | None = None
        for a, b in bounds:
            use = slice_usage(inet, target, name, a, b) if pop.kind != "input" else SliceUsage(neurons=b - a)
            over = _check(use, target)
            if over:
                worst = (use, over)
                break
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
        k = min(size, max(k + 1, int(k * 1.25)))


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
    bounds_of = {name: _fit_population(inet, target, name) for name in inet.populations}
    out_axons = {name: _OutAxons(inet, name) for name in inet.populations}
    # Output axons depend on the destination slicing: split sources further until they fit.
    for _ in range(8):
        changed = False
        for name in inet.populations:
            if not out_axons[name].parts:
                continue
            bounds = bounds_of[name]
            if any(out_axons[name].count(bounds_of, a, b) > target.core.output_axons for a, b in bounds):
                size = inet.populations[name].size
                if len(bounds) >= size:
                    raise TargetError(
                        f"population {name!r}: a single neuron projects to more than {target.core.output_axons} "
                        f"cores ({target.name} output axons). Fix: fewer destination slices (larger cores) "
                        "or another target"
                    )
                bounds_of[name] = _bounds(size, min(size, len(bounds) * 2))
                changed = True
        if not changed:
            break
    slices: list[Slice] = []
    usage: list[SliceUsage] = []
    for name, bounds in bounds_of.items():
        pop = inet.populations[name]
        role = ROLE_SOURCE if pop.kind == "input" else ROLE_NEURONS
        for a, b in bounds:
            use = SliceUsage(neurons=b - a) if role == ROLE_SOURCE else slice_usage(inet, target, name, a, b)
            use.out_axons = out_axons[name].count(bounds_of, a, b)
            slices.append(Slice(name, a, b, role=role))
            usage.append(use)
    # Delay extensions: one per source slice whose spikes some synapse needs >= delay_slots later.
    slots = target.core.delay_slots
    for name, bounds in bounds_of.items():
        stages = max((p.max_delay // slots for p in inet.projections if p.pre == name), default=0)
        if stages == 0:
            continue
        notes.append(f"{name}: {len(bounds)} delay-extension slice(s), {stages} stage(s) of {slots} steps")
        for a, b in bounds:
            slices.append(Slice(name, a, b, role=ROLE_DELAY))
            usage.append(SliceUsage(neurons=b - a, delay_stages=stages))
    return Partition(slices, usage, notes)
