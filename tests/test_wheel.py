"""A non-editable install works: build the wheel from a copy of the source tree, install it into a fresh
venv, and from a directory outside the checkout compile a network for stm32f405, verify it on the
host engine and on the emulated M4 (QEMU), with the firmware built from the wheel's own package data.

The fresh venv borrows its third-party dependencies from the test venv through a .pth file, so the test
downloads nothing; neurocc itself comes only from the wheel (asserted), and the checkout is not on its
path. A missing tool fails in CI (CI=true) and skips elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("make", "gcc", "arm-none-eabi-gcc", "qemu-system-arm")
# what a copy of the checkout leaves out: environments, build output, caches
SKIP_ANYWHERE = {".git", "build", "__pycache__", ".pytest_cache", ".hypothesis"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == ROOT
    return {n for n in names if n in SKIP_ANYWHERE or n.endswith(".egg-info")
            or (top and (n.startswith((".venv", "out", "demo-out")) or n == "bench"))}

_missing = [t for t in TOOLS if shutil.which(t) is None]
if _missing and os.environ.get("CI") != "true":
    pytest.skip(f"missing {', '.join(_missing)} (scripts/install.sh installs them)", allow_module_level=True)


def _run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(the fresh venv's bin dir, its environment, a working directory outside the checkout)."""
    assert not _missing, f"CI needs {', '.join(_missing)}: a missing tool is a failure here, never a skip"
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", src], tmp, env)
    wheels = list((tmp / "dist").glob("neurocc-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    site = Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp, env).strip())
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps",
          wheels[0]], tmp, env)
    # third-party packages only: a path added by a .pth is not a site dir, so the test venv's own .pth
    # files (the editable neurocc finder among them) are not run
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = tmp / "work"
    work.mkdir()
    env |= {"PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "NEUROCC_CACHE": str(tmp / "cache")}
    return venv / "bin", env, work


def test_installed_package_is_the_wheel_with_its_firmware(installed) -> None:
    bin_dir, env, work = installed
    out = _run([bin_dir / "python", "-c", """
import importlib, pkgutil, neurocc
from neurocc.runtime.serial.firmware import FIRMWARE_DIR, default_build_dir
names = [m.name for m in pkgutil.walk_packages(neurocc.__path__, "neurocc.")]
for name in names:
    importlib.import_module(name)
print(neurocc.__file__)
print(FIRMWARE_DIR)
print(default_build_dir())
print(len(names))
"""], work, env)
    package, firmware, build, n_modules = out.split()
    venv = bin_dir.parent
    assert Path(package).is_relative_to(venv) and Path(firmware).is_relative_to(venv), out
    assert not Path(package).is_relative_to(ROOT)
    assert (Path(firmware) / "Makefile").is_file() and (Path(firmware) / "engine" / "snn.c").is_file()
    assert not (Path(firmware) / "build").exists()
    assert Path(build).is_relative_to(Path(env["NEUROCC_CACHE"]))
    # every Python module of the checkout is in the wheel (a package missing from pyproject fails here)
    checkout = sum(1 for top in ("neurocc", "compiler", "backends", "runtime", "firmware")
                   for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)
    assert int(n_modules) + 1 == checkout  # walk_packages lists every module but the neurocc package itself


def test_compile_verify_emulate_from_the_wheel(installed) -> None:
    bin_dir, env, work = installed
    examples = Path(_run([bin_dir / "python", "-c", "import neurocc, pathlib; "
                          "print(pathlib.Path(neurocc.__file__).parent / 'examples')"], work, env).strip())
    model, raster = examples / "delay_rnn.nir", examples / "delay_rnn_input.npz"
    firmware = Path(_run([bin_dir / "python", "-c", "from neurocc.runtime.serial.firmware import FIRMWARE_DIR; "
                          "print(FIRMWARE_DIR)"], work, env).strip())
    shipped = sorted(p.relative_to(firmware) for p in firmware.rglob("*") if "__pycache__" not in p.parts)
    _run([bin_dir / "neurocc", "compile", model, "--target", "stm32f405", "-o", "out", "--quiet"], work, env)
    assert (work / "out" / "model.bin").is_file()
    host = _run([bin_dir / "neurocc", "verify", "out", "--input", raster, "--host"], work, env)
    emulated = _run([bin_dir / "neurocc", "verify", "out", "--input", raster], work, env)
    for report in (host, emulated):
        assert "identical spikes, every neuron, every step" in report, report
    builds = Path(env["NEUROCC_CACHE"])
    assert list(builds.glob("firmware-*/netduinoplus2/app.bin")), "the emulated run built no firmware in the cache"
    after = sorted(p.relative_to(firmware) for p in firmware.rglob("*") if "__pycache__" not in p.parts)
    assert after == shipped, "building the firmware wrote into the installed package"
