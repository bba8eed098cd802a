"""Write a Mapping as a runnable Lava program: weights.npz + run_lava.py + network.npz + manifest.json.

The program (run_lava.py, copied verbatim) is generic; everything network-specific is data in
weights.npz. One Lava LIF per population slice; one connection process per (projection, pre slice,
post slice) block that holds synapses: Dense or Sparse without delays, DelayDense or DelaySparse with.
A conv projection is one Lava `Conv` process from the whole pre population to the whole post population
(backends/lava/conv.py: what Lava's Conv computes and how emit keeps it bit-exact), so a population a
Conv reads or writes is one Lava process whatever its mapping slices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ...compiler.errors import ArtifactError
from ...compiler.ir import (
    NETWORK_FILE,
    IntNetwork,
    IntProjection,
    Mapping,
    Slice,
    json_default,
    manifest_default,
    save_int_network,
)
from ..output_dir import write_atomically
from .conv import ConvConnection, conv_connection, lava_conv

FORMAT_VERSION = 2  # must equal run_lava.FORMAT_VERSION; 2 added Conv processes
PROGRAM = "run_lava.py"
WEIGHTS = "weights.npz"
MANIFEST = "manifest.json"
NUM_WEIGHT_BITS = 8  # Lava's weight mantissa width; the quantizer already fits weights into it
LAVA_MAX_DELAY = 63  # PyDelayDenseModelBitAcc / PyDelaySparseModelBitAcc reject larger delays
LAVA_WEIGHT_BITS = 8  # Lava's clip_weights(num_bits=8)

# Measured in Lava 0.10 fixed_pt (one process per population): the corpus conv layers (4624x2312, 0.75-2.9%
# dense) run 3.2x faster as Sparse (1000 steps: 3.7 s vs 11.8 s); a 16x20 MLP runs 10% faster as Dense.
SPARSE_MAX_DENSITY = 0.25
SPARSE_MIN_ENTRIES = 16_384
# DelayDense rebuilds a (max_delay+1)*n_out x n_in matrix every step, DelaySparse max_delay sparse masks:
# a 24x16 block with delays 0..63 runs 4x faster as DelayDense; they break even near 1M stacked entries
# (256x140, delays 0..24).
DELAY_SPARSE_MIN_STACKED = 1_000_000


@dataclasses.dataclass
class Connection:
    """Synapses of one projection between one pre slice and one post slice, in sorted CSR order."""

    projection: int
    pre: tuple[int, int]  # (population index, slice index)
    post: tuple[int, int]
    shape: tuple[int, int]
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    delays: np.ndarray
    weight_exp: int
    sign_mode: str
    label: str
    process: str = ""

    @property
    def max_delay(self) -> int:
        return int(self.delays.max()) if self.delays.size else 0

    @property
    def density(self) -> float:
        return self.data.size / max(1, self.shape[0] * self.shape[1])


def _lava_version() -> str:
    try:
        return metadata.version("lava-nc")
    except metadata.PackageNotFoundError:
        return "not installed"


def _population_slices(mapping: Mapping, granularity: str, whole: set[str]) -> dict[str, list[Slice]]:
    """Neuron (or source) slices per population, sorted; delay-extension slices are not needed in Lava
    (DelayDense/DelaySparse hold delays up to 63 natively). Populations in `whole` (a Conv reads or
    writes them, and Lava ports can neither slice nor concatenate) are one slice."""
    inet = mapping.network
    out: dict[str, list[Slice]] = {}
    for name, pop in inet.populations.items():
        own = sorted((s for s in mapping.slices_of(name) if s.role != "delay"), key=lambda s: s.start)
        if not own or granularity == "populations" or name in whole:
            own = [Slice(name, 0, pop.size, role="source" if pop.kind == "input" else "neurons")]
        covered = np.zeros(pop.size, dtype=np.int64)
        for s in own:
            covered[s.start:s.stop] += 1
        if pop.size and not np.all(covered == 1):
            raise ArtifactError(f"mapping: the slices of population {name!r} do not cover its {pop.size} neurons "
                                "exactly once. Fix: re-run the partition pass")
        out[name] = own
    return out


def _split_repeats(rows: np.ndarray, cols: np.ndarray, n_cols: int) -> np.ndarray:
    """Occurrence number of each (row, col) pair; a Lava matrix holds one synapse per pair."""
    key = rows * n_cols + cols
    order = np.argsort(key, kind="stable")
    sk = key[order]
    first = np.ones(sk.size, dtype=bool)
    first[1:] = sk[1:] != sk[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(sk.size), 0))
    occ = np.empty(sk.size, dtype=np.int64)
    occ[order] = np.arange(sk.size) - run_start
    return occ


def _split_convs(inet: IntNetwork, mode: str) -> tuple[list[ConvConnection], dict[int, str]]:
    """Conv projections as Lava Conv processes, and (projection index -> reason) for the convs emitted
    unrolled instead (Lava's Conv cannot run them exactly, or `mode` says so)."""
    convs: list[ConvConnection] = []
    unrolled: dict[int, str] = {}
    for k, proj in enumerate(inet.projections):
        if proj.conv is None:
            continue
        if mode == "never":
            unrolled[k] = "emit(conv='never')"
            continue
        plain, reason = lava_conv(proj.conv, dense_1x1=mode == "auto" and _weights_problem(proj) is None)
        if plain is not None:
            convs.append(conv_connection(inet, k, proj, plain))
        else:
            unrolled[k] = reason
    return convs, unrolled


def _connections(inet: IntNetwork, slices: dict[str, list[Slice]], skip: set[int],
                 unrolled: dict[int, str]) -> list[Connection]:
    names = list(inet.populations)
    out: list[Connection] = []
    for k, proj in enumerate(inet.projections):
        if k in skip:
            continue
        _check_projection(proj, unrolled.get(k, ""))
        w = proj.weights
        rows = np.repeat(np.arange(w.shape[0], dtype=np.int64), np.diff(w.indptr))
        cols = w.indices.astype(np.int64)
        data = w.data.astype(np.int64)
        delays = proj.delays.astype(np.int64)
        occ = _split_repeats(rows, cols, w.shape[1])
        pi, qi = names.index(proj.pre), names.index(proj.post)
        pre_sl, post_sl = slices[proj.pre], slices[proj.post]
        a_of = np.searchsorted([s.start for s in pre_sl], cols, side="right") - 1
        b_of = np.searchsorted([s.start for s in post_sl], rows, side="right") - 1
        # Group synapses by (post slice, pre slice, occurrence), each group in (row, col) order.
        order = np.lexsort((cols, rows, occ, a_of, b_of))
        group = np.stack([b_of[order], a_of[order], occ[order]])
        cuts = np.flatnonzero(np.any(group[:, 1:] != group[:, :-1], axis=0)) + 1
        for idx in np.split(order, cuts) if order.size else []:
            b, a, o = int(b_of[idx[0]]), int(a_of[idx[0]]), int(occ[idx[0]])
            pre, post = pre_sl[a], post_sl[b]
            r, c = rows[idx] - post.start, cols[idx] - pre.start
            shape = (post.size, pre.size)
            indptr = np.searchsorted(r, np.arange(shape[0] + 1)).astype(np.int64)
            label = f"{proj.pre}[{pre.start}:{pre.stop}]->{proj.post}[{post.start}:{post.stop}]"
            out.append(Connection(k, (pi, a), (qi, b), shape, data[idx], c, indptr, delays[idx],
                                  proj.weight_exp, proj.sign_mode, label + (f"#{o}" if o else "")))
    return out


def _weights_problem(proj: IntProjection) -> str | None:
    """Why Lava's Dense/Sparse (8-bit mantissas, clipped per sign mode) cannot hold these weights exactly."""
    d = proj.weights.data
    top = (1 << LAVA_WEIGHT_BITS) - 1
    low, high = {"excitatory": (0, top), "inhibitory": (-top, 0), "mixed": (-(top + 1), top - 1)}.get(
        proj.sign_mode, (None, None))
    if low is None:
        return f"unknown sign mode {proj.sign_mode!r}"
    mixed = proj.sign_mode == "mixed"
    if d.size and (d.min() < low or d.max() > high or (mixed and np.any(d % 2))):
        return (f"weight mantissas [{int(d.min())}, {int(d.max())}] are not exact in Lava's {proj.sign_mode} "
                f"8-bit format ({low}..{high}{', even' if mixed else ''})")
    return None


def _check_projection(proj: IntProjection, why_unrolled: str = "") -> None:
    """Values Lava would clip or truncate would silently break bit-exactness: refuse them here."""
    where = f"projection {proj.pre!r} -> {proj.post!r}"
    problem = _weights_problem(proj)
    if problem is not None:
        conv = f" (a conv emitted unrolled: {why_unrolled})" if why_unrolled else ""
        raise ArtifactError(f"{where}: {problem}{conv}. Fix: quantize for a Loihi target")
    if proj.delays.size and (proj.delays.min() < 0 or proj.delays.max() > LAVA_MAX_DELAY):
        raise ArtifactError(f"{where}: delays {int(proj.delays.min())}..{int(proj.delays.max())} outside Lava's "
                            f"0..{LAVA_MAX_DELAY}")


def choose_process(conn: Connection, sparse: str) -> str:
    if sparse == "always":
        use_sparse = True
    elif sparse == "never":
        use_sparse = False
    else:
        entries = conn.shape[0] * conn.shape[1]
        if conn.max_delay > 0:
            use_sparse = (conn.max_delay + 1) * entries >= DELAY_SPARSE_MIN_STACKED
        else:
            use_sparse = entries >= SPARSE_MIN_ENTRIES and conn.density <= SPARSE_MAX_DENSITY
    base = "Sparse" if use_sparse else "Dense"
    return ("Delay" + base) if conn.max_delay > 0 else base


def _weights_arrays(mapping: Mapping, slices: dict[str, list[Slice]], conns: list[Connection],
                    convs: list[ConvConnection]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    inet = mapping.network
    arrays: dict[str, np.ndarray] = {}
    pops_meta = []
    for i, (name, pop) in enumerate(inet.populations.items()):
        pops_meta.append({"name": name, "kind": pop.kind, "shape": list(pop.shape), "size": pop.size,
                          "spiking": pop.spiking, "slices": [[s.start, s.stop] for s in slices[name]]})
        key = f"pop{i}"
        arrays[f"{key}.shape"] = np.asarray(pop.shape, dtype=np.int64)
        if pop.kind == "input":
            continue
        arrays[f"{key}.du"] = np.asarray(pop.du, dtype=np.int64)
        arrays[f"{key}.dv"] = np.asarray(pop.dv, dtype=np.int64)
        # Non-spiking readouts keep the IntNetwork's vth (threshold_max): Lava runs them as plain LIFs.
        arrays[f"{key}.vth"] = np.asarray(pop.vth, dtype=np.int64)
        arrays[f"{key}.bias_mant"] = np.asarray(pop.bias_mant, dtype=np.int64).reshape(pop.size)
        arrays[f"{key}.bias_exp"] = np.asarray(pop.bias_exp, dtype=np.int64).reshape(pop.size)
    conns_meta = []
    for c, conn in enumerate(conns):
        key = f"conn{c}"
        if conn.process in ("Dense", "DelayDense"):
            dense = np.zeros(conn.shape, dtype=np.int64)
            rows = np.repeat(np.arange(conn.shape[0]), np.diff(conn.indptr))
            dense[rows, conn.indices] = conn.data
            arrays[f"{key}.weights"] = dense
            if conn.process == "DelayDense":
                dly = np.zeros(conn.shape, dtype=np.int64)
                dly[rows, conn.indices] = conn.delays
                arrays[f"{key}.delays"] = dly
        else:
            arrays[f"{key}.data"] = conn.data
            arrays[f"{key}.indices"] = conn.indices
            arrays[f"{key}.indptr"] = conn.indptr
            arrays[f"{key}.delays"] = conn.delays  # aligned with data
        arrays[f"{key}.shape"] = np.asarray(conn.shape, dtype=np.int64)
        arrays[f"{key}.weight_exp"] = np.asarray(conn.weight_exp, dtype=np.int64)
        arrays[f"{key}.sign_mode"] = np.asarray(conn.sign_mode)
        conns_meta.append({"index": c, "label": conn.label, "projection": conn.projection, "pre": list(conn.pre),
                           "post": list(conn.post), "process": conn.process, "synapses": int(conn.data.size),
                           "density": round(conn.density, 6), "max_delay": conn.max_delay,
                           "num_weight_bits": NUM_WEIGHT_BITS})
    convs_meta = []
    for c, conv in enumerate(convs):
        arrays[f"conv{c}.kernel"] = conv.kernel
        convs_meta.append(conv.meta(c))
    meta = {"format_version": FORMAT_VERSION, "target": inet.target, "inputs": list(inet.inputs),
            "populations": pops_meta, "connections": conns_meta, "convs": convs_meta}
    arrays["meta"] = np.asarray(json.dumps(meta, default=json_default))
    return arrays, meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_into(tmp: Path, mapping: Mapping, sparse: str, granularity: str, conv: str) -> None:
    inet = mapping.network
    convs, unrolled = _split_convs(inet, conv)
    names = list(inet.populations)
    whole = {names[i] for c in convs for i in (c.pre, c.post)}
    slices = _population_slices(mapping, granularity, whole)
    conns = _connections(inet, slices, {c.projection for c in convs}, unrolled)
    for conn in conns:
        conn.process = choose_process(conn, sparse)
    arrays, meta = _weights_arrays(mapping, slices, conns, convs)
    with open(tmp / WEIGHTS, "wb") as f:
        np.savez_compressed(f, **arrays)
    shutil.copyfile(Path(__file__).with_name(PROGRAM), tmp / PROGRAM)
    save_int_network(mapping.network, tmp / NETWORK_FILE)
    files = [{"name": n, "bytes": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)}
             for n in (PROGRAM, WEIGHTS, NETWORK_FILE)]
    manifest = {
        **mapping.summary(),
        "backend": "lava",
        "format_version": FORMAT_VERSION,
        "lava_version": _lava_version(),
        "run_config": "Loihi2SimCfg(select_tag='fixed_pt')",
        "command": f"python {PROGRAM} --input x.npz --output spikes.npz",
        "files": files,
        "lava_granularity": granularity,
        "lava_conv": conv,
        "lava_processes": {
            "RingBuffer": sum(len(p["slices"]) for p in meta["populations"] if p["kind"] == "input"),
            "LIF": sum(len(p["slices"]) for p in meta["populations"] if p["kind"] != "input"),
            **{k: sum(c["process"] == k for c in meta["connections"])
               for k in ("Dense", "DelayDense", "Sparse", "DelaySparse")},
            "Conv": len(convs),
        },
        "lava_slices": {p["name"]: p["slices"] for p in meta["populations"]},  # one Lava process each
        "lava_connections": meta["connections"],
        "lava_convs": meta["convs"],
        "lava_conv_unrolled": [{"projection": k, "pre": inet.projections[k].pre, "post": inet.projections[k].post,
                                "reason": reason} for k, reason in unrolled.items()],
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=manifest_default) + "\n")


