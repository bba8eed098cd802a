#!/usr/bin/env bash
# One install step for `make demo` and `make test`: Debian tools, the venv, the
# Python packages, and lava-nc patched for Python 3.11. Idempotent: re-running it
# installs nothing that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv

# Debian packages (ARM toolchain, QEMU, socat, stm32flash) for the Cortex-M target.
DEB_PKGS="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm socat stm32flash"
need_apt=0
for tool in arm-none-eabi-gcc qemu-system-arm socat stm32flash; do
  command -v "$tool" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $DEB_PKGS
  else
    echo "install.sh: not root; install these Debian packages yourself: $DEB_PKGS" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
stamp="$VENV/.neurocc-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/install.sh -nt "$stamp" ]; then
  $PIP install -q --upgrade pip
  # torch and onnx are optional for users; the suite tests from_torch and convert, so it installs them.
  # numpy<2 rides along: lava-nc needs it and a bare resolve of onnx/torch would pick numpy 2.
  $PIP install -q -e ".[dev,torch,onnx,parquet]" "numpy>=1.24,<2"
  # lava-nc 0.10.0 declares Requires-Python <3.11 but runs on 3.11 after one fix
  # (below). Install it without its pins and add its dependencies ourselves.
  $PIP install -q --no-deps --ignore-requires-python "lava-nc==0.10.0"
  $PIP install -q "asteval>=0.9.31,<0.10" "scikit-learn>=1.5,<2"
  $VENV/bin/python scripts/patch_lava.py
  touch "$stamp"
fi
