"""Cortex-M stage A: the C99 engine built for the host == simulate_int, bit for bit, every step.

Corpus networks that fit the part, conftest's synthetic graphs, and generated integer networks that
reach every image encoding (dense, simple, segmented by delay and by 256-neuron block, 8/16-bit
indices, u8/n8/s8/s16 weights), negative weight exponents with several delays, graded inputs,
recurrence, tonic populations, 24-bit wrap and clip. Also: the image format, the budget check and
the emitted files (model.c compiles and validates).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import neurocc
import neurocc.workloads
from neurocc.backends.cortexm import check_fit, pack, read_info
from neurocc.backends.cortexm.image import FORMAT_VERSION, GROUP_SIZE, HEADER_SIZE, POP_SIZE, RING_SIZE
from neurocc.compiler.errors import ArtifactError, TargetError
from neurocc.compiler.ir import IntNetwork, IntPopulation, IntProjection, sign_mode_of
from neurocc.compiler.pipeline import compile_network
from neurocc.compiler.targets.target import load_target
from neurocc.runtime.executors.cortexm import run_host, run_image
from neurocc.runtime.serial.firmware import FIRMWARE_DIR, build_host
from neurocc.runtime.simulator import simulate_int

from .conftest import convention_of, target_toml_with

# The shipped Cortex-M part the tests compile for (NEUROCC_CORTEXM_TARGET may name another, e.g. a path).
TARGET = os.environ.get("NEUROCC_CORTEXM_TARGET", "stm32f405")
MIN_STEPS = 100
# Corpus networks that must fit the part (the conv nets with 400k synapses may not).
MUST_FIT = ("mlp", "rlif", "rcubalif", "norse_conv_strided")


@pytest.fixture(scope="session")
def host_engine() -> Path:
    if os.environ.get("CI") == "true" or shutil.which("gcc"):
        return build_host()  # a missing gcc raises ToolchainError: in CI that is a failure, never a skip
    pytest.skip("gcc not installed")


@pytest.fixture(scope="session")
def target():
    return load_target(TARGET)


def tiled(x: np.ndarray, steps: int = MIN_STEPS) -> np.ndarray:
    return np.concatenate([x] * -(-steps // x.shape[0]))[:max(steps, x.shape[0])]


def assert_same(inet: IntNetwork, raster: np.ndarray, got: dict[str, np.ndarray]) -> int:
    ref = simulate_int(inet, raster, record=False)
    total = 0
    for name, p in inet.populations.items():
        if p.kind == "input":
            continue
        want = ref.spikes[name]
        diff = np.argwhere(want != got[name])
        assert not diff.size, f"population {name!r}: first divergence at step {diff[0][0]}, neuron {diff[0][1]}"
        total += int(want.sum())
    return total


# ---- corpus ----

def test_corpus_on_host_engine(corpus_file: Path, host_engine: Path, target, tmp_path: Path) -> None:
    """Every corpus network that fits the part runs bit-exact; one that does not gets a named error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(corpus_file, convention=convention_of(corpus_file))
    x = tiled(np.load(corpus_file.with_suffix(".npz"))["input"])
    try:
        mapping = compile_network(net, target)
        out = mapping.emit(tmp_path / "out")
    except TargetError as exc:
        # what does not fit is named: population, bytes, the limit and a fix
        assert not any(k in corpus_file.stem for k in MUST_FIT), f"{corpus_file.stem} should fit: {exc}"
        msg = str(exc)
        assert "population" in msg and "bytes" in msg and "Fix:" in msg, msg
        assert not (tmp_path / "out").exists()  # nothing half-written
        return
    spikes = run_host(out, x, host_engine)
    assert assert_same(mapping.network, x, spikes) > 0, "no spikes at all: a weak test"


# ---- conftest's synthetic graphs ----

def test_synthetic_on_host_engine(synthetic_name: str, synthetic: tuple, host_engine: Path, target) -> None:
    graph, load_kw, x = synthetic
    net = neurocc.load(graph, **load_kw)
    mapping = compile_network(net, target)
    image = pack(mapping.network)
    assert_same(mapping.network, tiled(x), run_image(image.data, mapping.network, tiled(x), host_engine).spikes)


