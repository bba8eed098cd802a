"""Lava backend: the emitted program runs in real Lava (Loihi2SimCfg fixed_pt) and reproduces
simulate_int bit for bit: every population, every neuron, every step (and v where recorded).

One module of ~500 lines: the bit-exactness cases, the emitted layout and the executor's error paths all
draw on one cache of compiled and emitted programs (the module fixture `artifacts`); split, each part
would compile them again.

No mocks and no skips: Lava is the oracle. A missing lava-nc fails this module at import.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import lava.magma.core.run_configs  # noqa: F401  (a missing lava must fail, never skip)
import nir
import numpy as np
import pytest

import neurocc
from neurocc.backends.lava import emit
from neurocc.compiler.errors import ArtifactError
from neurocc.compiler.ir import Mapping
from neurocc.compiler.pipeline import compile_network
from neurocc.runtime.executors.lava import LavaRun, run, run_detailed
from neurocc.runtime.simulator import simulate_int

from .conftest import CORPUS_FILES, convention_of

TARGET = "loihi2"
MAX_DELAY = 63  # loihi2.toml [format] max_delay
DT = 1e-3  # the 'nir' convention's dt: a Delay of d * DT is d steps
MIN_STEPS = 100


# ---- helpers ------------------------------------------------------------------------------------------

def assert_bit_exact(mapping: Mapping, raster: np.ndarray | dict[str, np.ndarray], got: LavaRun | dict,
                     check_v: bool = True) -> None:
    ref = simulate_int(mapping.network, raster)
    spikes = got.spikes if isinstance(got, LavaRun) else got
    assert ref.steps >= MIN_STEPS
    for name, expected in ref.spikes.items():
        assert name in spikes, f"Lava returned no spikes for population {name!r}"
        _assert_equal(f"{name}.spikes", expected, spikes[name])
    if check_v and isinstance(got, LavaRun):
        for name, expected in ref.v.items():
            _assert_equal(f"{name}.v", expected, got.v[name])
    lif_spikes = sum(int(s.sum()) for n, s in ref.spikes.items() if n not in mapping.network.inputs)
    assert lif_spikes > 0, "no LIF spiked: the comparison would be vacuous"


def _assert_equal(what: str, expected: np.ndarray, got: np.ndarray) -> None:
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    if not np.array_equal(got, expected):
        diff = np.argwhere(got != expected)
        t, n = (int(x) for x in diff[0])
        pytest.fail(f"{what}: {len(diff)} mismatches; first at step {t}, neuron {n}: "
                    f"reference {expected[t, n]}, Lava {got[t, n]}")


def random_raster(mapping: Mapping, steps: int, p: float = 0.2, seed: int = 0, graded: bool = False
                  ) -> np.ndarray | dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inet = mapping.network
    parts = {}
    for name in inet.inputs:
        shape = (steps, *inet.populations[name].shape)
        parts[name] = (rng.poisson(p, shape) if graded else rng.random(shape) < p).astype(np.float32)
    return parts if len(parts) > 1 else parts[inet.inputs[0]]


def corpus_raster(path: Path) -> np.ndarray:
    """The file's own input, tiled to at least MIN_STEPS."""
    with np.load(path.with_suffix(".npz")) as data:
        x = np.asarray(data["input"])
    reps = -(-MIN_STEPS // x.shape[0])
    return np.concatenate([x] * reps)[: max(MIN_STEPS, x.shape[0])]


def load_corpus(path: Path) -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return neurocc.load(path, convention=convention_of(path))


# ---- generated networks (nir library) -----------------------------------------------------------------

def _lif(shape: int | tuple[int, ...], tau: float = 0.02, thr: float = 0.1) -> nir.LIF:
    s = (shape,) if isinstance(shape, int) else shape
    return nir.LIF(tau=np.full(s, tau), r=np.ones(s), v_leak=np.zeros(s), v_threshold=np.full(s, thr),
                   v_reset=np.zeros(s))


def _graph(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]) -> neurocc.Network:
    return neurocc.load(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))


