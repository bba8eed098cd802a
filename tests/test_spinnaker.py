"""SpiNNaker backend: the executor runs only the emitted binary tables and reproduces simulate_int
bit for bit (every population, every neuron, every step, >= 100 steps); its packets per link equal
the placement simulator's; corrupt files fail with an ArtifactError naming file, offset and value.

No mocks and no skips: the reference simulator is the oracle, the files are real.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest

import neurocc
from neurocc.backends.spinnaker import emit
from neurocc.backends.spinnaker.format import HEADER_BYTES
from neurocc.compiler.errors import ArtifactError, TargetError
from neurocc.compiler.ir import NETWORK_FILE, Mapping, Role, load_int_network, make_projection
from neurocc.compiler.pipeline import compile_network
from neurocc.compiler.targets.target import Mesh, Target, load_target
from neurocc.runtime.executors.spinnaker import ExecResult, run
from neurocc.runtime.placement_sim import simulate_placement
from neurocc.runtime.simulator import simulate_int
from neurocc.workloads import random_network, shd_delay_graph

from .conftest import SYNTHETIC, convention_of, target_toml_with

TARGETS = ("spinnaker1", "spinnaker2")
MIN_STEPS = 100


# ---- helpers ------------------------------------------------------------------------------------------

def small(name: str, neurons: int = 32, cores: int = 4, chips: int = 8, delay_slots: int | None = None,
          entries: int | None = None) -> Target:
    """The target with small cores and chips, so a modest network spreads over many chips."""
    t = load_target(name)
    core = dataclasses.replace(t.core, neurons=neurons,
                               delay_slots=t.core.delay_slots if delay_slots is None else delay_slots)
    router = t.router if entries is None else dataclasses.replace(t.router, entries_per_chip=entries)
    return dataclasses.replace(t, core=core, router=router, mesh=Mesh(t.mesh.topology, chips, chips, cores))


def tiled(x: np.ndarray, steps: int = MIN_STEPS) -> np.ndarray:
    reps = -(-steps // x.shape[0])
    return np.concatenate([x] * reps)[: max(steps, x.shape[0])]


def expected_events(mapping: Mapping, spikes: dict[str, np.ndarray], steps: int) -> dict[str, int]:
    """Per neuron slice, the synaptic events the arithmetic implies: a row word is one event per packet
    (stage s packets leave s x slots steps late); a conv weight is one per (spike, or nonzero pooled position
    when the conv has a pool prefix, whose sums are not synapses) x nonzero weight into the slice."""
    slots = mapping.target.core.delay_slots
    out: dict[str, int] = {}
    for s in mapping.slices:
        if s.role != Role.NEURONS:
            continue
        count = 0
        for proj in mapping.network.incoming(s.population):
            fired = spikes[proj.pre] != 0
            conv = proj.conv
            if conv is not None and conv.pool is not None:
                pooled = (fired.astype(np.int64) @ conv.pool.as_conv(conv.in_shape).unrolled().T) > 0
                count += int(pooled.sum(axis=0)[conv.stage().unrolled()[s.start:s.stop].indices].sum())
                continue
            w = proj.weights
            cols = w.indices[w.indptr[s.start]:w.indptr[s.stop]]
            stage_of = proj.delays[w.indptr[s.start]:w.indptr[s.stop]] // slots
            for st in np.unique(stage_of).tolist():
                count += int(fired[:max(0, steps - st * slots)].sum(axis=0)[cols[stage_of == st]].sum())
        out[s.label] = count
    return out


def check_events(mapping: Mapping, got: ExecResult, ref: Any, report: Any) -> None:
    """Synaptic events per neuron core: the executor's == what the arithmetic implies == the placement
    simulator's replay."""
    events = expected_events(mapping, ref.spikes, ref.steps)
    for core in report.cores:
        if core["role"] != "neurons":
            continue
        have = got.events[(tuple(core["chip"]), core["core"])]
        assert have == events[core["label"]], (core["label"], have, events[core["label"]])
        placed = core["events_per_step"] * ref.steps
        assert abs(placed - have) <= 1e-6 * max(1.0, placed), (core["label"], placed, have)
    assert got.synaptic_events == sum(events.values())


