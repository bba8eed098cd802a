"""SpiNNaker conv tables (conv.bin): conv projections run from a shape header and a kernel stored once per
core, bit-exact with simulate_int, on the N-MNIST CNN, every corpus conv net and the geometry cases (groups,
dilation, stride, Conv1d, pools); conv and dense projections into one core; corrupt or old tables refused.

The reference simulator is the oracle; the executor reads only the emitted files. Runs are short (T = 16).
"""

from __future__ import annotations

import dataclasses
import json
import struct
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest

import neurocc
from neurocc.backends.spinnaker import emit
from neurocc.backends.spinnaker.format import HEADER_BYTES
from neurocc.compiler.errors import ArtifactError
from neurocc.compiler.ir import Mapping, Role, make_projection
from neurocc.compiler.pipeline import compile_network
from neurocc.runtime.executors.spinnaker import ExecResult, load, run
from neurocc.runtime.placement_sim import simulate_placement
from neurocc.runtime.simulator import simulate_int
from neurocc.workloads import nmnist_cnn_graph

from .conftest import CORPUS_DIR, convention_of
from .test_spinnaker import _copy, _rewrite_payload, check_events, small

TARGETS = ("spinnaker1", "spinnaker2")
STEPS = 16
CONV_CORPUS = sorted(CORPUS_DIR.glob("*conv*.nir"))
RECORD = 12  # payload offset of the first record in conv.bin (core id, padding, record count)


# ---- helpers ------------------------------------------------------------------------------------------

def check(mapping: Mapping, raster: np.ndarray, out: Path) -> ExecResult:
    """Emit, run the tables, compare spikes with simulate_int every step; events per core with the count the
    arithmetic implies, and with the placement simulator's."""
    emit(mapping, out)
    got = run(out, raster)
    ref = simulate_int(mapping.network, raster, record=False)
    assert got.steps == ref.steps == raster.shape[0]
    for name, want in ref.spikes.items():
        have = got.spikes[name]
        if not np.array_equal(have, want):
            t, n = (int(v) for v in np.argwhere(have != want)[0])
            pytest.fail(f"{name}: {int((have != want).sum())} spike mismatches; first at step {t}, neuron {n}")
    fired = sum(int(v.sum()) for n, v in ref.spikes.items() if n not in mapping.network.inputs)
    assert fired > 0, "no neuron spiked: the comparison would be vacuous"
    check_events(mapping, got, ref, simulate_placement(mapping, result=ref))
    return got


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def conv_files(out: Path) -> list[str]:
    return [f["path"] for f in manifest(out)["files"] if f["kind"] == "conv"]


def quiet_load(graph: nir.NIRGraph | Path, **kw: object) -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return neurocc.load(graph, **kw)


def if_node(shape: tuple[int, ...], threshold: float = 1.0) -> nir.IF:
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, threshold), v_reset=np.zeros(shape))


def chain(nodes: dict[str, nir.NIRNode]) -> nir.NIRGraph:
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)), type_check=False)


def raster_for(shape: tuple[int, ...], rate: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((STEPS, *shape)) < rate).astype(np.float32)