def _delay_branches(nodes: dict, edges: list, pre: str, post: str, weight: np.ndarray, delay: np.ndarray,
                    tag: str) -> None:
    """pre -> Delay(d) -> Linear(weight where delay == d) -> post, one branch per delay value (NIR's way)."""
    for d in np.unique(delay):
        nodes[f"{tag}_d{d}"] = nir.Delay(delay=np.full(weight.shape[1], d * DT))
        nodes[f"{tag}_w{d}"] = nir.Linear(weight=np.where(delay == d, weight, 0.0))
        edges += [(pre, f"{tag}_d{d}"), (f"{tag}_d{d}", f"{tag}_w{d}"), (f"{tag}_w{d}", post)]


def net_delays(seed: int = 0) -> neurocc.Network:
    """Every delay 0..63 on input -> hidden; 0/17/63 on hidden -> out; a delayed recurrent loop."""
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = 16, 24, 8
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges: list[tuple[str, str]] = []
    delay = rng.integers(0, MAX_DELAY + 1, (n_hid, n_in))
    delay.flat[: MAX_DELAY + 1] = np.arange(MAX_DELAY + 1)
    _delay_branches(nodes, edges, "input", "hidden", rng.normal(0.25, 0.35, (n_hid, n_in)), delay, "in")
    out_delay = rng.choice([0, 17, MAX_DELAY], (n_out, n_hid))
    _delay_branches(nodes, edges, "hidden", "out", rng.normal(0.1, 0.4, (n_out, n_hid)), out_delay, "ho")
    _delay_branches(nodes, edges, "hidden", "hidden", rng.normal(0, 0.1, (n_hid, n_hid)),
                    np.full((n_hid, n_hid), 5), "rec")
    nodes["hidden"], nodes["out"] = _lif(n_hid), _lif(n_out, thr=0.2)
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    return _graph(nodes, edges + [("out", "output")])


def net_delays_sliced(seed: int = 1) -> neurocc.Network:
    """A hidden layer over one core's 1024 neurons: several LIF slices, delayed blocks between them."""
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = 48, 1300, 12
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges: list[tuple[str, str]] = []
    mask = rng.random((n_hid, n_in)) < 0.2
    w = np.where(mask, rng.normal(0.4, 0.4, (n_hid, n_in)), 0.0)
    _delay_branches(nodes, edges, "input", "hidden", w, rng.integers(0, 8, (n_hid, n_in)) * 9, "in")
    w2 = np.where(rng.random((n_out, n_hid)) < 0.1, rng.normal(0.05, 0.3, (n_out, n_hid)), 0.0)
    _delay_branches(nodes, edges, "hidden", "out", w2, rng.choice([0, MAX_DELAY], (n_out, n_hid)), "ho")
    nodes["hidden"], nodes["out"] = _lif(n_hid), _lif(n_out, thr=0.3)
    nodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    return _graph(nodes, edges + [("out", "output")])


def net_recurrent(seed: int = 2) -> neurocc.Network:
    """Recurrent LIF with per-neuron thresholds and an Affine bias, into a recurrent CubaLIF."""
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = 20, 32, 10
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "w_in": nir.Affine(weight=rng.normal(0.2, 0.4, (n_hid, n_in)), bias=rng.normal(0.0, 0.02, n_hid)),
        "hidden": nir.LIF(tau=np.full(n_hid, 0.02), r=np.ones(n_hid), v_leak=np.zeros(n_hid),
                          v_threshold=rng.uniform(0.08, 0.15, n_hid), v_reset=np.zeros(n_hid)),
        "w_rec": nir.Linear(weight=rng.normal(0.0, 0.15, (n_hid, n_hid))),
        "w_out": nir.Linear(weight=rng.normal(0.1, 0.3, (n_out, n_hid))),
        "out": nir.CubaLIF(tau_syn=np.full(n_out, 0.005), tau_mem=np.full(n_out, 0.01), r=np.ones(n_out),
                           v_leak=np.zeros(n_out), v_threshold=np.full(n_out, 0.05), v_reset=np.zeros(n_out),
                           w_in=np.ones(n_out)),
        "w_orec": nir.Linear(weight=rng.normal(-0.05, 0.1, (n_out, n_out))),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    edges = [("input", "w_in"), ("w_in", "hidden"), ("hidden", "w_rec"), ("w_rec", "hidden"),
             ("hidden", "w_out"), ("w_out", "out"), ("out", "w_orec"), ("w_orec", "out"), ("out", "output")]
    return _graph(nodes, edges)


