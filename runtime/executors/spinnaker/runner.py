"""The step loop: neuron cores step with the integer LIF, spikes leave as packets, routers deliver them,
synaptic rows and conv records (conv.py) fill the ring buffers; `run` is the entry point."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ....backends.spinnaker.format import (
    HEADER_BYTES,
    MODE_NEGATIVE,
    MODE_POSITIVE,
    routing_path,
)
from ....compiler.errors import ArtifactError, InputError
from ....compiler.ir.lif import LifNeurons, Widths, effective_bias, shift_by_exponent
from .conv import ConvScatter
from .files import MASK32, N_LINKS, Chip, CoreId, Neurons
from .machine import Machine
from .trace import Traces, gather, ranges


@dataclass
class ExecResult:
    """Spikes per population ([T, n] bool), packets per (chip, link) per step, lookups per core."""

    spikes: dict[str, np.ndarray]
    link_packets: dict[tuple[Chip, int], np.ndarray]
    lookups: dict[CoreId, int]  # packets each core looked up (master population table or delay key)
    steps: int
    # synaptic words each neuron core processed, plus the nonzero conv kernel weights it applied
    events: dict[CoreId, int] = field(default_factory=dict)
    packets: int = 0  # multicast packets sent (all sources)
    synaptic_events: int = 0  # synaptic words processed and conv weights applied
    wall_s: float = 0.0  # time spent in the step loop
    stats: dict[str, Any] = field(default_factory=dict)
    dropped: dict[CoreId, int] = field(default_factory=dict)  # over-delivered packets each core dropped


def integer_raster(m: Machine, raster: np.ndarray | dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Per input population [T, n] int64 counts; the integer model takes non-negative integer spike counts."""
    if isinstance(raster, dict):
        parts = dict(raster)
    else:
        arr = np.asarray(raster)
        if len(m.inputs) != 1:
            raise InputError(f"the network has {len(m.inputs)} inputs {m.inputs}; pass a dict name -> raster")
        parts = {m.inputs[0]: arr}
    out: dict[str, np.ndarray] = {}
    steps = None
    for name in m.inputs:
        if name not in parts:
            raise InputError(f"no input raster for {name!r}")
        arr = np.asarray(parts[name])
        if arr.ndim < 2:
            raise InputError(f"input {name!r} must be [T, *shape]; got shape {list(arr.shape)}")
        flat = arr.reshape(arr.shape[0], -1)
        if flat.shape[1] != m.populations[name]:
            raise InputError(f"input {name!r} has {flat.shape[1]} channels per step, the network expects "
                             f"{m.populations[name]}")
        if not np.all(np.isfinite(flat)) or np.any(flat != np.rint(flat)) or np.any(flat < 0):
            raise InputError(f"input {name!r}: the integer model takes non-negative integer spike counts. "
                             "Fix: binarise or bin the input")
        if steps is not None and flat.shape[0] != steps:
            raise InputError("input rasters have different numbers of steps")
        steps = flat.shape[0]
        out[name] = flat.astype(np.int64)
    if steps is None:
        raise InputError("the network has no input population; nothing drives it")
    return out, steps