# ---- the N-MNIST CNN ----------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=TARGETS)
def cnn(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[Mapping, Path, np.ndarray, ExecResult]:
    net = quiet_load(nmnist_cnn_graph(seed=0), dt=1.0, discretization="exp")
    mapping = compile_network(net, request.param, progress=False)
    raster = raster_for((2, 34, 34), 0.1, seed=1)
    out = tmp_path_factory.mktemp(f"cnn_{request.param}") / "out"
    return mapping, out, raster, check(mapping, raster, out)


def test_cnn_bit_exact_from_conv_tables(cnn) -> None:
    """Every conv projection of the CNN reaches its cores as conv.bin records, not rows; the kernel each core
    stores is the one of its own output channels."""
    mapping, out, _, got = cnn
    convs = [p for p in mapping.network.projections if p.conv is not None]
    assert len(convs) >= 3
    m = manifest(out)
    conv_cores = [c for c in m["core_memory"] if "conv_records" in c]
    conv_posts = {p.post for p in convs}
    assert {c["slice"].split("[")[0] for c in conv_cores} == conv_posts
    dense = sum(p.weights.nnz for p in mapping.network.projections if p.conv is None)
    assert m["synapse_storage"]["synapses"] == dense, "conv projections must get no synaptic-matrix rows"
    by_label = {s.label: s for s in mapping.slices}
    for core in conv_cores:
        s = by_label[core["slice"]]
        want = 0
        for p in mapping.network.incoming(s.population):
            if p.conv is not None:
                plane = p.conv.out_shape[1] * p.conv.out_shape[2]
                n_channels = -(-s.stop // plane) - s.start // plane
                want += n_channels * int(np.prod(p.conv.kernel.shape[1:]))
        assert core["conv_kernel_weights"] == want, core["slice"]
    assert sum(got.events.values()) == got.synaptic_events
    # Budgets: the kernel of if4 (pool + Flatten + Linear as one conv, 256 x 8 x 4 x 4 int16 = 64 KiB) is copied
    # into DTCM and fills SpiNNaker1's 64 KiB alone; partition budgets kernels against synapse memory, not DTCM
    # (noted for the lead). Nothing else may be over.
    over = {c["slice"]: c["over_budget"] for c in m["core_memory"] if c["over_budget"]}
    if mapping.target.name == "spinnaker2":
        assert not over, over
    assert all(v == ["dtcm"] and k.startswith("if4") for k, v in over.items()), over


def test_cnn_conv_bytes_per_connection_vs_rows(cnn, tmp_path: Path) -> None:
    """The same mapping with its convs unrolled into rows (the cross-check): the same spikes, and the conv
    tables take a small fraction of the rows' bytes per connection."""
    mapping, out, raster, got = cnn
    rows = dataclasses.replace(mapping, network=dataclasses.replace(mapping.network, projections=[
        dataclasses.replace(p, conv=None) for p in mapping.network.projections]))
    emit(rows, tmp_path / "rows")
    assert not conv_files(tmp_path / "rows")
    unrolled = run(tmp_path / "rows", raster)
    for name, spikes in got.spikes.items():
        assert np.array_equal(spikes, unrolled.spikes[name]), name
    conv_store = manifest(out)["synapse_storage"]
    row_store = manifest(tmp_path / "rows")["synapse_storage"]
    assert conv_store["conv_connections"] + conv_store["synapses"] == row_store["synapses"]
    row_bytes = row_store["synapses_bytes"] + row_store["poptable_bytes"]
    conv_bytes = conv_store["conv_bytes"] + conv_store["synapses_bytes"] + conv_store["poptable_bytes"]
    assert row_bytes / row_store["synapses"] > 4  # a 32-bit word per synapse, plus row pointers
    assert conv_store["conv_bytes_per_connection"] < 0.1
    assert conv_bytes * 5 < row_bytes


# ---- the corpus conv nets -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("path", CONV_CORPUS or [CORPUS_DIR / "no_conv_net.nir"], ids=lambda p: p.stem)
def test_corpus_conv_nets_bit_exact(path: Path, target: str, tmp_path: Path) -> None:
    assert path.is_file(), f"no conv nets (*conv*.nir) in {CORPUS_DIR}"
    net = quiet_load(path, convention=convention_of(path))
    mapping = compile_network(net, target, progress=False)
    assert any(p.conv is not None for p in mapping.network.projections)
    with np.load(path.with_suffix(".npz")) as data:
        recorded = np.asarray(data["input"])
    raster = np.concatenate([recorded] * -(-STEPS // recorded.shape[0]))[:STEPS]
    check(mapping, raster, tmp_path / "out")
    assert conv_files(tmp_path / "out")


# ---- geometry: groups, dilation, stride, Conv1d, pools, cores cut through channels -------------------

def _conv2d(rng: np.random.Generator, c_out: int, c_in_g: int, k: tuple[int, int], hw: tuple[int, int],
            stride: object = 1, padding: object = 0, dilation: object = 1, groups: int = 1) -> nir.Conv2d:
    return nir.Conv2d(input_shape=hw, weight=rng.normal(0.35, 0.5, (c_out, c_in_g, *k)), stride=stride,
                      padding=padding, dilation=dilation, groups=groups, bias=np.zeros(c_out))


def _pool(kind: type, k: int, stride: int, padding: int = 0) -> nir.NIRNode:
    return kind(kernel_size=np.array([k, k]), stride=np.array([stride, stride]), padding=np.array([padding] * 2))


def geometry_graph(case: str) -> tuple[nir.NIRGraph, tuple[int, ...]]:
    rng = np.random.default_rng(7)
    if case == "groups_dilation":
        nodes = {"input": nir.Input(input_type={"input": np.array([4, 9, 9])}),
                 "conv": _conv2d(rng, 6, 2, (3, 3), (9, 9), padding=2, dilation=2, groups=2),
                 "if1": if_node((6, 9, 9)), "output": nir.Output(output_type={"output": np.array([6, 9, 9])})}
        return chain(nodes), (4, 9, 9)
    if case == "stride_asymmetric":
        nodes = {"input": nir.Input(input_type={"input": np.array([2, 11, 10])}),
                 "conv": _conv2d(rng, 3, 2, (3, 2), (11, 10), stride=(3, 2), padding=(1, 0)),
                 "if1": if_node((3, 4, 5)), "output": nir.Output(output_type={"output": np.array([3, 4, 5])})}
        return chain(nodes), (2, 11, 10)
    if case == "conv1d":
        nodes = {"input": nir.Input(input_type={"input": np.array([3, 20])}),
                 "conv": nir.Conv1d(input_shape=20, weight=rng.normal(0.35, 0.5, (4, 3, 5)), stride=2, padding=2,
                                    dilation=1, groups=1, bias=np.zeros(4)),
                 "if1": if_node((4, 10)), "output": nir.Output(output_type={"output": np.array([4, 10])})}
        return chain(nodes), (3, 20)
    if case == "pools":  # a depthwise pool alone, a pool prefix before a conv, an AvgPool before Flatten -> Linear
        nodes = {"input": nir.Input(input_type={"input": np.array([2, 12, 12])}),
                 "conv1": _conv2d(rng, 4, 2, (3, 3), (12, 12), padding=1), "if1": if_node((4, 12, 12)),
                 "pool1": _pool(nir.SumPool2d, 3, 2, 1), "if2": if_node((4, 6, 6), 0.5),
                 "pool2": _pool(nir.SumPool2d, 2, 2), "conv2": _conv2d(rng, 4, 4, (3, 3), (3, 3), padding=1),
                 "if3": if_node((4, 3, 3)), "pool3": _pool(nir.AvgPool2d, 3, 3),
                 "flat": nir.Flatten(input_type={"input": np.array([4, 1, 1])}, start_dim=0, end_dim=-1),
                 "fc": nir.Linear(weight=rng.normal(1.0, 1.0, (5, 4))), "if4": if_node((5,), 0.3),
                 "output": nir.Output(output_type={"output": np.array([5])})}
        return chain(nodes), (2, 12, 12)
    raise ValueError(case)


@pytest.mark.parametrize(("case", "neurons"), [("groups_dilation", 40), ("stride_asymmetric", 16), ("conv1d", 8),
                                               ("pools", 40)])
def test_geometry_bit_exact_on_cores_cut_through_channels(case: str, neurons: int, tmp_path: Path) -> None:
    """Cores smaller than a channel's plane cut conv outputs through channels and rows."""
    graph, in_shape = geometry_graph(case)
    net = quiet_load(graph, dt=1.0)
    mapping = compile_network(net, small("spinnaker1", neurons=neurons, cores=4, chips=4), progress=False)
    convs = [p.conv for p in mapping.network.projections if p.conv is not None]
    assert convs, "the frontend made no conv projection"
    if case == "pools":
        assert any(c.pool is not None for c in convs), "expected a pool prefix"
        assert any(c.groups > 1 and c.pool is None for c in convs), "expected a depthwise pool"
    planes = {p.post: p.conv.out_shape[1] * p.conv.out_shape[2] for p in mapping.network.projections if p.conv}
    assert any(s.start % planes[s.population] or s.stop % planes[s.population]
               for s in mapping.slices if s.population in planes), "no core cuts through a channel"
    check(mapping, raster_for(in_shape, 0.3), tmp_path / "out")


# ---- conv and dense into one core (sPyNNaker #1224 cannot) -------------------------------------------

@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Mapping, Path, np.ndarray]:
    """input -> conv -> if1, plus a dense input -> if1 (the same source as the conv) and a delayed recurrent
    dense if1 -> if1: every if1 core gets conv records and rows, and the input's keys hit both."""
    rng = np.random.default_rng(5)
    nodes = {"input": nir.Input(input_type={"input": np.array([2, 8, 8])}),
             "conv": _conv2d(rng, 3, 2, (3, 3), (8, 8), padding=1), "if1": if_node((3, 8, 8), 1.5),
             "output": nir.Output(output_type={"output": np.array([3, 8, 8])})}
    net = quiet_load(chain(nodes), dt=1.0)
    n_in, n = 2 * 8 * 8, 3 * 8 * 8
    key = np.unique(rng.integers(0, n * n_in, 600))
    net.projections.append(make_projection("input", "if1", key // n_in, key % n_in, rng.normal(0.2, 0.3, key.size),
                                           np.zeros(key.size, np.int64), (n, n_in)))
    key = np.unique(rng.integers(0, n * n, 800))
    net.projections.append(make_projection("if1", "if1", key // n, key % n, rng.normal(0.0, 0.4, key.size),
                                           rng.integers(0, 12, key.size), (n, n)))
    mapping = compile_network(net, small("spinnaker1", neurons=64, cores=3, chips=4, delay_slots=8), progress=False)
    out = tmp_path_factory.mktemp("mixed") / "out"
    raster = raster_for((2, 8, 8), 0.25, seed=2)
    check(mapping, raster, out)
    return mapping, out, raster


def test_conv_and_dense_projections_share_a_core(mixed) -> None:
    mapping, out, _ = mixed
    kinds = {p.conv is not None for p in mapping.network.incoming("if1")}
    assert kinds == {True, False}
    cores = [c for c in manifest(out)["core_memory"] if c["slice"].startswith("if1")]
    assert len(cores) > 1 and all(c["conv_records"] == 1 and c["synapses"] > 0 for c in cores)
    machine = load(out)
    for cid, records in machine.convs.items():  # the input's key block: in the conv sources and the poptable
        _, pt, _ = machine.neurons[cid]
        assert set(records[0].src_key.tolist()) & set(pt.keys.tolist()), cid
    assert any(s.role == Role.DELAY for s in mapping.slices), "the recurrent delays should need a delay extension"


# ---- refused tables -----------------------------------------------------------------------------------

def _conv_payload(out: Path) -> tuple[str, bytearray]:
    rel = conv_files(out)[0]
    return rel, bytearray((out / rel).read_bytes()[HEADER_BYTES:])


def test_version_2_conv_table_is_refused_by_name(mixed, tmp_path: Path) -> None:
    _, out, raster = mixed
    old = _copy(out, tmp_path / "old")
    rel = conv_files(old)[0]
    data = bytearray((old / rel).read_bytes())
    struct.pack_into("<H", data, 4, 2)
    (old / rel).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset 4: format version 2 \(conv projections as "
                                            r"synaptic rows, no conv\.bin\), expected 3\. Fix: compile again"):
        run(old, raster)


def test_flipped_conv_byte_fails_the_crc(mixed, tmp_path: Path) -> None:
    _, out, raster = mixed
    bad = _copy(out, tmp_path / "bad")
    rel = conv_files(bad)[0]
    data = bytearray((bad / rel).read_bytes())
    data[-3] ^= 0x10  # a kernel byte
    (bad / rel).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset 12: CRC32"):
        run(bad, raster)


# (payload offset in the first record, struct format, value, what the message says); file offset = 16 + payload
CORRUPT = {
    "groups": (RECORD + 56, "<H", 2, r"groups 2 does not divide C_in 2 and C_out 3"),
    "channels": (RECORD + 60, "<H", 3, r"stored channels \[0, 3\), expected \[0, 1\)"),
    "slice": (RECORD + 8, "<I", 150, r"out_start \[0, 150\), expected this core's neurons \[0, 64\)"),
    "mode": (RECORD + 63, "<B", 7, r"mode 7, expected one of \[0, 1, 2\]"),
    "source": (RECORD + 68 + 12, "<I", 1000, r"source 0 key .* for 1000 neurons, expected key & ~mask == 0"),
    "pool": (RECORD + 20, "<H", 2, r"pool fields set .* with pool kh 0, expected no pool"),
}


@pytest.mark.parametrize("what", list(CORRUPT))
def test_inconsistent_conv_record_is_named(mixed, what: str, tmp_path: Path) -> None:
    """A conv.bin with a valid header and CRC but an impossible record: refused at load, naming the file, the
    byte offset of the field and what was expected."""
    _, out, raster = mixed
    bad = _copy(out, tmp_path / "bad")
    rel, payload = _conv_payload(bad)
    offset, fmt, value, message = CORRUPT[what]
    struct.pack_into(fmt, payload, offset, value)
    _rewrite_payload(bad, rel, bytes(payload))
    field = {"source": RECORD + 68, "channels": RECORD + 58, "slice": RECORD + 4}.get(what, offset)
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset {HEADER_BYTES + field}: .*{message}.*Fix: "):
        run(bad, raster)


def test_truncated_kernel_is_named(mixed, tmp_path: Path) -> None:
    _, out, raster = mixed
    bad = _copy(out, tmp_path / "bad")
    rel, payload = _conv_payload(bad)
    _rewrite_payload(bad, rel, bytes(payload[:-8]))
    with pytest.raises(ArtifactError, match=rf"{rel}: byte offset \d+: truncated: kernel"):
        run(bad, raster)


def test_missing_conv_table_is_named(cnn, tmp_path: Path) -> None:
    """Without its conv.bin a conv-only core has nothing that listens to the keys the routers deliver."""
    _, out, raster, _ = cnn
    bad = _copy(out, tmp_path / "bad")
    m = manifest(bad)
    rel = conv_files(bad)[0]
    (bad / rel).unlink()
    m["files"] = [f for f in m["files"] if f["path"] != rel]
    (bad / "manifest.json").write_text(json.dumps(m))
    core = rel.rsplit("/", 1)[0]
    with pytest.raises(ArtifactError, match=rf"{core}/poptable\.bin: .*matches none of the \d+ master population "
                                            "table entries; expected"):
        run(bad, raster)


def test_conv_with_delays_is_refused_at_emit(mixed, tmp_path: Path) -> None:
    mapping = mixed[0]
    projections = [dataclasses.replace(p, delays=np.ones_like(p.delays)) if p.conv is not None else p
                   for p in mapping.network.projections]
    bad = dataclasses.replace(mapping, network=dataclasses.replace(mapping.network, projections=projections))
    with pytest.raises(ArtifactError, match=r"conv projection 'input' -> 'if1' .* has synaptic delays up to 1; a "
                                            "conv table delivers every spike one step later"):
        emit(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
