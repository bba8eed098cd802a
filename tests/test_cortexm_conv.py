"""Cortex-M convolution: the kernel stored once in the model image (format 3), scattered per spike by the C engine.

The engine built for the host == simulate_int, bit for bit, on the N-MNIST CNN, every corpus conv net (on every
MCU target), conv geometries from the frontend (groups, dilation, asymmetric stride, Conv1d, pools alone, before a
conv, overlapping, before Flatten -> Linear) and hand-built integer networks that reach each engine path (graded
inputs, a floor-shifted conv, int16 kernels, stored u, a conv into a channel-first ring beside a delayed
projection, a pushed conv in a cycle). The N-MNIST image is <= 128 KiB and fits every MCU target; an image of
format 2 and a conv table that disagrees with its geometry are refused by name; a conv the engine cannot express
gets a named error. One short QEMU run of the N-MNIST CNN, flashed over AN3155.
"""

from __future__ import annotations

import os
import shutil
import struct
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import nir
import numpy as np
import pytest
import scipy.sparse as sp

import neurocc
from neurocc.backends.cortexm import pack, read_info
from neurocc.backends.cortexm.image import HEADER_SIZE
from neurocc.compiler.errors import ArtifactError, TargetError
from neurocc.compiler.ir import IntNetwork, IntPopulation, IntProjection, Mapping, sign_mode_of
from neurocc.compiler.ir.conv import Conv, Pool, conv_output_size
from neurocc.compiler.pipeline import compile_network
from neurocc.compiler.targets.target import load_target
from neurocc.runtime.executors.cortexm import run_image
from neurocc.runtime.serial.firmware import build_host
from neurocc.runtime.simulator import simulate_int
from neurocc.workloads import nmnist_cnn_graph

from .conftest import CORPUS_DIR, convention_of

MCU_TARGETS = ("stm32f405", "nrf52840", "stm32h743")
CONV_NETS = sorted(CORPUS_DIR.glob("*conv*.nir"))
KIB = 1024


@pytest.fixture(scope="session")
def host_engine() -> Path:
    if os.environ.get("CI") == "true" or shutil.which("gcc"):
        return build_host()  # a missing gcc raises ToolchainError: in CI that is a failure, never a skip
    pytest.skip("gcc not installed")


def quiet_load(graph: nir.NIRGraph | Path, **kw: object) -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return neurocc.load(graph, **kw)


def assert_bit_exact(inet: IntNetwork, got: dict[str, np.ndarray], raster: object, min_spikes: int = 1) -> None:
    ref = simulate_int(inet, raster, record=False)
    for name, p in inet.populations.items():
        if p.is_input:
            continue
        diff = np.argwhere(ref.spikes[name] != got[name])
        assert not diff.size, f"{name}: first divergence at step {diff[0][0]}, neuron {diff[0][1]}"
        assert ref.spikes[name].sum() >= min_spikes, f"{name}: too few spikes for a test"


def conv_encodings(mapping: Mapping) -> list[dict]:
    convs = {k for k, p in enumerate(mapping.network.projections) if p.conv is not None}
    assert convs, "the frontend made no conv projection"
    enc = [e for e in mapping.image.encodings if e["projection"] in convs]
    assert {e["projection"] for e in enc} == convs and all(e["mode"] == "conv" for e in enc), \
        "a conv projection got rows instead of its kernel"
    return enc


# ---- the N-MNIST CNN ----------------------------------------------------------------------------------------

def nmnist_raster(steps: int, rate: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(1).random((steps, 2, 34, 34)) < rate).astype(np.int64)


@pytest.fixture(scope="module")
def nmnist() -> neurocc.Network:
    return quiet_load(nmnist_cnn_graph(seed=0), dt=1.0, discretization="exp")


@pytest.fixture(scope="module")
def nmnist_f405(nmnist) -> Mapping:
    return compile_network(nmnist, "stm32f405", progress=False)


