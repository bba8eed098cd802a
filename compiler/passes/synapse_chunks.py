"""Every synapse of an IntNetwork as flat arrays of global neuron ids, in chunks.

Networks with many small projections (PACMAN-style graphs: 100k projections of a few synapses)
would pay numpy's per-call overhead once per projection and source slice; networks with a few
huge projections would not fit one flat copy in memory. Chunks of up to CHUNK_SYNAPSES synapses
serve both: small projections are concatenated, a large one comes alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..ir import IntNetwork

CHUNK_SYNAPSES = 4_000_000


@dataclass
class SynapseChunk:
    pre: np.ndarray  # global id of the pre neuron (int64)
    post: np.ndarray  # global id of the post neuron (int64)
    delay: np.ndarray  # steps (int64)


def neuron_offsets(inet: IntNetwork) -> tuple[dict[str, int], int]:
    """First global neuron id of each population, and the total."""
    offsets: dict[str, int] = {}
    total = 0
    for name, pop in inet.populations.items():
        offsets[name] = total
        total += pop.size
    return offsets, total


def chunks(inet: IntNetwork, offsets: dict[str, int]) -> Iterator[SynapseChunk]:
    pre: list[np.ndarray] = []
    post: list[np.ndarray] = []
    delay: list[np.ndarray] = []
    held = 0
    for proj in inet.projections:
        w = proj.weights
        if w.nnz == 0:
            continue
        rows = np.repeat(np.arange(w.shape[0], dtype=np.int64), np.diff(w.indptr))
        pre.append(w.indices.astype(np.int64) + offsets[proj.pre])
        post.append(rows + offsets[proj.post])
        delay.append(np.asarray(proj.delays, dtype=np.int64))
        held += w.nnz
        if held >= CHUNK_SYNAPSES:
            yield SynapseChunk(np.concatenate(pre), np.concatenate(post), np.concatenate(delay))
            pre, post, delay, held = [], [], [], 0
    if pre:
        yield SynapseChunk(np.concatenate(pre), np.concatenate(post), np.concatenate(delay))


def slice_of_neuron(inet: IntNetwork, slices: list, offsets: dict[str, int], total: int,
                    skip_role: str) -> np.ndarray:
    """Index of the slice (not of role `skip_role`) that holds each global neuron id; -1 if none."""
    out = np.full(total, -1, dtype=np.int64)
    for k, s in enumerate(slices):
        if s.role != skip_role:
            base = offsets[s.population]
            out[base + s.start:base + s.stop] = k
    return out


def unique_tuples(*columns: np.ndarray) -> list[np.ndarray]:
    """The distinct tuples (columns[0][i], columns[1][i], ...) in lexicographic order, as one array per
    column (int64): np.unique of a mixed-radix key, but through a bitmap over the key's range when that
    range is small (a projection's slices x neurons), which is linear where np.unique sorts."""
    lows = [int(c.min()) for c in columns]
    spans = [int(c.max()) - lo + 1 for c, lo in zip(columns, lows, strict=True)]
    key = np.zeros(columns[0].size, dtype=np.int64)
    for c, lo, span in zip(columns, lows, spans, strict=True):
        key *= span
        key += c
        if lo:
            key -= lo
    space = math.prod(spans)
    if space <= max(1 << 24, 8 * key.size):
        seen = np.zeros(space, dtype=bool)
        seen[key] = True
        del key
        uniq = np.flatnonzero(seen)
        del seen
    else:
        uniq = np.unique(key)
        del key
    out = []
    for lo, span in zip(reversed(lows), reversed(spans), strict=True):
        out.append(uniq % span + lo)
        uniq //= span
    return out[::-1]
