"""What the bench scripts share: their host's description (CPU model, package versions) and atomic JSON writes."""

from __future__ import annotations

import os
import tempfile
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    """The first "model name" of /proc/cpuinfo ("" where there is none)."""
    try:
        return next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")), "")
    except OSError:
        return ""


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def write_atomically(path: Path, text: str) -> None:
    """`text` to `path` through a temp file in the same directory: a cut run leaves the previous results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