@pytest.mark.parametrize("target", MCU_TARGETS)
def test_nmnist_image_fits_every_mcu(nmnist, nmnist_f405, target: str) -> None:
    """<= 128 KiB (the unrolled rows took 5.2 MB); every conv projection is its kernel, stored once."""
    mapping = nmnist_f405 if target == "stm32f405" else compile_network(nmnist, target, progress=False)
    image = mapping.image
    assert image.size <= 128 * KIB
    assert image.fit["flash_needed"] <= image.fit["flash_bytes"] and image.fit["ram_needed"] <= image.fit["ram_bytes"]
    enc = conv_encodings(mapping)
    assert len(enc) == 4 and all(e["weight"] == "s8" for e in enc)  # 8-bit mantissas: int8 kernels
    kernels = sum(p.conv.kernel.size for p in mapping.network.projections if p.conv is not None)
    assert sum(e["kernel_bytes"] for e in enc) == kernels == sum(image.kernel_bytes_by_population.values())
    # the image holds each kernel once, plus geometry: tables and records take a few KiB, not rows
    assert image.synapse_bytes < kernels + 2560 + 4 * KIB  # + fc2's dense 10 x 256 rows
    assert image.synapse_bytes / image.synapses < 0.05


def test_nmnist_bit_exact_on_host_engine(nmnist_f405, host_engine: Path) -> None:
    inet = nmnist_f405.network
    x = nmnist_raster(20)
    run = run_image(nmnist_f405.image.data, inet, x, host_engine)
    assert_bit_exact(inet, run.spikes, x)
    assert run.stats["arena_bytes"] == nmnist_f405.image.arena_bytes


# ---- the corpus conv nets, every MCU target -------------------------------------------------------------

@pytest.mark.parametrize("target", MCU_TARGETS)
@pytest.mark.parametrize("path", CONV_NETS, ids=[p.stem for p in CONV_NETS])
def test_corpus_conv_net_fits_and_is_bit_exact(path: Path, target: str, host_engine: Path) -> None:
    assert CONV_NETS, f"no conv nets in {CORPUS_DIR}"
    net = quiet_load(path, convention=convention_of(path))
    mapping = compile_network(net, target, progress=False)  # a TargetError here: it does not fit
    conv_encodings(mapping)
    x = np.load(path.with_suffix(".npz"))["input"]
    x = np.concatenate([x] * 3)
    assert_bit_exact(mapping.network, run_image(mapping.image.data, mapping.network, x, host_engine).spikes, x)


# ---- geometries through the frontend ----------------------------------------------------------------------

def _conv2d(rng: np.random.Generator, c_out: int, c_in_g: int, k: tuple[int, int], hw: tuple[int, int],
            stride: object = 1, padding: object = 0, dilation: object = 1, groups: int = 1) -> nir.Conv2d:
    return nir.Conv2d(input_shape=hw, weight=rng.normal(0.35, 0.5, (c_out, c_in_g, *k)), stride=stride,
                      padding=padding, dilation=dilation, groups=groups, bias=np.zeros(c_out))


def _pool(kind: type, k: int, stride: int, padding: int = 0) -> nir.NIRNode:
    return kind(kernel_size=np.array([k, k]), stride=np.array([stride, stride]), padding=np.array([padding] * 2))


def _if(shape: tuple[int, ...], threshold: float = 1.0) -> nir.IF:
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, threshold), v_reset=np.zeros(shape))


def _chain(nodes: dict[str, nir.NIRNode]) -> nir.NIRGraph:
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)), type_check=False)


