"""Lava backend: emit a Mapping as a runnable Lava program, and run it (Loihi2SimCfg, fixed_pt).

Only this package (and its tests) imports `lava`, and only inside the emitted program, which runs
in a subprocess; importing neurocc.backends.lava does not need lava installed.
"""

from __future__ import annotations

from .emit import emit
from .executor import LavaRun, run, run_detailed

__all__ = ["LavaRun", "emit", "run", "run_detailed"]