def _widths(cores: list[Neurons]) -> Widths:
    """The integer model's widths, which every neuron core's file states; they must agree."""
    if not cores:
        return Widths(12, 24, 6, 6)  # no neurons: nothing is stepped
    first = cores[0]
    want = Widths(first.decay_bits, first.state_bits, first.activation_shift, first.threshold_shift)
    for nr in cores[1:]:
        got = Widths(nr.decay_bits, nr.state_bits, nr.activation_shift, nr.threshold_shift)
        if got != want:
            raise ArtifactError(f"{nr.label}: integer widths {got}, but {first.label} has {want}; expected one "
                                "numeric format on every core. Fix: compile again")
    return want


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class _Runner:
    """Global arrays over all cores, so one step is a few vectorised operations."""

    def __init__(self, m: Machine) -> None:
        self.m = m
        cpc = m.cores_per_chip
        self.gid = {cid: (cid[0][1] * m.chips_x + cid[0][0]) * cpc + cid[1]
                    for cid in list(m.neurons) + list(m.delays) + list(m.sources)}
        n_gid = m.chips_x * m.chips_y * cpc
        self.role = np.zeros(n_gid, np.int8)  # 0 none, 1 neurons, 2 delay, 3 source
        # neurons, in global core order so the concatenated master population tables stay sorted
        cores = sorted(m.neurons.items(), key=lambda kv: self.gid[kv[0]])
        self.ncores = cores
        sizes = np.asarray([nr.n for _, (nr, _, _) in cores], np.int64)
        self.n_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(self.n_off[-1])
        self.N = n

        def per_neuron(vals: list[int]) -> np.ndarray:
            return np.repeat(np.asarray(vals, np.int64), sizes) if cores else np.zeros(0, np.int64)

        self.neurons = LifNeurons(per_neuron([nr.du for _, (nr, _, _) in cores]),
                                  per_neuron([nr.dv for _, (nr, _, _) in cores]),
                                  per_neuron([nr.vth for _, (nr, _, _) in cores]),
                                  effective_bias(_cat([nr.bias_mant for _, (nr, _, _) in cores]),
                                                 _cat([nr.bias_exp for _, (nr, _, _) in cores])),
                                  _widths([nr for _, (nr, _, _) in cores]))
        self.v = _cat([nr.v0 for _, (nr, _, _) in cores])
        self.u = _cat([nr.u0 for _, (nr, _, _) in cores])
        self.n_core = np.repeat(np.arange(len(cores)), sizes)
        self.n_local = np.arange(n) - self.n_off[self.n_core] if n else np.zeros(0, np.int64)
        self.n_key = per_neuron([nr.key if nr.has_key else 0 for _, (nr, _, _) in cores]) | self.n_local
        self.n_sends = per_neuron([int(nr.has_key) for _, (nr, _, _) in cores]).astype(bool)
        self.n_chip = per_neuron([cid[0][1] * m.chips_x + cid[0][0] for cid, _ in cores])
        slots = max((sy.slots for _, (_, _, sy) in cores), default=1)
        self.R = slots + 1
        self.ring = np.zeros((self.R, n), np.int64)
        # master population tables, address lists, synaptic matrices: concatenated, offsets per core
        pt_comp, pt_mask, pt_start, pt_count, pt_core = [], [], [], [], []
        a_row, a_nrows, a_stage, a_tbase, a_tend, a_core = [], [], [], [], [], []
        rp_all, w_post, w_tfield, w_delay, w_raw, w_signed2 = [], [], [], [], [], []
        t_exp, t_mode = [], []
        a_off = row_off = word_off = type_off = 0
        for c, (cid, (_nr, pt, sy)) in enumerate(cores):
            g = self.gid[cid]
            self.role[g] = 1
            pt_comp.append((np.int64(g) << 32) | pt.keys)
            pt_mask.append(pt.masks)
            pt_start.append(pt.start + a_off)
            pt_count.append(pt.count)
            pt_core.append(np.full(pt.keys.size, c))
            a_row.append(pt.first_row + row_off)
            a_nrows.append(pt.n_rows)
            a_stage.append(pt.stage)
            a_tbase.append(pt.type_base + type_off)
            a_tend.append(np.full(pt.first_row.size, type_off + sy.type_exp.size))
            a_core.append(np.full(pt.first_row.size, c))
            rp_all.append(sy.rowptr[:-1] + word_off)
            w = sy.words
            w_post.append((w & ((1 << sy.index_bits) - 1)) + self.n_off[c])
            w_tfield.append((w >> sy.index_bits) & ((1 << sy.type_bits) - 1))
            w_delay.append((w >> (sy.index_bits + sy.type_bits)) & ((1 << sy.delay_bits) - 1))
            raw = w >> (32 - sy.weight_bits)
            w_raw.append(raw)
            half = 1 << (sy.weight_bits - 1)
            w_signed2.append(2 * (raw - ((raw & half) << 1)))
            t_exp.append(sy.type_exp)
            t_mode.append(sy.type_mode)
            a_off += pt.first_row.size
            row_off += sy.rowptr.size - 1
            word_off += w.size
            type_off += sy.type_exp.size
        self.pt_comp, self.pt_mask = _cat(pt_comp), _cat(pt_mask)
        self.pt_start, self.pt_count, self.pt_core = _cat(pt_start), _cat(pt_count), _cat(pt_core)
        self.a_row, self.a_nrows, self.a_stage = _cat(a_row), _cat(a_nrows), _cat(a_stage)
        self.a_tbase, self.a_tend, self.a_core = _cat(a_tbase), _cat(a_tend), _cat(a_core)
        self.rowptr = np.append(_cat(rp_all), word_off).astype(np.int64)
        self.w_post, self.w_tfield, self.w_delay = _cat(w_post), _cat(w_tfield), _cat(w_delay)
        self.w_raw, self.w_signed2 = _cat(w_raw), _cat(w_signed2)
        self.t_exp, self.t_mode = _cat(t_exp), _cat(t_mode)
        self.n_types = max(type_off, 1)
        self.max_stage = int(self.a_stage.max()) if self.a_stage.size else 0
        # conv records: (neuron core index, global core id, one scatter per record), by global core id
        self.conv_cores = [(c, self.gid[cid], [ConvScatter(rec) for rec in m.convs[cid]])
                           for c, (cid, _) in enumerate(cores) if cid in m.convs]
        # delay extensions
        dcores = list(m.delays.items())
        self.dcores = dcores
        dsizes = np.asarray([d.n for _, d in dcores], np.int64)
        self.d_off = np.concatenate([[0], np.cumsum(dsizes)]).astype(np.int64)
        nd = int(self.d_off[-1])
        self.d_core_of_gid = np.full(n_gid, -1, np.int64)
        for i, (cid, _) in enumerate(dcores):
            self.role[self.gid[cid]] = 2
            self.d_core_of_gid[self.gid[cid]] = i
        n_st = max((d.stage_keys.size for _, d in dcores), default=0)
        self.d_stages = n_st
        self.d_slots = np.repeat(np.asarray([d.slots for _, d in dcores], np.int64), dsizes)
        self.d_chip = np.repeat(np.asarray([cid[0][1] * m.chips_x + cid[0][0] for cid, _ in dcores], np.int64),
                                dsizes)
        self.d_local = np.arange(nd) - np.repeat(self.d_off[:-1], dsizes) if nd else np.zeros(0, np.int64)
        self.d_send = np.zeros((n_st, nd), bool)
        self.d_key = np.zeros((n_st, nd), np.int64)
        for i, (_, d) in enumerate(dcores):
            sl = slice(int(self.d_off[i]), int(self.d_off[i + 1]))
            for s in range(d.stage_keys.size):
                if d.stage_has_key[s]:
                    self.d_send[s, sl] = d.stage_bits[s]
                    self.d_key[s, sl] = d.stage_keys[s] | np.arange(d.n)
        self.H = max((d.stage_keys.size * d.slots for _, d in dcores), default=0) + 1
        self.hist = np.zeros((self.H, nd), np.int64)
        # spike sources
        scores = list(m.sources.items())
        self.scores = scores
        for cid, _ in scores:
            self.role[self.gid[cid]] = 3
        self.traces = Traces(m)

    def _fail_lookup(self, gids: np.ndarray, keys: np.ndarray, bad: np.ndarray) -> ArtifactError:
        i = int(np.flatnonzero(bad)[0])
        g, key = int(gids[i]), int(keys[i])
        cid = ((g // self.m.cores_per_chip) % self.m.chips_x, (g // self.m.cores_per_chip) // self.m.chips_x), \
            g % self.m.cores_per_chip
        if self.role[g] == 1:
            _, pt, _ = self.m.neurons[cid]
            conv = f" nor any conv.bin source of its {len(self.m.convs[cid])} conv records" if cid in self.m.convs \
                else ""
            return ArtifactError(f"{pt.label}: byte offset {pt.entries_offset}: key {key:#010x} matches none of the "
                                 f"{pt.keys.size} master population table entries{conv}; expected an entry whose "
                                 "key/mask covers it (the router delivered it here). Fix: compile again")
        if self.role[g] == 2:
            d = self.m.delays[cid]
            return ArtifactError(f"{d.label}: byte offset {HEADER_BYTES + 8}: key {key:#010x} does not match the "
                                 f"incoming key {d.in_key:#010x}/mask {d.in_mask:#010x} (or its neuron id is beyond "
                                 f"{d.n}). Fix: compile again")
        what = "a spike source" if self.role[g] == 3 else "no program"
        return ArtifactError(f"core {cid[1]} of chip {cid[0]} receives key {key:#010x} but runs {what}; "
                             f"expected routes to neuron and delay cores only (the routing tables of "
                             f"{routing_path(cid[0])} and the chips before it). Fix: compile again")

    def run(self, inputs: dict[str, np.ndarray], steps: int) -> ExecResult:
        m = self.m
        R, H = self.R, self.H
        spikes = {name: np.zeros((steps, size), bool) for name, size in m.populations.items()}
        # spike sources: channel columns of every source core, side by side
        s_cols, s_keys, s_chip, s_send = [], [], [], []
        src_counts = np.zeros((steps, 0), np.int64)
        if self.scores:
            cols = []
            for cid, s in self.scores:
                cols.append(inputs[s.name][:, s.start:s.start + s.n])
                s_keys.append(s.keys)
                s_chip.append(np.full(s.n, cid[0][1] * m.chips_x + cid[0][0]))
                s_send.append(np.full(s.n, s.has_key))
                spikes[s.name][:, s.start:s.start + s.n] = cols[-1] != 0
            src_counts = np.concatenate(cols, axis=1)
            s_cols = [np.concatenate(s_keys), np.concatenate(s_chip), np.concatenate(s_send)]
        fired_all = np.zeros((steps, self.N), bool)
        link_rows: list[np.ndarray] = []
        lookups = np.zeros(self.role.size, np.int64)
        self.ghosts = np.zeros(self.role.size, np.int64)  # over-delivered packets each core dropped
        self.core_events = np.zeros(len(self.ncores), np.int64)
        packets = events = 0
        t0 = time.perf_counter()
        for t in range(steps):
            slot = t % R
            # 1. neuron updates (simulate_int's arithmetic, literally)
            a_in = self.ring[slot].copy()
            self.ring[slot] = 0
            self.u, self.v, fired = self.neurons.step(self.u, self.v, a_in)
            fired_all[t] = fired
            f_idx = np.flatnonzero(fired)
            # 2. packets: neurons, spike sources, delay extensions
            f_send = f_idx[self.n_sends[f_idx]]
            keys = [self.n_key[f_send]]
            chips = [self.n_chip[f_send]]
            pay = [np.ones(f_send.size, np.int64)]
            if src_counts.shape[1]:
                row = src_counts[t]
                nz = np.flatnonzero((row > 0) & s_cols[2])
                keys.append(s_cols[0][nz])
                chips.append(s_cols[1][nz])
                pay.append(row[nz])
            for s in range(self.d_stages):
                back = t - (s + 1) * self.d_slots
                ok = (back >= 0) & self.d_send[s]
                if not ok.any():
                    continue
                idx = np.flatnonzero(ok)
                cnt = self.hist[back[idx] % H, idx]
                nz = cnt > 0
                keys.append(self.d_key[s, idx[nz]])
                chips.append(self.d_chip[idx[nz]])
                pay.append(cnt[nz])
            key = np.concatenate(keys)
            chip = np.concatenate(chips)
            payload = np.concatenate(pay)
            packets += key.size
            if self.hist.shape[1]:
                self.hist[t % H] = 0
            if key.size == 0:
                link_rows.append(np.zeros(len(self.traces.link_list), np.int64))
                continue
            # 3. routers
            tid = self.traces.lookup(chip, key)
            cptr, cdata, lptr, ldata = self.traces.csr()
            crossed, _ = gather(lptr, ldata, tid)
            link_rows.append(np.bincount(crossed, minlength=len(self.traces.link_list)))
            dest, owner = gather(cptr, cdata, tid)
            d_key, d_pay = key[owner], payload[owner]
            np.add.at(lookups, dest, 1)
            role = self.role[dest]
            if np.any((role != 1) & (role != 2)):
                raise self._fail_lookup(dest, d_key, (role != 1) & (role != 2))
            # 4a. delay extensions remember which neurons spiked
            dsel = role == 2
            if dsel.any():
                self._to_delay(dest[dsel], d_key[dsel], d_pay[dsel], t % H)
            nsel = role == 1
            if nsel.any():
                events += self._to_neurons(dest[nsel], d_key[nsel], d_pay[nsel], t)
        wall = time.perf_counter() - t0
        for c, (_, (nr, _, _)) in enumerate(self.ncores):
            spikes[nr.name][:, nr.start:nr.start + nr.n] = fired_all[:, self.n_off[c]:self.n_off[c + 1]]
        n_links = len(self.traces.link_list)
        table = np.zeros((steps, n_links), np.int64)
        for t, row in enumerate(link_rows):
            table[t, :row.size] = row
        links = {}
        for j, lid in enumerate(self.traces.link_list):
            c = lid // N_LINKS
            links[((c % m.chips_x, c // m.chips_x), lid % N_LINKS)] = table[:, j]
        cpc = m.cores_per_chip
        look = {(((g // cpc) % m.chips_x, (g // cpc) // m.chips_x), g % cpc): int(lookups[g])
                for g in np.flatnonzero(self.role).tolist()}
        per_core = {cid: int(self.core_events[c]) for c, (cid, _) in enumerate(self.ncores)}
        ghosts = {(((g // cpc) % m.chips_x, (g // cpc) // m.chips_x), g % cpc): int(self.ghosts[g])
                  for g in np.flatnonzero(self.ghosts).tolist()}
        return ExecResult(spikes, links, look, steps, per_core, packets, events, wall,
                          {"traced_keys": len(self.traces.ids), "links_used": n_links}, ghosts)

    def _to_delay(self, gids: np.ndarray, keys: np.ndarray, pay: np.ndarray, slot: int) -> None:
        core = self.d_core_of_gid[gids]
        in_key = np.asarray([d.in_key for _, d in self.dcores], np.int64)[core]
        in_mask = np.asarray([d.in_mask for _, d in self.dcores], np.int64)[core]
        has_in = np.asarray([d.has_in for _, d in self.dcores], bool)[core]
        n = np.asarray([d.n for _, d in self.dcores], np.int64)[core]
        nid = keys & ~in_mask & MASK32
        bad = ~has_in | ((keys & in_mask) != in_key) | (nid >= n)
        if bad.any():
            ghost = ~has_in | ((keys & in_mask) != in_key)  # another source's key: over-delivered, dropped
            if not self.m.over_delivery or (bad & ~ghost).any():
                raise self._fail_lookup(gids, keys, bad if not self.m.over_delivery else bad & ~ghost)
            np.add.at(self.ghosts, gids[ghost], 1)
            core, nid, pay = core[~ghost], nid[~ghost], pay[~ghost]
        np.add.at(self.hist[slot], self.d_off[core] + nid, pay)

    def _to_conv(self, gids: np.ndarray, keys: np.ndarray, pay: np.ndarray, t: int) -> tuple[np.ndarray, int]:
        """Packets whose key a conv record of their core listens to: scattered through its kernel into ring slot
        t + 1 (a conv synapse has no delay). Returns which packets some record took, and the events."""
        hit = np.zeros(gids.size, bool)
        events = 0
        order = np.argsort(gids, kind="stable")
        g_sorted = gids[order]
        slot = (t + 1) % self.R
        for c, g, scatters in self.conv_cores:
            lo, hi = np.searchsorted(g_sorted, [g, g + 1])
            if lo == hi:
                continue
            idx = order[lo:hi]
            for sc in scatters:
                ok, which, nid = sc.match(keys[idx])
                if not ok.any():
                    continue
                hit[idx[ok]] = True
                which, nid = which[ok], nid[ok]
                beyond = np.flatnonzero(nid >= sc.rec.src_count[which])
                if beyond.size:
                    i = int(beyond[0])
                    rec = sc.rec
                    raise ArtifactError(
                        f"{rec.label}: byte offset {rec.sources_offset + 16 * int(which[i])}: key "
                        f"{int(keys[idx[ok]][i]):#010x} is neuron {int(nid[i])} of conv record {rec.projection}'s "
                        f"source {int(which[i])}, which has {int(rec.src_count[which[i]])}; expected a neuron id "
                        "< count. Fix: compile again")
                acc, ev = sc.accumulate(sc.rec.src_first[which] + nid, pay[idx[ok]])
                self.ring[slot, self.n_off[c]:self.n_off[c + 1]] += acc
                self.core_events[c] += ev
                events += ev
        return hit, events

    def _to_neurons(self, gids: np.ndarray, keys: np.ndarray, pay: np.ndarray, t: int) -> int:
        conv_hit, conv_events = self._to_conv(gids, keys, pay, t) if self.conv_cores else \
            (np.zeros(gids.size, bool), 0)
        # master population table: binary search per core (one sorted array over all cores)
        comp = (gids << 32) | keys
        e = np.searchsorted(self.pt_comp, comp, side="right") - 1
        ok = e >= 0
        if self.pt_comp.size:
            e_ok = np.where(ok, e, 0)
            entry_key = self.pt_comp[e_ok] & MASK32
            ok &= (self.pt_comp[e_ok] >> 32) == gids
            ok &= (keys & self.pt_mask[e_ok]) == entry_key
        if not (ok | conv_hit).all():
            ghosts = ~(ok | conv_hit)
            if not self.m.over_delivery:
                raise self._fail_lookup(gids, keys, ghosts)
            np.add.at(self.ghosts, gids[ghosts], 1)
        if not ok.all():  # packets only conv records listen to have no rows
            gids, keys, pay, e = gids[ok], keys[ok], pay[ok], e[ok]
            if not gids.size:
                return conv_events
        nid = keys & ~self.pt_mask[e] & MASK32
        # every address entry of the matching key: one row each
        cnt = self.pt_count[e]
        owner = np.repeat(np.arange(e.size), cnt)
        addr = self.pt_start[e][owner] + (np.arange(owner.size) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        nid_a = nid[owner]
        bad = nid_a >= self.a_nrows[addr]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            c = int(self.a_core[addr[i]])
            _, pt, _ = self.ncores[c][1]
            local = int(addr[i]) - int(np.flatnonzero(self.a_core == c)[0])
            raise ArtifactError(f"{pt.label}: byte offset {pt.addr_offset + 8 * local}: key {int(keys[owner[i]]):#010x}"
                                f" is neuron {int(nid_a[i])}, beyond the {int(self.a_nrows[addr[i]])} rows of address "
                                f"entry {local}; expected a neuron id < n_rows. Fix: compile again")
        rows = self.a_row[addr] + nid_a
        words, w_owner = ranges(self.rowptr[rows], self.rowptr[rows + 1] - self.rowptr[rows])
        if words.size == 0:
            return conv_events
        a = addr[w_owner]
        typ = self.a_tbase[a] + self.w_tfield[words]
        bad = typ >= self.a_tend[a]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            c = int(self.a_core[a[i]])
            _, _, sy = self.ncores[c][1]
            local_word = int(words[i]) - int(self.rowptr[int(self.a_row[self.a_core == c].min())])
            raise ArtifactError(f"{sy.label}: byte offset {sy.words_offset + 4 * local_word}: synaptic word "
                                f"{local_word} selects synapse type {int(typ[i] - self.a_tbase[a[i]])} past its "
                                f"block's base, beyond the core's {sy.type_exp.size} types; expected type base + "
                                f"field < {sy.type_exp.size}. Fix: compile again")
        self.core_events += np.bincount(self.a_core[a], minlength=self.core_events.size)
        mode = self.t_mode[typ]
        raw = self.w_raw[words]
        m_ = np.where(mode == MODE_POSITIVE, raw, np.where(mode == MODE_NEGATIVE, -raw, self.w_signed2[words]))
        contrib = m_ * pay[owner[w_owner]]
        post = self.w_post[words]
        delay = self.w_delay[words]
        stage = self.a_stage[a]
        # Lava shifts the sum of one send step's weights per (projection, post neuron, delay): group, sum, shift.
        group = ((post * self.n_types + typ) * (self.max_stage + 1) + stage) * self.R + delay
        order = np.argsort(group, kind="stable")
        g_sorted = group[order]
        starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
        sums = np.add.reduceat(contrib[order], starts)
        g = g_sorted[starts]
        d = g % self.R
        typ_g = (g // (self.R * (self.max_stage + 1))) % self.n_types
        post_g = g // (self.R * (self.max_stage + 1) * self.n_types)
        exp = self.t_exp[typ_g]
        shifted = shift_by_exponent(sums, exp)
        np.add.at(self.ring, ((t + 1 + d) % self.R, post_g), shifted)
        return int(words.size) + conv_events


def load(out_dir: str | Path) -> Machine:
    """Read and check every file of an emitted SpiNNaker output (raises ArtifactError naming the problem)."""
    return Machine(out_dir)


def run(out_dir: str | Path, raster: np.ndarray | dict[str, np.ndarray]) -> ExecResult:
    """Run the emitted tables in `out_dir` for the raster's T steps; spikes per IntNetwork population."""
    m = Machine(out_dir)
    inputs, steps = integer_raster(m, raster)
    return _Runner(m).run(inputs, steps)