def check(mapping: Mapping, raster: np.ndarray, out: Path, multi_chip: bool = False) -> ExecResult:
    """Emit, run the tables, and compare spikes with simulate_int and link packets with simulate_placement."""
    emit(mapping, out)
    got = run(out, raster)
    ref = simulate_int(mapping.network, raster, record=False)
    assert ref.steps >= MIN_STEPS and got.steps == ref.steps
    for name, expected in ref.spikes.items():
        assert name in got.spikes, f"executor returned no spikes for {name!r}"
        have = got.spikes[name]
        assert have.shape == expected.shape, (name, have.shape, expected.shape)
        if not np.array_equal(have, expected):
            t, n = (int(v) for v in np.argwhere(have != expected)[0])
            pytest.fail(f"{name}: {int((have != expected).sum())} spike mismatches; first at step {t}, neuron {n}: "
                        f"reference {expected[t, n]}, executor {have[t, n]}")
    fired = sum(int(s.sum()) for n, s in ref.spikes.items() if n not in mapping.network.inputs)
    assert fired > 0, "no neuron spiked: the comparison would be vacuous"
    report = simulate_placement(mapping, result=ref)
    zero = np.zeros(ref.steps)
    for link in set(report.links) | set(got.link_packets):
        want, have = report.links.get(link, zero), got.link_packets.get(link, zero)
        assert np.array_equal(want, have), f"link {link}: placement_sim {want.sum()}, executor {have.sum()} packets"
    check_events(mapping, got, ref, report)
    if multi_chip:
        assert len({s.chip for s in mapping.slices}) > 1
        assert sum(int(v.sum()) for v in got.link_packets.values()) > 0, "no packet crossed a chip link"
    assert got.synaptic_events > 0 and sum(got.lookups.values()) >= got.packets > 0
    return got


def load_corpus(path: Path) -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return neurocc.load(path, convention=convention_of(path))


def corpus_raster(path: Path) -> np.ndarray:
    with np.load(path.with_suffix(".npz")) as data:
        return tiled(np.asarray(data["input"]))


def driven(net: neurocc.Network, gain: float) -> neurocc.Network:
    """random_network's weights (threshold / 20, before the membrane's dt / tau) scaled so its layers spike."""
    for proj in net.projections:
        proj.weights.data *= gain
    return net


def recurrent_delay_net(max_delay: int, seed: int = 2) -> neurocc.Network:
    """Layered random network with delays up to max_delay, plus a delayed recurrent loop p1 -> p0."""
    net = driven(random_network(400, 25, n_populations=2, n_inputs=60, max_delay=max_delay, seed=seed), 8.0)
    rng = np.random.default_rng(seed + 10)
    key = np.unique(rng.integers(0, 200 * 200, 1500))
    delays = rng.integers(0, max_delay + 1, key.size)
    net.projections.append(make_projection("p1", "p0", key // 200, key % 200, rng.normal(0.02, 0.03, key.size),
                                           delays, (200, 200)))
    return net


