"""The `neurocc` command. Every verb mirrors an API function; user errors print one line and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .compiler.errors import NeuroccError


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz.tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _load(args: argparse.Namespace):
    from . import load

    return load(args.model, dt=args.dt, convention=args.convention)


def cmd_inspect(args: argparse.Namespace) -> int:
    from .runtime.report import inspect_text

    print(inspect_text(_load(args)))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .api import quantization_report, read_raster
    from .runtime.report import plot_raster
    from .runtime.simulator import simulate_float

    net = _load(args)
    raster = read_raster(args.input)
    if args.compare:
        if not args.target:
            raise NeuroccError("--compare needs --target T (the integer format to compare against)")
        rep = quantization_report(net, args.target, raster)
        print(rep.text())
        result = rep.float_run
        arrays = {f"float/{k}": v for k, v in rep.float_run.as_arrays().items()}
        arrays.update({f"int/{k}": v for k, v in rep.int_run.as_arrays().items()})
    else:
        result = simulate_float(net, raster)
        arrays = result.as_arrays()
        for out, pop in net.outputs.items():
            counts = result.spikes[pop].sum(0)
            print(f"output {out} <- {pop}: {int(counts.sum())} spikes over {result.steps} steps; "
                  f"per neuron {counts.tolist()}")
    if args.output:
        _save_npz(Path(args.output), arrays)
        print(f"wrote {args.output}")
    if args.plot:
        plot_raster(result, args.plot, title=f"{Path(args.model).name}")
        print(f"wrote {args.plot}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from .api import compile as compile_
    from .api import read_raster

    net = _load(args)
    raster = read_raster(args.input) if args.input else None
    mapping = compile_(net, args.target, progress=False if args.quiet else None, inputs=raster)
    out = mapping.emit(args.output)
    summary = mapping.summary()
    where = (f"{len(mapping.slices)} populations on one CPU" if mapping.target.one_cpu else
             f"{summary['cores_used']} cores on {summary['chips_used']} chip(s)")
    print(f"compiled for {args.target}: {summary['neurons']} neurons, {summary['synapses']} synapses, {where} -> {out}")
    if args.timings:
        for name, sec in mapping.timings.items():
            print(f"  {name:<12} {sec * 1e3:9.2f} ms")
    if args.plot:
        from .runtime.placement_sim import plot_placement, simulate_placement

        if raster is None:
            raster = _random_raster(mapping, args.steps, args.rate)
        for path in plot_placement(simulate_placement(mapping, raster), mapping, args.plot):
            print(f"wrote {path}")
    return 0


def _random_raster(mapping, steps: int, rate: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = mapping.network.populations[mapping.network.inputs[0]].shape
    print(f"(no --input: replaying {steps} steps of random input at p={rate})")
    return (rng.random((steps, *shape)) < rate).astype(np.float32)


def cmd_place(args: argparse.Namespace) -> int:
    from .api import compile as compile_
    from .api import read_raster
    from .runtime.placement_sim import plot_placement, simulate_placement
    from .runtime.report import table

    net = _load(args)
    raster = read_raster(args.input) if args.input else None
    mapping = compile_(net, args.target, progress=False if args.quiet else None, inputs=raster)
    if mapping.target.one_cpu:
        image = mapping.image
        print(f"{mapping.target.name}: {len(mapping.slices)} populations on one CPU"
              + (f"; model image {image.size} B, flash {image.fit.get('flash_needed')} of "
                 f"{image.fit.get('flash_bytes')} B, RAM {image.fit.get('ram_needed')} of "
                 f"{image.fit.get('ram_bytes')} B" if image is not None else ""))
    else:
        usage, budget, routing = mapping.usage or [], mapping.target.core, mapping.routing
        placement = mapping.placement
        print(f"{mapping.target.name}: {len(mapping.slices)} cores on {len({s.chip for s in mapping.slices})} "
              f"chip(s); placement {placement.method if placement else '-'}; routing entries "
              f"{routing.entries_before() if routing else 0} -> {routing.entries_after() if routing else 0} "
              "after compression")
        print(table(["slice", "chip", "core", "neurons", "synapses", "synapse B", "of budget", "fan-in",
                     "out axons"],
                    [[s.label, f"{s.chip[0]},{s.chip[1]}", s.core, u.neurons, u.synapses, u.synapse_bytes,
                      f"{100 * u.synapse_bytes / budget.synapse_memory_bytes:.1f}%", u.fan_in, u.out_axons]
                     for s, u in zip(mapping.slices, usage, strict=True)]))
    if raster is None:
        print()
        raster = _random_raster(mapping, args.steps, args.rate)
    report = simulate_placement(mapping, raster)
    print()
    print(report.text())
    if args.plot:
        for path in plot_placement(report, mapping, args.plot):
            print(f"wrote {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .api import read_raster, verify

    report = verify(args.out_dir, read_raster(args.input), emulate=not args.host)
    print(report.text())
    if args.output:
        _save_npz(Path(args.output), {f"{k}.spikes": v for k, v in report.executor_spikes.items()})
    return 0 if report.identical else 1


def cmd_flash(args: argparse.Namespace) -> int:
    from .runtime.serial import flash

    rep = flash(args.out_dir, args.port, progress=not args.quiet, verify=not args.no_verify)
    print(f"flashed {rep.bytes_written} bytes to device 0x{rep.device_id:04x} (bootloader "
          f"v{rep.bootloader_version >> 4}.{rep.bootloader_version & 15}) in {rep.seconds_total:.2f} s"
          f"{'' if args.no_verify else ', verified by read-back'}; app started")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .api import read_raster
    from .runtime.serial import run_detailed

    res = run_detailed(args.out_dir, args.port, read_raster(args.input), report_all=not args.outputs_only)
    steps = next(iter(res.spikes.values())).shape[0] if res.spikes else 0
    print(f"{steps} steps in {res.seconds:.2f} s on {args.port}{' (model loaded first)' if res.loaded else ''}")
    for name, s in res.spikes.items():
        print(f"  {name}: {int(s.sum())} spikes")
    if args.output:
        _save_npz(Path(args.output), {f"{k}.spikes": v for k, v in res.spikes.items()})
        print(f"wrote {args.output}")
    return 0


def cmd_emulate(args: argparse.Namespace) -> int:
    from .runtime.serial import emulate

    emulate(args.out_dir, block=True)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .compiler.frontend.convert import convert_file

    threshold: str | float = args.threshold
    if threshold != "calibrate":
        try:
            threshold = float(threshold)
        except ValueError:
            raise NeuroccError(f"--threshold {args.threshold!r}: give 'calibrate' or a number. "
                               "Fix: e.g. --threshold calibrate") from None
    out = convert_file(args.model, args.calibration, args.output, percentile=args.percentile, steps=args.steps,
                       threshold=threshold)
    print(f"converted {args.model} -> {out} (IF SNN, {args.percentile:g}th-percentile normalisation, "
          f"rate-coded input over {args.steps} steps)")
    return 0


def cmd_from_torch(args: argparse.Namespace) -> int:
    from .compiler.frontend.torch_export import export_file

    out = export_file(args.entry, args.sample, args.output, args.framework)
    print(f"exported {args.entry} -> {out} (dt, framework and convention in its metadata: "
          f"`neurocc inspect {out}` needs no flags)")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from .compiler.backend import backend_for, families
    from .compiler.targets.target import load_target, shipped_targets
    from .runtime.report import table

    targets = [load_target(name) for name in shipped_targets()]
    mesh_rows, cpu_rows = [], []
    for t in targets:
        if t.mesh is not None and t.core is not None and t.router is not None:
            mesh_rows.append([t.name, t.family, f"{t.mesh.chips_x}x{t.mesh.chips_y}x{t.mesh.cores_per_chip}",
                              t.core.neurons, t.core.synapse_memory_bytes, t.core.input_axons, t.core.delay_slots,
                              t.router.entries_per_chip, f"{t.format.weight_bits}b", t.format.max_delay])
        else:
            memory, board = t.memory, t.board
            cpu_rows.append([t.name, t.family, board.name if board else "-", memory.flash_bytes if memory else "-",
                             memory.ram_bytes if memory else "-", f"{t.format.weight_bits}b", t.format.max_delay])
    print(table(["target", "family", "chips x cores", "neurons/core", "synapse B/core", "fan-in",
                 "delay slots", "router entries", "weights", "max delay"], mesh_rows))
    if cpu_rows:
        print()
        print(table(["target", "family", "board", "flash B", "RAM B", "weights", "max delay"], cpu_rows))
    print()
    print("families: " + "; ".join(f"{f} ({backend_for(f).description}; passes "
                                   f"{' -> '.join(p.name for p in backend_for(f).passes)})" for f in families()))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep.run import sweep

    if args.workers is not None and (args.scheduler or args.serial):
        raise NeuroccError("--workers sizes the embedded LocalCluster; with --scheduler the cluster has its own "
                           "workers and --serial runs in this process. Fix: drop --workers")
    df = sweep(args.spec, out_dir=args.output, scheduler=args.scheduler, workers=args.workers, serial=args.serial,
               window=args.window, progress=False if args.quiet else None)
    from .sweep.table import summary_text, write_table  # after the run: its import never delays an error

    print(f"{len(df)} points: {df.attrs['executed']} run now, {df.attrs['reused']} already in {args.output}"
          + (f"; {df.attrs['failed']} crashed (not stored: a rerun tries them again)" if df.attrs["failed"] else ""))
    print(summary_text(df))
    print(f"wrote {write_table(df, args.output)}")
    if args.plot:
        from .sweep.plots import plot_sweep

        for path in plot_sweep(df, args.output):
            print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neurocc", description="Compile spiking neural networks from NIR.")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model", help=".nir file")
        sp.add_argument("--dt", type=float, default=None,
                        help="timestep in seconds (default: recorded in the file or inferred from its exporter's "
                             "signature; else 1 ms with a warning)")
        sp.add_argument("--convention", default=None,
                        choices=["nir", "snntorch", "norse", "sinabs", "rockpool"],
                        help="how the exporter encoded time constants (sets dt and discretisation)")

    sp = sub.add_parser("inspect", help="populations, synapses, delays and parameter ranges")
    model_args(sp)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("simulate", help="float simulation; --target T --compare adds the integer run")
    model_args(sp)
    sp.add_argument("--input", required=True, help=".npz with `input` [T, *in_shape]")
    sp.add_argument("-o", "--output", help="write every population's spikes to this .npz")
    sp.add_argument("--plot", help="write a spike raster (.png)")
    sp.add_argument("--target", help="target whose integer format --compare uses")
    sp.add_argument("--compare", action="store_true", help="float vs integer agreement per population")
    sp.set_defaults(func=cmd_simulate)

    sp = sub.add_parser("compile", help="run the passes and the target's backend")
    model_args(sp)
    sp.add_argument("--target", required=True)
    sp.add_argument("-o", "--output", required=True, help="output directory")
    sp.add_argument("--timings", action="store_true", help="print each pass's time")
    sp.add_argument("--input", help=".npz raster: weighs placement by measured rates, replayed for --plot")
    sp.add_argument("--plot", help="directory for the placement figures (core load, link traffic, step time)")
    sp.add_argument("--steps", type=int, default=100, help="steps of random input for --plot without --input")
    sp.add_argument("--rate", type=float, default=0.1, help="spike probability of that random input")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_compile)

    sp = sub.add_parser("place", help="placement simulation only: cores, load, traffic, latency, energy")
    model_args(sp)
    sp.add_argument("--target", required=True)
    sp.add_argument("--input", help=".npz raster to replay (default: random input)")
    sp.add_argument("--steps", type=int, default=100, help="steps of random input when --input is not given")
    sp.add_argument("--rate", type=float, default=0.1, help="spike probability of the random input")
    sp.add_argument("--plot", help="directory for core-load, link-traffic and step-time figures")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_place)

    sp = sub.add_parser("verify", help="run artifacts on their executor, diff against the reference")
    sp.add_argument("out_dir")
    sp.add_argument("--input", required=True)
    sp.add_argument("-o", "--output", help="write the executor's spikes to this .npz")
    sp.add_argument("--host", action="store_true", help="Cortex-M: run the host-built engine instead of QEMU")
    sp.set_defaults(func=cmd_verify)

    sp = sub.add_parser("flash", help="Cortex-M: write firmware and model over ST's serial bootloader (AN3155)")
    sp.add_argument("out_dir")
    sp.add_argument("--port", required=True, help="serial port or URL (/dev/ttyUSB0, socket://127.0.0.1:PORT)")
    sp.add_argument("--no-verify", action="store_true", help="skip the read-back check")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_flash)

    sp = sub.add_parser("run", help="Cortex-M: stream an input raster through a flashed device")
    sp.add_argument("out_dir")
    sp.add_argument("--port", required=True)
    sp.add_argument("--input", required=True, help=".npz with `input` [T, *in_shape]")
    sp.add_argument("-o", "--output", help="write output spikes to this .npz")
    sp.add_argument("--outputs-only", action="store_true", help="only the network's outputs, not every layer")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("emulate", help="Cortex-M: build firmware, start QEMU netduinoplus2, flash, serve its port")
    sp.add_argument("out_dir")
    sp.set_defaults(func=cmd_emulate)

    sp = sub.add_parser("convert", help="ReLU ANN (ONNX) -> IF SNN in NIR, normalised on a calibration set")
    sp.add_argument("model", help=".onnx file of a ReLU network (Gemm/MatMul, Conv, AveragePool, Flatten, "
                                  "BatchNormalization, Relu)")
    sp.add_argument("--calibration", required=True,
                    help=".npz (key 'x') or .npy of samples [N, *input] in [0, 1]")
    sp.add_argument("-o", "--output", required=True, help="the .nir to write")
    sp.add_argument("--percentile", type=float, default=99.9,
                    help="activation percentile that maps to one spike per step (default 99.9)")
    sp.add_argument("--steps", type=int, default=64, help="steps of rate-coded input the SNN is run for")
    sp.add_argument("--threshold", default="calibrate",
                    help="'calibrate' (per layer, against reset-to-zero's lost charge, on the calibration set) "
                         "or one threshold for every layer")
    sp.set_defaults(func=cmd_convert)

    sp = sub.add_parser("from-torch", help="snnTorch or Norse module -> NIR through the framework's own exporter, "
                                           "its known defects fixed (needs neurocc[torch])")
    sp.add_argument("entry", help="the module: package.module:attr or path/to/file.py:attr, where attr is a "
                                  "torch.nn.Module or a no-argument factory of one")
    sp.add_argument("--sample", required=True,
                    help="one step's input shape without the batch axis (e.g. 20 or 2,34,34), or a .npy/.npz "
                         "input sample")
    sp.add_argument("--framework", choices=["snntorch", "norse"], help="default: detected from the layers")
    sp.add_argument("-o", "--output", required=True, help="the .nir to write")
    sp.set_defaults(func=cmd_from_torch)

    sp = sub.add_parser("sweep", help="design-space sweep: every point of a spec compiled and placed, as Dask tasks")
    sp.add_argument("spec", help="sweep spec .toml (networks x targets x overrides x options; docs/sweeps.md)")
    sp.add_argument("-o", "--output", required=True,
                    help="results directory: one file per finished point (a rerun resumes), the table, plots")
    sp.add_argument("--scheduler", help="tcp://host:port of an existing Dask scheduler (default: an embedded "
                                        "LocalCluster on this machine)")
    sp.add_argument("--workers", type=int, help="worker processes of the embedded cluster (default: usable CPUs)")
    sp.add_argument("--window", type=int, help="steps per placement window for every point (overrides the spec)")
    sp.add_argument("--plot", action="store_true", help="Pareto fronts and parameter heatmaps into the output dir")
    sp.add_argument("--serial", action="store_true", help="run the points one by one in this process, no Dask")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_sweep)

    sp = sub.add_parser("targets", help="shipped targets and their budgets")
    sp.set_defaults(func=cmd_targets)
    return p


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():  # restores filters and showwarning: a library caller keeps its own
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args))
        except NeuroccError as exc:
            print(f"neurocc: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("neurocc: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())