def net_conv_pool(seed: int = 3) -> neurocc.Network:
    """Conv2d (padded, biased) -> LIF -> SumPool2d -> Conv2d -> IF -> AvgPool2d -> Flatten -> Linear -> LIF
    -> Linear -> CubaLI (non-spiking readout)."""
    rng = np.random.default_rng(seed)
    c, h = 2, 12
    one = np.array([1, 1])
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([c, h, h])}),
        "conv1": nir.Conv2d(input_shape=np.array([h, h]), weight=rng.normal(0.15, 0.5, (4, c, 3, 3)), stride=one,
                            padding=one, dilation=one, groups=1, bias=rng.normal(0, 0.02, 4)),
        "lif1": _lif((4, h, h), thr=0.3),
        "pool1": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "conv2": nir.Conv2d(input_shape=np.array([6, 6]), weight=rng.normal(0.1, 0.4, (6, 4, 3, 3)), stride=one,
                            padding=np.array([0, 0]), dilation=one, groups=1, bias=np.zeros(6)),
        "if2": nir.IF(r=np.ones((6, 4, 4)), v_threshold=np.full((6, 4, 4), 0.03), v_reset=np.zeros((6, 4, 4))),
        "pool2": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([6, 2, 2])}, start_dim=0, end_dim=-1),
        "fc": nir.Linear(weight=rng.normal(0.1, 0.5, (16, 24))),
        "lif3": _lif(16, thr=0.1),
        "fc2": nir.Linear(weight=rng.normal(0.0, 0.5, (10, 16))),
        "readout": nir.CubaLI(tau_syn=np.full(10, 0.005), tau_mem=np.full(10, 0.01), r=np.ones(10),
                              v_leak=np.zeros(10), w_in=np.ones(10)),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    order = ["input", "conv1", "lif1", "pool1", "conv2", "if2", "pool2", "flat", "fc", "lif3", "fc2", "readout",
             "output"]
    return _graph(nodes, list(zip(order[:-1], order[1:], strict=True)))


def net_two_inputs(seed: int = 4) -> neurocc.Network:
    """Three Input nodes; an excitatory-only and an inhibitory-only projection (Lava sign modes); a LIF
    driven by bias alone (its input's weights are all zero), so the Lava network has two components."""
    rng = np.random.default_rng(seed)
    nodes: dict[str, nir.NIRNode] = {
        "a": nir.Input(input_type={"input": np.array([12])}),
        "b": nir.Input(input_type={"input": np.array([6])}),
        "c": nir.Input(input_type={"input": np.array([3])}),
        "wa": nir.Linear(weight=rng.uniform(0.0, 0.3, (10, 12))),
        "wb": nir.Linear(weight=-rng.uniform(0.0, 0.4, (10, 6))),
        "wc": nir.Affine(weight=np.zeros((5, 3)), bias=rng.uniform(0.12, 0.4, 5)),
        "h": _lif(10),
        "tonic": _lif(5),
        "output": nir.Output(output_type={"output": np.array([10])}),
        "output2": nir.Output(output_type={"output": np.array([5])}),
    }
    return _graph(nodes, [("a", "wa"), ("wa", "h"), ("b", "wb"), ("wb", "h"), ("h", "output"),
                          ("c", "wc"), ("wc", "tonic"), ("tonic", "output2")])


def net_overflow(seed: int = 5) -> neurocc.Network:
    """Saturation paths: a CubaLIF whose slowly decaying current outgrows 24 bits (Lava's wrap of u), and an
    integrator readout whose bias drives v past vth << 6 (vth = 2**17 - 1): even a non-spiking readout fires
    there, in Lava as in the reference."""
    rng = np.random.default_rng(seed)
    n_in, n = 20, 8
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "w": nir.Linear(weight=rng.uniform(10.0, 30.0, (n, n_in))),
        "slow": nir.CubaLIF(tau_syn=np.full(n, 1.0), tau_mem=np.full(n, 0.002), r=np.ones(n), v_leak=np.zeros(n),
                            v_threshold=np.full(n, 1.0), v_reset=np.zeros(n), w_in=np.ones(n)),
        "w2": nir.Affine(weight=rng.uniform(-0.5, 0.5, (4, n)), bias=np.full(4, 100.0)),
        "acc": nir.I(r=np.ones(4)),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    return _graph(nodes, [("input", "w"), ("w", "slow"), ("slow", "w2"), ("w2", "acc"), ("acc", "output")])


