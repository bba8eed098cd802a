"""Synaptic rows of a non-conv group in the model image: dense, simple, segmented or delays.

Per group (one projection, or one (projection, delay) when needed for exactness) the rows per pre
neuron are encoded in the fastest of these that is at most SIZE_SLACK times the smallest:

  dense      weights only, n_pre x n_post cells (no indices): 1 byte per cell for 8-bit weights
  simple     uint32 row pointers, then per synapse a uint8 (n_post <= 256) or uint16 post index and
             the weight: 2 bytes per synapse for 8-bit weights and indices
  segmented  rows cut into segments {delay, block, count} (4 bytes each): delays inside one
             projection, or 8-bit indices into 256-neuron blocks of a larger population
  delays     as simple, plus a delay byte per synapse: for delays too mixed for segments to pay
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

MAX_SEG_COUNT = 65535

# snn_image.h enums
W_U8, W_N8, W_S8, W_S16 = 0, 1, 2, 3
G_IDX16, G_SEGMENTED, G_DENSE, G_DELAYS = 1, 2, 8, 16


class RowGroup(Protocol):
    rows: np.ndarray  # post index of each synapse
    cols: np.ndarray  # pre index
    weights: np.ndarray  # stored values
    delays: np.ndarray
    wkind: int


def align4(n: int) -> int:
    return (n + 3) & ~3


@dataclass
class Encoded:
    flags: int
    delay: int
    n_syn: int
    rowptr: np.ndarray | None
    idx: np.ndarray | None
    w: np.ndarray
    segptr: np.ndarray | None
    segs: np.ndarray | None  # uint8 [n, 4] segment records; G_DELAYS: uint8 delay per synapse

    @property
    def nbytes(self) -> int:
        n = self.w.nbytes
        for part in (self.rowptr, self.idx, self.segptr, self.segs):
            if part is not None:
                n += align4(part.nbytes)
        return align4(n)


# Choosing an encoding: Thumb-2 instructions per dense cell, per indexed synapse, per row and per segment
# (measured with bench/cortexm.py: int8 dense cells take 2.2 since the ldm/sxtab kernel; indexed synapses 5.6),
# and how much larger than the smallest a faster encoding may be.
COST_DENSE, COST_SYNAPSE, COST_DELAYED, COST_ROW, COST_SEGMENT = 2.3, 5.6, 7.6, 16.0, 10.0
SIZE_SLACK = 1.3


def wdtype(kind: int) -> type:
    return {W_U8: np.uint8, W_N8: np.uint8, W_S8: np.int8, W_S16: np.int16}[kind]


def encode(g: RowGroup, n_pre: int, n_post: int, size_slack: float = SIZE_SLACK) -> Encoded:
    """The fastest encoding of one group's rows among those at most size_slack x the smallest."""
    wdt = wdtype(g.wkind)
    ws = np.dtype(wdt).itemsize
    single_delay = np.unique(g.delays).size == 1
    # rows by pre neuron; inside a row by (delay, post): segments are contiguous runs
    order = np.lexsort((g.rows, g.delays, g.cols))
    rows, cols, w, dl = g.rows[order], g.cols[order], g.weights[order], g.delays[order]
    counts = np.bincount(cols, minlength=n_pre)
    rowptr = np.concatenate(([0], np.cumsum(counts))).astype(np.uint32)
    options: list[tuple[int, float, Encoded]] = []  # (bytes, estimated instructions per pass of all rows, enc)
    if single_delay:
        if n_pre * n_post * ws <= 4 * (n_pre + 1) + rows.size * (1 + ws):  # else dense cannot win
            dense = np.zeros((n_pre, n_post), dtype=np.int64)
            np.add.at(dense, (cols, rows), w)  # repeated (pre, post) pairs sum, as the reference does
            info = np.iinfo(wdt)
            if dense.min() >= info.min and dense.max() <= info.max:
                options.append((n_pre * n_post * ws, COST_DENSE * n_pre * n_post + COST_ROW * n_pre,
                                Encoded(G_DENSE, int(dl[0]), n_pre * n_post, None, None, dense.astype(wdt).ravel(),
                                         None, None)))
        if n_post <= 256:
            enc = Encoded(0, int(dl[0]), rows.size, rowptr, rows.astype(np.uint8), w.astype(wdt), None, None)
            options.append((enc.nbytes, COST_SYNAPSE * rows.size + COST_ROW * n_pre, enc))
        if n_post <= 65536:
            enc = Encoded(G_IDX16, int(dl[0]), rows.size, rowptr, rows.astype(np.uint16), w.astype(wdt), None,
                           None)
            options.append((enc.nbytes, COST_SYNAPSE * rows.size + COST_ROW * n_pre, enc))
    for idx16 in (False, True):
        if idx16 and n_post > 65536:
            continue
        block = np.zeros_like(rows) if idx16 else rows >> 8
        # a new segment wherever the row, delay or block changes, or a run reaches MAX_SEG_COUNT
        key_change = np.ones(rows.size, dtype=bool)
        key_change[1:] = (cols[1:] != cols[:-1]) | (dl[1:] != dl[:-1]) | (block[1:] != block[:-1])
        run_id = np.cumsum(key_change) - 1
        pos_in_run = np.arange(rows.size) - np.flatnonzero(key_change)[run_id]
        start = key_change | (pos_in_run % MAX_SEG_COUNT == 0)
        starts = np.flatnonzero(start)
        seg_counts = np.diff(np.concatenate((starts, [rows.size])))
        segs = np.zeros((starts.size, 4), dtype=np.uint8)
        segs[:, 0] = dl[starts]
        segs[:, 1] = block[starts]
        segs[:, 2] = seg_counts & 0xFF
        segs[:, 3] = seg_counts >> 8
        seg_rows = np.bincount(cols[starts], minlength=n_pre)
        segptr = np.concatenate(([0], np.cumsum(seg_rows))).astype(np.uint32)
        idx = (rows & 0xFF).astype(np.uint8) if not idx16 else rows.astype(np.uint16)
        enc = Encoded(G_SEGMENTED | (G_IDX16 if idx16 else 0), 0, rows.size, rowptr, idx, w.astype(wdt), segptr,
                       segs)
        options.append((enc.nbytes, COST_SYNAPSE * rows.size + COST_ROW * n_pre + COST_SEGMENT * starts.size, enc))
    if not single_delay and g.wkind in (W_U8, W_S8):
        idx = rows.astype(np.uint8) if n_post <= 256 else rows.astype(np.uint16)
        enc = Encoded(G_DELAYS | (G_IDX16 if n_post > 256 else 0), 0, rows.size, rowptr, idx, w.astype(wdt), None,
                       dl.astype(np.uint8))
        options.append((enc.nbytes, COST_DELAYED * rows.size + COST_ROW * n_pre, enc))
    # the fastest encoding among those at most SIZE_SLACK x the smallest
    smallest = min(o[0] for o in options)
    return min((o for o in options if o[0] <= size_slack * smallest), key=lambda o: (o[1], o[0]))[2]
