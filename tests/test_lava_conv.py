"""Conv projections in Lava: one `lava.proc.conv` Conv process each, bit-exact with simulate_int through
`neurocc verify` (Loihi2SimCfg fixed_pt), on the N-MNIST CNN and every corpus conv net; the layout and
regrouping against Lava's own conv function; and the errors emit and run_lava.py raise by name.

Short runs (16-20 steps) and one compiled, emitted program per (network, target, emit options).
No mocks and no skips: Lava is the oracle. A missing lava-nc fails this module at import.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np
import pytest
from lava.proc.conv import utils as lava_conv_utils  # a missing lava must fail, never skip

import neurocc
from neurocc.backends.lava import emit
from neurocc.backends.lava.conv import (
    LavaConvExponentError,
    LavaConvOverflowError,
    lava_conv,
    lava_groups,
    regroup,
)
from neurocc.compiler.errors import ArtifactError
from neurocc.compiler.ir import Mapping
from neurocc.compiler.ir.conv import Conv, conv_output_size
from neurocc.compiler.pipeline import compile_network
from neurocc.runtime.executors.lava import run
from neurocc.workloads import nmnist_cnn_graph

from .conftest import CORPUS_FILES, convention_of

CONV_CORPUS = [f for f in CORPUS_FILES if "conv" in f.stem]
STEPS = 16
ONE_POSITION = "one output position"


def _nmnist() -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neurocc.NeuroccWarning)
        return neurocc.load(nmnist_cnn_graph(seed=0), dt=1.0, discretization="exp")


def _corpus(path: Path) -> Callable[[], neurocc.Network]:
    def load() -> neurocc.Network:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return neurocc.load(path, convention=convention_of(path))
    return load


def _lif(shape: tuple[int, ...], thr: float = 0.2) -> nir.LIF:
    return nir.LIF(tau=np.full(shape, 0.02), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))


def _geometry() -> neurocc.Network:
    """A grouped, dilated, stride-2 Conv2d; a SumPool2d straight after a population (its own depthwise conv);
    a 'same' conv of an even kernel (asymmetric padding: emitted unrolled); a Conv1d on a second input."""
    rng = np.random.default_rng(12)
    one = np.array([1, 1])
    nodes: dict[str, nir.NIRNode] = {
        "img": nir.Input(input_type={"input": np.array([4, 12, 12])}),
        "conv_a": nir.Conv2d(input_shape=np.array([12, 12]), weight=rng.normal(0.2, 0.5, (6, 2, 3, 3)),
                             stride=np.array([2, 2]), padding=np.array([2, 2]), dilation=np.array([2, 2]), groups=2,
                             bias=np.zeros(6)),
        "a": _lif((6, 6, 6)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "b": _lif((6, 3, 3), thr=0.3),
        "conv_same": nir.Conv2d(input_shape=np.array([6, 6]), weight=rng.normal(0.2, 0.5, (4, 6, 2, 2)),
                                stride=one, padding="same", dilation=one, groups=1, bias=np.zeros(4)),
        "c": _lif((4, 6, 6)),
        "seq": nir.Input(input_type={"input": np.array([2, 16])}),
        "conv1d": nir.Conv1d(input_shape=16, weight=rng.normal(0.3, 0.5, (4, 2, 3)), stride=2, padding=1,
                             dilation=1, groups=1, bias=np.zeros(4)),
        "d": _lif((4, 8)),
        "out_b": nir.Output(output_type={"output": np.array([6, 3, 3])}),
        "out_c": nir.Output(output_type={"output": np.array([4, 6, 6])}),
        "out_d": nir.Output(output_type={"output": np.array([4, 8])}),
    }
    edges = [("img", "conv_a"), ("conv_a", "a"), ("a", "pool"), ("pool", "b"), ("b", "out_b"), ("a", "conv_same"),
             ("conv_same", "c"), ("c", "out_c"), ("seq", "conv1d"), ("conv1d", "d"), ("d", "out_d")]
    return neurocc.load(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Mapping, Path]]:
    """(mapping, emitted directory), compiled and emitted once per (network, target, emit options)."""
    cache: dict[tuple, tuple[Mapping, Path]] = {}

    def get(key: str, make: Callable[[], neurocc.Network], target: str = "loihi2", **emit_kw: str
            ) -> tuple[Mapping, Path]:
        ck = (key, target, tuple(sorted(emit_kw.items())))
        if ck not in cache:
            mapping = compile_network(make(), target)
            out = tmp_path_factory.mktemp("lava_conv") / key
            cache[ck] = (mapping, emit(mapping, out, **emit_kw))
        return cache[ck]

    return get


def _verify(mapping: Mapping, out: Path, raster: np.ndarray | dict[str, np.ndarray]) -> None:
    report = neurocc.verify(out, raster)
    assert report.identical, report.text()
    for proj in mapping.network.projections:
        if proj.conv is not None:
            assert report.executor_spikes[proj.post].any(), f"{proj.post} never spiked: a vacuous comparison"


def _conv_layout(mapping: Mapping, out: Path, unrolled: dict[str, str]) -> dict:
    """The manifest: one Conv per conv projection, each between one-process populations, but the ones
    emitted unrolled (`unrolled`: post population -> words of the reason)."""
    manifest = json.loads((out / "manifest.json").read_text())
    n_conv = sum(p.conv is not None for p in mapping.network.projections)
    assert manifest["lava_processes"]["Conv"] == n_conv - len(unrolled)
    assert {u["post"]: u["reason"] for u in manifest["lava_conv_unrolled"]}.keys() == unrolled.keys()
    for u in manifest["lava_conv_unrolled"]:
        assert unrolled[u["post"]] in u["reason"]
    for conv in manifest["lava_convs"]:
        for end in ("pre", "post"):
            name = list(mapping.network.populations)[conv[end]]
            assert manifest["lava_slices"][name] == [[0, mapping.network.populations[name].size]]
    return manifest


def manifest_conv_populations(mapping: Mapping) -> set[str]:
    return {n for p in mapping.network.projections if p.conv is not None for n in (p.pre, p.post)}


# ---- bit-exact through `neurocc verify` ---------------------------------------------------------------

@pytest.mark.parametrize(("target", "conv"), [("loihi2", "auto"), ("loihi1", "always")])
def test_nmnist_cnn_bit_exact(target: str, conv: str, artifacts: Callable) -> None:
    """loihi2 as emitted by default (pool3 + fc1, one output position, runs as Dense); loihi1 with every
    conv projection a Lava Conv, that one too."""
    mapping, out = artifacts("nmnist", _nmnist, target, conv=conv)
    manifest = _conv_layout(mapping, out, {"if4": ONE_POSITION} if conv == "auto" else {})
    assert sum(manifest["lava_processes"].values()) <= 12  # 43 slices gave 396 processes before
    raster = (np.random.default_rng(1).random((STEPS, 2, 34, 34)) < 0.1).astype(np.float32)
    _verify(mapping, out, raster)


@pytest.mark.parametrize("path", CONV_CORPUS, ids=[f.stem for f in CONV_CORPUS])
def test_corpus_conv_bit_exact(path: Path, artifacts: Callable) -> None:
    """Each corpus conv net on loihi2 with its own 20-step input; populations the mapping slices into several
    cores are still one Lava process each."""
    mapping, out = artifacts(path.stem, _corpus(path))
    dense = {p.post: ONE_POSITION for p in mapping.network.projections
             if p.conv is not None and p.conv.out_shape[1:] == (1, 1)}
    _conv_layout(mapping, out, dense)
    assert any(len(mapping.slices_of(n)) > 1 for n in manifest_conv_populations(mapping)), "nothing merged"
    with np.load(path.with_suffix(".npz")) as data:
        raster = np.asarray(data["input"])
    _verify(mapping, out, raster)


def test_corpus_has_conv_nets() -> None:
    assert len(CONV_CORPUS) >= 4, [f.name for f in CORPUS_FILES]


def test_geometry_bit_exact(artifacts: Callable) -> None:
    """Groups + dilation + stride 2, a pool straight after a population, Conv1d, graded input counts (Conv
    with num_message_bits), and the 'same' conv that Lava's symmetric padding cannot express (unrolled)."""
    mapping, out = artifacts("geometry", _geometry)
    manifest = _conv_layout(mapping, out, {"c": "asymmetric padding"})
    groups = {c["label"]: c["groups"] for c in manifest["lava_convs"]}
    assert groups == {"conv img->a": 2, "conv a->b": 6, "conv seq->d": 1}
    rng = np.random.default_rng(3)
    raster = {"img": rng.poisson(0.4, (STEPS, 4, 12, 12)).astype(np.float32),
              "seq": (rng.random((STEPS, 2, 16)) < 0.4).astype(np.float32)}
    assert raster["img"].max() > 1
    _verify(mapping, out, raster)


