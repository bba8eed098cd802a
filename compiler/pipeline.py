"""Run the compiler passes in order, timing each one and showing progress on long work."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from .ir import Network
from .mapping import Mapping, Slice
from .passes.lower import LoweredNetwork, lower
from .passes.quantize import IntNetwork, quantize
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
    return _timed(timings, "quantize", quantize, lowered, tgt)


def one_slice_per_population(inet: IntNetwork, target: Target) -> list[Slice]:
    slices = []
    core = 0
    for name, pop in inet.populations.items():
        slices.append(Slice(name, 0, pop.size, (0, 0), core))
        core += 1
    return slices


def compile_network(net: Network, target: Target | str, progress: bool | None = None) -> Mapping:
    """Run every pass for `target` and return the Mapping."""
    tgt = load_target(target)
    timings: dict[str, float] = {}
    show = progress if progress is not None else net.n_synapses >= PROGRESS_MIN_SYNAPSES
    steps = [("lower", lower), ("quantize", None)]
    bar = tqdm(total=len(steps), desc=f"compile for {tgt.name}", disable=not show, leave=False)
    lowered = _timed(timings, "lower", lower, net)
    bar.update(1)
    inet = _timed(timings, "quantize", quantize, lowered, tgt)
    bar.update(1)
    slices = _timed(timings, "partition", one_slice_per_population, inet, tgt)
    bar.close()
    return Mapping(tgt, inet, slices, timings)