def nir_conv_delay_net() -> tuple[neurocc.Network, np.ndarray]:
    """A nir graph: Conv2d -> IF -> Delay -> Linear -> LIF, with a delayed recurrent Linear on the LIF."""
    rng = np.random.default_rng(11)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 10, 10])}),
        "conv": nir.Conv2d(input_shape=(10, 10), weight=rng.normal(0.3, 0.6, (4, 2, 3, 3)), stride=1, padding=1,
                           dilation=1, groups=1, bias=np.zeros(4)),
        "if1": nir.IF(r=np.full((4, 10, 10), 1000.0), v_threshold=np.ones((4, 10, 10)),
                      v_reset=np.zeros((4, 10, 10))),
        "flat": nir.Flatten(input_type={"input": np.array([4, 10, 10])}, start_dim=0, end_dim=-1),
        "delay": nir.Delay(delay=np.full(400, 0.021)),
        "fc": nir.Linear(weight=rng.normal(0.02, 0.08, (30, 400))),
        "lif": nir.LIF(tau=np.full(30, 0.02), r=np.ones(30), v_leak=np.zeros(30), v_threshold=np.full(30, 0.3),
                       v_reset=np.zeros(30)),
        "rec_delay": nir.Delay(delay=np.full(30, 0.035)),
        "rec": nir.Linear(weight=rng.normal(0.0, 0.2, (30, 30))),
        "output": nir.Output(output_type={"output": np.array([30])}),
    }
    edges = [("input", "conv"), ("conv", "if1"), ("if1", "flat"), ("flat", "delay"), ("delay", "fc"), ("fc", "lif"),
             ("lif", "rec_delay"), ("rec_delay", "rec"), ("rec", "lif"), ("lif", "output")]
    net = neurocc.load(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=1e-3)
    raster = (rng.random((MIN_STEPS + 20, 2, 10, 10)) < 0.15).astype(np.float32)
    return net, raster


def has_delay_extensions(mapping: Mapping) -> bool:
    return any(s.role == Role.DELAY for s in mapping.slices)


# ---- the corpus on the shipped targets -----------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_corpus_runs_bit_exact(corpus_file: Path, target: str, tmp_path: Path) -> None:
    mapping = compile_network(load_corpus(corpus_file), target, progress=False)
    check(mapping, corpus_raster(corpus_file), tmp_path / "out")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("stem", ["snntorch_conv", "norse_conv_strided", "snntorch_rlif"])
def test_corpus_multi_chip(stem: str, target: str, corpus_dir: Path, tmp_path: Path) -> None:
    """Small cores spread the corpus networks over many chips: packets cross links, routers forward."""
    path = corpus_dir / f"{stem}.nir"
    neurons = 8 if stem.endswith("rlif") else 128
    mapping = compile_network(load_corpus(path), small(target, neurons=neurons, cores=3), progress=False)
    check(mapping, corpus_raster(path), tmp_path / "out", multi_chip=True)


# ---- generated networks: recurrence, conv, delays through delay extensions ---------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_recurrent_network_with_delay_extensions(target: str, tmp_path: Path) -> None:
    tgt = small(target, neurons=40, cores=3, delay_slots=8)
    net = recurrent_delay_net(max_delay=3 * 8 + 5)  # stages 0..3
    mapping = compile_network(net, tgt, progress=False)
    assert has_delay_extensions(mapping)
    raster = (np.random.default_rng(3).random((150, 60)) < 0.25).astype(np.float32)
    check(mapping, raster, tmp_path / "out", multi_chip=True)


@pytest.mark.parametrize("target", TARGETS)
def test_graded_input_counts_travel_as_payload(target: str, tmp_path: Path) -> None:
    """Input counts above 1 (binned events) reach every weight multiplied, through delay extensions too."""
    tgt = small(target, neurons=64, cores=4, delay_slots=4)
    net = driven(random_network(300, 20, n_populations=2, n_inputs=50, max_delay=11, seed=4), 6.0)
    mapping = compile_network(net, tgt, progress=False)
    assert has_delay_extensions(mapping)
    raster = np.random.default_rng(5).poisson(0.4, (120, 50)).astype(np.float32)
    assert raster.max() >= 3
    check(mapping, raster, tmp_path / "out", multi_chip=True)