# ---- generated integer networks ----

def _pop(name: str, n: int, rng: np.random.Generator, kind: str = "lif", bias: float = 0.0, vth: int = 4000,
         du: int | None = None, dv: int | None = None) -> IntPopulation:
    if kind == "input":
        return IntPopulation(name, name, np.arange(n), (n,), "input")
    bm = (rng.normal(0, bias, n)).astype(np.int64) if bias else np.zeros(n, np.int64)
    be = rng.integers(0, 8, n) if bias else np.zeros(n, np.int64)
    return IntPopulation(name, name, np.arange(n), (n,), "lif", int(rng.integers(0, 4096) if du is None else du),
                         int(rng.integers(0, 4096) if dv is None else dv), vth, np.clip(bm, -4095, 4095), be)


def _proj(pre: IntPopulation, post: IntPopulation, rng: np.random.Generator, density: float, exp: int,
          sign: str = "mixed", wmax: int = 255, max_delay: int = 0, delays: list[int] | None = None) -> IntProjection:
    mask = rng.random((post.size, pre.size)) < density
    w = rng.integers(1, wmax + 1, mask.shape)
    if sign == "mixed":
        w = 2 * (w // 2) * rng.choice([-1, 1], mask.shape)  # Loihi: mixed mantissas are even
    elif sign == "inhibitory":
        w = -w
    m = sp.csr_array(np.where(mask, w, 0).astype(np.int64))
    m.eliminate_zeros()
    d = rng.choice(delays, m.nnz) if delays else rng.integers(0, max_delay + 1, m.nnz)
    return IntProjection(pre.name, post.name, m, d.astype(np.int64), exp, sign_mode_of(m.data))


def _net(pops: list[IntPopulation], projs: list[IntProjection], target) -> IntNetwork:
    inputs = [p.name for p in pops if p.kind == "input"]
    lifs = [p.name for p in pops if p.kind != "input"]
    return IntNetwork({p.name: p for p in pops}, projs, inputs, {"out": [lifs[-1]]}, {n: [n] for n in lifs},
                      target.format, target.name, 1e-3)


def gen_delays_negative_exp(target, rng):
    i, h, o = _pop("in", 24, rng, "input"), _pop("hid", 40, rng, bias=300), _pop("out", 12, rng)
    return _net([i, h, o], [_proj(i, h, rng, 0.3, -2, max_delay=6),           # floor shift, 7 delays: split
                            _proj(h, h, rng, 0.2, -1, delays=[0, 3]),          # recurrent, halved to shift 0
                            _proj(h, o, rng, 0.5, 3, max_delay=63),            # left shift, long delays
                            _proj(i, o, rng, 0.1, 5, sign="excitatory")], target)


def gen_wide_populations(target, rng):
    i, h, o = _pop("in", 300, rng, "input"), _pop("hid", 700, rng, vth=2000), _pop("out", 300, rng, vth=1000)
    return _net([i, h, o], [_proj(i, h, rng, 0.03, 6, max_delay=0),            # n_post > 256: blocks or idx16
                            _proj(h, o, rng, 0.05, 5, sign="excitatory", max_delay=2),
                            _proj(h, o, rng, 0.02, 4, sign="inhibitory")], target)


def gen_local_windows(target, rng):
    """Conv-like: each input reaches a window of 48 neighbours in a 600-neuron layer (8-bit indices in 256-neuron
    blocks pay), plus a 0..20-step delayed projection into a 400-neuron layer (a delay byte per synapse)."""
    i, h, o = _pop("in", 200, rng, "input"), _pop("hid", 600, rng, vth=1500), _pop("out", 400, rng, vth=1500)
    rows = np.concatenate([np.arange(48) + (j * 552) // 200 for j in range(200)])
    cols = np.repeat(np.arange(200), 48)
    w = (2 * rng.integers(-100, 101, rows.size)).astype(np.int64)
    keep = w != 0
    m = sp.csr_array((w[keep], (rows[keep], cols[keep])), shape=(600, 200))
    m.sort_indices()
    local = IntProjection("in", "hid", m, np.zeros(m.nnz, np.int64), 6, sign_mode_of(m.data))
    return _net([i, h, o], [local, _proj(h, o, rng, 0.02, 6, max_delay=20)], target)


def gen_dense_and_wide_weights(target, rng):
    fmt = replace(target.format, weight_bits=12)
    i, a, b = _pop("in", 16, rng, "input"), _pop("a", 30, rng, du=4095), _pop("b", 20, rng, bias=2000, dv=0)
    net = _net([i, a, b], [_proj(i, a, rng, 0.95, 2),                          # dense, s8 halved
                           _proj(a, b, rng, 1.0, -3, sign="excitatory"),       # dense, u8, floor shift
                           _proj(a, b, rng, 0.6, 0, wmax=3000),                # s16 weights
                           _proj(b, a, rng, 0.4, 1, sign="inhibitory")], target)
    net.format = fmt
    return net


def gen_wrap_and_tonic(target, rng):
    i, f, t = _pop("in", 10, rng, "input"), _pop("fast", 8, rng, du=0, dv=0, vth=131071), _pop("tonic", 6, rng,
                                                                                                 bias=3000, vth=50)
    # huge excitatory drive: u runs past 2^23 and wraps, v clips at 2^23 - 1; "tonic" has no input at all
    return _net([i, f, t], [_proj(i, f, rng, 1.0, 7, sign="excitatory")], target)


GENERATED = {
    "delays_negative_exp": (gen_delays_negative_exp, 3),
    "wide_populations": (gen_wide_populations, 1),
    "dense_and_wide_weights": (gen_dense_and_wide_weights, 1),
    "local_windows": (gen_local_windows, 1),
    "wrap_and_tonic": (gen_wrap_and_tonic, 1),
}


def random_raster(inet: IntNetwork, steps: int, rng: np.random.Generator, p: float = 0.25,
                  graded: int = 1) -> dict[str, np.ndarray]:
    return {n: (rng.random((steps, inet.populations[n].size)) < p) * rng.integers(1, graded + 1,
                                                                                   (steps, inet.populations[n].size))
            for n in inet.inputs}


@pytest.mark.parametrize("case", list(GENERATED))
def test_generated_on_host_engine(case: str, host_engine: Path, target) -> None:
    make, graded = GENERATED[case]
    rng = np.random.default_rng(len(case))
    inet = make(target, rng)
    raster = random_raster(inet, 150, rng, graded=graded)
    image = pack(inet)
    run = run_image(image.data, inet, raster, host_engine)
    assert assert_same(inet, raster, run.spikes) > 0
    assert run.stats["arena_bytes"] == image.arena_bytes  # the packer's budget is the engine's
    if case == "wrap_and_tonic":  # all drive is excitatory: a negative u can only come from the 24-bit wrap
        u = simulate_int(inet, raster).i["fast"]
        assert (u < 0).any() and (u > 2**22).any(), "u never wrapped past 2**23 (or never grew large)"


def test_generated_cover_every_encoding(target) -> None:
    seen: set[tuple[str, int, str]] = set()
    shifts: set[int] = set()
    for case, (make, _) in GENERATED.items():
        inet = make(target, np.random.default_rng(len(case)))
        for e in pack(inet).encodings:
            seen.add((e["mode"], e["index_bits"], e["weight"]))
            shifts.add(e["shift"])
    modes = {s[0] for s in seen}
    assert modes == {"dense", "simple", "segmented", "delays"}, seen
    assert {s[2] for s in seen} == {"u8", "n8", "s8", "s16"}, seen
    assert any(m == "segmented" and b == 8 for m, b, _ in seen), "no block-segmented 8-bit indices"
    assert {b for m, b, _ in seen if m == "delays"} == {8, 16}, seen
    assert min(shifts) < 0 < max(shifts)
    inet = gen_wrap_and_tonic(target, np.random.default_rng(len("wrap_and_tonic")))
    ref = simulate_int(inet, random_raster(inet, 150, np.random.default_rng(0)))
    assert (np.abs(ref.i["fast"]) > (1 << 23)).any() or (ref.i["fast"] < 0).any(), "u never wrapped"
    assert ref.spikes["tonic"].any()


# ---- image format, errors, emitted files ----

def test_image_layout_and_crc(target, host_engine: Path, tmp_path: Path) -> None:
    inet = gen_delays_negative_exp(target, np.random.default_rng(3))
    img = pack(inet, 0x0413)
    magic, version, hsize, size, crc, board = struct.unpack_from("<IHHIII", img.data)
    assert (magic, version, hsize, size, board) == (0x4D43434E, 3, HEADER_SIZE, len(img.data), 0x0413)
    assert FORMAT_VERSION == 3 and HEADER_SIZE == 76
    assert crc == zlib.crc32(img.data[16:]) == img.crc32
    fmt = inet.format
    # the widths: state_bits at 26, decay_bits, activation_shift, threshold_shift, reserved at 64..67
    assert img.data[26] == fmt.state_bits and img.data[64:68] == bytes([fmt.decay_bits, fmt.activation_shift,
                                                                         fmt.threshold_shift, 0])
    info = read_info(img.data)
    assert (info.state_bits, info.decay_bits, info.activation_shift, info.threshold_shift) == \
        (fmt.state_bits, fmt.decay_bits, fmt.activation_shift, fmt.threshold_shift)
    assert info.model_id == img.model_id and info.pop_sizes == [p.size for p in inet.populations.values()]
    assert struct.unpack_from("<I", img.data, 36)[0] == HEADER_SIZE  # the population table follows the header
    n_pops, n_rings, n_groups = struct.unpack_from("<HHH", img.data, 20)
    pops_off, rings_off, groups_off = struct.unpack_from("<III", img.data, 36)
    assert rings_off - pops_off == POP_SIZE * n_pops and groups_off - rings_off == RING_SIZE * n_rings
    assert groups_off + GROUP_SIZE * n_groups <= size and size % 4 == 0
    raster = random_raster(inet, 20, np.random.default_rng(1))
    # a flipped byte anywhere after the header's CRC field is caught before anything runs
    bad = bytearray(img.data)
    bad[len(bad) // 2] ^= 0x40
    with pytest.raises(ArtifactError, match="invalid model image"):
        run_image(bytes(bad), inet, raster, host_engine)
    with pytest.raises(ArtifactError, match="invalid model image"):
        run_image(img.data[:-4], inet, raster, host_engine)


def test_budget_error_names_population(target) -> None:
    inet = gen_wide_populations(target, np.random.default_rng(1))
    image = pack(inet)
    small = replace(target, memory=replace(target.memory, flash_bytes=image.size, ram_bytes=1 << 20))

    with pytest.raises(TargetError) as err:
        check_fit(small, image)
    msg = str(err.value)
    worst = max(image.flash_by_population, key=image.flash_by_population.get)
    assert f"population {worst!r}" in msg and "flash" in msg and str(small.memory.flash_bytes) in msg
    assert "over by" in msg and "Fix:" in msg
    tiny = replace(target, memory=replace(target.memory, ram_bytes=1024))
    with pytest.raises(TargetError, match=r"RAM.*population 'hid'"):
        check_fit(tiny, image)


def test_emit_files_and_model_c(target, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(Path(__file__).resolve().parents[1] / "neurocc" / "examples" / "delay_rnn.nir")
    mapping = compile_network(net, target)
    out = mapping.emit(tmp_path / "out")
    names = {p.name for p in out.iterdir()}
    assert {"model.bin", "model.c", "model.h", "network.npz", "manifest.json"} <= names
    assert not any(n.startswith(".") for n in os.listdir(tmp_path)), "temp dirs left behind"
    manifest = json.loads((out / "manifest.json").read_text())
    cm = manifest["cortexm"]
    assert cm["image"]["bytes"] == (out / "model.bin").stat().st_size
    assert cm["flash_needed"] <= cm["flash_bytes"] and cm["ram_needed"] <= cm["ram_bytes"]
    assert {f["name"] for f in manifest["files"]} >= {"model.bin", "model.c", "network.npz"}
    # model.c holds the same bytes, 4-byte aligned: a C program validates it with the engine
    main = tmp_path / "check.c"
    main.write_text('#include "model.h"\n#include "snn.h"\n#include <stdio.h>\nint main(void) { uint32_t need = 0;\n'
                    'int rc = snn_validate(neurocc_model, NEUROCC_MODEL_SIZE, SNN_BOARD_ANY, &need);\n'
                    'printf("%d %u\\n", rc, need); return rc; }\n')
    exe = tmp_path / "check"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-I", str(out), "-I", str(FIRMWARE_DIR / "engine"),
                    str(main), str(out / "model.c"), str(FIRMWARE_DIR / "engine" / "snn.c"), "-o", str(exe)],
                   check=True)
    rc, need = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    assert int(need) == cm["image"]["arena_bytes"]
    # a directory that is not a neurocc output is never replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(ArtifactError, match="refusing"):
        mapping.emit(other)
    assert (other / "notes.txt").read_text() == "keep"


# ---- the format's widths travel in the header (since format version 2) ----

NARROW = {"decay_bits": 10, "threshold_shift": 4, "threshold_bits": 14}


def _small_net():
    return neurocc.workloads.random_network(120, synapses_per_neuron=60, n_populations=2, n_inputs=60, max_delay=3,
                                            seed=1)


def _with_crc(data: bytearray) -> bytes:
    data[12:16] = struct.pack("<I", zlib.crc32(bytes(data[16:])))
    return bytes(data)


def test_changed_widths_bit_exact_on_host_engine(host_engine: Path, tmp_path: Path) -> None:
    """A user's target with decay_bits 10, threshold_bits 14, threshold_shift 4 compiles, and the engine (which
    reads the widths from the image header) equals simulate_int under those widths, spike for spike."""
    net = _small_net()
    x = (np.random.default_rng(0).random((100, 60)) < 0.5).astype(np.int64)
    mapping = neurocc.compile(net, str(target_toml_with("stm32f405", tmp_path / "narrow.toml", **NARROW)))
    stock = neurocc.compile(net, "stm32f405")
    fmt = mapping.network.format
    assert (fmt.decay_bits, fmt.threshold_shift, fmt.threshold_bits) == (10, 4, 14)
    out = mapping.emit(tmp_path / "out")
    data = (out / "model.bin").read_bytes()
    assert data[64:67] == bytes([10, fmt.activation_shift, 4])
    assert read_info(data).decay_bits == 10
    lifs = [n for n, p in mapping.network.populations.items() if p.kind != "input"]
    for name in lifs:  # the widths reached the integer network: decays and thresholds in the narrow ranges
        p, q = mapping.network.populations[name], stock.network.populations[name]
        assert p.du <= fmt.decay_max and p.dv <= fmt.decay_max and p.vth <= fmt.threshold_max
        assert (p.du, p.dv, p.vth) != (q.du, q.dv, q.vth)
    got = run_host(out, x, host_engine)
    ref = simulate_int(mapping.network, x, record=False)
    for name in lifs:
        diff = np.argwhere(ref.spikes[name] != got[name])
        assert not diff.size, f"{name}: first divergence at step {diff[0][0]}, neuron {diff[0][1]}"
        assert ref.spikes[name].sum() > 20, f"{name}: too few spikes for a test"
    # the same tables under Loihi's widths spike differently: the engine really used the header's
    loihi = replace(mapping.network, format=replace(fmt, decay_bits=12, threshold_shift=6))
    other = simulate_int(loihi, x, record=False)
    assert any((other.spikes[n] != got[n]).any() for n in lifs)


@pytest.mark.parametrize(("offset", "value", "code"), [
    (64, 0, 9), (64, 17, 9),            # decay_bits outside 1..16
    (26, 1, 9), (26, 30, 9),            # state_bits outside 2..29
    (65, 32, 9),                        # activation_shift > 31
    (66, 31, 9),                        # threshold_shift > 30
    (67, 1, 6),                         # reserved byte
    (64, 8, 6),                         # decay_bits 8: du, dv up to 4095 no longer fit: inconsistent tables
    (66, 12, 6),                        # threshold_shift 12: 4000 << 6 is not some vth << 12
])
def test_engine_refuses_header_widths(offset: int, value: int, code: int, target, host_engine: Path) -> None:
    """A header the engine cannot honour (CRC made right again) is refused with its named code."""
    inet = gen_delays_negative_exp(target, np.random.default_rng(3))
    img = bytearray(pack(inet).data)
    img[offset] = value
    bad = _with_crc(img)
    raster = random_raster(inet, 5, np.random.default_rng(1))
    name = {9: "numeric widths", 6: "inconsistent tables"}[code]
    with pytest.raises(ArtifactError, match=rf"invalid model image \(error {code}: {name}"):
        run_image(bad, inet, raster, host_engine)


@pytest.mark.parametrize(("version", "header"), [(1, 64), (2, 68)])
def test_older_image_versions_refused(version: int, header: int, target, host_engine: Path) -> None:
    """A format-1 (64-byte header, no widths) or format-2 image (68-byte header, no conv sections) is refused by
    the engine and by read_info, by name: never read as format 3."""
    inet = gen_delays_negative_exp(target, np.random.default_rng(3))
    img = bytearray(pack(inet).data)
    img[4:8] = struct.pack("<HH", version, header)
    old = _with_crc(img)
    with pytest.raises(ArtifactError, match=r"error 2: unsupported format version"):
        run_image(old, inet, random_raster(inet, 5, np.random.default_rng(1)), host_engine)
    with pytest.raises(ArtifactError, match=rf"format version {version} .*reads version 3.*Fix: compile again"):
        read_info(old)


@pytest.mark.parametrize(("change", "key"), [
    ({"decay_bits": 17}, "format.decay_bits"),
    ({"state_bits": 30}, "format.state_bits"),
    ({"threshold_shift": 15}, "format.threshold_bits' + 'format.threshold_shift"),
])
def test_pack_refuses_widths_the_engine_cannot_honour(change: dict, key: str, target, tmp_path: Path) -> None:
    """Widths the target loader takes but the engine cannot compute exactly: the packer names the key and a fix,
    and a compile for such a target stops there, before anything is written."""
    inet = gen_delays_negative_exp(target, np.random.default_rng(3))
    inet.format = replace(inet.format, **change)
    with pytest.raises(TargetError, match=re.escape(key)) as err:
        pack(inet)
    assert "Fix:" in str(err.value)
    with pytest.raises(TargetError, match=re.escape(key)):
        neurocc.compile(_small_net(), str(target_toml_with("stm32f405", tmp_path / "wide.toml", **change)))


@pytest.mark.parametrize("widths", [
    {"decay_bits": 16, "activation_shift": 10, "threshold_shift": 8, "state_bits": 28},
    {"decay_bits": 4, "activation_shift": 6, "threshold_shift": 2, "state_bits": 20},
    {"decay_bits": 16, "activation_shift": 31, "threshold_shift": 6, "state_bits": 29},  # the engine's bounds
], ids=lambda w: "-".join(str(v) for v in w.values()))
@pytest.mark.parametrize("case", ["delays_negative_exp", "wrap_and_tonic"])
def test_other_widths_on_host_engine(case: str, widths: dict, host_engine: Path, target) -> None:
    """Generated networks under widths near and at the engine's bounds: bit-exact against simulate_int."""
    make, graded = GENERATED[case]
    rng = np.random.default_rng(len(case))
    inet = make(target, rng)
    raster = random_raster(inet, 150, rng, graded=graded)
    inet.format = fmt = replace(inet.format, **widths)
    for p in inet.populations.values():
        if p.kind != "input":
            p.du, p.dv, p.vth = min(p.du, fmt.decay_max), min(p.dv, fmt.decay_max), min(p.vth, fmt.threshold_max)
    image = pack(inet)
    assert image.data[64:67] == bytes([fmt.decay_bits, fmt.activation_shift, fmt.threshold_shift])
    assert assert_same(inet, raster, run_image(image.data, inet, raster, host_engine).spikes) > 0
