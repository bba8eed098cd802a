"""Assign, for a single-CPU target (a microcontroller): every population is one slice on the one CPU.

No partition, place or route: the CPU runs every population in turn (runtime/placement_sim sums
their times), and what must fit is the family's memory layout, not per-core budgets.
"""

from __future__ import annotations

from ..ir import IntNetwork, Role, Slice


def one_cpu(inet: IntNetwork) -> list[Slice]:
    return [Slice(name, 0, pop.size, (0, 0), 0, Role.SOURCE if pop.is_input else Role.NEURONS)
            for name, pop in inet.populations.items()]