@pytest.mark.parametrize("target", TARGETS)
def test_shd_delay_network(target: str, tmp_path: Path) -> None:
    """The SHD delay classifier (106,496 synapses, delays 0..24 steps at dt = 10 ms), over 8-slot cores."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(shd_delay_graph(), dt=0.01)
    mapping = compile_network(net, small(target, neurons=64, cores=6, delay_slots=8), progress=False)
    assert has_delay_extensions(mapping) and mapping.network.n_synapses >= 100_000
    raster = (np.random.default_rng(6).random((MIN_STEPS, 140)) < 0.08).astype(np.float32)
    got = check(mapping, raster, tmp_path / "out", multi_chip=True)
    assert got.wall_s < 10


@pytest.mark.parametrize("target", TARGETS)
def test_nir_conv_with_delays(target: str, tmp_path: Path) -> None:
    net, raster = nir_conv_delay_net()
    mapping = compile_network(net, small(target, neurons=48, cores=3, delay_slots=16), progress=False)
    assert has_delay_extensions(mapping)
    check(mapping, raster, tmp_path / "out", multi_chip=True)


@pytest.mark.parametrize("target", TARGETS)
def test_synthetic_graphs(synthetic_name: str, target: str, tmp_path: Path) -> None:
    """conftest's graphs: every neuron kind, Conv1d/Conv2d/pools, Delay nodes, recurrence, nesting."""
    graph, kwargs, raster = SYNTHETIC[synthetic_name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(graph, **kwargs)
    mapping = compile_network(net, small(target, neurons=4, cores=4, delay_slots=4), progress=False)
    check(mapping, tiled(raster), tmp_path / "out", multi_chip=True)


def test_compressed_tables_still_route_exactly(tmp_path: Path) -> None:
    """A router limit below the generated table sizes forces pair compression; spikes are unchanged."""
    net = driven(random_network(600, 30, n_populations=3, n_inputs=80, max_delay=5, seed=1), 6.0)
    base = compile_network(net, small("spinnaker1", neurons=16, cores=6, chips=6, delay_slots=4), progress=False)
    largest = max(len(t) for t in base.routing.tables.values())
    mapping = compile_network(net, small("spinnaker1", neurons=16, cores=6, chips=6, delay_slots=4,
                                         entries=largest - 12), progress=False)
    routing = mapping.routing
    assert routing.entries_after() < routing.entries_before()
    raster = (np.random.default_rng(0).random((120, 80)) < 0.2).astype(np.float32)
    check(mapping, raster, tmp_path / "out", multi_chip=True)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert all(t["entries"] <= t["limit"] for t in manifest["routing_tables"])
    assert manifest["routing_entries"]["after_compression"] == routing.entries_after()


# ---- the manifest and the atomic write ----------------------------------------------------------------

@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Mapping, Path, np.ndarray]:
    """One multi-chip output with every kind of file (sources, neurons, delay extensions, routing)."""
    mapping = compile_network(recurrent_delay_net(max_delay=13), small("spinnaker1", neurons=40, cores=3,
                                                                       delay_slots=8), progress=False)
    out = tmp_path_factory.mktemp("spinnaker") / "out"
    emit(mapping, out)
    raster = (np.random.default_rng(3).random((MIN_STEPS, 60)) < 0.25).astype(np.float32)
    return mapping, out, raster


def test_manifest_accounts_for_every_file_and_budget(emitted) -> None:
    mapping, out, _ = emitted
    manifest = json.loads((out / "manifest.json").read_text())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    listed = {f["path"] for f in manifest["files"]}
    assert on_disk == listed | {"manifest.json", NETWORK_FILE}
    for f in manifest["files"]:
        data = (out / f["path"]).read_bytes()
        assert (len(data), zlib.crc32(data)) == (f["bytes"], f["crc32"])
    kinds = {f["kind"] for f in manifest["files"]}
    assert kinds == {"machine", "routing", "neurons", "poptable", "synapses", "delay", "source"}
    assert len(manifest["core_memory"]) == len(mapping.slices)
    for core in manifest["core_memory"]:
        assert core["over_budget"] == []
        assert 0 < core["dtcm_bytes"] <= core["dtcm_budget_bytes"]
        assert core["synaptic_matrix_bytes"] <= core["synapse_memory_budget_bytes"]
    storage = manifest["synapse_storage"]
    assert storage["synapses"] == mapping.network.n_synapses
    assert 4.0 <= storage["bytes_per_synapse"] < 16.0  # one 32-bit word per synapse plus row pointers
    assert manifest["populations"].keys() == mapping.network.populations.keys()  # mapping.summary() is in it
    inet = load_int_network(out / NETWORK_FILE)
    assert [p.n_synapses for p in inet.projections] == [p.n_synapses for p in mapping.network.projections]


