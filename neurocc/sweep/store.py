"""The sweep's results directory: one JSON file per finished point, written atomically.

Layout of `out_dir`:
  points/<point_id>.json   one finished row: {"point_id": ..., "row": {...}}
  spec.json                the canonical form of the last spec run into this directory

A row file is written to a temporary name in the same directory and renamed with
`os.replace` (atomic on POSIX and Windows), so a killed or interrupted sweep leaves
only complete rows. Only files named `<point_id>.json` whose content parses and names
the same point count as finished; temp files and damaged files are ignored (and
overwritten when that point runs again).

A different spec in the same directory is merged by point_id: a point_id hashes
everything that defines a point (network, target, overrides, options, input, window,
params), so a stored row is reused only for the identical point. Rows of points that
are not in the new spec stay on disk and are left out of the returned table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..compiler.errors import NeuroccError

_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")  # a point_id is a file name: nothing that could leave points/
FORMAT = 1  # bump when the row file layout changes; other versions are not reused


class SweepStoreError(NeuroccError):
    """The results directory cannot be used (not a directory, not writable)."""


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())  # the rename must never publish a file whose bytes are not on disk
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def canonical_spec(spec: Any) -> dict[str, Any]:
    """JSON-able canonical form of a Spec: its name, source and every point in order."""
    return {"format": FORMAT, "name": spec.name, "source": str(spec.source),
            "points": [dataclasses.asdict(p) for p in spec.points]}


class Store:
    """Finished rows of one results directory, keyed by point_id."""

    def __init__(self, out_dir: str | Path) -> None:
        self.root = Path(out_dir)
        self.points_dir = self.root / "points"
        try:
            self.points_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise SweepStoreError(f"sweep results directory {self.root}: a file is in the way. "
                                  "Fix: give -o a directory path (new or one of an earlier sweep)") from None
        except PermissionError:
            raise SweepStoreError(f"sweep results directory {self.root}: not writable. "
                                  "Fix: choose a directory you can write to with -o") from None

    def path_of(self, point_id: str) -> Path:
        return self.points_dir / f"{point_id}.json"

    def load(self, point_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored rows of those point_ids that finished; anything unreadable counts as not finished."""
        rows: dict[str, dict[str, Any]] = {}
        for pid in point_ids:
            if not _ID.match(pid):
                continue
            path = self.path_of(pid)
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("point_id") == pid
                    and isinstance(doc.get("row"), dict)):
                rows[pid] = doc["row"]
        return rows

    def save(self, point_id: str, row: dict[str, Any]) -> Path:
        path = self.path_of(point_id)
        # keys unsorted: a reloaded row keeps run_point's column order
        _atomic_write(path, json.dumps({"format": FORMAT, "point_id": point_id, "row": row}))
        return path

    def save_spec(self, spec: Any) -> Path:
        path = self.root / "spec.json"
        _atomic_write(path, json.dumps(canonical_spec(spec), sort_keys=True, indent=1, default=str))
        return path