@pytest.mark.parametrize(("shape", "kernel", "stride", "padding", "dilation", "groups"), [
    ((3, 9, 7), (2, 3), (2, 1), (1, 0), (1, 2), 1),
    ((4, 1, 13), (1, 4), (1, 3), (0, 2), (1, 1), 2),  # Conv1d as (C, 1, L)
    ((130, 4, 5), (2, 2), (2, 2), (0, 1), (1, 1), 130),  # depthwise over 130 channels: groups past int8
    ((256, 3, 3), (3, 3), (1, 1), (1, 1), (1, 1), 128),
])
def test_layout_against_lava_conv_function(shape: tuple, kernel: tuple, stride: tuple, padding: tuple,
                                           dilation: tuple, groups: int) -> None:
    """emit's kernel layout, (x, y) geometry and regrouping through Lava's own utils.conv (what
    PyConvModelFixed calls) give the IR's unrolled matrix times the spikes, for every output neuron."""
    rng = np.random.default_rng(sum(shape))
    c_in, h, w = shape
    c_out = c_in if groups == c_in else 2 * groups
    out_shape = (c_out, *(conv_output_size(n, k, s, p, d) for n, k, s, p, d in
                          zip((h, w), kernel, stride, padding, dilation, strict=True)))
    ir = Conv(rng.integers(-255, 256, (c_out, c_in // groups, *kernel)), shape, out_shape, stride, padding, dilation,
              groups)
    plain, reason = lava_conv(ir)
    assert plain is ir and reason == ""
    g = lava_groups(groups)
    assert g <= 127 and groups % g == 0
    lk = regroup(ir.kernel, groups, g, c_in)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).astype(np.int32)
    spikes = rng.random(shape) < 0.3
    got = lava_conv_utils.conv(spikes.transpose(2, 1, 0), lk, lk.shape[1:3], stride[::-1], padding[::-1],
                               dilation[::-1], g)
    expected = ir.unrolled() @ spikes.reshape(-1).astype(np.int64)
    np.testing.assert_array_equal(got.transpose(2, 1, 0).reshape(-1), expected)


# ---- what emit and run_lava.py refuse, by name ---------------------------------------------------------

def _conv_mapping(artifacts: Callable, **changes: int) -> Mapping:
    mapping, _ = artifacts("geometry", _geometry)
    bad = copy.deepcopy(mapping)
    proj = next(p for p in bad.network.projections if p.post == "a")
    for key, value in changes.items():
        setattr(proj, key, value)
    return bad


def test_negative_exponent_is_refused(artifacts: Callable, tmp_path: Path) -> None:
    bad = _conv_mapping(artifacts, weight_exp=-1)
    with pytest.raises(LavaConvExponentError, match=r"conv projection 'img' -> 'a'.*exponent -1 < 0.*"
                                                     r"Fix: .*conv_weight_exp_min = 0"):
        emit(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_out_wrap_is_refused(artifacts: Callable, tmp_path: Path) -> None:
    """At compile time for LIF spikes (value 1) ..."""
    bad = _conv_mapping(artifacts, weight_exp=16)
    with pytest.raises(LavaConvOverflowError, match=r"conv projection 'img' -> 'a'.*can reach \d+, past the "
                                                     r"signed 24-bit range.*Fix: lower this layer's weights"):
        emit(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_graded_input_that_could_wrap_is_refused(artifacts: Callable) -> None:
    """... and before Lava starts for input counts, which only the run knows (a Lava process that raises
    mid-run deadlocks the runtime)."""
    _, out = artifacts("geometry", _geometry)
    raster = {"img": np.zeros((4, 4, 12, 12), np.float32), "seq": np.zeros((4, 2, 16), np.float32)}
    raster["img"][0, 0, 5, 5] = 2**20
    with pytest.raises(ArtifactError, match=r"(?s)conv img->a: spike values up to 1048576 .*signed 24-bit"):
        run(out, raster)