GENERATED: dict[str, tuple[Callable[[], neurocc.Network], dict]] = {
    "delays_0_to_63": (net_delays, {}),
    "delays_sliced": (net_delays_sliced, {}),
    "recurrent_cubalif_bias": (net_recurrent, {}),
    "conv_pool": (net_conv_pool, {"p": 0.1}),
    "two_inputs_sign_modes": (net_two_inputs, {"p": 0.3}),
    "overflow_wrap_and_clip": (net_overflow, {"p": 0.5}),
    "graded_input_delays": (net_delays, {"graded": True, "p": 0.4}),
    "graded_input_recurrent": (net_recurrent, {"graded": True, "p": 0.3}),
}


# ---- shared artifacts ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Mapping, Path]]:
    """(mapping, emitted directory), compiled and emitted once per (network, emit options)."""
    cache: dict[tuple, tuple[Mapping, Path]] = {}

    def get(key: str, make: Callable[[], neurocc.Network], **emit_kw: str) -> tuple[Mapping, Path]:
        ck = (key, tuple(sorted(emit_kw.items())))
        if ck not in cache:
            mapping = compile_network(make(), TARGET)
            out = tmp_path_factory.mktemp("lava") / key
            cache[ck] = (mapping, emit(mapping, out, **emit_kw))
        return cache[ck]

    return get


# ---- bit-exactness ------------------------------------------------------------------------------------

# The corpus conv nets (Lava Conv processes) are tests/test_lava_conv.py's.
NON_CONV_CORPUS = [f for f in CORPUS_FILES if "conv" not in f.stem]


def test_corpus_has_non_conv_nets() -> None:
    assert NON_CONV_CORPUS, f"no non-conv .nir files among {[f.name for f in CORPUS_FILES]}"


@pytest.mark.parametrize("path", NON_CONV_CORPUS, ids=[f.stem for f in NON_CONV_CORPUS])
def test_corpus_bit_exact(path: Path, artifacts: Callable) -> None:
    mapping, out = artifacts(path.stem, lambda: load_corpus(path))
    raster = corpus_raster(path)
    assert_bit_exact(mapping, raster, run_detailed(out, raster))


@pytest.mark.parametrize("case", list(GENERATED))
def test_generated_bit_exact(case: str, artifacts: Callable) -> None:
    make, opts = GENERATED[case]
    mapping, out = artifacts(make.__name__, make)
    raster = random_raster(mapping, 150, p=opts.get("p", 0.2), seed=len(case), graded=opts.get("graded", False))
    assert_bit_exact(mapping, raster, run_detailed(out, raster))


def test_shared_synthetic_graphs_bit_exact(synthetic_name: str, synthetic: tuple, artifacts: Callable) -> None:
    """conftest's synthetic graphs (per-neuron tau, v_reset/v_leak, Threshold, I, grouped/dilated conv, Conv1d,
    nested graphs, exp discretisation), their rasters tiled to at least MIN_STEPS."""
    graph, load_kw, x = synthetic
    mapping, out = artifacts(f"synthetic_{synthetic_name}", lambda: neurocc.load(graph, **load_kw))
    raster = np.concatenate([x] * -(-MIN_STEPS // x.shape[0]))
    assert_bit_exact(mapping, raster, run_detailed(out, raster))


def test_generated_cover_what_they_claim(artifacts: Callable) -> None:
    """The generated cases exercise what their names say (delays 0..63, several slices, graded, wrap)."""
    mapping, out = artifacts("net_delays", net_delays)
    delays = np.concatenate([p.delays for p in mapping.network.projections])
    assert set(range(MAX_DELAY + 1)) <= set(delays.tolist())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lava_processes"]["DelayDense"] >= 1
    mapping, out = artifacts("net_delays_sliced", net_delays_sliced)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["populations"]["hidden"]["slices"]) >= 2
    assert manifest["lava_processes"]["LIF"] >= 3
    mapping, _ = artifacts("net_overflow", net_overflow)
    raster = random_raster(mapping, 150, p=0.5, seed=len("overflow_wrap_and_clip"))
    ref = simulate_int(mapping.network, raster)
    assert (ref.i["slow"] < 0).any(), "u never wrapped past 2**23 (all inputs are excitatory)"
    assert ref.spikes["acc"].any(), "the readout's v never passed vth << 6"
    graded = random_raster(mapping, 150, p=0.4, seed=0, graded=True)
    assert graded.max() > 1
    mapping, _ = artifacts("net_two_inputs", net_two_inputs)
    assert {p.pre for p in mapping.network.projections} == {"a", "b"}  # tonic: bias only
    ref = simulate_int(mapping.network, random_raster(mapping, 150, p=0.3))
    assert ref.spikes["tonic"].any()


def test_delay_beyond_target_max_is_refused() -> None:
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([4])})}
    edges: list[tuple[str, str]] = []
    _delay_branches(nodes, edges, "input", "h", np.ones((3, 4)), np.full((3, 4), MAX_DELAY + 1), "x")
    nodes["h"], nodes["output"] = _lif(3), nir.Output(output_type={"output": np.array([3])})
    with pytest.raises(neurocc.QuantizationError, match=f"exceeds loihi2's maximum of {MAX_DELAY}"):
        compile_network(_graph(nodes, edges + [("h", "output")]), TARGET)


