"""The `neurocc` command as a user runs it, in a subprocess. `inspect` prints the population and synapse
tables, `simulate` writes every population's spikes and a raster plot, `--compare` prints the
per-population float/integer agreement, `compile` and `verify` work for every family, and every user
error is one line on stderr with exit 2. Called in-process, `main` leaves the caller's warning set-up alone."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import neurocc

from .conftest import convention_of

CLI = [sys.executable, "-m", "neurocc.cli"]


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120)


def _load(path: Path) -> neurocc.Network:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neurocc.NeuroccWarning)
        return neurocc.load(path, convention=convention_of(path))


def _rows(text: str, header: str) -> list[list[str]]:
    """The rows of the table whose header line starts with `header` (cells split on 2+ spaces)."""
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith(header))
    assert set(lines[start + 1].replace(" ", "")) == {"-"}, "a rule under the header"
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_inspect_prints_populations_and_synapses(corpus_dir: Path) -> None:
    model = corpus_dir / "snntorch_conv.nir"
    r = run("inspect", model, "--convention", "snntorch")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    net = _load(model)
    assert f"{net.n_neurons} neurons, {net.n_synapses} synapses" in r.stdout.splitlines()[0]
    pops = {row[0]: row for row in _rows(r.stdout, "population")}
    assert set(pops) == set(net.populations)
    for name, pop in net.populations.items():
        kind, shape, neurons, synapses = pops[name][1:5]
        assert (kind, shape, int(neurons)) == (pop.kind, "x".join(map(str, pop.shape)), pop.size), pops[name]
        assert int(synapses) == sum(p.n_synapses for p in net.incoming(name)), pops[name]
    projections = sorted((row[0], row[1], int(row[2]), row[5]) for row in _rows(r.stdout, "pre "))
    expected = sorted((p.pre, p.post, p.n_synapses, p.conv.label if p.conv is not None else "sparse")
                      for p in net.projections)
    assert projections == expected
    # 4x2 kernels of 3x3 with padding 1 on 34x34: per axis the three kernel offsets reach 33 + 34 + 33 positions.
    assert ("input", "1", 4 * 2 * (33 + 34 + 33) ** 2, "conv3x3/s1x1") in projections


def test_simulate_writes_every_population_and_a_plot(corpus_dir: Path, tmp_path: Path) -> None:
    model = corpus_dir / "snntorch_rlif.nir"
    spikes, png = tmp_path / "out" / "spikes.npz", tmp_path / "raster.png"
    r = run("simulate", model, "--convention", "snntorch", "--input", model.with_suffix(".npz"), "-o", spikes,
            "--plot", png)
    assert r.returncode == 0, r.stderr
    assert f"wrote {spikes}" in r.stdout and f"wrote {png}" in r.stdout
    net = _load(model)
    with np.load(model.with_suffix(".npz")) as data:
        recorded = {k: np.asarray(data[k]) for k in ("input", "1.lif.spikes", "3.spikes")}
    expected = neurocc.simulate(net, recorded["input"])
    with np.load(spikes) as got:
        assert {k[: -len(".spikes")] for k in got.files if k.endswith(".spikes")} == set(net.populations)
        for name, s in expected.spikes.items():
            np.testing.assert_array_equal(got[f"{name}.spikes"], s, err_msg=name)
        for name in ("1.lif", "3"):  # and they are the framework's own spikes
            np.testing.assert_array_equal(got[f"{name}.spikes"], recorded[f"{name}.spikes"] > 0, err_msg=name)
    # The output's spike count is printed.
    assert f"output output <- 3: {int(expected.spikes['3'].sum())} spikes over 100 steps" in r.stdout
    head = png.read_bytes()
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    assert width > 400 and height > 300 and len(head) > 5_000, (width, height, len(head))


def test_compare_prints_per_population_agreement(corpus_dir: Path, tmp_path: Path) -> None:
    model = corpus_dir / "snntorch_lif_mlp.nir"
    out = tmp_path / "both.npz"
    r = run("simulate", model, "--convention", "snntorch", "--input", model.with_suffix(".npz"), "--target",
            "loihi2", "--compare", "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("quantization report for loihi2\n")
    net = _load(model)
    with np.load(model.with_suffix(".npz")) as data:
        hardware = neurocc.simulate(net, np.asarray(data["input"]), latency="hardware")
    rows = {row[0]: row for row in _rows(r.stdout, "population  count corr")}
    assert set(rows) == {n for n in net.populations if n not in net.inputs}
    for name, (_, corr, exact, first, float_spikes, int_spikes) in rows.items():
        assert -1.0 <= float(corr) <= 1.0 and float(corr) > 0.9, rows[name]
        assert exact.endswith("%") and 90.0 <= float(exact[:-1]) <= 100.0, rows[name]
        assert first == "-" or 0 <= int(first) < 100, rows[name]
        assert int(float_spikes) == int(hardware.spikes[name].sum()), rows[name]
        assert abs(int(int_spikes) - int(float_spikes)) <= max(3, int(float_spikes) // 5), rows[name]
    assert re.search(r"^output output: argmax (agrees|DIFFERS)$", r.stdout, re.M), r.stdout
    with np.load(out) as both:
        assert {"float/1.spikes", "float/3.spikes", "int/3.spikes"} <= set(both.files)


def test_quirk_warnings_go_to_stderr_and_the_command_succeeds(corpus_dir: Path) -> None:
    r = run("inspect", corpus_dir / "norse_lif_mlp.nir", "--convention", "norse")
    assert r.returncode == 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "norse <= 1.1 writes" in lines[0], r.stderr
    rows = {row[0]: row for row in _rows(r.stdout, "population")}
    assert rows["1"][6].startswith("tau=0.01,"), rows["1"]  # the fixed time constant, not the file's 1e-05


def _assert_one_line_error(r: subprocess.CompletedProcess, *phrases: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("neurocc: error: "), lines[0]
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


def _bad_raster(tmp_path: Path, corpus_dir: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.npz"
    if kind == "text":
        path.write_text("0 1 0 1\n")
    elif kind == "no_input_array":
        np.savez(path, spikes=np.zeros((10, 20)))
    elif kind == "wrong_shape":
        np.savez(path, input=np.zeros((10, 7), dtype=np.float32))
    elif kind == "one_d":
        np.savez(path, input=np.zeros(20, dtype=np.float32))
    elif kind == "nan":
        np.savez(path, input=np.full((10, 20), np.nan, dtype=np.float32))
    elif kind == "object_array":
        np.savez(path, input=np.array([None, 1], dtype=object))
    elif kind == "truncated":
        data = (corpus_dir / "snntorch_lif_mlp.npz").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path  # "missing": never written


BAD_RASTERS = {
    "text": ["cannot read input raster", "Fix: an .npz holding `input`"],
    "no_input_array": ["no array named 'input' (has ['spikes'])", "Fix: np.savez(path, input=x)"],
    "wrong_shape": ["input 'input' has 7 channels per step", "expects 20", "Fix: reshape the raster to [T, 20]"],
    "one_d": ["input raster must be [T, *input_shape]; got shape [20]"],
    "nan": ["input 'input' contains NaN/Inf"],
    "object_array": ["cannot read input raster", "Fix: "],
    "missing": ["cannot read input raster", "No such file"],
    "truncated": ["cannot read input raster", "Fix: "],
}


@pytest.mark.parametrize("kind", list(BAD_RASTERS))
def test_bad_input_raster_is_one_line_exit_2(corpus_dir: Path, tmp_path: Path, kind: str) -> None:
    raster = _bad_raster(tmp_path, corpus_dir, kind)
    r = run("simulate", corpus_dir / "snntorch_lif_mlp.nir", "--convention", "snntorch", "--input", raster)
    line = _assert_one_line_error(r, *BAD_RASTERS[kind])
    if kind not in ("wrong_shape", "one_d", "nan"):  # these are about the array, not the file
        assert str(raster) in line, line


@pytest.mark.parametrize("kind", ["text", "truncated", "directory"])
def test_bad_model_file_is_one_line_exit_2(corpus_dir: Path, tmp_path: Path, kind: str) -> None:
    model = tmp_path / "model.nir"
    if kind == "text":
        model.write_text("not a model\n")
    elif kind == "truncated":
        data = (corpus_dir / "snntorch_lif_mlp.nir").read_bytes()
        model.write_bytes(data[: len(data) // 3])
    else:
        model.mkdir()
    for args in (["inspect", model], ["simulate", model, "--input", corpus_dir / "snntorch_lif_mlp.npz"]):
        _assert_one_line_error(run(*args), f"neurocc: error: {model}: ", "Fix: ")


def test_compare_without_a_target_is_one_line_exit_2(corpus_dir: Path) -> None:
    model = corpus_dir / "snntorch_lif_mlp.nir"
    args = ["simulate", model, "--convention", "snntorch", "--input", model.with_suffix(".npz"), "--compare"]
    _assert_one_line_error(run(*args), "--compare needs --target T")
    _assert_one_line_error(run(*args, "--target", "nosuchchip"), "unknown target 'nosuchchip'", "Shipped: ", "loihi2")


def test_compile_and_verify_every_family(corpus_dir: Path, tmp_path: Path) -> None:
    model = corpus_dir / "snntorch_rlif.nir"
    for target in ("loihi2", "spinnaker2", "nrf52840"):
        out = tmp_path / target
        r = run("compile", model, "--convention", "snntorch", "--target", target, "-o", out, "--quiet", "--timings")
        assert r.returncode == 0, r.stderr
        assert "quantize" in r.stdout and (out / "manifest.json").exists()
        assert ("partition" in r.stdout) == (target != "nrf52840"), r.stdout  # one CPU: no partition/place/route
        r = run("verify", out, "--input", model.with_suffix(".npz"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "identical spikes, every neuron, every step" in r.stdout


def test_compile_and_verify_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nir"
    bad.write_text("not a model")
    _assert_one_line_error(run("compile", bad, "--target", "loihi2", "-o", tmp_path / "o"), str(bad), "Fix")
    _assert_one_line_error(run("compile", bad, "--target", "nosuchchip", "-o", tmp_path / "o"), "Fix")
    _assert_one_line_error(run("verify", tmp_path, "--input", bad), "Fix")
    assert not (tmp_path / "o").exists()


def test_main_leaves_the_callers_warning_setup_alone(corpus_dir: Path, capsys) -> None:
    """In-process: the command prints its warnings as one line each, and afterwards the process formats and
    shows warnings as before (no global replacement of warnings.formatwarning or showwarning)."""
    from neurocc.cli import main

    before = (warnings.formatwarning, warnings.showwarning, list(warnings.filters))
    assert main(["inspect", str(corpus_dir / "norse_lif_mlp.nir"), "--convention", "norse"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "norse <= 1.1 writes" in err[0], err
    assert (warnings.formatwarning, warnings.showwarning, list(warnings.filters)) == before


def test_convert_writes_an_snn_that_reads_back_with_no_flags(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parent / "data" / "digits"
    out = tmp_path / "snn.nir"
    r = run("convert", data / "ann_mlp.onnx", "--calibration", data / "calibration.npz", "-o", out, "--steps", "64")
    assert r.returncode == 0, r.stderr
    assert "converted" in r.stdout and out.exists()
    r = run("inspect", out)
    assert r.returncode == 0 and "recorded in the file's metadata (neurocc, from onnx)" in r.stdout, r.stdout
    assert "assumed dt" not in r.stderr
    r = run("convert", tmp_path / "missing.onnx", "--calibration", data / "calibration.npz", "-o", tmp_path / "x.nir")
    assert r.returncode == 2 and "no such ONNX file" in r.stderr and not (tmp_path / "x.nir").exists()