def emit(mapping: Mapping, out_dir: Path, *, sparse: str = "auto", granularity: str = "slices",
         conv: str = "auto") -> Path:
    """Write the Lava artifacts for `mapping` into `out_dir`, atomically; return `out_dir`.

    The directory is built next to `out_dir` and renamed into place, so a failure leaves either the
    previous output or nothing. An existing `out_dir` is replaced only if it is empty or a previous
    neurocc output (has a manifest.json). `sparse`: "auto" (by size and density), "always" or "never".
    `granularity`: "slices" (one LIF per mapping slice, one connection per slice pair) or "populations"
    (one LIF per population: far fewer Lava processes, so much faster to simulate; same arithmetic).
    Either way a conv projection is one Lava Conv between whole populations (see backends/lava/conv.py).
    `conv`: "auto" (a Lava Conv for every conv projection Lava's Conv runs exactly, except one with a single
    output position, a dense layer: backends/lava/conv.py, point 8), "always" (those too) or "never" (every conv
    unrolled into Dense/Sparse slices, the pre-conv layout: for comparisons). The manifest's
    `lava_conv_unrolled` lists each conv emitted unrolled and why.
    """
    if sparse not in ("auto", "always", "never"):
        raise ValueError(f"sparse must be 'auto', 'always' or 'never', not {sparse!r}")
    if granularity not in ("slices", "populations"):
        raise ValueError(f"granularity must be 'slices' or 'populations', not {granularity!r}")
    if conv not in ("auto", "always", "never"):
        raise ValueError(f"conv must be 'auto', 'always' or 'never', not {conv!r}")
    return write_atomically(out_dir, "the Lava artifacts",
                            lambda tmp: _write_into(tmp, mapping, sparse, granularity, conv))