@pytest.mark.parametrize("emit_kw", [{"sparse": "always"}, {"sparse": "never"}, {"granularity": "populations"}],
                         ids=["sparse", "dense", "populations"])
def test_process_choices_agree(emit_kw: dict, artifacts: Callable) -> None:
    """Sparse/DelaySparse, Dense/DelayDense and one-LIF-per-population all give the reference spikes, for
    graded input spikes (W @ s) and binary LIF spikes alike."""
    mapping, out = artifacts("net_delays_sliced", net_delays_sliced, **emit_kw)
    raster = random_raster(mapping, 120, p=0.15, seed=9, graded=True)
    assert raster.max() > 1
    assert_bit_exact(mapping, raster, run_detailed(out, raster))
    procs = json.loads((out / "manifest.json").read_text())["lava_processes"]
    if emit_kw.get("sparse") == "always":
        assert procs["Dense"] == procs["DelayDense"] == 0
    if emit_kw.get("sparse") == "never":
        assert procs["Sparse"] == procs["DelaySparse"] == 0
    if "granularity" in emit_kw:
        assert procs["LIF"] == 2


# ---- the artifacts ------------------------------------------------------------------------------------

def test_emitted_layout(artifacts: Callable) -> None:
    mapping, out = artifacts("net_delays", net_delays)
    names = {p.name for p in out.iterdir()}
    assert {"run_lava.py", "weights.npz", "manifest.json", "network.npz"} <= names
    assert not any(n.startswith(".") for n in names)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "lava" and manifest["target"] == TARGET
    assert manifest["lava_version"] == "0.10.0"
    assert "run_lava.py --input" in manifest["command"]
    assert {f["name"]: f["bytes"] for f in manifest["files"]} == {
        n: (out / n).stat().st_size for n in ("run_lava.py", "weights.npz", "network.npz")}
    program = (out / "run_lava.py").read_text()
    assert not [ln for ln in program.splitlines() if ln.startswith(("import neurocc", "from neurocc"))]
    assert "Loihi2SimCfg(select_tag=\"fixed_pt\")" in program
    with np.load(out / "weights.npz", allow_pickle=False) as w:
        meta = json.loads(str(w["meta"]))
        hid = [p["name"] for p in meta["populations"]].index("hidden")
        assert int(w[f"pop{hid}.vth"]) == mapping.network.populations["hidden"].vth
        assert w[f"pop{hid}.bias_mant"].shape == (24,)
        delayed = [c for c in meta["connections"] if c["process"] == "DelayDense"]
        k = delayed[0]["index"]
        assert w[f"conn{k}.weights"].shape == w[f"conn{k}.delays"].shape
        assert str(w[f"conn{k}.sign_mode"]) in ("mixed", "excitatory", "inhibitory")


