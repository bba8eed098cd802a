"""Cortex-M engine and link: exact counts, not wall time (except the flash-time comparison).

Writes bench/results/cortexm.json:

* instructions per synaptic event and per neuron update on the M4: the model and an input raster
  are compiled into a bench image (firmware/boards/netduinoplus2/bench.c) that runs from QEMU's flash;
  a TCG plugin (firmware/tools/insncount.c, built by `make -C firmware plugin`) counts the Thumb-2
  instructions executed in the engine's delivery and neuron-update code (sections .text.snn_deliver
  and .text.snn_update, bounds from nm), call overhead included. Events are the reference's (nonzero
  synapses of spiking neurons, input counts included) that the engine delivers: a pulled projection
  (delay 0, summed just before its population updates) never delivers the last step's spikes, which
  would arrive after the run. The bench image's spikes are checked against simulate_int too;
* the same for conv networks (the N-MNIST CNN, the corpus conv nets): their kernels are stored once
  and scattered per spike, and `conv_event_share` says how many of the events are conv ones;
* flash and RAM bytes per synapse (synaptic storage, whole image, engine arena);
* wire bytes per spike in STEP frames (both directions, framing included) on QEMU's USART;
* flash time of a 64 KiB image over AN3155: neurocc (stm32loader library over the socket) against
  Debian's stm32flash (through a socat pty), same QEMU, same run, both with read-back verify.

Goals (from the issue): <= 6 instructions per synaptic event, <= 2 bytes per synapse, <= 2 wire bytes
per spike. Not a test: figures, not pass/fail.

    python bench/cortexm.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
GOALS = {"instructions_per_synaptic_event": 6.0, "bytes_per_synapse": 2.0, "wire_bytes_per_spike": 2.0,
         "nmnist_cnn_image_bytes": 128 * 1024}


# ---- instruction counts ----

def bench_input_c(inet, raster) -> tuple[str, str, int]:
    """bench_input.c/.h: per step the (population, neuron, count) input events, as bench.c reads them."""
    from neurocc.runtime.simulator import integer_inputs

    parts = integer_inputs(inet, raster)
    names = list(inet.populations)
    ptr, ev = [0], []
    steps = next(iter(parts.values())).shape[0]
    for t in range(steps):
        for k, n in enumerate(names):
            if n in parts:
                for i in np.flatnonzero(parts[n][t]):
                    ev.append(k << 24 | int(parts[n][t, i]) << 16 | int(i))
        ptr.append(len(ev))
    h = (f"#include <stdint.h>\n#define BENCH_STEPS {steps}u\nextern const uint32_t bench_input_ptr[{steps + 1}];\n"
         f"extern const uint32_t bench_input[{max(1, len(ev))}];\n")
    c = ('#include "bench_input.h"\n'
         f"const uint32_t bench_input_ptr[{steps + 1}] = {{{', '.join(map(str, ptr))}}};\n"
         f"const uint32_t bench_input[{max(1, len(ev))}] = {{{', '.join(map(str, ev or [0]))}}};\n")
    return c, h, steps


def section_ranges(elf: Path) -> dict[str, tuple[int, int]]:
    """The hot paths' address ranges: snn.c puts them in sections .text.snn_deliver / .text.snn_update
    and the linker script brackets each with __snn_<name>_start / _end."""
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    syms = {ln.split()[-1]: int(ln.split()[0], 16) for ln in out.splitlines() if len(ln.split()) == 3}
    ranges = {}
    for name in ("deliver", "update"):
        lo, hi = syms[f"__snn_{name}_start"], syms[f"__snn_{name}_end"]
        if hi <= lo:
            raise RuntimeError(f"{elf}: section .text.snn_{name} is empty")
        ranges[name] = (lo, hi)
    return ranges


def synaptic_events(inet, raster, ref, image) -> tuple[int, int]:
    """(all, conv) nonzero synapses reached by the spikes the engine delivers, input counts weighted: a
    pulled projection delivers steps 0..T-2 (the last step's spikes would arrive after the run)."""
    from neurocc.runtime.simulator import integer_inputs

    parts = integer_inputs(inet, raster)
    pulled = {e["projection"] for e in image.encodings if e["pulled"]}
    total = conv = 0
    for k, proj in enumerate(inet.projections):
        fan = np.diff(proj.weights.tocsc().indptr)  # synapses per pre neuron (a conv's unrolled ones)
        s = parts[proj.pre] if proj.pre in parts else ref.spikes[proj.pre].astype(np.int64)
        if k in pulled:
            s = s[:-1]
        n = int((s * fan[None, :]).sum())
        total += n
        conv += n if proj.conv is not None else 0
    return total, conv


def measure_instructions(name: str, inet, raster, work: Path, plugin: Path) -> dict:
    """Compile the model + raster into a bench image, run it under the counting plugin, check its spikes."""
    from neurocc.backends.cortexm.emit import model_c
    from neurocc.backends.cortexm.image import pack
    from neurocc.runtime.serial.firmware import make
    from neurocc.runtime.simulator import simulate_int

    work.mkdir(parents=True, exist_ok=True)
    image = pack(inet)
    header, source = model_c(image)
    (work / "model.h").write_text(header)
    (work / "model.c").write_text(source)
    c, h, steps = bench_input_c(inet, raster)
    (work / "bench_input.c").write_text(c)
    (work / "bench_input.h").write_text(h)
    make("bench", extra={"MODEL_DIR": str(work), "BENCH_OUT": str(work)})
    elf = work / "bench.elf"
    ranges = section_ranges(elf)
    args = ",".join(f"range{k}={n}:{lo:#x}:{hi:#x}" for k, (n, (lo, hi)) in enumerate(ranges.items()))
    counts_file, uart = work / "counts.txt", work / "uart.bin"
    proc = subprocess.run(["qemu-system-arm", "-M", "netduinoplus2", "-nographic", "-monitor", "none",
                           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
                           "-serial", f"file:{uart}", "-plugin", f"{plugin},out={counts_file},{args}"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench image failed ({proc.returncode}): {proc.stderr[-500:]}")
    counts = dict(line.split() for line in counts_file.read_text().splitlines())
    # the image's own spikes against the reference
    data = uart.read_bytes()
    ref = simulate_int(inet, raster, record=False)
    lifs = [n for n, p in inet.populations.items() if p.kind != "input"]
    pos = 0
    identical = True
    for t in range(steps):
        for n in lifs:
            k = struct.unpack_from("<H", data, pos)[0]
            idx = np.frombuffer(data, "<u2", k, pos + 2)
            pos += 2 + 2 * k
            identical &= np.array_equal(idx, np.flatnonzero(ref.spikes[n][t]))
    assert data[pos:pos + 4] == b"END!", "bench image output out of step"
    st = dict(zip(("steps", "synapse_ops", "neuron_updates", "spikes_in", "spikes_out"),
                  struct.unpack_from("<5I", data, pos + 4), strict=True))
    events, conv_events = synaptic_events(inet, raster, ref, image)
    deliver, update = int(counts["deliver"]), int(counts["update"])
    return {
        "network": name, "neurons": int(inet.n_neurons), "synapses": int(inet.n_synapses), "steps": steps,
        "identical_to_reference": bool(identical),
        "encodings": sorted({f"{e['mode']}/i{e['index_bits']}/{e['weight']}" for e in image.encodings}),
        "synaptic_events": events, "conv_event_share": round(conv_events / max(1, events), 4),
        "synapse_ops": st["synapse_ops"], "neuron_updates": st["neuron_updates"],
        "instructions_total": int(counts["total"]), "instructions_deliver": deliver, "instructions_update": update,
        "instructions_per_synaptic_event": round(deliver / max(1, events), 3),
        "instructions_per_synapse_op": round(deliver / max(1, st["synapse_ops"]), 3),
        "instructions_per_neuron_update": round(update / max(1, st["neuron_updates"]), 3),
        "bytes_per_synapse": round(image.synapse_bytes / max(1, image.synapses), 3),
        "flash_bytes_per_synapse": round(image.size / max(1, image.synapses), 3),
        "ram_bytes_per_synapse": round(image.arena_bytes / max(1, image.synapses), 3),
        "image_bytes": image.size, "arena_bytes": image.arena_bytes,
    }


def bench_networks(quick: bool):
    """(name, IntNetwork, raster): corpus nets that fit, and generated layers that show the inner loop."""
    import scipy.sparse as sp

    import neurocc
    from neurocc.compiler.ir import IntNetwork, IntPopulation, IntProjection, sign_mode_of
    from neurocc.compiler.pipeline import to_integer
    from neurocc.compiler.targets.target import load_target

    target = load_target(os.environ.get("NEUROCC_CORTEXM_TARGET", "stm32f405"))
    out = []
    for stem in (["snntorch_rlif"] if quick else ["snntorch_rlif", "norse_cubalif_mlp", "norse_conv_strided",
                                                  "sinabs_conv", "snntorch_conv"]):
        path = CORPUS / f"{stem}.nir"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = neurocc.load(path, convention=stem.split("_")[0])
        x = np.load(path.with_suffix(".npz"))["input"]
        x = np.concatenate([x] * -(-100 // x.shape[0]))
        out.append((stem, to_integer(net, target), x))
    rng = np.random.default_rng(0)

    def layer(n_in: int, n_out: int, density: float, max_delay: int, p: float, name: str):
        w = np.where(rng.random((n_out, n_in)) < density, rng.integers(-127, 128, (n_out, n_in)) * 2, 0)
        m = sp.csr_array(w.astype(np.int64))
        m.eliminate_zeros()
        d = rng.integers(0, max_delay + 1, m.nnz).astype(np.int64)
        pops = {"in": IntPopulation("in", "in", np.arange(n_in), (n_in,), "input"),
                "out": IntPopulation("out", "out", np.arange(n_out), (n_out,), "lif", 4095, 410, 16384,
                                     np.zeros(n_out, np.int64), np.zeros(n_out, np.int64))}
        inet = IntNetwork(pops, [IntProjection("in", "out", m, d, 6, sign_mode_of(m.data))], ["in"],
                          {"o": ["out"]}, {"out": ["out"]}, target.format, target.name, 1e-3)
        return name, inet, (rng.random((100, n_in)) < p).astype(np.int64)

    if not quick:
        out.append(nmnist_cnn(target))
    out.append(layer(256, 256, 1.0, 0, 0.1, "dense_256x256"))
    out.append(layer(256, 256, 0.25, 0, 0.1, "sparse_256x256_25pct"))
    if not quick:
        out.append(layer(256, 256, 0.25, 15, 0.1, "sparse_256x256_delays_0_15"))
        out.append(layer(1024, 1024, 0.05, 0, 0.05, "sparse_1024x1024_5pct"))
    return out


def nmnist_cnn(target):
    """The NIR paper's N-MNIST CNN (neurocc.workloads) on 20 steps of a 30% random event raster: enough for
    every layer to spike."""
    import neurocc
    from neurocc.compiler.pipeline import to_integer
    from neurocc.workloads import nmnist_cnn_graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(nmnist_cnn_graph(seed=0), dt=1.0, discretization="exp")
    x = (np.random.default_rng(1).random((20, 2, 34, 34)) < 0.3).astype(np.int64)
    return "nmnist_cnn", to_integer(net, target), x


# ---- wire bytes per spike, flash time ----

def wire_bytes(work: Path) -> dict:
    import neurocc
    from neurocc.compiler.pipeline import compile_network
    from neurocc.compiler.targets.target import load_target
    from neurocc.runtime.serial import Emulator, run_detailed

    path = CORPUS / "snntorch_rlif.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = neurocc.load(path, convention="snntorch")
    x = np.load(path.with_suffix(".npz"))["input"]
    target = load_target(os.environ.get("NEUROCC_CORTEXM_TARGET", "stm32f405"))
    out = compile_network(net, target).emit(work / "wire_out")
    res = {}
    with Emulator(out) as emu:
        for report_all in (True, False):
            r = run_detailed(out, emu.url, x, report_all=report_all, load="never")
            spikes_in = int(x.sum())
            spikes_out = int(sum(v.sum() for v in r.spikes.values()))
            wire = r.link["bytes_out"].get(0x30, 0) + r.link["bytes_in"].get(0x30, 0)
            res["all_populations" if report_all else "outputs_only"] = {
                "steps": int(x.shape[0]), "spikes_in": spikes_in, "spikes_out": spikes_out,
                "step_frame_bytes_to_device": r.link["bytes_out"].get(0x30, 0),
                "step_frame_bytes_from_device": r.link["bytes_in"].get(0x30, 0),
                "wire_bytes_per_spike": round(wire / max(1, spikes_in + spikes_out), 3),
            }
    return res


def flash_time(work: Path, size: int = 64 * 1024) -> dict:
    from neurocc.runtime.serial import Qemu, open_port
    from neurocc.runtime.serial.an3155 import APP_START, flash_segments
    from neurocc.runtime.serial.firmware import build_board

    fw = build_board()
    blob = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    (work / "blob.bin").write_bytes(blob)
    res: dict = {"bytes": size, "address": f"0x{APP_START:08x}", "verify": True}
    with Qemu(fw.bootloader) as q:
        with open_port(q.url) as ser:
            rep = flash_segments(ser, [(APP_START, blob)], go=None)
        res["neurocc_stm32loader"] = {"seconds_total": round(rep.seconds_total, 3),
                                      "seconds_write": round(rep.seconds_write, 3),
                                      "seconds_verify": round(rep.seconds_verify, 3),
                                      "kib_per_s": round(size / 1024 / rep.seconds_total, 2)}
        tty = work / "ttyMCU"
        bridge = subprocess.Popen(["socat", f"PTY,link={tty},raw,echo=0", f"TCP:127.0.0.1:{q.port},nodelay"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while not tty.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            t0 = time.monotonic()
            proc = subprocess.run(["stm32flash", "-b", "115200", "-m", "8n1", "-w", str(work / "blob.bin"), "-v",
                                   "-S", f"0x{APP_START:08x}", str(tty)], capture_output=True, text=True, timeout=120)
            secs = time.monotonic() - t0
        finally:
            os.killpg(bridge.pid, 9)
            bridge.wait(timeout=10)
        ok = proc.returncode == 0 and "(100.00%)" in proc.stdout
        res["stm32flash"] = {"seconds_total": round(secs, 3), "kib_per_s": round(size / 1024 / secs, 2), "ok": ok}
    res["neurocc_vs_stm32flash_time_ratio"] = round(res["neurocc_stm32loader"]["seconds_total"] / secs, 3)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two networks, no flash comparison")
    args = ap.parse_args()
    from neurocc.runtime.serial.firmware import build_plugin, require

    require("arm-none-eabi-gcc", "qemu-system-arm", "socat", "stm32flash")
    plugin = build_plugin()
    results: dict = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                                 "qemu": subprocess.run(["qemu-system-arm", "--version"], capture_output=True,
                                                        text=True).stdout.splitlines()[0],
                                 "gcc": subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                                                       text=True).stdout.splitlines()[0]},
                     "goals": GOALS, "networks": []}
    with tempfile.TemporaryDirectory(prefix="neurocc-bench-") as tmp:
        work = Path(tmp)
        for name, inet, x in bench_networks(args.quick):
            r = measure_instructions(name, inet, x, work / name, plugin)
            results["networks"].append(r)
            print(f"{name:32s} {r['instructions_per_synaptic_event']:6.2f} insn/event "
                  f"{r['instructions_per_neuron_update']:6.1f} insn/neuron {r['bytes_per_synapse']:5.2f} B/syn "
                  f"identical={r['identical_to_reference']}", file=sys.stderr)
        results["wire"] = wire_bytes(work)
        if not args.quick:
            results["flash_64k"] = flash_time(work)
    nets = results["networks"]
    convs = [n for n in nets if n["conv_event_share"] > 0.5]
    results["summary"] = {
        "instructions_per_conv_synaptic_event": {n["network"]: n["instructions_per_synaptic_event"] for n in convs},
        "conv_image_bytes": {n["network"]: n["image_bytes"] for n in convs},
        "instructions_per_synaptic_event_best": min(n["instructions_per_synaptic_event"] for n in nets),
        "instructions_per_synaptic_event_worst": max(n["instructions_per_synaptic_event"] for n in nets),
        "bytes_per_synapse_best": min(n["bytes_per_synapse"] for n in nets),
        "bytes_per_synapse_worst": max(n["bytes_per_synapse"] for n in nets),
        "wire_bytes_per_spike": results["wire"]["all_populations"]["wire_bytes_per_spike"],
        "all_identical_to_reference": all(n["identical_to_reference"] for n in nets),
    }
    RESULTS.mkdir(exist_ok=True)
    tmp_path = RESULTS / "cortexm.json.tmp"
    tmp_path.write_text(json.dumps(results, indent=1) + "\n")
    tmp_path.replace(RESULTS / "cortexm.json")
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    main()
