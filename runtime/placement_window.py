"""Placement simulation of a long recording in time windows, as Dask tasks: equal to one run, exactly.

`simulate_placement_windowed(mapping, raster, window)` cuts the T steps into ceil(T / window) windows
[a_k, b_k) (the last one ragged) and builds two kinds of task per window:

- simulate k: the integer reference run (runtime/simulator.simulate_int) of steps a_k .. b_k - 1, started
  from the carry that simulate k-1 returned (window 0 starts at rest). It returns the carry at b_k and the
  window's spikes.
- account k: runtime/placement_sim.replay_counts over those spikes: the window's per-step counts (synaptic
  events per core, conv events, dropped packets, spikes per slice, packets per link, hops). It depends only
  on simulate k, so it runs beside simulate k+1 and every other window's accounting.

The carry (`WindowCarry`, a small value: O(neurons x (max delay + H)), not O(T)):

- `state.u`, `state.v`: every LIF neuron's current and voltage after step b_k - 1 (neuron state);
- `state.ring`: the delay ring, the input current already sent by spikes at steps < b_k that arrives at
  b_k or later, row r arriving at b_k + r (max delay + 2 rows): every spike still in flight (delay state);
- `history`: every population's spikes of the last H = placement_sim.delay_context(mapping) steps (zeros
  before step 0). A delay-extension core re-sends a spike stage x slots steps late, so an event or packet
  of step t can come from a spike of step t - H; window k's accounting replays its spikes after these H
  steps of context and counts only its own steps. H = 0 when every delay fits in a core's delay slots.

Why exact. The integer model's step is a pure function of (u, v, ring) and the step's input: the neurons
(LifNeurons) and synapse scatters (EventProjection, ConvEvents) hold constants only, so continuing from the
carry repeats the single run's integer operations on the same values, and every spike is the same, with no
rounding anywhere. A window's counts are functions of the spikes in [a_k - H, b_k), which its task has; they
are integer-valued (float64 counts far below 2**53). The merge concatenates the per-step arrays, sums the
integer-valued hop and packet totals and takes the max of the max hops, then the same
`report_from_counts` the single run uses computes per-core means, step times, energy, its breakdown and
latency from the whole run's arrays: the float arithmetic is the single run's, on equal arrays in the same
order, so every field is equal, not close. (Summing per-window energies instead would round differently.)

Rejected: independent windows each warmed up on the steps before it (approximate for recurrent or slow
neurons, and the warm-up repeats work); simulating the whole run first and windowing only the accounting
(one worker holds all T steps of spikes). The simulation chain is sequential by nature; it gets the higher
Dask priority so the accounting never starves it. Without a client the same two functions run in turn in
this process, holding one window at a time.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..compiler.errors import InputError
from ..compiler.ir import Mapping
from .placement_sim import PlacementCounts, PlacementReport, delay_context, replay_counts, report_from_counts
from .simulator import IntState, SimResult, integer_inputs, simulate_int


class WindowError(InputError):
    """A placement window length that is not a positive whole number of steps."""


@dataclass
class WindowCarry:
    """What window k hands window k+1: the integer run's state and the last H steps of spikes."""

    state: IntState | None  # None before step 0: simulate_int starts at rest
    history: dict[str, np.ndarray]  # population -> [H, n] bool spikes of the H steps before the window
    context: int  # H


WindowOut = tuple[WindowCarry, SimResult, int]  # the next carry, H + window steps of spikes, H


def check_window(window: Any) -> int:
    """The window as an int, or a WindowError naming the value and the fix."""
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or int(window) < 1:
        raise WindowError(f"placement window {window!r} is not a positive whole number of steps. Fix: pass "
                          "--window N (window=N) with N >= 1 steps per window, or leave it out for one window")
    return int(window)


def _initial_carry(mapping: Mapping) -> WindowCarry:
    h = delay_context(mapping)
    return WindowCarry(None, {n: np.zeros((h, p.size), dtype=bool)
                              for n, p in mapping.network.populations.items()}, h)


