"""Run the compiler passes in order, timing each one and showing progress on long work."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from .ir import Network
from .mapping import Mapping
from .passes.lower import LoweredNetwork, lower
from .passes.partition import partition
from .passes.place import place
from .passes.quantize import IntNetwork, quantize
from .passes.route import route
from .targets.target import Target, load_target

PROGRESS_MIN_SYNAPSES = 2_000_000  # show a bar only when the work is long enough to wait for


def _timed(timings: dict[str, float], name: str, fn: Callable[..., Any], *args: Any) -> Any:
    start = time.perf_counter()
    result = fn(*args)
    timings[name] = time.perf_counter() - start
    return result


def to_integer(net: Network, target: Target | str, timings: dict[str, float] | None = None) -> IntNetwork:
    """Float network -> the target's integer network (lower + quantize)."""
    tgt = load_target(target)
    timings = {} if timings is None else timings
    lowered: LoweredNetwork = _timed(timings, "lower", lower, net)
    return _timed(timings, "quantize", quantize, lowered, tgt, True)  # consume: the lowered net is ours


def compile_network(net: Network, target: Target | str, progress: bool | None = None,
                    rates: dict[str, np.ndarray] | None = None, seed: int = 0) -> Mapping:
    """Run every pass for `target`: lower, quantize, partition, place, route. Returns the Mapping.

    `rates` (spikes per neuron per step, per NIR population, e.g. from a float run) weight the
    placement; without them every neuron is assumed to fire at the default rate.
    """
    tgt = load_target(target)
    timings: dict[str, float] = {}
    show = progress if progress is not None else net.n_synapses >= PROGRESS_MIN_SYNAPSES
    passes = ["lower", "quantize", "partition", "place", "route"]
    bar = tqdm(total=len(passes), desc=f"compile for {tgt.name}", disable=not show, leave=False)

    def run(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        bar.set_postfix_str(name)
        result = _timed(timings, name, fn, *args)
        bar.update(1)
        return result

    lowered = run("lower", lower, net)
    inet = run("quantize", quantize, lowered, tgt, True)  # consume: float weights freed as they are quantized
    del lowered
    part = run("partition", partition, inet, tgt)
    placement = run("place", place, inet, part, tgt, rates, seed)
    routing = run("route", route, inet, placement.slices, tgt)
    bar.close()
    mapping = Mapping(tgt, inet, placement.slices, timings, notes=list(part.notes))
    mapping.extra.update({
        "usage": part.usage, "routing": routing, "traffic": placement.traffic,
        "placement_method": placement.method, "hop_weighted_traffic": placement.hop_traffic,
        "routing_entries_before": routing.entries_before(), "routing_entries_after": routing.entries_after(),
    })
    return mapping