def geometry(case: str) -> tuple[nir.NIRGraph, tuple[int, ...]]:
    rng = np.random.default_rng(7)
    if case == "groups_dilation":
        shape = (4, 9, 9)
        body = {"conv": _conv2d(rng, 6, 2, (3, 3), (9, 9), padding=2, dilation=2, groups=2), "if1": _if((6, 9, 9))}
    elif case == "stride_asymmetric":
        shape = (2, 11, 10)
        body = {"conv": _conv2d(rng, 3, 2, (3, 2), (11, 10), stride=(3, 2), padding=(1, 0)), "if1": _if((3, 4, 5))}
    elif case == "conv1d":
        shape = (3, 20)
        body = {"conv": nir.Conv1d(input_shape=20, weight=rng.normal(0.35, 0.5, (4, 3, 5)), stride=2, padding=2,
                                   dilation=1, groups=1, bias=np.zeros(4)), "if1": _if((4, 10))}
    elif case == "pools":  # a depthwise pool alone, a pool prefix before a conv, an AvgPool before Flatten -> Linear
        shape = (2, 12, 12)
        body = {"conv1": _conv2d(rng, 4, 2, (3, 3), (12, 12), padding=1), "if1": _if((4, 12, 12)),
                "pool1": _pool(nir.SumPool2d, 3, 2, 1), "if2": _if((4, 6, 6), 0.5),
                "pool2": _pool(nir.SumPool2d, 2, 2), "conv2": _conv2d(rng, 4, 4, (3, 3), (3, 3), padding=1),
                "if3": _if((4, 3, 3)), "pool3": _pool(nir.AvgPool2d, 3, 3),
                "flat": nir.Flatten(input_type={"input": np.array([4, 1, 1])}, start_dim=0, end_dim=-1),
                "fc": nir.Linear(weight=rng.normal(1.0, 1.0, (5, 4))), "if4": _if((5,), 0.3)}
    elif case == "overlapping_pool_then_conv":  # a 3x3 stride-2 pool with padding before a stride-2 conv
        shape = (3, 13, 13)
        body = {"pool": _pool(nir.SumPool2d, 3, 2, 1), "conv": _conv2d(rng, 5, 3, (3, 3), (7, 7), stride=2, padding=1),
                "if1": _if((5, 4, 4), 2.0)}
    else:
        raise ValueError(case)
    out_shape = np.array(list(body.values())[-1].v_threshold.shape)
    inp = {"input": nir.Input(input_type={"input": np.array(shape)})}
    return _chain({**inp, **body, "output": nir.Output(output_type={"output": out_shape})}), shape


@pytest.mark.parametrize("case", ["groups_dilation", "stride_asymmetric", "conv1d", "pools",
                                  "overlapping_pool_then_conv"])
def test_geometry_bit_exact_on_host_engine(case: str, host_engine: Path) -> None:
    graph, in_shape = geometry(case)
    mapping = compile_network(quiet_load(graph, dt=1.0), "stm32f405", progress=False)
    enc = conv_encodings(mapping)
    convs = [p.conv for p in mapping.network.projections if p.conv is not None]
    if case == "pools":
        assert any(c.pool is not None for c in convs) and any(c.groups > 1 for c in convs)
    if case == "groups_dilation":
        assert any(c.groups == 2 and c.dilation == (2, 2) for c in convs)
    assert all(e["pulled"] for e in enc)
    x = (np.random.default_rng(3).random((60, *in_shape)) < 0.3).astype(np.int64)
    assert_bit_exact(mapping.network, run_image(mapping.image.data, mapping.network, x, host_engine).spikes, x)


# ---- hand-built integer networks: each engine path -----------------------------------------------------

def _lif(name: str, shape: tuple[int, ...], vth: int, du: int = 4095, dv: int = 0) -> IntPopulation:
    n = int(np.prod(shape))
    return IntPopulation(name, name, np.arange(n), shape, "lif", du, dv, vth, np.zeros(n, np.int64),
                         np.zeros(n, np.int64))