def test_run_lava_cli_standalone(artifacts: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python run_lava.py --input x.npz --output spikes.npz`, from the artifact directory, as documented;
    and run() with a relative artifact path."""
    mapping, out = artifacts("net_recurrent", net_recurrent)
    x = random_raster(mapping, 100, seed=3)
    np.savez(tmp_path / "x.npz", input=x)
    proc = subprocess.run([sys.executable, "run_lava.py", "--input", str(tmp_path / "x.npz"), "--output",
                           str(tmp_path / "spikes.npz")], cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "spikes.npz") as y:
        got = LavaRun({k[:-7]: y[k] for k in y.files if k.endswith(".spikes")},
                      {k[:-2]: y[k] for k in y.files if k.endswith(".v")})
    assert_bit_exact(mapping, x, got)
    monkeypatch.chdir(out.parent)
    assert_bit_exact(mapping, x, run(Path(out.name), x))


def test_emit_replaces_atomically(artifacts: Callable, tmp_path: Path) -> None:
    mapping, _ = artifacts("net_two_inputs", net_two_inputs)
    out = tmp_path / "out"
    assert mapping.emit(out) == out  # Mapping.emit picks this backend for the loihi family
    first = (out / "manifest.json").read_text()
    emit(mapping, out)  # a previous output is replaced
    assert (out / "manifest.json").read_text() == first
    # A failure part-way (a weight Lava would clip) leaves the previous output untouched, and no debris.
    bad = compile_network(net_two_inputs(), TARGET)
    bad.network.projections[0].weights.data[0] = 300
    with pytest.raises(ArtifactError, match="not exact in Lava"):
        emit(bad, out)
    assert (out / "manifest.json").read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # Never replace a directory that is not a neurocc output.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not a neurocc output"):
        emit(mapping, other)
    assert (other / "notes.txt").read_text() == "mine"


# ---- executor errors ----------------------------------------------------------------------------------

@pytest.fixture()
def copy_of(artifacts: Callable, tmp_path: Path) -> tuple[Mapping, Path, np.ndarray]:
    mapping, out = artifacts("net_recurrent", net_recurrent)
    dst = tmp_path / "copy"
    shutil.copytree(out, dst)
    return mapping, dst, random_raster(mapping, 100, seed=1)


def test_missing_manifest(copy_of: tuple) -> None:
    _, out, x = copy_of
    (out / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"manifest\.json: missing"):
        run(out, x)


def test_corrupt_manifest(copy_of: tuple) -> None:
    _, out, x = copy_of
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json: unreadable"):
        run(out, x)


def test_missing_or_modified_files(copy_of: tuple) -> None:
    _, out, x = copy_of
    data = (out / "weights.npz").read_bytes()
    (out / "weights.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"weights\.npz: .*truncated"):
        run(out, x)
    (out / "weights.npz").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ArtifactError, match=r"weights\.npz: content does not match"):
        run(out, x)
    (out / "weights.npz").unlink()
    with pytest.raises(ArtifactError, match=r"weights\.npz: missing"):
        run(out, x)


def _rehash(out: Path, name: str) -> None:
    """Make the manifest agree with a file edited on purpose, so the program itself must catch the edit."""
    import hashlib

    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["name"] == name:
            entry["bytes"] = (out / name).stat().st_size
            entry["sha256"] = hashlib.sha256((out / name).read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))


def _processes_running(path: Path) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass
    return pids


def test_lava_failure_is_reported(copy_of: tuple) -> None:
    mapping, out, x = copy_of
    with pytest.raises(ArtifactError, match=r"(?s)run_lava\.py: Lava run failed.*expected \[T, 20\]"):
        run(out, x[:, :5])
    with pytest.raises(ArtifactError, match=r"(?s)run_lava\.py: Lava run failed.*integer spike counts"):
        run(out, x * 0.5)
    # Values Lava would reject mid-run (where its runtime deadlocks) are refused before it starts.
    with np.load(out / "weights.npz") as w:
        arrays = {k: w[k] for k in w.files}
    conn = next(k[: -len(".sign_mode")] for k in arrays if k.endswith(".sign_mode") and str(arrays[k]) == "mixed")
    key = f"{conn}.weights" if f"{conn}.weights" in arrays else f"{conn}.data"
    arrays[key] = arrays[key] + 1  # odd mantissas in a mixed-sign matrix: Lava would drop the LSB
    np.savez(out / "weights.npz", **arrays)
    _rehash(out, "weights.npz")
    with pytest.raises(ArtifactError, match=r"(?s)weights\.npz: .*not exact in Lava's mixed"):
        run(out, x)


def test_timeout_stops_every_lava_process(copy_of: tuple) -> None:
    _, out, x = copy_of
    with pytest.raises(ArtifactError, match="did not finish within"):
        run(out, np.concatenate([x] * 100), timeout=2.0)
    assert _processes_running(out / "run_lava.py") == []
