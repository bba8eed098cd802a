"""Atomic output directories, shared by every backend's `emit`.

Artifacts are written into a temporary directory beside `out_dir` and renamed into place, so a
failure leaves either the previous output or nothing. An existing `out_dir` is replaced only if it
is empty or a previous neurocc output (holds a manifest.json).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..compiler.errors import ArtifactError

MANIFEST = "manifest.json"


def _is_replaceable(out_dir: Path) -> bool:
    return out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / MANIFEST).is_file())


def write_atomically(out_dir: str | Path, what: str, write_into: Callable[[Path], None]) -> Path:
    """Call `write_into(tmp)` on a fresh temporary directory, then rename it to `out_dir`.

    `what` names the artifacts in error messages ("the Lava artifacts"). Returns `out_dir` as given.
    """
    given = Path(out_dir)
    target = given.resolve()
    if target.exists() and not _is_replaceable(target):
        raise ArtifactError(f"{given}: exists and is not a neurocc output (no {MANIFEST}); refusing to replace "
                            "it. Fix: choose a new or empty output directory")
    parent = target.parent
    tmp: Path | None = None
    old: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
        write_into(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
            os.replace(target, old / "out")
        try:
            os.replace(tmp, target)
        except OSError:
            if old is not None:
                os.replace(old / "out", target)  # put the previous output back
            raise
    except OSError as exc:
        raise ArtifactError(f"{given}: cannot write {what} ({exc})") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return given
