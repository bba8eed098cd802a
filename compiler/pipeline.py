"""Run a family's passes in order, timing each one and showing progress on long work.

A pass is a function from one `Compilation` to the next. Every family starts with lower and
quantize (the integer network is what the reference simulator runs, the same for every target);
what follows is the family's own list in its `Backend` record (compiler/backend.py): a mesh family
partitions, places and routes (MESH_PASSES); a single-CPU family puts every population on its one
CPU and lays out its memory.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from .backend import backend_for
from .ir import IntNetwork, LoweredNetwork, Mapping, Network, Partition
from .passes.assign import one_cpu
from .passes.lower import lower
from .passes.partition import partition
from .passes.place import place
from .passes.quantize import quantize
from .passes.route import route
from .targets.target import Target, load_target

PROGRESS_MIN_SYNAPSES = 2_000_000  # show a bar only when the work is long enough to wait for


@dataclass(frozen=True)
class Compilation:
    """The value passes hand on: the input, the options, and what the passes so far have made."""

    net: Network
    target: Target
    rates: dict[str, np.ndarray] | None = None  # spikes per neuron per step, per NIR population
    seed: int = 0
    lowered: LoweredNetwork | None = None
    mapping: Mapping | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def need_mapping(self, what: str) -> Mapping:
        if self.mapping is None:
            raise RuntimeError(f"pass {what!r} runs after quantize (it needs the integer network)")
        return self.mapping


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Compilation], Compilation]


def _lower(c: Compilation) -> Compilation:
    return dataclasses.replace(c, lowered=lower(c.net))


def _quantize(c: Compilation) -> Compilation:
    if c.lowered is None:
        raise RuntimeError("quantize runs after lower")
    inet = quantize(c.lowered, c.target)
    return dataclasses.replace(c, lowered=None, mapping=Mapping(c.target, inet))


def _partition(c: Compilation) -> Compilation:
    m = c.need_mapping("partition")
    part = partition(m.network, c.target)
    return dataclasses.replace(c, mapping=dataclasses.replace(m, slices=part.slices, usage=part.usage,
                                                                notes=m.notes + part.notes))


def _place(c: Compilation) -> Compilation:
    m = c.need_mapping("place")
    if m.usage is None:
        raise RuntimeError("place runs after partition")
    placement = place(m.network, Partition(m.slices, m.usage), c.target, c.rates, c.seed)
    return dataclasses.replace(c, mapping=dataclasses.replace(m, slices=placement.slices, placement=placement))


def _route(c: Compilation) -> Compilation:
    m = c.need_mapping("route")
    return dataclasses.replace(c, mapping=dataclasses.replace(m, routing=route(m.network, m.slices, c.target)))


def _one_cpu(c: Compilation) -> Compilation:
    m = c.need_mapping("one_cpu")
    return dataclasses.replace(c, mapping=dataclasses.replace(m, slices=one_cpu(m.network)))


LOWER = Pass("lower", _lower)
QUANTIZE = Pass("quantize", _quantize)
PARTITION = Pass("partition", _partition)
PLACE = Pass("place", _place)
ROUTE = Pass("route", _route)
ONE_CPU = Pass("one_cpu", _one_cpu)
MESH_PASSES = (LOWER, QUANTIZE, PARTITION, PLACE, ROUTE)


def _timed(timings: dict[str, float], p: Pass, c: Compilation) -> Compilation:
    start = time.perf_counter()
    out = p.run(c)
    timings[p.name] = time.perf_counter() - start
    return out


def to_integer(net: Network, target: Target | str, timings: dict[str, float] | None = None) -> IntNetwork:
    """Float network -> the target's integer network (lower + quantize)."""
    c = Compilation(net, load_target(target))
    timings = {} if timings is None else timings
    for p in (LOWER, QUANTIZE):
        c = _timed(timings, p, c)
    return c.need_mapping("to_integer").network


def compile_network(net: Network, target: Target | str, progress: bool | None = None,
                    rates: dict[str, np.ndarray] | None = None, seed: int = 0) -> Mapping:
    """Run the target family's pass list (its Backend record). Returns the Mapping.

    `rates` (spikes per neuron per step, per NIR population, e.g. from a float run) weight the
    placement; without them every neuron is assumed to fire at the default rate.
    """
    tgt = load_target(target)
    passes = backend_for(tgt.family).passes
    timings: dict[str, float] = {}
    show = progress if progress is not None else net.n_synapses >= PROGRESS_MIN_SYNAPSES
    c = Compilation(net, tgt, rates, seed)
    with tqdm(total=len(passes), desc=f"compile for {tgt.name}", disable=not show, leave=False) as bar:
        for p in passes:
            bar.set_postfix_str(p.name)
            c = _timed(timings, p, c)
            bar.update(1)
    return dataclasses.replace(c.need_mapping("compile"), timings=timings)


def compile_integer(inet: IntNetwork, target: Target | str, seed: int = 0) -> Mapping:
    """Run the family's passes that follow quantize on an integer network made by other means (a test's
    generator, a reloaded network.npz): the Mapping its backend emits."""
    tgt = load_target(target)
    passes = backend_for(tgt.family).passes
    after = passes[passes.index(QUANTIZE) + 1:] if QUANTIZE in passes else passes
    timings: dict[str, float] = {}
    c = Compilation(Network({}, [], [], {}, inet.dt), tgt, None, seed, mapping=Mapping(tgt, inet))
    for p in after:
        c = _timed(timings, p, c)
    return dataclasses.replace(c.need_mapping("compile"), timings=timings)
