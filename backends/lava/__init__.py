"""Lava backend: emit a Mapping as a runnable Lava program (Loihi2SimCfg, fixed_pt).

Only the emitted program imports `lava`, and it runs in a subprocess (runtime/executors/lava.py);
importing neurocc.backends.lava does not need lava installed.
"""

from __future__ import annotations

from .emit import emit

__all__ = ["emit"]