def test_emit_replaces_atomically(emitted, tmp_path: Path) -> None:
    mapping, out, _ = emitted
    target = tmp_path / "out"
    emit(mapping, target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    broken = Mapping(mapping.target, mapping.network, mapping.slices)  # no routing: emit must fail
    with pytest.raises(ArtifactError, match="no routing tables"):
        emit(broken, target)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before  # previous output intact
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directory left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ArtifactError, match="not a neurocc output"):
        emit(mapping, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_emit_rejects_a_loihi_mapping(tmp_path: Path) -> None:
    mapping = compile_network(random_network(50, 5, n_populations=1, n_inputs=10), "loihi2", progress=False)
    with pytest.raises(TargetError, match="spinnaker"):
        emit(mapping, tmp_path / "out")


# ---- corrupt files ------------------------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _first_of_kind(out: Path, kind: str) -> str:
    manifest = json.loads((out / "manifest.json").read_text())
    return next(f["path"] for f in manifest["files"] if f["kind"] == kind)


def _rewrite_payload(out: Path, rel: str, payload: bytes) -> None:
    """Replace a file's payload with a valid header and manifest entry: a consistent but wrong emitter."""
    path = out / rel
    head = bytearray(path.read_bytes()[:HEADER_BYTES])
    struct.pack_into("<II", head, 8, len(payload), zlib.crc32(payload))
    data = bytes(head) + payload
    path.write_bytes(data)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for f in manifest["files"]:
        if f["path"] == rel:
            f["bytes"], f["crc32"] = len(data), zlib.crc32(data)
    manifest_path.write_text(json.dumps(manifest))


KINDS = ["machine", "routing", "neurons", "poptable", "synapses", "delay", "source"]


@pytest.mark.parametrize("kind", KINDS)
def test_flipped_payload_byte_fails_the_crc(emitted, kind: str, tmp_path: Path) -> None:
    _, out, raster = emitted
    bad = _copy(out, tmp_path / "bad")
    rel = _first_of_kind(bad, kind)
    data = bytearray((bad / rel).read_bytes())
    data[HEADER_BYTES + (len(data) - HEADER_BYTES) // 2] ^= 0x40
    (bad / rel).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset 12: CRC32 0x[0-9a-f]{{8}}, expected 0x"):
        run(bad, raster)


@pytest.mark.parametrize("kind", KINDS)
def test_flipped_magic_and_truncation_are_named(emitted, kind: str, tmp_path: Path) -> None:
    _, out, raster = emitted
    bad = _copy(out, tmp_path / "magic")
    rel = _first_of_kind(bad, kind)
    data = bytearray((bad / rel).read_bytes())
    data[1] ^= 0x01
    (bad / rel).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset 0: magic .*, expected b'NC"):
        run(bad, raster)
    cut = _copy(out, tmp_path / "cut")
    whole = (cut / rel).read_bytes()
    (cut / rel).write_bytes(whole[:-3])
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset 8: payload length {len(whole) - HEADER_BYTES}, "
                                            rf"expected {len(whole) - HEADER_BYTES - 3}"):
        run(cut, raster)
    (cut / rel).write_bytes(whole[:10])
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset 10: truncated: the header needs 16 bytes"):
        run(cut, raster)


def test_replaced_file_disagrees_with_the_manifest(emitted, tmp_path: Path) -> None:
    _, out, raster = emitted
    bad = _copy(out, tmp_path / "bad")
    rel = _first_of_kind(bad, "neurons")
    other = [f for f in bad.rglob("neurons.bin") if f.relative_to(bad).as_posix() != rel][0]
    (bad / rel).write_bytes(other.read_bytes())  # a valid file, but not this core's
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset 0: .* as manifest.json records"):
        run(bad, raster)


def test_row_outside_the_matrix_is_named(emitted, tmp_path: Path) -> None:
    _, out, raster = emitted
    bad = _copy(out, tmp_path / "bad")
    rel = next(f.relative_to(bad).as_posix() for f in sorted(bad.rglob("synapses.bin"))
               if struct.unpack_from("<I", f.read_bytes(), HEADER_BYTES + 20)[0] > 0)
    payload = bytearray((bad / rel).read_bytes()[HEADER_BYTES:])
    n_types, n_rows, n_words = struct.unpack_from("<HII", payload, 14)
    ptr_at = 24 + 4 * n_types
    struct.pack_into("<I", payload, ptr_at + 4, n_words + 7)  # row 0 ends past the last word
    _rewrite_payload(bad, rel, bytes(payload))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset {HEADER_BYTES + ptr_at + 4}: row 0 spans words "
                                            rf"\[0, {n_words + 7}\), outside the matrix of {n_words} words"):
        run(bad, raster)
    # An address-list entry whose rows run past the matrix.
    bad2 = _copy(out, tmp_path / "bad2")
    rel = next(f.relative_to(bad2).as_posix() for f in sorted(bad2.rglob("poptable.bin"))
               if struct.unpack_from("<I", f.read_bytes(), HEADER_BYTES + 12)[0] > 0)
    payload = bytearray((bad2 / rel).read_bytes()[HEADER_BYTES:])
    n_entries, n_addr = struct.unpack_from("<II", payload, 8)
    addr_at = 16 + 12 * n_entries
    struct.pack_into("<I", payload, addr_at, 1 << 20)
    _rewrite_payload(bad2, rel, bytes(payload))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset {HEADER_BYTES + addr_at}: address entry 0 points "
                                            r"at rows \[1048576, .*outside the synaptic matrix"):
        run(bad2, raster)


