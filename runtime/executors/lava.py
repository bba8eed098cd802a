"""Run emitted Lava artifacts in a subprocess and read back every population's spikes.

`neurocc verify` diffs what this returns against `simulate_int`. Lava runs in its own process
(Lava forks one OS process per Lava process and must be stopped cleanly; a crash or hang there must
not take the caller down), with this interpreter, so the venv that has lava-nc is the one used.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...backends.lava.emit import FORMAT_VERSION, MANIFEST, PROGRAM
from ...compiler.errors import ArtifactError

DEFAULT_TIMEOUT_S = 900.0


@dataclass
class LavaRun:
    spikes: dict[str, np.ndarray]  # per population, [T, n] bool
    v: dict[str, np.ndarray] = field(default_factory=dict)  # per LIF population, [T, n] int32
    times: dict[str, float] = field(default_factory=dict)  # build_s, run_s (inside Lava), wall_s
    lava_version: str = ""


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest, checked against the files it lists (presence, size, SHA-256)."""
    path = out_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{path}: missing. Fix: run `neurocc compile` for a Loihi target into {out_dir}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc}). Fix: compile again") from None
    if not isinstance(manifest, dict) or manifest.get("backend") != "lava":
        got = manifest.get("backend") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArtifactError(f"{path}: not a Lava backend manifest (backend {got!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {manifest.get('format_version')!r}, this neurocc reads "
                            f"{FORMAT_VERSION}. Fix: compile again")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise ArtifactError(f"{path}: no 'files' list. Fix: compile again")
    for entry in files:
        try:
            name, size, digest = str(entry["name"]), int(entry["bytes"]), str(entry["sha256"])
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{path}: malformed file entry {entry!r}. Fix: compile again") from None
        f = out_dir / name
        if not f.is_file():
            raise ArtifactError(f"{f}: missing (listed in {MANIFEST}). Fix: compile again")
        if f.stat().st_size != size:
            raise ArtifactError(f"{f}: {f.stat().st_size} bytes, the manifest says {size}: truncated or "
                                "modified. Fix: compile again")
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != digest:
            raise ArtifactError(f"{f}: content does not match its SHA-256 in {MANIFEST}: corrupt or modified. "
                                "Fix: compile again")
    return manifest


def _input_arrays(manifest: dict[str, Any], raster: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    inputs = list(manifest.get("inputs", []))
    if isinstance(raster, dict):
        missing = [n for n in inputs if n not in raster]
        if missing:
            raise ArtifactError(f"input raster has no entry for input(s) {missing}")
        return {f"input.{n}": np.asarray(raster[n]) for n in inputs}
    return {"input": np.asarray(raster)}


def _run_group(cmd: list[str], cwd: Path, timeout: float | None, program: Path) -> tuple[int, str, str]:
    """Run `cmd` in its own process group: Lava forks one OS process per Lava process, and on a timeout
    all of them must go, not only the parent."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ArtifactError(f"{program}: Lava did not finish within {timeout:.0f} s (stopped). Fix: run fewer "
                            "steps or pass a larger timeout") from None
    except BaseException:
        _kill_group(proc)
        raise
    return proc.returncode, stdout, stderr


def _kill_group(proc: subprocess.Popen[str], grace_s: float = 5.0) -> None:
    """SIGTERM first: Lava's processes die, and multiprocessing's resource tracker (which ignores SIGTERM)
    then unlinks their shared-memory channels. SIGKILL whatever is left after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the direct child so the group can empty
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    proc.communicate()


def run_detailed(out_dir: str | Path, raster: np.ndarray | dict[str, np.ndarray], *, steps: int | None = None,
                 record_v: bool = True, timeout: float | None = DEFAULT_TIMEOUT_S) -> LavaRun:
    """Run `out_dir/run_lava.py` on `raster` ([T, *input_shape], or a dict per input population)."""
    out_dir = Path(out_dir).resolve()  # the program runs with cwd in a temp dir
    manifest = read_manifest(out_dir)
    program = out_dir / PROGRAM
    with tempfile.TemporaryDirectory(prefix="neurocc-lava-run-") as tmp:
        x_path, y_path = Path(tmp) / "input.npz", Path(tmp) / "spikes.npz"
        np.savez(x_path, **_input_arrays(manifest, raster))
        cmd = [sys.executable, str(program), "--input", str(x_path), "--output", str(y_path)]
        if steps is not None:
            cmd += ["--steps", str(int(steps))]
        if not record_v:
            cmd.append("--no-v")
        start = time.perf_counter()
        returncode, stdout, stderr = _run_group(cmd, Path(tmp), timeout, program)
        wall = time.perf_counter() - start
        if returncode != 0:
            tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
            raise ArtifactError(f"{program}: Lava run failed (exit {returncode}):\n{tail}")
        try:
            with np.load(y_path, allow_pickle=False) as data:
                stored = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{program}: wrote no readable output ({exc})") from None
    info = json.loads(str(stored.pop("meta"))) if "meta" in stored else {}
    result = LavaRun({}, {}, {k: float(v) for k, v in info.items() if k.endswith("_s")},
                     str(info.get("lava_version", "")))
    result.times["wall_s"] = wall
    for key, arr in stored.items():
        name, _, what = key.rpartition(".")
        if what == "spikes":
            result.spikes[name] = arr.astype(bool)
        elif what == "v":
            result.v[name] = arr
    expected = set(manifest.get("populations", {}))
    if expected and set(result.spikes) != expected:
        raise ArtifactError(f"{program}: output has populations {sorted(result.spikes)}, the manifest lists "
                            f"{sorted(expected)}")
    return result


def run(out_dir: str | Path, raster: np.ndarray | dict[str, np.ndarray], *,
        timeout: float | None = DEFAULT_TIMEOUT_S) -> dict[str, np.ndarray]:
    """Spikes per population name ([T, n] bool) of the emitted network run in Lava (fixed_pt)."""
    return run_detailed(out_dir, raster, record_v=False, timeout=timeout).spikes
