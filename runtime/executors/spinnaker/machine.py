"""Load an emitted output into a Machine: every file read and checked, then cross-checked against the
manifest and each other (keys, cores, population coverage)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ....backends.spinnaker.format import (
    FILE_OF_KIND,
    HEADER_BYTES,
    MACHINE_FILE,
    MAGIC_CONV,
    MAGIC_DELAY,
    MAGIC_MACHINE,
    MAGIC_NEURONS,
    MAGIC_POPTABLE,
    MAGIC_ROUTING,
    MAGIC_SOURCE,
    MAGIC_SYNAPSES,
    MANIFEST,
    TOPOLOGIES,
    Reader,
    check_file,
    core_dir,
    routing_path,
)
from ....compiler.errors import ArtifactError
from .conv import ConvRecord, parse_conv
from .files import (
    N_LINKS,
    Chip,
    CoreId,
    Delay,
    Neurons,
    PopTable,
    Source,
    Synapses,
    parse_delay,
    parse_neurons,
    parse_poptable,
    parse_source,
    parse_synapses,
)


@dataclass
class Table:
    label: str
    keys: np.ndarray
    masks: np.ndarray
    routes: np.ndarray  # [n, route words] u32 words of each route word, least significant first
    entries_offset: int


class Machine:
    """Everything the executor needs, built from the files alone."""

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        manifest_path = self.dir / MANIFEST
        if not manifest_path.is_file():
            raise ArtifactError(f"{manifest_path}: no manifest; {self.dir} is not a neurocc output. "
                                "Fix: run neurocc compile")
        try:
            manifest = json.loads(manifest_path.read_text())
            listed = {f["path"]: f for f in manifest["files"]}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{manifest_path}: corrupt manifest ({exc}). Fix: compile again") from None
        if manifest.get("backend") != "spinnaker":
            raise ArtifactError(f"{manifest_path}: backend {manifest.get('backend')!r}, expected 'spinnaker'")
        self.listed = listed
        # Over-delivery (compiler/passes/over_delivery.py): cores also receive keys they hold no rows for, and
        # drop them as a real core's master population table search does ("ghost" searches in sPyNNaker).
        # Without it such a key is a routing error.
        self.over_delivery = bool(manifest.get("routing_entries", {}).get("over_delivery", False))
        if MACHINE_FILE not in listed:
            raise ArtifactError(f"{manifest_path}: lists no {MACHINE_FILE}. Fix: compile again")
        r = self._open(MACHINE_FILE, MAGIC_MACHINE)
        cx, cy, cpc, topo, default, n_tables, n_cores = r.unpack("HHHBBII", "machine description")
        r.done()
        if topo >= len(TOPOLOGIES) or default > 1 or cx == 0 or cy == 0 or cpc == 0:
            raise r.fail(f"mesh {cx}x{cy}, {cpc} cores/chip, topology {topo}, default routing {default}; expected "
                         f"non-zero sizes, topology < {len(TOPOLOGIES)}, default 0/1", HEADER_BYTES)
        self.chips_x, self.chips_y, self.cores_per_chip = cx, cy, cpc
        self.default_routing = bool(default)
        self.topology = TOPOLOGIES[topo]
        # links that exist: all six on SpiNNaker's triangular mesh; E, N, W, S on a 2-D mesh; none on one chip
        self.link_mask = {"triangular": 0b111111, "mesh2d": 0b101101, "single": 0}[self.topology]
        self.tables: dict[int, Table] = {}
        core_kinds: dict[CoreId, dict[str, str]] = {}
        for rel, f in listed.items():
            kind = f.get("kind")
            if kind == "routing":
                chip = self._chip_of(f, rel)
                if rel != routing_path(chip):
                    raise ArtifactError(f"{rel}: routing table of chip {chip} should be {routing_path(chip)}")
                self.tables[self._chip_id(chip, rel)] = self._parse_table(rel, chip)
            elif kind in FILE_OF_KIND:
                chip = self._chip_of(f, rel)
                core = f.get("core")
                if not isinstance(core, int) or not 0 <= core < cpc or rel != f"{core_dir(chip, core)}/" \
                        f"{FILE_OF_KIND[kind]}":
                    raise ArtifactError(f"{manifest_path}: file {rel} has core {core!r}, expected its directory's "
                                        f"core < {cpc}")
                core_kinds.setdefault((chip, core), {})[kind] = rel
            elif kind != "machine":
                raise ArtifactError(f"{manifest_path}: file {rel} has unknown kind {kind!r}")
        if len(self.tables) != n_tables or len(core_kinds) != n_cores:
            raise ArtifactError(f"{manifest_path}: lists {len(self.tables)} routing tables and {len(core_kinds)} "
                                f"cores, {MACHINE_FILE} says {n_tables} and {n_cores}. Fix: compile again")
        self.neurons: dict[CoreId, tuple[Neurons, PopTable, Synapses]] = {}
        self.convs: dict[CoreId, list[ConvRecord]] = {}  # neuron cores with a conv.bin
        self.delays: dict[CoreId, Delay] = {}
        self.sources: dict[CoreId, Source] = {}
        for cid in sorted(core_kinds):
            kinds = core_kinds[cid]
            chip, core = cid
            if set(kinds) - {"conv"} == {"neurons", "poptable", "synapses"}:
                nr = parse_neurons(self._open(kinds["neurons"], MAGIC_NEURONS), chip, core)
                pt = parse_poptable(self._open(kinds["poptable"], MAGIC_POPTABLE), chip, core)
                sy = parse_synapses(self._open(kinds["synapses"], MAGIC_SYNAPSES), chip, core, nr.n)
                self._check_rows(pt, sy)
                self.neurons[cid] = (nr, pt, sy)
                if "conv" in kinds:
                    self.convs[cid] = parse_conv(self._open(kinds["conv"], MAGIC_CONV), chip, core, nr)
            elif set(kinds) == {"delay"}:
                self.delays[cid] = parse_delay(self._open(kinds["delay"], MAGIC_DELAY), chip, core)
            elif set(kinds) == {"source"}:
                self.sources[cid] = parse_source(self._open(kinds["source"], MAGIC_SOURCE), chip, core)
            else:
                raise ArtifactError(f"{core_dir(chip, core)}: files {sorted(kinds)}, expected neurons+poptable+"
                                    "synapses (+conv), delay, or source. Fix: compile again")
        self._check_coverage()

    # -- helpers for loading --
    def _open(self, rel: str, magic: bytes) -> Reader:
        """A listed file, its header checked (size, magic, version, CRC), then checked against the manifest."""
        path = self.dir / rel
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{rel}: cannot read ({exc.strerror}; listed in {MANIFEST}). Fix: compile again") \
                from None
        r = check_file(data, rel, magic)
        f = self.listed[rel]
        if f.get("bytes") != len(data) or f.get("crc32") != zlib.crc32(data):
            raise ArtifactError(f"{rel}: byte offset 0: {len(data)} bytes with file CRC32 {zlib.crc32(data):#010x}, "
                                f"expected {f.get('bytes')} bytes with CRC32 {f.get('crc32')} as {MANIFEST} records: "
                                "the file was replaced after compilation. Fix: compile again")
        return r

    def _chip_of(self, f: dict[str, Any], rel: str) -> Chip:
        chip = f.get("chip")
        if not (isinstance(chip, list) and len(chip) == 2 and all(isinstance(c, int) for c in chip)):
            raise ArtifactError(f"{self.dir / MANIFEST}: file {rel} has chip {chip!r}, expected [x, y]")
        return (chip[0], chip[1])

    def _chip_id(self, chip: Chip, what: str) -> int:
        if not (0 <= chip[0] < self.chips_x and 0 <= chip[1] < self.chips_y):
            raise ArtifactError(f"{what}: chip {chip} is outside the {self.chips_x}x{self.chips_y} mesh")
        return chip[1] * self.chips_x + chip[0]

    def _parse_table(self, rel: str, chip: Chip) -> Table:
        r = self._open(rel, MAGIC_ROUTING)
        x, y, limit, n, words, reserved = r.unpack("HHIIHH", "table header")
        if (x, y) != chip:
            raise r.fail(f"chip ({x},{y}), expected {chip} from its path", HEADER_BYTES)
        if n > limit:
            raise r.fail(f"{n} entries, expected at most the router's {limit}", HEADER_BYTES + 8)
        need = (N_LINKS + self.cores_per_chip + 31) // 32
        if words != need or reserved:
            raise r.fail(f"{words} words per route (reserved {reserved}), expected {need} for 6 links + "
                         f"{self.cores_per_chip} cores (reserved 0)", HEADER_BYTES + 12)
        entries_offset = r.file_offset
        arr = r.array("u4", (2 + words) * n, "routing entries").reshape(-1, 2 + words).astype(np.int64)
        r.done()
        routes = arr[:, 2:]
        top = N_LINKS + self.cores_per_chip  # bits at or above are not links or cores
        beyond = routes[:, top // 32] >> (top % 32) if top % 32 else np.zeros(n, np.int64)
        bad = np.flatnonzero(beyond)
        if bad.size:
            i = int(bad[0])
            raise r.fail(f"entry {i}'s route word names a core >= {self.cores_per_chip}, expected only bits below "
                         f"{top}", entries_offset + (8 + 4 * words) * i + 8 + 4 * (top // 32))
        bad = np.flatnonzero(routes[:, 0] & ~self.link_mask & ((1 << N_LINKS) - 1))
        if bad.size:
            i = int(bad[0])
            raise r.fail(f"entry {i} route word {int(routes[i, 0]):#x} uses a link a {self.topology} mesh does not "
                         f"have, expected link bits within {self.link_mask:#04x}",
                         entries_offset + (8 + 4 * words) * i + 8)
        return Table(rel, arr[:, 0], arr[:, 1], routes, entries_offset)

    @staticmethod
    def _check_rows(pt: PopTable, sy: Synapses) -> None:
        n_rows = sy.rowptr.size - 1
        bad = np.flatnonzero(pt.first_row + pt.n_rows > n_rows)
        if bad.size:
            i = int(bad[0])
            raise ArtifactError(
                f"{pt.label}: byte offset {pt.addr_offset + 8 * i}: address entry {i} points at rows "
                f"[{int(pt.first_row[i])}, {int(pt.first_row[i] + pt.n_rows[i])}), outside the synaptic matrix's "
                f"{n_rows} rows (expected first_row + n_rows <= {n_rows}). Fix: compile again")
        bad = np.flatnonzero(pt.type_base >= sy.type_exp.size)
        if bad.size:
            i = int(bad[0])
            raise ArtifactError(f"{pt.label}: byte offset {pt.addr_offset + 8 * i + 7}: address entry {i} type base "
                                f"{int(pt.type_base[i])}, expected < {sy.type_exp.size} synapse types. Fix: compile "
                                "again")

    def _check_coverage(self) -> None:
        seen: dict[str, tuple[int, np.ndarray]] = {}
        for label, name, size, start, n in [(nr.label, nr.name, nr.pop_size, nr.start, nr.n)
                                            for nr, _, _ in self.neurons.values()] + \
                [(s.label, s.name, s.pop_size, s.start, s.n) for s in self.sources.values()]:
            size0, cover = seen.setdefault(name, (size, np.zeros(size, np.int64)))
            if size0 != size:
                raise ArtifactError(f"{label}: population {name!r} has {size} neurons, another core says {size0}")
            cover[start:start + n] += 1
        for name, (_, cover) in seen.items():
            if not (cover == 1).all():
                i = int(np.flatnonzero(cover != 1)[0])
                raise ArtifactError(f"population {name!r}: neuron {i} is on {int(cover[i])} cores, expected exactly "
                                    "one. Fix: compile again")
        self.populations = {name: size for name, (size, _) in seen.items()}
        self.inputs = sorted({s.name for s in self.sources.values()})