def _conv_proj(pre: IntPopulation, post: IntPopulation, rng: np.random.Generator, k: tuple[int, int], exp: int,
               stride: tuple[int, int] = (1, 1), pad: tuple[int, int] = (1, 1), groups: int = 1,
               pool: Pool | None = None, wmax: int = 120) -> IntProjection:
    kernel = 2 * rng.integers(-wmax // 2, wmax // 2 + 1, (post.shape[0], pre.shape[0] // groups, *k))
    conv = Conv(kernel.astype(np.int16), pre.shape, post.shape, stride, pad, (1, 1), groups, pool)
    w = conv.unrolled().astype(np.int64)
    return IntProjection(pre.name, post.name, w, np.zeros(w.nnz, np.int64), exp, sign_mode_of(w.data), conv=conv)


def _net(pops: list[IntPopulation], projs: list[IntProjection], target, weight_bits: int | None = None) -> IntNetwork:
    fmt = target.format if weight_bits is None else replace(target.format, weight_bits=weight_bits)
    lifs = [p.name for p in pops if not p.is_input]
    return IntNetwork({p.name: p for p in pops}, projs, [p.name for p in pops if p.is_input], {"out": [lifs[-1]]},
                      {n: [n] for n in lifs}, fmt, target.name, 1e-3)


def _out_shape(c: int, hw: tuple[int, int], k: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
               pool: Pool | None = None) -> tuple[int, int, int]:
    if pool is not None:
        hw = pool.out_size(*hw)
    return (c, conv_output_size(hw[0], k[0], stride[0], pad[0], 1), conv_output_size(hw[1], k[1], stride[1], pad[1], 1))


def engine_case(case: str, target) -> tuple[IntNetwork, int]:
    """(network, largest input count) for one engine path."""
    rng = np.random.default_rng(len(case))
    inp = IntPopulation("in", "in", np.arange(2 * 10 * 10), (2, 10, 10), "input")
    if case == "graded_floor_cuba":  # counts up to 4, a negative (floor) shift, u stored, a 5x5 stride-2 conv
        a = _lif("a", _out_shape(8, (10, 10), (5, 5), (2, 2), (2, 2)), 2000, du=1200, dv=300)
        return _net([inp, a], [_conv_proj(inp, a, rng, (5, 5), -2, (2, 2), (2, 2))], target), 4
    if case == "int16_kernel_pool":  # 12-bit mantissas: an int16 kernel; a pool prefix; depthwise after it
        shape = _out_shape(4, (10, 10), (3, 3), (1, 1), (1, 1), Pool((2, 2), (2, 2), (0, 0)))
        a, b = _lif("a", shape, 40000), _lif("b", shape, 20000)
        return _net([inp, a, b], [_conv_proj(inp, a, rng, (3, 3), 2, pool=Pool((2, 2), (2, 2), (0, 0)), wmax=3000),
                                  _conv_proj(a, b, rng, (3, 3), 3, groups=4, wmax=3000)], target, 12), 1
    if case == "channel_first_with_delays":  # conv + a delayed dense projection into one population: rings
        a = _lif("a", _out_shape(6, (10, 10), (3, 3), (1, 1), (1, 1)), 3000)
        m = sp.random(a.size, inp.size, density=0.02, random_state=1, format="csr",
                      data_rvs=lambda n: 2 * rng.integers(-60, 61, n)).astype(np.int64)
        m.eliminate_zeros()
        dense = IntProjection("in", "a", sp.csr_array(m), rng.integers(0, 5, m.nnz), 1, sign_mode_of(m.data))
        return _net([inp, a], [_conv_proj(inp, a, rng, (3, 3), 1), dense], target), 2
    if case == "pushed_conv_cycle":  # a -> b and b -> a, both convs: the back edge is pushed into a ring
        a = _lif("a", (3, 10, 10), 1500)
        b = _lif("b", (3, 10, 10), 800)
        return _net([inp, a, b], [_conv_proj(inp, a, rng, (3, 3), 2), _conv_proj(a, b, rng, (3, 3), 3),
                                  _conv_proj(b, a, rng, (3, 3), 0, wmax=40)], target), 1
    raise ValueError(case)


ENGINE_CASES = ("graded_floor_cuba", "int16_kernel_pool", "channel_first_with_delays", "pushed_conv_cycle")


@pytest.mark.parametrize("case", ENGINE_CASES)
def test_engine_paths_bit_exact(case: str, host_engine: Path) -> None:
    target = load_target("stm32f405")
    inet, graded = engine_case(case, target)
    image = pack(inet)
    enc = [e for e in image.encodings if e["mode"] == "conv"]
    assert len(enc) == sum(p.conv is not None for p in inet.projections)
    if case == "int16_kernel_pool":
        assert {e["weight"] for e in enc} == {"s16"}
    if case == "pushed_conv_cycle":
        assert {e["pulled"] for e in enc} == {True, False}
    if case == "channel_first_with_delays":
        assert not any(e["pulled"] for e in image.encodings if e["mode"] != "conv")
    rng = np.random.default_rng(2)
    x = {"in": (rng.random((80, inp_size(inet))) < 0.3) * rng.integers(1, graded + 1, (80, inp_size(inet)))}
    run = run_image(image.data, inet, x, host_engine)
    assert_bit_exact(inet, run.spikes, x)
    assert run.stats["arena_bytes"] == image.arena_bytes


def inp_size(inet: IntNetwork) -> int:
    return inet.populations["in"].size


def test_engine_paths_cover_layouts_and_flags() -> None:
    """The cases above reach a channel-last and a channel-first conv, a pulled and a pushed one, stored u."""
    target = load_target("stm32f405")
    flags, layouts = set(), set()
    for case in ENGINE_CASES:
        data = pack(engine_case(case, target)[0]).data
        n_pops, n_rings, n_groups = struct.unpack_from("<HHH", data, 20)
        pops_off, _, groups_off = struct.unpack_from("<III", data, 36)
        flags |= {data[pops_off + 32 * k + 1] for k in range(n_pops)}
        for g in range(n_groups):
            off = groups_off + 32 * g
            if data[off + 5] == 32:  # G_CONV: the record's layout byte
                layouts.add(data[struct.unpack_from("<I", data, off + 12)[0] + 32])
    assert layouts == {0, 1}
    assert any(f & 4 for f in flags) and any(f & 8 for f in flags)  # POPF_U, POPF_HWC


# ---- refused images and convs ---------------------------------------------------------------------------

def _with_crc(data: bytearray) -> bytes:
    data[12:16] = struct.pack("<I", zlib.crc32(bytes(data[16:])))
    return bytes(data)


def test_format_2_image_refused(nmnist_f405, host_engine: Path) -> None:
    """A conv image whose header says format 2 (68-byte header, convs as rows) is never read as format 3."""
    old = bytearray(nmnist_f405.image.data)
    old[4:8] = struct.pack("<HH", 2, 68)
    old = _with_crc(old)
    with pytest.raises(ArtifactError, match=r"format version 2 \(header 68 bytes\); this neurocc reads version 3 "
                                            r"\(76-byte header.*Fix: compile again"):
        read_info(old)
    with pytest.raises(ArtifactError, match=r"error 2: unsupported format version"):
        run_image(old, nmnist_f405.network, nmnist_raster(2), host_engine)


def _conv_record(data: bytes) -> int:
    n_groups = struct.unpack_from("<H", data, 24)[0]
    groups_off = struct.unpack_from("<I", data, 44)[0]
    for g in range(n_groups):
        if data[groups_off + 32 * g + 5] == 32:
            return struct.unpack_from("<I", data, groups_off + 32 * g + 12)[0]
    raise AssertionError("no conv group")


@pytest.mark.parametrize("what", ["stride", "table_entry", "layout"])
def test_conv_table_disagreeing_with_geometry_refused(what: str, nmnist_f405, host_engine: Path) -> None:
    """The engine recomputes the tap tables from the geometry: an edited stride, tap or layout is refused."""
    data = bytearray(nmnist_f405.image.data)
    rec = _conv_record(bytes(data))
    if what == "stride":
        data[rec + 16] += 1  # sy
    elif what == "table_entry":
        rows_off = struct.unpack_from("<I", data, rec + 36)[0]
        h_in = struct.unpack_from("<H", data, rec + 2)[0]
        data[rows_off + (2 * (h_in + 1) + 3) // 4 * 4 + 2] ^= 1  # first row run's sum offset
    else:
        data[rec + 32] ^= 1
    with pytest.raises(ArtifactError, match=r"error 6: inconsistent tables"):
        run_image(_with_crc(data), nmnist_f405.network, nmnist_raster(2), host_engine)


def test_conv_the_engine_cannot_express_is_named() -> None:
    target = load_target("stm32f405")
    inet, _ = engine_case("graded_floor_cuba", target)
    proj = inet.projections[0]
    delayed = replace(proj, delays=np.ones_like(proj.delays))
    with pytest.raises(TargetError, match=r"conv projection with synaptic delays.*Fix:"):
        pack(replace(inet, projections=[delayed]))
    wide = replace(proj, conv=replace(proj.conv, padding=(300, 2)))
    with pytest.raises(TargetError, match=r"padding 300.*8 bits.*Fix:"):
        pack(replace(inet, projections=[wide]))
    huge = replace(proj, conv=proj.conv.with_kernel(proj.conv.kernel.astype(np.int64) * 100000))
    with pytest.raises(TargetError, match=r"kernel mantissas span .*int8 or int16.*Fix:"):
        pack(replace(inet, projections=[huge]))


def test_header_is_76_bytes(nmnist_f405) -> None:
    data = nmnist_f405.image.data
    assert struct.unpack_from("<HH", data, 4) == (3, HEADER_SIZE) and HEADER_SIZE == 76


# ---- QEMU: the N-MNIST CNN on the emulated STM32F405, flashed over AN3155 -----------------------------

QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm", "make")


def test_nmnist_on_qemu_flashed_over_an3155(nmnist_f405, tmp_path: Path) -> None:
    """Flash the app and the CNN's image over AN3155 (read-back verify, Go), step 10 steps over USART1."""
    missing = [t for t in QEMU_TOOLS if shutil.which(t) is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs {', '.join(missing)}")
        pytest.skip(f"missing {', '.join(missing)}")
    from neurocc.runtime.serial import Qemu, flash, run_detailed
    from neurocc.runtime.serial.firmware import build_board

    out = nmnist_f405.emit(tmp_path / "out")
    x = nmnist_raster(10)
    firmware = build_board("netduinoplus2")
    q = Qemu(firmware.bootloader)
    q.start()
    try:
        report = flash(out, q.url, progress=False)
        assert report.device_id == 0x413
        res = run_detailed(out, q.url, x, load="auto")
    finally:
        q.stop()
    assert not q.alive()
    assert not res.loaded  # flashed with the app: nothing to load
    assert res.stats["steps"] == x.shape[0]
    assert_bit_exact(nmnist_f405.network, res.spikes, x, min_spikes=0)
    assert sum(int(res.spikes[n].sum()) for n in ("if1", "if2", "if3", "if4")) > 1000


def test_budget_counts_kernels_once_and_names_them(nmnist_f405) -> None:
    """The flash budget is the image (each kernel once), x2 load slots, + firmware; over it, the conv
    population that needs the most is named with its kernel bytes."""
    from neurocc.backends.cortexm import check_fit

    image, target = nmnist_f405.image, nmnist_f405.target
    fit = check_fit(target, image)
    assert fit["flash_needed"] == target.board.firmware_flash_bytes + 2 * image.size
    assert fit["kernel_bytes"] == sum(p.conv.kernel.size for p in nmnist_f405.network.projections if p.conv)
    small = replace(target, memory=replace(target.memory, flash_bytes=fit["flash_needed"] - 1))
    with pytest.raises(TargetError, match=r"population 'if4'.*conv kernels take 32768 bytes \(stored once\).*"):
        check_fit(small, image)