def _simulate_window(mapping: Mapping, inputs: dict[str, np.ndarray], carry: WindowCarry) -> WindowOut:
    """Run one window from the carry: the next carry, and the window's spikes after H steps of history."""
    run = simulate_int(mapping.network, inputs, record=False, state=carry.state, return_state=True)
    h = carry.context
    spikes = {n: np.concatenate([carry.history[n], s]) for n, s in run.spikes.items()}
    history = {n: s[s.shape[0] - h:] for n, s in spikes.items()}
    return WindowCarry(run.state, history, h), SimResult(spikes, steps=h + run.steps), h


def _account_window(mapping: Mapping, out: WindowOut) -> PlacementCounts:
    return replay_counts(mapping, out[1], context=out[2])


def _carry_of(out: WindowOut) -> WindowCarry:
    return out[0]


def merge_counts(parts: list[PlacementCounts]) -> PlacementCounts:
    """One run's counts from its windows' counts, in window order (all exact: integer-valued)."""
    first = parts[0]
    return PlacementCounts(
        sum(p.steps for p in parts),
        np.concatenate([p.events for p in parts]),
        np.concatenate([p.conv_events for p in parts]),
        np.concatenate([p.dropped for p in parts]),
        {k: np.concatenate([p.spikes[k] for p in parts]) for k in first.spikes},
        {key: np.concatenate([p.links[key] for p in parts]) for key in first.links},
        _total(p.hop_total for p in parts),
        _total(p.packets_total for p in parts),
        max(p.max_hops for p in parts),
    )


def _total(values: Any) -> float:
    # Integer-valued floats below 2**53 add exactly in any order; start from 0.0 as the replay does, so the
    # type (float, or numpy's float64 once a packet was counted) is the single run's too.
    out = 0.0
    for v in values:
        out += v
    return out


def simulate_placement_windowed(mapping: Mapping, raster: np.ndarray | dict[str, np.ndarray], window: int,
                                client: Any = None) -> PlacementReport:
    """`simulate_placement(mapping, raster)` in windows of `window` steps; on a Dask `client`'s workers
    when one is given, else in this process. The report equals the single run's in every field."""
    window = check_window(window)
    inputs = integer_inputs(mapping.network, raster)  # the single run's validation and int64 inputs
    steps = next(iter(inputs.values())).shape[0]
    if steps == 0:
        raise InputError("the input recording has 0 steps. Fix: pass a raster [T, *input_shape] with T >= 1")
    bounds = [(a, min(a + window, steps)) for a in range(0, steps, window)]
    pieces = [{n: x[a:b] for n, x in inputs.items()} for a, b in bounds]
    carry = _initial_carry(mapping)
    if client is None:
        parts = []
        for piece in pieces:
            out = _simulate_window(mapping, piece, carry)
            parts.append(_account_window(mapping, out))
            carry = out[0]
    else:
        parts = _run_on(client, mapping, pieces, carry)
    return report_from_counts(mapping, merge_counts(parts))


def _run_on(client: Any, mapping: Mapping, pieces: list[dict[str, np.ndarray]], carry: WindowCarry
            ) -> list[PlacementCounts]:
    """The window tasks on a dask.distributed client: a chain of simulations, each window's accounting
    hanging off its simulation."""
    mapping_f = client.scatter(mapping, broadcast=False, hash=False)  # shipped once, not once per task
    piece_fs = client.scatter(pieces, hash=False)
    carry_f: Any = carry
    count_fs = []
    for piece_f in piece_fs:
        out_f = client.submit(_simulate_window, mapping_f, piece_f, carry_f, pure=False, priority=1)
        count_fs.append(client.submit(_account_window, mapping_f, out_f, pure=False))
        carry_f = client.submit(_carry_of, out_f, pure=False, priority=1)
    # On an error gather raises; the dropped futures release their tasks and data on the scheduler.
    return client.gather(count_fs)