def test_key_no_table_matches_is_named(emitted, tmp_path: Path) -> None:
    mapping, out, raster = emitted
    # A router with its entries removed: a local core's packet has nowhere to go.
    bad = _copy(out, tmp_path / "router")
    source_chip = next(s.chip for s in mapping.slices if s.role == "source")
    rel = f"chips/{source_chip[0]}_{source_chip[1]}/routing.bin"
    payload = bytearray((bad / rel).read_bytes()[HEADER_BYTES:16 + HEADER_BYTES])
    struct.pack_into("<I", payload, 8, 0)
    _rewrite_payload(bad, rel, bytes(payload))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset {HEADER_BYTES + 16}: key 0x[0-9a-f]{{8}} from a "
                                            "local core matches none of the chip's 0 entries"):
        run(bad, raster)
    # A master population table that lost its entries: the delivered packet has no row.
    bad = _copy(out, tmp_path / "poptable")
    rel = next(f.relative_to(bad).as_posix() for f in sorted(bad.rglob("poptable.bin"))
               if struct.unpack_from("<I", f.read_bytes(), HEADER_BYTES + 8)[0] > 0)
    payload = bytearray((bad / rel).read_bytes()[HEADER_BYTES:])
    struct.pack_into("<I", payload, 8, 0)
    n_addr = struct.unpack_from("<I", payload, 12)[0]
    entries_end = len(payload) - 8 * n_addr
    _rewrite_payload(bad, rel, bytes(payload[:16]) + bytes(payload[entries_end:]))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset {HEADER_BYTES + 16}: key 0x[0-9a-f]{{8}} matches "
                                            "none of the 0 master population table entries"):
        run(bad, raster)


def test_unsorted_master_population_table_is_named(emitted, tmp_path: Path) -> None:
    _, out, raster = emitted
    bad = _copy(out, tmp_path / "bad")
    rel = next(f.relative_to(bad).as_posix() for f in sorted(bad.rglob("poptable.bin"))
               if struct.unpack_from("<I", f.read_bytes(), HEADER_BYTES + 8)[0] > 1)
    payload = bytearray((bad / rel).read_bytes()[HEADER_BYTES:])
    first, second = bytes(payload[16:28]), bytes(payload[28:40])
    payload[16:28], payload[28:40] = second, first
    _rewrite_payload(bad, rel, bytes(payload))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset {HEADER_BYTES + 28}: entry 1 key .* expected keys "
                                            "in ascending order"):
        run(bad, raster)


