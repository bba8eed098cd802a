"""The `neurocc` command as a user runs it (a subprocess): tables, files written, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "neurocc.cli"]


def neurocc(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_inspect_prints_the_table(corpus_dir: Path) -> None:
    r = neurocc("inspect", corpus_dir / "snntorch_rlif.nir", "--convention", "snntorch")
    assert r.returncode == 0, r.stderr
    for word in ("1.lif", "synapses", "LIF"):
        assert word in r.stdout, r.stdout


def test_simulate_writes_spikes_and_a_raster(corpus_dir: Path, tmp_path: Path) -> None:
    model = corpus_dir / "snntorch_lif_mlp.nir"
    out, png = tmp_path / "spikes.npz", tmp_path / "raster.png"
    r = neurocc("simulate", model, "--convention", "snntorch", "--input", model.with_suffix(".npz"), "-o", out,
                "--plot", png)
    assert r.returncode == 0, r.stderr
    with np.load(out) as got, np.load(model.with_suffix(".npz")) as ref:
        assert {"1.spikes", "3.spikes"} <= set(got.files)
        np.testing.assert_array_equal(got["3.spikes"], ref["3.spikes"] > 0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_prints_the_quantization_report(corpus_dir: Path) -> None:
    model = corpus_dir / "snntorch_lif_mlp.nir"
    r = neurocc("simulate", model, "--convention", "snntorch", "--input", model.with_suffix(".npz"),
                "--target", "loihi2", "--compare")
    assert r.returncode == 0, r.stderr
    for phrase in ("count corr", "exact agreement", "first divergent step", "argmax"):
        assert phrase in r.stdout, r.stdout


def test_compile_and_verify_every_family(corpus_dir: Path, tmp_path: Path) -> None:
    model = corpus_dir / "snntorch_rlif.nir"
    for target in ("loihi2", "spinnaker2", "nrf52840"):
        out = tmp_path / target
        r = neurocc("compile", model, "--convention", "snntorch", "--target", target, "-o", out, "--quiet",
                    "--timings")
        assert r.returncode == 0, r.stderr
        assert "partition" in r.stdout and (out / "manifest.json").exists()
        r = neurocc("verify", out, "--input", model.with_suffix(".npz"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "identical spikes, every neuron, every step" in r.stdout


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nir"
    bad.write_text("not a model")
    for args in (["inspect", bad], ["simulate", bad, "--input", bad], ["compile", bad, "--target", "loihi2", "-o",
                                                                     tmp_path / "o"],
                 ["compile", bad, "--target", "nosuchchip", "-o", tmp_path / "o"], ["verify", tmp_path, "--input",
                                                                                    bad]):
        r = neurocc(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("neurocc: error: "), r.stderr
        assert "Traceback" not in r.stderr
        assert "Fix" in lines[0], lines[0]