# ---- the format's widths travel in every neurons file (format version 2) -------------------------------------

NARROW = {"decay_bits": 10, "threshold_shift": 4, "threshold_bits": 14}


def test_changed_widths_bit_exact(tmp_path: Path) -> None:
    """A user's SpiNNaker target with decay_bits 10, threshold_bits 14, threshold_shift 4: the tables carry the
    widths, and the executor equals simulate_int under them, spike for spike; the same integer network under
    Loihi's widths spikes differently, so ignoring the file's widths cannot pass."""
    net = recurrent_delay_net(max_delay=13)
    mapping = compile_network(net, str(target_toml_with("spinnaker2", tmp_path / "narrow.toml", **NARROW)),
                              progress=False)
    fmt = mapping.network.format
    assert (fmt.decay_bits, fmt.threshold_shift, fmt.threshold_bits) == (10, 4, 14)
    raster = (np.random.default_rng(3).random((MIN_STEPS, 60)) < 0.25).astype(np.float32)
    out = tmp_path / "out"
    emit(mapping, out)
    neurons = (out / _first_of_kind(out, "neurons")).read_bytes()
    name_bytes = struct.unpack_from("<H", neurons, HEADER_BYTES + 6)[0]  # chip x, y, core, then u16 length + name
    record = HEADER_BYTES + -(-(8 + name_bytes) // 4) * 4
    assert neurons[record + 21:record + 25] == bytes([10, fmt.state_bits, fmt.activation_shift, 4])
    got = run(out, raster)
    ref = simulate_int(mapping.network, raster, record=False)
    lifs = [n for n, p in mapping.network.populations.items() if p.kind != "input"]
    for name in lifs:
        diff = np.argwhere(got.spikes[name] != ref.spikes[name])
        assert not diff.size, f"{name}: first divergence at step {diff[0][0]}, neuron {diff[0][1]}"
        assert ref.spikes[name].sum() > 20, f"{name}: too few spikes for a test"
    loihi = dataclasses.replace(mapping.network, format=dataclasses.replace(fmt, decay_bits=12, threshold_shift=6))
    other = simulate_int(loihi, raster, record=False)
    assert any((other.spikes[n] != got.spikes[n]).any() for n in lifs)


@pytest.mark.parametrize(("version", "lacks"), [(1, "neurons.bin without decay_bits"), (2, "no conv.bin")])
def test_older_tables_are_refused_by_name(emitted, version: int, lacks: str, tmp_path: Path) -> None:
    """Tables of format version 1 (neurons.bin without the widths) or 2 (conv projections as rows) are refused,
    naming the file, the version found and expected, and saying to compile again."""
    _, out, raster = emitted
    old = _copy(out, tmp_path / "old")
    rel = _first_of_kind(old, "neurons")
    data = bytearray((old / rel).read_bytes())
    struct.pack_into("<H", data, 4, version)
    (old / rel).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset 4: format version {version} \(.*{lacks}.*\), "
                                            r"expected 3\. Fix: compile again"):
        run(old, raster)


@pytest.mark.parametrize(("key", "value", "bounds"), [("decay_bits", 25, "1..24"), ("threshold_shift", 17, "0..16"),
                                                      ("bias_exp_max", 128, "1..127")])
def test_widths_the_tables_cannot_carry_are_refused_at_emit(emitted, key: str, value: int, bounds: str,
                                                            tmp_path: Path) -> None:
    """A format outside what neurons.bin holds or the executor steps exactly (a Target built in code skips the
    TOML's checks) is refused by key, limit and fix, before any file is written."""
    mapping = emitted[0]
    fmt = dataclasses.replace(mapping.network.format, **{key: value})
    bad = dataclasses.replace(mapping, network=dataclasses.replace(mapping.network, format=fmt))
    with pytest.raises(TargetError, match=rf"'format\.{key}' = {value} is outside {bounds}, .*Fix: set \[format\] "
                                          rf"{key} to a value in {bounds}"):
        emit(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
